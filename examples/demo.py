"""bayesmix demo: the sleepstudy model fitted by REML and sampled by NUTS, side by side.

Run from the repository root:  .venv/bin/python examples/demo.py
"""

import os

import bayesmix as bmx

# Few draws when the example test runs (BAYESMIX_EXAMPLE_DRAWS); the full run otherwise.
DRAWS = int(os.environ.get("BAYESMIX_EXAMPLE_DRAWS", "1000"))

sleep = bmx.load_dataset("sleepstudy")
model = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep)
print(model, end="\n\n")

reml = model.fit(method="REML")
print(reml.summary(), end="\n\n")

posterior = model.sample(draws=DRAWS, tune=DRAWS, chains=4, random_seed=2026)
print(posterior.summary(), end="\n\n")

side_by_side = reml.fixef()[["estimate", "std_error"]].join(
    posterior.fixef()[["mean", "sd", "lower", "upper"]]
)
print("Fixed effects, REML vs posterior (95% interval):")
print(side_by_side.round(3))
