"""Kenward and Roger's (1997) adjusted covariance of ``beta`` and denominator degrees of freedom.

The marginal covariance ``Sigma = sum_j gamma_j G_j`` is linear in the variance
components ``gamma`` (each entry of each random-effects covariance, and
``sigma^2``), which is the parameterisation pbkrtest uses and in which Kenward
and Roger's second-derivative term vanishes. With ``Phi = (X' Sigma^-1 X)^-1``:

    P_i  = -X' Sigma^-1 G_i Sigma^-1 X
    Q_ij =  X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X
    I_ij =  tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j)
    W    =  2 I^-1                   (covariance of gamma; I is twice the information)
    Phi_A = Phi + 2 Phi [sum_ij W_ij (Q_ij - P_i Phi P_j)] Phi

and a hypothesis ``L beta = 0`` of rank ``q`` gets the scaled statistic
``lambda F`` on ``(q, m)`` degrees of freedom from the moments ``A1``, ``A2``
of Kenward and Roger's equations. The matrices come from
:mod:`.kr_matrices` through ``q x q`` algebra (``q`` random effects; pbkrtest
forms ``n x n`` ones); fits with more than :data:`MAX_EFFECTS` random effects
are refused.

Notation
--------
gamma : variance components; G_j : dSigma/dgamma_j; Phi : unadjusted V_beta;
Phi_A : adjusted V_beta; q : rank of L; m : denominator degrees of freedom;
lambda : F scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError
from bayesmix.inference.kr_matrices import kenward_roger_matrices
from bayesmix.inference.satterthwaite import FTest, independent_contrasts, wald_f

__all__ = ["MAX_EFFECTS", "KenwardRoger"]

#: Most random effects for which the q x q matrices of the adjustment are formed.
MAX_EFFECTS = 4000


@dataclass(frozen=True, eq=False)
class KenwardRoger:
    """The Kenward–Roger quantities of one REML fit of a linear mixed model."""

    result: Any

    @classmethod
    def of(cls, result: Any) -> KenwardRoger:
        """Check that the fit qualifies, then build (the matrices are formed lazily)."""
        design = result.design
        if result.method != "REML":
            raise ArgumentError(
                "Kenward-Roger degrees of freedom are defined for REML fits (lmerTest refuses "
                "them for ML fits too): refit with fit.update(method='REML'), or use "
                "ddf='Satterthwaite'."
            )
        if design.weights is not None or result.residual_structure is not None:
            raise ArgumentError(
                "Kenward-Roger degrees of freedom are not available for fits with prior "
                "weights or residual structures; use ddf='Satterthwaite'."
            )
        q = sum(block.n_levels * block.n_terms for block in design.blocks)
        if q > MAX_EFFECTS:
            raise ArgumentError(
                f"Kenward-Roger forms dense {q} x {q} matrices (one per variance component) "
                f"for this fit's {q} random effects; it is limited to {MAX_EFFECTS}. Use "
                "ddf='Satterthwaite', which scales to large models."
            )
        return cls(result)

    @cached_property
    def _parts(self) -> dict:
        est = self.result.estimates
        m = kenward_roger_matrices(self.result.design, est.theta, float(est.sigma))
        Phi, P, Q = m["Phi"], m["P"], m["Q"]
        k = len(P)
        info = np.empty((k, k))
        for i in range(k):
            for j in range(i + 1):
                info[i, j] = info[j, i] = (
                    m["K"][i, j] - 2.0 * np.sum(Phi * Q[i][j]) + np.sum((Phi @ P[i]) * (P[j] @ Phi))
                )
        W = 2.0 * np.linalg.pinv(info)
        U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(k) for j in range(k))
        Phi_A = Phi + 2.0 * Phi @ U @ Phi
        return dict(Phi=Phi, Phi_A=(Phi_A + Phi_A.T) / 2.0, P=P, W=W)

    @property
    def vcov_adjusted(self) -> np.ndarray:
        """Kenward and Roger's adjusted ``V_beta`` (pbkrtest's ``vcovAdj``)."""
        return self._parts["Phi_A"]

    def _moments(self, L: np.ndarray) -> tuple[float, float]:
        parts = self._parts
        Phi, P, W = parts["Phi"], parts["P"], parts["W"]
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        U = [Theta @ Phi @ Pi @ Phi for Pi in P]
        traces = np.array([np.trace(Ui) for Ui in U])
        A1 = float(traces @ W @ traces)
        cross = np.array([[np.sum(Ui * Uj.T) for Uj in U] for Ui in U])
        A2 = float(np.sum(W * cross))
        return A1, A2

    def df_and_scale(self, L: np.ndarray) -> tuple[float, float]:
        """Denominator degrees of freedom ``m`` and F scaling ``lambda`` for ``L`` (full rank)."""
        q = L.shape[0]
        A1, A2 = self._moments(L)
        if A2 == 0.0:
            return np.inf, 1.0  # V_beta does not depend on the variance components
        B = (A1 + 6.0 * A2) / (2.0 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        denominator = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2 - g) / denominator
        E_star = 1.0 / (1.0 - A2 / q)
        V_star = (2.0 / q) * (1.0 + c1 * B) / ((1.0 - c2 * B) ** 2 * (1.0 - c3 * B))
        rho = V_star / (2.0 * E_star**2)
        m = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scale = 1.0 if abs(m - 2.0) < 1e-2 else m / (E_star * (m - 2.0))
        return m, scale

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> FTest:
        """Kenward and Roger's scaled F test of ``L beta = 0``.

        ``sum_sq`` and ``mean_sq`` follow lmerTest: ``F q sigma^2`` and ``F sigma^2``.
        """
        L, _ = independent_contrasts(np.atleast_2d(L), self._parts["Phi"])
        _, _, F_plain = wald_f(L, beta, self.vcov_adjusted)
        m, scale = self.df_and_scale(L)
        return FTest.of(scale * F_plain, L.shape[0], m, float(self.result.estimates.sigma) ** 2)
