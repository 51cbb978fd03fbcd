"""Specification layer of nonlinear mixed models (bayesmix.nonlinear.build, nonlinear_mean)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.errors import DataError, DataWarning, FormulaError
from bayesmix.nonlinear.build import build_nonlinear_design
from bayesmix.nonlinear.lb_steps import mean_and_gradient
from bayesmix.nonlinear.selfstart import SELF_START
from bayesmix.nonlinear_model import nlmm

SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
LOGIS = "circumference ~ Asym / (1 + exp((xmid - age) / scal))"
ORANGE_PARAMS = {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"}


def test_selfstart_design_joins_random_effects_into_one_block(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
    design = build_nonlinear_design(SSFOL, theoph, params)
    assert design.params == ("lKe", "lKa", "lCl")
    assert design.fixed_terms == ("lKe", "lKa", "lCl")
    assert design.mean_function.kind == "selfstart"
    assert design.mean_function.covariates == ("Dose", "Time")
    (block,) = design.blocks
    assert block.grouping == "Subject" and block.n_levels == 12
    assert block.terms == ("lKa", "lCl") and block.params == ("lKa", "lCl")
    assert block.covariance == "unstructured"
    assert block.label == "pdSymm(lKa + lCl | Subject)"
    np.testing.assert_array_equal(block.Z, 1.0)
    diagonal = build_nonlinear_design(SSFOL, theoph, params, cov={"Subject": "pdDiag"})
    assert diagonal.blocks[0].covariance == "diagonal"
    linear = design.linear_design()
    assert linear.fixed_terms == design.fixed_terms and linear.X.shape == (132, 3)
    assert linear.blocks[0].terms == ("lKa", "lCl")


def test_mean_matches_the_selfstart_model_and_phi_adds_random_effects(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    design = build_nonlinear_design(SSFOL, theoph, params, cov="diagonal")
    assert design.fixed_terms == ("lKe", "lKa", "lCl:Intercept", "lCl:Wt")
    assert design.fixed_params == ("lKe", "lKa", "lCl", "lCl")
    assert design.blocks[0].terms == ("lKa", "lCl:Intercept")
    beta = np.array([-2.5, 0.5, -3.0, 0.01])
    b = [np.column_stack([np.linspace(-1, 1, 12), np.linspace(0.2, -0.2, 12)])]
    phi = design.phi(beta, b)
    codes = design.blocks[0].codes
    wt = theoph["Wt"].to_numpy()
    np.testing.assert_allclose(phi["lKe"], -2.5)
    np.testing.assert_allclose(phi["lKa"], 0.5 + b[0][codes, 0])
    np.testing.assert_allclose(phi["lCl"], -3.0 + 0.01 * wt + b[0][codes, 1])
    expected = SELF_START["SSfol"].mean(
        np, theoph["Dose"].to_numpy(), theoph["Time"].to_numpy(), phi["lKe"], phi["lKa"], phi["lCl"]
    )
    np.testing.assert_allclose(design.mean(np, phi), expected)


def test_explicit_expression_is_parsed_safely(orange):
    design = build_nonlinear_design(LOGIS, orange, ORANGE_PARAMS)
    fn = design.mean_function
    assert fn.kind == "expression"
    assert fn.params == ("Asym", "xmid", "scal") and fn.covariates == ("age",)
    phi = design.phi(np.array([190.0, 700.0, 350.0]))
    age = orange["age"].to_numpy()
    np.testing.assert_allclose(design.mean(np, phi), 190 / (1 + np.exp((700 - age) / 350)))
    # R's ^ means power
    power = build_nonlinear_design(
        "circumference ~ Asym * (age / 1000)^scal", orange, {"Asym": "1", "scal": "1 + (1 | Tree)"}
    )
    values = power.mean(np, power.phi(np.array([200.0, 0.5])))
    np.testing.assert_allclose(values, 200 * (age / 1000) ** 0.5)


@pytest.mark.parametrize(
    "rhs, fragment",
    [
        ("Asym * np.exp(age)", "np.exp"),
        ("__import__('os').getcwd() + Asym", "__import__"),
        ("(lambda: Asym)() + age", "lambda"),
        ("Asym if age > 1 else Asym", "not allowed"),
        ("Asym * age[0]", "not allowed"),
        ("Asym * gamma(age)", "allowed functions are"),
        ("Asym * exp(age, 2)", "exactly one"),
        ("Asym * 'text'", "not allowed"),
    ],
)
def test_expression_rejects_anything_but_arithmetic(orange, rhs, fragment):
    with pytest.raises(FormulaError, match=fragment):
        build_nonlinear_design(f"circumference ~ {rhs}", orange, {"Asym": "1 + (1 | Tree)"})


def test_parameters_missing_from_params_or_unused_are_named(orange, theoph):
    with pytest.raises(FormulaError, match=r"'scal'.*neither a column of the data nor a parameter"):
        build_nonlinear_design(LOGIS, orange, {"Asym": "1 + (1 | Tree)", "xmid": "1"})
    with pytest.raises(FormulaError, match=r"params gives formula\(s\) for extra"):
        build_nonlinear_design(LOGIS, orange, {**ORANGE_PARAMS, "extra": "1"})
    with pytest.raises(FormulaError, match=r"lCl of the mean function .* no formula in params"):
        build_nonlinear_design(SSFOL, theoph, {"lKe": "1", "lKa": "1 + (1 | Subject)"})
    with pytest.raises(FormulaError, match="both a data column and a parameter"):
        build_nonlinear_design("circumference ~ Asym * age", orange, {"Asym": "1", "age": "1"})
    with pytest.raises(FormulaError, match="must map each parameter"):
        build_nonlinear_design(LOGIS, orange, {})


def test_parameter_formula_forms_and_errors(orange):
    same = [
        {"Asym": "~ 1 + (1 | Tree)", "xmid": "xmid ~ 1", "scal": "1"},
        ORANGE_PARAMS,
    ]
    designs = [build_nonlinear_design(LOGIS, orange, p) for p in same]
    assert designs[0].fixed_terms == designs[1].fixed_terms
    with pytest.raises(FormulaError, match="has 'scal' left of"):
        build_nonlinear_design(LOGIS, orange, {**ORANGE_PARAMS, "xmid": "scal ~ 1"})
    with pytest.raises(FormulaError, match="is empty"):
        build_nonlinear_design(LOGIS, orange, {**ORANGE_PARAMS, "xmid": " "})
    with pytest.raises(FormulaError, match="formula string"):
        build_nonlinear_design(LOGIS, orange, {**ORANGE_PARAMS, "xmid": 1})
    # a parameter with random effects only has no fixed effect
    random_only = build_nonlinear_design(
        "circumference ~ (Asym + dA) / (1 + exp((xmid - age) / scal))",
        orange,
        {**ORANGE_PARAMS, "dA": "0 + (1 | Tree)", "Asym": "1"},
    )
    assert random_only.fixed_terms == ("Asym", "xmid", "scal")
    assert random_only.blocks[0].terms == ("dA",)


def test_covariance_option_errors(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
    with pytest.raises(FormulaError, match="'Tree', which has no random effects"):
        build_nonlinear_design(SSFOL, theoph, params, cov={"Tree": "diagonal"})
    with pytest.raises(FormulaError, match="'unstructured'.*'diagonal'"):
        build_nonlinear_design(SSFOL, theoph, params, cov={"Subject": "banded"})
    mixed = {**params, "lKa": "1 + (1 || Subject)"}
    with pytest.raises(FormulaError, match="mix '\\|' and '\\|\\|'"):
        build_nonlinear_design(SSFOL, theoph, mixed)
    both = {**params, "lKa": "1 + (1 || Subject)", "lCl": "1 + (1 || Subject)"}
    assert build_nonlinear_design(SSFOL, theoph, both).blocks[0].covariance == "diagonal"
    with pytest.raises(FormulaError, match="appears twice"):
        build_nonlinear_design(
            SSFOL, theoph, {**params, "lKa": "1 + (1 | Subject) + (1 | Subject)"}
        )


def test_callable_mean_function(orange):
    def logistic(xp, age, Asym, xmid, scal):
        return Asym / (1 + xp.exp((xmid - age) / scal))

    design = build_nonlinear_design("circumference", orange, ORANGE_PARAMS, mean=logistic)
    assert design.mean_function.kind == "callable"
    assert design.mean_function.covariates == ("age",)
    assert design.response == "circumference"
    expression = build_nonlinear_design(LOGIS, orange, ORANGE_PARAMS)
    phi = design.phi(np.array([190.0, 700.0, 350.0]))
    np.testing.assert_allclose(design.mean(np, phi), expression.mean(np, phi))
    with pytest.raises(FormulaError, match="only the response"):
        build_nonlinear_design(LOGIS, orange, ORANGE_PARAMS, mean=logistic)
    with pytest.raises(FormulaError, match=r"no \*args/\*\*kwargs"):
        build_nonlinear_design("circumference", orange, ORANGE_PARAMS, mean=lambda xp, **kw: 0)

    def typo(xp, agee, Asym, xmid, scal):
        return Asym

    with pytest.raises(FormulaError, match="agee"):
        build_nonlinear_design("circumference", orange, ORANGE_PARAMS, mean=typo)


def test_complex_step_derivatives_are_exact_even_with_abs(orange):
    design = build_nonlinear_design(
        "circumference ~ Asym * abs(age - xmid) + scal", orange, ORANGE_PARAMS
    )
    phi = design.phi(np.array([2.0, 700.0, 1.0]))
    _, gradient = mean_and_gradient(design, phi, complex_step=True)
    age = orange["age"].to_numpy()
    np.testing.assert_allclose(gradient["xmid"], -2.0 * np.sign(age - 700.0), rtol=1e-14)
    np.testing.assert_allclose(gradient["Asym"], np.abs(age - 700.0), rtol=1e-14)
    _, central = mean_and_gradient(design, phi, complex_step=False)
    np.testing.assert_allclose(central["Asym"], gradient["Asym"], rtol=1e-8)


def test_rows_with_missing_values_are_dropped_once(theoph):
    data = theoph.copy()
    data.loc[[3, 40], "Wt"] = np.nan
    data.loc[5, "Time"] = np.nan
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    with pytest.warns(DataWarning, match="Dropped 3 of 132"):
        design = build_nonlinear_design(SSFOL, data, params)
    assert design.n_obs == 129 and design.n_dropped == 3
    assert all(p.X.shape[0] == 129 for p in design.parameters)
    assert design.covariates["Time"].shape == (129,)


def test_bad_columns(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1"}
    with pytest.raises(DataError, match="must be numeric"):
        build_nonlinear_design("conc ~ SSfol(Subject, Time, lKe, lKa, lCl)", theoph, params)
    with pytest.raises(FormulaError, match="'Dosage'"):
        build_nonlinear_design("conc ~ lKe * Dosage", theoph, {"lKe": "1 + (1 | Subject)"})
    with pytest.raises(DataError, match="Weight"):
        build_nonlinear_design(SSFOL, theoph, {**params, "lCl": "1 + Weight"})


def test_new_data_encoding_gives_zero_effects_to_new_levels(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    design = build_nonlinear_design(SSFOL, theoph, params)
    new = theoph.iloc[[0, 20]].copy()
    new["Subject"] = [str(new["Subject"].iloc[0]), "99"]
    encoded = design.evaluate_new_data(new)
    assert encoded.new_levels == ("Subject",)
    beta = np.array([-2.5, 0.5, -3.0, 0.01])
    b = [np.ones((12, 2))]
    phi = design.phi_new(encoded, beta, b)
    np.testing.assert_allclose(phi["lKa"], [1.5, 0.5])
    np.testing.assert_allclose(phi["lCl"], -3.0 + 0.01 * new["Wt"].to_numpy() + [1.0, 0.0])


def test_model_repr_and_update(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
    model = nlmm(SSFOL, theoph, params, cov={"Subject": "diagonal"})
    text = repr(model)
    assert "selfstart" in text and "pdDiag(lKa + lCl | Subject)" in text
    bigger = model.update(params={"lKe": "1 + (1 | Subject)"})
    assert bigger.design.blocks[0].terms == ("lKe", "lKa", "lCl")
    assert model.design.blocks[0].terms == ("lKa", "lCl")  # unchanged
    assert bigger.update(cov="unstructured").design.blocks[0].covariance == "unstructured"


def test_mean_runs_on_pytensor(orange):
    pt = pytest.importorskip("pytensor.tensor")
    import pytensor

    design = build_nonlinear_design(LOGIS, orange, ORANGE_PARAMS)
    beta = pt.vector("beta")
    b = pt.matrix("b")
    mu = design.mean(pt, design.phi(beta, [b], xp=pt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = pytensor.function([beta, b], mu, mode="FAST_COMPILE")
    values = fn(np.array([190.0, 700.0, 350.0]), np.arange(5.0)[:, None])
    expected = design.mean(
        np, design.phi(np.array([190.0, 700.0, 350.0]), [np.arange(5.0)[:, None]])
    )
    np.testing.assert_allclose(values, expected)
    assert isinstance(pd.Series(values).sum(), float)
