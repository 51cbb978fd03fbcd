"""``A - B B'`` for a sparse ``B`` with a fixed pattern, compiled (numba).

The PLS kernel (:mod:`bayesmix.ml.deviance`) subtracts ``B B'`` from the dense
cross-product of the non-first blocks at every evaluation. scipy's sparse
product spends more time on its symbolic phase, a sparse result and its
conversion to dense than on the arithmetic (11 of InstEval's 36 ms per
evaluation); the pattern never changes, so one pass over ``B``'s columns
(compressed sparse columns, rows sorted) adds each column's outer product
straight into the dense matrix. Only the lower triangle is accumulated, then
mirrored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mirror_lower", "subtract_gram"]


@njit(cache=True)
def _subtract_gram(G, data, indices, indptr, k1):
    # the k1 columns of a first-block level share their rows: one pass over the
    # level's row pairs serves them all (G's scattered updates set the time),
    # reading the level's entries from a small contiguous copy
    n_levels = (indptr.size - 1) // k1
    widest = 0
    for j in range(n_levels):
        widest = max(widest, indptr[j * k1 + 1] - indptr[j * k1])
    level = np.empty((widest, k1))
    for j in range(n_levels):
        start = indptr[j * k1]
        count = indptr[j * k1 + 1] - start
        for s in range(k1):
            col = indptr[j * k1 + s]
            for i in range(count):
                level[i, s] = data[col + i]
        for ia in range(count):
            a = indices[start + ia]
            for ib in range(ia + 1):
                acc = 0.0
                for s in range(k1):
                    acc += level[ia, s] * level[ib, s]
                G[a, indices[start + ib]] -= acc
    mirror_lower(G)


@njit(cache=True)
def mirror_lower(G: np.ndarray) -> None:
    """Copy the lower triangle of the square ``G`` onto its upper triangle, in place."""
    q = G.shape[0]
    for a in range(q):
        for b in range(a):
            G[b, a] = G[a, b]


def subtract_gram(
    A: np.ndarray, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, k1: int = 1
) -> np.ndarray:
    """``A - B B'`` (a new dense array) for ``B`` in CSC form with sorted row indices.

    Columns ``j k1 .. j k1 + k1 - 1`` must hold the same rows (a first-block
    level's columns). ``A`` must be symmetric; the result is symmetric to the last bit.
    """
    G = A.copy()
    _subtract_gram(G, data, indices, indptr, k1)
    return G
