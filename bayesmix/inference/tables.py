"""Coefficient tables with denominator degrees of freedom and single-model F tables.

:func:`coef_table` is lmerTest's ``summary(fit, ddf=)$coefficients``;
:func:`term_anova` is lmerTest's ``anova(fit, type=, ddf=)``. The degrees of
freedom come from :mod:`.satterthwaite` or :mod:`.kenward_roger`; ``ddf="residual"``
gives ``n - p`` (nlme's ``gls``, and any model without random effects),
``ddf="containment"`` nlme's between/within degrees of freedom for nested
groupings (:mod:`.containment`).
``ddf="Satterthwaite"`` on a fit without random effects is ``n - p`` too, as the
variance of a contrast is then ``sigma^2`` times a constant.

Notation
--------
nu : denominator degrees of freedom; q : numerator degrees of freedom.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.inference.containment import containment_df, containment_term_df
from bayesmix.inference.hypotheses import (
    contained,
    term_columns,
    type1_hypotheses,
    type3_hypotheses,
)
from bayesmix.inference.kenward_roger import KenwardRoger
from bayesmix.inference.satterthwaite import FTest, contrast_df, f_test, wald_f
from bayesmix.inference.variance_parameters import variance_parameters
from bayesmix.ml.rformat import format_column, format_pvalue, render_table, zapsmall

__all__ = ["DDF_METHODS", "CoefTable", "TermAnova", "coef_table", "term_anova", "check_ddf"]

Ddf = Literal["Satterthwaite", "Kenward-Roger", "containment", "residual"]
#: Accepted spellings of each method (lmerTest's and short ones).
DDF_METHODS = {
    "satterthwaite": "Satterthwaite",
    "kenward-roger": "Kenward-Roger",
    "kenward_roger": "Kenward-Roger",
    "kr": "Kenward-Roger",
    "residual": "residual",
    "containment": "containment",
}


def check_ddf(result: Any, ddf: Any) -> str:
    """The canonical ``ddf`` name, or a bayesmix error naming what to do instead."""
    require_linear_fit(result, "ddf= (degrees of freedom and p-values)")
    key = str(ddf).lower() if isinstance(ddf, str) else None
    if key not in DDF_METHODS:
        raise ArgumentError(
            "ddf must be 'Satterthwaite', 'Kenward-Roger', 'containment' (nlme's) or "
            f"'residual', not {ddf!r}."
        )
    return DDF_METHODS[key]


def _plain_vcov(result: Any) -> np.ndarray:
    """``V_beta`` of the n - p and containment tests: nlme's conventions scale an ML fit's
    by ``n / (n - p)`` (``adjustSigma``), as their summaries print."""
    V = np.asarray(result.estimates.vcov_beta, dtype=float)
    n, p = result.nobs, V.shape[0]
    if result.conventions == "nlme" and result.method == "ML" and n > p:
        V = V * n / (n - p)
    return V


def _wald_test(result: Any, V: np.ndarray, nu_of: Any):
    """``(L, beta) -> FTest`` with ``nu_of(L)`` denominator degrees of freedom."""

    def test(L: np.ndarray, beta: np.ndarray) -> FTest:
        rows, _, F = wald_f(L, beta, V)
        nu = float(nu_of(np.atleast_2d(L)))
        return FTest.of(F, rows.shape[0], nu, float(result.estimates.sigma) ** 2)

    return test


def _df_function(result: Any, ddf: str):
    """``(c -> nu, (L, beta) -> FTest, V_beta)`` for the chosen method (containment's
    F test is ``None``: :func:`term_anova` tests each term on nlme's per-term df)."""
    if ddf == "Kenward-Roger":
        kr = KenwardRoger.of(result)  # refuses ML fits, as lmerTest
        if result.design.blocks:
            return (lambda c: kr.df_and_scale(c[None, :])[0]), kr.f_test, kr.vcov_adjusted
    if ddf == "containment" and result.design.blocks:
        nu_columns = containment_df(result.design)

        return (lambda c: float(nu_columns[c != 0].min())), None, _plain_vcov(result)
    if ddf in ("residual", "containment") or not result.design.blocks:
        nu = float(result.nobs - result.design.n_fixed)
        V = _plain_vcov(result) if ddf != "Satterthwaite" else result.estimates.vcov_beta
        V = np.asarray(V, dtype=float)
        return (lambda c: nu), _wald_test(result, V, lambda L: nu), V
    vp = variance_parameters(result)
    V = np.asarray(result.estimates.vcov_beta, dtype=float)
    return (lambda c: contrast_df(vp, c, V)), (lambda L, beta: f_test(vp, L, beta, V)), V


class CoefTable(pd.DataFrame):
    """Fixed effects with ``df`` and ``p_value`` (lmerTest's coefficient table).

    ``attrs["ddf"]`` names the method. ``str()`` prints R's layout.
    """

    @property
    def _constructor(self):
        return CoefTable

    def __repr__(self) -> str:
        if not {"estimate", "std_error", "df", "t_value", "p_value"} <= set(self.columns):
            return pd.DataFrame(self).to_string()
        header = ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
        columns = [
            [str(i) for i in self.index],
            format_column(self["estimate"].to_numpy(), digits=4),
            format_column(self["std_error"].to_numpy(), digits=4),
            format_column(self["df"].to_numpy(), digits=4),
            format_column(self["t_value"].to_numpy(), digits=3),
            format_pvalues(self["p_value"].to_numpy()),
        ]
        rows = [list(r) for r in zip(*columns)]
        ddf = self.attrs.get("ddf", "")
        return f"Fixed effects ({'n - p' if ddf == 'residual' else ddf} df):\n" + render_table(
            header, rows, "lrrrrr"
        )

    __str__ = __repr__


def format_pvalues(values: np.ndarray) -> list[str]:
    """R's ``format.pval`` with 3 significant digits, per value."""
    return [format_pvalue(float(v)) for v in values]


def coef_table(result: Any, ddf: str = "Satterthwaite") -> CoefTable:
    """Estimates, SEs, ``df``, t values and two-sided p-values of the fixed effects."""
    ddf = check_ddf(result, ddf)
    df_of, _, V = _df_function(result, ddf)
    beta = np.asarray(result.estimates.beta, dtype=float)
    se = np.sqrt(np.diag(V))
    eye = np.eye(beta.size)
    nu = np.array([df_of(eye[j]) for j in range(beta.size)])
    t = beta / se
    table = CoefTable(
        {
            "estimate": beta,
            "std_error": se,
            "df": nu,
            "t_value": t,
            "p_value": 2.0 * stats.t.sf(np.abs(t), nu),
        },
        index=pd.Index(list(result.design.fixed_terms), name="term"),
    )
    table.attrs["ddf"] = ddf
    return table


class TermAnova(pd.DataFrame):
    """lmerTest's single-model anova: one F test per term.

    Columns ``sum_sq``, ``mean_sq``, ``num_df``, ``den_df``, ``F``, ``p_value``;
    ``attrs`` holds ``type`` and ``ddf``. ``str()`` prints lmerTest's layout.
    """

    @property
    def _constructor(self):
        return TermAnova

    def __repr__(self) -> str:
        if not {"sum_sq", "mean_sq", "num_df", "den_df", "F", "p_value"} <= set(self.columns):
            return pd.DataFrame(self).to_string()
        kind = {1: "I", 3: "III"}.get(self.attrs.get("type"), "")
        header = ["", "Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
        columns = [
            [str(i) for i in self.index],
            format_column(zapsmall(self["sum_sq"].to_numpy()), digits=5),
            format_column(zapsmall(self["mean_sq"].to_numpy()), digits=5),
            [str(int(q)) for q in self["num_df"]],
            format_column(self["den_df"].to_numpy(), digits=5),
            format_column(self["F"].to_numpy(), digits=4),
            format_pvalues(self["p_value"].to_numpy()),
        ]
        rows = [list(r) for r in zip(*columns)]
        ddf = self.attrs.get("ddf", "")
        if ddf in ("Satterthwaite", "Kenward-Roger"):
            how = f"{ddf}'s method"
        else:
            how = "nlme's containment df" if ddf == "containment" else "n - p df"
        title = f"Type {kind} Analysis of Variance Table with {how}"
        return title + "\n" + render_table(header, rows, "lrrrrrr")

    __str__ = __repr__


def term_anova(
    result: Any, type: int = 3, ddf: str = "Satterthwaite", marginal_only: bool = False
) -> TermAnova:
    """F test of each fixed term (intercept excluded): type III (marginal) or I (sequential).

    ``marginal_only`` keeps the terms contained in no other term (lmerTest's ``drop1``:
    the terms that can be dropped without breaking marginality).
    """
    ddf = check_ddf(result, ddf)
    if type not in (1, 3, "I", "III"):
        raise ArgumentError(f"type must be 1 or 3 (R's 'I' or 'III'), not {type!r}.")
    type = {"I": 1, "III": 3}.get(type, type)
    hypotheses = type3_hypotheses(result) if type == 3 else type1_hypotheses(result.design)
    term_df = None
    if ddf == "containment" and result.design.blocks:  # nlme's per-term df
        columns = {k: cols for k, (cols, _) in term_columns(result.design).items()}
        term_df = containment_term_df(result.design, columns)
    if marginal_only:
        terms = term_columns(result.design)
        hypotheses = {k: v for k, v in hypotheses.items() if not contained(k, terms)}
    _, test, V = _df_function(result, ddf)
    beta = np.asarray(result.estimates.beta, dtype=float)
    if term_df is not None:
        rows = {
            name: _wald_test(result, V, lambda L, nu=term_df[name]: nu)(L, beta)
            for name, L in hypotheses.items()
        }
    else:
        rows = {name: test(L, beta) for name, L in hypotheses.items()}
    table = TermAnova(
        {
            "sum_sq": [r.sum_sq for r in rows.values()],
            "mean_sq": [r.mean_sq for r in rows.values()],
            "num_df": [r.num_df for r in rows.values()],
            "den_df": [r.den_df for r in rows.values()],
            "F": [r.F for r in rows.values()],
            "p_value": [r.p_value for r in rows.values()],
        },
        index=pd.Index(list(rows), name="term"),
    )
    table.attrs.update(type=type, ddf=ddf)
    return table
