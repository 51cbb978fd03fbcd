"""What one PIRLS run at a fixed ``theta`` needs, in two implementations.

:class:`~bayesmix.ml.glmm_laplace.LaplaceProblem` runs PIRLS's Newton iterations
against a *system*: the penalised deviance at ``(u, beta)``, the response's
derivatives in ``eta``, the gradient in ``u`` (and ``beta``), a solve with the
weighted blocked matrix and its log-determinant. :class:`CompiledSystem` does
each in one numba call (:mod:`bayesmix.ml.pirls_kernel`) when the dense part of
the blocked matrix is small enough for its dense accumulation;
:class:`NumpySystem` does the same with numpy and scipy.sparse
(:mod:`bayesmix.ml.glmm_blocked`) for models with very many crossed levels.
Both give the same numbers to rounding (``tests/test_glmm_kernel.py``).
"""

from __future__ import annotations

import numpy as np

from bayesmix.errors import FitError
from bayesmix.ml import pirls_kernel as kernel
from bayesmix.ml.glmm_blocked import ZLambda

__all__ = ["CompiledSystem", "NumpySystem", "system_for"]

_EMPTY = np.zeros(0)


class NumpySystem:
    """PIRLS's operations with numpy (the reference, and the route for large rests)."""

    def __init__(self, problem, theta: np.ndarray) -> None:
        self.problem = problem
        self.ZL = ZLambda(problem.pattern, problem.factors(theta))

    def penalised(self, u: np.ndarray, beta: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.problem
        eta = p.offset + p.X @ beta + self.ZL.times(u)
        with np.errstate(all="ignore"):
            value = -2.0 * float(np.sum(p.response.loglik(eta)[1])) + float(u @ u)
        return (value if np.isfinite(value) else np.inf), eta

    def derivatives(self, eta: np.ndarray):
        """``mu``, each row's log-likelihood, ``d1``, ``d2`` and the expected information."""
        response = self.problem.response
        with np.errstate(all="ignore"):
            mu, ll, d1, d2 = response.derivatives(eta)
            fisher = response.fisher_weights(eta, mu)
        return mu, ll, d1, d2, fisher

    def gradient(self, d1: np.ndarray, u: np.ndarray, with_beta: bool) -> np.ndarray:
        g = self.ZL.t_times(d1) - u
        return np.concatenate([g, self.problem.X.T @ d1]) if with_beta else g

    def solve(self, W: np.ndarray, g: np.ndarray, with_beta: bool) -> np.ndarray:
        return self.ZL.factor(W, self.problem.X if with_beta else None).solve(g)

    def log_det(self, W: np.ndarray) -> float:
        return self.ZL.factor(W).log_det_random


class CompiledSystem(NumpySystem):
    """PIRLS's operations as compiled kernels (one call each)."""

    def __init__(self, problem, theta: np.ndarray) -> None:
        super().__init__(problem, theta)
        pat = problem.pattern
        self.VAL = np.ascontiguousarray(np.hstack(self.ZL.V))
        self.val1 = np.ascontiguousarray(self.ZL.val1)
        self.val_r = np.ascontiguousarray(self.ZL.val_r)
        self.level = pat.codes[pat.first]
        r = problem.response
        self.zi = _EMPTY if r.zi_eta is None else np.ascontiguousarray(r.zi_eta, dtype=float)
        self.disp = 0.0 if r.dispersion is None else float(r.dispersion)
        self.X = problem.X_c
        self.no_X = np.zeros((len(problem.y), 0))

    def _evaluate(self, eta, derivatives, mu=_EMPTY, d1=_EMPTY, d2=_EMPTY, fisher=_EMPTY):
        p = self.problem
        k = p.kernel_data
        with np.errstate(all="ignore"):
            return kernel.evaluate(
                k.family, k.link, k.y, k.n, k.s, k.const, eta, self.disp, self.zi,
                derivatives, mu, d1, d2, fisher,
            )  # fmt: skip

    def penalised(self, u, beta):
        """The penalised deviance; the derivatives at the same ``eta`` come in the same
        pass and are kept for :meth:`derivatives` (a step is usually accepted, and the
        next iteration needs them there)."""
        p = self.problem
        eta = p.offset + p.X @ beta
        kernel.z_times(p.pattern.IDX, self.VAL, u, eta)
        parts = self._derivatives(eta)
        value = -2.0 * parts[1] + float(u @ u)
        self._kept = (eta, parts)
        return (value if np.isfinite(value) else np.inf), eta

    def derivatives(self, eta):
        kept = getattr(self, "_kept", None)
        if kept is not None and kept[0] is eta:
            return kept[1]
        return self._derivatives(eta)

    def _derivatives(self, eta):
        n = len(eta)
        mu, d1, d2, fisher = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        total = self._evaluate(eta, True, mu, d1, d2, fisher)
        return mu, total, d1, d2, fisher

    def gradient(self, d1, u, with_beta):
        p = self.problem
        g = kernel.zt_times(p.pattern.IDX, self.VAL, d1, p.q) - u
        return np.concatenate([g, p.X.T @ d1]) if with_beta else g

    def _solve(self, W, g, with_beta):
        pat = self.problem.pattern
        X = self.X if with_beta else self.no_X
        try:
            x, log_det, ok = kernel.schur_solve(
                np.ascontiguousarray(W), g, self.level, pat.k1, pat.m1, pat.idx1, self.val1,
                pat.idx_r, self.val_r, pat.q_r, X, X.shape[1], pat.index1, pat.index_r, pat.q,
            )  # fmt: skip
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
            raise FitError(f"the penalised system is not positive definite ({error}).") from None
        if not ok:
            raise FitError("the penalised system is not positive definite.")
        return x, log_det

    def solve(self, W, g, with_beta):
        return self._solve(W, g, with_beta)[0]

    def log_det(self, W):
        return float(self._solve(W, np.zeros(self.problem.q), False)[1])


def system_for(problem, theta: np.ndarray) -> NumpySystem:
    """The compiled system where its dense accumulation fits, numpy's otherwise."""
    if problem.pattern.dense:
        return CompiledSystem(problem, theta)
    return NumpySystem(problem, theta)
