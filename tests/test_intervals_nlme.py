"""nlme's ``intervals()`` and containment degrees of freedom against nlme 3.1-162, and the
inference tools' refusals for fits they do not apply to.

Tolerance: 1e-3 of the value's scale (``max(|value|, 1)``), the issue's for nlme; the
estimates themselves differ by up to 1e-4 on Theoph (nlme's fit stops 9e-4 short in logLik).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from inference_refs import dataset, reference

import bayesmix as bmx
from bayesmix.errors import ArgumentError

ARABIDOPSIS_FIXED = "log(1 + total.fruits) ~ rack + nutrient + amd + status"
THEOPH_PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}


def _ref_rows(rows) -> np.ndarray:
    return np.array([[r["lower"], r["est."], r["upper"]] for r in rows], dtype=float)


def _close(ours: pd.DataFrame, theirs: np.ndarray) -> None:
    ours = ours.to_numpy(dtype=float)
    assert ours.shape == theirs.shape
    scale = np.maximum(np.abs(theirs), 1.0)
    assert np.all(np.abs(ours - theirs) <= 1e-3 * scale), (ours, theirs)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_gls_intervals_match_nlme(method):
    case = f"arabidopsis_gls_{method.lower()}_intervals"
    ref = reference(case)["intervals"]["table"]
    fit = bmx.gls(ARABIDOPSIS_FIXED, dataset(case)).fit(method=method)
    got = fit.intervals()
    _close(got.fixed, _ref_rows(ref["coef"]))
    sigma = ref["sigma"]
    _close(got.sigma, np.array([[sigma["lower"], sigma["est."], sigma["upper"]]]))
    assert got.random.empty


def test_lme_intervals_and_containment_df_match_nlme():
    case = "orthodont_lme_intercept_reml_intervals"
    ref = reference(case)
    fit = bmx.lmm("distance ~ age + Sex + (1 | Subject)", dataset(case)).fit()
    got = fit.intervals()
    table = ref["intervals"]["table"]
    _close(got.fixed, _ref_rows(table["fixed"]))
    _close(got.random, _ref_rows(table["reStruct"]["Subject"]))
    sigma = table["sigma"]
    _close(got.sigma, np.array([[sigma["lower"], sigma["est."], sigma["upper"]]]))
    coef = fit.coef_table("containment")
    assert list(coef["df"]) == [row["DF"] for row in ref["tTable"]]
    np.testing.assert_allclose(coef["p_value"], [row["p-value"] for row in ref["tTable"]], 1e-6)


def test_nlme_intervals_of_a_nonlinear_fit_match_nlme():
    case = "theoph_nlme_diag2_ml_intervals"
    table = reference(case)["intervals"]["table"]
    fit = bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        dataset(case),
        params=THEOPH_PARAMS,
        cov={"Subject": "diagonal"},
    ).fit(method="ML")
    got = fit.intervals()
    _close(got.fixed, _ref_rows(table["fixed"]))
    _close(got.random, _ref_rows(table["reStruct"]["Subject"]))
    sigma = table["sigma"]
    _close(got.sigma, np.array([[sigma["lower"], sigma["est."], sigma["upper"]]]))


def test_containment_refuses_crossed_groupings():
    data = dataset("penicillin_crossed_reml")
    fit = bmx.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", data).fit()
    with pytest.raises(ArgumentError, match="nested"):
        fit.coef_table("containment")


def test_glmm_and_nonlinear_fits_are_pointed_elsewhere():
    cbpp = bmx.load_dataset("cbpp")
    glmm = bmx.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"
    ).fit()
    for call in (glmm.coef_table, glmm.confint, glmm.ranova, lambda: glmm.bootstrap(2)):
        with pytest.raises(ArgumentError, match="GLMMs"):
            call()
    theoph = dataset("theoph_nlme_diag2_ml_intervals")
    nl = bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        theoph,
        params=THEOPH_PARAMS,
        cov={"Subject": "diagonal"},
    ).fit(method="ML")
    with pytest.raises(ArgumentError, match="intervals"):
        nl.confint()


@pytest.mark.parametrize("method", ["ML", "REML"])
@pytest.mark.parametrize(
    "name,case",
    [
        ("B1_orthodont_lme_varident", "V01_orthodont_lme_varident"),
        ("B2_ovary_lme_ar1", "V02_ovary_lme_ar1"),
    ],
)
def test_intervals_with_residual_structures_match_nlme(name, case, method):
    """nlme's intervals of lme fits with varIdent and corAR1 (the shared round-2 refs)."""
    from test_residual_ml import REFS, fitted

    ref = json.loads((REFS / "round2" / f"{name}_{method.lower()}.json").read_text())
    table = ref["intervals"]
    got = fitted(case, method).intervals()

    def rows(block: dict) -> np.ndarray:
        return np.array([[v["lower"], v["est."], v["upper"]] for v in block.values()])

    _close(got.fixed, rows(table["fixed"]))
    _close(got.random, rows(next(iter(table["reStruct"].values()))))
    structure = table.get("varStruct") or table.get("corStruct")
    _close(got.structure, rows(structure))
    sigma = table["sigma"]
    _close(got.sigma, np.array([[sigma["lower"], sigma["est."], sigma["upper"]]]))
