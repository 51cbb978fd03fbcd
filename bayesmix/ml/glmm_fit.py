"""The two-stage ML fit of a GLMM (lme4's ``glmer``; glmmTMB's likelihood where lme4 has none).

Stage one (``nAGQ = 0``) optimises ``theta`` with the fixed effects updated
inside PIRLS, from a GLM fit without random effects; stage two optimises the
Laplace objective of :class:`~bayesmix.ml.glmm_laplace.LaplaceProblem` (or,
for ``nagq > 1``, the adaptive quadrature of :mod:`bayesmix.ml.glmm_agq`) over
``(theta, beta, extras)``, where the extras are the zero-inflation
coefficients and the log of the dispersion (NB2 ``theta``, Gamma ``shape``).
Both stages use BOBYQA, as lme4's default ``glmerControl`` does for the first
(lme4 then uses Nelder-Mead; BOBYQA with bayesmix's optimum check ends at
least as low). Between the stages the extras are estimated for the stage-one
means (MASS's ``theta.ml`` for the NB2 ``theta``).

Standard errors: ``vcov = 2 H^-1`` of the objective, its fixed-effect blocks.
With lme4's convention (``information="fisher"``) ``H`` is taken in
``(theta, beta)`` at the estimated dispersion, as ``glmer.nb``; with glmmTMB's
(``"observed"``, and always with zero inflation) in every parameter, as
glmmTMB's ``sdreport``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayesmix.errors import ArgumentError, ConvergenceWarning, FitError, SingularFitWarning, warn
from bayesmix.ml.blas_threads import one_blas_thread
from bayesmix.ml.checks import singular_message
from bayesmix.ml.fit import _SINGLE_THREAD_MAX_ORDER, SINGULAR_TOLERANCE, MLEstimates
from bayesmix.ml.glmm_agq import MAX_NODES, agq_objective, check_agq
from bayesmix.ml.glmm_laplace import LaplaceProblem, warn_pirls
from bayesmix.ml.optimise import minimise, optimise
from bayesmix.spec.covariance import theta_is_diagonal, theta_names
from bayesmix.spec.design import Design
from bayesmix.spec.families import Family

__all__ = ["GLMMFit", "fit_glmm"]

#: BOBYQA's stop (change of -2 logLik) in stage one when stage two follows (no optimum
#: check there: stage two refines it)
_START_FTOL = 1e-8
#: fresh BOBYQA runs of stage two when its optimum check fails
_RESTARTS = 2
#: theta of a negative binomial that is a Poisson distribution to working precision
_POISSON_LIKE = 1e8


@dataclass(frozen=True)
class GLMMFit:
    """What :func:`fit_glmm` returns beside the shared :class:`MLEstimates`.

    Attributes
    ----------
    estimates : MLEstimates
    dispersion : float or None
        NB2 ``theta`` or Gamma ``shape``.
    dispersion_se : float or None
        SE of ``log(dispersion)`` (from the Hessian; ``None`` under lme4's convention).
    zi_beta, zi_vcov : ndarray or None
        Zero-inflation coefficients (logit scale) and their covariance.
    information : str
        ``"fisher"`` (lme4's Laplace) or ``"observed"`` (glmmTMB's).
    """

    estimates: MLEstimates
    dispersion: float | None
    dispersion_se: float | None
    zi_beta: np.ndarray | None
    zi_vcov: np.ndarray | None
    information: str


def default_information(family: Family, zi_X: np.ndarray | None) -> str:
    """lme4's convention where lme4 fits the model, glmmTMB's (observed) otherwise."""
    if zi_X is not None or family.name == "gamma":
        return "observed"
    return "fisher"


def fit_glmm(
    design: Design,
    family: Family,
    nagq: int = 1,
    *,
    zi_X: np.ndarray | None = None,
    information: str | None = None,
) -> GLMMFit:
    """ML estimates of a GLMM: ``nagq = 1`` Laplace, ``0`` lme4's fast fit, ``> 1`` AGQ.

    BLAS runs on one thread while the dense part (the Schur complement of
    :mod:`bayesmix.ml.glmm_blocked`) is small: on these sizes a second thread
    only waits, and on a busy machine its waits cost more than the work.

    Raises
    ------
    ArgumentError
        ``nagq`` not an integer in 0..25, ``nagq > 1`` for a model other than one
        scalar random effect, or an unknown ``information``.
    """
    sizes = sorted(b.n_levels * b.n_terms for b in design.blocks)
    dense = sum(sizes[:-1]) + design.X.shape[1]
    if dense > _SINGLE_THREAD_MAX_ORDER:
        return _fit(design, family, nagq, zi_X, information)
    with one_blas_thread():
        return _fit(design, family, nagq, zi_X, information)


def _fit(
    design: Design,
    family: Family,
    nagq: int,
    zi_X: np.ndarray | None,
    information: str | None,
) -> GLMMFit:
    if (
        isinstance(nagq, bool)
        or not isinstance(nagq, int | np.integer)
        or not 0 <= nagq <= MAX_NODES
    ):
        raise ArgumentError(f"nagq must be an integer from 0 to {MAX_NODES}; got {nagq!r}.")
    if nagq > 1:
        check_agq(design, zi_X)
    if nagq == 0 and zi_X is not None:
        raise ArgumentError(
            "nagq=0 (lme4's fast fit) does not estimate zero-inflation coefficients with "
            "standard errors; use nagq=1."
        )
    information = information or default_information(family, zi_X)
    has_dispersion = family.name in ("negbinomial", "gamma")
    problem = LaplaceProblem(design, family, zi_X=zi_X, information=information)
    problem.dispersion = _POISSON_LIKE if family.name == "negbinomial" else 1.0
    m, p = problem.n_theta, problem.X.shape[1]
    if zi_X is not None:  # the GLM start without zero inflation, then the excess zeros
        problem.response.zi_eta = None
    glm = problem.pirls(np.zeros(m), problem.beta, update_beta=True)
    problem.beta = glm.beta
    extras = _extras_given_mean(problem, glm.mu, has_dispersion, start=True)
    _set_extras(problem, extras, has_dispersion)
    budget = 1000 * (m + 1)
    if nagq == 0:  # the fit itself: optimised and checked
        first = optimise(problem.stage_one, problem.initial_theta(), problem.lower, budget)
        theta, evaluations = first.x, first.n_evaluations
        converged, message = first.converged, first.message
    else:  # a start for the Laplace (or quadrature) stage, which refines it
        theta, _, converged, message, evaluations = minimise(
            problem.stage_one, problem.initial_theta(), problem.lower, budget, ftol_abs=_START_FTOL
        )
    try:
        start = problem.pirls(theta, problem.beta, update_beta=True)
        beta, start_mu = start.beta, start.mu
    except FitError:  # PIRLS from this warm start cannot step (a mean driven to 0)
        beta, start_mu = problem.beta, glm.mu
    extras = _extras_given_mean(problem, start_mu, has_dispersion, start=False, x0=extras)
    _set_extras(problem, extras, has_dispersion)

    def objective(x: np.ndarray) -> float:
        _set_extras(problem, x[m + p :], has_dispersion)
        if nagq > 1:
            return agq_objective(problem, x[:m], x[m : m + p], nagq)
        return problem.objective(x[:m], x[m : m + p])

    if nagq >= 1:
        lower = np.concatenate([problem.lower, np.full(p + len(extras), -np.inf)])
        budget += 200 * (p + len(extras)) ** 2
        second = optimise(
            objective,
            np.concatenate([theta, beta, extras]),
            lower,
            budget,
            # NLopt's first steps are |x|, which pins a coordinate left near 0 (a
            # zero-inflation slope or a theta at 1e-16): those get 0.1
            unpin=True,
        )
        evaluations += second.n_evaluations
        for _ in range(_RESTARTS):  # a flat or boundary optimum: BOBYQA afresh from there
            if second.converged:
                break
            again = optimise(objective, second.x, lower, budget)
            evaluations += again.n_evaluations
            if again.fx <= second.fx:
                second = dataclasses.replace(again, message=again.message + "; restarted")
        theta, beta, extras = second.x[:m], second.x[m : m + p], second.x[m + p :]
        converged, message = second.converged, second.message
    _set_extras(problem, extras, has_dispersion)
    final = problem.pirls(theta, beta)
    warn_pirls(final)
    if not converged:
        warn(
            f"the GLMM fit did not converge ({message}); estimates may be inaccurate: rescale "
            "covariates or simplify the random effects.",
            ConvergenceWarning,
        )
    singular = singular_message(theta, design, problem.kinds)
    if singular is not None:  # as lme4's isSingular, with the reason
        warn(singular, SingularFitWarning)
    criterion = objective(np.concatenate([theta, beta, extras])) if nagq > 1 else final.objective
    vcov, extras_vcov = _vcov(problem, objective, theta, beta, extras, final, nagq, has_dispersion)
    estimates = _estimates(
        problem, theta, beta, final, criterion, vcov, singular is not None,
        n_extras=len(extras), converged=converged, message=message, evaluations=evaluations,
    )  # fmt: skip
    k = 0 if zi_X is None else zi_X.shape[1]
    return GLMMFit(
        estimates=estimates,
        dispersion=problem.dispersion if has_dispersion else None,
        dispersion_se=(
            float(np.sqrt(extras_vcov[-1, -1]))
            if has_dispersion and extras_vcov is not None
            else None
        ),
        zi_beta=None if zi_X is None else extras[:k].copy(),
        zi_vcov=None if zi_X is None else extras_vcov[:k, :k],
        information=information,
    )


def _set_extras(problem: LaplaceProblem, extras: np.ndarray, has_dispersion: bool) -> None:
    """Zero-inflation coefficients first, then ``log(dispersion)``."""
    if problem.zi_X is not None:
        problem.set_zi_beta(extras[: problem.zi_X.shape[1]])
    if has_dispersion:
        problem.dispersion = float(np.exp(extras[-1]))


def _extras_given_mean(
    problem: LaplaceProblem,
    mu: np.ndarray,
    has_dispersion: bool,
    start: bool,
    x0: np.ndarray | None = None,
) -> np.ndarray:
    """ML estimates of the extras for fixed count means ``mu`` (MASS's ``theta.ml`` for
    the NB2 ``theta``; with zero inflation the coefficients too)."""
    k = 0 if problem.zi_X is None else problem.zi_X.shape[1]
    if k == 0 and not has_dispersion:
        return np.zeros(0)
    eta = problem.family.link.link(mu)
    if x0 is None:
        x0 = np.zeros(k + int(has_dispersion))
        if k and start:  # structural zeros: the zeros the count model does not explain
            observed = np.mean(problem.y == 0)
            expected = np.mean(np.exp(-mu)) if problem.family.name == "poisson" else observed / 2
            excess = np.clip(observed - expected, 0.02, 0.9)
            # the constant log-odds on the intercept column, exactly 0 elsewhere (a start of
            # 1e-16 would pin a coefficient: NLopt's first step is |x|)
            intercept = np.flatnonzero(np.all(problem.zi_X == 1.0, axis=0))
            if intercept.size:
                x0[intercept[0]] = np.log(excess / (1 - excess))
        if has_dispersion:
            x0[-1] = np.log(_moment_dispersion(problem, mu))

    def minus_loglik(x: np.ndarray) -> float:
        _set_extras(problem, x, has_dispersion)
        with np.errstate(all="ignore"):
            value = -float(np.sum(problem.response.loglik(eta)[1]))
        return value if np.isfinite(value) else 1e100

    result = optimize.minimize(
        minus_loglik,
        x0,
        method="Nelder-Mead",
        options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 2000},
    )
    return np.asarray(result.x, dtype=float)


def _moment_dispersion(problem: LaplaceProblem, mu: np.ndarray) -> float:
    """A moment start: NB2 ``theta`` from ``Var = mu + mu^2/theta``, Gamma ``shape`` from
    the squared Pearson residuals."""
    y = problem.y
    if problem.family.name == "gamma":
        return float(1.0 / max(np.mean(((y - mu) / mu) ** 2), 1e-6))
    excess = np.sum((y - mu) ** 2 - mu)
    return float(np.clip(np.sum(mu**2) / max(excess, 1e-8), 1e-3, 1e6))


def _estimates(
    problem, theta, beta, final, criterion, vcov, singular, *, n_extras, converged, message,
    evaluations,
) -> MLEstimates:  # fmt: skip
    """The fit's :class:`MLEstimates`, ``beta`` and ``vcov`` back on the columns' own
    scale (see :attr:`LaplaceProblem.scale`)."""
    design, scale = problem.design, problem.scale
    names = []
    for block in design.blocks:
        names += theta_names(block.grouping, block.terms, block.covariance)
    diagonal = (
        np.concatenate([theta_is_diagonal(b.covariance, b.n_terms) for b in design.blocks])
        if design.blocks
        else np.zeros(0, dtype=bool)
    )
    return MLEstimates(
        method="ML",
        theta=theta,
        beta=beta / scale,
        sigma=1.0,
        vcov_beta=vcov / np.outer(scale, scale),
        b=tuple(problem.b_from_u(theta, final.u)),
        b_cond_var=tuple(problem.conditional_covariances(theta, final)),
        covariances=tuple(T @ T.T for T in problem.factors(theta)),
        loglik=-0.5 * criterion,
        criterion=criterion,
        n_params=len(beta) + len(theta) + n_extras,
        n_obs=len(problem.y),
        converged=bool(converged),
        message=message,
        n_evaluations=int(evaluations),
        singular=bool(np.any(np.abs(theta[diagonal]) < SINGULAR_TOLERANCE)) or singular,
        fitted=final.mu,
        theta_names=tuple(names),
    )


def _vcov(problem, objective, theta, beta, extras, final, nagq, has_dispersion):
    """``2 H^-1`` of the objective: the fixed effects' block and the extras' block.

    lme4's convention leaves the dispersion out of ``H`` (``glmer.nb``'s vcov is
    conditional on theta); for ``nagq = 0`` and where ``H`` is not positive
    definite (with a warning, as lme4) ``vcov`` is the inverse of ``RX'RX``.
    """
    rx = np.linalg.inv(problem.beta_information(theta, final))
    if nagq == 0:
        return rx, None
    m, p = len(theta), len(beta)
    free = len(extras)
    if problem.information == "fisher" and problem.zi_X is None:
        free = 0  # the dispersion is held at its estimate
    x0 = np.concatenate([theta, beta, extras])
    # steps on each parameter's own scale: 1e-2 of beta's SE (RX), 1e-4 for the rest
    h = np.concatenate(
        [
            1e-4 * np.maximum(np.abs(theta), 1.0),
            1e-2 * np.sqrt(np.diag(rx)),
            1e-4 * np.maximum(np.abs(extras[:free]), 1.0),
        ]
    )
    k = m + p + free
    rest = x0[k:]

    def f(x):
        return objective(np.concatenate([x, rest]))

    H = _hessian(f, x0[:k], h)
    _set_extras(problem, extras, has_dispersion)  # restore after the evaluations
    try:
        full = 2.0 * np.linalg.inv(H)
        vcov = full[m : m + p, m : m + p]
        if np.all(np.isfinite(vcov)) and np.all(np.linalg.eigvalsh(vcov) > 0):
            return vcov, (full[m + p :, m + p :] if free else None)
    except np.linalg.LinAlgError:
        pass
    warn(
        "the Hessian of the Laplace objective is not positive definite at the optimum (a "
        "boundary fit?); the fixed effects' standard errors come from RX'RX instead, as lme4 "
        "falls back to.",
        ConvergenceWarning,
    )
    return rx, (np.full((free, free), np.nan) if free else None)


def _hessian(f, x0: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian of ``f`` at ``x0`` with steps ``h``: the diagonal
    from ``f(x +- h_i)``, each off-diagonal entry from two more evaluations,
    ``(f(x + h_i + h_j) + f(x - h_i - h_j) - f(x +- h_i) - f(x +- h_j) + 2 f(x)) / (2 h_i h_j)``
    (second-order accurate, as lme4's ``deriv12``): ``k^2 + k + 1`` evaluations."""
    k = len(x0)
    f0 = f(x0)
    plus, minus = np.empty(k), np.empty(k)
    H = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        plus[i], minus[i] = f(x0 + ei), f(x0 - ei)
        H[i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
    for i in range(k):
        for j in range(i):
            step = np.zeros(k)
            step[i], step[j] = h[i], h[j]
            both = f(x0 + step) + f(x0 - step)
            value = (both - plus[i] - minus[i] - plus[j] - minus[j] + 2 * f0) / (2 * h[i] * h[j])
            H[i, j] = H[j, i] = value
    return H
