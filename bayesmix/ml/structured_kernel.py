"""Compiled profiled criterion of a model with at most one random-effects block.

A fit with a residual structure evaluates the criterion on freshly whitened
arrays hundreds of times, so the cross-products cannot be formed once as
:class:`~bayesmix.ml.deviance.ProfiledDeviance` forms them; in numpy the
evaluation was some fifty small array operations whose call overhead set the
time. Here one pass over the rows accumulates the per-level cross-products and
a second over the levels factors them: the same arithmetic as the general
kernel restricted to one block (nlme's nested models with one level, and
``gls``). ``tests/test_residual_ml.py`` checks that both agree.

Notation
--------
W : (n, 1 + p + k) whitened working arrays, columns ``[y, X, Z]``;
T : (k, k) lower-triangular relative covariance factor of the block;
for level j: ``L_j L_j' = T' Z_j' Z_j T + I``, ``R_j = L_j^-1 T' Z_j' [X, y]``;
``M = [X, y]'[X, y] - sum_j R_j' R_j``, ``M_XX = L_X L_X'``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.spec.covariance import theta_positions

__all__ = [
    "OneBlockCriterion",
    "cholesky_in_place",
    "criterion_from_products",
    "cross_products",
    "one_block_criterion",
]

_LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def cholesky_in_place(A: np.ndarray, size: int) -> bool:
    """Lower Cholesky factor of ``A[:size, :size]`` in place; ``False`` if not PD."""
    for j in range(size):
        d = A[j, j]
        for m in range(j):
            d -= A[j, m] * A[j, m]
        if d <= 0.0:
            return False
        d = math.sqrt(d)
        A[j, j] = d
        for i in range(j + 1, size):
            s = A[i, j]
            for m in range(j):
                s -= A[i, m] * A[j, m]
            A[i, j] = s / d
    return True


@njit(cache=True)
def cross_products(W: np.ndarray, codes: np.ndarray, n_levels: int, p: int):
    """Per-level ``Z_j'Z_j`` (m, k, k), ``Z_j'[X, y]`` (m, k, p + 1) and ``[X, y]'[X, y]``.

    Only the upper triangles of the ``Z_j'Z_j`` and the ``[X, y]'[X, y]`` are
    filled; :func:`criterion_from_products` reads no more.
    """
    n, c = W.shape
    k = c - 1 - p
    q = p + 1  # [X, y]: X first, y last, as lme4 orders them
    ZZ = np.zeros((n_levels, k, k))
    ZXy = np.zeros((n_levels, k, q))
    M = np.zeros((q, q))
    xy = np.empty(q)
    for i in range(n):
        for a in range(p):
            xy[a] = W[i, 1 + a]
        xy[p] = W[i, 0]
        for a in range(q):
            va = xy[a]
            for b in range(a, q):
                M[a, b] += va * xy[b]
        if k:
            j = codes[i]
            for t in range(k):
                zt = W[i, 1 + p + t]
                for s in range(t, k):
                    ZZ[j, t, s] += zt * W[i, 1 + p + s]
                for a in range(q):
                    ZXy[j, t, a] += zt * xy[a]
    return ZZ, ZXy, M


@njit(cache=True)
def criterion_from_products(
    ZZ: np.ndarray, ZXy: np.ndarray, M_in: np.ndarray, n: int, T: np.ndarray, reml: bool
) -> float:
    """lme4's profiled deviance (``reml=False``) or REML criterion from the cross-products
    of :func:`cross_products`; ``inf`` where a factor is not positive definite."""
    n_levels, k, q = ZXy.shape
    p = q - 1
    M = np.empty((q, q))
    for a in range(q):
        for b in range(a, q):
            M[a, b] = M_in[a, b]
            M[b, a] = M_in[a, b]
    ld_L = 0.0
    S = np.empty((k, k))
    TZZ = np.empty((k, k))
    Zj = np.empty((k, k))
    R = np.empty((k, q))
    RR = np.zeros((q, q))  # sum_j R_j'R_j, subtracted from M once (as the general kernel)
    for j in range(n_levels if k else 0):
        for t in range(k):  # symmetric Z_j'Z_j
            for s in range(t, k):
                Zj[t, s] = ZZ[j, t, s]
                Zj[s, t] = ZZ[j, t, s]
        for t in range(k):  # S = T' Z_j'Z_j T + I
            for s in range(k):
                acc = 0.0
                for m in range(t, k):  # T lower: T[m, t] = 0 for m < t
                    acc += T[m, t] * Zj[m, s]
                TZZ[t, s] = acc
        for t in range(k):
            for s in range(t + 1):
                acc = 0.0
                for m in range(s, k):
                    acc += TZZ[t, m] * T[m, s]
                S[t, s] = acc + (1.0 if t == s else 0.0)
        if not cholesky_in_place(S, k):
            return np.inf
        for t in range(k):  # R = L^-1 T' Z_j'[X, y]
            for a in range(q):
                acc = 0.0
                for m in range(t, k):
                    acc += T[m, t] * ZXy[j, m, a]
                R[t, a] = acc
        for t in range(k):
            ld_L += 2.0 * math.log(S[t, t])
            for a in range(q):
                acc = R[t, a]
                for m in range(t):
                    acc -= S[t, m] * R[m, a]
                R[t, a] = acc / S[t, t]
        for a in range(q):
            for b in range(a, q):
                acc = 0.0
                for t in range(k):
                    acc += R[t, a] * R[t, b]
                RR[a, b] += acc
    for a in range(q):
        for b in range(a, q):
            M[a, b] -= RR[a, b]
            if b != a:
                M[b, a] -= RR[a, b]
    ld_X = 0.0
    if p:
        if not cholesky_in_place(M, p):
            return np.inf
        for a in range(p):
            ld_X += 2.0 * math.log(M[a, a])
    pwrss = M[p, p]  # r = L_X^-1 M_Xy; pwrss = M_yy - r'r
    r = np.empty(p)
    for a in range(p):
        acc = M[p, a]
        for m in range(a):
            acc -= M[a, m] * r[m]
        r[a] = acc / M[a, a]
        pwrss -= r[a] * r[a]
    pwrss = max(pwrss, 1e-300)
    if reml:
        dof = n - p
        return ld_L + ld_X + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof))
    return ld_L + n * (1.0 + _LOG_2PI + math.log(pwrss / n))


@njit(cache=True)
def _criterion_at_theta(theta, rows, cols, ZZ, ZXy, M, n, reml):
    k = ZZ.shape[1]
    T = np.zeros((k, k))
    for i in range(theta.size):
        T[rows[i], cols[i]] = theta[i]
    return criterion_from_products(ZZ, ZXy, M, n, T, reml)


def one_block_criterion(
    W: np.ndarray, codes: np.ndarray, n_levels: int, p: int, T: np.ndarray, reml: bool
) -> float:
    """The criterion of whitened arrays ``W = [y, X, Z]`` (one pass, then the levels)."""
    ZZ, ZXy, M = cross_products(W, codes, n_levels, p)
    return criterion_from_products(ZZ, ZXy, M, W.shape[0], T, reml)


class OneBlockCriterion:
    """lme4's criterion of a fixed design with one random-effects block, compiled.

    The cross-products are formed once; each evaluation is the level loop of
    :func:`criterion_from_products` (about 5 microseconds for sleepstudy against
    170 for the general kernel, whose blocked bookkeeping one block does not need).

    Parameters
    ----------
    y, X : ndarray
    codes, Z, n_levels, kind : the block (as :class:`~bayesmix.ml.deviance.ProfiledDeviance`)
    """

    def __init__(self, y, X, codes, Z, n_levels: int, kind: str) -> None:
        W = np.column_stack([y, X, Z]).astype(float)
        self.n, self.p, self.k = W.shape[0], X.shape[1], Z.shape[1]
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        self._products = cross_products(W, codes, int(n_levels), self.p)
        rows, cols = theta_positions(kind, self.k)
        self._rows, self._cols = rows.astype(np.int64), cols.astype(np.int64)

    def __call__(self, theta: np.ndarray, reml: bool = True) -> float:
        ZZ, ZXy, M = self._products
        return _criterion_at_theta(
            np.asarray(theta, dtype=float), self._rows, self._cols, ZZ, ZXy, M, self.n, reml
        )
