"""Loading the R references of ``tests/refs/inference`` (lmerTest, pbkrtest, lme4, nlme).

Each JSON holds one R fit and what lmerTest/pbkrtest/lme4 computed from it;
the CSV beside it is the exact rows, and ``<name>.levels.json`` restores factor
levels and their order (R's contrasts depend on both). ``make_*.R`` made them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd

REFS = Path(__file__).with_name("refs") / "inference"

#: case file -> (formula in bayesmix's syntax, method); the R call is in each JSON.
LMER_CASES = {
    "sleepstudy_slope_reml": ("Reaction ~ Days + (Days | Subject)", "REML"),
    "sleepstudy_slope_ml": ("Reaction ~ Days + (Days | Subject)", "ML"),
    "sleepstudy_intercept_reml": ("Reaction ~ Days + (1 | Subject)", "REML"),
    "sleepstudy_intercept_ml": ("Reaction ~ Days + (1 | Subject)", "ML"),
    "orthodont_age_sex_slope_reml": ("distance ~ age * Sex + (age | Subject)", "REML"),
    "orthodont_age_sex_intercept_reml": ("distance ~ age * Sex + (1 | Subject)", "REML"),
    "orthodont_ageF_sex_unbalanced_reml": ("distance ~ ageF * Sex + (1 | Subject)", "REML"),
    "penicillin_crossed_reml": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "REML"),
    "arabidopsis_nutrient_popu_gen_reml": (
        "log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen)",
        "REML",
    ),
    "arabidopsis_intercept_popu_gen_ml": (
        "log(1 + total.fruits) ~ rack + nutrient + amd + status + (1 | popu/gen)",
        "ML",
    ),
}


@cache
def reference(case: str) -> dict:
    return json.loads((REFS / f"{case}.json").read_text())


@cache
def _frame(name: str) -> pd.DataFrame:
    data = pd.read_csv(REFS / f"{name}.csv")
    levels_file = REFS / f"{name}.levels.json"
    if levels_file.exists():
        for column, info in json.loads(levels_file.read_text())["factors"].items():
            values = data[column].astype(str)
            levels = [str(v) for v in info["levels"]]
            data[column] = pd.Categorical(values, categories=levels, ordered=info["ordered"])
    return data


def dataset(case: str) -> pd.DataFrame:
    """A fresh copy of the rows R fitted for ``case``, factors restored."""
    info = reference(case)["dataset"]
    name = info.get("name") or Path(info["file"]).stem
    return _frame(name).copy()


def table(case: str, key: str) -> pd.DataFrame:
    """One of the case's R tables, indexed by ``term`` (rows in R's order)."""
    rows = reference(case)[key]["table"]
    if isinstance(rows, dict):  # round2's layout: {term: {column: value}}
        return pd.DataFrame(rows).T.apply(pd.to_numeric, errors="coerce")
    return pd.DataFrame(rows).set_index("term").apply(pd.to_numeric, errors="coerce")
