"""GLMMs beyond lme4's conventions: glmmTMB's exact Laplace fits (negative binomial,
Gamma, zero-inflated Poisson and NB), and lme4's adaptive quadrature.

References: tests/refs/glmm (make_glmm_refs.R, make_glmm_refs_twins.R; glmmTMB
1.1.5, lme4 1.1.31). With ``information="observed"`` bayesmix computes the same
Laplace approximation as glmmTMB, so the fits agree to optimiser precision:
logLik 1e-5 (glmmTMB's own optimiser stops within ~1e-8 here), fixed effects
1e-4 relative, their SEs, the SDs, the dispersion and the zero-inflation
coefficients 1e-3 relative. Quadrature fits (nagq = 9, 25) are compared with
lme4's logLik plus the saturated log-likelihood it leaves out.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from r_names import r_term
from rfidelity import read_with_levels

import bayesmix as bmx

REFS = Path(__file__).parent / "refs" / "glmm"
ARABIDOPSIS = "total.fruits ~ nutrient*amd + rack + status"
FACTORS = (
    "period", "nutrient", "rack", "status", "amd", "YEAR", "Gender", "btype", "situ", "spp",
    "mined",
)  # fmt: skip


def data(name: str):
    frame = read_with_levels(REFS / "data" / f"{name}.csv", REFS / "data" / f"{name}.levels.json")
    if name == "VerbAgg":
        frame["r2"] = (frame["r2"] == "Y").astype(float)  # glmer: first level failure
    return frame


#: case -> (formula, data, family, link, model options, fit options)
CASES = {
    "G20_simnb2_glmmTMB": ("y ~ x + (1|g)", "sim_nb2", "negbinomial", None, {}, {}),
    "G05b_arabidopsis_nbinom2_int_glmmTMB": (
        ARABIDOPSIS + " + (1 | popu) + (1 | popu:gen)",
        "Arabidopsis_f",
        "negbinomial",
        None,
        {},
        {},
    ),
    "G15_simgamma_log_glmmTMB": ("y ~ x + (1|g)", "sim_gamma", "gamma", "log", {}, {}),
    "G17b_simgamma_inverse_glmmTMB_start": (
        "y ~ x + (1|g)",
        "sim_gamma",
        "gamma",
        "inverse",
        {},
        {},
    ),
    "G21_simzip_glmmTMB": ("y ~ x + (1|g)", "sim_zip", "poisson", None, {"ziformula": "~1"}, {}),
    "G27_simzinb_x_glmmTMB": (
        "y ~ x + (1|g)",
        "sim_zinb",
        "negbinomial",
        None,
        {"ziformula": "~ z"},
        {},
    ),
    "G07_arabidopsis_zipoisson_glmmTMB": (
        ARABIDOPSIS + " + (nutrient | popu) + (1 | popu:gen)",
        "Arabidopsis_f",
        "poisson",
        None,
        {"ziformula": "~1"},
        {},
    ),
    "G08b_arabidopsis_zinbinom2_int_glmmTMB": (
        ARABIDOPSIS + " + (1 | popu) + (1 | popu:gen)",
        "Arabidopsis_f",
        "negbinomial",
        None,
        {"ziformula": "~1"},
        {},
    ),
    "G22_verbagg_binary_glmmTMB": (
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "VerbAgg",
        "binomial",
        None,
        {},
        {},
    ),
    "G23_grouseticks_poisson_glmmTMB": (
        "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "grouseticks",
        "poisson",
        None,
        {},
        {},
    ),
    "G25_arabidopsis_poisson_slope_glmmTMB": (
        ARABIDOPSIS + " + (nutrient | popu) + (1 | popu:gen)",
        "Arabidopsis_f",
        "poisson",
        None,
        {},
        {},
    ),
    "A8_salamanders_nbinom2_glmmTMB": (
        "count ~ spp + mined + (1 | site)",
        "Salamanders",
        "negbinomial",
        None,
        {},
        {},
    ),
    "A9_salamanders_zipoisson_glmmTMB": (
        "count ~ spp + mined + (1 | site)",
        "Salamanders",
        "poisson",
        None,
        {"ziformula": "~ spp + mined"},
        {},
    ),
    "G11_cbpp_binomial_agq9": (
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "cbpp",
        "binomial",
        None,
        {},
        {"nagq": 9},
    ),
    "G26_cbpp_binomial_agq25": (
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "cbpp",
        "binomial",
        None,
        {},
        {"nagq": 25},
    ),
}
#: glmmTMB stops short of the optimum by up to this (README of tests/refs/glmm)
LOGLIK_TOL = {"G23_grouseticks_poisson_glmmTMB": 1e-7}


def reference(case: str) -> dict:
    return json.loads((REFS / "refs" / f"{case}.json").read_text())


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmx.DataWarning)
        for case, (formula, name, family, link, options, fit_options) in CASES.items():
            model = bmx.glmm(formula, data(name), family, link=link, **options)
            information = "observed" if "glmmTMB" in case else None
            out[case] = model.fit(information=information, **fit_options)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_matches_r(fits, case):
    ref, fit = reference(case), fits[case]
    assert fit.converged and fit.nobs == ref["nobs"] and fit.df == ref["df"]
    expected = ref["logLik"] + (ref.get("logLik_saturated") or 0.0 if fit.nagq > 1 else 0.0)
    # bayesmix may be above an optimiser that stopped short, never below
    assert expected - 1e-5 <= fit.loglik <= expected + LOGLIK_TOL.get(case, 1e-5)
    fixef = fit.fixef()
    for name, value in ref["fixef"].items():
        row = fixef.loc[r_term(name, FACTORS)]
        assert row["estimate"] == pytest.approx(value, rel=1e-4, abs=3e-5), name
        assert row["std_error"] == pytest.approx(ref["fixef_se"][name], rel=1e-3), name
    table = fit.varcorr()
    for group, parts in ref["random"].items():
        for term, sd in parts["sd"].items():
            row = table[(table["grp"] == group) & (table["var1"] == r_term(term, FACTORS))]
            got = row[row["var2"].isna()]["sdcor"].item()
            assert got == pytest.approx(sd, rel=1e-3, abs=1e-5), (group, term)


@pytest.mark.parametrize(
    "case", [c for c in sorted(CASES) if CASES[c][2] in ("negbinomial", "gamma")]
)
def test_dispersion_matches_glmmtmb(fits, case):
    """NB2 ``theta`` (glmmTMB's sigma) and the Gamma shape (1 / sigma^2), and the SE of
    their logarithm (glmmTMB's ``betad``)."""
    ref, fit = reference(case), fits[case]
    if fit.family.name == "negbinomial":
        assert fit.dispersion == pytest.approx(ref["nb_theta"], rel=1e-3)
    else:
        assert fit.dispersion == pytest.approx(1.0 / ref["sigma"] ** 2, rel=1e-3)
    assert np.log(fit.dispersion) == pytest.approx(ref["disp_fixef"]["(Intercept)"], rel=1e-3)
    extra = json.loads((REFS / "zi_predictor" / "dispersion_se.json").read_text())
    if case in extra:  # glmmTMB's SE of betad (make_dispersion_se.R)
        assert fit.dispersion_se == pytest.approx(extra[case]["betad_se"], rel=1e-3)


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if "ziformula" in CASES[c][4]])
def test_zero_inflation_matches_glmmtmb(fits, case):
    ref, fit = reference(case), fits[case]
    zi = fit.zi_fixef()
    for name, value in ref["zi_fixef"].items():
        row = zi.loc[r_term(name, FACTORS)]
        assert row["estimate"] == pytest.approx(value, rel=1e-3, abs=1e-4), name
        se = ref["zi_fixef_se"].get(f"zi~{name}", ref["zi_fixef_se"].get(name))
        assert row["std_error"] == pytest.approx(se, rel=1e-3), name
    # the structural-zero probability and the mean of the response
    pi = fit.predict(type="zprob")
    np.testing.assert_allclose(pi, 1 / (1 + np.exp(-fit.model.zi_X @ zi["estimate"].to_numpy())))
    np.testing.assert_allclose(fit.predict(), (1 - pi) * fit.predict(type="conditional"))
    with pytest.raises(bmx.ArgumentError, match="not defined for zero-inflated"):
        fit.residuals("deviance")


def test_quadrature_converges_to_the_integral(fits):
    """More nodes change the log-likelihood less and less (cbpp: 9 and 25 within 3e-6),
    and one node is the Laplace approximation."""
    model = bmx.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", data("cbpp"), "binomial"
    )
    nine, many = fits["G11_cbpp_binomial_agq9"], fits["G26_cbpp_binomial_agq25"]
    assert abs(nine.loglik - many.loglik) < 3e-6
    laplace = model.fit()
    assert abs(laplace.loglik - many.loglik) > 1e-2  # quadrature is not the Laplace value
    from bayesmix.ml.glmm_agq import agq_objective
    from bayesmix.ml.glmm_laplace import LaplaceProblem

    problem = LaplaceProblem(model.design, model.family)
    theta, beta = laplace.theta, laplace.fixef()["estimate"].to_numpy() * problem.scale
    assert agq_objective(problem, theta, beta, 1) == pytest.approx(
        problem.objective(theta, beta), abs=1e-9
    )
    with pytest.raises(bmx.ArgumentError, match="one scalar random effect"):
        bmx.glmm(
            ARABIDOPSIS + " + (1 | popu) + (1 | popu:gen)", data("Arabidopsis_f"), "poisson"
        ).fit(nagq=5)


def test_new_data_and_saved_fits(fits, tmp_path):
    fit = fits["G27_simzinb_x_glmmTMB"]
    rows = data("sim_zinb").iloc[:7]
    np.testing.assert_allclose(fit.predict(rows), fit.predict()[:7], rtol=1e-10)
    np.testing.assert_allclose(fit.predict(rows, type="zprob"), fit.predict(type="zprob")[:7])
    fit.save(tmp_path / "zinb.bmx")
    loaded = bmx.load(tmp_path / "zinb.bmx")
    assert loaded.loglik == fit.loglik and loaded.dispersion == fit.dispersion
    np.testing.assert_array_equal(loaded.zi_fixef(), fit.zi_fixef())
    assert str(loaded.summary()) == str(fit.summary())
    text = str(fit.summary())
    assert "Zero-inflation model" in text and "theta (NB2 size)" in text


def test_zero_inflation_input_errors():
    zip_data = data("sim_zip")
    with pytest.raises(bmx.ArgumentError, match="count families"):
        bmx.glmm(
            "y ~ x + (1|g)", zip_data.assign(y=zip_data.y.clip(0, 1)), "binomial", ziformula="~1"
        )
    with pytest.raises(bmx.ArgumentError, match="one-sided formula"):
        bmx.glmm("y ~ x + (1|g)", zip_data, "poisson", ziformula="1")
    with pytest.raises(bmx.ArgumentError, match="random effects in ziformula"):
        bmx.glmm("y ~ x + (1|g)", zip_data, "poisson", ziformula="~ 1 + (1 | g)")
    with pytest.raises(bmx.ArgumentError, match="observed information"):
        bmx.glmm("y ~ x + (1|g)", zip_data, "poisson", ziformula="~1").fit(information="fisher")
    assert bmx.glmm("y ~ x + (1|g)", zip_data, "poisson", ziformula="~0").zi_X is None
    holes = zip_data.assign(x2=np.where(np.arange(len(zip_data)) < 3, np.nan, 1.0))
    with pytest.warns(bmx.DataWarning, match="3 row"):
        model = bmx.glmm("y ~ x + (1|g)", holes, "poisson", ziformula="~ x2")
    assert model.design.n_obs == len(zip_data) - 3 == model.zi_X.shape[0]


def test_bad_responses_are_named():
    """glmer's factor response, complete separation, fractional counts, and counts
    fitted as Gaussian."""
    verbagg = data("VerbAgg")
    verbagg["r2"] = np.where(verbagg["r2"] == 1, "Y", "N")  # a string column, levels N < Y
    model = bmx.glmm("r2 ~ Anger + (1 | id)", verbagg, "binomial")
    np.testing.assert_array_equal(model.design.y, (verbagg["r2"] == "Y").astype(float))
    cbpp = data("cbpp")
    cbpp["incidence"] = np.where(cbpp["period"] == "4", 0, cbpp["incidence"])
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    with pytest.warns(
        bmx.DataWarning, match=r"every row with period\[4\] = 1 is among the failures"
    ):
        bmx.glmm(formula, cbpp, "binomial")
    counts = data("sim_zip").assign(y=lambda f: f["y"] + 0.5)
    with pytest.raises(bmx.DataError, match="not whole numbers"):
        bmx.glmm("y ~ x + (1 | g)", counts, "poisson")
    fractional = bmx.glmm("y ~ x + (1 | g)", counts, "poisson", allow_non_integer=True)
    assert fractional.allow_non_integer
    with pytest.warns(bmx.DataWarning, match="looks like counts"):
        bmx.lmm("y ~ x + (1 | g)", data("sim_zip"))


def test_update_and_anova_follow_glmer(fits):
    """update() keeps the family, link, trials and nagq; anova's LRT is twice the
    difference in logLik with the difference in df."""
    full = fits["G11_cbpp_binomial_agq9"]
    null = full.update(". ~ . - period")
    direct = bmx.glmm(
        "cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data("cbpp"), "binomial"
    )
    assert null.nagq == 9 and null.family == full.family
    assert null.loglik == pytest.approx(direct.fit(nagq=9).loglik, abs=1e-9)
    table = bmx.anova(null, full)
    assert table["L.Ratio"].iloc[1] == pytest.approx(2 * (full.loglik - null.loglik), rel=1e-9)
    assert full.update(nagq=1).loglik == pytest.approx(
        reference("G09_cbpp_binomial_nagq1")["logLik"], abs=1e-3
    )
    zinb = fits["G27_simzinb_x_glmmTMB"]
    assert zinb.update(random="(1 | g)").model.ziformula == zinb.model.ziformula


@pytest.mark.parametrize("seed", [0, 4])
def test_zero_inflation_predictor_from_the_default_start(seed):
    """A zero-inflation slope starts at exactly 0 and BOBYQA's first steps are not pinned
    to |x| (seed 4 once ended 0.14 below glmmTMB with the slope stuck near its start)."""
    ref = json.loads((REFS / "zi_predictor" / "zi_predictor.json").read_text())[f"seed{seed}"]
    frame = pd.read_csv(REFS / "zi_predictor" / f"sim_zip_z{seed}.csv", dtype={"g": str})
    fit = bmx.glmm("y ~ x + (1 | g)", frame, "poisson", ziformula="~ z").fit()
    assert fit.converged and fit.df == ref["df"]
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    zi = fit.zi_fixef()
    for name, value in ref["zi_fixef"].items():
        row = zi.loc[r_term(name, FACTORS)]
        assert row["estimate"] == pytest.approx(value, rel=1e-3), name
        assert row["std_error"] == pytest.approx(ref["zi_fixef_se"][f"zi~{name}"], rel=1e-3)
    for name, value in ref["fixef"].items():
        assert fit.fixef().loc[r_term(name, FACTORS), "estimate"] == pytest.approx(value, rel=1e-4)
    with pytest.raises(bmx.ArgumentError, match="nagq=0"):
        bmx.glmm("y ~ x + (1 | g)", frame, "poisson", ziformula="~ z").fit(nagq=0)


def test_comparisons_and_inputs_say_what_they_do(fits):
    """anova refuses mixed Laplace conventions and names the zero inflation; text
    responses, scale() after dropped rows, contrasts= and offset arrays with a
    zero-inflation part that drops rows."""
    nb = bmx.glmm("y ~ x + (1 | g)", data("sim_zinb"), "negbinomial")
    zinb = fits["G27_simzinb_x_glmmTMB"]
    with pytest.raises(bmx.ComparisonError, match="different Laplace conventions"):
        bmx.anova(nb.fit(), zinb)
    table = bmx.anova(nb.fit(information="observed"), zinb)
    assert any("zero inflation ~ z" in f for f in table.attrs["formulas"].values())
    verbagg = data("VerbAgg")
    verbagg["r2"] = np.where(verbagg["r2"] == 1, "Yes", "no")
    with pytest.warns(bmx.DataWarning, match="'Yes' \\(first in sorted order\\) is coded 0"):
        bmx.glmm("r2 ~ Anger + (1 | id)", verbagg, "binomial")
    grouse = data("grouseticks")
    grouse.loc[:4, "YEAR"] = np.nan
    with pytest.warns(bmx.DataWarning, match="scale\\(\\) standardises the 398 rows"):
        bmx.glmm("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD)", grouse, "poisson")
    frame = data("sim_zinb")
    frame["f"] = pd.Categorical(np.where(frame["z"] > 0, "a", "b"))
    coded = bmx.glmm("y ~ x + (1 | g)", frame, "poisson", ziformula="~ f", contrasts={"f": "sum"})
    assert coded.zi_names == ("Intercept", "f1")
    np.testing.assert_array_equal(np.unique(coded.zi_X[:, 1]), [-1.0, 1.0])
    holes = frame.assign(z=np.where(np.arange(len(frame)) < 5, np.nan, frame["z"]))
    exposure = np.log(np.linspace(1.0, 2.0, len(frame)))
    with pytest.warns(bmx.DataWarning, match="5 row"):
        model = bmx.glmm("y ~ x + (1 | g)", holes, "poisson", ziformula="~ z", offset=exposure)
    np.testing.assert_array_equal(model.design.offset, exposure[5:])


def test_pirls_that_does_not_converge_says_so(monkeypatch):
    """PIRLS stopped after one iteration at the optimum: a ConvergenceWarning with the
    iteration count (the fit itself goes on)."""
    import bayesmix.ml.glmm_laplace as laplace

    model = bmx.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", data("cbpp"), "binomial"
    )
    monkeypatch.setattr(laplace, "_PIRLS_MAX", 1)
    with pytest.warns(bmx.ConvergenceWarning, match="did not converge in 1 iterations"):
        model.fit()


@pytest.mark.parametrize(
    "case, formula, name",
    [
        ("G04_arabidopsis_poisson_int_laplace", ARABIDOPSIS + " + (1 | popu) + (1 | popu:gen)",
         "Arabidopsis_f"),
        ("G03_arabidopsis_poisson_slope_laplace",
         ARABIDOPSIS + " + (nutrient | popu) + (1 | popu:gen)", "Arabidopsis_f"),
        ("G18_simpois_slope_laplace", "y ~ x + (x | g)", "sim_pois_slope"),
    ],
)  # fmt: skip
def test_conditional_modes_and_variances_match_lme4(case, formula, name):
    """ranef(): lme4's conditional modes (1e-4) and conditional SDs (condVar, 1e-4
    relative), both at the Laplace weights of the mode."""
    fit = bmx.glmm(formula, data(name), "poisson").fit()
    ref = reference(case)["ranef"]
    tables = fit.ranef()
    for group, part in ref.items():
        for term, modes in part["mode"].items():
            ours = tables[group].xs(r_term(term, FACTORS), level="term").reindex(part["levels"])
            np.testing.assert_allclose(ours["estimate"], modes, atol=1e-4)
            np.testing.assert_allclose(ours["std_error"], part["condsd"][term], rtol=1e-4)


@pytest.mark.parametrize("case", ["G21_simzip_glmmTMB", "G25_arabidopsis_poisson_slope_glmmTMB"])
def test_conditional_modes_match_glmmtmb(fits, case):
    """glmmTMB's modes (1e-5). Its condsd comes from the joint precision of the random
    and fixed effects (sdreport), a different quantity from lme4's condVar, so it is
    not compared."""
    ref, tables = reference(case)["ranef"], fits[case].ranef()
    for group, part in ref.items():
        for term, modes in part["mode"].items():
            ours = tables[group].xs(r_term(term, FACTORS), level="term").reindex(part["levels"])
            np.testing.assert_allclose(ours["estimate"], modes, atol=1e-5)
