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

Two Laplace conventions (``information``): ``"fisher"`` takes ``log det`` at the
expected information (lme4's, above); ``"observed"`` at the Hessian of the
log-likelihood in ``eta`` (glmmTMB's exact Laplace approximation). They agree for
canonical links; for others (NB2 and Gamma with a log link, probit, cloglog)
and for zero-inflated models, whose log-likelihood lme4 cannot form, the
observed version is used to compare with glmmTMB. PIRLS's Newton steps use the
expected information (or, with zero inflation, the observed one clipped at 0),
which is positive definite away from the mode too; the mode does not depend on
that choice.

``Z Lambda`` is kept as each row's coefficients per block, and
``Lambda' Z' W Z Lambda + I`` is factored by blocks (:mod:`bayesmix.ml.glmm_blocked`):
the largest grouping factor level by level, the rest as one dense Schur complement.

Notation
--------
n rows, p fixed effects, q random coefficients; y response (a proportion for the
binomial family), n_i trials (prior weights), eta linear predictor, mu mean,
u spherical random effects, Lambda(theta) block-diagonal relative covariance factor,
T_b the k_b x k_b factor of block b (Lambda_b = I (x) T_b), W the Laplace weights,
beta_zi zero-inflation coefficients, pi = expit(X_zi beta_zi).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from bayesmix.errors import ArgumentError, ConvergenceWarning, FitError, warn
from bayesmix.ml.glmm_blocked import BlockedFactor, BlockPattern, ZLambda
from bayesmix.ml.pirls_loop import KernelData, pirls_loop
from bayesmix.ml.pirls_system import NumpySystem
from bayesmix.spec.covariance import factors_from_theta, initial_theta, theta_is_diagonal
from bayesmix.spec.design import Design
from bayesmix.spec.families import Family
from bayesmix.spec.response_likelihood import ResponseLikelihood

__all__ = ["LaplaceProblem", "PirlsResult"]

_PIRLS_MAX = 50
_STEP_TOL = 1e-10
# With a canonical link (logit binomial, log Poisson) the expected information is the
# Hessian, Newton converges quadratically, and a full step below this leaves an error
# of order its square (1e-14): the iteration that would confirm it is skipped.
_NEWTON_STEP_TOL = 1e-7
_EPS = np.finfo(float).eps
_FAILED = 1e100  # the objective where PIRLS cannot proceed (BOBYQA steps back from it)
INFORMATION = ("fisher", "observed")
_MAX_STEP_WEIGHT = 1e10
_NO_ZI = np.zeros(0)


@dataclass
class PirlsResult:
    """Conditional modes at one ``(theta, beta)`` and the Laplace objective there."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    objective: float  # Laplace -2 logLik
    converged: bool
    iterations: int
    weights: np.ndarray  # the Laplace weights at the mode (see LaplaceProblem.factor_at)


class LaplaceProblem:
    """The Laplace objective of one GLMM design and family.

    Parameters
    ----------
    design : Design
        The model's design (``y`` the response, a proportion for the binomial
        family; ``weights`` the binomial trials).
    family : Family
    dispersion : float, optional
        NB2 ``theta`` (Var = mu + mu^2 / theta) or Gamma ``shape``.
    zi_X : ndarray, optional
        The zero-inflation design (rows as ``design``); its coefficients are
        ``zi_beta``, set by the caller.
    information : {"fisher", "observed"}
        The Laplace convention (see the module docstring).
    """

    def __init__(
        self,
        design: Design,
        family: Family,
        dispersion: float | None = None,
        zi_X: np.ndarray | None = None,
        information: str = "fisher",
    ) -> None:
        if information not in INFORMATION:
            raise ArgumentError(
                f"information must be 'fisher' (lme4) or 'observed' (glmmTMB), got {information!r}."
            )
        self.design = design
        self.family = family
        self.information = information
        self.y = np.asarray(design.y, dtype=float)
        self.response = ResponseLikelihood(family, self.y, design.weights)
        self.response.dispersion = dispersion
        X = np.asarray(design.X, dtype=float)
        # Columns on a common scale (RMS 1): beta here is beta * scale. A covariate in
        # large units would otherwise make PIRLS's system ill-conditioned and BOBYQA's
        # steps the wrong size; estimates are scaled back by glmm_fit.
        rms = np.sqrt(np.mean(X**2, axis=0)) if X.size else np.ones(X.shape[1])
        self.scale = np.where(rms > 0, rms, 1.0)
        self.X = X / self.scale
        self.offset = design.offset_or_zero
        self.zi_X = None if zi_X is None else np.asarray(zi_X, dtype=float)
        self.zi_beta = None if zi_X is None else np.zeros(self.zi_X.shape[1])
        self.kinds = [block.covariance for block in design.blocks]
        self.sizes = [block.n_terms for block in design.blocks]
        # the sparsity pattern of Z (and Z Lambda): level-major columns, ll * k + j
        offsets = np.cumsum([0] + [b.n_levels * b.n_terms for b in design.blocks])
        self.q = int(offsets[-1])
        self.offsets = offsets
        self.n_theta = sum(len(initial_theta(k, s)) for k, s in zip(self.kinds, self.sizes))
        self.lower = np.concatenate(
            [
                np.where(theta_is_diagonal(k, s), 0.0, -np.inf)
                for k, s in zip(self.kinds, self.sizes)
            ]
        )
        self.pattern = BlockPattern(design.blocks, self.X.shape[1])
        # PIRLS's weights are the Hessian's (canonical link, no zero inflation)
        canonical = (family.name, family.link.name) in (("binomial", "logit"), ("poisson", "log"))
        self._exact_newton = canonical and self.zi_X is None
        self.X_c = np.ascontiguousarray(self.X)
        self.kernel_data = KernelData.of(self.response)
        self._u = np.zeros(self.q)  # warm starts of PIRLS across evaluations
        self.beta = self.start_beta()  # stage one's current beta

    @property
    def dispersion(self) -> float | None:
        return self.response.dispersion

    @dispersion.setter
    def dispersion(self, value: float | None) -> None:
        self.response.dispersion = value

    def set_zi_beta(self, zi_beta: np.ndarray) -> None:
        """Set the zero-inflation coefficients (the structural-zero log-odds follow)."""
        self.zi_beta = np.asarray(zi_beta, dtype=float)
        self.response.zi_eta = self.zi_X @ self.zi_beta

    def initial_theta(self) -> np.ndarray:
        return np.concatenate([initial_theta(k, s) for k, s in zip(self.kinds, self.sizes)])

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each block's ``T_b`` (``Lambda_b = I (x) T_b``)."""
        return factors_from_theta(theta, self.kinds, self.sizes)

    def z_lambda(self, theta: np.ndarray) -> ZLambda:
        """``Z Lambda(theta)`` by blocks (:class:`~bayesmix.ml.glmm_blocked.ZLambda`)."""
        return ZLambda(self.pattern, self.factors(theta))

    def b_from_u(self, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        """The random effects ``b = Lambda u`` per block, shape (levels, terms)."""
        out = []
        for block, T, start in zip(self.design.blocks, self.factors(theta), self.offsets):
            k = block.n_terms
            out.append(u[start : start + block.n_levels * k].reshape(-1, k) @ T.T)
        return out

    def start_beta(self) -> np.ndarray:
        """A start for ``beta``: least squares of ``g(mustart)`` on ``X`` (R's ``mustart``:
        ``(n y + 0.5) / (n + 1)`` for the binomial family, ``y + 0.1`` for counts, ``y``
        for the Gamma family)."""
        if self.family.name == "binomial":
            n = self.response.n
            mu = (n * self.y + 0.5) / (n + 1.0)
        elif self.family.name == "gamma":
            mu = self.y
        else:
            mu = self.y + 0.1
        target = self.family.link.link(mu) - self.offset
        return np.linalg.lstsq(self.X, target, rcond=None)[0]

    def _step_weights(self, fisher, d2) -> np.ndarray:
        """Weights of PIRLS's Newton steps: positive, so each step is a descent direction
        (zero-inflated models try the observed ``-d2`` first, which converges faster near
        the mode, and come here when it leaves the system indefinite),
        and at most :data:`_MAX_STEP_WEIGHT` (a mean driven to 0 under an identity link
        gives 1/eps, which leaves the blocked system numerically indefinite)."""
        W = np.maximum(-d2, 0.0) if self.zi_X is not None else np.maximum(fisher, _EPS)
        return np.minimum(W, _MAX_STEP_WEIGHT)

    def _step_tol(self, scale: float) -> float:
        """The step below which PIRLS has converged (see :data:`_NEWTON_STEP_TOL`)."""
        return _NEWTON_STEP_TOL if self._exact_newton and scale == 1.0 else _STEP_TOL

    def _laplace_weights(self, fisher, d2) -> np.ndarray:
        return -d2 if self.information == "observed" else np.maximum(fisher, _EPS)

    def pirls(self, theta: np.ndarray, beta: np.ndarray, update_beta: bool = False) -> PirlsResult:
        """Conditional modes ``u*`` (and ``beta`` when ``update_beta``) by Newton steps
        with step halving on the penalised deviance ``-2 sum l_i + ||u||^2``."""
        if self.pattern.dense:  # the same loop, compiled (bayesmix.ml.pirls_loop)
            return self._pirls_compiled(theta, beta, update_beta)
        system = NumpySystem(self, theta)
        q = self.q
        u, beta = self._u.copy(), np.asarray(beta, dtype=float).copy()
        current, eta = system.penalised(u, beta)
        if not np.isfinite(current):  # a warm start from elsewhere that does not fit here
            u = np.zeros(q)
            current, eta = system.penalised(u, beta)
        if not np.isfinite(current):
            raise FitError(
                "the GLMM's log-likelihood is not finite at the starting values (a mean of 0 "
                "for a positive count, say); check the response, the link and the offset."
            )
        converged, iterations = False, 0
        while iterations < _PIRLS_MAX:
            iterations += 1
            mu, _, d1, d2, fisher = system.derivatives(eta)
            g = system.gradient(d1, u, update_beta)
            step = None
            if self.zi_X is not None:  # Newton's own weights where they keep A positive
                try:
                    step = system.solve(np.minimum(-d2, _MAX_STEP_WEIGHT), g, update_beta)
                except FitError:
                    step = None
                if step is not None and not np.all(np.isfinite(step)):
                    step = None
            if step is None:
                step = _step(system, self._step_weights(fisher, d2), g, update_beta)
            scale, accepted = 1.0, False
            for _ in range(20):
                u_new = u + scale * step[:q]
                beta_new = beta + scale * step[q:] if update_beta else beta
                value, eta_new = system.penalised(u_new, beta_new)
                if value <= current + 1e-12 * abs(current):
                    accepted = True
                    break
                scale /= 2
            if not accepted:
                break
            u, beta, eta, current = u_new, beta_new, eta_new, value
            # Converged when the full Newton step is negligible: the Laplace objective
            # depends on u* to first order (through the weights in log det), so a
            # criterion on the penalised deviance alone (second order in the error
            # of u) would leave noise that spoils finite-difference Hessians.
            if float(np.max(np.abs(step), initial=0.0)) < self._step_tol(scale):
                converged = True
                break
        mu, _, _, d2, fisher = system.derivatives(eta)
        W = self._laplace_weights(fisher, d2)
        try:
            log_det = system.log_det(W)
        except FitError:
            raise FitError(
                "the observed information at the conditional modes is not positive definite."
            ) from None
        self._u = u
        return PirlsResult(u, beta, eta, mu, current + log_det, converged, iterations, W)

    def _pirls_compiled(self, theta: np.ndarray, beta: np.ndarray, update_beta: bool):
        ZL, pat, k = self.z_lambda(theta), self.pattern, self.kernel_data
        r = self.response
        zi = _NO_ZI if r.zi_eta is None else np.ascontiguousarray(r.zi_eta, dtype=float)
        with np.errstate(all="ignore"):
            u, beta, eta, mu, objective, converged, iterations, W, status = pirls_loop(
                k.family, k.link, k.y, k.n, k.s, k.const,
                0.0 if r.dispersion is None else float(r.dispersion), zi,
                self.offset, self.X_c, np.asarray(beta, dtype=float), pat.IDX,
                np.ascontiguousarray(np.hstack(ZL.V)), pat.codes[pat.first], pat.k1, pat.m1,
                pat.idx1, np.ascontiguousarray(ZL.val1), pat.idx_r,
                np.ascontiguousarray(ZL.val_r), pat.q_r, pat.index1, pat.index_r, pat.q,
                pat.lvl_ptr, pat.lvl_rows, self._u, bool(update_beta),
                self.information == "observed", _PIRLS_MAX, _STEP_TOL,
                _NEWTON_STEP_TOL if self._exact_newton else _STEP_TOL, _MAX_STEP_WEIGHT,
            )  # fmt: skip
        if status == 1:
            raise FitError(
                "the GLMM's log-likelihood is not finite at the starting values (a mean of 0 "
                "for a positive count, say); check the response, the link and the offset."
            )
        if status == 2:
            raise FitError(
                "PIRLS cannot take a step (the GLM weights are degenerate: a fixed effect "
                "may separate the outcomes perfectly, or a level has only zero counts); "
                "simplify the fixed effects or check the data."
            )
        if status == 3:
            raise FitError(
                "the observed information at the conditional modes is not positive definite."
            )
        self._u = u
        return PirlsResult(u, beta, eta, mu, objective, converged, iterations, W)

    def factor_at(self, theta: np.ndarray, result: PirlsResult) -> BlockedFactor:
        """The blocked factor at the Laplace weights of ``result`` (numpy's; rare calls)."""
        return self.z_lambda(theta).factor(result.weights)

    def beta_information(self, theta: np.ndarray, result: PirlsResult) -> np.ndarray:
        """lme4's ``RX'RX``: the information of ``beta`` with ``u`` profiled out, at the
        Laplace weights of ``result`` (PIRLS at ``theta``); its inverse is ``vcov`` when
        ``use.hessian = FALSE``."""
        W = result.weights
        XtWX = self.X.T @ (W[:, None] * self.X)
        ZtWX = self.z_lambda(theta).t_times_matrix(W[:, None] * self.X)
        factor = self.factor_at(theta, result)
        solved = np.column_stack([factor.solve(c) for c in ZtWX.T])
        return XtWX - ZtWX.T @ solved

    def conditional_covariances(self, theta: np.ndarray, result: PirlsResult) -> list[np.ndarray]:
        """Each block's conditional covariances of ``b`` per level, ``(levels, k, k)``:
        the diagonal blocks of ``Lambda (L L')^-1 Lambda'``."""
        sizes = [(b.n_levels, b.n_terms) for b in self.design.blocks]
        inverse = self.factor_at(theta, result).inverse_blocks(self.offsets[:-1], sizes)
        return [T @ block @ T.T for T, block in zip(self.factors(theta), inverse)]

    def objective(self, theta: np.ndarray, beta: np.ndarray) -> float:
        """The Laplace ``-2 logLik`` at ``(theta, beta)`` (scaled ``beta``); ``1e100`` where
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


def _step(system, W: np.ndarray, g: np.ndarray, with_beta: bool) -> np.ndarray:
    """PIRLS's Newton step ``A^-1 g`` (``A`` bordered by ``X`` when ``beta`` moves too)."""
    try:
        with warnings.catch_warnings():  # near-degenerate weights: handled below
            warnings.simplefilter("ignore", la.LinAlgWarning)
            step = system.solve(W, g, with_beta)
    except (FitError, ValueError) as error:
        raise FitError(
            "PIRLS cannot take a step (the GLM weights are degenerate: a fixed effect "
            "may separate the outcomes perfectly, or a level has only zero counts); "
            f"simplify the fixed effects or check the data ({error})."
        ) from None
    if not np.all(np.isfinite(step)):
        raise FitError(
            "PIRLS's step is not finite (degenerate GLM weights); simplify the fixed effects "
            "or check the data."
        )
    return step


def warn_pirls(result: PirlsResult) -> None:
    if not result.converged:
        warn(
            f"PIRLS (the conditional modes) did not converge in {result.iterations} iterations "
            "at the optimum; the fit may be unreliable. Check the response and the model.",
            ConvergenceWarning,
        )
