"""nlme's residual diagnostics for within-group correlation: ``ACF`` and ``Variogram``.

:func:`acf` is the empirical autocorrelation of the residuals pooled over the
groups, :func:`variogram` their empirical semivariogram against the distance
between two rows of a group, and :func:`model_variogram` (with
:func:`model_semivariogram`) the semivariogram the fitted correlation structure
implies, which a plot lays over the empirical one. All read an ML or REML
result (:func:`~bayesmix.lmm`, :func:`~bayesmix.gls`, ``.fit()``) and agree with
nlme's ``ACF``, ``Variogram`` and ``Variogram(corStruct)`` (3.1-162).

Groups: the correlation structure's groups; without one, the innermost
random-effects grouping; without either (a ``gls``), all rows form one group.
``group=`` names another column.

Notation
--------
r_i : residual of row i (normalized, Pearson or response); g : a group, n_g its rows;
k : lag (positions apart within a group, in time order);
ACF(k) = [sum_g sum_i r_i r_(i+k) / N_k] / [sum r_i^2 / N_0], N_k = sum_g max(n_g - k, 0);
d_ij : distance between rows i, j of a group; gamma_ij = (r_i - r_j)^2 / 2 (semivariance);
robust bin value = mean(gamma^(1/4))^4 / (0.457 + 0.494 / m) over the m pairs of a bin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError
from bayesmix.ml.results import MLResult
from bayesmix.spec.correlation_math import arma_acf, positions_in_groups
from bayesmix.spec.formula_eval import unknown_column
from bayesmix.spec.residual_structure import innermost_grouping

__all__ = ["acf", "model_semivariogram", "model_variogram", "variogram"]

ResidType = Literal["normalized", "pearson", "response"]
_RESID_TYPES = ("normalized", "pearson", "response")
_METRICS = ("euclidean", "manhattan", "maximum")
_COLLAPSE = ("quantiles", "fixed", "none")
_SPATIAL = ("corExp", "corGaus")
_INTEGER_LAGS = ("corAR1", "corARMA")
# Cressie & Hawkins' bias correction of the robust estimator, as nlme uses it
_ROBUST = (0.457, 0.494)


# ----------------------------------------------------------------- inputs


def _check_fit(fit: Any, function: str) -> MLResult:
    if isinstance(fit, MLResult):
        return fit
    if hasattr(fit, "idata") and hasattr(fit, "design"):  # a posterior: at its mean
        from bayesmix.posterior_residuals import PosteriorResiduals

        return PosteriorResiduals(fit, function)
    raise ArgumentError(
        f"{function}() takes a fit (bmx.lmm(...).fit() or .sample(), bmx.gls(...).fit()), "
        f"got {type(fit).__name__}."
    )


def _check_choice(value: object, allowed: tuple[str, ...], argument: str) -> None:
    if value not in allowed:
        choices = ", ".join(map(repr, allowed))
        raise ArgumentError(f"{argument} must be one of {choices}, got {value!r}.")


def _correlation(fit: MLResult) -> Any:
    structure = fit.residual_structure
    return None if structure is None else structure.correlation


def _column(fit: MLResult, name: object, argument: str) -> pd.Series:
    data = fit.design.data
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"{argument} must be a column name (a string), got {name!r}.")
    if name not in data.columns:
        known = [str(c) for c in data.columns]
        raise DataError(unknown_column(name, known, f"{argument}: {name!r}"))
    return data[name]


def _numeric(fit: MLResult, name: str, argument: str) -> np.ndarray:
    values = _column(fit, name, argument)
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(f"{argument}: column {name!r} must be numeric, but it is {values.dtype}.")
    out = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(out)):
        raise DataError(f"{argument}: column {name!r} has missing or infinite values.")
    return out


def _groups(fit: MLResult, group: str | None) -> tuple[str | None, np.ndarray]:
    """The grouping column's name (``None``: all rows) and each row's group code."""
    if group is not None:
        codes = pd.factorize(_column(fit, group, "group="), sort=True)[0].astype(np.int64)
        if np.any(codes < 0):
            raise DataError(f"group=: column {group!r} has missing values in rows of the fit.")
        return group, codes
    cor = _correlation(fit)
    if cor is not None:
        return cor.group_name, np.asarray(cor.group_codes, dtype=np.int64)
    inner = innermost_grouping(fit.design.blocks)
    if inner is not None:
        return inner[0], np.asarray(inner[1], dtype=np.int64)
    return None, np.zeros(fit.nobs, dtype=np.int64)


def _residuals(fit: MLResult, resid_type: str) -> np.ndarray:
    _check_choice(resid_type, _RESID_TYPES, "resid_type")
    return np.asarray(fit.residuals(resid_type), dtype=float)


# ----------------------------------------------------------------- ACF


def acf(
    fit: MLResult,
    max_lag: int | None = None,
    resid_type: ResidType = "normalized",
    *,
    group: str | None = None,
    time: str | None = None,
) -> pd.DataFrame:
    """Empirical autocorrelation of the residuals within groups (nlme's ``ACF``).

    Parameters
    ----------
    fit : MLResult or BayesResult
        An ML or REML fit, or a posterior (its residuals at the posterior mean;
        see :mod:`bayesmix.posterior_residuals`).
    max_lag : int, optional
        Largest lag. Default (nlme's): ``min(m, floor(10 log10(m + 1)))`` with
        ``m`` the largest group size minus one.
    resid_type : {"normalized", "pearson", "response"}
        Residuals to correlate. Normalized residuals are independent if the
        correlation structure fits, so their ACF checks it; Pearson residuals
        show the correlation the structure has to explain.
    group : str, optional
        A column whose levels are the series (nlme's ``form = ~ 1 | g`` of a gls).
    time : str, optional
        A column ordering the rows within a group. Default: the correlation
        structure's time (or position); without one, the data order.

    Returns
    -------
    DataFrame
        ``lag`` (0, 1, ...), ``acf`` (1 at lag 0) and ``n_pairs``, the pairs at
        that lag (nlme's ``n.used``). Lags count positions within a group, not
        time units, as in nlme.

    Raises
    ------
    ArgumentError
        For a Bayesian result with a correlation structure, a bad ``resid_type``
        or ``max_lag``.
    DataError
        For an unknown column, or when no group has two rows.
    """
    fit = _check_fit(fit, "acf")
    r = _residuals(fit, resid_type)
    name, codes = _groups(fit, group)
    cor = _correlation(fit)
    if time is not None:
        order_by = _numeric(fit, time, "time=")
    elif cor is not None and cor.coords.shape[1] == 1:
        order_by = cor.coords[:, 0]
    else:
        order_by = np.arange(codes.size, dtype=float)
    order = np.lexsort((order_by, codes))
    sizes = np.bincount(codes)
    longest = int(sizes.max(initial=0)) - 1
    if longest < 1:
        where = f"group of {name!r}" if name else "series"
        raise DataError(f"acf: no {where} has two rows, so there is no lag to correlate.")
    if max_lag is None:
        max_lag = min(longest, int(10.0 * np.log10(longest + 1.0)))
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or max_lag < 0:
        raise ArgumentError(f"max_lag must be a non-negative integer, got {max_lag!r}.")
    lags = np.arange(max_lag + 1)
    sums = np.zeros(lags.size)
    for series in np.split(r[order], np.cumsum(sizes)[:-1]):  # each group in time order
        n = series.size
        for k in range(min(lags.size, n)):
            sums[k] += series[: n - k] @ series[k:]
    n_pairs = np.maximum(sizes[None, :] - lags[:, None], 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_product = sums / n_pairs
    out = pd.DataFrame({"lag": lags, "acf": mean_product / mean_product[0], "n_pairs": n_pairs})
    out.attrs.update(resid_type=resid_type, grouping=name)
    return out


# ----------------------------------------------------------------- variogram


def _positions(codes: np.ndarray) -> np.ndarray:
    return positions_in_groups(codes)[:, None] + 1.0  # nlme's positions start at 1


def _distance_source(
    fit: MLResult,
    time: str | None,
    coords: Sequence[str] | str | None,
    metric: str | None,
    codes: np.ndarray,
) -> tuple[np.ndarray, str, bool]:
    """Each row's coordinates, the metric, and whether they are the structure's own."""
    if time is not None and coords is not None:
        raise ArgumentError("give time= (one column) or coords= (columns), not both.")
    if metric is not None:
        _check_choice(metric, _METRICS, "metric")
    cor = _correlation(fit)
    spatial = cor is not None and cor.kind in _SPATIAL
    own_time = None if cor is None or spatial else getattr(cor.spec, "time", None)
    if time is not None:  # one coordinate: every metric is |t_i - t_j|
        own = (spatial and cor.spec.coords == (time,)) or (own_time == time)
        return _numeric(fit, time, "time=")[:, None], "euclidean", own
    if coords is not None:
        names = (coords,) if isinstance(coords, str) else tuple(coords)
        if not names:
            raise ArgumentError("coords= needs at least one column name.")
        X = np.column_stack([_numeric(fit, c, "coords=") for c in names])
        metric = metric or "euclidean"
        return X, metric, spatial and names == cor.spec.coords and metric == cor.spec.metric
    if spatial:
        own = metric in (None, cor.spec.metric)
        return np.asarray(cor.coords, dtype=float), metric or cor.spec.metric, own
    own = cor is not None and cor.kind != "corSymm" and own_time is None
    return _positions(codes), "euclidean", own


def _pairs(
    r: np.ndarray, codes: np.ndarray, X: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Semivariance and distance of every pair of rows within a group (nlme's order)."""
    variog, dist = [], []
    for g in np.unique(codes):
        rows = np.flatnonzero(codes == g)
        if rows.size < 2:
            continue
        a, b = np.triu_indices(rows.size, 1)  # by first row, then second: R's lower.tri
        diff = np.abs(X[rows[b]] - X[rows[a]])
        if metric == "manhattan":
            dist.append(diff.sum(axis=1))
        elif metric == "maximum":
            dist.append(diff.max(axis=1))
        else:
            dist.append(np.sqrt((diff**2).sum(axis=1)))
        variog.append((r[rows[b]] - r[rows[a]]) ** 2 / 2.0)
    if not variog:
        raise DataError("variogram: no group has two rows, so there is no pair to compare.")
    return np.concatenate(variog), np.concatenate(dist)


def _quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's ``quantile(type = 7)``, step by step as R computes it."""
    x = np.sort(x)
    index = 1.0 + (x.size - 1) * probs
    lo = np.floor(index).astype(np.int64)
    hi = np.ceil(index).astype(np.int64)
    q = x[lo - 1]
    h = index - lo
    blend = (index > lo) & (x[hi - 1] != q)
    q[blend] = (1.0 - h[blend]) * q[blend] + h[blend] * x[hi - 1][blend]
    return q


def _collapse(
    variog: np.ndarray, dist: np.ndarray, how: str, n_intervals: int, robust: bool
) -> pd.DataFrame:
    """Bin the pairs as nlme does: by quantiles or equal widths of the distances."""
    if how == "none":
        return pd.DataFrame({"variog": variog, "dist": dist, "n_pairs": np.ones(dist.size, int)})
    unique = np.unique(dist)
    if n_intervals < unique.size:
        if how == "quantiles":
            breaks = np.unique(_quantile7(dist, np.arange(n_intervals + 1) * (1.0 / n_intervals)))
        else:
            breaks = np.linspace(unique[0], unique[-1], n_intervals + 1)
        # R's cut(): intervals (b_k, b_k+1]; distances equal to the first break fall out
        bins = np.searchsorted(breaks, dist, side="left") - 1
        keep = (bins >= 0) & (bins < breaks.size - 1)
        bins, variog, dist = bins[keep], variog[keep], dist[keep]
    else:
        bins = np.searchsorted(unique, dist)
    order = np.lexsort((dist, bins))
    bins, variog, dist = bins[order], variog[order], dist[order]
    _, first, counts = np.unique(bins, return_index=True, return_counts=True)
    values = variog**0.25 if robust else variog
    means = np.add.reduceat(values, first) / counts
    if robust:
        means = means**4 / (_ROBUST[0] + _ROBUST[1] / counts)
    middle = first + (counts - 1) // 2  # the middle pair, or the lower of the two
    upper = middle + 1 - counts % 2
    medians = np.where(counts % 2 == 1, dist[middle], (dist[middle] + dist[upper]) / 2.0)
    return pd.DataFrame({"variog": means, "dist": medians, "n_pairs": counts})


def variogram(
    fit: MLResult,
    time: str | None = None,
    coords: Sequence[str] | str | None = None,
    resid_type: ResidType = "pearson",
    robust: bool = False,
    max_dist: float | None = None,
    *,
    group: str | None = None,
    metric: str | None = None,
    collapse: Literal["quantiles", "fixed", "none"] = "quantiles",
    n_intervals: int = 20,
) -> pd.DataFrame:
    """Empirical semivariogram of the residuals within groups (nlme's ``Variogram``).

    Parameters
    ----------
    fit : MLResult or BayesResult
        An ML or REML fit, or a posterior (its residuals at the posterior mean;
        see :mod:`bayesmix.posterior_residuals`).
    time, coords : str or sequence of str, optional
        The distance between two rows: ``|time_i - time_j|``, or the ``metric``
        distance between their ``coords``. Default: a spatial structure's own
        coordinates and metric, else the positions within the group (nlme's
        ``form = ~ 1``; pass ``time=`` for a corCAR1's time).
    resid_type : {"pearson", "normalized", "response"}
    robust : bool
        Cressie and Hawkins' robust estimator instead of the mean in each bin.
    max_dist : float, optional
        Leave out pairs farther apart.
    group : str, optional
        A column whose levels group the rows (see :func:`acf`).
    metric : {"euclidean", "manhattan", "maximum"}, optional
    collapse : {"quantiles", "fixed", "none"}
        Bin the pairs by ``n_intervals`` quantile (or equal-width) intervals of
        the distance, right-closed as R's ``cut`` (pairs at the smallest
        distance fall out, as in nlme); with no more distinct distances than
        ``n_intervals``, each distance is its own bin. ``"none"``: every pair.
    n_intervals : int
        nlme's ``nint``.

    Returns
    -------
    DataFrame
        ``variog`` (mean semivariance of the bin), ``dist`` (median distance)
        and ``n_pairs``, by increasing distance; empty bins are left out.
        ``attrs["own_distances"]`` says whether the distances are measured in
        the fitted correlation structure's own covariate, where
        :func:`model_variogram` applies (nlme attaches it to Pearson and
        response semivariograms of spatial structures).
    """
    fit = _check_fit(fit, "variogram")
    _check_choice(collapse, _COLLAPSE, "collapse")
    integer = isinstance(n_intervals, int | np.integer) and not isinstance(n_intervals, bool)
    if not integer or n_intervals < 1:
        raise ArgumentError(f"n_intervals must be a positive integer, got {n_intervals!r}.")
    r = _residuals(fit, resid_type)
    name, codes = _groups(fit, group)
    X, metric, own = _distance_source(fit, time, coords, metric, codes)
    variog, dist = _pairs(r, codes, X, metric)
    if max_dist is not None:
        number = isinstance(max_dist, int | float | np.number) and not isinstance(max_dist, bool)
        if not number or not max_dist > 0:
            raise ArgumentError(f"max_dist must be a positive number, got {max_dist!r}.")
        keep = dist <= max_dist
        if not keep.any():
            raise DataError(f"variogram: no pair of rows is within max_dist = {max_dist:g}.")
        variog, dist = variog[keep], dist[keep]
    out = _collapse(variog, dist, collapse, int(n_intervals), bool(robust))
    out.attrs.update(resid_type=resid_type, grouping=name, robust=bool(robust), own_distances=own)
    return out


# ----------------------------------------------------------------- the model's semivariogram


def model_semivariogram(fit: MLResult) -> Callable[[np.ndarray], np.ndarray] | None:
    """The fitted structure's semivariogram ``1 - cor(d)`` as a function of distance.

    For corExp and corGaus nlme's ``nugget + (1 - nugget) (1 - rho(d / range))``
    (which gives the nugget at ``d = 0``); ``1 - Phi^d`` for corCAR1 and
    corAR1; ``1 - rho_ARMA(d)`` for corARMA (integer ``d``); ``1 - Rho`` for
    corCompSymm. ``None`` without a correlation structure or for corSymm
    (not a function of distance). Multiply by ``sigma^2`` for response residuals.
    """
    fit = _check_fit(fit, "model_semivariogram")
    cor = _correlation(fit)
    if cor is None or cor.kind == "corSymm":
        return None
    u = fit.residual_structure.split(np.asarray(fit.estimates.residual_u, dtype=float))[1]
    nat = np.asarray(cor.natural(u), dtype=float)
    kind = cor.kind
    if kind in _SPATIAL:
        nugget, power = (nat[1] if cor.spec.nugget else 0.0), (1.0 if kind == "corExp" else 2.0)
        scaled = lambda d: (np.asarray(d, dtype=float) / nat[0]) ** power  # noqa: E731
        return lambda d: nugget + (1.0 - nugget) * (1.0 - np.exp(-scaled(d)))
    if kind == "corARMA":
        p = cor.spec.p

        def arma(d: np.ndarray) -> np.ndarray:
            lag = np.rint(np.asarray(d, dtype=float)).astype(np.int64)
            return 1.0 - arma_acf(nat[:p], nat[p:], int(lag.max(initial=0)))[np.abs(lag)]

        return arma
    if kind == "corCompSymm":
        return lambda d: np.where(np.asarray(d, dtype=float) > 0, 1.0 - nat[0], 0.0)
    return lambda d: 1.0 - np.power(nat[0], np.asarray(d, dtype=float))


def model_variogram(
    fit: MLResult,
    distance: np.ndarray | None = None,
    resid_type: ResidType = "pearson",
    length_out: int = 50,
) -> pd.DataFrame:
    """The fitted structure's semivariogram at ``distance`` (nlme's ``Variogram(corStruct)``).

    Parameters
    ----------
    distance : array, optional
        Default: ``length_out`` points from the smallest to the largest
        distance between two rows of a group in the structure's own covariate
        (integer lags for corAR1 and corARMA).
    resid_type : {"pearson", "response"}
        The scale: 1 for Pearson residuals, ``sigma^2`` for response residuals.

    Returns
    -------
    DataFrame
        ``variog`` and ``dist``.

    Raises
    ------
    ArgumentError
        Without a correlation structure that is a function of distance.
    """
    function = model_semivariogram(fit)
    if function is None:
        raise ArgumentError(
            "model_variogram needs a fit with a correlation structure that is a function of "
            "distance (corExp, corGaus, corCAR1, corAR1, corARMA, corCompSymm)."
        )
    _check_choice(resid_type, ("pearson", "response"), "resid_type")
    if distance is None:
        cor = _correlation(fit)
        metric = cor.spec.metric if cor.kind in _SPATIAL else "euclidean"
        codes = np.asarray(cor.group_codes, dtype=np.int64)
        dist = _pairs(np.zeros(codes.size), codes, np.asarray(cor.coords, dtype=float), metric)[1]
        lo, hi = float(dist.min()), float(dist.max())
        if cor.kind in _INTEGER_LAGS:
            distance = np.arange(lo, hi + 1.0)
        else:
            distance = np.linspace(lo, hi, int(length_out))
    distance = np.asarray(distance, dtype=float)
    scale = 1.0 if resid_type == "pearson" else fit.sigma**2
    return pd.DataFrame({"variog": scale * function(distance), "dist": distance})
