"""Plots of nlme's residual diagnostics: the autocorrelation function and the semivariogram.

:func:`plot_acf` draws :func:`~bayesmix.residual_diagnostics.acf` as stems
with nlme's approximate bands for independent residuals; :func:`plot_variogram`
draws :func:`~bayesmix.residual_diagnostics.variogram` as points with a
local-linear smooth and, when the model has one, the fitted correlation
structure's semivariogram. Both take an ML or REML result and return the Axes.

matplotlib and scipy are imported inside the functions so that importing
bayesmix never pulls them in (as in :mod:`bayesmix.plotting`).

Notation
--------
k : lag; N_k : pairs of residuals at lag k; alpha : the bands' level;
band(k) = +- z_(1 - alpha/2) / sqrt(N_k) (nlme's ``plot(ACF(fit), alpha = ...)``);
d : distance between two rows of a group; gamma(d) : semivariance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bayesmix.errors import ArgumentError
from bayesmix.plotting_axes import single_axes
from bayesmix.residual_diagnostics import (
    ResidType,
    acf,
    model_semivariogram,
    model_variogram,
    variogram,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes

__all__ = ["plot_acf", "plot_variogram"]

# points of the smooth's curve
_SMOOTH_POINTS = 60
_NAMES = {"normalized": "normalized", "pearson": "Pearson", "response": "response"}


def plot_acf(
    fit: Any,
    ax: Axes | None = None,
    *,
    max_lag: int | None = None,
    resid_type: ResidType = "normalized",
    alpha: float | None = 0.05,
    group: str | None = None,
    time: str | None = None,
) -> Axes:
    """Autocorrelation of the residuals by lag, with bands for independent residuals.

    Parameters
    ----------
    fit : MLResult
        An ML or REML fit.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made when omitted.
    max_lag, resid_type, group, time
        As in :func:`~bayesmix.residual_diagnostics.acf`; normalized residuals
        by default, whose autocorrelations should stay inside the bands if the
        correlation structure fits.
    alpha : float or None
        Level of the dashed bands ``+- z_(1 - alpha/2) / sqrt(N_k)``, which
        narrow as lags with more pairs; ``None`` or 0 draws none.

    Returns
    -------
    matplotlib.axes.Axes
        One stem per lag (lag 0 is 1 by definition) and a zero line.
    """
    if alpha is not None and alpha != 0 and not 0.0 < alpha < 1.0:
        raise ArgumentError(f"alpha must lie strictly between 0 and 1 (or be None), got {alpha}.")
    table = acf(fit, max_lag=max_lag, resid_type=resid_type, group=group, time=time)
    lag = table["lag"].to_numpy()
    values = table["acf"].to_numpy()
    ax = single_axes(ax)
    ax.vlines(lag, 0.0, values, color="C0", linewidth=2)
    ax.plot(lag, values, "o", color="C0", markersize=4)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    if alpha:
        from scipy import stats

        with np.errstate(divide="ignore"):
            band = stats.norm.ppf(1.0 - alpha / 2.0) / np.sqrt(table["n_pairs"].to_numpy())
        label = f"{1 - alpha:.0%} bounds for independence"
        ax.plot(lag, band, "--", color="C3", linewidth=1, label=label)
        ax.plot(lag, -band, "--", color="C3", linewidth=1)
        ax.legend(loc="upper right", fontsize="small", frameon=False)
    ax.set_xlabel("lag")
    ax.set_ylabel("autocorrelation")
    ax.set_xticks(lag if lag.size <= 20 else lag[:: int(np.ceil(lag.size / 20))])
    ax.set_xlim(-0.5, lag[-1] + 0.5)
    grouping = table.attrs.get("grouping")
    where = f" within {grouping}" if grouping else ""
    ax.set_title(f"ACF of {_NAMES[resid_type]} residuals{where}")
    return ax


def plot_variogram(
    fit: Any,
    ax: Axes | None = None,
    *,
    time: str | None = None,
    coords: Sequence[str] | str | None = None,
    resid_type: ResidType = "pearson",
    robust: bool = False,
    max_dist: float | None = None,
    smooth: bool = True,
    span: float = 0.6,
    show_model: bool | None = None,
    group: str | None = None,
    metric: str | None = None,
    collapse: Literal["quantiles", "fixed", "none"] = "quantiles",
    n_intervals: int = 20,
) -> Axes:
    """Empirical semivariogram of the residuals, a smooth and the fitted structure's.

    Parameters
    ----------
    fit : MLResult
        An ML or REML fit.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made when omitted.
    time, coords, resid_type, robust, max_dist, group, metric, collapse, n_intervals
        As in :func:`~bayesmix.residual_diagnostics.variogram`.
    smooth : bool
        Draw a local-linear (tricube-weighted, loess-like) smooth of the points.
    span : float
        Share of the points in each local fit of the smooth (nlme's 0.6).
    show_model : bool, optional
        Draw the fitted correlation structure's semivariogram
        (:func:`~bayesmix.residual_diagnostics.model_variogram`). Default: when
        there is one for these distances and residuals (Pearson or response);
        ``True`` raises when there is none.

    Returns
    -------
    matplotlib.axes.Axes
        Points at the bins' median distances; with normalized residuals a
        dotted line at 1, the semivariogram of independent unit-variance
        residuals.
    """
    if not 0.0 < span <= 1.0:
        raise ArgumentError(f"span must lie in (0, 1], got {span}.")
    table = variogram(
        fit,
        time=time,
        coords=coords,
        resid_type=resid_type,
        robust=robust,
        max_dist=max_dist,
        group=group,
        metric=metric,
        collapse=collapse,
        n_intervals=n_intervals,
    )
    model = None
    applies = table.attrs["own_distances"] and resid_type != "normalized"
    if show_model is not False and applies and model_semivariogram(fit) is not None:
        model = model_variogram(fit, resid_type=resid_type)
    if show_model and model is None:
        raise ArgumentError(
            "show_model=True, but there is no model semivariogram for these residuals: the fit "
            "needs a correlation structure that is a function of distance, measured in its own "
            "covariate, and resid_type 'pearson' or 'response'."
        )
    dist = table["dist"].to_numpy()
    values = table["variog"].to_numpy()
    ax = single_axes(ax)
    label = "robust semivariogram" if robust else "empirical semivariogram"
    ax.plot(dist, values, "o", color="C0", markersize=4 if dist.size <= 200 else 2, label=label)
    top = float(np.max(values))
    if smooth and np.unique(dist).size >= 3:
        grid = np.linspace(dist.min(), dist.max(), _SMOOTH_POINTS)
        fitted = _local_linear(dist, values, grid, span)
        ax.plot(grid, fitted, "--", color="C0", alpha=0.7, label=f"smooth (span {span:g})")
    if model is not None:
        structure = fit.residual_structure.correlation.spec.nlme()
        ax.plot(model["dist"], model["variog"], color="C3", linewidth=1.5, label=structure)
        top = max(top, float(model["variog"].max()))
    if resid_type == "normalized":
        ax.axhline(1.0, color="0.4", linestyle=":", linewidth=1, label="independent residuals")
        top = max(top, 1.0)
    ax.set_ylim(0.0, 1.08 * top)
    ax.set_xlim(left=0.0)
    ax.set_xlabel("distance")
    ax.set_ylabel("semivariogram")
    grouping = table.attrs.get("grouping")
    where = f" within {grouping}" if grouping else ""
    ax.set_title(f"Semivariogram of {_NAMES[resid_type]} residuals{where}")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)
    return ax


# --------------------------------------------------------------------------- helpers


def _local_linear(x: np.ndarray, y: np.ndarray, grid: np.ndarray, span: float) -> np.ndarray:
    """Tricube-weighted local-linear fits at ``grid`` over the nearest ``span`` of points."""
    q = max(2, int(np.ceil(span * x.size)))
    out = np.empty(grid.size)
    for i, x0 in enumerate(grid):
        gap = np.abs(x - x0)
        h = max(np.partition(gap, q - 1)[q - 1], 1e-12 * (1.0 + abs(x0)))
        w = np.clip(1.0 - (gap / h) ** 3, 0.0, None) ** 3
        total = w.sum()
        centre = np.sum(w * x) / total
        spread = np.sum(w * (x - centre) ** 2)
        mean = np.sum(w * y) / total
        slope = np.sum(w * (x - centre) * (y - mean)) / spread if spread > 0 else 0.0
        out[i] = mean + slope * (x0 - centre)
    return out
