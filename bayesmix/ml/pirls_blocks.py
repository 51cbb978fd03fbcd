"""The weighted blocked system of PIRLS, compiled (numba): assembly, solve, log det.

The system is that of :mod:`bayesmix.ml.glmm_blocked` (whose numpy version is the
reference): block 1 (the largest grouping factor) level by level, the rest (other
blocks, then the fixed effects when bordered) as a dense Schur complement; each
level's columns of ``A21`` touch only the rest's coefficients that share a data row
with it (``lvl_ptr``/``lvl_rows``, precomputed by
:class:`~bayesmix.ml.glmm_blocked.BlockPattern`), so the Schur update and the solves
run over those, and a mostly-zero Schur complement is factored over its nonzeros.

Notation
--------
As in :mod:`bayesmix.ml.glmm_blocked`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["assemble", "schur_solve"]


@njit(cache=True, error_model="numpy")
def assemble(W, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p):
    """``A11`` (m1, k1, k1), ``A21`` (d, q1) and ``A22`` (d, d), d = q_r + p."""
    d = q_r + p
    q1 = m1 * k1
    A11 = np.zeros((m1, k1, k1))
    A21 = np.zeros((d, q1))
    A22 = np.zeros((d, d))
    Kr = idx_r.shape[1]
    for i in range(W.shape[0]):
        w = W[i]
        lev = level[i]
        for a in range(k1):
            wa = w * val1[i, a]
            for b in range(k1):
                A11[lev, a, b] += wa * val1[i, b]
            col = idx1[i, a]
            for r in range(Kr):
                A21[idx_r[i, r], col] += val_r[i, r] * wa
            for c in range(p):
                A21[q_r + c, col] += X[i, c] * wa
        for r in range(Kr):
            wr = w * val_r[i, r]
            row = idx_r[i, r]
            for c in range(Kr):
                A22[row, idx_r[i, c]] += wr * val_r[i, c]
            for c in range(p):
                A22[row, q_r + c] += wr * X[i, c]
                A22[q_r + c, row] += wr * X[i, c]
        for a in range(p):
            wa = w * X[i, a]
            for b in range(p):
                A22[q_r + a, q_r + b] += wa * X[i, b]
    for lev in range(m1):
        for a in range(k1):
            A11[lev, a, a] += 1.0
    for r in range(q_r):
        A22[r, r] += 1.0
    return A11, A21, A22


@njit(cache=True, error_model="numpy")
def _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows):
    """The rows of ``A21`` that level ``lev``'s columns can touch: the rest's
    coefficients sharing a row of the data with it (precomputed), then every fixed
    effect when bordered. Returns their count (written into ``rows``)."""
    count = 0
    for t in range(lvl_ptr[lev], lvl_ptr[lev + 1]):
        rows[count] = lvl_rows[t]
        count += 1
    for c in range(p):
        rows[count] = q_r + c
        count += 1
    return count


@njit(cache=True, error_model="numpy")
def _schur(A11, A21, A22, lvl_ptr, lvl_rows, q_r, p):
    """``A11^-1`` per level and ``S = A22 - A21 A11^-1 A21'``, each level's update over
    the rows of ``A21`` its columns touch; and ``log det A11``."""
    m1, k1 = A11.shape[0], A11.shape[1]
    d = A22.shape[0]
    inverse = np.empty_like(A11)
    log_det = 0.0
    ok = True
    S = A22.copy()
    rows = np.empty(d, dtype=np.int64)
    for lev in range(m1):
        block = A11[lev]
        if k1 == 1:
            if not block[0, 0] > 0.0:
                ok = False
                block[0, 0] = 1.0
            inverse[lev, 0, 0] = 1.0 / block[0, 0]
            log_det += math.log(block[0, 0])
        else:
            try:
                L = np.linalg.cholesky(block)
            except Exception:  # not positive definite
                ok = False
                L = np.eye(k1)
                block = np.eye(k1)
            for a in range(k1):
                log_det += 2.0 * math.log(L[a, a])
            inverse[lev] = np.linalg.inv(block)
        count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
        for x in range(count):
            rx = rows[x]
            for a in range(k1):
                c = 0.0
                for b in range(k1):
                    c += A21[rx, lev * k1 + b] * inverse[lev, b, a]
                if c == 0.0:
                    continue
                for y in range(count):
                    ry = rows[y]
                    S[rx, ry] -= c * A21[ry, lev * k1 + a]
    return inverse, S, log_det, ok


@njit(cache=True, error_model="numpy")
def _cholesky(S):
    """Lower Cholesky factor of ``S`` and whether ``S`` is positive definite.

    Mostly-zero ``S`` (nested factors: after block 1 is eliminated, grouseticks'
    broods touch only their own location) is factored column by column over the
    nonzero rows only, so a 181 x 181 ``S`` whose brood part is diagonal costs
    little more than its 63 locations; denser ones go to LAPACK."""
    d = S.shape[0]
    nonzero = 0
    for i in range(d):
        for j in range(i):
            if S[i, j] != 0.0:
                nonzero += 1
    if 2 * nonzero > d * (d - 1) // 2:  # more than half the lower triangle: LAPACK
        for j in range(d):
            if not S[j, j] > 0.0:
                return S, False
        try:
            return np.linalg.cholesky(S), True
        except Exception:  # not positive definite
            return S, False
    L = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1):
            L[i, j] = S[i, j]
    rows = np.empty(d, dtype=np.int64)
    for j in range(d):
        pivot = L[j, j]
        if not pivot > 0.0:
            return L, False
        root = math.sqrt(pivot)
        L[j, j] = root
        count = 0
        for i in range(j + 1, d):
            if L[i, j] != 0.0:
                L[i, j] /= root
                rows[count] = i
                count += 1
        for a in range(count):
            ia = rows[a]
            value = L[ia, j]
            for b in range(a + 1):
                L[ia, rows[b]] -= value * L[rows[b], j]
    return L, True


@njit(cache=True, error_model="numpy")
def schur_solve(
    W, g, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p, index1, index_r, q, lvl_ptr, lvl_rows
):
    """Solve ``A x = g`` (``g`` ordered as ``[u, beta]``; ``A`` bordered by ``X`` when
    ``p > 0``) and return ``x``, ``log det A`` (the Laplace term when ``p = 0``) and
    whether ``A`` is positive definite."""
    A11, A21, A22 = assemble(W, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p)
    inverse, S, log_det, ok = _schur(A11, A21, A22, lvl_ptr, lvl_rows, q_r, p)
    d = S.shape[0]
    q1 = m1 * k1
    g1 = np.empty(q1)
    for j in range(q1):
        g1[j] = g[index1[j]]
    h1 = np.empty(q1)
    for lev in range(m1):
        for a in range(k1):
            acc = 0.0
            for b in range(k1):
                acc += inverse[lev, a, b] * g1[lev * k1 + b]
            h1[lev * k1 + a] = acc
    x = np.empty(g.shape[0])
    if d > 0:
        gr = np.empty(d)
        for j in range(q_r):
            gr[j] = g[index_r[j]]
        for j in range(p):
            gr[q_r + j] = g[q + j]
        rows = np.empty(d, dtype=np.int64)
        for lev in range(m1):  # gr -= A21 h1, over each level's touched rows
            count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
            for t in range(count):
                r = rows[t]
                for a in range(k1):
                    gr[r] -= A21[r, lev * k1 + a] * h1[lev * k1 + a]
        L, positive = _cholesky(S)
        if not positive:
            return x, log_det, False
        for j in range(d):
            log_det += 2.0 * math.log(L[j, j])
        # L L' xr = gr
        z = np.empty(d)
        for j in range(d):
            acc = gr[j]
            for t in range(j):
                acc -= L[j, t] * z[t]
            z[j] = acc / L[j, j]
        xr = np.empty(d)
        for j in range(d - 1, -1, -1):
            acc = z[j]
            for t in range(j + 1, d):
                acc -= L[t, j] * xr[t]
            xr[j] = acc / L[j, j]
        # x1 = h1 - A11^-1 A21' xr
        back = np.zeros(q1)
        for lev in range(m1):
            count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
            for t in range(count):
                r = rows[t]
                for a in range(k1):
                    back[lev * k1 + a] += A21[r, lev * k1 + a] * xr[r]
        for lev in range(m1):
            for a in range(k1):
                acc = 0.0
                for b in range(k1):
                    acc += inverse[lev, a, b] * back[lev * k1 + b]
                h1[lev * k1 + a] -= acc
        for j in range(q_r):
            x[index_r[j]] = xr[j]
        for j in range(p):
            x[q + j] = xr[q_r + j]
    for j in range(q1):
        x[index1[j]] = h1[j]
    return x, log_det, ok
