"""Maximum-likelihood (ML) and REML fits of linear mixed models.

The profiled criterion of :mod:`bayesmix.ml_deviance` is minimised over the
covariance parameters ``theta`` with BOBYQA (NLopt's ``LN_BOBYQA``, the
optimiser lme4 uses by default), bounded below by 0 on the diagonals of the
relative covariance factors and started, as lme4 does, at 1 on the diagonals
and 0 elsewhere. Everything else (fixed effects, conditional modes, sigma) is
profiled out and recovered at the optimum.

Notation
--------
theta : stacked covariance parameters, see :mod:`bayesmix.covariance`.
beta : fixed effects; b : conditional modes (BLUPs) of the random effects.
sigma : residual standard deviation (REML or ML estimate, as lme4).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from bayesmix.covariance import block_covariance, factors_from_theta, theta_is_diagonal, theta_names
from bayesmix.design import Design
from bayesmix.errors import ConvergenceWarning, FitError, SingularFitWarning, warn
from bayesmix.ml_deviance import ProfiledDeviance

# lme4's isSingular() tolerance on diagonal theta entries.
SINGULAR_TOLERANCE = 1e-4
_FTOL_ABS = 1e-10
_XTOL_ABS = 1e-10
# With n large the criterion's rounding noise exceeds _FTOL_ABS; stop on a
# relative change near machine precision instead of wandering in the noise.
_FTOL_REL = 1e-12
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
        Log-likelihood (restricted log-likelihood for REML).
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
        A diagonal ``theta`` entry is below :data:`SINGULAR_TOLERANCE`.
    fitted : ndarray, shape (n,)
        Conditional fitted values ``X beta + Z b``.
    theta_names : tuple of str
        lme4-style names of ``theta`` (``"Subject.Days.Intercept"``).
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


def _check_method(method: str) -> bool:
    """Return ``True`` for REML; reject anything but "REML"/"ML"."""
    upper = str(method).upper()
    if upper not in ("REML", "ML"):
        raise ValueError(f"method must be 'REML' or 'ML', got {method!r}")
    return upper == "REML"


def deviance_function(design: Design) -> ProfiledDeviance:
    """The profiled-criterion kernel of a :class:`~bayesmix.design.Design`."""
    blocks = [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    return ProfiledDeviance(design.y, design.X, blocks)


def criterion_at(design: Design, theta: np.ndarray, method: str = "REML") -> float:
    """Profiled deviance (``"ML"``) or REML criterion of ``design`` at ``theta``."""
    return deviance_function(design)(np.asarray(theta, dtype=float), reml=_check_method(method))


def _blas_threads(kernel: ProfiledDeviance):
    """Context limiting BLAS to one thread when the dense part is small."""
    if not 0 < kernel.dense_order <= _SINGLE_THREAD_MAX_ORDER:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with pymc
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _minimise(fun, start: np.ndarray, lower: np.ndarray, max_evaluations: int):
    """Bounded derivative-free minimisation; returns (x, converged, message, n_evals)."""
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
        return state["best_x"], bool(res.success), f"scipy Powell: {res.message}", state["n"]

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
    opt.set_ftol_abs(_FTOL_ABS)
    opt.set_xtol_abs(_XTOL_ABS)
    opt.set_ftol_rel(_FTOL_REL)
    opt.set_maxeval(int(max_evaluations))
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
    except (ValueError, RuntimeError) as err:
        if isinstance(err, FitError):
            raise
        converged, message = False, f"NLopt failure: {err}"
    return state["best_x"], converged, message, state["n"]


def _check_identifiable(design: Design) -> None:
    """Refuse random effects that cannot be told apart from the residual (as lme4)."""
    n = design.n_obs
    crowded = [b.grouping for b in design.blocks if b.n_levels >= n]
    if crowded:
        raise FitError(
            f"grouping factor(s) {', '.join(crowded)} have as many levels as there are "
            f"observations ({n}), so their variance cannot be separated from the residual "
            "variance; remove that random effect"
        )
    q = sum(b.n_levels * b.n_terms for b in design.blocks)
    if q >= n:
        raise FitError(
            f"the model has {q} random effects for {n} observations; the variance "
            "components are not identifiable: simplify the random-effects terms"
        )


def fit_estimates(
    design: Design,
    method: str = "REML",
    *,
    start: np.ndarray | None = None,
    max_evaluations: int = 100_000,
) -> MLEstimates:
    """Fit a linear mixed model by REML (default) or ML, as ``lme4::lmer``.

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

    Warns
    -----
    SingularFitWarning
        A variance is estimated as zero (or a correlation as +-1).
    ConvergenceWarning
        The optimiser stopped before meeting its tolerances.
    """
    reml = _check_method(method)
    kernel = deviance_function(design)
    n, p = design.n_obs, design.n_fixed
    if n - (p if reml else 0) <= 0:
        raise FitError(f"{n} observations are too few for {p} fixed effects")
    _check_identifiable(design)
    kinds, sizes = kernel.kinds, kernel.sizes
    names = tuple(
        name for b in design.blocks for name in theta_names(b.grouping, b.terms, b.covariance)
    )
    if kernel.n_theta:
        x0 = kernel.initial_theta if start is None else np.asarray(start, dtype=float)
        if x0.shape != (kernel.n_theta,):
            raise ValueError(
                f"start needs {kernel.n_theta} theta values {names}, got shape {x0.shape}"
            )
        x0 = np.maximum(x0, kernel.lower_bounds)
        with _blas_threads(kernel):
            theta, converged, message, n_evals = _minimise(
                lambda th: kernel(th, reml=reml), x0, kernel.lower_bounds, max_evaluations
            )
    else:
        theta, converged, message, n_evals = np.empty(0), True, "no random effects: closed form", 0
    with _blas_threads(kernel):
        sol = kernel.solve(theta, reml=reml)
        cond_var = kernel.conditional_variances(theta, sol.sigma)
    is_diag = np.concatenate(
        [theta_is_diagonal(kd, k) for kd, k in zip(kinds, sizes)] or [np.empty(0, bool)]
    )
    singular_at = np.flatnonzero(is_diag & (np.abs(theta) < SINGULAR_TOLERANCE))
    if not converged:
        warn(
            f"the {method} optimiser did not converge ({message}) after {n_evals} evaluations; "
            "estimates may be inaccurate: rescale covariates, simplify the random effects, "
            "or refit with start=<theta> from this fit",
            ConvergenceWarning,
        )
    if singular_at.size:
        which = ", ".join(names[i] for i in singular_at)
        warn(
            f"boundary (singular) fit: theta {which} is ~0, so a random-effect variance is "
            "estimated as zero (or a correlation as +-1); the fit is usable, but consider "
            "simplifying the random-effects structure",
            SingularFitWarning,
        )
    RXinv = np.linalg.inv(sol.RX) if p else np.zeros((0, 0))
    factors = factors_from_theta(theta, kinds, sizes)
    return MLEstimates(
        method="REML" if reml else "ML",
        theta=theta,
        beta=sol.beta,
        sigma=sol.sigma,
        vcov_beta=sol.sigma**2 * RXinv @ RXinv.T,
        b=sol.b,
        b_cond_var=cond_var,
        covariances=tuple(block_covariance(T, sol.sigma) for T in factors),
        loglik=-0.5 * sol.criterion,
        criterion=sol.criterion,
        n_params=p + len(theta) + 1,
        n_obs=n,
        converged=converged,
        message=message,
        n_evaluations=n_evals,
        singular=bool(singular_at.size),
        fitted=kernel.fitted(sol.beta, sol.b),
        theta_names=names,
    )
