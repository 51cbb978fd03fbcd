"""bayesmix demo: the sleepstudy model fitted by REML and sampled by NUTS, side by side.

Run from the repository root:  .venv/bin/python examples/demo.py
"""

import bayesmix as bmx

sleep = bmx.load_dataset("sleepstudy")
model = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep)
print(model, end="\n\n")

reml = model.fit(method="REML")
print(reml.summary(), end="\n\n")

posterior = model.sample(draws=1000, tune=1000, chains=4, random_seed=2026)
print(posterior.summary(), end="\n\n")

side_by_side = reml.fixef()[["estimate", "std_error"]].join(
    posterior.fixef()[["mean", "sd", "lower", "upper"]]
)
print("Fixed effects, REML vs posterior (95% interval):")
print(side_by_side.round(3))
