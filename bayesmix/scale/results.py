"""The result of an ML/REML fit on a Dask DataFrame: an ``MLResult`` whose rows stay on Dask.

Everything computed from the estimates is the in-memory result's own code:
``fixef``, ``ranef`` (with conditional variances), ``varcorr``, ``vcov``, ``coef``,
logLik, AIC, BIC, ``summary()``, Wald intervals and likelihood-ratio tables between
such fits (``bmx.anova``). Row-level outputs (``fitted``, ``residuals``,
``predict`` of a Dask frame) are Dask Series computed lazily partition by
partition, indexed as the data's rows. What would need the rows in memory
(refits for profiles, bootstraps, ``ranova``, degrees of freedom, R², ``save``)
raises an :class:`~bayesmix.errors.ArgumentError` saying so, rather than running
on anything else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError
from bayesmix.ml.pls_solution import fitted_values
from bayesmix.ml.results import MLResult
from bayesmix.ml.rformat import format_column, render_table, zapsmall
from bayesmix.ml.summary import MLSummary
from bayesmix.scale.accumulate import PartitionRows, complete_rows, encode_partition
from bayesmix.scale.survey import Survey, is_dask_frame
from bayesmix.spec.design import Design

__all__ = ["DaskMLResult"]


def _fitted_part(
    part: pd.DataFrame, rows: PartitionRows, beta, b, include_random: bool, data_rows: bool
):
    """Fitted values of one partition's complete rows (offset included): the rows the fit
    used (``data_rows``), or every row of new data with its predictors."""
    encoded = encode_partition(rows, part, response=data_rows)
    if encoded is None:
        return pd.Series(np.zeros(0), index=part.index[:0], dtype=float)
    _, X, blocks, offset, _ = encoded
    eta = offset + fitted_values(X, blocks, beta, b if include_random else [])
    return pd.Series(eta, index=complete_rows(rows, part, data_rows).index, dtype=float)


def _residual_part(part: pd.DataFrame, rows: PartitionRows, beta, b, scale):
    """``y - fitted`` of one partition, times ``sqrt(w) / sigma`` when ``scale``."""
    encoded = encode_partition(rows, part)
    if encoded is None:
        return pd.Series(np.zeros(0), index=part.index[:0], dtype=float)
    y, X, blocks, offset, weights = encoded
    residual = y - offset - fitted_values(X, blocks, beta, b)
    if scale is not None:
        residual = residual * (1.0 if weights is None else np.sqrt(weights)) / scale
    return pd.Series(residual, index=complete_rows(rows, part).index, dtype=float)


@dataclass(frozen=True)
class DaskMLResult(MLResult):
    """An ML/REML fit whose data are a Dask DataFrame (see the module docstring).

    Attributes
    ----------
    design : Design
        The template design: the formula's columns, levels and names (its rows
        are representatives, never the data: see :mod:`bayesmix.scale.survey`).
    data : dask.dataframe.DataFrame
        The data as given.
    survey : Survey
        Rows read and dropped, partitions.
    rows : PartitionRows
        How a partition is encoded.
    fingerprint : str
        Hash of the data's Dask token, the rows used and the response's sums.
    fixed_gram : ndarray
        ``X'X`` of the (whitened) rows: REML fits compare only with equal ones.
    timing : dict
        Seconds of the survey (first pass; 0 when an earlier fit's was reused), the
        products (second pass) and the optimiser here.
    """

    data: Any = None
    survey: Survey | None = None
    rows: PartitionRows | None = None
    fingerprint: str = ""
    fixed_gram: np.ndarray | None = None
    timing: dict = field(default_factory=dict)

    # -- rows, lazily
    def _b(self) -> list[np.ndarray]:
        return [np.asarray(bi, dtype=float) for bi in self.estimates.b]

    def fitted(self) -> Any:
        """Fitted values ``offset + X beta + Z b`` of the data's rows: a Dask Series (lazy)."""
        return self._map(self.data, True, True)

    def residuals(self, kind: str = "response") -> Any:
        """``y - fitted`` (``"response"``), or times ``sqrt(w) / sigma`` (``"pearson"``,
        ``"normalized"``: equal without a correlation structure): a Dask Series (lazy)."""
        if kind not in ("response", "pearson", "normalized"):
            raise ArgumentError(
                f"kind must be 'response', 'pearson' or 'normalized', not {kind!r}."
            )
        scale = None if kind == "response" else self.sigma
        beta = np.asarray(self.estimates.beta, dtype=float)
        return self.data.map_partitions(
            _residual_part, self.rows, beta, self._b(), scale, meta=pd.Series(dtype=float)
        )

    def predict(self, newdata: Any = None, include_random: bool = True) -> Any:
        """Predictions: a Dask Series for the data (``newdata=None``) or a Dask ``newdata``;
        an array for a pandas ``newdata`` (as :meth:`MLResult.predict`)."""
        if newdata is None:
            return self._map(self.data, include_random, True)
        if is_dask_frame(newdata):
            return self._map(newdata, include_random, False)
        return super().predict(newdata, include_random)

    def _map(self, frame: Any, include_random: bool, data_rows: bool) -> Any:
        beta = np.asarray(self.estimates.beta, dtype=float)
        return frame.map_partitions(
            _fitted_part,
            self.rows,
            beta,
            self._b(),
            include_random,
            data_rows,
            meta=pd.Series(dtype=float),
        )

    # -- comparison (bmx.anova) without the rows
    def data_fingerprint(self) -> str:
        return self.fingerprint

    def summary(self, ddf: str | None = None) -> MLSummary:
        """lme4-style summary; the scaled residuals' quantiles are Dask's approximate ones."""
        if ddf is not None:
            _refuse("summary(ddf=...)")
        return _DaskSummary(self, None)

    def __repr__(self) -> str:
        return (
            f"<DaskMLResult {self.method}: {self.design.formula}; n={self.nobs} in "
            f"{self.survey.n_partitions} partitions, logLik={self.loglik:.4f}, df={self.df}>"
        )

    # -- what needs the rows in memory
    def coef_table(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        _refuse("coef_table() (degrees of freedom)")

    def anova(self, type: int | str = 3, ddf: str = "Satterthwaite") -> pd.DataFrame:
        _refuse(
            "anova() of one fit (F tests with degrees of freedom); bmx.anova(fit1, fit2)"
            " compares Dask fits by likelihood ratio"
        )

    def drop1(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        _refuse("drop1()")

    def ranova(self) -> pd.DataFrame:
        _refuse("ranova()")

    def confint(self, parm=None, level: float = 0.95, method: str = "Wald", **boot_options):
        """Wald intervals of the fixed effects (profiles and bootstraps refit the rows)."""
        if method != "Wald":
            _refuse(f"confint(method={method!r})", "use method='Wald'")
        return super().confint(parm, level, method)

    def intervals(self, level: float = 0.95) -> Any:
        _refuse("intervals()", "use confint(method='Wald')")

    def r2(self, approximation: str = "lognormal") -> pd.DataFrame:
        _refuse("r2()")

    def simulate(self, nsim: int = 1, seed: int | None = None, use_u: bool = False):
        _refuse("simulate()")

    def bootstrap(self, *args: Any, **kwargs: Any):
        _refuse("bootstrap()")

    def update(self, formula=None, method=None, *, random=None):
        _refuse("update()", "fit the new formula with bmx.lmm(formula, ddf).fit()")

    def save(self, path) -> None:
        _refuse("save()", "the data are not in this process: keep the Dask source and refit")


def _refuse(what: str, advice: str = "compute the data into memory (ddf.compute()) to use it"):
    raise ArgumentError(
        f"{what} is not available for a fit on a Dask DataFrame: it needs the rows in "
        f"memory; {advice}."
    )


def data_fingerprint(token: str, n_obs: int) -> str:
    """Hash of the data's Dask token and the number of rows used (fits of one Dask frame,
    with the same missing rows dropped, saw the same data)."""
    digest = hashlib.sha256()
    digest.update(str(token).encode())
    digest.update(str(int(n_obs)).encode())
    return digest.hexdigest()


class RowsOnDask:
    """Stands in for a row-level array of a Dask fit's design: its shape is known, its
    values stay on Dask. Any use of the values raises an ArgumentError, so code written
    for rows in memory (``bmx.ranova``, ``bmx.acf``, effect plots...) cannot run quietly
    on something else."""

    def __init__(self, shape: tuple[int, ...], what: str) -> None:
        self.shape, self.ndim, self.what = shape, len(shape), what

    def _refuse(self, *args: Any, **kwargs: Any):
        _refuse(f"this use of the {self.what}", "call ddf.compute() and fit the data in memory")

    __array__ = __getitem__ = __len__ = __iter__ = __array_function__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __neg__ = _refuse

    def __array_ufunc__(self, *args: Any, **kwargs: Any):
        self._refuse()

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self.what}: {self.shape}, on Dask>"


def rowless_design(template: Design, n_obs: int) -> Design:
    """``template`` (names, levels, encoder) with its rows replaced by :class:`RowsOnDask`
    of the data's shape."""
    import dataclasses

    p = template.n_fixed

    def rows(shape: tuple[int, ...], what: str) -> RowsOnDask:
        return RowsOnDask(shape, f"{what} of the data's rows")

    blocks = tuple(
        dataclasses.replace(
            b, codes=rows((n_obs,), "level codes"), Z=rows((n_obs, b.n_terms), "columns")
        )
        for b in template.blocks
    )
    return dataclasses.replace(
        template,
        y=rows((n_obs,), "responses"),
        X=rows((n_obs, p), "fixed-effects columns"),
        data=rows((n_obs, template.data.shape[1]), "data"),
        blocks=blocks,
        offset=None if template.offset is None else rows((n_obs,), "offsets"),
        weights=None if template.weights is None else rows((n_obs,), "prior weights"),
    )


class _DaskSummary(MLSummary):
    def _header(self) -> list[str]:
        lines = super()._header()
        survey = self.result.survey
        dropped = f", {survey.n_dropped} dropped for missing values" if survey.n_dropped else ""
        data = f"Data: Dask DataFrame, {survey.n_partitions} partitions, {survey.n_rows} rows"
        lines.insert(2, data + dropped)
        return lines

    def _residual_lines(self) -> list[str]:
        residuals = self.result.residuals("pearson")
        q = residuals.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).compute().to_numpy()
        cells = format_column(zapsmall(q, digits=5), digits=4)
        return [
            "Scaled residuals (Dask's approximate quartiles):",
            render_table(["Min", "1Q", "Median", "3Q", "Max"], [cells], "rrrrr"),
        ]
