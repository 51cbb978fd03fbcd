"""Stepwise selection of random effects (``bmx.select_random``) on the Arabidopsis tutorial.

Every candidate is an ordinary fit (checked against nlme elsewhere); here the path's
numbers are compared with nlme's fits of the tutorial's models (``tests/refs/
arabidopsis_nlme_lmm*.json``, logLik to 1e-6) and the moves with what the criterion
implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bayesmix as bmx
from bayesmix.errors import ArgumentError

REFS = Path(__file__).with_name("refs")
FIXED = "log(1 + total.fruits) ~ rack + nutrient + amd + status"


@pytest.fixture(scope="module")
def data():
    frame = bmx.load_dataset("Arabidopsis")
    for column in ("gen", "rack", "nutrient"):
        frame[column] = frame[column].astype("category")
    return frame


def nlme(name: str) -> dict:
    return json.loads((REFS / f"arabidopsis_nlme_{name}.json").read_text())


def test_forward_aic_from_no_random_effects_picks_the_population_intercept(data):
    start = bmx.lmm(FIXED, data).fit(method="ML")
    sel = bmx.select_random(
        start, scope="(1 | reg/popu/gen) + (1 | popu/gen)", criterion="AIC", direction="forward"
    )
    path = sel.path
    assert path["move"].iloc[0] == "start" and path["random"].iloc[0] == "(none)"
    # step 1 adds the population intercept: nlme's lmm2, (1 | popu) (popu is nested in reg)
    assert path["random"].iloc[1] in ("(1 | popu)", "(1 | reg:popu)")
    np.testing.assert_allclose(path["logLik"].iloc[1], nlme("lmm2")["logLik"], rtol=1e-6)
    # nothing improves on it: lmm6 (+ genotypes) has a higher AIC in nlme too
    assert len(path) == 2 and nlme("lmm6")["AIC"] > nlme("lmm2")["AIC"]
    assert sel.fit is sel.fits[path["random"].iloc[1]]
    with_gen = [f for label, f in sel.fits.items() if label.count("|") == 2 and "gen" in label]
    assert all(f.aic > path["AIC"].iloc[1] for f in with_gen)
    lrt = 2 * (path["logLik"].iloc[1] - path["logLik"].iloc[0])
    np.testing.assert_allclose(path["LRT"].iloc[1], lrt)


def test_backward_lrt_drops_what_does_not_matter(data):
    full = bmx.lmm(f"{FIXED} + (1 | reg) + (nutrient | popu)", data).fit(method="ML")
    sel = bmx.select_random(full, criterion="LRT", direction="backward")
    moves = list(sel.path["move"])
    assert moves[1] == "- (1 | reg)"  # p = 0.67
    assert sel.path["p_value"].iloc[1] > 0.05
    assert sel.path["random"].iloc[-1] == "(nutrient | popu)"
    # the slope (and its correlation) stays: LRT 12.8 on 2 df, p = 0.0016
    slope_only = sel.fits["(1 | popu)"]
    lrt = 2 * (sel.fit.loglik - slope_only.loglik)
    assert 12 < lrt < 14 and len(sel.path) == 2


def test_bic_under_reml_prefers_the_smaller_slope_free_model(data):
    start = bmx.lmm(f"{FIXED} + (1 | reg)", data).fit(method="REML")
    sel = bmx.select_random(start, scope="(nutrient | popu)", criterion="BIC")
    assert sel.path.attrs["method"] == "REML"
    assert all(f.method == "REML" for f in sel.fits.values())
    assert np.all(np.diff(sel.path["BIC"]) < 0)
    # BIC's log(625) per parameter outweighs the slope's LRT of ~13 on 2 df
    assert sel.path["random"].iloc[-1] == "(1 | popu)"
    final = sel.fit.bic
    assert all(f.bic >= final for f in sel.fits.values())


def test_bad_scope_and_criterion_are_named(data):
    start = bmx.lmm(f"{FIXED} + (1 | reg)", data).fit(method="ML")
    with pytest.raises(ArgumentError, match="not in the data"):
        bmx.select_random(start, scope="(1 | region)")
    with pytest.raises(ArgumentError, match="criterion"):
        bmx.select_random(start, criterion="DIC")
    with pytest.raises(ArgumentError, match="only bars"):
        bmx.select_random(start, scope="amd + (1 | popu)")
    with pytest.raises(ArgumentError, match="direction"):
        bmx.select_random(start, direction="sideways")


def test_nonlinear_selection_drops_the_elimination_rate_effect_on_theoph():
    """Pinheiro and Bates (sec. 8.2): lKe needs no random effect. nlme's fit of the
    chosen model (tests/refs/theoph_nlme_diag2_ml.json) has the logLik of the path's
    last step to 1e-5 (nlme's alternation stops 9e-4 short of bayesmix's)."""
    theoph = bmx.load_dataset("Theoph")
    params = {name: "1 + (1 | Subject)" for name in ("lKe", "lKa", "lCl")}
    full = bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        theoph,
        params=params,
        cov={"Subject": "diagonal"},
    ).fit(method="ML")
    sel = bmx.select_random(full, criterion="AIC")
    assert list(sel.path["move"]) == ["start", "- lKe | Subject"]
    assert sel.path["random"].iloc[-1] == "lCl, lKa | Subject (diagonal)"
    ref = json.loads((REFS / "theoph_nlme_diag2_ml.json").read_text())
    np.testing.assert_allclose(sel.fit.loglik, ref["logLik"], rtol=1e-5)
    # the correlated alternative was fitted and is worse by AIC
    corr = sel.fits["lCl, lKa | Subject (unstructured)"]
    assert corr.aic > sel.fit.aic
    with pytest.raises(ArgumentError, match="not parameters"):
        bmx.select_random(full, scope=["lKe", "Ka"])
