"""The two-stage ML fit of a GLMM (lme4's ``glmer`` with ``nAGQ = 0`` or ``1``).

Stage one (``nAGQ = 0``) optimises ``theta`` with the fixed effects updated
inside PIRLS, from a GLM fit without random effects; stage two optimises the
Laplace objective of :class:`~bayesmix.ml.glmm_laplace.LaplaceProblem` over
``(theta, beta)``. Both use BOBYQA, as lme4's default ``glmerControl`` does for
the first stage (lme4 then uses Nelder-Mead; BOBYQA with bayesmix's optimum
check ends at least as low).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bayesmix.errors import ArgumentError, ConvergenceWarning, warn
from bayesmix.ml.fit import SINGULAR_TOLERANCE, MLEstimates
from bayesmix.ml.glmm_laplace import LaplaceProblem, warn_pirls
from bayesmix.ml.optimise import optimise
from bayesmix.spec.covariance import factors_from_theta, theta_is_diagonal, theta_names
from bayesmix.spec.design import Design
from bayesmix.spec.families import Family

__all__ = ["fit_glmm"]


def fit_glmm(design: Design, family: Family, nagq: int = 1) -> tuple[MLEstimates, float | None]:
    """ML estimates of a GLMM: ``nagq = 1`` Laplace, ``nagq = 0`` lme4's fast fit.

    Returns the estimates and the family's dispersion parameter (the negative
    binomial's ``theta``; ``None`` for families without one). ``theta`` is
    estimated jointly with the other parameters in the Laplace stage; as in
    lme4's ``glmer.nb`` the fixed effects' vcov is taken at the estimated
    ``theta`` (conditional on it).

    Raises
    ------
    ArgumentError
        ``nagq`` other than 0 or 1 (adaptive quadrature is not yet available).
    """
    if isinstance(nagq, bool) or nagq not in (0, 1):
        raise ArgumentError(
            f"nagq must be 0 (lme4's fast fit) or 1 (Laplace); got {nagq!r}. Adaptive "
            "Gauss-Hermite quadrature (nagq > 1) is not available yet."
        )
    negbin = family.name == "negbinomial"
    # the negative binomial starts as nearly Poisson; theta is estimated below
    problem = LaplaceProblem(design, family, dispersion=_POISSON_LIKE if negbin else None)
    m = problem.n_theta
    zero = np.zeros(m)
    problem.beta = problem.pirls(zero, problem.beta, update_beta=True).beta  # the GLM fit
    budget = 1000 * (m + 1)
    first = optimise(problem.stage_one, problem.initial_theta(), problem.lower, budget)
    theta = first.x
    start = problem.pirls(theta, problem.beta, update_beta=True)
    beta = start.beta
    evaluations, converged, message = first.n_evaluations, first.converged, first.message
    if negbin:
        problem.dispersion = _theta_given_mean(problem, start.mu)
    if nagq == 1:
        extra = [np.log(problem.dispersion)] if negbin else []
        lower = np.concatenate([problem.lower, np.full(len(beta) + len(extra), -np.inf)])
        p = len(beta)

        def objective(x):
            if negbin:
                problem.dispersion = float(np.exp(x[-1]))
            return problem.objective(x[:m], x[m : m + p])

        second = optimise(
            objective,
            np.concatenate([theta, beta, extra]),
            lower,
            budget + 200 * (p + len(extra)) ** 2,
        )
        theta, beta = second.x[:m], second.x[m : m + p]
        if negbin:
            problem.dispersion = float(np.exp(second.x[-1]))
        evaluations += second.n_evaluations
        converged, message = second.converged, second.message
    final = problem.pirls(theta, beta)
    warn_pirls(final)
    if not converged:
        warn(f"the GLMM fit did not converge ({message}).", ConvergenceWarning)
    estimates = _estimates(problem, theta, beta, final, converged, message, evaluations, nagq)
    # back from the internally scaled columns (see LaplaceProblem.scale)
    scale = problem.scale
    estimates = dataclasses.replace(
        estimates,
        beta=estimates.beta / scale,
        vcov_beta=estimates.vcov_beta / np.outer(scale, scale),
        n_params=estimates.n_params + int(negbin),
    )
    return estimates, problem.dispersion


#: theta of a negative binomial that is a Poisson distribution to working precision
_POISSON_LIKE = 1e8


def _theta_given_mean(problem: LaplaceProblem, mu: np.ndarray) -> float:
    """ML estimate of the negative binomial's theta for fixed means (MASS's theta.ml)."""
    from scipy.optimize import minimize_scalar

    def minus_loglik(log_theta: float) -> float:
        theta = float(np.exp(log_theta))
        return -float(np.sum(problem.family.loglik(problem.y, mu, None, theta)))

    result = minimize_scalar(minus_loglik, bounds=(-10.0, 15.0), method="bounded")
    return float(np.exp(result.x))


def _estimates(problem, theta, beta, final, converged, message, evaluations, nagq) -> MLEstimates:
    design = problem.design
    lam = problem.lam(theta)
    b_all = lam @ final.u
    inverse = np.linalg.inv(final.factor) if final.factor.size else final.factor
    cond = lam @ inverse.T @ inverse @ lam.T  # Lambda (L L')^-1 Lambda'
    factors = factors_from_theta(theta, problem.kinds, problem.sizes)
    b, b_var, covariances, names = [], [], [], []
    start = 0
    for block, factor in zip(design.blocks, factors):
        k, levels = block.n_terms, block.n_levels
        width = k * levels
        b.append(b_all[start : start + width].reshape(levels, k))
        local = cond[start : start + width, start : start + width]
        b_var.append(
            np.stack([local[i * k : (i + 1) * k, i * k : (i + 1) * k] for i in range(levels)])
        )
        covariances.append(factor @ factor.T)
        names += theta_names(block.grouping, block.terms, block.covariance)
        start += width
    diagonal = (
        np.concatenate([theta_is_diagonal(b.covariance, b.n_terms) for b in design.blocks])
        if design.blocks
        else np.zeros(0, dtype=bool)
    )
    vcov = _vcov_beta(problem, theta, beta, final, nagq)
    return MLEstimates(
        method="ML",
        theta=theta,
        beta=beta,
        sigma=1.0,
        vcov_beta=vcov,
        b=tuple(b),
        b_cond_var=tuple(b_var),
        covariances=tuple(covariances),
        loglik=-0.5 * final.objective,
        criterion=final.objective,
        n_params=len(beta) + len(theta),
        n_obs=len(problem.y),
        converged=bool(converged),
        message=message,
        n_evaluations=int(evaluations),
        singular=bool(np.any(np.abs(theta[diagonal]) < SINGULAR_TOLERANCE)),
        fitted=final.mu,
        theta_names=tuple(names),
    )


def _vcov_beta(problem: LaplaceProblem, theta, beta, final, nagq: int) -> np.ndarray:
    """lme4's ``vcov``: ``2 H^-1`` of the Laplace objective in ``(theta, beta)``, its beta
    block (``use.hessian = TRUE``); for ``nagq = 0``, and where that Hessian is not
    positive definite (with a warning, as lme4), the inverse of ``RX'RX``."""
    rx = np.linalg.inv(problem.beta_information(theta, final))
    if nagq == 0:
        return rx
    m, p = len(theta), len(beta)
    x0 = np.concatenate([theta, beta])
    # steps on each parameter's own scale: 1e-2 of beta's SE (RX), 1e-4 for theta
    h = np.concatenate([1e-4 * np.maximum(np.abs(theta), 1.0), 1e-2 * np.sqrt(np.diag(rx))])

    def f(x):
        return problem.objective(x[:m], x[m:])

    k = m + p
    f0 = f(x0)
    H = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (f(x0 + ei) - 2 * f0 + f(x0 - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            value = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (
                4 * h[i] * h[j]
            )
            H[i, j] = H[j, i] = value
    try:
        vcov = (2.0 * np.linalg.inv(H))[m:, m:]
        if np.all(np.isfinite(vcov)) and np.all(np.linalg.eigvalsh(vcov) > 0):
            return vcov
    except np.linalg.LinAlgError:
        pass
    warn(
        "the Hessian of the Laplace objective is not positive definite at the optimum (a "
        "boundary fit?); the fixed effects' standard errors come from RX'RX instead, as lme4 "
        "falls back to.",
        ConvergenceWarning,
    )
    return rx
