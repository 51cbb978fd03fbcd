"""The nonlinear fit never stops at a worse fixed point than nlme reaches.

References: tests/refs/rfidelity/multistart (make_multistart_refs.R, nlme
3.1.162; README.md). On these models the Lindstrom-Bates alternation has more
than one fixed point: run once from nlme's own start it settles 0.14-1.9 below
nlme's logLik; with the restarts of bayesmix.nonlinear.restarts (the default)
it reaches nlme's optimum. Tolerances (the issue's, for nonlinear fits):
logLik at least nlme's less 0.01, fixed effects 1e-3 relative.
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from rfidelity import REFS, load_ref

import bayesmix as bmx

FOLDER = REFS / "multistart"
#: Columns that R stores as factors, beside each case's grouping factor.
FACTORS = {"ChickWeight": ["Diet"], "Soybean": ["Variety", "Year"], "CO2": ["Type", "Treatment"]}


def fit_case(ref: dict, restarts: bool = True):
    case = ref["case"]
    data = pd.read_csv(FOLDER / f"{case['data']}.csv")
    for column in [*FACTORS.get(case["data"], []), case["group"]]:
        data[column] = data[column].astype(str).astype("category")
    random = [case["random"]] if isinstance(case["random"], str) else case["random"]
    fixed = case.get("fixed") or {}
    params = {}
    for name in case["params"]:
        formula = fixed.get(name, "1")
        formula = formula if formula.startswith("1") else f"1 + {formula}"
        params[name] = formula + (f" + (1 | {case['group']})" if name in random else "")
    model = bmx.nlmm(
        f"{case['response']} ~ {case['mean']}",
        data,
        params,
        cov="diagonal" if case["cov"] == "pdDiag" else "unstructured",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmx.SingularFitWarning)
        return model.fit(method=case["method"], start=ref["start"], restarts=restarts)


# bayesmix's single run vs nlme: -0.540, -0.534, -0.148, -0.138
WORSE_ONCE = [
    "chick_AX_symm_ml",
    "chick_AX_symm_reml",
    "chick_AS_symm_ml",
    "chick_AS_symm_reml",
]


@pytest.mark.parametrize("name", WORSE_ONCE)
def test_restarts_reach_nlmes_optimum(name):
    ref = load_ref("multistart", name)
    nlme = ref["nlme"]
    once = fit_case(ref, restarts=False)
    assert once.loglik < nlme["logLik"] - 0.1  # the alternation has another fixed point
    fit = fit_case(ref)
    assert fit.loglik >= nlme["logLik"] - 0.01
    fixef = fit.fixef()["estimate"]
    for term, value in nlme["fixef"].items():
        assert fixef[term] == pytest.approx(value, rel=1e-3), term
    table = fit.starts_table()
    assert len(table) >= 2 and table["chosen"].sum() == 1
    assert table.loc[table["chosen"], "start"].item() != "start"
    assert table.loc[0, "logLik"] == pytest.approx(once.loglik, abs=1e-9)  # the same first run
    assert fit.n_starts_agreeing < len(table)
    assert "Starts:" in str(fit.summary())


# bayesmix's single run is already above nlme's (nlme stopped early or hit a boundary);
# indometh_all_symm_ml's single run was 1.890 below nlme's until the LME steps searched
# with the criterion's gradient (issue 18), which reach nlme's fixed point from the start
ALREADY_BETTER = [
    "chick_XS_symm_ml",
    "soybean_AS_symm_reml",
    "co2_ALC_diag_ml",
    "indometh_all_symm_ml",
]


@pytest.mark.parametrize("name", ALREADY_BETTER)
def test_restarts_keep_a_fit_that_beats_nlme(name):
    ref = load_ref("multistart", name)
    once = fit_case(ref, restarts=False)
    fit = fit_case(ref)
    assert fit.loglik >= ref["nlme"]["logLik"]
    assert fit.loglik >= once.loglik - 1e-9
    assert fit.n_starts_agreeing == len(fit.starts)  # the restarts agree: nothing moves
    assert fit.fixef()["estimate"].tolist() == once.fixef()["estimate"].tolist()


def test_loblolly_asymptote_through_the_origin_reaches_nlme():
    """nlme's SSasympOrig fit of Loblolly (random asymptote per seed), where a single
    run of the alternation stops 0.58 below nlme."""
    ref = load_ref("nonlinear", "nlme_Loblolly_SSasympOrig_Asym_ml")
    data = pd.read_csv(REFS / "nonlinear" / "data_Loblolly.csv")
    data["Seed"] = data["Seed"].astype(str).astype("category")
    model = bmx.nlmm(
        "height ~ SSasympOrig(age, Asym, lrc)", data, {"Asym": "1 + (1 | Seed)", "lrc": "1"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once = model.fit(restarts=False)
    # one run of the alternation stops short of nlme or fails to settle (its path turns
    # on rounding: it cycles between two linearisations after the compiled one-block
    # criterion replaced the general kernel's)
    assert once.loglik < ref["logLik"] - 0.1 or not once.converged
    fit = model.fit()
    assert fit.loglik >= ref["logLik"] - 0.01


def test_restarts_must_be_a_bool():
    orange = bmx.load_dataset("Orange")
    model = bmx.nlmm(
        "circumference ~ SSlogis(age, Asym, xmid, scal)",
        orange,
        {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"},
    )
    with pytest.raises(bmx.ArgumentError, match="restarts must be True or False"):
        model.fit(restarts="yes")
