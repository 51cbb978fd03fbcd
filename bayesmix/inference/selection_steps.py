"""What both random-effects selections share: the stepwise walk, the result, the checks.

:func:`walk` takes the best improving move until none improves (never revisiting a
state); :mod:`.selection` (``lmm``: bars) and :mod:`.selection_nonlinear` (``nlmm``:
parameters with random effects) supply the states, moves and refits.

Notation
--------
state : a random-effects structure; LRT : ``2 |logLik_a - logLik_b|``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError, ConvergenceWarning, SingularFitWarning

__all__ = ["Selection", "check_options", "path_table", "quietly", "walk"]


@dataclass(frozen=True)
class Selection:
    """Result of :func:`select_random`: the ``path`` table, the chosen ``fit``, every ``fits``."""

    path: pd.DataFrame
    fit: Any
    fits: dict[str, Any]

    def __repr__(self) -> str:
        table = self.path.to_string(
            na_rep="", float_format=lambda v: f"{v:.4g}" if abs(v) < 1e-3 else f"{v:.2f}"
        )
        return f"Random-effects selection ({self.path.attrs.get('criterion')}):\n{table}"


def walk(
    state: Any,
    fit: Any,
    moves: Callable[[Any], list[tuple[str, Any]]],
    fitted: Callable[[Any], Any],
    criterion: str,
    alpha: float,
    key: Callable[[Any], Any] = lambda state: state,
) -> list[tuple[str, Any, Any, float, float]]:
    """The stepwise path: from ``state`` (fitted as ``fit``) take the best improving move
    until none improves. Rows ``(move, state, fit, LRT, p)``; shared with
    :mod:`.selection_nonlinear`. A state on the path is never revisited (``key`` makes
    states comparable), so LRT steps, which need not decrease anything, cannot cycle."""
    score = (lambda r: r.bic) if criterion == "BIC" else (lambda r: r.aic)
    rows = [("start", state, fit, np.nan, np.nan)]
    visited = {key(state)}
    while True:
        current = rows[-1][2]
        best = None
        for move, candidate_state in moves(state):
            if key(candidate_state) in visited:
                continue
            candidate = fitted(candidate_state)
            lrt = 2.0 * abs(candidate.loglik - current.loglik)
            df = abs(candidate.df - current.df)
            p = float(stats.chi2.sf(lrt, df)) if df else np.nan
            if criterion == "LRT":
                adds = candidate.df > current.df
                better = (p < alpha) if adds else (not p < alpha)
                rank = p if adds else -p
            else:
                rank = score(candidate) - score(current)
                better = rank < 0
            if better and (best is None or rank < best[0]):
                best = (rank, move, candidate_state, candidate, lrt, p)
        if best is None:
            return rows
        _, move, state, chosen, lrt, p = best
        visited.add(key(state))
        rows.append((move, state, chosen, lrt, p))


def quietly(make_fit: Callable[[], Any]) -> Any:
    """Fit a candidate without its singular-fit and convergence warnings: the path's
    ``singular`` and ``converged`` columns report them, once per model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_fit()


def check_options(criterion: Any, direction: Any, alpha: Any) -> None:
    """Name a bad ``criterion``, ``direction`` or ``alpha``."""
    if criterion not in ("AIC", "BIC", "LRT"):
        raise ArgumentError(f"criterion must be 'AIC', 'BIC' or 'LRT', not {criterion!r}.")
    if direction not in ("backward", "forward", "both"):
        raise ArgumentError(
            f"direction must be 'backward', 'forward' or 'both', not {direction!r}."
        )
    if not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ArgumentError(f"alpha must be a level between 0 and 1, not {alpha!r}.")


def path_table(
    rows: list, label: Callable[[Any], str], criterion: str, direction: str, method: str
) -> pd.DataFrame:
    """The path: one row per step with the fit's df, AIC, BIC, logLik, LRT and flags."""
    path = pd.DataFrame(
        {
            "move": [r[0] for r in rows],
            "random": [label(r[1]) for r in rows],
            "df": [r[2].df for r in rows],
            "AIC": [r[2].aic for r in rows],
            "BIC": [r[2].bic for r in rows],
            "logLik": [r[2].loglik for r in rows],
            "LRT": [r[3] for r in rows],
            "p_value": [r[4] for r in rows],
            "singular": [bool(r[2].singular) for r in rows],
            "converged": [bool(r[2].converged) for r in rows],
        },
        index=pd.RangeIndex(len(rows), name="step"),
    )
    path.attrs.update(criterion=criterion, direction=direction, method=method)
    return path
