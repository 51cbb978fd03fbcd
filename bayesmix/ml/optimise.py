"""Minimising the profiled criterion over ``theta``, and proving the minimum.

:func:`minimise` runs BOBYQA (NLopt's ``LN_BOBYQA``, lme4's default
optimiser); with the criterion's gradient :mod:`bayesmix.ml.gradient_search`
runs L-BFGS instead. BOBYQA stops on small *changes* of the criterion, which is not
the same as being at the minimum: on a deviance of 2.85e6 (a million rows)
its relative tolerance once let it stop 3.6e-4 short. :func:`optimise`
therefore measures the point it returns (:func:`measure`): central finite
differences give the gradient ``g`` and Hessian ``H`` with respect to the
free ``theta`` (those not on their lower bound), and ``0.5 g'H^-1 g``
predicts what a Newton step would still gain. Above
:data:`DECREMENT_TOLERANCE` the Newton step is taken (halved if it
overshoots) and the point measured again, unless the step gained what the
quadratic model predicted; if no step descends, BOBYQA is restarted there
with a fresh trust region. The verdict is lme4's convergence check
(``checkConv``): the fit has not converged when a scaled gradient
``min(|H^-1 g|, |g|)`` exceeds :data:`GRADIENT_TOLERANCE` or ``H`` has a
negative eigenvalue at an interior optimum.

A measurement costs ``2 k + k (k - 1) / 2`` criterion evaluations for ``k``
free parameters (9 for ``(Days | Subject)``, 14 for
``(1 + x | g1) + (1 | g2)``); lme4's own check costs more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bayesmix.errors import FitError
from bayesmix.ml.gradient_search import gradient_search

_FTOL_ABS = 1e-10
_XTOL_ABS = 1e-10
# With n large the criterion's rounding noise exceeds _FTOL_ABS; stop on a
# relative change near machine precision instead of wandering in the noise.
_FTOL_REL = 1e-12
#: lme4's ``check.conv.grad`` tolerance on the scaled gradient.
GRADIENT_TOLERANCE = 2e-3
#: Newton decrement ``0.5 g'H^-1 g`` (criterion units, i.e. -2 logLik) below
#: which the optimum is accepted without another step.
DECREMENT_TOLERANCE = 1e-8
#: ``theta`` closer than this to its lower bound is on the bound (lme4's
#: ``isSingular`` tolerance); such coordinates are left out of the check.
BOUND_TOLERANCE = 1e-6
# Finite-difference step (lme4's deriv12 uses 1e-4 too); theta is relative to
# sigma, so an absolute step suits every model.
_STEP = 1e-4
_NEWTON_ROUNDS = 3
# minimise(unpin=True): coordinates within this of 0 get this first step at least
_UNPIN_BELOW = 1e-6
_UNPIN_STEP = 0.1
_BACKTRACKS = 4
# An eigenvalue of H below -this * max|eigenvalue| is negative, not noise.
_NEGATIVE_EIGENVALUE = 1e-6

Criterion = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class OptimumCheck:
    """Finite-difference measurement of a candidate optimum.

    Attributes
    ----------
    free : ndarray of bool
        Coordinates away from their lower bound (the ones checked).
    gradient : ndarray
        Gradient of the criterion (0 on bounded coordinates).
    hessian : ndarray
        Hessian over the free coordinates.
    newton_step : ndarray
        ``-H^-1 g`` on the free coordinates (0 elsewhere; eigenvalues of ``H``
        below a floor are raised to it, so flat directions give bounded steps).
    decrement : float
        ``0.5 g'H^-1 g``: what the Newton step predicts to gain.
    negative_eigenvalues : int
        Eigenvalues of ``H`` that are clearly negative (a saddle, not a minimum);
        not counted at a singular fit, whose free ``theta`` have flat directions.
    scaled_gradient : ndarray
        lme4's ``min(|H^-1 g|, |g|)`` per coordinate.
    """

    free: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray
    newton_step: np.ndarray
    decrement: float
    negative_eigenvalues: int
    scaled_gradient: np.ndarray

    @property
    def at_minimum(self) -> bool:
        """No negative curvature and a negligible predicted gain."""
        return self.negative_eigenvalues == 0 and self.decrement <= DECREMENT_TOLERANCE

    @property
    def worst(self) -> int:
        """Index of the largest scaled gradient."""
        return int(np.argmax(self.scaled_gradient)) if self.scaled_gradient.size else 0

    @property
    def passes(self) -> bool:
        """lme4's verdict: scaled gradient within tolerance and no negative curvature."""
        small = not self.scaled_gradient.size or self.scaled_gradient.max() <= GRADIENT_TOLERANCE
        return small and self.negative_eigenvalues == 0


def measure(fun: Criterion, x: np.ndarray, fx: float, lower: np.ndarray) -> OptimumCheck:
    """Gradient, Hessian and Newton step of ``fun`` at ``x`` by central differences.

    Coordinates within :data:`BOUND_TOLERANCE` of ``lower`` are held fixed;
    steps never cross a bound. Off-diagonal Hessian entries use one extra
    point each: ``(f(x+h_i+h_j) - f(x+h_i) - f(x+h_j) + f(x)) / (h_i h_j)``.
    """
    k = x.size
    free = (x - lower) >= BOUND_TOLERANCE
    idx = np.flatnonzero(free)
    h = np.minimum(_STEP, 0.5 * (x - lower))[idx]
    f_up, f_down = np.empty(idx.size), np.empty(idx.size)
    for a, i in enumerate(idx):
        for sign, out in ((1.0, f_up), (-1.0, f_down)):
            point = x.copy()
            point[i] += sign * h[a]
            out[a] = fun(point)
    grad = (f_up - f_down) / (2 * h)
    hess = np.diag((f_up - 2 * fx + f_down) / h**2)
    for a in range(idx.size):
        for c in range(a):
            point = x.copy()
            point[idx[a]] += h[a]
            point[idx[c]] += h[c]
            value = (fun(point) - f_up[a] - f_up[c] + fx) / (h[a] * h[c])
            hess[a, c] = hess[c, a] = value
    gradient = np.zeros(k)
    gradient[idx] = grad
    step = np.zeros(k)
    decrement, negative = 0.0, 0
    scaled = np.zeros(idx.size)
    if idx.size:
        values, vectors = np.linalg.eigh(hess)
        top = max(float(np.max(np.abs(values))), np.finfo(float).tiny)
        # At a singular fit (a coordinate on its bound) the free theta have flat
        # directions: with T_jj = 0 the later entries of T's row j rotate freely,
        # so a zero eigenvalue measured as slightly negative is no saddle.
        singular = not free.all()
        negative = 0 if singular else int(np.sum(values < -_NEGATIVE_EIGENVALUE * top))
        # |eigenvalue| with a floor: Newton on the curvature's size, never uphill
        floor = np.maximum(np.abs(values), 1e-8 * top)
        newton = vectors @ ((vectors.T @ grad) / floor)
        step[idx] = -newton
        decrement = 0.5 * float(grad @ newton)
        scaled = np.minimum(np.abs(newton), np.abs(grad))
    return OptimumCheck(free, gradient, hess, step, decrement, negative, scaled)


def minimise(
    fun: Criterion,
    start: np.ndarray,
    lower: np.ndarray,
    max_evaluations: int,
    rhobeg: float | np.ndarray = 0.0,
    ftol_abs: float = _FTOL_ABS,
    unpin: bool = False,
) -> tuple[np.ndarray, float, bool, str, int]:
    """BOBYQA from ``start``; returns ``(x, f(x), converged, message, evaluations)``.

    ``rhobeg`` (> 0; a number or one per coordinate) sets the initial trust-region
    radius (NLopt's initial step, which by default is ``|x|`` and so freezes a
    coordinate that starts at 1e-16; ``unpin`` keeps NLopt's steps but gives such
    coordinates a step of 0.1); ``ftol_abs`` a looser stop for a start that another
    optimisation refines.
    """
    state = {"n": 0, "best_f": np.inf, "best_x": start.copy()}

    def objective(x, grad=None):
        value = fun(x)
        state["n"] += 1
        if value < state["best_f"]:
            state["best_f"], state["best_x"] = value, np.array(x, dtype=float)
        return value

    try:
        import nlopt
    except ImportError:  # pragma: no cover - nlopt is a dependency; scipy is a fallback
        from scipy.optimize import minimize

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(
            objective,
            start,
            method="Powell",
            bounds=bounds,
            options={"xtol": 1e-8, "ftol": 1e-12, "maxfev": max_evaluations},
        )
        message = f"scipy Powell: {res.message}"
        return state["best_x"], state["best_f"], bool(res.success), message, state["n"]

    messages = {
        nlopt.SUCCESS: "NLOPT_SUCCESS",
        nlopt.STOPVAL_REACHED: "NLOPT_STOPVAL_REACHED",
        nlopt.FTOL_REACHED: "NLOPT_FTOL_REACHED: the criterion changed by less than its tolerance",
        nlopt.XTOL_REACHED: "NLOPT_XTOL_REACHED: theta changed by less than its tolerance",
        nlopt.MAXEVAL_REACHED: "NLOPT_MAXEVAL_REACHED: evaluation limit reached",
        nlopt.MAXTIME_REACHED: "NLOPT_MAXTIME_REACHED",
    }
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(start))
    opt.set_min_objective(objective)
    opt.set_lower_bounds(lower)
    opt.set_ftol_abs(ftol_abs)
    opt.set_xtol_abs(_XTOL_ABS)
    opt.set_ftol_rel(_FTOL_REL)
    opt.set_maxeval(int(max_evaluations))
    if np.all(np.asarray(rhobeg) > 0):
        opt.set_initial_step(np.broadcast_to(np.asarray(rhobeg, dtype=float), start.shape).copy())
    elif unpin:  # NLopt's default steps (|x|, bounds-aware), but not ~0 for x ~ 0
        steps = np.array(opt.get_initial_step(start), dtype=float)
        tiny = (np.abs(start) < _UNPIN_BELOW) & (steps < _UNPIN_STEP)
        if tiny.any():
            steps[tiny] = _UNPIN_STEP
            opt.set_initial_step(steps)
    try:
        opt.optimize(start)
        code = opt.last_optimize_result()
        converged = code in (
            nlopt.SUCCESS,
            nlopt.FTOL_REACHED,
            nlopt.XTOL_REACHED,
            nlopt.STOPVAL_REACHED,
        )
        message = messages.get(code, f"NLopt result code {code}")
    except nlopt.RoundoffLimited:
        # Precision-limited at the best point so far: as good as it gets.
        converged, message = True, "NLOPT_ROUNDOFF_LIMITED: stopped by round-off at the best point"
    except FitError:
        raise
    # nlopt's own exceptions derive from Exception, not RuntimeError
    except (ValueError, RuntimeError, getattr(nlopt, "exception", RuntimeError)) as err:
        converged, message = False, f"NLopt failure: {err}"
    return state["best_x"], state["best_f"], converged, message, state["n"]


@dataclass(frozen=True)
class Optimum:
    """Result of :func:`optimise`."""

    x: np.ndarray
    fx: float
    converged: bool
    message: str
    n_evaluations: int
    check: OptimumCheck | None


def optimise(
    fun: Criterion,
    start: np.ndarray,
    lower: np.ndarray,
    max_evaluations: int,
    unpin: bool = False,
    rhobeg: float = 0.0,
    gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Optimum:
    """BOBYQA, then :func:`measure` and Newton polishing until the minimum is proven.

    ``converged`` is BOBYQA's verdict and the final check's (:attr:`OptimumCheck.passes`);
    ``unpin`` and ``rhobeg`` are :func:`minimise`'s. With ``gradient`` (the criterion
    and its gradient) the quasi-Newton search of :mod:`bayesmix.ml.gradient_search`
    replaces BOBYQA (``unpin`` and ``rhobeg`` then unused), which only finishes a
    search that failed; ``canonical``
    maps that search's unbounded ``theta`` to the bounded one of the same
    covariances (:func:`bayesmix.spec.covariance.canonical_theta`).
    """
    count = {"n": 0}

    def counted(x: np.ndarray) -> float:
        count["n"] += 1
        return fun(x)

    if gradient is None:
        x, fx, converged, message, _ = minimise(
            counted, start, lower, max_evaluations, rhobeg=rhobeg, unpin=unpin
        )
    else:
        x, fx, converged, message, n_searched = gradient_search(
            gradient, counted, start, lower, max_evaluations, canonical or (lambda x: x)
        )
        count["n"] += n_searched
        budget = max_evaluations - count["n"]
        if not converged and budget > 0:  # a failed search is finished by BOBYQA
            x_b, f_b, converged, message_b, _ = minimise(counted, x, lower, budget, unpin=True)
            if f_b <= fx:
                x, fx = x_b, f_b
            message += f"; BOBYQA from there: {message_b}"
    if not converged:  # out of evaluations or failed: report as it is, unpolished
        return Optimum(x, fx, False, message, count["n"], None)
    check = measure(counted, x, fx, lower)
    rounds = 0
    while not check.at_minimum and rounds < _NEWTON_ROUNDS:
        rounds += 1
        moved = as_predicted = False
        if check.negative_eigenvalues == 0:
            step = check.newton_step
            for halving in range(_BACKTRACKS):
                trial = np.maximum(x + step, lower)
                f_trial = counted(trial)
                if f_trial < fx:
                    gain = fx - f_trial
                    # a full step that gains what the quadratic model predicted lands
                    # at the minimum up to the model's error squared
                    as_predicted = halving == 0 and abs(gain - check.decrement) <= (
                        0.25 * check.decrement
                    )
                    x, fx, moved = trial, f_trial, True
                    break
                step = step / 2
        if not moved:  # no descent along Newton: let BOBYQA search afresh around x
            radius = float(np.clip(np.max(np.abs(check.newton_step)), 1e-3, 0.1))
            budget = max(max_evaluations - count["n"], 10 * x.size)
            x_new, f_new, _, _, _ = minimise(counted, x, lower, budget, rhobeg=radius)
            if f_new >= fx:
                break  # nothing better nearby: x is the minimum to working precision
            x, fx = x_new, f_new
            message += "; polished by a BOBYQA restart"
        if as_predicted and check.passes:
            # no need to measure again (2k + k(k-1)/2 evaluations, seconds on big
            # models): lme4's check passed before the step, which only improved
            break
        check = measure(counted, x, fx, lower)
    if rounds:
        message += f"; {rounds} Newton/restart round(s) after BOBYQA"
    return Optimum(x, fx, converged and check.passes, message, count["n"], check)
