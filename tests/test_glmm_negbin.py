"""Negative binomial (NB2) GLMMs against lme4's glmer.nb.

References: tests/refs/glmm (make_glmm_refs.R; lme4 1.1.31): G20b, simulated
NB2 counts (1,000 rows, 50 groups, known parameters), and G06b, Arabidopsis'
fruit counts with crossed popu and popu:gen intercepts. glmer.nb and bayesmix
both use the expected-information Laplace approximation (glmmTMB's nbinom2
uses the observed information and differs by ~0.002 in logLik). Tolerances:
logLik within 1e-3 of lme4 and not below it by more than 1e-6 (lme4's
outer theta iteration stops a little short); theta, fixed effects, their SEs
and the random-effect SDs 1e-3 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from r_names import r_term
from rfidelity import read_with_levels

import bayesmix as bmx

REFS = Path(__file__).parent / "refs" / "glmm"


def data(name: str) -> pd.DataFrame:
    frame = read_with_levels(REFS / "data" / f"{name}.csv", REFS / "data" / f"{name}.levels.json")
    if name == "Arabidopsis_f":  # the reference fits make gen a factor (numeric level order)
        gen = frame["gen"].astype(str)
        frame["gen"] = pd.Categorical(gen, categories=sorted(gen.unique(), key=int))
    return frame


CASES = {
    "G20b_simnb2_glmernb": ("y ~ x + (1 | g)", "sim_nb2"),
    "G06b_arabidopsis_glmernb_int": (
        "total.fruits ~ nutrient * amd + rack + status + (1 | popu) + (1 | popu:gen)",
        "Arabidopsis_f",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_negative_binomial_matches_glmer_nb(case):
    ref = json.loads((REFS / "refs" / f"{case}.json").read_text())
    formula, name = CASES[case]
    fit = bmx.glmm(formula, data(name), "negbinomial").fit()
    assert fit.converged and fit.df == ref["df"] and fit.nobs == ref["nobs"]
    assert ref["logLik"] - 1e-6 <= fit.loglik <= ref["logLik"] + 1e-3
    assert fit.dispersion == pytest.approx(ref["nb_theta"], rel=1e-3)
    fixef = fit.fixef()
    factors = list(ref.get("factors", {}))
    for r_name, value in ref["fixef"].items():
        term = r_term(r_name, factors)
        assert fixef.loc[term, "estimate"] == pytest.approx(value, rel=1e-3, abs=1e-5), term
        assert fixef.loc[term, "std_error"] == pytest.approx(ref["fixef_se"][r_name], rel=1e-3)
    sds = fit.varcorr().set_index("grp")["sdcor"]
    for group, info in ref["random"].items():
        assert sds[group] == pytest.approx(info["sd"]["(Intercept)"], rel=1e-3), group
    text = str(fit.summary())
    assert f"Negative Binomial({fit.dispersion:.4g})" in text


def test_negative_binomial_recovers_the_simulation():
    """The simulated truth (beta = (1, 0.5), theta = 1.5, sd 0.5) lies within two
    standard errors of the estimates (theta and the SD: within 25%)."""
    truth = json.loads((REFS / "refs" / "G20b_simnb2_glmernb.json").read_text())["true_parameters"]
    fit = bmx.glmm("y ~ x + (1 | g)", data("sim_nb2"), "negbinomial").fit()
    fixef = fit.fixef()
    for r_name, value in truth["beta"].items():
        term = r_term(r_name, [])
        assert abs(fixef.loc[term, "estimate"] - value) < 2 * fixef.loc[term, "std_error"]
    assert fit.dispersion == pytest.approx(truth["nb_theta"], rel=0.25)
    assert fit.varcorr()["sdcor"].item() == pytest.approx(truth["sd_g"], rel=0.25)


def test_negative_binomial_fits_save_and_load(tmp_path):
    fit = bmx.glmm("y ~ x + (1 | g)", data("sim_nb2"), "negbinomial").fit()
    fit.save(tmp_path / "nb.bmx")
    loaded = bmx.load(tmp_path / "nb.bmx")
    assert loaded.dispersion == fit.dispersion and loaded.loglik == fit.loglik
    assert str(loaded.summary()) == str(fit.summary())
