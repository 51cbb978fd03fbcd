"""ML/REML fits of nonlinear mixed models by nlme's Lindstrom-Bates algorithm.

The fit alternates the LME and PNLS steps of :mod:`bayesmix.nonlinear.lb_steps`
until neither moves the estimates. The alternation can have several fixed
points (PNLS can have two local minima; the LME step can stop on a boundary),
so after the usual run converges it is continued from two restarts that cost
little when they agree (:mod:`bayesmix.nonlinear.restarts`), and the run with
the highest log-likelihood is kept; ``result.starts`` records every run.

As in nlme, logLik, AIC and BIC are those of the linearised model at
convergence; fixed effects and random-effect modes come from the last PNLS
step. ``vcov`` is that of the linearised model (nlme's ``vcov``); ``fixef``
scales an ML fit's SEs by ``sqrt(n / (n - p))`` as nlme's summary does.
Without random effects the PNLS step is nonlinear least squares and the fit is
R's ``nls`` (df = p + 1). A residual variance function and/or correlation
structure (nlme's ``weights=`` and ``correlation=``) changes both steps as in
nlme's ``nlme()`` (``gnls()`` without random effects); see
:mod:`bayesmix.nonlinear.residual_steps`.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError, ConvergenceWarning, DataWarning, warn
from bayesmix.ml.fit import _check_method
from bayesmix.nonlinear.build import NonlinearDesign, initial_beta
from bayesmix.nonlinear.lb_steps import Linearisation, check_start
from bayesmix.nonlinear.ml_results import NLMResult
from bayesmix.nonlinear.residual_steps import check_structure_start
from bayesmix.nonlinear.restarts import alternate, best_run, probe_restarts
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = ["NLMResult", "fit_nonlinear"]


def fit_nonlinear(
    design: NonlinearDesign,
    method: str = "ML",
    *,
    start: Any = None,
    max_iterations: int = 50,
    tolerance: float = 1e-6,
    reml: str = "nlme",
    model: Any = None,
    restarts: bool = True,
    residual: ResidualStructure | None = None,
) -> NLMResult:
    """Fit a nonlinear mixed model by ML or REML (nlme's Lindstrom-Bates algorithm).

    Parameters
    ----------
    design : NonlinearDesign
    method : {"ML", "REML"}
    start : mapping or array, optional
        Starting fixed effects (see :func:`initial_beta`); self-starting models
        find them from the pooled data when omitted.
    max_iterations : int
        Limit on LME/PNLS iterations.
    tolerance : float
        Convergence when the relative changes of ``beta`` and ``theta`` in one
        iteration are below it (absolute changes for values below 1).
    model : object, optional
        The unfitted model, kept for ``update``.
    restarts : bool
        After the alternation converges, continue it from the cold-PNLS and
        fresh-LME restarts of :mod:`bayesmix.nonlinear.restarts` and keep the
        best fixed point (``result.starts`` lists every run). ``False`` runs
        the alternation once, as nlme does.
    residual : ResidualStructure, optional
        A residual variance function and/or correlation structure bound to the
        design's rows (nlme's ``weights=`` and ``correlation=``); see
        :mod:`bayesmix.nonlinear.residual_steps`.

    Returns
    -------
    NLMResult

    Raises
    ------
    ArgumentError
        ``max_iterations`` not a positive integer, ``tolerance`` not a finite
        number >= 0, or an unknown ``method``/``reml``.
    FormulaError
        The mean function returns a number of values other than one per row.
    FitError
        A mean that is not finite at the start, or a variance function whose
        SD multiplier is 0 or infinite there (``varPower()`` at a fitted value of 0).

    Warns
    -----
    ConvergenceWarning
        The alternating algorithm stopped before converging (with its history).
    SingularFitWarning
        A random-effect variance is estimated as zero.
    """
    is_reml = _check_method(method)
    method = "REML" if is_reml else "ML"
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, Integral):
        raise ArgumentError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    if max_iterations < 1:
        raise ArgumentError(
            f"max_iterations must be at least 1 (one LME step estimates the covariance "
            f"parameters), got {max_iterations}"
        )
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, Real)
        or not math.isfinite(tolerance)
        or tolerance < 0
    ):
        raise ArgumentError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if reml not in ("nlme", "linearised"):
        raise ArgumentError(f"reml must be 'nlme' or 'linearised', not {reml!r}.")
    if not isinstance(restarts, bool | np.bool_):
        raise ArgumentError(f"restarts must be True or False, got {restarts!r}.")
    step_method = "ML" if reml == "nlme" else method
    beta = initial_beta(design, start)
    check_start(design, beta)
    if residual is not None:
        check_structure_start(design, beta, residual)
    lin = Linearisation(design, residual)
    settings = {
        "method": method,
        "step_method": step_method,
        "max_iterations": max_iterations,
        "tolerance": tolerance,
    }
    runs = [alternate(lin, beta, **settings)]
    if restarts and design.blocks:
        runs += probe_restarts(lin, runs[0], **settings)
    best = best_run(runs)
    estimates, f, caught = best.reported, best.f, best.caught
    beta, b, history, converged = best.beta, best.b, best.history, best.converged
    evaluations = sum(run.evaluations for run in runs)
    if not converged:
        lines = "\n".join(
            f"  iteration {h.iteration}: logLik {h.loglik:.6f}, max relative "
            f"change {h.change:.3g}".replace("change inf", "change -")
            for h in history[-5:]
        )
        warn(
            f"the {method} fit (alternating PNLS/LME steps) did not converge in "
            f"{max_iterations} iterations (tolerance {tolerance:g}); the estimates may be "
            f"unreliable. Last iterations:\n{lines}\nTry other starting values (start=) or "
            "simpler random effects.",
            ConvergenceWarning,
        )
    for record in caught:  # warnings of the final LME step (e.g. singular fit)
        if not issubclass(record.category, DataWarning):
            warn(record.message, record.category)
    final = dataclasses.replace(
        estimates,
        beta=beta,
        b=tuple(b),
        fitted=design.offset_or_zero + f,
        converged=converged and estimates.converged,
        message=(
            f"converged in {len(history)} iterations"
            if converged
            else f"no convergence in {max_iterations} iterations"
        )
        + f"; LME step: {estimates.message}",
        n_evaluations=evaluations,
    )
    return NLMResult(
        design=design.linear_design(),
        estimates=final,
        model=model,
        nonlinear_design=design,
        history=tuple(history),
        derivatives="complex step" if lin.complex_step else "central differences",
        starts=tuple(run.record() for run in runs),
        chosen_start=runs.index(best),
        residual=residual,
    )
