"""Compiled profiled criterion of a small model and its exact gradient (numba).

With few random effects in all (``q`` up to :data:`DENSE_MAX_EFFECTS`: sleepstudy
36, Penicillin 30, the Arabidopsis slope model 66) the whole penalised
least-squares system fits in one small dense matrix,

    A = [Lambda'G Lambda + I   Lambda'Z'[X, y]]   = L L',
        [[X, y]'Z Lambda        [X, y]'[X, y]  ]

and one compiled Cholesky factorisation of ``A`` gives the criterion: no
per-block bookkeeping in Python, which was most of a small model's
evaluation in :class:`~bayesmix.ml.deviance.ProfiledDeviance`.

The same factor gives the gradient with respect to ``theta`` in closed form
(Bates et al. 2015; the derivatives of ``log|L_Z|^2``, of the penalised
residual sum of squares ``r^2`` and of ``log|R_X|^2``). With
``E_i = dLambda / dtheta_i``, ``M = Lambda'G Lambda + I``, ``H = G Lambda``,
the modes ``u``, ``beta``, the residual ``e = y - X beta - Z Lambda u``,
``P = M^-1 Lambda'Z'X`` and ``Q = Z'X - H P``:

* ``d log|M| = 2 tr(M^-1 H' E_i)``,
* ``d r^2 = -2 e'Z E_i u`` (the minimum's envelope),
* ``d log|R_X'R_X| = -2 tr((R_X'R_X)^-1 Q' E_i P)``.

None of them divides by ``theta``, so the gradient holds on the boundary
(a variance at zero) too. ``tests/test_ml_gradient.py`` checks it against
finite differences and the criterion against the general kernel.

Notation
--------
q : random effects in all; effect ``a`` belongs to block ``block[a]``, level
``l``, column ``t = column[a]``; ``base[a]`` is the effect of column 0 of the
same level. ``T_b``: lower-triangular relative covariance factor of block b,
``Lambda = blockdiag(I_{m_b} (x) T_b)``. ``G = Z'Z``, ``Xy = [X, y]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.ml.structured_kernel import cholesky_in_place
from bayesmix.spec.covariance import theta_positions

__all__ = ["DENSE_MAX_EFFECTS", "DenseCriterion"]

#: Largest ``q + p`` (random plus fixed effects) handled densely: the compiled
#: factorisation grows as the cube of it, and beyond this the blocked kernel's
#: structure pays (with 25 random effects and p = 150 the dense fit took twice as long).
DENSE_MAX_EFFECTS = 160

_LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def _factors(theta, th_block, th_row, th_col, n_blocks, k_max):
    T = np.zeros((n_blocks, k_max, k_max))
    for i in range(theta.size):
        T[th_block[i], th_row[i], th_col[i]] = theta[i]
    return T


@njit(cache=True)
def _lambda_t_rows(T, block, column, base, size, X):
    """``Lambda' X`` for ``X`` with one row per random effect."""
    q, c = X.shape
    out = np.zeros((q, c))
    for a in range(q):
        b, s, r0 = block[a], column[a], base[a]
        for t in range(s, size[b]):  # T lower: T[t, s] = 0 for t < s
            w = T[b, t, s]
            if w != 0.0:
                for j in range(c):
                    out[a, j] += w * X[r0 + t, j]
    return out


@njit(cache=True)
def _lower_inverse(L, n):
    """Inverse of the lower-triangular ``L[:n, :n]``."""
    Linv = np.zeros((n, n))
    for j in range(n):
        Linv[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for m in range(j, i):
                s += L[i, m] * Linv[m, j]
            Linv[i, j] = -s / L[i, i]
    return Linv


@njit(cache=True)
def _assemble(theta, G, ZXy, XyXy, th_block, th_row, th_col, block, column, base, size):
    """``A`` (lower triangle), ``F = Lambda'Z'[X, y]`` and ``H = G Lambda`` at ``theta``."""
    q, c = ZXy.shape
    k_max = 1
    for b in range(size.size):
        k_max = max(k_max, size[b])
    T = _factors(theta, th_block, th_row, th_col, size.size, k_max)
    # H = G Lambda = (Lambda' G)', G symmetric
    H = _lambda_t_rows(T, block, column, base, size, G).T.copy()
    LtH = _lambda_t_rows(T, block, column, base, size, H)  # Lambda' G Lambda
    F = _lambda_t_rows(T, block, column, base, size, ZXy)  # Lambda' Z'[X, y]
    A = np.zeros((q + c, q + c))
    for a in range(q):
        for b in range(a + 1):
            A[a, b] = LtH[a, b]
        A[a, a] += 1.0
    for j in range(c):
        for a in range(q):
            A[q + j, a] = F[a, j]
        for b in range(j + 1):
            A[q + j, q + b] = XyXy[j, b]
    return A, F, H


@njit(cache=True)
def dense_factor(theta, G, ZXy, XyXy, th_block, th_row, th_col, block, column, base, size):
    """The lower Cholesky factor of ``A`` at ``theta`` (upper triangle zero), and
    whether ``A`` was positive definite."""
    A, _, _ = _assemble(theta, G, ZXy, XyXy, th_block, th_row, th_col, block, column, base, size)
    return A, cholesky_in_place(A, A.shape[0])


@njit(cache=True)
def dense_criterion(
    theta, G, ZXy, XyXy, n, th_block, th_row, th_col, block, column, base, size, reml, grad
):
    """Criterion at ``theta``; fills ``grad`` (if it has ``theta``'s size) with its gradient.

    Returns ``inf`` where the system is not positive definite.
    """
    q, c = ZXy.shape
    p = c - 1
    A, F, H = _assemble(theta, G, ZXy, XyXy, th_block, th_row, th_col, block, column, base, size)
    if not cholesky_in_place(A, A.shape[0]):
        return np.inf
    ld_L = 0.0
    for a in range(q):
        ld_L += 2.0 * math.log(A[a, a])
    ld_X = 0.0
    for a in range(q, q + p):
        ld_X += 2.0 * math.log(A[a, a])
    pwrss = max(A[q + p, q + p] ** 2, 1e-300)
    dof = n - p if reml else n
    value = ld_L + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof))
    if reml:
        value += ld_X
    if grad.size != theta.size:
        return value
    # beta from L_X' beta = r (the last row of the factor)
    beta = np.zeros(p)
    for a in range(p - 1, -1, -1):
        s = A[q + p, q + a]
        for m in range(a + 1, p):
            s -= A[q + m, q + a] * beta[m]
        beta[a] = s / A[q + a, q + a]
    Linv = _lower_inverse(A, q)
    Minv = np.zeros((q, q))  # L^-T L^-1
    for a in range(q):
        for b in range(a + 1):
            s = 0.0
            for m in range(a, q):
                s += Linv[m, a] * Linv[m, b]
            Minv[a, b] = s
            Minv[b, a] = s
    rhs = np.empty(q)  # Lambda'Z'(y - X beta)
    for a in range(q):
        s = F[a, p]
        for j in range(p):
            s -= F[a, j] * beta[j]
        rhs[a] = s
    u = Minv @ rhs
    Ze = np.empty(q)  # Z'e = Z'(y - X beta) - G Lambda u
    for a in range(q):
        s = ZXy[a, p]
        for j in range(p):
            s -= ZXy[a, j] * beta[j]
        for m in range(q):
            s -= H[a, m] * u[m]
        Ze[a] = s
    if reml and p:
        P = Minv @ F[:, :p].copy()
        Q = ZXy[:, :p] - H @ P
        # C = P (R_X'R_X)^-1: solve with L_X (lower, rows q..q+p-1)
        C = np.empty((q, p))
        for a in range(q):
            w = np.empty(p)
            for j in range(p):  # forward: L_X w = P[a]'
                s = P[a, j]
                for m in range(j):
                    s -= A[q + j, q + m] * w[m]
                w[j] = s / A[q + j, q + j]
            for j in range(p - 1, -1, -1):  # backward: L_X' v = w
                s = w[j]
                for m in range(j + 1, p):
                    s -= A[q + m, q + j] * C[a, m]
                C[a, j] = s / A[q + j, q + j]
    for i in range(theta.size):
        b, t, s = th_block[i], th_row[i], th_col[i]
        d_logdet = 0.0
        d_rss = 0.0
        d_ldx = 0.0
        for a in range(q):
            if block[a] != b or column[a] != 0:
                continue
            at, as_ = a + t, a + s  # effects (l, t) and (l, s) of this level
            acc = 0.0
            for m in range(q):
                acc += Minv[as_, m] * H[at, m]
            d_logdet += acc
            d_rss += Ze[at] * u[as_]
            if reml:
                for j in range(p):
                    d_ldx += Q[at, j] * C[as_, j]
        g = 2.0 * d_logdet - 2.0 * dof * d_rss / pwrss
        if reml:
            g -= 2.0 * d_ldx
        grad[i] = g
    return value


@njit(cache=True)
def _products(codes, Z, first, size, Xy, q):
    """``G = Z'Z``, ``Z'Xy`` and ``Xy'Xy`` in one pass over the rows (both triangles)."""
    n, n_blocks = codes.shape
    c = Xy.shape[1]
    G = np.zeros((q, q))
    ZXy = np.zeros((q, c))
    XyXy = np.zeros((c, c))
    k_all = Z.shape[1]
    index = np.empty(k_all, dtype=np.int64)
    for i in range(n):
        col = 0
        for b in range(n_blocks):
            for t in range(size[b]):
                index[col] = first[b] + codes[i, b] * size[b] + t
                col += 1
        for a in range(k_all):
            za = Z[i, a]
            ia = index[a]
            for m in range(k_all):
                G[ia, index[m]] += za * Z[i, m]
            for j in range(c):
                ZXy[ia, j] += za * Xy[i, j]
        for j in range(c):
            for m in range(c):
                XyXy[j, m] += Xy[i, j] * Xy[i, m]
    return G, ZXy, XyXy


class DenseCriterion:
    """lme4's criterion of a design with at most :data:`DENSE_MAX_EFFECTS` random effects.

    Parameters
    ----------
    y, X : ndarray
    blocks : sequence of (codes, Z, n_levels, kind)
        As :class:`~bayesmix.ml.deviance.ProfiledDeviance`; ``theta`` in this order.
    gradient : bool
        Whether the optimiser should use :meth:`value_and_gradient` (``with_gradient``).
    """

    def __init__(self, y, X, blocks, gradient: bool = True) -> None:
        self.with_gradient = gradient
        y = np.asarray(y, dtype=float)
        X = np.asarray(X, dtype=float).reshape(len(y), -1)
        Xy = np.column_stack([X, y])
        self.n, self.p = X.shape
        th_block, th_row, th_col, block, column, base, size = [], [], [], [], [], [], []
        offset = 0
        for index, (_, z, m, kind) in enumerate(blocks):
            k = np.asarray(z).reshape(len(y), -1).shape[1]
            rows, cols = theta_positions(kind, k)
            th_block += [index] * len(rows)
            th_row += list(rows)
            th_col += list(cols)
            size.append(k)
            levels = np.repeat(np.arange(int(m)), k)
            block += [index] * (int(m) * k)
            column += list(np.tile(np.arange(k), int(m)))
            base += list(offset + levels * k)
            offset += int(m) * k
        as_int = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        self._index = tuple(map(as_int, (th_block, th_row, th_col, block, column, base, size)))
        self.n_effects = offset
        codes = np.column_stack([np.asarray(c, dtype=np.int64) for c, _, _, _ in blocks])
        Z = np.column_stack(
            [np.asarray(z, dtype=float).reshape(len(y), -1) for _, z, _, _ in blocks]
        )
        sizes = self._index[-1]
        first = np.concatenate(
            [[0], np.cumsum([int(m) * k for (_, _, m, _), k in zip(blocks, sizes)])[:-1]]
        )
        self._G, self._ZXy, self._XyXy = _products(codes, Z, as_int(first), sizes, Xy, offset)
        self._no_grad = np.empty(0)

    def __call__(self, theta: np.ndarray, reml: bool = True) -> float:
        return float(self._call(theta, reml, self._no_grad))

    def value_and_gradient(self, theta: np.ndarray, reml: bool = True) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at ``theta``."""
        grad = np.zeros(len(theta))
        value = self._call(theta, reml, grad)
        return float(value), grad

    def _call(self, theta, reml, grad):
        theta = np.ascontiguousarray(theta, dtype=float)
        return dense_criterion(
            theta, self._G, self._ZXy, self._XyXy, self.n, *self._index, bool(reml), grad
        )
