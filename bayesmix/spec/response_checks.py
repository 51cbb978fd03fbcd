"""Checks of a response against the model chosen for it (warnings that name the fix).

* :func:`binary_response`: glmer's reading of a factor response for the
  binomial family (the first level is failure, every other level success).
* :func:`warn_separation`: a fixed-effect indicator column whose rows all share
  one outcome (complete separation): its ML estimate is infinite, and glmer
  reports a huge coefficient with a huge SE without saying why.
* :func:`note_counts_for_gaussian`: a Gaussian linear mixed model of a count
  response with many zeros, which usually wants a count GLMM.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmix.errors import DataWarning, warn

__all__ = ["binary_response", "note_counts_for_gaussian", "warn_separation"]

#: share of zeros from which a Gaussian model of counts gets the note
_MANY_ZEROS = 0.1


def binary_response(data: pd.DataFrame, response: str) -> pd.DataFrame:
    """``data`` with a categorical, string or boolean ``response`` column as 0/1.

    As glmer: the first level (the first category; for strings the first in
    sorted order, as R's ``factor()``) is failure (0), every other level success (1).
    Numeric columns and expressions are returned unchanged.
    """
    if response not in data.columns:
        return data
    column = data[response]
    if pd.api.types.is_bool_dtype(column):
        return data.assign(**{response: column.astype(float)})
    if isinstance(column.dtype, pd.CategoricalDtype):
        first = column.cat.categories[0]
    elif pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        levels = sorted(column.dropna().unique())
        first = levels[0]
        # R sorts a factor's levels by locale ("no" < "Yes"), Python by code point
        # ("Yes" < "no"): say which level is failure rather than risk a flipped sign
        warn(
            f"the binomial response {response!r} is text: {first!r} (first in sorted order) "
            f"is coded 0 and {', '.join(map(repr, levels[1:]))} 1. Make it a "
            "pd.Categorical (its first category is failure) or a 0/1 column to choose.",
            DataWarning,
        )
    else:
        return data
    values = np.where(column.isna(), np.nan, (column != first).astype(float))
    return data.assign(**{response: values})


def warn_separation(
    X: np.ndarray, names: tuple[str, ...], y: np.ndarray, trials: np.ndarray | None
) -> None:
    """Warn about each 0/1 fixed-effect column (not the intercept) whose rows with a 1
    are all failures or all successes."""
    successes = y if trials is None else y * trials
    n = np.ones_like(y) if trials is None else trials
    for j, name in enumerate(names):
        column = X[:, j]
        on = column == 1
        if not on.any() or on.all() or not np.all((column == 0) | on):
            continue
        s, total = float(np.sum(successes[on])), float(np.sum(n[on]))
        if s == 0 or s == total:
            outcome = "failures" if s == 0 else "successes"
            warn(
                f"complete separation: every row with {name} = 1 is among the {outcome}, so "
                f"its coefficient is infinite in principle (the fit reports a large value "
                "with a huge standard error). Merge levels, drop the term, or use the "
                "Bayesian fit, whose prior keeps the estimate finite.",
                DataWarning,
            )


def note_counts_for_gaussian(y: np.ndarray, response: str) -> None:
    """A one-line note when a Gaussian model is fitted to counts with many zeros."""
    y = np.asarray(y, dtype=float)
    if y.size == 0 or np.any(y < 0) or np.any(y != np.rint(y)):
        return
    zeros = float(np.mean(y == 0))
    if zeros >= _MANY_ZEROS:
        warn(
            f"the response {response!r} looks like counts ({zeros:.0%} zeros); a Gaussian "
            "model may fit them poorly: consider bmx.glmm(..., family='poisson' or "
            "'negbinomial', ziformula='~1').",
            DataWarning,
        )
