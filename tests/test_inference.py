"""Denominator degrees of freedom, F tests, intervals and ranova against lmerTest, pbkrtest
and lme4 (``tests/refs/inference``, made by the ``make_*.R`` scripts there).

Tolerances: Satterthwaite and Kenward-Roger df, t, F and p within 1e-3 relative (the
issue's); lme4's profile intervals within 1e-3 (lme4 interpolates splines between grid
points, bayesmix solves for each end); Wald intervals to 1e-7; ranova LRTs to 1e-4.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from inference_refs import LMER_CASES, REFS, dataset, reference, table

import bayesmix as bmx
from bayesmix.errors import ArgumentError
from bayesmix.ml.fit import estimates_at
from bayesmix.ml.results import MLResult

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.errors.SingularFitWarning")

FITS: dict = {}


def _theta_key(name: str) -> tuple:
    """A theta name in a form both spellings share (``popu:gen.nutrient[8].Intercept`` and
    lme4's ``gen:popu.nutrient8.(Intercept)``)."""
    group, *terms = name.split(".")
    terms = [re.sub(r"\[(.*?)\]", r"\1", t).replace("(Intercept)", "Intercept") for t in terms]
    return (frozenset(group.split(":")), tuple(terms))


def fitted(case: str, at_r_theta: bool = False):
    """The fit at bayesmix's optimum, or its estimates at lme4's ``theta``.

    lme4 stops short of the optimum (by up to 3e-6 in logLik on Orthodont's slope
    model, which moves SEs by 3e-4): at lme4's ``theta`` the comparison measures the
    inference code alone, so its tolerances are tight.
    """
    if (case, at_r_theta) not in FITS:
        formula, method = LMER_CASES.get(case, ("score ~ Machine + (1 | Worker/Machine)", "REML"))
        model = bmx.lmm(formula, dataset(case))
        fit = model.fit(method=method)
        if at_r_theta:
            r_theta = {_theta_key(k): v for k, v in reference(case)["theta"].items()}
            theta = np.array([r_theta[_theta_key(n)] for n in fit.estimates.theta_names])
            fit = MLResult(fit.design, estimates_at(fit.design, theta, method), model)
        FITS[case, at_r_theta] = fit
    return FITS[case, at_r_theta]


def close(ours, theirs, rtol, atol=0.0):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def tolerance(case: str, at_r_theta: bool) -> float:
    """1e-4 at lme4's theta; 1e-3 at bayesmix's optimum (the issue's), except Orthodont's
    slope model, where lme4's logLik is 2.8e-6 below the optimum and p-values move 1.2e-3."""
    if at_r_theta:
        return 1e-4
    return 5e-3 if case == "orthodont_age_sex_slope_reml" else 1e-3


def close_p(ours, theirs, rtol=1e-3):
    """p-values to ``rtol``; below 1e-4 on the log scale (a small p's relative error grows
    with its t or F: 1e-5 in t is 1e-3 in a p of 1e-7)."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    tiny = theirs < 1e-4
    close(ours[~tiny], theirs[~tiny], rtol)
    close(np.log(ours[tiny]), np.log(theirs[tiny]), rtol)


def cases_with(key: str) -> list[str]:
    """Cases whose reference has table ``key`` (R errored for some, e.g. KR on ML fits)."""
    return [
        c
        for c in [*LMER_CASES, "C1_machines_lmertest"]
        if (reference(c).get(key) or {}).get("table")
    ]


SUMMARY = {"summary_satterthwaite": "Satterthwaite", "summary_kenward_roger": "Kenward-Roger"}
ROUND2 = {"satterthwaite": "Satterthwaite", "kenward_roger": "Kenward-Roger"}


@pytest.mark.parametrize(
    "case,key",
    [(c, k) for k in SUMMARY for c in cases_with(k)]
    + [("C1_machines_lmertest", k) for k in ROUND2],
)
@pytest.mark.parametrize("at_r_theta", [True, False], ids=["at-lme4-theta", "at-own-optimum"])
def test_coefficient_table_matches_lmertest(case, key, at_r_theta):
    ref = table(case, key)
    ddf = {**SUMMARY, **ROUND2}[key]
    ours = fitted(case, at_r_theta).coef_table(ddf)
    rtol = tolerance(case, at_r_theta)
    assert len(ours) == len(ref)
    se = ref["Std. Error"] if "Std. Error" in ref else ref["se"]
    df = ref["df"]
    t = ref["t value"] if "t value" in ref else ref["t"]
    p = ref["Pr(>|t|)"] if "Pr(>|t|)" in ref else ref["p"]
    close(ours["std_error"], se, rtol)
    close(ours["df"], df, rtol)
    close(ours["t_value"], t, rtol)
    close_p(ours["p_value"], p, rtol)


ANOVA = {
    f"anova_type{t}_{k}": (t, d)
    for t in (1, 3)
    for k, d in (("satterthwaite", "Satterthwaite"), ("kenward_roger", "Kenward-Roger"))
}


@pytest.mark.parametrize("case,key", [(c, k) for k in ANOVA for c in cases_with(k)])
@pytest.mark.parametrize("at_r_theta", [True, False], ids=["at-lme4-theta", "at-own-optimum"])
def test_term_anova_matches_lmertest(case, key, at_r_theta):
    type_, ddf = ANOVA[key]
    ref = table(case, key)
    ours = fitted(case, at_r_theta).anova(type=type_, ddf=ddf)
    rtol = tolerance(case, at_r_theta)
    assert list(ours.index) == list(ref.index)
    close(ours["num_df"], ref["NumDF"], 0)
    close(ours["den_df"], ref["DenDF"], rtol)
    close(ours["F"], ref["F value"] if "F value" in ref else ref["F"], rtol)
    close_p(ours["p_value"], ref["Pr(>F)"] if "Pr(>F)" in ref else ref["p"], rtol)
    close(ours["sum_sq"], ref["Sum Sq"] if "Sum Sq" in ref else ref["SumSq"], rtol)


@pytest.mark.parametrize(
    "case", [c for c in cases_with("pbkrtest_vcovAdj") if reference(c)["method"] == "REML"]
)
def test_kenward_roger_adjusted_vcov_matches_pbkrtest(case):
    rows = reference(case)["pbkrtest_vcovAdj"]["table"]
    ref = np.array([[v for k, v in row.items() if k != "term"] for row in rows], dtype=float)
    from bayesmix.inference.kenward_roger import KenwardRoger

    close(KenwardRoger.of(fitted(case, True)).vcov_adjusted, ref, 1e-6, atol=1e-9)


def _row_key(name: str) -> tuple:
    """A confint row name both spellings share (``sd_nutrient[8]|popu:gen`` and lme4's
    ``sd_nutrient8|gen:popu``); fixed effects keep their position."""
    if "|" not in name:
        return (name,)
    head, group = name.split("|")
    return (re.sub(r"\[(.*?)\]", r"\1", head), frozenset(group.split(":")))


def _in_r_order(ours, ref):
    """Our variance rows in lme4's order (lme4 sorts bars by their number of levels)."""
    keys = [_row_key(n) for n in ours.index]
    n_var = sum("|" in n for n in ours.index) + 1  # + sigma
    order = [keys.index(_row_key(n)) for n in ref.index[:n_var]] + list(range(n_var, len(keys)))
    return ours.iloc[order]


@pytest.mark.parametrize("case", cases_with("confint_profile"))
def test_profile_intervals_match_lme4(case):
    ref_table = table(case, "confint_profile")
    ref = ref_table.iloc[:, :2].to_numpy(dtype=float)
    fit = fitted(case)
    ours = _in_r_order(fit.confint(), ref_table)
    assert ours.shape == ref.shape
    known = np.isfinite(ref)
    scale = np.maximum(np.abs(ref[known]), 1.0)
    assert np.all(np.abs(ours.to_numpy()[known] - ref[known]) <= 1e-3 * scale), (ours, ref)


@pytest.mark.parametrize("case", cases_with("confint_wald"))
def test_wald_intervals_match_lme4_exactly(case):
    ref_table = table(case, "confint_wald")
    ref = ref_table.iloc[:, :2].to_numpy(dtype=float)
    ours = _in_r_order(fitted(case, True).confint(method="Wald"), ref_table).to_numpy()
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    close(ours[~np.isnan(ref)], ref[~np.isnan(ref)], 1e-7)


@pytest.mark.parametrize("case", cases_with("ranova"))
def test_ranova_matches_lmertest(case):
    ref = table(case, "ranova")
    ours = fitted(case).ranova()
    assert len(ours) == len(ref)
    close(sorted(ours["logLik"]), sorted(ref["logLik"]), 1e-6)
    # lme4 orders the bars by their number of levels, bayesmix as written: match by LRT
    mine, theirs = ours.iloc[1:].sort_values("LRT"), ref.iloc[1:].sort_values("LRT")
    close(mine["LRT"], theirs["LRT"], 1e-4)
    close(mine["npar"], theirs["npar"], 0)
    close_p(mine["p_value"], theirs.iloc[:, -1])


def test_profile_at_a_boundary_is_one_sided_and_says_so():
    fit = fitted("arabidopsis_intercept_popu_gen_ml")  # lme4: sd of gen:popu in [0, 0.337]
    with pytest.warns(bmx.errors.SingularFitWarning, match="one-sided"):
        ci = fit.confint(parm="sd_(Intercept)|popu:gen")
    assert ci.iloc[0, 0] == 0.0
    assert ci.attrs["at_bound"] == [f"{ci.index[0]} (lower)"]


def test_summary_prints_lmertest_columns():
    text = str(fitted("sleepstudy_slope_reml").summary(ddf="Satterthwaite"))
    assert "Satterthwaite's method" in text
    assert "df t value Pr(>|t|)" in text and "<2e-16" in text


def test_bad_ddf_and_kenward_roger_on_ml_are_refused():
    fit = fitted("sleepstudy_slope_ml")
    with pytest.raises(ArgumentError, match="ddf must be"):
        fit.coef_table("Welch")
    with pytest.raises(ArgumentError, match="REML"):
        fit.coef_table("Kenward-Roger")
    with pytest.raises(ArgumentError, match="level"):
        fit.confint(level=95)
    with pytest.raises(ArgumentError, match="parm"):
        fit.confint(parm="nope")


def test_satterthwaite_without_random_effects_is_residual_df():
    data = dataset("sleepstudy_slope_ml")
    fit = bmx.gls("Reaction ~ Days", data).fit()
    table_ = fit.coef_table()
    assert np.all(table_["df"] == len(data) - 2)
    assert math.isclose(
        table_["p_value"].iloc[1],
        2 * __import__("scipy").stats.t.sf(abs(table_["t_value"].iloc[1]), len(data) - 2),
    )


def test_satterthwaite_on_insteval_matches_lmertest():
    """73,421 rows, 4,100 random effects: feasible (lmerTest spends ~25 s; see
    bench/bench_inference.py) and equal to lmerTest's table."""
    ref = reference("timing_insteval_profile")["insteval"]
    data = bmx.load_dataset("InstEval")[["y", "service", "s", "d", "dept"]]
    levels = ref["dataset"]["levels"]
    data["dept"] = data["dept"].cat.reorder_categories([str(v) for v in levels["dept"]])
    fit = bmx.lmm(ref["formula"], data).fit(method="REML")
    rows = ref["summary_satterthwaite"]["table"]
    ours = fit.coef_table()
    close(ours["df"], [r["df"] for r in rows], 1e-3)
    close_p(ours["p_value"], [r["Pr(>|t|)"] for r in rows])
    anova = fit.anova()
    theirs = ref["anova_type3_satterthwaite"]["table"]
    close(anova["den_df"], [r["DenDF"] for r in theirs], 1e-3)
    close(anova["F"], [r["F value"] for r in theirs], 1e-3)


def test_ddf_refused_for_a_bayesian_result():
    from bayesmix.inference.tables import check_ddf

    class Posterior:  # what a BayesResult offers: no ML estimates
        estimates = None

    with pytest.raises(ArgumentError, match="posterior"):
        check_ddf(Posterior(), "Satterthwaite")


@pytest.mark.parametrize("case", ["sleepstudy_slope_reml", "C1_machines_lmertest"])
def test_drop1_matches_lmertest(case):
    ref_case = "C2_machines_ranova" if case == "C1_machines_lmertest" else case
    ref = table(ref_case, "drop1")
    ours = fitted(case, True).drop1()
    assert list(ours.index) == list(ref.index)
    close(ours["den_df"], ref["DenDF"], 1e-4)
    close(ours["F"], ref["F value"] if "F value" in ref else ref["F"], 1e-4)


def test_drop1_keeps_only_terms_outside_interactions():
    fit = fitted("orthodont_ageF_sex_unbalanced_reml")
    assert list(fit.drop1().index) == ["ageF:Sex"]


def test_degrees_of_freedom_and_profiles_do_not_depend_on_units():
    """A covariate in nanometres or a response in 1e-8 units changes no df, p or interval
    (derivatives and profile steps are taken on the working scale)."""
    data = dataset("sleepstudy_slope_ml")
    base = bmx.lmm("Reaction ~ Days + (Days | Subject)", data).fit(method="ML")
    data = data.assign(D=data["Days"] * 1e7, R=data["Reaction"] * 1e-8)
    wide = bmx.lmm("Reaction ~ D + (D | Subject)", data).fit(method="ML")
    small = bmx.lmm("R ~ Days + (Days | Subject)", data).fit(method="ML")
    for other in (wide, small):
        close(other.coef_table()["df"], base.coef_table()["df"], 1e-4)
    ci, ci_small = base.confint(), small.confint()
    scale = np.array([1e-8, 1, 1e-8, 1e-8, 1e-8, 1e-8])[:, None]  # cor is unitless
    close(ci_small.to_numpy(), ci.to_numpy() * scale, 1e-4)


def test_containment_f_tests_use_nlme_term_df():
    data = dataset("orthodont_lme_intercept_reml_intervals")
    fit = bmx.lmm("distance ~ age * Sex + (1 | Subject)", data).fit()
    # nlme: anova(lme(distance ~ age * Sex, random = ~1 | Subject, Orthodont)) denDF
    assert list(fit.anova(ddf="containment")["den_df"]) == [79, 25, 79]
    assert list(fit.coef_table("containment")["df"]) == [79, 79, 25, 79]


@pytest.mark.parametrize("ddf", ["Satterthwaite", "Kenward-Roger"])
def test_type3_of_terms_contained_in_interactions(ddf):
    """Unbalanced 3 x 3 factors and a factor-by-covariate interaction (make_contained_terms.R).

    F is the same hypothesis's in any basis; Satterthwaite's combined DenDF of A and B
    depends on the rows' basis (lmerTest orthogonalises treatment rows, bayesmix uses
    sum-coded ones): measured 3.3e-5 relative apart here, so 1e-4 is asserted.
    """
    ref = reference("contained_terms")
    data = pd.read_csv(REFS / "contained_terms.csv")
    for column in "ABg":
        data[column] = data[column].astype("category")
    model = bmx.lmm("y ~ A * B + A * x + (1 | g)", data)
    fit = model.fit()
    fit = MLResult(fit.design, estimates_at(fit.design, np.atleast_1d(ref["theta"]), "REML"), model)
    rows = ref["satterthwaite" if ddf == "Satterthwaite" else "kenward_roger"]
    ours = fit.anova(type=3, ddf=ddf)
    assert list(ours.index) == [r["term"] for r in rows]
    close(ours["F"], [r["F"] for r in rows], 1e-6)
    close(ours["den_df"], [r["DenDF"] for r in rows], 1e-4)
    close_p(ours["p_value"], [r["p"] for r in rows], 1e-4)
