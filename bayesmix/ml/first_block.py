"""Compiled per-level arithmetic of the PLS kernel's first block (numba).

The first block's part of ``Lambda'Z'Z Lambda + I`` is block diagonal, one
``k1 x k1`` matrix per level, so the kernel (:mod:`bayesmix.ml.deviance`) and its
gradient (:mod:`bayesmix.ml.deviance_gradient`) work on stacks of tiny matrices.
numpy does those as broadcast products and batched LAPACK calls, which allocate
a temporary per term and pay a per-matrix overhead: with a million levels of
``(1 + x | g)`` they took 27 of a 50-s fit (``np.linalg.inv`` alone 5 s). Here
each operation is one compiled loop over the levels, with no temporaries.

Notation
--------
As :mod:`bayesmix.ml.deviance`: ``m1`` levels and ``k1`` columns of the first
block, ``T1`` its relative covariance factor, ``D`` the levels' ``Z_j'Z_j``
(``(m1, k1, k1)``), ``L_j`` the lower Cholesky factor of ``T1'D_j T1 + I``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["batched_matmul", "first_factor", "pair_products"]


@njit(cache=True)
def _batched_matmul(a, b, out):
    # a (1 or m, r, s), b (1 or m, s, t): a leading size of 1 is broadcast
    single_a, single_b = a.shape[0] == 1, b.shape[0] == 1
    r, s, t = a.shape[1], a.shape[2], b.shape[2]
    for j in range(out.shape[0]):
        ja = 0 if single_a else j
        jb = 0 if single_b else j
        for i in range(r):
            for c in range(t):
                acc = 0.0
                for h in range(s):
                    acc += a[ja, i, h] * b[jb, h, c]
                out[j, i, c] = acc


def batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` over a stack of small matrices; a leading size of 1 is broadcast.

    ``a`` is ``(m or 1, r, s)`` and ``b`` ``(m or 1, s, t)``; views (transposes) are
    read in place.
    """
    out = np.empty((max(a.shape[0], b.shape[0]), a.shape[1], b.shape[2]))
    _batched_matmul(a, b, out)
    return out


@njit(cache=True)
def _first_factor(T1, D, L1inv):
    m, k = D.shape[0], D.shape[1]
    TD = np.empty((k, k))
    L = np.empty((k, k))
    logdet = 0.0
    for j in range(m):
        # TD = T1' D_j; the lower triangle of T1' D_j T1 + I goes straight into L
        for a in range(k):
            for b in range(k):
                acc = 0.0
                for c in range(a, k):  # T1 is lower triangular: T1[c, a] = 0 for c < a
                    acc += T1[c, a] * D[j, c, b]
                TD[a, b] = acc
        for a in range(k):
            for b in range(a + 1):
                acc = 1.0 if a == b else 0.0
                for c in range(k):
                    acc += TD[a, c] * T1[c, b]
                # Cholesky, row by row (L[a, b] for b <= a)
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if a == b:
                    if not acc > 0.0:  # only with non-finite theta: T1'D T1 + I >= I
                        return np.nan
                    L[a, a] = np.sqrt(acc)
                    logdet += 2.0 * np.log(L[a, a])
                else:
                    L[a, b] = acc / L[b, b]
        # L^-1 (lower triangular), column by column
        for b in range(k):
            for a in range(b):
                L1inv[j, a, b] = 0.0
            for a in range(b, k):
                acc = 1.0 if a == b else 0.0
                for c in range(b, a):
                    acc -= L[a, c] * L1inv[j, c, b]
                L1inv[j, a, b] = acc / L[a, a]
    return logdet


def first_factor(T1: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, float]:
    """``(L_j^-1 for every level, sum_j log|L_j|^2)``; both are NaN when a
    ``T1'D_j T1 + I`` is not positive definite, which needs a non-finite ``theta``."""
    L1inv = np.empty(D.shape)
    logdet = _first_factor(np.ascontiguousarray(T1), D, L1inv)
    if np.isnan(logdet):  # stopped at a level: no factor is left half-written
        L1inv.fill(np.nan)
    return L1inv, float(logdet)


@njit(cache=True)
def _pair_products(a, level, V, dest, out):
    # out[dest[(p, r, s)]] = sum_t a[p, r, t] V[level[p], t, s]
    k_b, k1 = a.shape[1], a.shape[2]
    for p in range(a.shape[0]):
        j = level[p]
        base = p * k_b * k1
        for r in range(k_b):
            for s in range(k1):
                acc = 0.0
                for t in range(k1):
                    acc += a[p, r, t] * V[j, t, s]
                out[dest[base + r * k1 + s]] = acc


def pair_products(
    a: np.ndarray, level: np.ndarray, V: np.ndarray, dest: np.ndarray, out: np.ndarray
) -> None:
    """Write ``a_p V_{level_p}`` of every pair ``p`` into ``out`` at ``dest`` (in place).

    ``a`` is ``(n_pairs, k_b, k1)`` (``Z_r'Z_1`` of one rest block per pair of
    levels), ``V`` ``(m1, k1, k1)``, and ``dest`` gives, for each entry of the
    ``(n_pairs, k_b, k1)`` product in C order, its position in ``out``.
    """
    _pair_products(a, level, V, dest, out)
