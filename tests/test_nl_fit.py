"""Lindstrom-Bates ML/REML fits of nonlinear mixed models, checked against nlme."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import ConvergenceWarning, FitError, SingularFitWarning
from bayesmix.ml.compare import anova
from bayesmix.ml.results import MLResult
from bayesmix.nonlinear.ml_fit import NLMResult
from bayesmix.nonlinear_model import nlmm

REFS = Path(__file__).parent / "refs"
SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
ORANGE_PARAMS = {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"}


def theoph_params(three: bool) -> dict[str, str]:
    return {
        "lKe": "1 + (1 | Subject)" if three else "1",
        "lKa": "1 + (1 | Subject)",
        "lCl": "1 + (1 | Subject)",
    }


@pytest.fixture(scope="module")
def fits(theoph):
    """The four nlme reference fits, keyed like the reference files."""
    out = {}
    for case in ("diag2_ml", "diag2_reml", "diag3_ml", "diag3_reml"):
        model = nlmm(
            SSFOL, theoph, theoph_params(case.startswith("diag3")), cov={"Subject": "diagonal"}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)  # diag3: lKe SD ~ 0
            out[case] = model.fit(method=case.split("_")[1].upper())
    return out


@pytest.mark.parametrize("case", ["diag2_ml", "diag2_reml", "diag3_ml", "diag3_reml"])
def test_theoph_agrees_with_nlme(fits, case):
    ref = json.loads((REFS / f"theoph_nlme_{case}.json").read_text())
    fit = fits[case]
    assert isinstance(fit, MLResult) and fit.converged
    assert fit.method == ref["method"] and fit.df == ref["df"] and fit.nobs == ref["nobs"]
    # criteria of the linearised model at convergence (nlme's BIC convention)
    assert fit.loglik == pytest.approx(ref["logLik"], abs=0.01)
    assert fit.aic == pytest.approx(ref["AIC"], abs=0.01)
    assert fit.bic == fit.bic_nlme == pytest.approx(ref["BIC"], abs=0.01)
    assert "Conventions: nlme's" in str(fit.summary())
    fixef, unadjusted = fit.fixef(), fit.fixef(adjust_sigma=False)
    for name, value in ref["fixef"].items():
        assert fixef.loc[name, "estimate"] == pytest.approx(value, rel=1e-3)
        # summary's SEs (nlme's adjustSigma for ML fits) and nlme's vcov
        assert fixef.loc[name, "std_error"] == pytest.approx(ref["fixef_se"][name], rel=2e-3)
        expected = ref["fixef_se_vcov"][name]
        assert unadjusted.loc[name, "std_error"] == pytest.approx(expected, rel=2e-3)
    varcorr = fit.varcorr()
    sds = dict(zip(varcorr["var1"].fillna("Residual"), varcorr["sdcor"]))
    for term, sd in ref["varcorr"]["groups"]["Subject"]["sd"].items():
        if sd < 1e-3:  # lKe in diag3: on the boundary, nlme stops at ~3e-5
            assert sds[term] < 1e-3
        else:
            assert sds[term] == pytest.approx(sd, rel=0.02)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=0.02)
    ranef = fit.ranef(wide=True)["Subject"]
    expected = pd.DataFrame(ref["ranef"]["Subject"]).T.loc[ranef.index]
    for term in ranef.columns:
        if expected[term].abs().max() > 1e-3:
            np.testing.assert_allclose(ranef[term], expected[term], atol=5e-3)


def test_reml_variants(fits, theoph):
    """nlme's REML keeps ML's relative covariance; the linearised variant maximises REML."""
    ml, reml = fits["diag2_ml"], fits["diag2_reml"]
    np.testing.assert_allclose(reml.theta, ml.theta, rtol=1e-6)
    n, p = ml.nobs, 3
    assert reml.sigma == pytest.approx(ml.sigma * np.sqrt(n / (n - p)), rel=2e-3)
    model = nlmm(SSFOL, theoph, theoph_params(False), cov="diagonal")
    linearised = model.fit("REML", reml="linearised")
    assert linearised.loglik > reml.loglik
    assert linearised.varcorr()["sdcor"].iloc[0] > reml.varcorr()["sdcor"].iloc[0]
    with pytest.raises(ValueError, match="reml must be"):
        model.fit("REML", reml="exact")


def test_correlated_fit_and_anova(fits, theoph):
    diag2 = fits["diag2_ml"]
    model = nlmm(SSFOL, theoph, theoph_params(False))  # pdSymm by default
    correlated = model.fit()
    assert correlated.converged and correlated.df == diag2.df + 1
    varcorr = correlated.varcorr()
    assert list(varcorr["var2"].dropna()) == ["lCl"]
    assert correlated.loglik >= diag2.loglik - 1e-6
    table = anova(diag2, correlated)
    assert table["Test"].iloc[1] == "1 vs 2"
    ratio = table["L.Ratio"].iloc[1]
    assert ratio == pytest.approx(2 * (correlated.loglik - diag2.loglik), abs=1e-9)
    assert 0 <= ratio < 1 and table["p-value"].iloc[1] > 0.5
    # which parameters get random effects: diag2 nested in diag3 (ML)
    table = anova(diag2, fits["diag3_ml"])
    assert table["df"].tolist() == [6, 7]
    assert table["L.Ratio"].iloc[1] == pytest.approx(0.0, abs=0.01)
    # P&B's fm1Theo.nlme (pdSymm on all three): logLik -173.32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        full = model.update(params={"lKe": "1 + (1 | Subject)"}).fit()
    assert full.loglik == pytest.approx(-173.32, abs=0.01)
    assert "Test" in str(anova(fits["diag3_ml"], full))


def test_reml_fits_with_different_fixed_effects_are_refused(fits, theoph):
    model = nlmm(
        SSFOL, theoph, {**theoph_params(False), "lCl": "1 + Wt + (1 | Subject)"}, cov="diagonal"
    )
    with pytest.raises(bmx.ComparisonError, match="different fixed effects"):
        anova(fits["diag2_reml"], model.fit("REML"))


def test_orange_logistic_matches_published_nlme(orange):
    """Pinheiro & Bates (2000), fm1Oran.nlme: ML fit of SSlogis with a random Asym."""
    fit = nlmm("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, ORANGE_PARAMS).fit()
    fixef = fit.fixef()["estimate"]
    assert fixef["Asym"] == pytest.approx(191.05, rel=1e-3)
    assert fixef["xmid"] == pytest.approx(722.56, rel=1e-3)
    assert fixef["scal"] == pytest.approx(344.16, rel=1e-3)
    sds = fit.varcorr()["sdcor"]
    assert sds.iloc[0] == pytest.approx(31.48, rel=1e-2)
    assert fit.sigma == pytest.approx(7.85, rel=1e-2)
    assert fit.loglik == pytest.approx(-131.58, abs=0.01)
    # the same model as an expression and as a Python function (need start values)
    start = {"Asym": 190, "xmid": 700, "scal": 350}
    expression = nlmm(
        "circumference ~ Asym / (1 + exp((xmid - age) / scal))", orange, ORANGE_PARAMS, start=start
    ).fit()

    def logistic(xp, age, Asym, xmid, scal):
        return Asym / (1 + xp.exp((xmid - age) / scal))

    function = nlmm("circumference", orange, ORANGE_PARAMS, mean=logistic).fit(start=start)
    for other in (expression, function):
        assert other.loglik == pytest.approx(fit.loglik, abs=1e-6)
        np.testing.assert_allclose(other.fixef()["estimate"], fixef, rtol=1e-6)
        assert other.derivatives == "complex step"


def test_results_use_the_nonlinear_mean(orange):
    model = nlmm("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, ORANGE_PARAMS)
    fit = model.fit()
    assert isinstance(fit, NLMResult)
    phi = fit.phi()
    fitted = phi["Asym"] / (1 + np.exp((phi["xmid"] - orange["age"]) / phi["scal"]))
    np.testing.assert_allclose(fit.fitted(), fitted)
    np.testing.assert_allclose(fit.residuals(), orange["circumference"] - fitted)
    np.testing.assert_allclose(fit.predict(orange), fitted)
    population = fit.predict(include_random=False)
    beta = fit.fixef()["estimate"]
    np.testing.assert_allclose(
        population, beta["Asym"] / (1 + np.exp((beta["xmid"] - orange["age"]) / beta["scal"]))
    )
    new = pd.DataFrame({"age": [500.0, 500.0], "Tree": [orange["Tree"].iloc[0], "9"]})
    with pytest.warns(bmx.DataWarning, match="not seen in fitting"):
        predicted = fit.predict(new)
    assert predicted[1] == pytest.approx(population[orange["age"] == 484][0], rel=0.05)
    coef = fit.coef()["Tree"]
    np.testing.assert_allclose(coef["Asym"], beta["Asym"] + fit.ranef(wide=True)["Tree"]["Asym"])
    text = str(fit.summary())
    assert (
        "Nonlinear mixed model fit by maximum likelihood" in text
        and "Asym ~ 1 + (1 | Tree)" in text
    )
    assert "NLMResult ML" in repr(fit)
    refit = fit.update(method="REML")
    assert refit.method == "REML" and refit.fixef().index.tolist() == ["Asym", "xmid", "scal"]


def test_central_differences_when_complex_input_is_rejected(orange):
    def logistic(xp, age, Asym, xmid, scal):
        if np.iscomplexobj(xmid):
            raise TypeError("real input only")
        return Asym / (1 + xp.exp((xmid - age) / scal))

    start = {"Asym": 190, "xmid": 700, "scal": 350}
    fit = nlmm("circumference", orange, ORANGE_PARAMS, mean=logistic, start=start).fit()
    assert fit.derivatives == "central differences"
    assert fit.loglik == pytest.approx(-131.58, abs=0.01)


def test_sparse_pnls_path_agrees_with_the_dense_one(orange, monkeypatch):
    from bayesmix.nonlinear import lb_steps as nl_fit

    model = nlmm("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, ORANGE_PARAMS)
    dense = model.fit()
    monkeypatch.setattr(nl_fit, "_DENSE_JACOBIAN_MAX", 0)  # force the sparse trust-region path
    sparse = model.fit()
    assert sparse.loglik == pytest.approx(dense.loglik, abs=1e-5)
    np.testing.assert_allclose(sparse.fixef()["estimate"], dense.fixef()["estimate"], rtol=1e-5)


def test_start_value_errors(orange):
    expression = "circumference ~ Asym / (1 + exp((xmid - age) / scal))"
    model = nlmm(expression, orange, ORANGE_PARAMS)
    with pytest.raises(FitError, match=r"not self-starting.*start=\{'Asym': \.\.\."):
        model.fit()
    with pytest.raises(FitError, match="no value for the parameter 'scal'"):
        model.fit(start={"Asym": 190, "xmid": 700})
    with pytest.raises(FitError, match="'Asymp'"):
        model.fit(start={"Asymp": 190, "xmid": 700, "scal": 350})
    logged = nlmm("circumference ~ Asym * log(age - xmid) + scal", orange, ORANGE_PARAMS)
    with pytest.raises(
        FitError,
        match=r"not finite at the starting values \(Asym=30, xmid=500, "
        r"scal=1\) in 10 row\(s\)",
    ):
        logged.fit(start={"Asym": 30, "xmid": 500, "scal": 1})
    flat = orange.assign(age=1000)
    with pytest.raises(FitError, match=r"SSlogis could not find starting values .*start="):
        nlmm("circumference ~ SSlogis(age, Asym, xmid, scal)", flat, ORANGE_PARAMS).fit()


def test_start_by_fixed_effect_name_and_vectors(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    model = nlmm(SSFOL, theoph, params, cov="diagonal")
    by_name = model.fit(start={"lKe": -2.5, "lKa": 0.5, "lCl:Intercept": -3.2, "lCl:Wt": 0.0})
    by_vector = model.fit(start={"lKe": -2.5, "lKa": 0.5, "lCl": [-3.2, 0.0]})
    self_start = model.fit()
    for other in (by_vector, self_start):
        assert other.loglik == pytest.approx(by_name.loglik, abs=1e-5)
    assert by_name.fixef().index.tolist() == ["lKe", "lKa", "lCl:Intercept", "lCl:Wt"]


def test_non_convergence_warns_with_history(theoph):
    model = nlmm(SSFOL, theoph, theoph_params(False), cov="diagonal")
    with pytest.warns(
        ConvergenceWarning, match=r"(?s)did not converge in 2 iterations.*iteration 2: logLik"
    ):
        fit = model.fit(max_iterations=2)
    assert not fit.converged and len(fit.history) == 2


def test_no_random_effects_is_nls(orange):
    """Without bars nlmm fits by least squares: the same fit as bmx.nls (R's nls)."""
    model = nlmm(
        "circumference ~ SSlogis(age, Asym, xmid, scal)",
        orange,
        {"Asym": "1", "xmid": "1", "scal": "1"},
    )
    fit = model.fit()
    pooled = bmx.nls("circumference ~ SSlogis(age, Asym, xmid, scal)", orange).fit()
    assert fit.loglik == pytest.approx(pooled.loglik, abs=1e-9)
    assert fit.df == 4 and not fit.design.blocks


def test_nonlinear_ml_fit_does_not_import_pymc():
    code = (
        "import sys, bayesmix as bmx\n"
        "from bayesmix.nonlinear_model import nlmm\n"
        "fit = nlmm('circumference ~ SSlogis(age, Asym, xmid, scal)', bmx.load_dataset('Orange'),\n"
        "           {'Asym': '1 + (1 | Tree)', 'xmid': '1', 'scal': '1'}).fit()\n"
        "str(fit.summary())\n"
        "bad = [m for m in ('pymc', 'pytensor', 'arviz') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
