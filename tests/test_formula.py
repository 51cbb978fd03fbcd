"""Parsing of lme4-style formulas into fixed part and random-effects bars."""

import pytest

from bayesmix.errors import FormulaError
from bayesmix.spec.formula import parse_formula, update_formula


def bars(formula):
    return [(b.lhs, b.factors, b.covariance) for b in parse_formula(formula).bars]


def test_fixed_and_response():
    spec = parse_formula("log(1 + total.fruits) ~ rack + nutrient * amd")
    assert spec.response == "log(1 + total.fruits)"
    assert spec.fixed == "rack + nutrient * amd"
    assert spec.bars == ()


def test_correlated_bar_is_one_block():
    assert bars("y ~ x + (1 + x | g)") == [("1 + x", ("g",), "unstructured")]


def test_separate_bars_are_separate_blocks():
    assert bars("y ~ x + (1 | g) + (0 + x | g)") == [
        ("1", ("g",), "unstructured"),
        ("0 + x", ("g",), "unstructured"),
    ]


def test_double_bar_is_diagonal():
    assert bars("y ~ x + (x || g)") == [("x", ("g",), "diagonal")]


def test_nested_grouping_expands():
    assert bars("y ~ 1 + (1 | a/b/c)") == [
        ("1", ("a",), "unstructured"),
        ("1", ("a", "b"), "unstructured"),
        ("1", ("a", "b", "c"), "unstructured"),
    ]
    assert [b[1] for b in bars("y ~ (x | a/b)")] == [("a",), ("a", "b")]


def test_interaction_and_crossed_grouping():
    assert bars("y ~ (1 | a:b)") == [("1", ("a", "b"), "unstructured")]
    assert [b[1] for b in bars("y ~ (1 | a) + (1 | b)")] == [("a",), ("b",)]
    assert [b[1] for b in bars("y ~ (1 | a*b)")] == [("a",), ("b",), ("a", "b")]


def test_no_intercept_and_empty_fixed_part():
    assert parse_formula("y ~ 0 + x + (1 | g)").fixed == "0 + x"
    assert parse_formula("y ~ x - 1").fixed == "x - 1"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_float_literal_is_not_split():
    assert parse_formula("y ~ I(x * 1e-3)").fixed == "I(x * 1e-3)"


@pytest.mark.parametrize(
    "formula, message",
    [
        ("y x", "exactly one '~'"),
        ("~ x", "no response"),
        ("y ~ x + (1 | g", "Unbalanced"),
        ("y ~ x + 1 | g", "wrapped in parentheses"),
        ("y ~ x + ( | g)", "no terms left"),
        ("y ~ x + (1 | )", "no grouping factor"),
        ("y ~ x + (1 | log(g))", "must be a column name"),
        ("y ~ x - (1 | g)", "Cannot subtract"),
    ],
)
def test_malformed_formulas_are_explained(formula, message):
    with pytest.raises(FormulaError, match=message.replace("(", r"\(")):
        parse_formula(formula)


def test_update_adds_and_removes_terms():
    assert update_formula("y ~ a + (1 | g)", ". ~ . + a:b") == "y ~ a + a:b + (1 | g)"
    assert update_formula("y ~ a + b + (1 | g)", ". ~ . - b") == "y ~ a + (1 | g)"
    assert update_formula("y ~ a + (1 | g)", ". ~ . - (1 | g) + (a | g)") == "y ~ a + (a | g)"
    assert update_formula("y ~ a + (1 | g)", "log(y) ~ .") == "log(y) ~ a + (1 | g)"


def test_update_refuses_unknown_removal():
    with pytest.raises(FormulaError, match="not a term"):
        update_formula("y ~ a", ". ~ . - b")
