"""Likelihood-ratio and information-criterion tables for ML/REML fits.

:func:`anova` follows nlme's ``anova.lme`` for several models: one row per
fit *in the order given* (nlme does not sort), consecutive fits tested
against each other when their numbers of parameters differ, the likelihood
ratio ``2 |logLik_j - logLik_i|`` referred to a chi-square with
``|df_j - df_i|`` degrees of freedom. The BIC column is each fit's own
``bic`` (lme4's or nlme's conventions, see :mod:`bayesmix.ml.results`), nlme's
when the fits' conventions differ, or the one asked for with ``bic=``.

Fits are refused (``ComparisonError``) when the comparison would be
meaningless: different data or responses, ML mixed with REML, or REML fits
with different fixed effects (their restricted likelihoods are of different
data). Fits without random effects (gls-like designs) may take part.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError, ComparisonError
from bayesmix.ml.results import MLResult
from bayesmix.ml.rformat import format_column, render_table, zapsmall

BicConvention = Literal["nlme", "lme4"]


def _data_fingerprint(fit: MLResult) -> str:
    """Hash of the response values and of the rows of the user's data used (a fit on a Dask
    DataFrame, whose rows are not in memory, gives its own: ``data_fingerprint()``)."""
    own = getattr(fit, "data_fingerprint", None)
    if own is not None:
        return own()
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(fit.design.y, dtype=float).tobytes())
    rows = pd.util.hash_pandas_object(pd.Series(fit.design.data.index), index=False)
    digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()


def _same_fixed_rows(a: MLResult, b: MLResult) -> bool:
    """Whether two fits of the same data have the same fixed-effects matrix (Dask fits:
    the same ``X'X``, as their rows are not in memory)."""
    if hasattr(a, "fixed_gram") or hasattr(b, "fixed_gram"):
        gram_a, gram_b = getattr(a, "fixed_gram", None), getattr(b, "fixed_gram", None)
        if gram_a is None or gram_b is None or gram_a.shape != gram_b.shape:
            return False
        # sums added in another order differ in the last digits
        return bool(np.allclose(gram_a, gram_b, rtol=1e-9, atol=0.0))
    return np.array_equal(a.design.X, b.design.X)


def _named_fits(fits: tuple, named: dict[str, Any]) -> dict[str, MLResult]:
    if fits and named:
        raise ComparisonError(
            "Pass the fits either all positionally or all by keyword (name=fit), not mixed."
        )
    items = named if named else {f"Model {i + 1}": fit for i, fit in enumerate(fits)}
    for name, fit in items.items():
        if not isinstance(fit, MLResult):
            raise ComparisonError(
                f"{name} is a {type(fit).__name__}, not an ML/REML fit (MLResult); "
                "likelihood-ratio "
                "tables need fits from .fit(). Compare Bayesian fits with LOO instead."
            )
    return dict(items)


def check_comparable(fits: dict[str, MLResult]) -> None:
    """Raise ``ComparisonError`` unless the fits can be compared by likelihood.

    Checks: same number of observations, same response, same data rows and
    values, all ML or all REML, and, for REML, identical fixed-effects design.
    """
    names = list(fits)
    first_name, first = names[0], fits[names[0]]
    families = {name: _family_label(fit) for name, fit in fits.items()}
    if len(set(families.values())) > 1:
        listing = ", ".join(f"{n}: {f}" for n, f in families.items())
        raise ComparisonError(
            f"Cannot compare fits of different response distributions ({listing}); their "
            "likelihoods are of different models of the data. Compare fits of one family."
        )
    conventions = {name: getattr(fit, "information", None) for name, fit in fits.items()}
    if len(set(conventions.values())) > 1:
        listing = ", ".join(f"{n}: {c}" for n, c in conventions.items())
        raise ComparisonError(
            f"Cannot compare GLMM fits under different Laplace conventions ({listing}); the "
            "two approximations differ by ~0.01-0.05 in logLik. Refit with the same "
            "fit(information=...) (zero-inflated and Gamma models use 'observed')."
        )
    methods = {name: fit.method for name, fit in fits.items()}
    if len(set(methods.values())) > 1:
        listing = ", ".join(f"{n}: {m}" for n, m in methods.items())
        raise ComparisonError(
            f"Cannot compare ML and REML fits ({listing}). Refit all models with the same "
            "method; use method='ML' to compare models with different fixed effects."
        )
    for name, fit in list(fits.items())[1:]:
        if fit.design.response != first.design.response:
            raise ComparisonError(
                f"{name} models the response {fit.design.response!r} but {first_name} models "
                f"{first.design.response!r}; likelihoods of different responses are not comparable."
            )
        if fit.nobs != first.nobs:
            raise ComparisonError(
                f"{name} was fitted to {fit.nobs} observations but {first_name} to {first.nobs}; "
                "fit all models to the same rows (e.g. drop rows with missing values first)."
            )
        if _data_fingerprint(fit) != _data_fingerprint(first):
            raise ComparisonError(
                f"{name} and {first_name} were fitted to different data (the response values or "
                "the rows used differ); fit all models to the same data."
            )
        if first.method == "REML":
            same = fit.design.fixed_terms == first.design.fixed_terms and _same_fixed_rows(
                fit, first
            )
            if not same:
                raise ComparisonError(
                    f"REML fits {first_name} and {name} have different fixed effects, so their "
                    "restricted likelihoods are not comparable (nlme refuses this too). Refit "
                    "both with method='ML'."
                )


class AnovaTable(pd.DataFrame):
    """nlme-style model-comparison table; a DataFrame indexed by model name.

    Columns ``Model``, ``df``, ``AIC``, ``BIC``, ``logLik`` and, when some
    consecutive fits differ in df, ``Test`` (``"1 vs 2"``, empty when not
    tested), ``L.Ratio`` and ``p-value`` (NaN when not tested). ``attrs``
    holds ``formulas`` (model name -> formula), ``method`` and ``bic`` (the
    BIC convention of the column, ``"lme4"`` or ``"nlme"``).
    """

    @property
    def _constructor(self):
        return AnovaTable

    def _is_complete(self) -> bool:
        return {"Model", "df", "AIC", "BIC", "logLik"} <= set(self.columns)

    def to_text(self) -> str:
        """nlme's printed layout, preceded by the models' formulas."""
        if not self._is_complete():
            return pd.DataFrame(self).to_string()
        header = ["", "Model", "df", "AIC", "BIC", "logLik"]
        columns = [
            [str(n) for n in self.index],
            [str(int(m)) for m in self["Model"]],
            [str(int(d)) for d in self["df"]],
        ]
        for name in ("AIC", "BIC", "logLik"):
            columns.append(format_column(zapsmall(self[name].to_numpy())))
        if "Test" in self.columns:
            header += ["Test", "L.Ratio", "p-value"]
            columns.append([str(t) for t in self["Test"]])
            columns.append(format_column(zapsmall(self["L.Ratio"].to_numpy())))
            columns.append(_format_pvalues(self["p-value"].to_numpy()))
        rows = [list(row) for row in zip(*columns)]
        table = render_table(header, rows, "l" + "r" * (len(header) - 1))
        formulas = self.attrs.get("formulas", {})
        lines = [f"{name}: {formula}" for name, formula in formulas.items()]
        return ("Models:\n" + "\n".join(lines) + "\n" if lines else "") + table

    def __repr__(self) -> str:
        return self.to_text()

    __str__ = __repr__

    def _repr_html_(self) -> str:
        """The text's cells as HTML: the same rounding, ``<.0001`` p-values, no NaN."""
        shown = pd.DataFrame(self).copy()
        if self._is_complete():
            for name in ("AIC", "BIC", "logLik", "L.Ratio"):
                if name in shown:
                    shown[name] = format_column(zapsmall(shown[name].to_numpy()))
            if "p-value" in shown:
                shown["p-value"] = _format_pvalues(shown["p-value"].to_numpy())
        return shown.to_html(na_rep="")


def _format_pvalues(values: np.ndarray) -> list[str]:
    """nlme: round to 4 decimals, show ``<.0001`` below that, blank when untested."""
    rounded = np.round(values, 4)
    finite = np.isfinite(rounded)
    cells = [""] * len(values)
    formatted = format_column(rounded[finite], digits=7)
    for i, text in zip(np.flatnonzero(finite), formatted):
        cells[i] = "<.0001" if rounded[i] < 1e-4 else text.strip()
    return cells


def _formula_label(fit: MLResult) -> str:
    """The formula, with a GLMM's zero-inflation formula and the residual variance
    function and correlation structure when there are (fits may differ only there)."""
    zi = getattr(getattr(fit, "model", None), "ziformula", None)
    label = fit.design.formula + ("" if zi is None else f"; zero inflation ~ {zi}")
    structure = getattr(fit, "residual_structure", None)
    if structure is not None:
        label += "".join(f"; {part.spec.nlme()}" for part in structure.parts)
    return label


def _family_label(fit: MLResult) -> str:
    family = getattr(fit, "family", None)
    return "gaussian (identity)" if family is None else f"{family.name} ({family.link.name})"


def _bic_convention(fits: list[MLResult], convention: BicConvention | None) -> str:
    """The BIC a table reports: the one asked for, else the fits' shared conventions.

    Fits whose conventions differ (an ``lmm`` beside a ``gls``) get nlme's, whose
    ``anova`` layout the table follows, rather than a column that mixes both.
    """
    if convention is None:
        found = {fit.conventions for fit in fits}
        return found.pop() if len(found) == 1 else "nlme"
    if convention not in ("nlme", "lme4"):
        raise ArgumentError(f"bic must be 'nlme', 'lme4' or None, not {convention!r}.")
    return convention


def _bic(fit: MLResult, convention: str) -> float:
    return fit.bic_nlme if convention == "nlme" else fit.bic_lme4


def anova(*fits: MLResult, bic: BicConvention | None = None, **named_fits: MLResult) -> AnovaTable:
    """Compare nested ML/REML fits by likelihood ratio, laid out like nlme's ``anova``.

    Parameters
    ----------
    *fits : MLResult
        Two or more fits, named ``"Model 1"``, ``"Model 2"``, ... One fit alone
        gives its own F tests, as R's ``anova(fit)`` with lmerTest:
        :meth:`MLResult.anova` (type III, Satterthwaite).
    bic : {"nlme", "lme4"}, optional
        BIC convention; ``"nlme"`` uses ``log(n - p)`` for REML fits. Default:
        the fits' own :attr:`~bayesmix.ml.results.MLResult.conventions` (so the
        column equals each fit's ``.bic``), nlme's when they differ.
    **named_fits : MLResult
        Alternatively, fits passed by name (``anova(GLM=fit0, lmm1=fit1)``;
        ``anova(**{"lmm6.2": fit})`` for names that are not identifiers).

    Returns
    -------
    AnovaTable
        Rows in the order given. Consecutive fits ``i`` and ``j`` are tested
        when their df differ: ``L.Ratio = 2 |logLik_j - logLik_i|``, p-value
        from a chi-square with ``|df_j - df_i|`` degrees of freedom. Fits with
        equal df get no test (empty ``Test``, NaN ratio and p-value). As in
        nlme, the test is reported whatever the order, so nesting is the
        user's responsibility.

    Raises
    ------
    ComparisonError
        No fits, or fits that cannot be compared (see
        :func:`check_comparable`).
    """
    items = _named_fits(fits, named_fits)
    if len(items) == 1:  # R's anova(fit): the fit's own F tests (lmerTest's type III)
        return next(iter(items.values())).anova()
    if len(items) < 2:
        raise ComparisonError("anova needs at least two fits to compare.")
    check_comparable(items)
    bic = _bic_convention(list(items.values()), bic)
    table = pd.DataFrame(
        {
            "Model": np.arange(1, len(items) + 1),
            "df": [fit.df for fit in items.values()],
            "AIC": [fit.aic for fit in items.values()],
            "BIC": [_bic(fit, bic) for fit in items.values()],
            "logLik": [fit.loglik for fit in items.values()],
        },
        index=pd.Index(list(items), name=None),
    )
    df_diff = np.diff(table["df"].to_numpy())
    if np.any(df_diff != 0):  # nlme omits the test columns when no df differ
        ratio = 2.0 * np.abs(np.diff(table["logLik"].to_numpy()))
        tests, lrs, pvalues = [""], [math.nan], [math.nan]
        for i, (d, lr) in enumerate(zip(df_diff, ratio), start=1):
            tested = d != 0
            tests.append(f"{i} vs {i + 1}" if tested else "")
            lrs.append(lr if tested else math.nan)
            pvalues.append(float(stats.chi2.sf(lr, abs(d))) if tested else math.nan)
        table["Test"], table["L.Ratio"], table["p-value"] = tests, lrs, pvalues
    result = AnovaTable(table)
    result.attrs["formulas"] = {name: _formula_label(fit) for name, fit in items.items()}
    result.attrs["method"] = next(iter(items.values())).method
    result.attrs["bic"] = bic
    return result


def aic_table(
    *fits: MLResult, bic: BicConvention | None = None, **named_fits: MLResult
) -> pd.DataFrame:
    """Information criteria of comparable fits, in the order given.

    Columns ``df``, ``logLik``, ``AIC``, ``dAIC`` (difference to the smallest),
    ``weight`` (Akaike weight), ``BIC`` and ``dBIC``. The same checks and the
    same ``bic`` rule as :func:`anova` apply; a single fit is allowed.
    """
    items = _named_fits(fits, named_fits)
    if not items:
        raise ComparisonError("aic_table needs at least one fit.")
    check_comparable(items)
    bic = _bic_convention(list(items.values()), bic)
    aic = np.array([fit.aic for fit in items.values()])
    bics = np.array([_bic(fit, bic) for fit in items.values()])
    weights = np.exp(-0.5 * (aic - aic.min()))
    return pd.DataFrame(
        {
            "df": [fit.df for fit in items.values()],
            "logLik": [fit.loglik for fit in items.values()],
            "AIC": aic,
            "dAIC": aic - aic.min(),
            "weight": weights / weights.sum(),
            "BIC": bics,
            "dBIC": bics - bics.min(),
        },
        index=list(items),
    )


__all__ = ["AnovaTable", "aic_table", "anova", "check_comparable"]
