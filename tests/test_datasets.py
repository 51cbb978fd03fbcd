"""Tests for the bundled datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bayesmix.datasets import list_datasets, load_dataset
from bayesmix.errors import DataError

REFS = Path(__file__).parent / "refs"

# Shapes from the export's data README (independent of the catalogue code).
EXPECTED_SHAPES = {
    "sleepstudy": (180, 3),
    "Arabidopsis": (625, 8),
    "Dyestuff": (30, 2),
    "Penicillin": (144, 3),
    "Pastes": (60, 4),
    "cake": (270, 5),
    "cbpp": (56, 4),
    "InstEval": (73421, 7),
    "Orthodont": (108, 4),
    "Oxboys": (234, 4),
    "Theoph": (132, 5),
    "Orange": (35, 3),
    "Loblolly": (84, 3),
    "ChickWeight": (578, 4),
    "Machines": (54, 3),
    "Ovary": (308, 3),
    "BodyWeight": (176, 4),
    "Indometh": (66, 3),
    "Puromycin": (23, 3),
    "DNase": (176, 3),
    "CO2": (84, 5),
}

# Grouping factors whose labels look numeric: must never come back as numbers.
NUMERIC_LOOKING_GROUPS = [
    ("sleepstudy", "Subject"),
    ("cbpp", "herd"),
    ("InstEval", "s"),
    ("InstEval", "d"),
    ("Theoph", "Subject"),
    ("Orange", "Tree"),
    ("Loblolly", "Seed"),
    ("ChickWeight", "Chick"),
    ("Oxboys", "Subject"),
    ("Machines", "Worker"),
    ("Ovary", "Mare"),
    ("BodyWeight", "Rat"),
    ("Indometh", "Subject"),
    ("DNase", "Run"),
    ("cake", "replicate"),
]


def _ref_levels(case: str, grouping: str) -> list[str]:
    """Level order of a grouping factor as R listed it in a reference ranef."""
    with open(REFS / f"{case}.json") as handle:
        return list(json.load(handle)["ranef"][grouping])


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_every_dataset_loads_with_documented_shape(name):
    frame = load_dataset(name)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == EXPECTED_SHAPES[name]
    assert not frame.isna().any().any()


def test_list_datasets_matches_files():
    table = list_datasets()
    assert list(table.columns) == ["name", "rows", "columns", "source", "description"]
    assert set(table["name"]) == set(EXPECTED_SHAPES)
    for row in table.itertuples():
        assert (row.rows, row.columns) == EXPECTED_SHAPES[row.name]
        assert row.source in {"lme4", "nlme", "datasets"}
        assert row.description


@pytest.mark.parametrize(("name", "column"), NUMERIC_LOOKING_GROUPS)
def test_numeric_looking_grouping_factors_are_categorical(name, column):
    values = load_dataset(name)[column]
    assert isinstance(values.dtype, pd.CategoricalDtype)
    assert all(isinstance(level, str) for level in values.cat.categories)


def test_orthodont_level_orders():
    frame = load_dataset("Orthodont")
    assert list(frame["Sex"].cat.categories) == ["Male", "Female"]
    assert list(frame["Subject"].cat.categories) == _ref_levels("orthodont_reml", "Subject")


def test_theoph_subject_order_matches_r():
    frame = load_dataset("Theoph")
    expected = _ref_levels("theoph_nlme_diag2_ml", "Subject")
    assert list(frame["Subject"].cat.categories) == expected


def test_integer_coded_factors_use_numeric_order():
    herd = load_dataset("cbpp")["herd"]
    assert list(herd.cat.categories) == _ref_levels("cbpp_glmer_laplace", "herd")
    subject = load_dataset("sleepstudy")["Subject"]
    assert list(subject.cat.categories) == _ref_levels("sleepstudy_intercept_ml", "Subject")


def test_arabidopsis_columns():
    frame = load_dataset("Arabidopsis")
    assert list(frame["amd"].cat.categories) == ["clipped", "unclipped"]
    assert list(frame["status"].cat.categories) == ["Normal", "Petri.Plate", "Transplant"]
    assert list(frame["popu"].cat.categories) == _ref_levels("arabidopsis_nlme_lmm2", "popu")
    assert list(frame["reg"].cat.categories) == ["NL", "SP", "SW"]
    # The tutorial turns these into factors itself; they stay integers here.
    for column in ("gen", "rack", "nutrient", "total.fruits"):
        assert pd.api.types.is_integer_dtype(frame[column])


def test_insteval_types():
    frame = load_dataset("InstEval")
    for column in ("s", "d", "dept", "service", "studage", "lectage"):
        assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
    assert pd.api.types.is_numeric_dtype(frame["y"])
    assert frame["s"].nunique() == 2972
    assert frame["d"].nunique() == 1128
    assert list(frame["studage"].cat.categories) == ["2", "4", "6", "8"]


def test_loads_are_independent_copies():
    first = load_dataset("Dyestuff")
    first.loc[0, "Yield"] = -1
    assert load_dataset("Dyestuff").loc[0, "Yield"] != -1


def test_name_lookup_ignores_case():
    assert load_dataset("orthodont").shape == (108, 4)


def test_unknown_name_suggests_close_match():
    with pytest.raises(DataError, match="Did you mean 'sleepstudy'"):
        load_dataset("sleepstudi")
    with pytest.raises(ValueError, match="Available: "):
        load_dataset("no_such_data")
