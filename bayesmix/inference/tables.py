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
from bayesmix.inference.containment import containment_df
from bayesmix.inference.hypotheses import (
    contained,
    term_columns,
    type1_hypotheses,
    type3_hypotheses,
)
from bayesmix.inference.kenward_roger import KenwardRoger
from bayesmix.inference.satterthwaite import FTest, contrast_df, f_test, independent_contrasts
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


def _df_function(result: Any, ddf: str):
    """``(l -> nu, (L, beta) -> FTest)`` for the chosen method."""
    if ddf == "containment" and result.design.blocks:
        nu_columns = containment_df(result.design)

        def containment_test(L: np.ndarray, beta: np.ndarray) -> FTest:
            rows, d = independent_contrasts(np.atleast_2d(L), result.estimates.vcov_beta)
            q = rows.shape[0]
            F = float(np.sum((rows @ beta) ** 2 / d) / q)
            nu = float(nu_columns[np.abs(np.atleast_2d(L)).sum(axis=0) > 0].min())
            s2 = float(result.estimates.sigma) ** 2
            return FTest(F * q * s2, F * s2, q, nu, F, float(stats.f.sf(F, q, nu)))

        return (lambda c: float(nu_columns[np.flatnonzero(c)].min())), containment_test
    if ddf in ("residual", "containment") or not result.design.blocks:
        nu = float(result.nobs - result.design.n_fixed)

        def residual_test(L: np.ndarray, beta: np.ndarray) -> FTest:
            rows, d = independent_contrasts(np.atleast_2d(L), result.estimates.vcov_beta)
            q = rows.shape[0]
            F = float(np.sum((rows @ beta) ** 2 / d) / q)
            s2 = float(result.estimates.sigma) ** 2
            return FTest(F * q * s2, F * s2, q, nu, F, float(stats.f.sf(F, q, nu)))

        return (lambda c: nu), residual_test
    if ddf == "Satterthwaite":
        vp = variance_parameters(result)
        return (lambda c: contrast_df(vp, c)), (lambda L, beta: f_test(vp, L, beta))
    kr = KenwardRoger.of(result)
    return (lambda c: kr.df_and_scale(c[None, :])[0]), kr.f_test


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
        return f"Fixed effects ({self.attrs.get('ddf', '')} df):\n" + render_table(
            header, rows, "lrrrrr"
        )

    __str__ = __repr__


def format_pvalues(values: np.ndarray) -> list[str]:
    """R's ``format.pval`` with 3 significant digits, per value."""
    return [format_pvalue(float(v)) for v in values]


def coef_table(result: Any, ddf: str = "Satterthwaite") -> CoefTable:
    """Estimates, SEs, ``df``, t values and two-sided p-values of the fixed effects."""
    ddf = check_ddf(result, ddf)
    df_of, _ = _df_function(result, ddf)
    beta = np.asarray(result.estimates.beta, dtype=float)
    if ddf == "Kenward-Roger" and result.design.blocks:
        V = KenwardRoger.of(result).vcov_adjusted
    else:
        V = np.asarray(result.estimates.vcov_beta, dtype=float)
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
        title = f"Type {kind} Analysis of Variance Table with {self.attrs.get('ddf', '')}'s method"
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
    if marginal_only:
        terms = term_columns(result.design)
        hypotheses = {k: v for k, v in hypotheses.items() if not contained(k, terms)}
    _, test = _df_function(result, ddf)
    beta = np.asarray(result.estimates.beta, dtype=float)
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
