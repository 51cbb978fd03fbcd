"""PIRLS's whole Newton loop compiled (numba): one call per Laplace evaluation.

The same iteration as :meth:`bayesmix.ml.glmm_laplace.LaplaceProblem.pirls` runs in
Python against :class:`~bayesmix.ml.pirls_system.NumpySystem` (the reference, and
the route for models whose dense part is large): Newton steps on the penalised
deviance ``-2 sum l_i + ||u||^2`` with the expected information as weights (with
zero inflation the observed ``-d2`` while it keeps the system positive definite,
else ``max(-d2, 0)``), step halving, and convergence when the full step is below
``step_tol`` (a full step below ``newton_tol`` where the weights are the Hessian's,
whose next step would be of its square); then ``log det`` at the Laplace weights.
With a few hundred rows the Python loop's call overhead was half of a fit's time.

Status codes: 0 converged or stopped, 1 no finite start, 2 no step (the weights
leave the system indefinite), 3 ``log det`` at the Laplace weights undefined.
``tests/test_glmm_kernel.py`` checks the loop against the Python one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from bayesmix.ml.pirls_blocks import schur_solve
from bayesmix.ml.pirls_kernel import FAMILY_CODES, LINK_CODES, evaluate, z_times, zt_times
from bayesmix.spec.response_likelihood import ResponseLikelihood

__all__ = ["KernelData", "pirls_loop"]

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class KernelData:
    """The response as :func:`bayesmix.ml.pirls_kernel.evaluate` takes it."""

    family: int
    link: int
    y: np.ndarray
    n: np.ndarray
    s: np.ndarray  # binomial successes (0 for other families)
    const: np.ndarray  # the part of each row's log-likelihood free of mu

    @classmethod
    def of(cls, response: ResponseLikelihood) -> KernelData:
        family = response.family
        return cls(
            FAMILY_CODES[family.name],
            LINK_CODES[family.link.name],
            np.ascontiguousarray(response.y),
            np.ascontiguousarray(response.n, dtype=float),
            np.ascontiguousarray(response.s, dtype=float),
            np.ascontiguousarray(response.constant, dtype=float),
        )


@njit(cache=True, error_model="numpy")
def _penalised(
    family, link, y, n, s, const, disp, zi, offset, X, beta, IDX, VAL, u, eta, mu, d1, d2, fisher
):
    """Fill ``eta`` and the derivatives at ``(u, beta)``; return the penalised deviance."""
    p = X.shape[1]
    for i in range(eta.shape[0]):
        acc = offset[i]
        for c in range(p):
            acc += X[i, c] * beta[c]
        eta[i] = acc
    z_times(IDX, VAL, u, eta)
    total = evaluate(family, link, y, n, s, const, eta, disp, zi, True, mu, d1, d2, fisher)
    value = -2.0 * total + np.dot(u, u)
    return value if np.isfinite(value) else np.inf


@njit(cache=True, error_model="numpy")
def pirls_loop(
    family, link, y, n, s, const, disp, zi, offset, X, beta0, IDX, VAL,
    level, k1, m1, idx1, val1, idx_r, val_r, q_r, index1, index_r, q, lvl_ptr, lvl_rows,
    u0, update_beta, observed, max_iter, step_tol, newton_tol, max_weight,
):  # fmt: skip
    """Conditional modes from ``u0`` (and ``beta`` when ``update_beta``); returns
    ``(u, beta, eta, mu, objective, converged, iterations, W, status)``."""
    rows = y.shape[0]
    p = X.shape[1]
    border = X if update_beta else X[:, :0]
    p_step = p if update_beta else 0
    inflated = zi.shape[0] > 0
    u, beta = u0.copy(), beta0.copy()
    eta, mu = np.empty(rows), np.empty(rows)
    d1, d2, fisher = np.empty(rows), np.empty(rows), np.empty(rows)
    t_eta, t_mu = np.empty(rows), np.empty(rows)
    t_d1, t_d2, t_fisher = np.empty(rows), np.empty(rows), np.empty(rows)
    W = np.empty(rows)
    args = (family, link, y, n, s, const, disp, zi, offset, X)
    current = _penalised(*args, beta, IDX, VAL, u, eta, mu, d1, d2, fisher)
    if not np.isfinite(current):  # a warm start from elsewhere that does not fit here
        u[:] = 0.0
        current = _penalised(*args, beta, IDX, VAL, u, eta, mu, d1, d2, fisher)
    if not np.isfinite(current):
        return u, beta, eta, mu, np.inf, False, 0, W, 1
    converged, iterations = False, 0
    g = np.empty(q + p_step)
    while iterations < max_iter:
        iterations += 1
        g[:q] = zt_times(IDX, VAL, d1, q) - u
        for c in range(p_step):
            acc = 0.0
            for i in range(rows):
                acc += X[i, c] * d1[i]
            g[q + c] = acc
        ok = False
        if inflated:  # Newton's own weights while A stays positive definite
            for i in range(rows):
                W[i] = min(-d2[i], max_weight)
            step, _, ok = schur_solve(
                W, g, level, k1, m1, idx1, val1, idx_r, val_r, q_r, border, p_step,
                index1, index_r, q, lvl_ptr, lvl_rows,
            )  # fmt: skip
            ok = ok and np.all(np.isfinite(step))
        if not ok:
            for i in range(rows):
                w = max(-d2[i], 0.0) if inflated else max(fisher[i], _EPS)
                W[i] = min(w, max_weight)
            step, _, ok = schur_solve(
                W, g, level, k1, m1, idx1, val1, idx_r, val_r, q_r, border, p_step,
                index1, index_r, q, lvl_ptr, lvl_rows,
            )  # fmt: skip
            if not ok or not np.all(np.isfinite(step)):
                return u, beta, eta, mu, np.inf, False, iterations, W, 2
        scale, accepted = 1.0, False
        u_new, beta_new = u.copy(), beta.copy()
        value = np.inf
        for _ in range(20):
            for j in range(q):
                u_new[j] = u[j] + scale * step[j]
            for c in range(p_step):
                beta_new[c] = beta[c] + scale * step[q + c]
            value = _penalised(*args, beta_new, IDX, VAL, u_new, t_eta, t_mu, t_d1, t_d2, t_fisher)
            if value <= current + 1e-12 * abs(current):
                accepted = True
                break
            scale /= 2.0
        if not accepted:
            break
        u, beta, current = u_new, beta_new, value
        eta, t_eta = t_eta, eta
        mu, t_mu = t_mu, mu
        d1, t_d1 = t_d1, d1
        d2, t_d2 = t_d2, d2
        fisher, t_fisher = t_fisher, fisher
        # a full step below newton_tol ends an exact Newton iteration (canonical links)
        if np.max(np.abs(step)) < (newton_tol if scale == 1.0 else step_tol):
            converged = True
            break
    for i in range(rows):
        W[i] = -d2[i] if observed else max(fisher[i], _EPS)
    _, log_det, ok = schur_solve(
        W, np.zeros(q), level, k1, m1, idx1, val1, idx_r, val_r, q_r, X[:, :0], 0,
        index1, index_r, q, lvl_ptr, lvl_rows,
    )  # fmt: skip
    if not ok:
        return u, beta, eta, mu, np.inf, converged, iterations, W, 3
    return u, beta, eta, mu, current + log_det, converged, iterations, W, 0
