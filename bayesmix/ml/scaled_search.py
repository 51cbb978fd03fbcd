"""Minimising a criterion in coordinates scaled by its curvature, and Newton rounds.

BOBYQA is not scale invariant: on the joint ``(theta, u)`` of a residual structure,
random-effect parameters of 7 and 0.05 next to a correlation's 1 cost it hundreds of
evaluations. :func:`coordinate_scales` measures each coordinate's curvature once,
:func:`scaled_minimum` runs :func:`~bayesmix.ml.optimise.optimise` in units of it,
and :func:`newton_round` moves a nearby optimum by finite-difference Newton steps
(the fitted-value rounds of :mod:`bayesmix.ml.residual_fit`).

Notation
--------
x : the criterion's coordinates; z = (x - x0) / scales, the scaled ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bayesmix.ml.optimise import measure, optimise

__all__ = ["SCALED_RHOBEG", "coordinate_scales", "newton_round", "scaled_minimum"]

# finite-difference step of the curvature that scales BOBYQA's coordinates
_CURVATURE_STEP = 1e-3
# coordinate scales are kept in this range: a flat start (varConstPower at power 0
# cannot tell its constant) must not turn a unit step into a leap
_SCALE_RANGE = (1e-4, 1.0)
#: BOBYQA's first trust-region radius in the scaled coordinates
SCALED_RHOBEG = 0.5
# Newton steps per round, halvings per step, and the predicted gain (criterion
# units) below which a round's optimum is accepted
_NEWTON_STEPS = 6
_BACKTRACKS = 6
_NEWTON_ACCEPT = 1e-9


def coordinate_scales(
    crit: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray
) -> np.ndarray:
    """``1 / sqrt(d2 crit / dx_i^2)`` at ``x0``: BOBYQA's steps in units of curvature.

    BOBYQA is not scale invariant; random-effect ``theta`` of 7 and 0.05 next to a
    correlation's ``u`` of 1 (BodyWeight) cost it hundreds of evaluations unscaled.
    """
    f0 = crit(x0)
    scales = np.ones(x0.size)
    for i in range(x0.size):
        h = (
            min(_CURVATURE_STEP, 0.5 * (x0[i] - lower[i]))
            if np.isfinite(lower[i])
            else _CURVATURE_STEP
        )
        if h <= 0:
            continue
        up, down = x0.copy(), x0.copy()
        up[i] += h
        down[i] -= h
        curvature = (crit(up) - 2 * f0 + crit(down)) / h**2
        if np.isfinite(curvature) and curvature > 0:
            scales[i] = float(np.clip(1.0 / np.sqrt(curvature), _SCALE_RANGE[0], _SCALE_RANGE[1]))
    return scales


def scaled_minimum(
    crit: Callable[[np.ndarray], float],
    x: np.ndarray,
    lower: np.ndarray,
    scales: np.ndarray,
    max_evaluations: int,
) -> tuple[np.ndarray, bool, str, int]:
    """BOBYQA in coordinates scaled by ``scales`` around ``x``, with the proof of
    :func:`~bayesmix.ml.optimise.optimise`; ``(x, converged, message, evaluations)``."""
    x0 = x.copy()
    opt = optimise(
        lambda z: crit(x0 + scales * z),
        np.zeros_like(x0),
        (lower - x0) / scales,
        max_evaluations,
        rhobeg=SCALED_RHOBEG,
    )
    return np.maximum(x0 + scales * opt.x, lower), opt.converged, opt.message, opt.n_evaluations


def newton_round(
    crit: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray, scales: np.ndarray
) -> tuple[np.ndarray, bool, int]:
    """Newton steps from ``x`` (finite-difference derivatives) until the minimum is
    proven; ``(x, proven, evaluations)``. Fails when no step descends."""
    x0 = x.copy()

    def fun(z: np.ndarray) -> float:
        return crit(x0 + scales * z)

    lo = (lower - x0) / scales
    z, fz, used = np.zeros_like(x0), fun(np.zeros_like(x0)), 1
    for _ in range(_NEWTON_STEPS):
        check = measure(fun, z, fz, lo)
        used += 2 * z.size + z.size * (z.size - 1) // 2
        if check.at_minimum or (check.passes and check.decrement < _NEWTON_ACCEPT):
            return np.maximum(x0 + scales * z, lower), True, used
        step = check.newton_step
        for _ in range(_BACKTRACKS):
            trial = np.maximum(z + step, lo)
            f_trial = fun(trial)
            used += 1
            if f_trial < fz:
                z, fz = trial, f_trial
                break
            step = step / 2
        else:
            return np.maximum(x0 + scales * z, lower), False, used
    return np.maximum(x0 + scales * z, lower), False, used
