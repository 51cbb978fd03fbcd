"""Maximum-likelihood fits of GLMMs by the Laplace approximation (lme4's ``glmer``).

With spherical random effects ``u`` (``b = Lambda(theta) u``, ``u ~ N(0, I)``)
the log-likelihood is ``log integral exp(sum_i l_i(y_i | eta_i) - ||u||^2 / 2) du``
with ``eta = offset + X beta + Z Lambda u``. At the conditional mode ``u*``
(found by penalised iteratively reweighted least squares, PIRLS) the Laplace
approximation gives lme4's objective

    -2 logLik ~ -2 sum_i l_i(mu_i(u*)) + ||u*||^2 + log det(Lambda' Z' W Z Lambda + I)

with the GLM weights ``W = n mu_eta^2 / V(mu)`` at ``u*``: the expected
information, as lme4 uses. For canonical links (logit, log) it equals the
observed one and the objective is the exact Laplace approximation (glmmTMB's,
to 1e-10 on cbpp); for probit or cloglog links glmmTMB's observed-information
Laplace gives a different value (0.04 higher on cbpp) and bayesmix follows
lme4. lme4 itself takes ``log det`` at the weights of PIRLS's previous
iterate, which puts its logLik slightly below this one (3e-4 on cbpp) and
moves its Hessian-based SEs by about 1%. As lme4 does, the fit
runs in two stages: ``nAGQ = 0`` optimises ``theta`` with ``beta`` updated inside
PIRLS, then the Laplace objective is optimised over ``(theta, beta)`` together
(BOBYQA, then the optimum is checked and polished by :func:`bayesmix.ml.optimise.optimise`).
Fixed-effect standard errors come from the Hessian of the objective in
``(theta, beta)`` (lme4's default ``use.hessian``): ``vcov = 2 H^-1``, its beta block.

The random-effects matrix is dense here (rows x random coefficients): enough for
models with up to a few thousand random coefficients; the sparse blocked kernel of
the linear engine is the next step for larger ones.

Notation
--------
n rows, p fixed effects, q random coefficients; y response (a proportion for the
binomial family), n_i trials (prior weights), eta linear predictor, mu mean,
u spherical random effects, Lambda(theta) block-diagonal relative covariance factor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from bayesmix.errors import ConvergenceWarning, FitError, warn
from bayesmix.spec.covariance import factors_from_theta, initial_theta, theta_is_diagonal
from bayesmix.spec.design import Design
from bayesmix.spec.families import Family

__all__ = ["LaplaceProblem", "PirlsResult"]

_PIRLS_MAX = 50
_STEP_TOL = 1e-10
_EPS = np.finfo(float).eps
_FAILED = 1e100  # the objective where PIRLS cannot proceed (BOBYQA steps back from it)


@dataclass
class PirlsResult:
    """Conditional modes at one ``(theta, beta)`` and the Laplace objective there."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    objective: float  # Laplace -2 logLik
    factor: np.ndarray  # lower Cholesky factor of Lambda' Z' W Z Lambda + I
    converged: bool
    iterations: int


class LaplaceProblem:
    """The Laplace objective of one GLMM design and family.

    Parameters
    ----------
    design : Design
        The model's design (``y`` the response, a proportion for the binomial
        family; ``weights`` the binomial trials or Gaussian prior weights).
    family : Family
    dispersion : float, optional
        The negative binomial's ``theta`` (Var = mu + mu^2 / theta).
    """

    def __init__(self, design: Design, family: Family, dispersion: float | None = None) -> None:
        self.design = design
        self.family = family
        self.dispersion = dispersion  # the negative binomial's theta, held fixed in PIRLS
        self.y = np.asarray(design.y, dtype=float)
        X = np.asarray(design.X, dtype=float)
        # Columns on a common scale (RMS 1): beta here is beta * scale. A covariate in
        # large units would otherwise make PIRLS's system ill-conditioned and BOBYQA's
        # steps the wrong size; estimates are scaled back by glmm_fit.
        rms = np.sqrt(np.mean(X**2, axis=0)) if X.size else np.ones(X.shape[1])
        self.scale = np.where(rms > 0, rms, 1.0)
        self.X = X / self.scale
        self.offset = design.offset_or_zero
        n = len(self.y)
        self.weights = np.ones(n) if design.weights is None else np.asarray(design.weights)
        self.kinds = [block.covariance for block in design.blocks]
        self.sizes = [block.n_terms for block in design.blocks]
        columns = []
        for block in design.blocks:  # level-major columns: level l, term j at l * k + j
            Z = np.zeros((n, block.n_levels * block.n_terms))
            for j in range(block.n_terms):
                Z[np.arange(n), block.codes * block.n_terms + j] = block.Z[:, j]
            columns.append(Z)
        self.Z = np.hstack(columns) if columns else np.zeros((n, 0))
        self.n_theta = sum(len(initial_theta(k, s)) for k, s in zip(self.kinds, self.sizes))
        self.lower = np.concatenate(
            [
                np.where(theta_is_diagonal(k, s), 0.0, -np.inf)
                for k, s in zip(self.kinds, self.sizes)
            ]
        )
        self._u = np.zeros(self.Z.shape[1])  # warm starts of PIRLS across evaluations
        self.beta = self.start_beta()  # stage one's current beta

    def initial_theta(self) -> np.ndarray:
        return np.concatenate([initial_theta(k, s) for k, s in zip(self.kinds, self.sizes)])

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """The block-diagonal ``Lambda`` (q x q)."""
        factors = factors_from_theta(theta, self.kinds, self.sizes)
        parts = [
            np.kron(np.eye(block.n_levels), factor)
            for block, factor in zip(self.design.blocks, factors)
        ]
        return la.block_diag(*parts) if parts else np.zeros((0, 0))

    def _loglik(self, mu: np.ndarray) -> float:
        loglik = self.family.loglik(self.y, mu, self.weights, self.dispersion)
        return float(np.sum(loglik))

    def _mean(self, eta: np.ndarray) -> np.ndarray:
        mu = self.family.link.inverse(eta)
        if self.family.name == "binomial":
            mu = np.clip(mu, 1e-15, 1 - 1e-15)
        return mu

    def start_beta(self) -> np.ndarray:
        """A start for ``beta``: least squares of ``g(mustart)`` on ``X`` (R's ``mustart``:
        ``(n y + 0.5) / (n + 1)`` for the binomial family, ``y + 0.1`` for counts)."""
        if self.family.name == "binomial":
            mu = (self.weights * self.y + 0.5) / (self.weights + 1.0)
        else:
            mu = self.y + 0.1
        target = self.family.link.link(mu) - self.offset
        return np.linalg.lstsq(self.X, target, rcond=None)[0]

    def _weights(self, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mu_eta`` (kept away from 0, as lme4 does) and the GLM weights ``W``."""
        d = self.family.link.mu_eta(eta)
        d = np.where(np.abs(d) < _EPS, np.copysign(_EPS, d), d)
        variance = np.maximum(self.family.variance(mu, self.dispersion), _EPS)
        return d, self.weights * d**2 / variance

    def pirls(self, theta: np.ndarray, beta: np.ndarray, update_beta: bool = False) -> PirlsResult:
        """Conditional modes ``u*`` (and ``beta`` when ``update_beta``) by Newton steps
        with step halving on the penalised deviance ``-2 sum l_i + ||u||^2``."""
        ZL = self.Z @ self.lam(theta)
        q = ZL.shape[1]
        u, beta = self._u.copy(), np.asarray(beta, dtype=float).copy()

        def penalised(u_, beta_):
            eta = self.offset + self.X @ beta_ + ZL @ u_
            mu = self._mean(eta)
            with np.errstate(all="ignore"):
                value = -2.0 * self._loglik(mu) + float(u_ @ u_)
            return (value if np.isfinite(value) else np.inf), eta, mu

        current, eta, mu = penalised(u, beta)
        if not np.isfinite(current):  # a warm start from elsewhere that does not fit here
            u = np.zeros(q)
            current, eta, mu = penalised(u, beta)
        if not np.isfinite(current):
            raise FitError(
                "the GLMM's log-likelihood is not finite at the starting values (a mean of 0 "
                "for a positive count, say); check the response, the link and the offset."
            )
        converged, iterations = False, 0
        while iterations < _PIRLS_MAX:
            iterations += 1
            d, W = self._weights(eta, mu)
            working = (self.y - mu) / d  # working residual on the eta scale
            if update_beta:
                M = np.hstack([ZL, self.X])
                H = M.T @ (W[:, None] * M)
                H[:q, :q] += np.eye(q)
                g = M.T @ (W * working)
                g[:q] -= u
            else:
                H = ZL.T @ (W[:, None] * ZL) + np.eye(q)
                g = ZL.T @ (W * working) - u
            try:
                with warnings.catch_warnings():  # near-degenerate weights: handled below
                    warnings.simplefilter("ignore", la.LinAlgWarning)
                    step = la.solve(H, g, assume_a="pos")
            except (la.LinAlgError, ValueError) as error:
                raise FitError(
                    "PIRLS cannot take a step (the GLM weights are degenerate: a fixed effect "
                    "may separate the outcomes perfectly, or a level has only zero counts); "
                    f"simplify the fixed effects or check the data ({error})."
                ) from None
            scale, accepted = 1.0, False
            for _ in range(20):
                u_new = u + scale * step[:q]
                beta_new = beta + scale * step[q:] if update_beta else beta
                value, eta_new, mu_new = penalised(u_new, beta_new)
                if value <= current + 1e-12 * abs(current):
                    accepted = True
                    break
                scale /= 2
            if not accepted:
                break
            u, beta, eta, mu, current = u_new, beta_new, eta_new, mu_new, value
            # Converged when the full Newton step is negligible: the Laplace objective
            # depends on u* to first order (through the weights in log det), so a
            # criterion on the penalised deviance alone (second order in the error
            # of u) would leave noise that spoils finite-difference Hessians.
            if float(np.max(np.abs(step), initial=0.0)) < _STEP_TOL:
                converged = True
                break
        d, W = self._weights(eta, mu)
        A = ZL.T @ (W[:, None] * ZL) + np.eye(q)
        factor = la.cholesky(A, lower=True) if q else np.zeros((0, 0))
        log_det = 2.0 * float(np.sum(np.log(np.diag(factor)))) if q else 0.0
        self._u = u
        return PirlsResult(u, beta, eta, mu, current + log_det, factor, converged, iterations)

    def beta_information(self, theta: np.ndarray, result: PirlsResult) -> np.ndarray:
        """lme4's ``RX'RX``: the information of ``beta`` with ``u`` profiled out, at the
        weights of the conditional modes of ``result`` (PIRLS at ``theta``); its inverse
        is ``vcov`` when ``use.hessian = FALSE``."""
        _, W = self._weights(result.eta, result.mu)
        XtWX = self.X.T @ (W[:, None] * self.X)
        if not result.u.size:
            return XtWX
        ZtWX = (self.Z @ self.lam(theta)).T @ (W[:, None] * self.X)
        solved = la.cho_solve((result.factor, True), ZtWX)
        return XtWX - ZtWX.T @ solved

    def objective(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The Laplace ``-2 logLik`` at ``(theta, beta)`` (scaled ``beta``); ``inf`` where
        PIRLS fails (an identity link driven to a zero mean), for the optimiser to avoid."""
        try:
            return self.pirls(theta, beta).objective
        except FitError:
            self._u = np.zeros_like(self._u)
            return _FAILED

    def stage_one(self, theta: np.ndarray) -> float:
        """lme4's ``nAGQ = 0`` objective: ``beta`` updated inside PIRLS (kept in ``beta``)."""
        try:
            result = self.pirls(theta, self.beta, update_beta=True)
        except FitError:
            self._u = np.zeros_like(self._u)
            return _FAILED
        self.beta = result.beta
        return result.objective


def warn_pirls(result: PirlsResult) -> None:
    if not result.converged:
        warn(
            f"PIRLS (the conditional modes) did not converge in {result.iterations} iterations "
            "at the optimum; the fit may be unreliable. Check the response and the model.",
            ConvergenceWarning,
        )
