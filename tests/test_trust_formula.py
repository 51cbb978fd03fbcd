"""Formulas are data, not code; every token is used; bad input is named.

Covers items 1, 2 and 5 of the trust issue (and the grouping-tuple rule of
item 4): injection strings create no file and raise FormulaError before any
evaluation; trailing tokens are errors; `(0 | g)` is refused and `y ~ 0 + (1 | g)`
fits; a response on the right is an error; non-ASCII, back-quoted and `C`
column names work; interaction levels are identified by tuples.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import DataError, FormulaError
from bayesmix.spec.design import build_design
from bayesmix.spec.formula import parse_formula
from bayesmix.spec.formula_eval import FORMULA_FUNCTIONS


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


def _injections(path: str) -> list[str]:
    call = f"system('touch {path}')"
    return [
        f"Reaction ~ Days + np.f2py.os.{call} + (1|Subject)",
        f"Reaction ~ Days + I(np.f2py.os.{call}) + (1|Subject)",
        f"np.f2py.os.{call} ~ Days + (1|Subject)",
        f"Reaction ~ Days + (np.f2py.os.{call} | Subject)",
        f"Reaction ~ Days + (1 | np.f2py.os.{call})",
        f"Reaction ~ Days + I(pd.io.common.os.{call}) + (1|Subject)",
        f"Reaction ~ I(np.savetxt('{path}', Days)) + (1|Subject)",
        f"Reaction ~ I(open('{path}', 'w')) + (1|Subject)",
        f"Reaction ~ I(eval(\"__import__('os').{call}\")) + (1|Subject)",
        "Reaction ~ I(log.__globals__) + (1|Subject)",
        f"Reaction ~ I(C.__init__.__globals__.get('os').{call}) + (1|Subject)",
    ]


def test_injection_strings_create_no_file_and_raise(sleep, tmp_path):
    path = str(tmp_path / "pwned")
    for formula in _injections(path):
        with pytest.raises((FormulaError, DataError)):
            bmx.lmm(formula, sleep)
        assert not os.path.exists(path), formula


def test_injection_through_update_and_nlmm_params(sleep, tmp_path):
    path = str(tmp_path / "pwned")
    fit = bmx.lmm("Reaction ~ Days + (1|Subject)", sleep).fit()
    with pytest.raises(FormulaError, match="cannot reach modules or attributes"):
        fit.update(f". ~ . + np.f2py.os.system('touch {path}')")
    theoph = bmx.load_dataset("Theoph")
    with pytest.raises(FormulaError, match="not a function a formula may call"):
        bmx.nlmm(
            "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
            theoph,
            params={"lKe": "1", "lKa": f"1 + I(os.system('touch {path}'))", "lCl": "1"},
        )
    assert not os.path.exists(path)


def test_dotted_names_that_are_not_columns_are_refused(sleep):
    with pytest.raises(FormulaError, match="'np.pi' .*cannot reach modules"):
        bmx.lmm("Reaction ~ I(Days * np.pi) + (1|Subject)", sleep)
    # pi itself is a documented constant
    design = build_design("Reaction ~ I(Days * pi) + (1|Subject)", sleep)
    np.testing.assert_allclose(design.X[:, 1], sleep["Days"] * np.pi)


def test_user_functions_are_the_only_extra_callables(sleep):
    with pytest.raises(FormulaError, match="'logit' .* functions=\\{'logit'"):
        bmx.lmm("Reaction ~ logit(Days / 10 + 0.05) + (1|Subject)", sleep)

    def logit(p):
        return np.log(p / (1 - p))

    model = bmx.lmm(
        "Reaction ~ logit(Days / 10 + 0.05) + (1|Subject)", sleep, functions={"logit": logit}
    )
    np.testing.assert_allclose(model.design.X[:, 1], logit(sleep["Days"] / 10 + 0.05))
    with pytest.raises(FormulaError, match="must be callable"):
        bmx.lmm("Reaction ~ Days", sleep, functions={"logit": 3})


def test_documented_functions_evaluate(sleep):
    assert set(FORMULA_FUNCTIONS) >= {"log", "log1p", "exp", "sqrt", "abs", "I", "C", "poly"}
    assert set(FORMULA_FUNCTIONS) >= {"scale", "center", "standardize"}
    design = build_design("log(Reaction) ~ sqrt(Days) + I(Days^2) + scale(Days)", sleep)
    np.testing.assert_allclose(design.y, np.log(sleep["Reaction"]))
    np.testing.assert_allclose(design.X[:, 2], sleep["Days"] ** 2)  # R's ^ inside I()
    days = sleep["Days"].to_numpy(float)
    # R's scale(): the SD with denominator n - 1 (formulae's own scale() uses n)
    np.testing.assert_allclose(design.X[:, 3], (days - days.mean()) / days.std(ddof=1))
    # remembered for new data: the fitting rows' mean and SD
    new = design.evaluate_new_data(sleep.iloc[:3])
    np.testing.assert_allclose(new.X[:, 3], design.X[:3, 3])


@pytest.mark.parametrize(
    "formula, message",
    [
        ("Reaction ~ Days Subject", "'Subject' follows 'Days' with no operator"),
        ("Reaction ~ Days}} + (1|Subject)", "unexpected '}'"),
        ("Reaction ~ Days + (1|Subject) )", "Unbalanced"),
        ("Reaction ~ log(Days + 1) 2 + (1|Subject)", "'2' follows"),
        ("Reaction ~ Days + (Days Days | Subject)", "no operator"),
        ("Reaction ~ Days + (0 | Subject)", "has no random effect"),
        ("Reaction ~ Days + (0 + 0 | Subject)", "has no random effect"),
        ("Reaction ~ Reaction + (1|Subject)", "'Reaction' appears on both sides"),
        ("log(Reaction) ~ I(Reaction / 2) + (1|Subject)", "'Reaction' appears on both sides"),
        ("Reaction ~ Days + (1|Reaction)", "'Reaction' appears on both sides"),
        ("Reaction ~ 0", "has no terms"),
    ],
)
def test_every_token_is_used_or_rejected(sleep, formula, message):
    with pytest.raises(FormulaError, match=message):
        bmx.lmm(formula, sleep)


def test_no_fixed_effects_fits_like_lme4(sleep):
    # lme4: lmer(Reaction ~ 0 + (1|Subject), sleepstudy) has no fixed effects.
    fit = bmx.lmm("Reaction ~ 0 + (1 | Subject)", sleep).fit(method="ML")
    assert fit.fixef().empty and fit.df == 2
    # Without fixed effects the ML estimates have a closed-form check: the
    # conditional modes absorb each subject's mean shrunk towards zero.
    assert np.all(np.abs(fit.fitted() - fit.predict(sleep)) < 1e-9)


def test_offset_terms_are_parsed_out_of_the_fixed_part():
    spec = parse_formula("y ~ x + offset(10 * x) + offset(log(t)) + (1 | g)")
    assert spec.fixed == "x" and spec.offsets == ("10 * x", "log(t)")
    with pytest.raises(FormulaError, match="Cannot subtract"):
        parse_formula("y ~ x - offset(z)")


def test_non_ascii_backquoted_and_C_column_names(sleep):
    renamed = sleep.rename(columns={"Days": "größe", "Reaction": "β"})
    fit = bmx.lmm("β ~ größe + (größe | Subject)", renamed).fit()
    assert list(fit.fixef().index) == ["Intercept", "größe"]
    spaced = sleep.rename(columns={"Days": "my x", "Subject": "my group"})
    fit2 = bmx.lmm("Reaction ~ `my x` + (1 | `my group`)", spaced).fit()
    assert list(fit2.ranef()) == ["my group"]
    np.testing.assert_allclose(fit2.predict(spaced), fit2.fitted(), rtol=1e-12)
    with_c = sleep.rename(columns={"Subject": "C"}).assign(I=sleep["Days"] * 2.0)
    fit3 = bmx.lmm("Reaction ~ I + (1 | C)", with_c).fit()
    assert list(fit3.fixef().index) == ["Intercept", "I"]


def test_interaction_levels_are_tuples_not_joined_strings():
    rng = np.random.default_rng(3)
    a = ["x:y", "x", "q", "r"] * 30
    b = ["z", "y:z", "s", "t"] * 30
    effect = {"x:y": 1.0, "x": -1.0, "q": 0.5, "r": -0.5}
    data = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "x": rng.normal(size=120),
            "y": rng.normal(size=120) + np.array([effect[v] for v in a]) * 2,
        }
    )
    fit = bmx.lmm("y ~ x + (1 | a:b)", data).fit()
    levels = list(fit.ranef()["a:b"].index.get_level_values(0))
    assert len(set(levels)) == 4  # "x:y"+"z" and "x"+"y:z" stay two levels
    np.testing.assert_allclose(fit.predict(data), fit.fitted(), rtol=1e-12)


@pytest.mark.parametrize(
    "column, message",
    [
        (pd.date_range("2020-01-01", periods=180), "dates or durations"),
        (pd.Series([1, "a"] * 90, dtype=object), "holds values of type"),
        (pd.Series([1 + 2j] * 180), "complex"),
    ],
)
def test_unusable_predictor_types_are_named(sleep, column, message):
    with pytest.raises(DataError, match=f"'bad'.*{message}|{message}.*'bad'"):
        bmx.lmm("Reaction ~ bad + (1 | Subject)", sleep.assign(bad=column.to_numpy()))


def test_bad_grouping_and_frames_are_named(sleep):
    mixed = sleep.assign(g=np.array([1, "a"] * 90, dtype=object))
    with pytest.raises(DataError, match="grouping column 'g' mixes"):
        bmx.lmm("Reaction ~ Days + (1 | g)", mixed)
    duplicated = sleep.set_axis(["Reaction", "Days", "Days"], axis=1)
    with pytest.raises(DataError, match="duplicated column name.*'Days'"):
        bmx.lmm("Reaction ~ Days", duplicated)
    with pytest.raises(FormulaError, match="update\\(\\) takes a formula string"):
        bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).update(5)


def test_predict_refuses_bad_new_rows(sleep):
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).fit()
    with pytest.raises(DataError, match="no rows"):
        fit.predict(sleep.head(0))
    with pytest.raises(DataError, match="not finite|non-finite"):
        fit.predict(sleep.head(3).assign(Days=np.inf))
    with pytest.raises(DataError, match="'Subject' has missing values"):
        fit.predict(sleep.head(3).assign(Subject=np.nan))
    with pytest.raises(DataError, match="lacks column.*Days"):
        fit.predict(sleep[["Subject"]].head(3))


def test_rank_check_keeps_a_predictor_far_from_zero(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error", bmx.DataWarning)
        design = build_design("Reaction ~ x1 + (1|Subject)", sleep.assign(x1=sleep.Days + 1e6))
        stamp = build_design(
            "Reaction ~ x2 + (1|Subject)", sleep.assign(x2=1.7e9 + 1e3 * sleep.Days)
        )
    assert design.fixed_terms == ("Intercept", "x1")
    assert stamp.fixed_terms == ("Intercept", "x2")
    with pytest.warns(bmx.DataWarning, match="dropping aliased column\\(s\\) z"):
        aliased = build_design("Reaction ~ Days + z", sleep.assign(z=2 * sleep.Days + 1))
    assert aliased.fixed_terms == ("Intercept", "Days")


def _with_callee_columns(data: pd.DataFrame) -> pd.DataFrame:
    """Columns named like callees, so that `name[x](...)` parses as a call of `name`."""
    names = ["T", "exec", "I.__builtins__.__setitem__", "I.__globals__.get"]
    return data.assign(**{name: 0.0 for name in names})


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ T[Days](Subject)",
        "Reaction ~ I(Days == I.__builtins__.__setitem__[Days]('pwned', 42))",
        "Reaction ~ I(Days == exec[Days]('import os'))",
        "Reaction ~ I(Days)(Days)",
        "Reaction ~ Days[a]",
        "Reaction ~ p(Days, 3)",
        "Reaction ~ S(Subject)",
    ],
)
def test_subset_and_call_tricks_are_refused(sleep, formula):
    import builtins

    with pytest.raises(FormulaError):
        bmx.gls(formula, _with_callee_columns(sleep))
    assert not hasattr(builtins, "pwned")


def test_user_functions_cannot_shadow_formulae_transforms(sleep):
    for name in ("scale", "center", "B", "Treatment", "offset", "__class__"):
        with pytest.raises(FormulaError, match=f"functions: {name!r}"):
            bmx.gls("Reaction ~ Days", sleep, functions={name: np.log})


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ I(offset(Days))",
        "Reaction ~ Days:offset(Days)",
        "Reaction ~ (offset(Days) | Subject)",
    ],
)
def test_offset_is_only_a_top_level_term(sleep, formula):
    with pytest.raises(FormulaError, match="'offset'"):
        bmx.lmm(formula, sleep)


def test_update_keeps_offsets_and_refuses_stale_arrays(sleep):
    model = bmx.lmm("Reaction ~ Days + offset(2 * Days) + (1 | Subject)", sleep)
    assert "offset(2 * Days)" in model.update(random="Days | Subject").formula
    weighted = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep, weights=np.ones(len(sleep)))
    with pytest.raises(DataError, match="weights was given as an array"):
        weighted.update(data=sleep.sample(frac=1.0, random_state=1))


def test_multi_column_response_is_refused(sleep):
    with pytest.raises(FormulaError, match="one response column"):
        bmx.lmm("poly(Reaction, 2) ~ Days + (1 | Subject)", sleep)


def test_large_integer_grouping_ids_stay_distinct():
    rng = np.random.default_rng(5)
    ids = np.array([2**60, 2**60 + 1, 2**60 + 2, 2**60 + 3], dtype=np.int64)
    g = np.repeat(ids, 10)
    data = pd.DataFrame(
        {
            "g": g,
            "x": rng.normal(size=40),
            "y": rng.normal(size=40) + np.repeat([0, 10, 20, 30], 10),
        }
    )
    fit = bmx.lmm("y ~ x + (1 | g)", data).fit()
    np.testing.assert_allclose(fit.predict(data), fit.fitted(), rtol=1e-12)


def test_nlmm_parameter_offsets_are_refused():
    theoph = bmx.load_dataset("Theoph")
    with pytest.raises(FormulaError, match="offset\\(\\) term.*nlmm\\(\\.\\.\\., offset=\\)"):
        bmx.nlmm(
            "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
            theoph,
            params={"lKe": "1 + offset(Dose)", "lKa": "1 + (1 | Subject)", "lCl": "1"},
        )


def test_foreign_errors_become_bayesmix_errors(sleep, tmp_path):
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).fit()
    with pytest.raises(bmx.ArgumentError, match="method"):
        bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).fit(method=None)
    with pytest.raises(bmx.ArgumentError, match="kind"):
        fit.residuals("x")
    with pytest.raises(DataError, match="newdata cannot be encoded"):
        fit.predict(sleep.head(3).assign(Days="three"))
    with pytest.raises(FormulaError):
        bmx.lmm("Reaction ~ poly(Days, 0) + (1 | Subject)", sleep)
    with pytest.raises(bmx.ArgumentError, match="file path"):
        fit.save(None)
    with pytest.raises(bmx.ArgumentError, match="directory"):
        fit.save(tmp_path)
    with pytest.raises(bmx.ArgumentError, match="not a file"):
        bmx.load(tmp_path / "missing.bmx")


def test_offset_column_and_start_values_must_be_numbers(sleep):
    data = sleep.assign(o=2.0 * sleep["Days"])
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", data, offset="o").fit()
    with pytest.raises(DataError, match="offset column 'o' must be numeric"):
        fit.predict(data.head(3).assign(o="5"))
    orange = bmx.load_dataset("Orange")
    with pytest.raises(bmx.ArgumentError, match="start\\['Asym'\\] must be a finite number"):
        bmx.nlmm(
            "circumference ~ Asym / (1 + exp((xmid - age) / scal))",
            orange,
            params={"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"},
            start={"Asym": "z", "xmid": 700, "scal": 350},
        ).fit()
