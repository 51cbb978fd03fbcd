"""Formulas as R users write them, against lmer fits of the same calls.

References: tests/refs/rfidelity/formulas (make_formula_refs.R, lme4 1.1.31).
Tolerances (the issue's): logLik, AIC, BIC 1e-4 absolute; fixed effects and
their SEs 1e-5 relative (with an absolute floor of 1e-7 times the largest
coefficient, for coefficients that are zero in exact arithmetic); sigma 1e-5.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rfidelity import REFS, assert_close, assert_named_close, load_ref, r_data, scale_of

import bayesmix as bmx
from bayesmix.datasets import load_dataset
from bayesmix.datasets._catalog import CATALOG

# case -> (bayesmix formula, contrasts=) for the R call recorded in the JSON
CASES = {
    "cake_ordered": ("angle ~ recipe * temperature + (1 | recipe:replicate)", None),
    "cake_crossing": ("angle ~ (recipe + temperature)^2 + (1 | recipe:replicate)", None),
    "orthodont_sum": ("distance ~ age * Sex + (1 | Subject)", {"Sex": "contr.sum"}),
    "orthodont_Csum": ("distance ~ age * C(Sex, contr.sum) + (1 | Subject)", None),
    "machines_helmert": ("score ~ Machine + (1 | Worker)", {"Machine": "helmert"}),
    "machines_poly_forced": ("score ~ C(Machine, contr.poly) + (1 | Worker)", None),
    "orthodont_Isq": ("distance ~ age + I(age^2) + Sex + (1 | Subject)", None),
    "ovary_sin": ("follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)", None),
    "sleepstudy_poly": ("Reaction ~ poly(Days, 2) + (Days | Subject)", None),
    "cake_in": ("angle ~ recipe + temp %in% recipe + (1 | recipe:replicate)", None),
    "cake_sum_inter": (
        "angle ~ recipe * temperature + (1 | recipe:replicate)",
        {"recipe": "sum", "temperature": "sum"},
    ),
    "cake_ordered_noint": ("angle ~ 0 + temperature + (1 | recipe:replicate)", None),
}


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_formula_matches_lmer(case, method):
    ref = load_ref("formulas", f"{case}_{method}")
    formula, contrasts = CASES[case]
    fit = bmx.lmm(formula, r_data("formulas", ref), contrasts=contrasts).fit(method.upper())
    assert_close(fit.loglik, ref["logLik"], 0, 1e-4, "logLik")
    assert_close(fit.aic, ref["AIC"], 0, 1e-4, "AIC")
    assert_close(fit.bic, ref["BIC"], 0, 1e-4, "BIC")
    assert fit.df == ref["df"] and fit.nobs == ref["nobs"]
    assert_close(fit.sigma, ref["sigma"], 1e-5, 0, "sigma")
    fixef = fit.fixef()
    floor = 1e-7 * scale_of(ref["fixef"].values())
    assert_named_close(fixef["estimate"], ref["fixef"], 1e-5, floor, "estimate")
    assert_named_close(fixef["std_error"], ref["se"], 1e-5, 0, "SE")


def test_r_column_names():
    """Columns are named as R names them, so tables line up with R's."""
    ref = load_ref("formulas", "cake_ordered_reml")
    names = bmx.lmm(CASES["cake_ordered"][0], r_data("formulas", ref)).design.fixed_terms
    assert names[:8] == (
        "Intercept",
        "recipe[B]",
        "recipe[C]",
        "temperature.L",
        "temperature.Q",
        "temperature.C",
        "temperature^4",
        "temperature^5",
    )
    sleep = load_dataset("sleepstudy")
    design = bmx.lmm("Reaction ~ poly(Days, 2) + I(Days^2) + (poly(Days, 2) | Subject)", sleep)
    assert design.design.fixed_terms[1:3] == ("poly(Days, 2)1", "poly(Days, 2)2")
    assert design.design.blocks[0].terms == ("Intercept", "poly(Days, 2)1", "poly(Days, 2)2")
    ortho = bmx.lmm("distance ~ age * C(Sex, 'sum') + (1 | Subject)", load_dataset("Orthodont"))
    assert ortho.design.fixed_terms == (
        "Intercept",
        "age",
        "C(Sex, 'sum')1",
        "age:C(Sex, 'sum')1",
    )


def test_poly_contrast_is_r_contr_poly():
    """contr.poly(4) from R (printed to 12 digits), columns .L .Q .C."""
    from bayesmix.spec.contrasts import poly_contrast

    expected = np.array(
        [
            [-0.670820393250, 0.5, -0.223606797750],
            [-0.223606797750, -0.5, 0.670820393250],
            [0.223606797750, -0.5, -0.670820393250],
            [0.670820393250, 0.5, 0.223606797750],
        ]
    )
    np.testing.assert_allclose(poly_contrast(4), expected, atol=1e-11)


def test_ordered_factor_in_random_slopes_gets_poly_columns():
    cake = load_dataset("cake")
    block = bmx.lmm("angle ~ 1 + (temperature | replicate)", cake).design.blocks[0]
    assert block.terms[1:3] == ("temperature.L", "temperature.Q")


def test_bundled_datasets_keep_r_factors():
    """Every bundled factor has R's levels, and R's ordered flag."""
    listing = json.loads((REFS / "formulas" / "datasets_factors.json").read_text())["datasets"]
    checked = 0
    for name in CATALOG:
        frame = load_dataset(name)
        for column, info in listing[name]["factors"].items():
            dtype = frame[column].dtype
            assert isinstance(dtype, pd.CategoricalDtype), (name, column)
            assert list(dtype.categories) == info["levels"], (name, column)
            assert bool(dtype.ordered) == info["ordered"], (name, column)
            checked += 1
    assert checked > 20


def test_prediction_on_new_rows_with_contrasts():
    """New rows are coded with the fitting data's contrasts."""
    cake = load_dataset("cake")
    fit = bmx.lmm(
        "angle ~ recipe + temperature + (1 | replicate)", cake, contrasts={"recipe": "sum"}
    ).fit()
    rows = cake.iloc[[0, 100, 200]]
    np.testing.assert_allclose(fit.predict(rows), fit.fitted()[[0, 100, 200]], rtol=1e-12)


def test_contrasts_argument_errors():
    cake = load_dataset("cake")
    formula = "angle ~ recipe + (1 | replicate)"
    with pytest.raises(bmx.ArgumentError, match="unknown contrasts 'sums'"):
        bmx.lmm(formula, cake, contrasts={"recipe": "sums"})
    with pytest.raises(bmx.ArgumentError, match="'temp' is numeric"):
        bmx.lmm(formula, cake, contrasts={"temp": "sum"})
    with pytest.raises(bmx.ArgumentError, match="'recipes' is not a column"):
        bmx.lmm(formula, cake, contrasts={"recipes": "sum"})
    with pytest.raises(bmx.ArgumentError, match="must be a dict"):
        bmx.lmm(formula, cake, contrasts="sum")
    with pytest.raises(bmx.FormulaError, match="unknown contrasts 'polynomial'"):
        bmx.lmm("angle ~ C(recipe, polynomial) + (1 | replicate)", cake)
    with pytest.raises(bmx.FormulaError, match="unknown contrasts 'polynomial'"):
        bmx.lmm("angle ~ C(recipe, 'polynomial') + (1 | replicate)", cake)
    with pytest.raises(bmx.FormulaError, match="takes a factor and its contrasts only"):
        bmx.lmm("angle ~ C(recipe, sum, 2) + (1 | replicate)", cake)


def test_treatment_contrasts_override_ordered_default():
    cake = load_dataset("cake")
    model = bmx.lmm(
        "angle ~ temperature + (1 | replicate)", cake, contrasts={"temperature": "treatment"}
    )
    assert model.design.fixed_terms[1] == "temperature[185]"


def test_contrasts_apply_to_the_fixed_part_only():
    """lme4 codes bars with R's defaults whatever contrasts= says (Machines, lmer: the
    (Machine || Worker) fit is the same with and without contrasts = helmert)."""
    machines = load_dataset("Machines")
    formula = "score ~ Machine + (Machine | Worker)"
    plain = bmx.lmm(formula, machines)
    helmert = bmx.lmm(formula, machines, contrasts={"Machine": "helmert"})
    assert helmert.design.fixed_terms == ("Intercept", "Machine1", "Machine2")
    assert helmert.design.blocks[0].terms == plain.design.blocks[0].terms
    assert helmert.fit("ML").loglik == pytest.approx(plain.fit("ML").loglik, abs=1e-7)
    with pytest.warns(bmx.DataWarning, match="'Worker' is not a factor of the fixed part"):
        bmx.lmm(formula, machines, contrasts={"Worker": "sum"})


def test_factors_inside_other_calls_are_left_alone():
    cake = load_dataset("cake")  # temperature is ordered: poly as a term, not inside I()
    model = bmx.lmm("angle ~ I(temperature == '175') + temperature + (1 | replicate)", cake)
    assert model.design.fixed_terms[1] == "I(temperature == '175')"
    seen = []
    bmx.lmm(
        "angle ~ hot(temperature) + (1 | replicate)",
        cake,
        functions={"hot": lambda t: seen.append(type(t)) or (t.astype(str) > "200")},
    )
    assert all(t is pd.Series for t in seen)


def test_c_without_contrasts_and_keyword_contrasts():
    cake = load_dataset("cake")
    plain = bmx.lmm("angle ~ C(temperature) + (1 | replicate)", cake).design.fixed_terms
    assert plain[1] == "temperature.L"  # C(f) keeps f's coding (poly: f is ordered), as in R
    keyword = bmx.lmm("angle ~ C(recipe, contr = 'sum') + (1 | replicate)", cake)
    assert keyword.design.fixed_terms[1] == "C(recipe, 'sum')1"


def test_awkward_names_and_levels_are_renamed():
    ortho = load_dataset("Orthodont")
    ortho["my sex"] = ortho["Sex"]
    model = bmx.lmm("distance ~ age + `my sex` + (1 | Subject)", ortho, contrasts={"my sex": "sum"})
    assert model.design.fixed_terms[2] == "my sex1"
    levels = ["[c", "m]", "a]b["]
    data = pd.DataFrame(
        {
            "y": np.arange(30.0) % 7,
            "f": pd.Categorical(np.tile(levels, 10), categories=levels, ordered=True),
            "x": np.arange(30.0),
            "g": np.repeat(list("abcde"), 6),
        }
    )
    names = bmx.lmm("y ~ 0 + f + f:x + (1 | g)", data).design.fixed_terms
    assert names[:3] == ("f[[c]", "f[m]]", "f[a]b[]")
    # x is not in the model, so f:x needs every level of f (R's rule, and formulae's)
    assert names[3:] == ("f[[c]:x", "f[m]]:x", "f[a]b[]:x")


def test_polynomial_contrasts_stop_where_r_does():
    data = pd.DataFrame(
        {
            "y": np.arange(200.0),
            "f": pd.Categorical(np.arange(200) // 2, ordered=True),
            "g": np.tile(list("ab"), 100),
        }
    )
    with pytest.raises(bmx.ArgumentError, match="too many for polynomial contrasts"):
        bmx.lmm("y ~ f + (1 | g)", data)


def test_pd_cut_intervals_warn_that_they_are_ordered():
    sleep = load_dataset("sleepstudy")
    sleep["period"] = pd.cut(sleep["Days"], [-1, 3, 6, 9])
    with pytest.warns(bmx.DataWarning, match="pd.cut and pd.qcut make them ordered"):
        model = bmx.lmm("Reaction ~ period + (1 | Subject)", sleep)
    assert model.design.fixed_terms[1:] == ("period.L", "period.Q")
