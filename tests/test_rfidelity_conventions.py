"""Whose conventions a result reports: lme4's for lmm, nlme's for gls and nlmm.

References: tests/refs/rfidelity/conventions (make_convention_refs.R, lme4
1.1.31, nlme 3.1.162). nlme's BIC of a REML fit uses log(N - p); its ML
summaries scale fixed-effect SEs by sqrt(N / (N - p)) (lme/nlme's adjustSigma;
gls puts the factor into vcov itself); lme4 does neither. Linear fits are
compared to 1e-4 (logLik, criteria) and 1e-5 relative (SEs); the nonlinear fit
to 0.01 and 2e-3.
"""

from __future__ import annotations

import pandas as pd
import pytest
from rfidelity import assert_close, assert_named_close, load_ref, r_data

import bayesmix as bmx


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_gls_reports_nlme_conventions(method):
    ref = load_ref("conventions", f"gls_Orthodont_{method}")
    fit = bmx.gls("distance ~ age * Sex", r_data("conventions", ref)).fit(method.upper())
    assert fit.conventions == "nlme"
    assert_close(fit.loglik, ref["logLik"], 0, 1e-4, "logLik")
    assert_close(fit.bic, ref["BIC"], 0, 1e-4, "BIC")
    assert_close(fit.bic_nlme, ref["BIC"], 0, 1e-4, "bic_nlme")
    assert_close(fit.bic_lme4, ref["BIC_lme4_style"], 0, 1e-4, "bic_lme4")
    assert_named_close(fit.fixef()["std_error"], ref["se_summary"], 1e-5, 0, "SE")
    vcov = fit.vcov()
    se_vcov = pd.Series(vcov.to_numpy().diagonal() ** 0.5, index=vcov.index)
    assert_named_close(se_vcov, ref["se_vcov"], 1e-5, 0, "vcov")
    # gls prints the ML sigma for ML fits, sqrt(RSS / (N - p)) for REML ones
    assert_close(fit.sigma, ref["sigma"], 1e-5, 0, "sigma")
    text = str(fit.summary())
    assert "Conventions: nlme's" in text and f"{ref['BIC']:.1f}" in text


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_lmm_reports_lme4_conventions_and_nlme_on_request(method):
    lmer = load_ref("conventions", f"lmer_Orthodont_{method}")
    lme = load_ref("conventions", f"lme_Orthodont_{method}")
    data = r_data("conventions", lmer)
    fit = bmx.lmm("distance ~ age + Sex + (1 | Subject)", data).fit(method.upper())
    assert fit.conventions == "lme4"
    assert_close(fit.loglik, lmer["logLik"], 0, 1e-4, "logLik")
    assert_close(fit.bic, lmer["BIC"], 0, 1e-4, "BIC (lme4)")
    assert_close(fit.bic_nlme, lme["BIC"], 0, 1e-4, "BIC (nlme)")
    assert_named_close(fit.fixef()["std_error"], lmer["se_summary"], 1e-5, 0, "lmer SE")
    adjusted = fit.fixef(adjust_sigma=True)["std_error"]
    assert_named_close(adjusted, lme["se_summary"], 1e-5, 0, "lme SE")
    assert "Conventions: lme4's" in str(fit.summary())
    # anova follows the fits' conventions unless told otherwise
    smaller = bmx.lmm("distance ~ age + (1 | Subject)", data).fit("ML")
    if method == "ml":
        assert bmx.anova(smaller, fit)["BIC"].iloc[1] == pytest.approx(fit.bic_lme4)
        table = bmx.anova(smaller, fit, bic="nlme")
        assert table["BIC"].iloc[1] == pytest.approx(fit.bic_nlme)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_nlmm_reports_nlme_conventions(method):
    ref = load_ref("conventions", f"nlme_Orange_{method}")
    params = {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"}
    model = bmx.nlmm(
        "circumference ~ SSlogis(age, Asym, xmid, scal)", r_data("conventions", ref), params
    )
    fit = model.fit(method=method.upper())
    assert fit.conventions == "nlme"
    assert_close(fit.loglik, ref["logLik"], 0, 0.01, "logLik")
    assert_close(fit.bic, ref["BIC"], 0, 0.02, "BIC")
    assert_close(fit.bic_lme4, ref["BIC_lme4_style"], 0, 0.02, "bic_lme4")
    assert_named_close(fit.fixef()["std_error"], ref["se_summary"], 2e-3, 0, "SE")
    unadjusted = fit.fixef(adjust_sigma=False)["std_error"]
    assert_named_close(unadjusted, ref["se_noadjust"], 2e-3, 0, "SE (adjustSigma = FALSE)")


def test_adjust_sigma_must_be_a_bool():
    fit = bmx.gls("Reaction ~ Days", bmx.load_dataset("sleepstudy")).fit("ML")
    with pytest.raises(bmx.ArgumentError, match="adjust_sigma must be True or False"):
        fit.fixef(adjust_sigma="yes")
