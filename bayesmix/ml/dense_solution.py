"""Estimates of a small model from its dense factor (:mod:`bayesmix.ml.dense_kernel`).

:class:`DenseKernel` is a :class:`~bayesmix.ml.dense_kernel.DenseCriterion`
that also answers what :func:`bayesmix.ml.fit.fit_estimates` asks of the
general kernel (:class:`~bayesmix.ml.deviance.ProfiledDeviance`) at the
optimum: the solution (``beta``, the modes, ``sigma``, ``R_X``), lme4's
conditional variances and the fitted values, and the block layout. For a small
model, building the general kernel and solving with it cost a millisecond,
more than the whole search; ``tests/test_ml_gradient.py`` checks that both
give the same estimates.

Notation
--------
As :mod:`bayesmix.ml.dense_kernel`: the factor ``L`` of ``A`` has blocks
``L_Z`` (q x q), ``R = L_Z^-1 Lambda'Z'[X, y]`` (transposed, below it) and
``L_X`` (p x p) with the last row ``r`` over it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla

from bayesmix.errors import FitError
from bayesmix.ml.dense_kernel import DenseCriterion, dense_factor
from bayesmix.ml.pls_solution import PLSSolution, fitted_values
from bayesmix.spec.covariance import (
    factors_from_theta,
    n_theta,
    stacked_initial_theta,
    stacked_lower_bounds,
)

__all__ = ["DenseKernel"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def _upper_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``L^-T b`` for lower-triangular ``L`` (LAPACK directly: scipy's checks cost more)."""
    x, info = sla.lapack.dtrtrs(L, b, lower=1, trans=1)
    if info:  # pragma: no cover - L is a valid factor
        raise FitError(f"a triangular solve failed (LAPACK info {info})")
    return x


class DenseKernel(DenseCriterion):
    """The dense criterion with the general kernel's solution methods.

    Parameters
    ----------
    y, X, blocks, gradient
        As :class:`~bayesmix.ml.dense_kernel.DenseCriterion`.
    """

    def __init__(self, y, X, blocks, gradient: bool = True) -> None:
        super().__init__(y, X, blocks, gradient)
        self._X = np.asarray(X, dtype=float).reshape(len(y), -1)
        self._blocks = [(np.asarray(c), np.asarray(z), int(m), str(kd)) for c, z, m, kd in blocks]
        self.kinds = [b[3] for b in self._blocks]
        self.sizes = [b[1].reshape(len(y), -1).shape[1] for b in self._blocks]
        self.n_levels = [b[2] for b in self._blocks]
        self.n_theta = sum(n_theta(kd, k) for kd, k in zip(self.kinds, self.sizes))
        self.n_obs, self.n_fixed = self.n, self.p
        self._last = None  # (theta, factor) of the last solution

    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of ``theta`` (0 on diagonals of the factors)."""
        return stacked_lower_bounds(self.kinds, self.sizes)

    @property
    def initial_theta(self) -> np.ndarray:
        """lme4's start: 1 on diagonals, 0 off the diagonals."""
        return stacked_initial_theta(self.kinds, self.sizes)

    @property
    def dense_order(self) -> int:
        """0: no BLAS-sized dense factor (the factorisation is compiled)."""
        return 0

    def _factor(self, theta: np.ndarray) -> np.ndarray:
        theta = np.ascontiguousarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1]  # solve() and conditional_variances() at the same theta
        L, ok = dense_factor(theta, self._G, self._ZXy, self._XyXy, *self._index)
        if not ok:  # pragma: no cover - A = [M, .; ., Xy'Xy] is PD for full-rank X
            raise FitError(f"the mixed-model system is not positive definite at theta={theta}")
        self._last = (theta.copy(), L)
        return L

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float]:
        """``(log|L|^2, pwrss, log|RX|^2)`` at ``theta`` without solving for the effects."""
        L = self._factor(theta)
        q, p = self.n_effects, self.p
        diagonal = np.diag(L)
        ldL2 = 2.0 * float(np.log(diagonal[:q]).sum())
        ldRX2 = 2.0 * float(np.log(diagonal[q : q + p]).sum()) if p else 0.0
        return ldL2, max(float(L[q + p, q + p]) ** 2, 1e-300), ldRX2

    def solve(self, theta: np.ndarray, reml: bool = True) -> PLSSolution:
        """Criterion, ``beta``, ``u``, ``b = Lambda u``, ``sigma`` and ``R_X`` at ``theta``."""
        L = self._factor(theta)
        q, p, n = self.n_effects, self.p, self.n
        L_Z, R = L[:q, :q], L[q:, :q]
        L_X, r = L[q : q + p, q : q + p], L[q + p, q : q + p]
        pwrss = max(float(L[q + p, q + p]) ** 2, 1e-300)
        beta = _upper_solve(L_X, r) if p else np.zeros(0)
        u_all = _upper_solve(L_Z, R[p] - R[:p].T @ beta)
        T = factors_from_theta(theta, self.kinds, self.sizes)
        u = np.split(u_all, np.cumsum([m * k for m, k in zip(self.n_levels, self.sizes)])[:-1])
        u = tuple(ui.reshape(m, k) for ui, m, k in zip(u, self.n_levels, self.sizes))
        ldL2 = 2.0 * float(np.log(np.diag(L_Z)).sum())
        ldRX2 = 2.0 * float(np.log(np.diag(L_X)).sum()) if p else 0.0
        dof = n - p if reml else n
        criterion = ldL2 + dof * (1.0 + _LOG_2PI + np.log(pwrss / dof)) + (ldRX2 if reml else 0)
        return PLSSolution(
            theta=np.asarray(theta, dtype=float).copy(),
            reml=reml,
            criterion=float(criterion),
            beta=beta,
            u=u,
            b=tuple(ui @ Ti.T for ui, Ti in zip(u, T)),
            sigma=float(np.sqrt(pwrss / dof)),
            pwrss=pwrss,
            ldL2=ldL2,
            ldRX2=ldRX2,
            RX=L_X.T.copy(),
        )

    def conditional_variances(self, theta: np.ndarray, sigma: float) -> tuple[np.ndarray, ...]:
        """lme4's ``condVar``: ``sigma^2 Lambda M^-1 Lambda'``, one ``(m, k, k)`` per block."""
        q = self.n_effects
        L_Z_inv, info = sla.lapack.dtrtri(self._factor(theta)[:q, :q], lower=1)
        if info:  # pragma: no cover - a valid factor
            raise FitError(f"inverting the random-effects factor failed (LAPACK info {info})")
        M_inv = L_Z_inv.T @ L_Z_inv
        out, start = [], 0
        for m, k, T in zip(
            self.n_levels, self.sizes, factors_from_theta(theta, self.kinds, self.sizes)
        ):
            sub = M_inv[start : start + m * k, start : start + m * k].reshape(m, k, m, k)
            P = sub[np.arange(m), :, np.arange(m), :]
            out.append(sigma**2 * (T[None] @ P @ T.T[None]))
            start += m * k
        return tuple(out)

    def fitted(self, beta: np.ndarray, b: Sequence[np.ndarray]) -> np.ndarray:
        """Conditional fitted values ``X beta + sum_i rowsum(Z_i * b_i[codes_i])``."""
        return fitted_values(self._X, self._blocks, beta, b)
