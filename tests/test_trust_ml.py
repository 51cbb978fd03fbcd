"""Trust in the ML/REML engine: weights, offsets, scales, convergence and degenerate fits.

References are lme4 1.1-31 / nlme 3.1-162 fits in tests/refs/trust/ (see the
README there). House tolerances: logLik 1e-6 relative, fixed effects 1e-5
relative, standard errors 1e-4 relative, theta and SDs 1e-3.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import (
    ArgumentError,
    ConvergenceWarning,
    DataWarning,
    FitError,
    SingularFitWarning,
)
from bayesmix.ml import fit as ml_fit
from bayesmix.ml import optimise as ml_optimise
from bayesmix.ml.compare import anova
from bayesmix.ml.fit import criterion_at, fit_estimates
from bayesmix.spec.design import build_design

sys.path.insert(0, str(Path(__file__).parent))
from lme4_cases import load_case  # noqa: E402

TRUST = Path(__file__).parent / "refs" / "trust"
LOGLIK_RTOL, FIXEF_RTOL, SE_RTOL, THETA_TOL = 1e-6, 1e-5, 1e-4, 1e-3


def ref(name: str) -> dict:
    return json.loads((TRUST / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    data = bmx.load_dataset("sleepstudy")
    data["w"] = 1.0 + data["Days"] % 3  # the references' weights rule
    data["o5"] = 5.0 * data["Days"]
    return data


def quiet_fit(model, method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of the reference fits may warn
        return model.fit(method)


def assert_matches(fit, expected: dict) -> None:
    assert fit.loglik == pytest.approx(expected["logLik"], rel=LOGLIK_RTOL)
    fe = fit.fixef()
    np.testing.assert_allclose(fe["estimate"], list(expected["fixef"].values()), rtol=FIXEF_RTOL)
    np.testing.assert_allclose(fe["std_error"], list(expected["fixef_se"].values()), rtol=SE_RTOL)
    np.testing.assert_allclose(fit.sigma, expected["sigma"], rtol=THETA_TOL)
    if "theta" in expected:
        np.testing.assert_allclose(fit.theta, list(expected["theta"].values()), atol=THETA_TOL)
    np.testing.assert_allclose(fit.fitted(), expected["fitted"], rtol=1e-5)
    assert fit.df == expected["df"] and fit.nobs == expected["nobs"]


# ------------------------------------------------------------ offsets/weights
CASES = {
    "offset_sleepstudy": ("Reaction ~ Days + offset(10*Days) + (Days|Subject)", {}),
    "weights_sleepstudy": ("Reaction ~ Days + (Days|Subject)", {"weights": "w"}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_offset_and_weights_match_lme4(sleep, case, method):
    formula, options = CASES[case]
    expected = ref(f"{case}_{method.lower()}")
    fit = quiet_fit(bmx.lmm(formula, sleep, **options), method)
    assert_matches(fit, expected)
    criterion = expected["REMLcrit"] if method == "REML" else expected["deviance"]
    assert -2 * fit.loglik == pytest.approx(criterion, rel=LOGLIK_RTOL)
    # predictions include the offset, with and without the random effects
    first5 = expected["predict_first5"]
    np.testing.assert_allclose(fit.predict(sleep.iloc[:5]), first5["newdata_with_re"], rtol=1e-5)
    np.testing.assert_allclose(
        fit.predict(sleep.iloc[:5], include_random=False), first5["newdata_re_form_NA"], rtol=1e-9
    )
    np.testing.assert_allclose(
        fit.predict(include_random=False)[:5], first5["nonewdata_re_form_NA"], rtol=1e-9
    )


def test_offset_shifts_the_slope_and_residuals_are_on_the_response_scale(sleep):
    expected = ref("offset_sleepstudy_ml")
    fit = bmx.lmm("Reaction ~ Days + offset(10*Days) + (Days|Subject)", sleep).fit("ML")
    plain = bmx.lmm("Reaction ~ Days + (Days|Subject)", sleep).fit("ML")
    assert fit.loglik == pytest.approx(plain.loglik, abs=1e-7)
    assert fit.fixef()["estimate"]["Days"] == pytest.approx(
        plain.fixef()["estimate"]["Days"] - 10, abs=1e-6
    )
    assert expected["no_offset_fit"]["logLik"] == pytest.approx(plain.loglik, rel=LOGLIK_RTOL)
    y = sleep["Reaction"].to_numpy()
    np.testing.assert_allclose(fit.residuals(), y - fit.fitted(), rtol=1e-12)
    np.testing.assert_allclose(fit.fitted(), plain.fitted(), rtol=1e-6)


def test_offset_argument_with_weights_matches_lme4(sleep):
    expected = ref("offset_weights_sleepstudy_ml")
    model = bmx.lmm("Reaction ~ Days + (Days|Subject)", sleep, offset="o5", weights="w")
    fit = quiet_fit(model, "ML")
    assert_matches(fit, expected)
    first5 = expected["predict_first5"]  # lme4 drops an offset= argument for newdata
    np.testing.assert_allclose(
        fit.predict(sleep.iloc[:5]), first5["with_offset_with_re"], rtol=1e-5
    )
    np.testing.assert_allclose(
        fit.predict(sleep.iloc[:5], include_random=False),
        first5["with_offset_re_form_NA"],
        rtol=1e-9,
    )


def test_weighted_pearson_residuals_are_lme4s(sleep):
    fit = bmx.lmm("Reaction ~ Days + (Days|Subject)", sleep, weights="w").fit()
    response = sleep["Reaction"].to_numpy() - fit.fitted()
    np.testing.assert_allclose(fit.residuals("response"), response, rtol=1e-12)
    expected = np.sqrt(sleep["w"].to_numpy()) * response / fit.sigma
    np.testing.assert_allclose(fit.residuals("pearson"), expected, rtol=1e-12)
    # with weights w the Pearson residuals have unit variance: mean square ~ (n-p)/n-ish
    assert np.mean(fit.residuals("pearson") ** 2) < 1.0


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_gls_with_weights_matches_nlme(sleep, method):
    expected = ref(f"gls_weights_sleepstudy_{method.lower()}")
    fit = quiet_fit(bmx.gls("Reaction ~ Days", sleep, weights="w"), method)
    # nlme's gls vcov uses the REML-type sigma for ML fits too; so do gls's (nlme's) conventions
    assert_matches(fit, expected)


def test_anova_of_weighted_fits(sleep):
    small = bmx.lmm("Reaction ~ Days + (1|Subject)", sleep, weights="w").fit("ML")
    large = bmx.lmm("Reaction ~ Days + (Days|Subject)", sleep, weights="w").fit("ML")
    table = anova(small, large)
    assert table["L.Ratio"].iloc[1] == pytest.approx(2 * (large.loglik - small.loglik), rel=1e-12)
    assert list(table["df"]) == [4, 6]


# ------------------------------------------------------------- convergence
@pytest.fixture(scope="module")
def early_stop():
    data = pd.read_csv(TRUST / "early_stop_synthetic.csv")
    return build_design("y ~ 1 + x + (1 + x | g1) + (1 | g2)", data), ref("early_stop_synthetic")


def test_early_stop_case_reaches_lme4s_optimum(early_stop):
    design, expected = early_stop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = fit_estimates(design, "ML")
    best = max(fit["logLik"] for fit in expected["fits"].values())
    assert est.loglik >= best - 1e-7
    assert est.converged
    lme4 = expected["fits"]["nloptwrap"]
    np.testing.assert_allclose(est.theta, list(lme4["theta"].values()), atol=THETA_TOL)
    np.testing.assert_allclose(est.beta, list(lme4["fixef"].values()), rtol=FIXEF_RTOL)


def test_polishing_rescues_a_bobyqa_that_stops_early(early_stop, monkeypatch):
    design, expected = early_stop
    # a sloppy BOBYQA (relative tolerance 1e-7 on a deviance of 8.7e4) stops far
    # short; the gradient search is switched off (even this sloppy, it does not)
    monkeypatch.setattr(ml_optimise, "_FTOL_REL", 1e-7)
    optimise = ml_optimise.optimise
    monkeypatch.setattr(ml_fit, "optimise", lambda *a, **k: optimise(*a, **{**k, "gradient": None}))
    monkeypatch.setattr(ml_optimise, "DECREMENT_TOLERANCE", np.inf)  # no polishing
    sloppy = fit_estimates(design, "ML")
    best = max(fit["logLik"] for fit in expected["fits"].values())
    assert sloppy.loglik < best - 1e-5
    monkeypatch.setattr(ml_optimise, "DECREMENT_TOLERANCE", 1e-8)
    polished = fit_estimates(design, "ML")
    assert polished.loglik >= best - 1e-7 and polished.converged
    assert "Newton/restart round" in polished.message


def test_measure_gives_exact_derivatives_of_a_quadratic():
    H = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])
    x_min = np.array([0.3, -0.2, 0.5])

    def quadratic(x):
        d = x - x_min
        return 0.5 * d @ H @ d

    x = x_min + np.array([0.01, 0.02, -0.01])
    check = ml_optimise.measure(quadratic, x, quadratic(x), np.full(3, -np.inf))
    np.testing.assert_allclose(check.gradient, H @ (x - x_min), rtol=1e-6)
    np.testing.assert_allclose(check.hessian, H, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x + check.newton_step, x_min, atol=1e-8)
    assert check.decrement == pytest.approx(quadratic(x), rel=1e-6)
    # lme4's scaled gradient min(|H^-1 g|, |g|) = (0.01, 0.02, 0.01): above its 2e-3
    np.testing.assert_allclose(check.scaled_gradient, [0.01, 0.02, 0.01], rtol=1e-5)
    assert not check.at_minimum and not check.passes


def test_measure_flags_saddles_and_skips_bounded_coordinates():
    def saddle(x):
        return x[0] ** 2 - x[1] ** 2 + (x[2] + 1.0) ** 2

    x = np.zeros(3)
    check = ml_optimise.measure(saddle, x, saddle(x), np.full(3, -np.inf))
    assert check.negative_eigenvalues == 1 and not check.passes
    # x[2] on its bound 0 (a singular fit): left out, and flat directions of the
    # remaining theta are not taken for saddles
    check = ml_optimise.measure(saddle, x, saddle(x), np.array([-np.inf, -np.inf, 0.0]))
    assert list(check.free) == [True, True, False] and check.gradient[2] == 0.0
    assert check.hessian.shape == (2, 2) and check.negative_eigenvalues == 0


def test_convergence_failure_warns_and_clears_converged():
    design = build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    with pytest.warns(ConvergenceWarning, match="MAXEVAL"):
        est = fit_estimates(design, "REML", max_evaluations=5)
    assert not est.converged
    with pytest.raises(ArgumentError, match="max_evaluations must be a positive integer"):
        fit_estimates(design, "REML", max_evaluations=0)
    with pytest.raises(ArgumentError, match="start needs 3 finite theta values"):
        fit_estimates(design, "REML", start=[1.0, 0.0])


def test_sleepstudy_fits_stay_cheap():
    design = build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    # BOBYQA took 44 (REML) and 58 (ML) evaluations before the optimum check was
    # added; the check adds 9 for three free theta (6 for the gradient, 3 cross terms)
    assert fit_estimates(design, "REML").n_evaluations <= 70
    assert fit_estimates(design, "ML").n_evaluations <= 75


# ------------------------------------------------------------ response scale
@pytest.mark.parametrize("c", [1e-150, 1e150])
@pytest.mark.parametrize("method", ["ML", "REML"])
def test_loglik_of_a_rescaled_response(sleep, c, method):
    formula = "Reaction ~ Days + (Days | Subject)"
    base = fit_estimates(build_design(formula, sleep), method)
    scaled_data = sleep.assign(Reaction=sleep["Reaction"] * c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled = fit_estimates(build_design(formula, scaled_data), method)
    n, p = base.n_obs, 2
    k = n - p if method == "REML" else n
    assert scaled.loglik == pytest.approx(base.loglik - k * np.log(c), rel=1e-8)
    assert np.isfinite(scaled.loglik) and scaled.converged
    np.testing.assert_allclose(scaled.beta, base.beta * c, rtol=1e-8)
    np.testing.assert_allclose(scaled.sigma, base.sigma * c, rtol=1e-7)
    np.testing.assert_allclose(scaled.vcov_beta, base.vcov_beta * c**2, rtol=1e-6)
    np.testing.assert_allclose(scaled.covariances[0], base.covariances[0] * c**2, rtol=1e-6)
    np.testing.assert_allclose(scaled.theta, base.theta, rtol=1e-6, atol=1e-8)


def test_criterion_shift_of_a_1000_fold_response(sleep):
    design = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    big = build_design(
        "Reaction ~ Days + (Days | Subject)", sleep.assign(Reaction=1e3 * sleep.Reaction)
    )
    theta = np.array([0.9, 0.02, 0.2])
    n, p = 180, 2
    for method, k in (("ML", n), ("REML", n - p)):
        shift = criterion_at(big, theta, method) - criterion_at(design, theta, method)
        assert shift == pytest.approx(2 * k * np.log(1e3), rel=1e-10)


@pytest.mark.parametrize("c", [1e200, 1e-200])
def test_unrepresentable_response_scales_are_refused(sleep, c):
    design = build_design(
        "Reaction ~ Days + (Days | Subject)", sleep.assign(Reaction=sleep.Reaction * c)
    )
    with pytest.raises(FitError, match="outside double precision; divide the response"):
        fit_estimates(design, "ML")


# ------------------------------------------------------ ill-conditioned X
@pytest.mark.parametrize("name", ["x1", "x2"])
def test_large_offset_predictor_is_fitted_accurately(sleep, name):
    expected = ref("large_offset_predictor_ml")
    data = sleep.assign(x1=sleep.Days + 1e6, x2=1.7e9 + 1e3 * sleep.Days)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bmx.lmm(f"Reaction ~ {name} + (1|Subject)", data).fit("ML")
    scale_warnings = [w for w in caught if "very different scales" in str(w.message)]
    assert len(scale_warnings) == (1 if name == "x2" else 0)  # as lme4's check.scaleX
    assert all(issubclass(w.category, DataWarning) for w in caught)
    # both are exact reparametrisations of the Days fit (lme4 loses 2e-5 on x2)
    days = expected["Days_reference"]
    assert fit.loglik == pytest.approx(days["logLik"], rel=LOGLIK_RTOL, abs=1e-6)
    exact = list(expected["fits"][name]["exact_from_reparametrised_Days_fit"].values())
    np.testing.assert_allclose(fit.fixef()["estimate"], exact, rtol=FIXEF_RTOL)
    # vcov maps exactly: beta = T beta_Days with T the reparametrisation
    plain = bmx.lmm("Reaction ~ Days + (1|Subject)", sleep).fit("ML")
    a, s = (1e6, 1.0) if name == "x1" else (1.7e9, 1e3)  # x = a + s * Days
    T = np.array([[1.0, -a / s], [0.0, 1.0 / s]])
    np.testing.assert_allclose(fit.vcov().to_numpy(), T @ plain.vcov().to_numpy() @ T.T, rtol=1e-6)
    if name == "x1":  # lme4 is accurate here
        se = list(expected["fits"]["x1"]["fixef_se"].values())
        np.testing.assert_allclose(fit.fixef()["std_error"], se, rtol=SE_RTOL)


@pytest.mark.parametrize("case", ["orthodont_reml", "sleepstudy_slope_corr_reml", "orthodont_ml"])
def test_criterion_at_lme4_theta_equals_lme4s(case):
    design, expected, method = load_case(case)
    theta = np.array(list(expected["theta"].values()))
    assert criterion_at(design, theta, method) == pytest.approx(expected["deviance"], abs=1e-9)


# --------------------------------------------------------- degenerate fits
GROUPS = np.repeat(list("abcdef"), 5)
X5 = np.tile(np.arange(5.0), 6)


def test_constant_response_is_refused():
    data = pd.DataFrame({"yield_": 3.0, "g": GROUPS})
    with pytest.raises(FitError, match="the response 'yield_' is constant"):
        bmx.lmm("yield_ ~ 1 + (1|g)", data).fit()


def test_response_reproduced_by_the_fixed_effects_is_refused():
    data = pd.DataFrame({"y": 2 + 3 * X5, "x": X5, "g": GROUPS})
    with pytest.raises(FitError, match="the fixed effects reproduce the response 'y' exactly"):
        bmx.lmm("y ~ x + (1|g)", data).fit("ML")


def test_response_reproduced_by_the_random_effects_is_refused():
    # constant within each group: sigma -> 0 and the likelihood grows without bound
    data = pd.DataFrame(
        {"y": 2 + 3 * X5 + np.repeat([1.0, 2, 3, 5, 4, 7], 5), "x": X5, "g": GROUPS}
    )
    for method in ("ML", "REML"):
        with pytest.raises(FitError, match=r"degenerate: \(1 \| g\) reproduce the response 'y'"):
            bmx.lmm("y ~ x + (1|g)", data).fit(method)


def test_saturated_fixed_part_is_refused():
    data = pd.DataFrame({"y": [1.0, 2, 4, 3, 5, 6], "f": list("abcdef"), "g": list("aabbcc")})
    with pytest.raises(FitError, match="6 columns for 6 observations"):
        bmx.lmm("y ~ f + (1|g)", data).fit("ML")
    with pytest.raises(FitError, match="6 observations are too few for 6 fixed effects"):
        bmx.lmm("y ~ f + (1|g)", data).fit("REML")


def test_random_effects_outnumbering_observations_are_refused(sleep):
    few = sleep[sleep["Days"] < 2]  # 36 rows; (Days | Subject): 18 x 2 = 36 effects
    with pytest.raises(FitError, match=r"\(1 \+ Days \| Subject\) has 36 random effects for 36"):
        bmx.lmm("Reaction ~ Days + (Days | Subject)", few).fit()


def test_badly_scaled_random_effect_column_warns_by_name_and_fits_exactly(sleep):
    data = sleep.assign(Days2=sleep.Days * 1e4)
    with pytest.warns(DataWarning) as record:
        fit = bmx.lmm("Reaction ~ Days + (Days2 | Subject)", data).fit()
    assert len(record) == 1  # no SingularFitWarning, no ConvergenceWarning
    assert "very different scales: Days2 | Subject (SD 2.87e+04)" in str(record[0].message)
    # an exact reparametrisation of (Days | Subject): theta of Days2 is 1e-4 of Days's
    plain = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep).fit()
    assert fit.loglik == pytest.approx(plain.loglik, abs=1e-8)
    np.testing.assert_allclose(fit.theta, plain.theta * [1, 1e-4, 1e-4], rtol=2e-3)
    assert fit.converged and not fit.singular


# --------------------------------------------------------- singular messages
def test_singular_message_names_a_zero_variance():
    data = pd.DataFrame({"y": [1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5], "g": list("aabbccdd")})
    with pytest.warns(
        SingularFitWarning, match=r"the variance of Intercept \| g is estimated as ~0"
    ):
        fit_estimates(build_design("y ~ 1 + (1 | g)", data), "REML")


@pytest.mark.parametrize("ratio, sign", [(0.5, "+1"), (-0.5, "-1")])
def test_singular_message_names_a_unit_correlation(ratio, sign):
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(8), 6)
    x = np.tile(np.arange(6.0), 8)
    b0 = rng.normal(0, 2, 8)
    y = 1 + 0.5 * x + b0[g] + ratio * b0[g] * x + rng.normal(0, 1, 48)
    data = pd.DataFrame({"y": np.round(y, 4), "x": x, "g": [f"g{i}" for i in g]})
    with pytest.warns(SingularFitWarning) as record:
        est = fit_estimates(build_design("y ~ x + (x | g)", data), "ML")
    message = str(record[0].message)
    assert f"the correlation of (Intercept, x | g) is estimated as {sign}" in message
    assert "variance" not in message
    cov = est.covariances[0]
    assert cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) == pytest.approx(float(sign), abs=1e-6)
