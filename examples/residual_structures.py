# %% [markdown]
# # Residual variance functions and within-group correlation, nlme style
#
# Three analyses from Pinheiro & Bates (2000), each choosing a residual structure by
# looking at the residuals first and comparing fits after:
#
# 1. Ovary (follicle counts of 11 mares over their oestrus cycles): the normalised
#    residuals of a random-intercept model are autocorrelated (ACF); an AR(1) error
#    removes most of it and the likelihood-ratio test agrees.
# 2. BodyWeight (rats on 3 diets, weighed over 64 days at uneven times): the
#    residual spread grows with the fitted weight (varPower) and nearby days are
#    correlated (corCAR1 in continuous time); the semivariogram shows both.
# 3. Orthodont: a residual SD per sex (varIdent), by ML and with the Bayesian
#    model beside it.
#
# Run as a script (`.venv/bin/python examples/residual_structures.py`; figures are written to
# `examples/figures/`, git-ignored) or as the notebook `examples/residual_structures.ipynb`.

# %%
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

if "__file__" in globals():  # a script: figures go to files (a notebook shows them)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import bayesmix as bmx  # noqa: E402

# Few draws when the example test runs (BAYESMIX_EXAMPLE_DRAWS); the full run otherwise.
DRAWS = int(os.environ.get("BAYESMIX_EXAMPLE_DRAWS", "1000"))

FIGURES = (Path(__file__).parent if "__file__" in globals() else Path.cwd()) / "figures"
FIGURES.mkdir(exist_ok=True)


def ovary() -> None:
    data = bmx.load_dataset("Ovary")
    formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
    plain = bmx.lmm(formula, data).fit()
    print(bmx.acf(plain).head(6).round(3), "\n")  # lag-1 autocorrelation ~0.5
    ar1 = bmx.lmm(formula, data, correlation="corAR1(form = ~ 1 | Mare)").fit()
    print(ar1.summary(), "\n")
    print(bmx.anova(independent=plain, ar1=ar1), "\n")
    arma = bmx.lmm(formula, data, correlation=bmx.corARMA(p=1, q=1)).fit()
    print(bmx.anova(ar1=ar1, arma11=arma), "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    bmx.plot_acf(plain, ax=axes[0])
    axes[0].set_title("Independent errors: normalised residuals")
    bmx.plot_acf(ar1, ax=axes[1])
    axes[1].set_title("corAR1: normalised residuals")
    fig.tight_layout()
    fig.savefig(FIGURES / "ovary_acf.png", dpi=110)
    plt.close(fig)


def bodyweight() -> None:
    data = bmx.load_dataset("BodyWeight")
    formula = "weight ~ Time * Diet + (Time | Rat)"
    plain = bmx.lmm(formula, data).fit()
    power = bmx.lmm(formula, data, weights=bmx.varPower()).fit()
    both = bmx.lmm(
        formula, data, weights=bmx.varPower(), correlation=bmx.corCAR1(time="Time")
    ).fit()
    print(bmx.anova(plain=plain, varPower=power, varPower_CAR1=both), "\n")
    print(both.residual_parameters(), "\n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    bmx.plot_variogram(power, time="Time", resid_type="pearson", ax=axes[0])
    axes[0].set_title("varPower only: Pearson residuals")
    bmx.plot_variogram(both, time="Time", resid_type="pearson", ax=axes[1])
    axes[1].set_title("varPower + corCAR1 (fitted curve)")
    fig.tight_layout()
    fig.savefig(FIGURES / "bodyweight_variogram.png", dpi=110)
    plt.close(fig)


def orthodont() -> None:
    data = bmx.load_dataset("Orthodont")
    model = bmx.lmm(
        "distance ~ age + Sex + (1 | Subject)", data, weights="varIdent(form = ~ 1 | Sex)"
    )
    ml = model.fit()
    print(ml.residual_parameters(), "\n")  # Female SD / Male SD 0.454 (nlme REML: 0.4541)
    post = model.sample(draws=DRAWS, tune=DRAWS, random_seed=1)
    print(post.residual_parameters().round(3).to_string(), "\n")


if __name__ == "__main__":
    ovary()
    bodyweight()
    orthodont()
