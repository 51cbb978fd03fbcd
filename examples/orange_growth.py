# %% [markdown]
# # Orange trees: a logistic growth curve with a random asymptote
#
# Trunk circumference (mm) of five orange trees at seven ages (days). Pinheiro & Bates fit
# `circumference ~ Asym / (1 + exp((xmid - age) / scal))` with a random asymptote per tree.
# Here the same model is written as an explicit expression (R's `SSlogis` would do as well),
# fitted by ML as nlme does, compared with a model where the midpoint also varies, and sampled.
# Run as a script (`.venv/bin/python examples/orange_growth.py`) or cell by cell in a notebook.

# %%
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

import bayesmix as bmx

# Few draws when the example test runs (BAYESMIX_EXAMPLE_DRAWS); the full run otherwise.
DRAWS = int(os.environ.get("BAYESMIX_EXAMPLE_DRAWS", "1000"))

if "__file__" in globals():  # a script: figures go to files (a notebook shows them)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGURES = (Path(__file__).parent if "__file__" in globals() else Path.cwd()) / "figures"
FIGURES.mkdir(exist_ok=True)

orange = bmx.load_dataset("Orange")
model = bmx.nlmm(
    "circumference ~ Asym / (1 + exp((xmid - age) / scal))",
    orange,
    params={"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"},
    start={"Asym": 190, "xmid": 700, "scal": 350},
)

# %% [markdown]
# ## ML fits and a likelihood-ratio test for a random midpoint

# %%
random_asymptote = model.fit(method="ML")
random_midpoint = model.update(params={"xmid": "1 + (1 | Tree)"}).fit(method="ML")
print(random_asymptote.summary(), end="\n\n")
print(bmx.anova(asym=random_asymptote, asym_xmid=random_midpoint), end="\n\n")

# %% [markdown]
# ## Bayesian fit: per-tree asymptotes with intervals, curves with bands

# %%
# Five trees identify the between-tree SD poorly. The default prior on it (a half-t scaled to the
# asymptote's start value, see model.default_priors()) lets it wander to implausibly large values
# and the sampler diverges; a half-normal with a 50 mm scale states what is known about trees.
print(model.default_priors(), end="\n\n")
posterior = model.sample(
    draws=2 * DRAWS,
    tune=DRAWS,
    chains=4,
    target_accept=0.95,
    priors={"sd(Asym|Tree)": bmx.HalfNormal(50)},
    random_seed=7,
)
print(posterior.summary(), end="\n\n")
print(posterior.coef()["Tree"].xs("Asym", level="coefficient").round(1), end="\n\n")

ages = np.linspace(100, 1600, 61)
fig, ax = plt.subplots(figsize=(7, 5))
for tree in orange["Tree"].cat.categories:
    curve = posterior.predict(pd.DataFrame({"age": ages, "Tree": tree}))
    (line,) = ax.plot(ages, curve["mean"], label=f"tree {tree}")
    ax.fill_between(ages, curve["lower"], curve["upper"], color=line.get_color(), alpha=0.2)
    rows = orange[orange["Tree"] == tree]
    ax.plot(rows["age"], rows["circumference"], "o", color=line.get_color())
ax.set_xlabel("age (days)")
ax.set_ylabel("trunk circumference (mm)")
ax.legend()
fig.savefig(FIGURES / "orange_curves.png", dpi=90)
print(f"curves saved to {FIGURES / 'orange_curves.png'}")
