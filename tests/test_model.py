"""Model constructors, update(), and the import boundary between the engines."""

import subprocess
import sys

import pytest

import bayesmix as bmx
from bayesmix.errors import FormulaError


def test_ml_path_never_imports_pymc():
    code = (
        "import sys, bayesmix as bmx\n"
        "sleep = bmx.load_dataset('sleepstudy')\n"
        "fit = bmx.lmm('Reaction ~ Days + (Days | Subject)', sleep).fit()\n"
        "fit.summary(); bmx.anova(fit.update(method='ML'), fit.update(method='ML'))\n"
        "bad = [m for m in ('pymc', 'pytensor', 'arviz', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(round(fit.loglik, 4))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "-871.8141"


def test_update_edits_fixed_and_random_parts(arabidopsis):
    base = bmx.lmm(
        "log(1 + total.fruits) ~ rack + nutrient + amd + status + (1 | popu/gen)", arabidopsis
    )
    slopes = base.update(random="~nutrient | popu/gen")
    assert [b.label for b in slopes.design.blocks] == [
        "(1 + nutrient[8] | popu)",
        "(1 + nutrient[8] | popu:gen)",
    ]
    interaction = slopes.update(". ~ . + nutrient:amd")
    assert "nutrient[8]:amd[unclipped]" in interaction.design.fixed_terms
    assert [b.label for b in interaction.design.blocks] == [b.label for b in slopes.design.blocks]
    null = base.update(random="")
    assert null.design.blocks == ()
    # the original model is untouched
    assert base.formula.endswith("(1 | popu/gen)")


def test_gls_refuses_random_terms():
    sleep = bmx.load_dataset("sleepstudy")
    with pytest.raises(FormulaError, match="use lmm"):
        bmx.gls("Reaction ~ Days + (1 | Subject)", sleep)
    assert bmx.gls("Reaction ~ Days", sleep).design.blocks == ()


def test_method_is_checked():
    model = bmx.lmm("Reaction ~ Days + (1 | Subject)", bmx.load_dataset("sleepstudy"))
    with pytest.raises(ValueError, match="'REML' or 'ML'"):
        model.fit(method="OLS")


def test_unknown_public_name():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bmx.nothing  # noqa: B018


def test_user_data_is_not_modified(arabidopsis):
    before = arabidopsis.copy(deep=True)
    model = bmx.lmm("log(1 + total.fruits) ~ rack + amd + (1 | popu/gen)", arabidopsis)
    model.fit(method="ML").predict(arabidopsis.head(5))
    assert arabidopsis.equals(before)
    assert list(arabidopsis.dtypes) == list(before.dtypes)
