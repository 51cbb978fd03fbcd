# %% [markdown]
# # Theophylline pharmacokinetics: a one-compartment model, ML and Bayesian
#
# Twelve subjects took an oral dose of theophylline (`Dose`, mg/kg); serum concentration `conc`
# (mg/L) was measured over 25 hours. The first-order absorption model (R's `SSfol`) has three
# parameters on the log scale: elimination rate `lKe`, absorption rate `lKa` and clearance `lCl`:
#
#     conc = Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) t) - exp(-exp(lKa) t))
#            / (exp(lKa) - exp(lKe))
#
# Absorption and clearance vary between subjects (random effects); elimination is shared.
# Run as a script (`.venv/bin/python examples/theophylline_pk.py`) or cell by cell in a notebook.

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

theoph = bmx.load_dataset("Theoph")
params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
diagonal = bmx.nlmm(
    "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", theoph, params=params, cov={"Subject": "diagonal"}
)

# %% [markdown]
# ## Maximum likelihood (nlme's algorithm): does the covariance need a correlation?

# %%
ml_diag = diagonal.fit(method="ML")
ml_corr = diagonal.update(cov={"Subject": "unstructured"}).fit(method="ML")
print(ml_diag.summary(), end="\n\n")
print(bmx.anova(diagonal=ml_diag, correlated=ml_corr), end="\n\n")

# %% [markdown]
# The same question, and whether lKe needs a random effect at all, as one stepwise selection
# by AIC: start with random effects on all three parameters and let each leave, or the block
# become correlated. Then nlme's approximate intervals of the chosen fit.

# %%
everything = {name: "1 + (1 | Subject)" for name in ("lKe", "lKa", "lCl")}
full = diagonal.update(params=everything).fit(method="ML")
selection = bmx.select_random(full, criterion="AIC")
print(selection, end="\n\n")
print(selection.fit.intervals(), end="\n\n")

# %% [markdown]
# The correlation adds nothing (p ≈ 1), so the diagonal model stays.
# ## Bayesian fit of the same model

# %%
posterior = diagonal.sample(draws=DRAWS, tune=DRAWS, chains=4, random_seed=2026)
print(posterior.summary(), end="\n\n")
print(posterior.coef()["Subject"].xs("lKa", level="coefficient").round(3), end="\n\n")

# %% [markdown]
# ## Derived quantities with intervals
# Clearance `Cl = exp(lCl)` (L/h/kg) and elimination half-life `t½ = log(2) / exp(lKe)` (hours)
# for a typical subject, from every posterior draw; the ML values are the plug-in estimates.

# %%
beta = posterior.idata["posterior"]["beta"]
derived = {
    "clearance (L/h/kg)": np.exp(beta.sel(fixed="lCl")).values.ravel(),
    "half-life (h)": (np.log(2) / np.exp(beta.sel(fixed="lKe"))).values.ravel(),
}
ml_fixef = ml_diag.fixef()["estimate"]
ml_values = [np.exp(ml_fixef["lCl"]), np.log(2) / np.exp(ml_fixef["lKe"])]
table = pd.DataFrame(
    {
        "ML": ml_values,
        "posterior mean": [d.mean() for d in derived.values()],
        "2.5%": [np.quantile(d, 0.025) for d in derived.values()],
        "97.5%": [np.quantile(d, 0.975) for d in derived.values()],
    },
    index=list(derived),
)
print(table.round(4), end="\n\n")

# %% [markdown]
# ## Individual and population curves with 95% credible bands on a fine time grid

# %%
grid_times = np.linspace(0, 25, 101)
subjects = list(theoph["Subject"].cat.categories)
fig, axes = plt.subplots(3, 4, figsize=(12, 8), sharex=True, sharey=True)
for ax, subject in zip(axes.ravel(), subjects):
    rows = theoph[theoph["Subject"] == subject]
    grid = pd.DataFrame({"Time": grid_times, "Dose": rows["Dose"].iloc[0], "Subject": subject})
    individual = posterior.predict(grid)
    typical = posterior.predict(grid, include_random=False)
    ax.fill_between(grid_times, individual["lower"], individual["upper"], alpha=0.3)
    ax.plot(grid_times, individual["mean"], label="subject")
    ax.plot(grid_times, typical["mean"], "--", color="grey", label="typical subject")
    ax.plot(rows["Time"], rows["conc"], "o", color="black", markersize=3)
    ax.set_title(f"Subject {subject}")
axes[0, 0].legend(fontsize=8)
fig.supxlabel("time since dose (h)")
fig.supylabel("theophylline (mg/L)")
fig.tight_layout()
fig.savefig(FIGURES / "theoph_curves.png", dpi=90)
print(f"curves saved to {FIGURES / 'theoph_curves.png'}")
