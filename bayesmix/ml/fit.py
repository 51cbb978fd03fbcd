"""Maximum-likelihood (ML) and REML fits of linear mixed models.

The profiled criterion of :mod:`bayesmix.ml.deviance` is minimised over the
covariance parameters ``theta`` with BOBYQA (NLopt's ``LN_BOBYQA``, the
optimiser lme4 uses by default), bounded below by 0 on the diagonals of the
relative covariance factors and started, as lme4 does, at 1 on the diagonals
and 0 elsewhere. Everything else (fixed effects, conditional modes, sigma) is
profiled out and recovered at the optimum.

The kernel sees the equivalent well-conditioned problem of
:mod:`bayesmix.ml.working` (weights and offset absorbed, orthonormal fixed
effects, a response of unit scale); :mod:`bayesmix.ml.optimise` proves the
optimum with lme4's gradient/Hessian check, and :mod:`bayesmix.ml.checks`
refuses what cannot be fitted and explains singular fits.

Notation
--------
theta : stacked covariance parameters, see :mod:`bayesmix.spec.covariance`.
beta : fixed effects; b : conditional modes (BLUPs) of the random effects.
sigma : residual standard deviation (REML or ML estimate, as lme4).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError, ConvergenceWarning, FitError, SingularFitWarning, warn
from bayesmix.ml.blas_threads import one_blas_thread
from bayesmix.ml.checks import (
    SINGULAR_TOLERANCE,
    check_degenerate,
    check_identifiable,
    check_unbounded,
    convergence_message,
    singular_message,
    warn_badly_scaled,
)
from bayesmix.ml.criterion_choice import choose_criterion, estimates_kernel
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.ml.optimise import optimise
from bayesmix.ml.working import WorkingProblem, working_problem
from bayesmix.spec.covariance import (
    block_covariance,
    canonical_theta,
    factors_from_theta,
    theta_is_diagonal,
    theta_names,
)
from bayesmix.spec.design import Design

__all__ = ["SINGULAR_TOLERANCE", "MLEstimates", "criterion_at", "fit_estimates"]

# Dense parts up to this order are factored with single-threaded BLAS: threads
# gain little at that size and, on a busy machine, oversubscribed OpenBLAS
# threads made InstEval's fit 5x slower (21.6 s vs 4.5 s on 2 shared cores).
_SINGLE_THREAD_MAX_ORDER = 4000


@dataclass(frozen=True)
class MLEstimates:
    """Numbers of an ML or REML fit, in design (formula) block order.

    Attributes
    ----------
    method : {"REML", "ML"}
    theta : ndarray
        Optimal covariance parameters (lme4's ``getME(fit, "theta")``).
    beta : ndarray, shape (p,)
    sigma : float
        Residual SD (REML estimate for REML fits, as lme4's ``sigma()``).
    vcov_beta : ndarray, shape (p, p)
        lme4's ``vcov``: ``sigma^2 (RX'RX)^-1``.
    b : tuple of ndarray
        Conditional modes per block, each ``(n_levels, k)``.
    b_cond_var : tuple of ndarray
        Conditional covariances per block, ``(n_levels, k, k)`` (lme4 condVar).
    covariances : tuple of ndarray
        Random-effects covariance per block, ``(k, k)`` = ``sigma^2 Lambda Lambda'``.
    loglik : float
        Log-likelihood (restricted log-likelihood for REML); with prior weights
        it includes lme4's ``0.5 * sum(log w)`` (both methods).
    criterion : float
        ``-2 * loglik``: the deviance (ML) or REML criterion.
    n_params : int
        ``p + len(theta) + 1`` (R's ``logLik`` df).
    n_obs : int
    converged : bool
    message : str
        Optimiser message.
    n_evaluations : int
    singular : bool
        A diagonal ``theta`` entry is below :data:`SINGULAR_TOLERANCE` (lme4's
        ``isSingular``; for a random-effect column rescaled by
        :mod:`bayesmix.ml.working`, on the rescaled column's ``theta``).
    fitted : ndarray, shape (n,)
        Conditional fitted values ``offset + X beta + Z b`` (response scale).
    theta_names : tuple of str
        lme4-style names of ``theta`` (``"Subject.Days.Intercept"``).
    residual_u : ndarray
        Unconstrained parameters of the residual variance function and
        correlation structure (:mod:`bayesmix.ml.residual_fit`); empty without.
    variance_fitted : ndarray, optional
        The fitted values a variance function of the fitted values was
        evaluated at (nlme's fixed point); ``None`` otherwise.
    """

    method: str
    theta: np.ndarray
    beta: np.ndarray
    sigma: float
    vcov_beta: np.ndarray
    b: tuple[np.ndarray, ...]
    b_cond_var: tuple[np.ndarray, ...]
    covariances: tuple[np.ndarray, ...]
    loglik: float
    criterion: float
    n_params: int
    n_obs: int
    converged: bool
    message: str
    n_evaluations: int
    singular: bool
    fitted: np.ndarray
    theta_names: tuple[str, ...] = ()
    residual_u: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variance_fitted: np.ndarray | None = None


def _check_method(method: str) -> bool:
    """Return ``True`` for REML; reject anything but "REML"/"ML"."""
    upper = str(method).upper()
    if upper not in ("REML", "ML"):
        raise ArgumentError(f"method must be 'REML' or 'ML', got {method!r}")
    return upper == "REML"


def deviance_function(design: Design) -> ProfiledDeviance:
    """The profiled-criterion kernel of the design's arrays as they are.

    No weights, offset or rescaling are applied: this is the raw kernel of an
    unweighted design. :func:`criterion_at` gives the criterion of any design.
    """
    blocks = [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    return ProfiledDeviance(design.y, design.X, blocks)


def criterion_at(design: Design, theta: np.ndarray, method: str = "REML") -> float:
    """Profiled deviance (``"ML"``) or REML criterion of ``design`` at ``theta``.

    Prior weights and an offset are included as lme4 includes them; the value
    is computed on the accurate working problem of :mod:`bayesmix.ml.working`.
    """
    reml = _check_method(method)
    work = working_problem(design)
    value = deviance_function(work.design)(work.theta_w(theta), reml=reml)
    return value + work.criterion_shift(reml)


def _blas_threads(kernel: ProfiledDeviance):
    """Context limiting BLAS to one thread when the dense part is small."""
    if not 0 < kernel.dense_order <= _SINGLE_THREAD_MAX_ORDER:
        return contextlib.nullcontext()
    return one_blas_thread()


def _check_start(
    kernel: ProfiledDeviance, work: WorkingProblem, start: Any, names: tuple[str, ...]
) -> np.ndarray:
    """Working start: lme4's (1 on diagonals, 0 elsewhere) or the user's ``theta``.

    lme4's start is taken in the working parametrisation, where it is 1 on the
    diagonal for rescaled random-effect columns too (their natural scale).
    """
    if start is None:
        return kernel.initial_theta
    try:
        x0 = np.asarray(start, dtype=float)
    except (TypeError, ValueError):
        x0 = np.empty(0)
    if x0.shape != (kernel.n_theta,) or not np.all(np.isfinite(x0)):
        raise ArgumentError(
            f"start needs {kernel.n_theta} finite theta values {names}, got {start!r}"
        )
    return np.maximum(work.theta_w(x0), kernel.lower_bounds)


def _estimates(
    design: Design,
    work: WorkingProblem,
    kernel: ProfiledDeviance,
    theta_w: np.ndarray,
    reml: bool,
    names: tuple[str, ...],
) -> dict:
    """Everything at working ``theta_w`` on the original scale (:mod:`bayesmix.ml.working`)."""
    with _blas_threads(kernel):
        sol = kernel.solve(theta_w, reml=reml)
        if design.blocks:
            check_degenerate(design, sol.sigma)
        sigma = work.scale * sol.sigma
        cond_var = work.cond_var(kernel.conditional_variances(theta_w, sigma))
        # inside the single-thread context too: waking idle BLAS threads for a
        # p x p solve cost more than the whole fit of a small model
        F = work.vcov_factor(sol.RX, sigma)
        fitted = work.fitted(kernel.fitted(sol.beta, sol.b), design)
    criterion = sol.criterion + work.criterion_shift(reml)
    theta = work.theta(theta_w)
    factors = factors_from_theta(theta, kernel.kinds, kernel.sizes)
    return dict(
        method="REML" if reml else "ML",
        theta=theta,
        beta=work.beta(sol.beta),
        sigma=sigma,
        vcov_beta=F @ F.T,
        b=work.b(sol.b),
        b_cond_var=cond_var,
        covariances=tuple(block_covariance(T, sigma) for T in factors),
        loglik=-0.5 * criterion,
        criterion=criterion,
        n_params=design.n_fixed + len(theta) + 1,
        n_obs=design.n_obs,
        fitted=fitted,
        theta_names=names,
    )


def estimates_at(design: Design, theta: np.ndarray, method: str = "REML") -> MLEstimates:
    """The estimates of ``design`` at a given ``theta``, without optimising.

    ``converged`` is ``True`` and ``n_evaluations`` 0: the caller chose ``theta``.
    """
    reml = _check_method(method)
    work = working_problem(design)
    kernel = estimates_kernel(work.design)
    names = _theta_names(design)
    theta_w = _check_start(kernel, work, theta, names)
    singular = bool(np.any(_diagonal_mask(kernel) & (np.abs(theta_w) < SINGULAR_TOLERANCE)))
    values = _estimates(design, work, kernel, theta_w, reml, names)
    return MLEstimates(
        **values,
        converged=True,
        message="evaluated at a given theta",
        n_evaluations=0,
        singular=singular,
    )


def _theta_names(design: Design) -> tuple[str, ...]:
    return tuple(
        name for b in design.blocks for name in theta_names(b.grouping, b.terms, b.covariance)
    )


def _diagonal_mask(kernel: ProfiledDeviance) -> np.ndarray:
    parts = [theta_is_diagonal(kd, k) for kd, k in zip(kernel.kinds, kernel.sizes)]
    return np.concatenate(parts) if parts else np.empty(0, bool)


def fit_estimates(
    design: Design,
    method: str = "REML",
    *,
    start: np.ndarray | None = None,
    max_evaluations: int = 100_000,
) -> MLEstimates:
    """Fit a linear mixed model by REML (default) or ML, as ``lme4::lmer``.

    Prior weights and an offset of the design are honoured as in lme4. The
    kernel fits the equivalent well-conditioned problem of
    :mod:`bayesmix.ml.working` (orthonormal fixed effects, response of unit
    scale), so large predictor offsets and extreme response scales are fitted
    as accurately as tidy ones; estimates and the criterion are mapped back
    exactly. After BOBYQA the optimum is measured and, if needed, polished
    (:func:`bayesmix.ml.optimise.optimise`).

    Parameters
    ----------
    design : Design
        Numeric arrays of the model.
    method : {"REML", "ML"}
    start : ndarray, optional
        Starting ``theta``; default lme4's (1 on diagonals, 0 elsewhere).
    max_evaluations : int
        Limit on criterion evaluations.

    Returns
    -------
    MLEstimates

    Raises
    ------
    FitError
        Too few observations, unidentifiable random effects, a constant
        response, a response the fixed or random effects reproduce exactly,
        a rank-deficient ``X`` or a response scale beyond double precision.
    ArgumentError
        A bad ``method``, ``start`` or ``max_evaluations``.

    Warns
    -----
    SingularFitWarning
        A variance is estimated as zero or a correlation as +-1 (the message
        says which).
    ConvergenceWarning
        The optimiser stopped before meeting its tolerances, or lme4's
        gradient/Hessian check fails at the optimum (``converged`` is False).
    DataWarning
        Predictors on very different scales (lme4's ``check.scaleX``).
    """
    reml = _check_method(method)
    if not isinstance(max_evaluations, Integral) or max_evaluations < 1:
        raise ArgumentError(f"max_evaluations must be a positive integer, got {max_evaluations!r}")
    n, p = design.n_obs, design.n_fixed
    if n - (p if reml else 0) <= 0:
        raise FitError(f"{n} observations are too few for {p} fixed effects")
    check_identifiable(design)
    warn_badly_scaled(design)
    work = working_problem(design)
    kernel = estimates_kernel(work.design)
    names = _theta_names(design)
    check = None
    if kernel.n_theta:
        x0 = _check_start(kernel, work, start, names)
        criterion, gradient = choose_criterion(work.design, kernel, reml)
        with _blas_threads(kernel):
            opt = optimise(
                criterion,
                x0,
                kernel.lower_bounds,
                max_evaluations,
                gradient=gradient,
                canonical=lambda th: canonical_theta(th, kernel.kinds, kernel.sizes),
            )
        theta_w, converged, message = opt.x, opt.converged, opt.message
        n_evals, check = opt.n_evaluations, opt.check
        check_unbounded(design, criterion, theta_w, opt.fx, _diagonal_mask(kernel))
    else:
        theta_w, converged, message, n_evals = (
            np.empty(0),
            True,
            "no random effects: closed form",
            0,
        )
    values = _estimates(design, work, kernel, theta_w, reml, names)
    # singular on the working scale: lme4's theta unless a column was rescaled
    singular_at = np.flatnonzero(_diagonal_mask(kernel) & (np.abs(theta_w) < SINGULAR_TOLERANCE))
    if not converged:
        reason = (
            convergence_message(check, names, values["method"])
            if check is not None
            else f"the {values['method']} optimiser did not converge ({message})"
        )
        warn(
            f"{reason} after {n_evals} evaluations; estimates may be inaccurate: rescale "
            "covariates, simplify the random effects, or refit with start=<theta> from this fit",
            ConvergenceWarning,
        )
    if singular_at.size:
        message_text = singular_message(theta_w, design, kernel.kinds)
        warn(message_text or "boundary (singular) fit", SingularFitWarning)
    return MLEstimates(
        **values,
        converged=converged,
        message=message,
        n_evaluations=n_evals,
        singular=bool(singular_at.size),
    )
