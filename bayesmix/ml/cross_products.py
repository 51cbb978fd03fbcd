"""The row sums the profiled criterion depends on, by chunk of rows, and their sum.

For a fixed layout of random-effects blocks, lme4's profiled deviance depends on
the data only through cross-products of ``[Z, X, y]`` (MixedModels.jl builds
them once and never reads the rows again). :class:`~bayesmix.ml.deviance.ProfiledDeviance`
holds them in the blocked form its factorisation uses; :func:`cross_products`
computes that form for any set of rows, and :func:`add_products` adds two of
them. Every field is a sum over rows, so the products of a data set are the
sum of its chunks' products, whatever the chunking: the same kernel fits rows
held in memory or summed partition by partition (a Dask DataFrame).

Notation
--------
As :mod:`bayesmix.ml.deviance`: ``Xy = [X, y]`` (c = p + 1 columns); block "1" the
first (largest) of the kernel's order, "r" the rest stacked (q_r rows); for rest
block b, a *pair* is a (level of b, level j of block 1) seen in the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bayesmix.ml.small_algebra import sparse_cross

__all__ = [
    "BlockLayout",
    "CrossProducts",
    "add_products",
    "block_layout",
    "cross_products",
    "level_grams",
]

# Z'[X, y] of the first block by bincounts up to this many (k1 x c) columns
_BINCOUNT_MAX_COLUMNS = 32


@dataclass(frozen=True)
class BlockLayout:
    """What the products' shapes depend on: the blocks' columns and levels, in kernel order.

    Attributes
    ----------
    sizes, n_levels : tuple of int
        ``k_i`` and ``m_i`` of each block, in the kernel's order (largest first).
    offsets : tuple of int
        Start of each rest block in the stacked rest rows (``q_r`` last).
    """

    sizes: tuple[int, ...]
    n_levels: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        q = np.cumsum([0] + [k * m for k, m in zip(self.sizes[1:], self.n_levels[1:])])
        return tuple(int(v) for v in q)

    @property
    def q_rest(self) -> int:
        return self.offsets[-1]


@dataclass(frozen=True, eq=False)
class CrossProducts:
    """Sums over rows of ``[Z, X, y]``'s cross-products, in the kernel's blocked form.

    Attributes
    ----------
    n_obs : int
        Rows summed.
    XyXy : ndarray, shape (c, c)
        ``Xy' Xy``.
    D : ndarray, shape (m1, k1, k1)
        ``Z_1'Z_1`` level by level (block diagonal). Empty without blocks.
    ZXy1 : ndarray, shape (m1, k1, c)
        ``Z_1' Xy`` level by level.
    A_rr : scipy.sparse.csr_matrix, shape (q_r, q_r)
        ``Z_r'Z_r`` of the rest blocks, symmetric; sparse (its entries are the pairs
        of levels seen together), the kernel holds it densely.
    ZXy_r : ndarray, shape (q_r, c)
        ``Z_r' Xy``.
    pairs : tuple of (keys, values)
        Per rest block b: the sorted pair keys ``level_b * m1 + j`` seen in the
        rows and ``values`` (npairs, k_b, k1), the sum of ``Z_b' Z_1`` over the
        pair's rows.
    """

    n_obs: int
    XyXy: np.ndarray
    D: np.ndarray
    ZXy1: np.ndarray
    A_rr: np.ndarray
    ZXy_r: np.ndarray
    pairs: tuple[tuple[np.ndarray, np.ndarray], ...]


def cross_products(
    y: np.ndarray,
    X: np.ndarray,
    blocks: Sequence[tuple[np.ndarray, np.ndarray]],
    layout: BlockLayout,
) -> CrossProducts:
    """The products of some rows.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    blocks : sequence of (codes, Z)
        Each block's level codes (n,) in ``[0, m_i)`` and columns (n, k_i), in
        the kernel's order (``layout``).
    layout : BlockLayout
    """
    X = np.asarray(X, dtype=float)
    # X's own width: a chunk without rows (a partition without complete rows) has
    # none to infer it from
    Xy = np.column_stack([X.reshape(len(y), X.shape[1] if X.ndim == 2 else -1), y])
    c = Xy.shape[1]
    if not blocks:
        empty = np.zeros((0, 0))
        return CrossProducts(
            len(y), Xy.T @ Xy, np.zeros((0, 0, 0)), empty, sp.csr_matrix((0, 0)), empty, ()
        )
    codes1, Z1 = blocks[0]
    m1, k1 = layout.n_levels[0], layout.sizes[0]
    D = np.empty((m1, k1, k1))
    for t in range(k1):
        for s in range(t, k1):
            D[:, t, s] = D[:, s, t] = np.bincount(codes1, Z1[:, t] * Z1[:, s], minlength=m1)
    if k1 * c <= _BINCOUNT_MAX_COLUMNS:  # no sparse matrix for a few columns: 4x faster
        ZXy1 = np.empty((m1, k1, c))
        for t in range(k1):
            for j in range(c):
                ZXy1[:, t, j] = np.bincount(codes1, Z1[:, t] * Xy[:, j], minlength=m1)
    else:
        ZXy1 = np.asarray(sparse_cross(codes1, Z1, m1).T @ Xy).reshape(m1, k1, c)
    offsets, q_r = layout.offsets, layout.q_rest
    ZXy_r = np.empty((q_r, c))
    pairs, entries = [], []
    for pos, (codes_b, Z_b) in enumerate(blocks[1:]):
        k_b, m_b, off_b = layout.sizes[pos + 1], layout.n_levels[pos + 1], offsets[pos]
        if k_b * c <= _BINCOUNT_MAX_COLUMNS:
            for t in range(k_b):
                for j in range(c):
                    ZXy_r[off_b + t : off_b + m_b * k_b : k_b, j] = np.bincount(
                        codes_b, Z_b[:, t] * Xy[:, j], minlength=m_b
                    )
        else:
            ZXy_r[off_b : off_b + m_b * k_b] = sparse_cross(codes_b, Z_b, m_b).T @ Xy
        for pos_c, (codes_c, Z_c) in enumerate(blocks[1 + pos :], start=pos):
            k_c, m_c, off_c = layout.sizes[pos_c + 1], layout.n_levels[pos_c + 1], offsets[pos_c]
            keys, inverse = _level_pairs(codes_b, codes_c, m_b, m_c)
            level_b, level_c = np.divmod(keys, m_c)
            for t in range(k_b):
                for s in range(k_c):
                    values = np.bincount(inverse, Z_b[:, t] * Z_c[:, s], minlength=len(keys))
                    rows, cols = off_b + level_b * k_b + t, off_c + level_c * k_c + s
                    upper = rows <= cols
                    entries.append((rows[upper], cols[upper], values[upper]))
        keys, inverse = np.unique(codes_b * m1 + codes1, return_inverse=True)
        vals = np.empty((len(keys), k_b, k1))
        for t in range(k_b):
            for s in range(k1):
                vals[:, t, s] = np.bincount(inverse, Z_b[:, t] * Z1[:, s], minlength=len(keys))
        pairs.append((keys, vals))
    A_rr = sp.csr_matrix((q_r, q_r))
    if entries:
        rows, cols, values = (np.concatenate(parts) for parts in zip(*entries, strict=True))
        upper = sp.csr_matrix((values, (rows, cols)), shape=(q_r, q_r))
        A_rr = (upper + sp.triu(upper, 1).T).tocsr()
    return CrossProducts(len(y), Xy.T @ Xy, D, ZXy1, A_rr, ZXy_r, tuple(pairs))


def block_layout(sizes: Sequence[int], n_levels: Sequence[int]) -> tuple[list[int], BlockLayout]:
    """The kernel's order of the blocks (the most random effects first, stable, as
    MixedModels.jl; products are computed in this order) and their layout in it."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i] * n_levels[i])
    return order, BlockLayout(tuple(sizes[i] for i in order), tuple(n_levels[i] for i in order))


def level_grams(products: CrossProducts, layout: BlockLayout) -> list[np.ndarray]:
    """Each block's ``Z'Z`` level by level, ``(m, k, k)``, in the kernel's order."""
    if not layout.sizes:
        return []
    grams = [products.D]
    for pos, (k, m) in enumerate(zip(layout.sizes[1:], layout.n_levels[1:], strict=True)):
        base = layout.offsets[pos] + np.arange(m) * k
        gram = np.empty((m, k, k))
        for t in range(k):
            for s in range(k):
                gram[:, t, s] = np.asarray(products.A_rr[base + t, base + s]).ravel()
        grams.append(gram)
    return grams


def _level_pairs(
    codes_b: np.ndarray, codes_c: np.ndarray, m_b: int, m_c: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of levels seen in the same rows (keys ``level_b * m_c + level_c``, sorted)
    and each row's pair: by a dense count when the pairs possible are few, else by sorting."""
    key = codes_b.astype(np.int64) * m_c + codes_c
    if m_b * m_c <= max(4 * len(key), 1_000_000):
        seen = np.flatnonzero(np.bincount(key, minlength=m_b * m_c))
        position = np.zeros(m_b * m_c, dtype=np.int64)
        position[seen] = np.arange(len(seen))
        return seen, position[key]
    return np.unique(key, return_inverse=True)


def _add_pairs(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    # the keys of each are sorted: a stable sort (timsort) merges the two runs in
    # linear time, where np.unique's sort does not see them (6e6 keys: 0.03 s, 0.95 s)
    both_keys = np.concatenate([a[0], b[0]])
    order = np.argsort(both_keys, kind="stable")
    merged = both_keys[order]
    first = np.empty(len(merged), dtype=bool)
    first[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=first[1:])
    keys = merged[first]
    inverse = np.empty(len(merged), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    both = np.concatenate([a[1], b[1]])
    # explicit width: two partitions without complete rows have no pairs to infer it from
    flat = both.reshape(len(both), int(np.prod(a[1].shape[1:])))
    # a bincount per column: np.add.at is several times slower
    vals = np.stack(
        [np.bincount(inverse, flat[:, j], minlength=len(keys)) for j in range(flat.shape[1])],
        axis=1,
    )
    return keys, vals.reshape(len(keys), *a[1].shape[1:])


def add_products(a: CrossProducts, b: CrossProducts) -> CrossProducts:
    """The products of the rows of ``a`` and of ``b`` together."""
    return CrossProducts(
        a.n_obs + b.n_obs,
        a.XyXy + b.XyXy,
        a.D + b.D,
        a.ZXy1 + b.ZXy1,
        a.A_rr + b.A_rr,
        a.ZXy_r + b.ZXy_r,
        tuple(_add_pairs(pa, pb) for pa, pb in zip(a.pairs, b.pairs, strict=True)),
    )
