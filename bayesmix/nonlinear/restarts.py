"""Runs of the Lindstrom-Bates alternation, and the restarts that find a better fixed point.

The alternation of LME and PNLS steps (:mod:`bayesmix.nonlinear.lb_steps`) can
settle on different fixed points from the same start: PNLS can have two local
minima in ``(beta, u)``, and the LME step, warm-started at the previous
``theta``, can stop at a boundary optimum. nlme, starting elsewhere, may then
report a higher log-likelihood. Two restarts from the converged point catch
the cases seen on nlme's textbook models (tests/refs/rfidelity/multistart):

* **cold PNLS**: PNLS again at the converged ``theta`` with the random
  effects reset to zero, then the alternation continues;
* **fresh LME**, only when the fit is singular: an LME step from the default
  ``theta`` at the converged linearisation; the alternation continues from it
  only if its log-likelihood is higher by more than :data:`GAIN`;
* **unit theta**, only when the fit is singular: PNLS at lme4's starting
  ``theta`` (identity factors) with the random effects reset, and the
  alternation on from there if its first LME step beats the fit; a variance
  that collapsed to zero pins the fixed effects at the pooled fit, which this
  lets go (Loblolly's ``SSasympOrig`` model).

When a restart gains more than :data:`GAIN` the two are tried again from the
new point (at most :data:`ROUNDS` rounds). A restart that lands on the same
point converges after one LME step, so agreeing restarts cost about a fifth
of a fit (median over 101 nlme textbook fits; ``bench/bench_nl_restarts.py``).
The first run stays the result unless a converged restart beats it by more
than :data:`GAIN`, so fits that were right do not change.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np

from bayesmix.errors import FitError
from bayesmix.nonlinear.lb_steps import Linearisation, lme_step, pnls, restricted_at
from bayesmix.nonlinear.ml_results import AGREEMENT, IterationRecord, StartRecord
from bayesmix.nonlinear.residual_steps import whitener
from bayesmix.spec.covariance import initial_theta

__all__ = ["GAIN", "ROUNDS", "Run", "alternate", "best_run", "probe_restarts"]

#: logLik gain that makes another fixed point the result (runs closer than it agree).
GAIN = AGREEMENT
#: Rounds of restarts at most.
ROUNDS = 3
#: How a restart far from the data fails (a degenerate linearisation); it is dropped.
_RESTART_FAILURES = (FitError, ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclasses.dataclass
class Run:
    """One run of the alternation to convergence (or to the iteration limit)."""

    label: str
    estimates: Any  # MLEstimates of the last LME step
    f: np.ndarray
    caught: list  # warnings of the last LME step
    linear: Any  # the last linearised Design
    beta: np.ndarray
    u: list
    b: list
    history: list
    converged: bool
    evaluations: int
    seconds: float
    reported: Any  # MLEstimates in the fit's method (nlme's REML: restricted at the end)

    @property
    def criterion(self) -> float:
        """The fit's logLik (the REML one for REML fits), for comparing runs."""
        return float(self.reported.loglik)

    def record(self) -> StartRecord:
        return StartRecord(
            self.label,
            self.criterion,
            self.converged,
            len(self.history),
            self.beta.copy(),
            np.asarray(self.estimates.theta, dtype=float).copy(),
            self.seconds,
        )


def alternate(
    lin: Linearisation,
    beta: np.ndarray,
    method: str,
    step_method: str,
    max_iterations: int,
    tolerance: float,
    *,
    label: str = "start",
    theta: np.ndarray | None = None,
    u: list | None = None,
    b: list | None = None,
    pnls_first: bool = False,
    previous: np.ndarray | None = None,
    origin: Any = None,
) -> Run:
    """Alternate LME and PNLS steps from ``(beta, u)`` until ``(beta, theta)`` stop moving.

    ``pnls_first`` starts with a PNLS step at ``theta``; ``previous`` is the
    ``(beta, theta)`` a restart set out from, so that a restart that returns to
    it converges after one LME step. ``origin``, the MLEstimates of the run a
    restart sets out from, gives the residual structure's parameters (and the
    fitted values a variance function is held at) to start from.
    """
    started = time.perf_counter()
    blocks = lin.design.blocks
    u = [np.zeros((blk.n_levels, blk.n_terms)) for blk in blocks] if u is None else list(u)
    b = [ui.copy() for ui in u] if b is None else list(b)
    history, converged, evaluations, pnls_evaluations = [], False, 0, 0
    residual_u = None if origin is None else origin.residual_u
    if pnls_first:
        whiten = None if origin is None else _whitener(lin, origin)
        beta, u, b, _, result = pnls(lin, theta, beta, u, whiten)
        pnls_evaluations = int(result.nfev)
    for iteration in range(1, max_iterations + 1):
        estimates, f, caught, linear = lme_step(
            lin, beta, b, step_method, theta, residual_u, method
        )
        evaluations += estimates.n_evaluations
        state = state_of(beta, estimates)
        change = np.inf
        if previous is not None:
            change = float(np.max(np.abs(state - previous) / np.maximum(np.abs(state), 1.0)))
        theta, residual_u, previous = estimates.theta, estimates.residual_u, state
        history.append(
            IterationRecord(
                iteration, estimates.loglik, beta.copy(), theta.copy(), change, pnls_evaluations
            )
        )
        if change <= tolerance:
            converged = True
            break
        beta, u, b, f, result = pnls(lin, theta, beta, u, _whitener(lin, estimates))
        pnls_evaluations = int(result.nfev)
        history[-1] = dataclasses.replace(history[-1], pnls_evaluations=pnls_evaluations)
        pnls_evaluations = 0
    reported = estimates
    if method != estimates.method:  # nlme's REML: ML steps, restricted at the end
        reported = restricted_at(linear, estimates, lin.residual)
    seconds = time.perf_counter() - started
    return Run(
        label, estimates, f, caught, linear, beta, u, b, history, converged, evaluations,
        seconds, reported,
    )  # fmt: skip


def probe_restarts(lin: Linearisation, first: Run, **settings: Any) -> list[Run]:
    """The cold-PNLS and fresh-LME restarts from ``first`` (see the module docstring).

    ``settings`` are :func:`alternate`'s ``method``, ``step_method``,
    ``max_iterations`` and ``tolerance``. A restart that fails (a degenerate
    linearisation far from the data) is dropped; restarts' warnings are not
    shown, since only the chosen run's are the fit's.
    """
    runs, current = [], first
    for _ in range(ROUNDS):
        state = state_of(current.beta, current.estimates)
        candidates = [
            _attempt(
                lin,
                current.beta,
                label="cold PNLS",
                theta=current.estimates.theta,
                pnls_first=True,
                previous=state,
                origin=current.estimates,
                **settings,
            )
        ]
        if current.estimates.singular and _fresh_lme_gains(lin, current, settings):
            candidates.append(
                _attempt(
                    lin,
                    current.beta,
                    label="fresh LME",
                    u=current.u,
                    b=current.b,
                    previous=state,
                    origin=current.estimates,
                    **settings,
                )
            )
        if current.estimates.singular:
            candidates.append(_unit_theta_restart(lin, current, settings))
        candidates = [run for run in candidates if run is not None]
        runs += candidates
        better = [r for r in candidates if r.converged and r.criterion > current.criterion + GAIN]
        if not better:
            break
        current = max(better, key=lambda r: r.criterion)
    return runs


def state_of(beta: np.ndarray, estimates: Any) -> np.ndarray:
    """``(beta, theta, u)``: what the alternation's convergence test compares."""
    return np.concatenate([beta, estimates.theta, estimates.residual_u])


def _whitener(lin: Linearisation, estimates: Any):
    """PNLS's whitening at the structure parameters of ``estimates`` (``None`` without)."""
    return whitener(lin.residual, estimates.residual_u, estimates.variance_fitted)


def best_run(runs: list[Run]) -> Run:
    """The first run, unless a converged run beats it by more than :data:`GAIN`
    (or it did not converge and another did)."""
    best = runs[0]
    for run in runs[1:]:
        if run.converged and (run.criterion > best.criterion + GAIN or not best.converged):
            best = run
    return best


def _unit_theta_restart(lin: Linearisation, current: Run, settings: dict) -> Run | None:
    """PNLS at lme4's starting ``theta`` (identity factors), then the alternation.

    One PNLS and one LME step first: the run goes on only if that LME step's
    logLik beats the current fit's, so a boundary fit that is right costs
    little more than those two steps.
    """
    blocks = lin.design.blocks
    theta = np.concatenate([initial_theta(blk.covariance, blk.n_terms) for blk in blocks])
    probe = _attempt(
        lin,
        current.beta,
        label="unit theta",
        theta=theta,
        pnls_first=True,
        previous=state_of(current.beta, current.estimates),
        origin=current.estimates,
        **{**settings, "max_iterations": 1},
    )
    if probe is None or not probe.history[0].loglik > current.estimates.loglik + GAIN:
        return None
    rest = _attempt(
        lin,
        probe.beta,
        label="unit theta",
        theta=probe.estimates.theta,
        u=probe.u,
        b=probe.b,
        origin=probe.estimates,
        **settings,
    )
    if rest is None:
        return None
    rest.history = probe.history + [
        dataclasses.replace(h, iteration=h.iteration + 1) for h in rest.history
    ]
    rest.evaluations += probe.evaluations
    rest.seconds += probe.seconds
    return rest


def _fresh_lme_gains(lin: Linearisation, run: Run, settings: dict) -> bool:
    """Whether an LME step from the default ``theta`` beats the warm-started one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step = settings["step_method"]
            estimates = lme_step(lin, run.beta, run.b, step, None, None, settings["method"])[0]
    except _RESTART_FAILURES:
        return False
    return bool(estimates.loglik > run.estimates.loglik + GAIN)


def _attempt(lin: Linearisation, beta: np.ndarray, **kwargs: Any) -> Run | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return alternate(lin, beta, **kwargs)
    except _RESTART_FAILURES:
        return None
