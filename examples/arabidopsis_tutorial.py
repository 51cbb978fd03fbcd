# %% [markdown]
# # Arabidopsis: the nlme tutorial in bayesmix, frequentist and Bayesian side by side
#
# Fruit counts of *Arabidopsis thaliana* under nutrient and clipping treatments, for genotypes
# (`gen`) within populations (`popu`) within regions (`reg`). The classic nlme tutorial fits a
# `gls` null model, compares random-intercept structures by AIC/BIC and likelihood-ratio tests,
# adds random slopes, refits the chosen model by REML and inspects random effects and residuals.
# Every step works the same here; at the end the chosen model is also sampled with NUTS.
#
# Run as a script (`.venv/bin/python examples/arabidopsis_tutorial.py`) or cell by cell in a
# notebook (the `# %%` markers are understood by Jupyter/VS Code). Figures go to
# `examples/figures/` when run as a script.

# %%
from pathlib import Path

import matplotlib

import bayesmix as bmx

if __name__ == "__main__":
    matplotlib.use("Agg")
FIGURES = Path(__file__).with_name("figures")
FIGURES.mkdir(exist_ok=True)

data = bmx.load_dataset("Arabidopsis")
for column in ("gen", "rack", "nutrient"):  # treated as factors in the tutorial
    data[column] = data[column].astype("category")
fixed = "log(1 + total.fruits) ~ rack + nutrient + amd + status"

# %% [markdown]
# ## Null model and random-intercept candidates (all by ML, so AIC/BIC/LRT compare)

# %%
GLM = bmx.gls(fixed, data).fit(method="ML")
candidates = {
    "lmm1": "(1 | reg)",
    "lmm2": "(1 | popu)",
    "lmm3": "(1 | gen)",
    "lmm4": "(1 | reg/popu)",
    "lmm5": "(1 | reg/gen)",
    "lmm6": "(1 | popu/gen)",
    "lmm7": "(1 | reg/popu/gen)",
}
fits = {
    name: bmx.lmm(f"{fixed} + {bar}", data).fit(method="ML") for name, bar in candidates.items()
}
print(bmx.anova(GLM=GLM, **fits), end="\n\n")

# %% [markdown]
# `(1 | popu/gen)` (lmm6) has the lowest AIC and BIC; adding regions (lmm7) does not help.
# ## Random slopes for nutrient

# %%
lmm6 = fits["lmm6"]
lmm6_2 = lmm6.update(random="nutrient | popu/gen")
lmm7_2 = fits["lmm7"].update(random="nutrient | reg/popu/gen")
print(bmx.anova(lmm6=lmm6, lmm6_2=lmm6_2, lmm7=fits["lmm7"], lmm7_2=lmm7_2), end="\n\n")

# %% [markdown]
# Does the nutrient effect depend on clipping? Add the interaction and test it.

# %%
lmm8 = lmm6_2.update(". ~ . + nutrient:amd")
print(bmx.anova(lmm8=lmm8, lmm6_2=lmm6_2), end="\n\n")

# %% [markdown]
# ## The final model, refitted by REML

# %%
final = lmm6_2.update(method="REML")
print(final.summary(), end="\n\n")

fig = bmx.plot_ranef(final, "popu")
fig.savefig(FIGURES / "arabidopsis_ranef_popu.png", dpi=100)
ax = bmx.plot_qq(final, kind="normalized")
ax.figure.savefig(FIGURES / "arabidopsis_qq.png", dpi=100)

# %% [markdown]
# ## The same model, Bayesian
#
# Posterior means and 95% intervals next to the REML estimates; the per-population effects come
# with intervals (the Bayesian analogue of the BLUPs above). The REML fit is singular (the
# nutrient slopes' SDs are tiny and their correlations +-1); the posterior says the same thing in
# its own way: wide intervals for those SDs and correlations, and a sampler warning that
# `sd(nutrient[8]|popu:gen)` is poorly identified (low ESS). Either accept that, sample longer,
# or drop the slope at the gen level, as the singular ML fit already suggests.

# %%
model = bmx.lmm(f"{fixed} + (nutrient | popu/gen)", data)
# The ML fit sits on the boundary (correlations of +-1), which makes the posterior awkward for
# NUTS near zero SDs; a higher target acceptance rate keeps it free of divergences.
posterior = model.sample(draws=1000, tune=1000, chains=4, target_accept=0.95, random_seed=20261121)
print(posterior.summary(), end="\n\n")

side_by_side = final.fixef()[["estimate", "std_error"]].join(
    posterior.fixef()[["mean", "sd", "lower", "upper"]]
)
print(side_by_side.round(3), end="\n\n")
print(final.varcorr().round(4), end="\n\n")
print(posterior.varcorr().round(4))

ax = bmx.plot_coefficients(
    {"GLM (ML)": GLM, "REML": final, "Bayes": posterior},
    terms=[t for t in final.fixef().index if t != "Intercept"],
)
ax.figure.savefig(FIGURES / "arabidopsis_coefficients.png", dpi=100)
