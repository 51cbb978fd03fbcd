"""Design building: fixed columns, random-effects blocks, data checks."""

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import DataError, DataWarning, FormulaError
from bayesmix.spec.design import build_design


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


def test_correlated_slope_block(sleep):
    design = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    assert design.fixed_terms == ("Intercept", "Days")
    (block,) = design.blocks
    assert block.terms == ("Intercept", "Days")
    assert block.covariance == "unstructured"
    assert block.n_levels == 18
    np.testing.assert_array_equal(block.Z[:, 1], sleep["Days"].to_numpy())
    # codes index the level of every row
    levels = np.array(block.levels)[block.codes]
    np.testing.assert_array_equal(levels, sleep["Subject"].astype(str).to_numpy())


def test_split_bars_differ_from_joint_bar(sleep):
    joint = build_design("Reaction ~ Days + (1 + Days | Subject)", sleep)
    split = build_design("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep)
    diagonal = build_design("Reaction ~ Days + (Days || Subject)", sleep)
    assert [b.n_terms for b in joint.blocks] == [2]
    assert [b.n_terms for b in split.blocks] == [1, 1]
    assert [(b.n_terms, b.covariance) for b in diagonal.blocks] == [(2, "diagonal")]
    assert split.blocks[1].terms == ("Days",)


def test_nested_interaction_has_only_observed_levels(arabidopsis):
    design = build_design(
        "log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen)",
        arabidopsis,
    )
    assert [b.grouping for b in design.blocks] == ["popu", "popu:gen"]
    assert [b.n_levels for b in design.blocks] == [9, 24]  # not 9 * 24 = 216
    assert design.blocks[0].terms == ("Intercept", "nutrient[8]")
    assert design.fixed_terms == (
        "Intercept",
        "rack[2]",
        "nutrient[8]",
        "amd[unclipped]",
        "status[Petri.Plate]",
        "status[Transplant]",
    )
    np.testing.assert_allclose(design.y, np.log1p(arabidopsis["total.fruits"]))
    # every popu:gen level is a popu level followed by a gen level that occurs together
    pairs = set(zip(arabidopsis["popu"].astype(str), arabidopsis["gen"].astype(str)))
    assert {tuple(level.split(":")) for level in design.blocks[1].levels} == pairs


def test_crossed_grouping_and_interactions():
    data = bmx.load_dataset("Penicillin")
    design = build_design("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    assert [(b.grouping, b.n_levels) for b in design.blocks] == [("plate", 24), ("sample", 6)]


def test_categorical_slope_and_level_order():
    data = bmx.load_dataset("Orthodont")
    design = build_design("distance ~ age * Sex + (age | Subject)", data)
    assert design.fixed_terms == ("Intercept", "age", "Sex[Female]", "age:Sex[Female]")
    machines = bmx.load_dataset("Machines")
    design = build_design("score ~ Machine + (Machine | Worker)", machines)
    assert design.blocks[0].terms == ("Intercept", "Machine[B]", "Machine[C]")
    zero_intercept = build_design("score ~ Machine + (0 + Machine | Worker)", machines)
    assert zero_intercept.blocks[0].terms == ("Machine[A]", "Machine[B]", "Machine[C]")


def test_missing_values_dropped_with_count(sleep):
    data = sleep.copy()
    data.loc[[3, 7, 11], "Reaction"] = np.nan
    data["unused"] = np.nan  # columns the formula does not use must not count
    with pytest.warns(DataWarning, match=r"Dropped 3 of 180 rows"):
        design = build_design("Reaction ~ Days + (1 | Subject)", data)
    assert design.n_obs == 177 and design.n_dropped == 3
    assert 3 not in design.data.index


@pytest.mark.parametrize(
    "formula, error, message",
    [
        ("Reaction ~ Dayz + (1 | Subject)", DataError, "'Dayz'.*Did you mean 'Days'"),
        ("Reaction ~ Days + (1 | Subjct)", DataError, "Did you mean 'Subject'"),
        ("one ~ Days + (1 | Subject)", DataError, "must be numeric"),
        ("Subject ~ Days + (1 | Subject)", FormulaError, "'Subject' appears on both sides"),
        ("log(Reaction - 300) ~ Days + (1 | Subject)", DataError, "not finite"),
        ("Reaction ~ Days + (1 | one)", DataError, "at least 2"),
        ("Reaction ~ nosuchfun(Days)", FormulaError, "'nosuchfun' .* not a function"),
    ],
)
def test_bad_input_is_explained(sleep, formula, error, message):
    data = sleep.assign(one="a")
    with pytest.raises(error, match=message):
        build_design(formula, data)


def test_infinite_and_empty_data(sleep):
    with pytest.raises(DataError, match="infinite"):
        build_design("Reaction ~ Days", sleep.assign(Days=np.inf))
    with pytest.raises(DataError, match="No complete rows"):
        build_design("Reaction ~ Days", sleep.assign(Days=np.nan))
    with pytest.raises(DataError, match="DataFrame"):
        build_design("Reaction ~ Days", {"Reaction": [1.0]})


def test_constant_slope_warns(sleep):
    data = sleep.assign(group_value=sleep["Subject"].cat.codes % 3)
    with pytest.warns(DataWarning, match="does not vary within any level"):
        build_design("Reaction ~ Days + (group_value | Subject)", data)


def test_aliased_columns_dropped(sleep):
    with pytest.warns(DataWarning, match=r"dropping aliased column\(s\) I\(2 \* Days\)"):
        design = build_design("Reaction ~ Days + I(2 * Days)", sleep)
    assert design.fixed_terms == ("Intercept", "Days")


def test_new_data_encoding(sleep):
    design = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "999"]})
    encoded = design.evaluate_new_data(new)
    np.testing.assert_array_equal(encoded.X, [[1, 0], [1, 5]])
    codes, Z = encoded.blocks[0]
    assert codes[0] == design.blocks[0].levels.index("308") and codes[1] == -1
    np.testing.assert_array_equal(Z, [[1, 0], [1, 5]])
    assert encoded.new_levels == ("Subject",)
    with pytest.raises(DataError, match="lacks column"):
        design.evaluate_new_data(new.drop(columns="Days"))


def test_arrays_are_read_only(sleep):
    design = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(ValueError):
        design.X[0, 0] = 1.0
