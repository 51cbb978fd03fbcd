"""What one PIRLS run at a fixed ``theta`` needs, with numpy.

:meth:`~bayesmix.ml.glmm_laplace.LaplaceProblem.pirls` runs PIRLS's Newton
iterations against a *system*: the penalised deviance at ``(u, beta)``, the
response's derivatives in ``eta``, the gradient in ``u`` (and ``beta``), a solve
with the weighted blocked matrix and its log-determinant. :class:`NumpySystem`
does them with numpy and scipy.sparse (:mod:`bayesmix.ml.glmm_blocked`): the
reference, and the route for models with very many crossed levels. Where the
dense part is small the whole loop runs compiled (:mod:`bayesmix.ml.pirls_loop`);
``tests/test_glmm_kernel.py`` checks that both give the same numbers.
"""

from __future__ import annotations

import numpy as np

from bayesmix.ml.glmm_blocked import ZLambda

__all__ = ["NumpySystem"]


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
