"""The deviance and ``V_beta`` as functions of the variance parameters ``phi = (theta, sigma)``.

lme4's profiled criterion has ``sigma`` (and ``beta``) optimised out. Satterthwaite's
method needs the criterion with ``sigma`` free, ``-2 l(theta, sigma)``, whose
Hessian at the optimum gives the asymptotic covariance ``A = 2 H^-1`` of
``phi``, and the Jacobian of ``V_beta(phi) = sigma^2 (RX'RX)^-1`` (lmerTest's
construction, Kuznetsova et al. 2017). From the kernel's pieces at ``theta``:

    -2 l(theta, sigma) = log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)
    REML adds            log|RX|^2 - p log(2 pi sigma^2)

computed on the well-scaled working problem (:mod:`bayesmix.ml.working`), whose
criterion differs from the original one by a constant.

Notation
--------
phi : (theta, sigma), original (lme4) scale; A : covariance of phi;
J : (k, p, p) derivatives of V_beta in each phi_i; pwrss : penalised weighted RSS.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError, SingularFitWarning, warn
from bayesmix.inference.derivatives import hessian, jacobian
from bayesmix.ml.criterion_choice import estimates_kernel
from bayesmix.ml.working import working_problem

__all__ = ["VarianceParameters", "variance_parameters"]


@dataclass(frozen=True, eq=False)
class VarianceParameters:
    """Criterion and ``V_beta`` of one design as functions of ``phi = (theta, sigma)``.

    Attributes
    ----------
    design : Design
    reml : bool
    phi : ndarray
        The fit's ``(theta, sigma)``.
    names : tuple of str
        ``theta`` names then ``"sigma"``.
    """

    design: Any
    reml: bool
    phi: np.ndarray
    names: tuple[str, ...]

    @cached_property
    def _work(self) -> Any:
        return working_problem(self.design)

    @cached_property
    def _kernel(self) -> Any:
        return estimates_kernel(self._work.design)

    def _solution(self, theta: np.ndarray) -> Any:
        return self._kernel.solve(self._work.theta_w(theta), reml=self.reml)

    def deviance(self, phi: np.ndarray) -> float:
        """``-2 l(theta, sigma)`` (restricted for REML) up to a constant in ``phi``."""
        theta, sigma = phi[:-1], float(phi[-1])
        if sigma <= 0.0:
            return math.inf
        ldL2, pwrss, ldRX2 = self._kernel.pieces(self._work.theta_w(theta))
        sigma_w = sigma / self._work.scale
        n, p = self.design.n_obs, self.design.n_fixed
        dof = n - p if self.reml else n
        value = ldL2 + pwrss / sigma_w**2 + dof * math.log(2.0 * math.pi * sigma_w**2)
        return value + (ldRX2 if self.reml else 0.0)

    def vcov_beta(self, phi: np.ndarray) -> np.ndarray:
        """``V_beta = sigma^2 (RX'RX)^-1`` at ``phi`` (original scale, ``(p, p)``)."""
        F = self._work.vcov_factor(self._solution(phi[:-1]).RX, float(phi[-1]))
        return F @ F.T

    @cached_property
    def hessian(self) -> np.ndarray:
        """Hessian of :meth:`deviance` at :attr:`phi`."""
        return hessian(self.deviance, self.phi)

    @cached_property
    def covariance(self) -> np.ndarray:
        """``A = 2 H^-1``, the asymptotic covariance of ``phi``.

        Warns when ``H`` is not positive definite (a variance on its boundary, or
        a fit short of the optimum): the degrees of freedom then rest on a
        curvature that is not a likelihood's, as lmerTest's do.
        """
        H = self.hessian
        eigenvalues = np.linalg.eigvalsh(H)
        if eigenvalues.min() <= 1e-8 * max(abs(eigenvalues).max(), 1.0):
            warn(
                "The Hessian of the criterion in (theta, sigma) is not positive definite "
                f"(smallest eigenvalue {eigenvalues.min():.3g}): a variance is at or near "
                "zero. The Satterthwaite degrees of freedom use its pseudo-inverse; "
                "compare with Kenward-Roger (ddf='Kenward-Roger') or simplify the random "
                "part.",
                SingularFitWarning,
            )
            return 2.0 * np.linalg.pinv(H)
        return 2.0 * np.linalg.inv(H)

    @cached_property
    def vcov_jacobian(self) -> np.ndarray:
        """``J[i] = d V_beta / d phi_i`` at :attr:`phi`, shape ``(k, p, p)``."""
        return jacobian(self.vcov_beta, self.phi)


# One VarianceParameters per live result: coef_table and anova then share the
# derivatives (on InstEval they take seconds). Keyed by id, dropped with the result.
_CACHE: dict[int, tuple[weakref.ref, VarianceParameters]] = {}


def variance_parameters(result: Any) -> VarianceParameters:
    """The :class:`VarianceParameters` of a fitted linear mixed model or ``gls`` fit
    (the same object for the same result, so derivatives are computed once).

    Raises
    ------
    ArgumentError
        For fits with a residual variance function or correlation structure
        (their parameters are not part of ``phi`` yet).
    """
    est = result.estimates
    if np.size(getattr(est, "residual_u", ())) or result.residual_structure is not None:
        raise ArgumentError(
            "Satterthwaite and Kenward-Roger degrees of freedom are not available for fits "
            "with weights= or correlation= structures yet; use ddf='residual' (n - p) or "
            "the likelihood-ratio tests of bayesmix.anova."
        )
    cached = _CACHE.get(id(result))
    if cached is not None and cached[0]() is result:
        return cached[1]
    names = tuple(est.theta_names) + ("sigma",)
    phi = np.append(np.asarray(est.theta, dtype=float), float(est.sigma))
    vp = VarianceParameters(result.design, est.method == "REML", phi, names)
    key = id(result)
    _CACHE[key] = (weakref.ref(result, lambda _, key=key: _CACHE.pop(key, None)), vp)
    return vp
