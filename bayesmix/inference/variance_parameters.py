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
phi : (theta, sigma), original (lme4) scale; phi_w : the same in working coordinates
(:mod:`bayesmix.ml.working`), where the derivatives are taken; A : covariance of phi_w;
J : (k, p, p) derivatives of V_beta in each phi_w_i; pwrss : penalised weighted RSS.
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
        """``-2 l(theta, sigma)`` (restricted for REML), the design's own: the working
        problem's constants are added back, so designs can be compared (a residual
        structure's whitened designs differ in their working scale)."""
        theta, sigma = phi[:-1], float(phi[-1])
        if sigma <= 0.0:
            return math.inf
        theta_w = self._work.theta_w(theta)
        if hasattr(self._kernel, "pieces"):  # the dense kernel: without solving for effects
            ldL2, pwrss, ldRX2 = self._kernel.pieces(theta_w)
        else:
            sol = self._kernel.solve(theta_w, reml=self.reml)
            ldL2, pwrss, ldRX2 = sol.ldL2, sol.pwrss, sol.ldRX2
        work = self._work
        n, p = self.design.n_obs, self.design.n_fixed
        dof = n - p if self.reml else n
        value = ldL2 + work.scale**2 * pwrss / sigma**2 + dof * math.log(2.0 * math.pi * sigma**2)
        if self.reml:
            value += ldRX2 + 2.0 * work.log_det_G
        return value - work.log_weights

    def vcov_beta(self, phi: np.ndarray) -> np.ndarray:
        """``V_beta = sigma^2 (RX'RX)^-1`` at ``phi`` (original scale, ``(p, p)``)."""
        F = self._work.vcov_factor(self._solution(phi[:-1]).RX, float(phi[-1]))
        return F @ F.T

    # Derivatives are taken in the working coordinates phi_w = (theta_w, sigma / scale)
    # of bayesmix.ml.working, where every parameter is of order one whatever the units
    # of the data (a covariate in nanometres makes its theta 1e-9 in original units).
    # phi_w is a linear map of phi, so Satterthwaite's df, 2 v^2 / (g'A g), is the same
    # in either: g and A transform together.
    @cached_property
    def _to_working(self) -> np.ndarray:
        work = self._work
        return np.append(np.asarray(work.theta_scale, dtype=float), 1.0 / work.scale)

    @cached_property
    def phi_w(self) -> np.ndarray:
        """:attr:`phi` in working coordinates."""
        return self.phi * self._to_working

    def _from_working(self, phi_w: np.ndarray) -> np.ndarray:
        return np.asarray(phi_w, dtype=float) / self._to_working

    @cached_property
    def hessian(self) -> np.ndarray:
        """Hessian of :meth:`deviance` at :attr:`phi_w`, in working coordinates."""
        return hessian(lambda x: self.deviance(self._from_working(x)), self.phi_w)

    @cached_property
    def covariance(self) -> np.ndarray:
        """``A = 2 H^-1``, the asymptotic covariance of ``phi_w`` (working coordinates).

        Where ``H`` is not positive definite (a variance on its boundary, or a fit
        short of the optimum) only its eigenvalues above 1e-6 are inverted, as
        lmerTest's ``vcov_varpar`` does, with a warning: the degrees of freedom then
        rest on the directions the likelihood curves in.
        """
        values, vectors = np.linalg.eigh(self.hessian)
        keep = values > 1e-6
        if not keep.all():
            warn(
                "The Hessian of the criterion in (theta, sigma) is not positive definite "
                f"(smallest eigenvalue {values.min():.3g}): a variance is at or near zero. "
                "The Satterthwaite degrees of freedom use its positive part, as lmerTest's "
                "do; compare with Kenward-Roger (ddf='Kenward-Roger') or simplify the "
                "random part.",
                SingularFitWarning,
            )
        return 2.0 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T

    @cached_property
    def vcov_jacobian(self) -> np.ndarray:
        """``J[i] = d V_beta / d phi_w_i`` at :attr:`phi_w`, shape ``(k, p, p)``."""
        return jacobian(lambda x: self.vcov_beta(self._from_working(x)), self.phi_w)


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
