"""Diagnostic and summary plots for fitted mixed models.

All functions are duck-typed: they accept any result with the shared result
interface (``fixef()``, ``ranef()``, ``residuals(kind=...)``, ``fitted()``),
so maximum-likelihood and Bayesian results plot the same way. Summary tables
with columns ``estimate``/``std_error`` are treated as ML output (normal
intervals ``estimate +- z * std_error``); tables with ``mean``/``lower``/
``upper`` as posterior summaries (the stored credible interval).

matplotlib and scipy are imported inside the functions so that importing
bayesmix never pulls them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.plotting_axes import single_axes

# the residual plots have their own module; importable from here as before
from bayesmix.plotting_qq import default_residual_kind, plot_qq, plot_residuals  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_coefficients", "plot_qq", "plot_ranef", "plot_residuals"]

_DEFAULT_CI_PROB = 0.95
# Beyond this many levels the tick labels of a caterpillar panel overlap.
_MAX_LABELLED_LEVELS = 60


def plot_ranef(
    result: Any,
    grouping: str | None = None,
    *,
    ci_prob: float | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Caterpillar plot of the random effects of one grouping factor.

    Parameters
    ----------
    result
        A fitted result with a ``ranef()`` method returning
        ``{grouping: DataFrame}`` with a (level, term) row index.
    grouping : str, optional
        Grouping factor to plot; may be omitted when the model has only one.
    ci_prob : float, optional
        Interval probability. ML results default to 0.95. Bayesian results
        show their stored credible interval; passing a different value raises.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per random-effect term (a single Axes when there is one term).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per term; levels sorted by their estimate for the first term
        (as lme4's ``dotplot``), in the same order in every panel.

    Raises
    ------
    ValueError
        If ``grouping`` is not one of the model's grouping factors (the
        message lists them) or is omitted while the model has several.
    """
    effects = result.ranef()
    name = _pick_grouping(effects, grouping)
    table = effects[name]
    estimate, lower, upper, prob = _intervals(table, ci_prob)
    # Wide layout (levels x terms) so every panel can share one level order.
    bounds = pd.DataFrame(
        {"estimate": estimate, "lower": lower, "upper": upper}, index=table.index
    ).unstack(level=1, sort=False)
    terms = list(dict.fromkeys(table.index.get_level_values(1)))
    # Like lme4's dotplot: levels ordered by the first term, shared by all panels,
    # so a level can be read across the row.
    order = np.argsort(bounds[("estimate", terms[0])].to_numpy(), kind="stable")
    bounds = bounds.iloc[order]
    levels = [str(level) for level in bounds.index]
    position = np.arange(len(levels))
    axes = _panel_axes(ax, len(terms))
    for i, (panel, term) in enumerate(zip(axes, terms, strict=True)):
        point = bounds[("estimate", term)].to_numpy()
        low = bounds[("lower", term)].to_numpy()
        high = bounds[("upper", term)].to_numpy()
        panel.errorbar(
            point,
            position,
            xerr=np.vstack([point - low, high - point]),
            fmt="o",
            markersize=3,
            color="C0",
            ecolor="0.55",
            elinewidth=1,
        )
        panel.axvline(0.0, color="0.3", linestyle="--", linewidth=0.8)
        panel.set_title(term)
        panel.set_xlabel("random effect")
        panel.set_ylim(-1, len(levels))
        if i == 0 and len(levels) <= _MAX_LABELLED_LEVELS:
            panel.set_yticks(position, labels=levels, fontsize="small")
        else:
            panel.set_yticks(position if len(levels) <= _MAX_LABELLED_LEVELS else [])
            panel.tick_params(axis="y", labelleft=False)
    axes[0].set_ylabel(name)
    figure = axes[0].figure
    figure.suptitle(f"Random effects by {name} ({prob:.0%} intervals)")
    return figure


def plot_coefficients(
    results: Mapping[str, Any] | Sequence[Any],
    *,
    ci_prob: float | None = None,
    terms: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Compare fixed effects across models with dodged point-and-interval marks.

    Parameters
    ----------
    results : dict of str to result, or list of results
        Fitted results with a ``fixef()`` method; dict keys label the models
        (a list is labelled "model 1", "model 2", ...). ML and Bayesian
        results may be mixed.
    ci_prob : float, optional
        Interval probability; see :func:`plot_ranef`.
    terms : sequence of str, optional
        Coefficients to show, in this order (e.g. to leave out the intercept,
        whose scale often dwarfs the others). Default: every coefficient of
        any model, in order of first appearance.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        One row per coefficient, one marker (with interval) per model that
        has it, and a legend naming the models.
    """
    if isinstance(results, Mapping):
        named = list(results.items())
    else:
        named = [(f"model {i + 1}", res) for i, res in enumerate(results)]
    if not named:
        raise ValueError("plot_coefficients needs at least one fitted result")
    tables = [(name, res.fixef()) for name, res in named]
    available = list(dict.fromkeys(term for _, table in tables for term in table.index))
    if terms is None:
        terms = available
    else:
        unknown = [term for term in terms if term not in available]
        if unknown:
            raise ValueError(f"unknown coefficient(s) {unknown}; available: {', '.join(available)}")
        terms = list(terms)

    ax = single_axes(ax, height=max(2.5, 0.45 * len(terms) * max(1, len(tables) / 2)))
    # Spread the models over 60% of the gap between coefficient rows.
    width = 0.6
    offsets = np.linspace(-width / 2, width / 2, len(tables)) if len(tables) > 1 else np.zeros(1)
    rows = {term: i for i, term in enumerate(terms)}
    probs = set()
    for k, (name, table) in enumerate(tables):
        estimate, lower, upper, prob = _intervals(table, ci_prob)
        probs.add(round(prob, 6))
        names = list(table.index)
        keep = [i for i, term in enumerate(names) if term in rows]
        if not keep:
            continue
        y = np.array([rows[names[i]] for i in keep]) + offsets[k]
        ax.errorbar(
            estimate[keep],
            y,
            xerr=np.vstack([estimate[keep] - lower[keep], upper[keep] - estimate[keep]]),
            fmt="o",
            markersize=4,
            capsize=2,
            color=f"C{k % 10}",
            label=name,
        )
    ax.axvline(0.0, color="0.3", linestyle="--", linewidth=0.8)
    ax.set_yticks(np.arange(len(terms)), labels=terms)
    ax.set_ylim(len(terms) - 0.5, -0.5)  # first coefficient on top, as in tables
    ax.set_xlabel("estimate")
    intervals = ", ".join(f"{p:.0%}" for p in sorted(probs))
    ax.set_title(f"Fixed effects ({intervals} intervals)")
    ax.legend(loc="best", fontsize="small")
    return ax


# --------------------------------------------------------------------------- helpers


def _pick_grouping(effects: Mapping[str, pd.DataFrame], grouping: str | None) -> str:
    available = list(effects)
    if not available:
        raise ValueError("the result has no random effects to plot")
    if grouping is None:
        if len(available) > 1:
            raise ValueError(
                f"the model has several grouping factors; pass grouping= one of: "
                f"{', '.join(map(repr, available))}"
            )
        return available[0]
    if grouping not in effects:
        raise ValueError(
            f"unknown grouping factor {grouping!r}; available: {', '.join(map(repr, available))}"
        )
    return grouping


def _intervals(
    table: pd.DataFrame, ci_prob: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Point estimates and interval bounds from an ML or posterior summary."""
    if ci_prob is not None and not 0.0 < ci_prob < 1.0:
        raise ValueError(f"ci_prob must lie strictly between 0 and 1, got {ci_prob}")
    columns = set(table.columns)
    if {"estimate", "std_error"} <= columns:
        from scipy import stats

        prob = _DEFAULT_CI_PROB if ci_prob is None else ci_prob
        estimate = table["estimate"].to_numpy(dtype=float)
        half_width = stats.norm.ppf(0.5 + prob / 2) * table["std_error"].to_numpy(dtype=float)
        return estimate, estimate - half_width, estimate + half_width, prob
    if {"mean", "lower", "upper"} <= columns:
        stored = table.attrs.get("ci_prob")
        if ci_prob is not None and stored is not None and not np.isclose(ci_prob, stored):
            raise ValueError(
                f"this posterior summary holds {stored:.0%} intervals, not {ci_prob:.0%}; "
                "omit ci_prob or summarise the posterior again with the interval you want"
            )
        prob = stored if stored is not None else (ci_prob or _DEFAULT_CI_PROB)
        return (
            table["mean"].to_numpy(dtype=float),
            table["lower"].to_numpy(dtype=float),
            table["upper"].to_numpy(dtype=float),
            float(prob),
        )
    raise ValueError(
        "cannot read intervals from a table with columns "
        f"{list(table.columns)}; expected estimate/std_error or mean/lower/upper"
    )


def _panel_axes(ax: Axes | Sequence[Axes] | None, n_panels: int) -> list[Axes]:
    if ax is None:
        import matplotlib.pyplot as plt

        _, created = plt.subplots(
            1,
            n_panels,
            sharey=False,
            squeeze=False,
            figsize=(3.2 * n_panels + 1.0, 5.0),
            layout="constrained",
        )
        return list(created.ravel())
    axes = [ax] if not isinstance(ax, (Sequence, np.ndarray)) else list(np.ravel(ax))
    if len(axes) != n_panels:
        raise ValueError(f"need {n_panels} Axes (one per random-effect term), got {len(axes)}")
    return axes
