"""Fitted curves: one predictor's effect, and each group's own curve.

* :func:`plot_effects` (brms's ``conditional_effects``): the expected response
  over one predictor, the other predictors at reference values (numeric ones at
  their mean, categorical ones at their first level), optionally one curve per
  value of a second predictor (``by=``), with its interval;
* :func:`plot_individuals` (nlme's ``augPred``): each level's data with its
  fitted curve (random effects included) and the population curve.

Both take ML/REML and Bayesian fits of ``lmm``, ``glmm`` and ``nlmm``. ML
intervals are Wald intervals of the fixed part (``X V_beta X'``; for a GLMM on
the link scale, then transformed); Bayesian ones are the posterior's
equal-tailed intervals. matplotlib is imported inside the functions.

Notation: x the plotted predictor; the reference row holds every other column.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.bayes.validate import check_ci_prob
from bayesmix.errors import ArgumentError, DataWarning

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_effects", "plot_individuals", "reference_grid"]

#: Values of a numeric ``by=`` predictor: its mean and the mean +- one SD (as brms)
_BY_SDS = (-1.0, 0.0, 1.0)
_NEW_LEVEL = "(new level)"
_MAX_PANELS = 16


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _levels(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return [c for c in series.cat.categories if c in set(series.dropna())]
    return sorted(series.dropna().unique(), key=str)


def reference_grid(data: pd.DataFrame, x: str, values: np.ndarray | list) -> pd.DataFrame:
    """Rows with ``x`` at ``values`` and every other column at its reference value."""
    row = {}
    for column in data.columns:
        series = data[column]
        if _is_numeric(series):
            row[column] = float(series.mean())
        else:  # a column with no values at all (unused by the model) stays missing
            levels = _levels(series)
            row[column] = levels[0] if levels else np.nan
    grid = pd.DataFrame([row] * len(values))
    for column in data.columns:  # keep categorical dtypes (and so their level order)
        if isinstance(data[column].dtype, pd.CategoricalDtype):
            grid[column] = pd.Categorical(grid[column], categories=data[column].cat.categories)
    grid[x] = list(values)
    if isinstance(data[x].dtype, pd.CategoricalDtype):
        grid[x] = pd.Categorical(grid[x], categories=data[x].cat.categories)
    return grid


def _model_data(result: Any) -> pd.DataFrame:
    design = getattr(result, "design", None)
    data = getattr(design, "data", None)
    if data is None:
        raise ArgumentError(
            f"this plot needs a fitted result with its data, not {type(result).__name__}."
        )
    return data


def _groupings(result: Any) -> list[str]:
    return list(dict.fromkeys(block.grouping for block in result.design.blocks))


def _predict_interval(
    result: Any, rows: pd.DataFrame, include_random: bool, ci_prob: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(mean, lower, upper)`` of the expected response at ``rows`` (bounds may be None)."""
    from scipy import stats

    if hasattr(result, "idata"):  # Bayesian: the posterior's equal-tailed interval
        kwargs = {"include_random": include_random, "ci_prob": ci_prob}
        if getattr(result, "family", None) is not None:
            kwargs["type"] = "response"
        with warnings.catch_warnings():  # new levels are drawn from the population on purpose
            warnings.simplefilter("ignore", DataWarning)
            table = result.predict(rows, **kwargs)
        return table["mean"].to_numpy(), table["lower"].to_numpy(), table["upper"].to_numpy()
    family = getattr(result, "family", None)
    if include_random:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            mean = np.asarray(result.predict(rows, include_random=True), dtype=float)
        return mean, None, None
    if not hasattr(result, "vcov") or getattr(result, "nonlinear_design", None) is not None:
        return np.asarray(result.predict(rows, include_random=False), dtype=float), None, None
    new = result.design.evaluate_new_data(rows)
    X = np.asarray(new.X, dtype=float)
    V = np.asarray(result.vcov(), dtype=float)
    eta = X @ np.asarray(result.fixef()["estimate"], dtype=float) + new.offset_or_zero
    half = stats.norm.ppf(0.5 + ci_prob / 2) * np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    if family is None:
        return eta, eta - half, eta + half
    inverse = family.link.inverse
    if getattr(result, "zi_beta", None) is not None:
        return np.asarray(result.predict(rows, include_random=False), dtype=float), None, None
    bounds = np.sort(np.stack([inverse(eta - half), inverse(eta + half)]), axis=0)
    return inverse(eta), bounds[0], bounds[1]


def plot_effects(
    result: Any,
    x: str,
    by: str | None = None,
    *,
    include_random: bool = False,
    ci_prob: float = 0.95,
    points: bool = True,
    n_points: int = 100,
    ax: Axes | None = None,
) -> Figure:
    """The expected response over ``x``, other predictors at reference values.

    Parameters
    ----------
    result
        An ML/REML or Bayesian fit of ``lmm``, ``glmm`` or ``nlmm``.
    x : str
        A column of the model's data: numeric (a curve over its range) or
        categorical (a point with an interval per level).
    by : str, optional
        A second column: one curve per level (categorical) or at its mean and
        mean +- one SD (numeric).
    include_random : bool
        ``False`` (default): the population curve (group effects 0).
        ``True`` (Bayesian fits only): the curve of a new, unobserved group, its
        effects drawn from the fitted population, so the band covers the
        between-group spread.
    ci_prob : float
        Probability of the interval (ML: Wald, of the fixed part; Bayesian: equal-tailed).
    points : bool
        Overlay the observations.
    n_points : int
        Grid size along a numeric ``x``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    data = _model_data(result)
    for name, value in (("x", x), ("by", by)):
        if value is not None and value not in data.columns:
            raise ArgumentError(f"{name}={value!r} is not a column of the model's data.")
    check_ci_prob(ci_prob)
    if include_random and (
        not hasattr(result, "idata") or getattr(result, "family", None) is not None
    ):
        raise ArgumentError(
            "include_random=True (the curve of a new group) needs a Bayesian Gaussian or "
            "nonlinear fit; ML fits and GLMMs show the population curve (include_random=False)."
        )
    numeric_x = _is_numeric(data[x])
    xs = np.linspace(data[x].min(), data[x].max(), n_points) if numeric_x else _levels(data[x])
    if by is None:
        curves = [(None, None)]
    elif _is_numeric(data[by]):
        mean, sd = float(data[by].mean()), float(data[by].std())
        curves = [(f"{by} = {mean + k * sd:.3g}", mean + k * sd) for k in _BY_SDS]
    else:
        curves = [(f"{by} = {level}", level) for level in _levels(data[by])]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, value) in enumerate(curves):
        grid = reference_grid(data, x, xs)
        if by is not None:
            grid[by] = (
                value
                if _is_numeric(data[by])
                else pd.Categorical([value] * len(grid), categories=_levels(data[by]))
            )
        if include_random:  # every factor of every grouping: no observed group is reused
            for grouping in _groupings(result):
                for factor in grouping.split(":"):
                    if factor in grid.columns:
                        grid[factor] = _NEW_LEVEL
        mean, lower, upper = _predict_interval(result, grid, include_random, ci_prob)
        colour = colours[i % len(colours)]
        positions = np.asarray(xs, dtype=float) if numeric_x else np.arange(len(xs)) + 0.08 * i
        if numeric_x:
            ax.plot(positions, mean, color=colour, label=label)
            if lower is not None:
                ax.fill_between(positions, lower, upper, color=colour, alpha=0.25, linewidth=0)
        else:
            err = None if lower is None else np.stack([mean - lower, upper - mean])
            ax.errorbar(positions, mean, yerr=err, fmt="o", color=colour, capsize=3, label=label)
        if points:
            _scatter_data(ax, result, data, x, xs, by, value, i, colour)
    if not numeric_x:
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(result.design.response)
    kind = "new group" if include_random else "population"
    ax.set_title(f"Effect of {x} ({kind}, {100 * ci_prob:g}% interval)", fontsize="medium")
    if by is not None:
        ax.legend(fontsize="small", frameon=False)
    ax.figure.suptitle(result.design.formula, fontsize="small")
    return ax.figure


def _scatter_data(ax, result, data, x, xs, by, value, index: int, colour) -> None:
    """The observations behind curve ``index``: all of them once, or its ``by`` level's."""
    y = np.asarray(result.design.y, dtype=float)
    if by is None or _is_numeric(data[by]):
        if index > 0:
            return
        rows, colour = np.ones(len(data), dtype=bool), "grey"
    else:
        rows = (data[by] == value).to_numpy()
    px = data.loc[rows, x]
    px = px.to_numpy(dtype=float) if _is_numeric(data[x]) else [xs.index(v) for v in px]
    ax.scatter(px, y[rows], s=8, alpha=0.35, color=colour)


def plot_individuals(
    result: Any,
    x: str,
    group: str | None = None,
    *,
    levels: list | None = None,
    ci_prob: float = 0.95,
    n_points: int = 50,
    ncols: int = 4,
) -> Figure:
    """Each level's observations with its fitted curve and the population curve.

    Parameters
    ----------
    result
        An ML/REML or Bayesian fit of ``lmm``, ``glmm`` or ``nlmm``.
    x : str
        A numeric column: the curves run over each level's range of it.
    group : str, optional
        The grouping factor (default: the model's first).
    levels : list, optional
        Levels to show (default: the first 16).
    ci_prob : float
        Interval of a Bayesian fit's individual curve (ML fits show the curve at
        the conditional modes, without a band).
    n_points : int
        Grid size along ``x``.
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per level: the level's data (points), its curve with the
        group's effects (solid) and the population curve (dashed), evaluated
        with the other columns at the level's first row.
    """
    import matplotlib.pyplot as plt

    from bayesmix.bayes.predictive import grouping_levels
    from bayesmix.plotting_ppc import chosen_levels

    data = _model_data(result)
    if x not in data.columns or not _is_numeric(data[x]):
        raise ArgumentError(f"x={x!r} must be a numeric column of the model's data.")
    groupings = _groupings(result)
    if not groupings:
        raise ArgumentError("plot_individuals needs a model with a grouping factor.")
    group = groupings[0] if group is None else group
    if group not in groupings:
        raise ArgumentError(f"group={group!r} is not one of the grouping factors {groupings}.")
    labels = np.asarray(grouping_levels(result.design)[group].values).astype(str)
    known, chosen = chosen_levels(labels, levels, group)
    chosen = chosen[:_MAX_PANELS] if levels is None else chosen
    nrows = -(-len(chosen) // ncols)
    fig, axes = plt.subplots(
        nrows,
        min(ncols, len(chosen)),
        figsize=(2.6 * min(ncols, len(chosen)) + 0.6, 2.2 * nrows + 0.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    y = np.asarray(result.design.y, dtype=float)
    for ax, level in zip(axes.ravel(), chosen, strict=False):
        rows = np.flatnonzero(labels == level)
        xs = data[x].to_numpy(dtype=float)[rows]
        grid = data.iloc[[rows[0]] * n_points].reset_index(drop=True)
        grid[x] = np.linspace(xs.min(), xs.max(), n_points)
        mean, lower, upper = _predict_interval(result, grid, True, ci_prob)
        population, _, _ = _predict_interval(result, grid, False, ci_prob)
        ax.scatter(xs, y[rows], s=10, color="black", zorder=3)
        ax.plot(grid[x], mean, color="C0")
        ax.plot(grid[x], population, color="C1", linestyle="--", linewidth=1)
        if lower is not None:
            ax.fill_between(grid[x], lower, upper, color="C0", alpha=0.2, linewidth=0)
        ax.set_title(f"{group} {level}", fontsize="small")
    for ax in axes.ravel()[len(chosen) :]:
        ax.set_visible(False)
    fig.supxlabel(x)
    fig.supylabel(result.design.response)
    shown = "" if len(chosen) == len(known) else f" ({len(chosen)} of {len(known)} levels)"
    fig.suptitle(
        f"{result.design.formula}{shown}: fitted (solid), population (dashed)", fontsize="small"
    )
    return fig
