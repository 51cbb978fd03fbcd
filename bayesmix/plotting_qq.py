"""Residual plots of any fit: normal quantiles (``plot_qq``) and against fitted values
(``plot_residuals``).

A posterior's residuals are one vector at the posterior mean by default; with
``draws=k`` the plots show the realized residuals of k posterior draws
(:meth:`bayesmix.bayes.workflow.BayesWorkflow.residual_draws`): one Q-Q curve per
draw, or each row's interval over the draws, so the uncertainty of the fitted
values is seen rather than averaged away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.errors import ArgumentError
from bayesmix.plotting_axes import finite_values, single_axes

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes

__all__ = ["default_residual_kind", "plot_qq", "plot_residuals"]

# central interval of a row's realized residuals in plot_residuals(draws=...)
_DRAW_INTERVAL = 0.9


def default_residual_kind(result: Any) -> str:
    """The standardised residuals each result offers: nlme's normalised ones for a Gaussian
    ML/REML fit, deviance residuals for an ML GLMM (glmer's), Pearson for a posterior."""
    if not hasattr(result, "estimates"):
        return "pearson"
    return "deviance" if getattr(result, "family", None) is not None else "normalized"


def _residual_draws(result: Any, kind: str, draws: int) -> np.ndarray:
    if not hasattr(result, "residual_draws"):
        raise ArgumentError(
            "draws= plots the residuals of posterior draws: it needs a Bayesian result "
            "(model.sample()); leave it out for an ML/REML fit."
        )
    return np.asarray(result.residual_draws(kind, draws=draws), dtype=float)


def _formula_title(ax: Axes, title: str, result: Any) -> None:
    """``title``, with the model's formula below it, wrapped to the width of a panel."""
    import textwrap

    formula = getattr(getattr(result, "design", None), "formula", None)
    if formula:
        title = f"{title}\n" + textwrap.fill(str(formula), 62, break_long_words=False)
    ax.set_title(title, fontsize="medium")


def _normal_positions(n: int) -> np.ndarray:
    from scipy import stats

    # Plotting positions of R's ppoints(): (i - a) / (n + 1 - 2a).
    offset = 3.0 / 8.0 if n <= 10 else 0.5
    return stats.norm.ppf((np.arange(1, n + 1) - offset) / (n + 1 - 2 * offset))


def plot_qq(
    result: Any, kind: str | None = None, *, draws: int | None = None, ax: Axes | None = None
) -> Axes:
    """Normal quantile-quantile plot of residuals.

    Parameters
    ----------
    result
        A fitted result (ML/REML, GLMM or Bayesian) with a ``residuals(kind=...)`` method.
    kind : str, optional
        Residual type passed to ``result.residuals``; by default the result's
        standardised residuals (:func:`default_residual_kind`).
    draws : int, optional
        Bayesian results: one Q-Q curve for each of this many posterior draws'
        realized residuals instead of the points at the posterior mean.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        Points (sorted residuals against normal quantiles), or one line per draw,
        and a reference line through the first and third quartiles, as R's
        ``qqline`` draws (of all draws pooled).
    """
    from scipy import stats

    kind = default_residual_kind(result) if kind is None else kind
    if draws is None:
        samples = np.sort(finite_values(result.residuals(kind=kind), "residuals"))[None, :]
    else:
        samples = np.sort(_residual_draws(result, kind, draws), axis=1)
        if not np.isfinite(samples).all():
            raise ArgumentError(f"the {kind} residuals of some draws are not finite.")
    theoretical = _normal_positions(samples.shape[1])
    sample_q = np.quantile(samples, [0.25, 0.75])
    normal_q = stats.norm.ppf([0.25, 0.75])
    slope = (sample_q[1] - sample_q[0]) / (normal_q[1] - normal_q[0])
    intercept = sample_q[0] - slope * normal_q[0]

    ax = single_axes(ax)
    if draws is None:
        ax.plot(theoretical, samples[0], "o", markersize=3, color="C0", alpha=0.8)
        title = "Normal Q-Q plot of residuals"
    else:
        alpha = min(0.6, max(0.08, 4.0 / samples.shape[0]))
        ax.plot(theoretical, samples.T, "-", color="C0", alpha=alpha, linewidth=0.8)
        title = f"Normal Q-Q plot of residuals ({samples.shape[0]} posterior draws)"
    ax.axline((0.0, intercept), slope=slope, color="C3", linewidth=1)
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel(f"{kind} residuals")
    _formula_title(ax, title, result)
    return ax


def plot_residuals(
    result: Any, kind: str | None = None, *, draws: int | None = None, ax: Axes | None = None
) -> Axes:
    """Residuals against fitted values.

    Parameters
    ----------
    result
        A fitted result (ML/REML, GLMM or Bayesian) with ``residuals(kind=...)`` and
        ``fitted()`` methods.
    kind : str, optional
        Residual type passed to ``result.residuals``; by default the result's
        standardised residuals (:func:`default_residual_kind`).
    draws : int, optional
        Bayesian results: add to each row's point (at the posterior mean) the
        central 90% interval of its realized residuals over this many draws.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        Scatter of residuals against fitted values with a zero line (and the
        draws' intervals as one ``LineCollection``).
    """
    kind = default_residual_kind(result) if kind is None else kind
    residuals = np.asarray(result.residuals(kind=kind), dtype=float).ravel()
    fitted = np.asarray(result.fitted(), dtype=float).ravel()
    if residuals.shape != fitted.shape:
        raise ValueError(
            f"residuals ({residuals.size}) and fitted values ({fitted.size}) differ in length"
        )
    ax = single_axes(ax)
    title = "Residuals vs fitted"
    if draws is not None:
        from matplotlib.collections import LineCollection

        samples = _residual_draws(result, kind, draws)
        tail = (1.0 - _DRAW_INTERVAL) / 2.0
        low, high = np.quantile(samples, [tail, 1.0 - tail], axis=0)
        segments = np.stack([np.c_[fitted, low], np.c_[fitted, high]], axis=1)
        ax.add_collection(LineCollection(segments, colors="C0", alpha=0.3, linewidths=0.8))
        title = (
            f"Residuals vs fitted ({_DRAW_INTERVAL:.0%} intervals over "
            f"{samples.shape[0]} posterior draws)"
        )
    ax.plot(fitted, residuals, "o", markersize=3, color="C0", alpha=0.7)
    ax.axhline(0.0, color="0.3", linestyle="--", linewidth=0.8)
    ax.set_xlabel("fitted values")
    ax.set_ylabel(f"{kind} residuals")
    _formula_title(ax, title, result)
    return ax
