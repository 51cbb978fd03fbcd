"""The nlme reference cases of residual variance functions and correlation structures
(``refs/varcorr``), shared by their tests and ``bench/bench_residual_ml.py``."""

from __future__ import annotations

import json
from pathlib import Path

from rfidelity import read_with_levels

import bayesmix as bmx

REFS = Path(__file__).parent / "refs" / "varcorr"

OVARY = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1|Mare)"
BODYWEIGHT = "weight ~ Time * Diet + (Time | Rat)"
DIALYZER = (
    "rate ~ (pressure + I(pressure^2) + I(pressure^3) + I(pressure^4)) * QB"
    " + (pressure + I(pressure^2) | Subject)"
)
ORTHODONT = "distance ~ age + Sex + (1|Subject)"

# case -> (constructor, formula, data set, structure arguments)
CASES = {
    "V01_orthodont_lme_varident": (
        "lmm",
        ORTHODONT,
        "Orthodont",
        {"weights": "varIdent(form = ~1 | Sex)"},
    ),
    "V02_ovary_lme_ar1": ("lmm", OVARY, "Ovary", {"correlation": "corAR1()"}),
    "V03_ovary_lme_arma11": ("lmm", OVARY, "Ovary", {"correlation": "corARMA(p = 1, q = 1)"}),
    "V04_bodyweight_lme_varpower": ("lmm", BODYWEIGHT, "BodyWeight", {"weights": "varPower()"}),
    "V05_bodyweight_lme_car1": (
        "lmm",
        BODYWEIGHT,
        "BodyWeight",
        {"correlation": "corCAR1(form = ~ Time)"},
    ),
    "V06_bodyweight_lme_varpower_car1": (
        "lmm",
        BODYWEIGHT,
        "BodyWeight",
        {"weights": "varPower()", "correlation": "corCAR1(form = ~ Time)"},
    ),
    "V07_orthodont_gls_corsymm_varident": (
        "gls",
        "distance ~ age * Sex",
        "Orthodont",
        {"correlation": "corSymm(form = ~ 1 | Subject)", "weights": "varIdent(form = ~ 1 | age)"},
    ),
    "V08_orthodont_lme_varexp": (
        "lmm",
        ORTHODONT,
        "Orthodont",
        {"weights": "varExp(form = ~ age)"},
    ),
    "V09_dialyzer_lme_varconstpower": (
        "lmm",
        DIALYZER,
        "Dialyzer",
        {"weights": "varConstPower(form = ~ pressure)"},
    ),
    "V10_orthodont_lme_varfixed": ("lmm", ORTHODONT, "Orthodont", {"weights": "varFixed(~ age)"}),
    "V11_bodyweight_lme_varcomb": (
        "lmm",
        BODYWEIGHT,
        "BodyWeight",
        {"weights": "varComb(varIdent(form = ~ 1 | Diet), varPower())"},
    ),
    "V12_bodyweight_gls_compsymm": (
        "gls",
        "weight ~ Time * Diet",
        "BodyWeight",
        {"correlation": "corCompSymm(form = ~ 1 | Rat)"},
    ),
    "V13_bodyweight_lme_corexp_nugget": (
        "lmm",
        BODYWEIGHT,
        "BodyWeight",
        {"correlation": "corExp(form = ~ Time, nugget = TRUE)"},
    ),
    "V14_bodyweight_lme_corgaus": (
        "lmm",
        BODYWEIGHT,
        "BodyWeight",
        {"correlation": "corGaus(form = ~ Time)"},
    ),
    "V15_spatial_gls_corexp_nugget": (
        "gls",
        "resp ~ z",
        "spatial_sim",
        {"correlation": "corExp(form = ~ x + y, nugget = TRUE)"},
    ),
    "V16_spatial_gls_corgaus_nugget": (
        "gls",
        "resp ~ z",
        "spatial_sim",
        {"correlation": "corGaus(form = ~ x + y, nugget = TRUE)"},
    ),
    "V17_dialyzer_lme_varpower_ar1": (
        "lmm",
        DIALYZER,
        "Dialyzer",
        {"weights": "varPower(form = ~ pressure)", "correlation": "corAR1()"},
    ),
    "V18_oxboys_lme_car1": (
        "lmm",
        "height ~ age + I(age^2) + (age | Subject)",
        "Oxboys",
        {"correlation": "corCAR1(form = ~ age)"},
    ),
}
# varPower() of the fitted values: nlme stops its alternation before the fixed point
# (test_nlme_stops_before_the_fixed_point); its estimates are compared more loosely
FITTED_DEPENDENT = {
    "V04_bodyweight_lme_varpower",
    "V06_bodyweight_lme_varpower_car1",
    "V11_bodyweight_lme_varcomb",
}


def data(name: str):
    """A reference data set with R's factor levels."""
    return read_with_levels(REFS / "data" / f"{name}.csv", REFS / "data" / f"{name}.levels.json")


def reference(case: str, method: str) -> dict:
    """nlme's fit of ``case`` by ``method`` ("ML" or "REML")."""
    return json.loads((REFS / "refs" / f"{case}_{method.lower()}.json").read_text())


def model(case: str):
    """The bayesmix model of ``case`` (unfitted)."""
    constructor, formula, dataset, arguments = CASES[case]
    return getattr(bmx, constructor)(formula, data(dataset), **arguments)
