"""The lme4 reference cases (tests/refs/*.json) shared by the ML engine tests."""

from __future__ import annotations

import json
from pathlib import Path

from bayesmix.datasets import load_dataset
from bayesmix.spec.design import Design, build_design

REFS = Path(__file__).parent / "refs"

#: case name -> (dataset, formula); each exists as <case>_ml.json and <case>_reml.json
CASES = {
    "sleepstudy_intercept": ("sleepstudy", "Reaction ~ 1 + (1 | Subject)"),
    "sleepstudy_slope_corr": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "sleepstudy_slope_uncorr": ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    "dyestuff": ("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
    "orthodont": ("Orthodont", "distance ~ age + Sex + (age | Subject)"),
}
REF_IDS = [f"{case}_{m}" for case in CASES for m in ("ml", "reml")]


def load_case(ref_id: str) -> tuple[Design, dict, str]:
    """Design, reference JSON and method ("ML"/"REML") of a case id such as ``dyestuff_reml``."""
    case, method = ref_id.rsplit("_", 1)
    dataset, formula = CASES[case]
    ref = json.loads((REFS / f"{ref_id}.json").read_text())
    return build_design(formula, load_dataset(dataset)), ref, method.upper()
