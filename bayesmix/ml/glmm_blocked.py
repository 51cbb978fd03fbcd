"""The weighted penalised system of PIRLS, factored by blocks.

PIRLS and the Laplace approximation need, for weights ``W``,

    A = Lambda' Z' W Z Lambda + I        (optionally bordered by the fixed effects)

its Cholesky factor's log-determinant, solves with it, and the diagonal blocks
of its inverse (the conditional covariances). As in the linear engine
(:mod:`bayesmix.ml.deviance`) the random-effects block with the most
coefficients comes first: each row has one level of it, so its part ``A11`` is
block diagonal (one ``k x k`` matrix per level) and is factored level by level.
Everything else (the other blocks and, in PIRLS's first stage, the fixed
effects) forms one dense Schur complement ``S = A22 - A21 A11^-1 A12``. With one
grouping factor ``S`` is empty (or ``p x p``); with grouseticks' three crossed
factors it is 181 x 181 instead of a dense 584 x 584 system.

Notation
--------
Block "1" is the first (largest) block, with m1 levels of k1 terms; "r" the
rest (the other blocks, then the fixed effects when bordered). ``V_b = Z_b T_b``
holds each row's coefficients of its level's spherical effects in block b.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from bayesmix.errors import FitError
from bayesmix.ml.pirls_blocks import assemble

__all__ = ["BlockPattern", "BlockedFactor", "ZLambda"]

# Dense accumulation while the rest (and its cross with block 1) has at most this
# many entries; a dense product C A21' while it costs at most _DENSE_PRODUCT_MAX flops.
_DENSE_MAX = 4_000_000
_DENSE_PRODUCT_MAX = 4_000_000


class BlockPattern:
    """What the blocks' structure fixes once per design: levels, each row's positions,
    and which rows of ``A21`` each level of block 1 can touch (reused for every
    ``theta`` and every PIRLS iteration).

    Parameters
    ----------
    blocks : sequence of RandomBlock
        The design's blocks (``codes``, ``Z``, ``n_levels``, ``n_terms``).
    p : int
        Columns of the fixed effects that border ``A`` in PIRLS's first stage.
    """

    def __init__(self, blocks, p: int) -> None:
        self.blocks = tuple(blocks)
        self.codes = [np.asarray(b.codes) for b in blocks]
        self.k = [b.n_terms for b in blocks]
        self.m = [b.n_levels for b in blocks]
        self.offsets = np.cumsum([0] + [m * k for m, k in zip(self.m, self.k)])
        self.q = int(self.offsets[-1])
        self.n = len(self.codes[0])
        self.first = first = int(np.argmax([m * k for m, k in zip(self.m, self.k)]))
        self.rest = [i for i in range(len(blocks)) if i != first]
        self.index1 = np.arange(self.offsets[first], self.offsets[first + 1])
        self.index_r = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in self.rest])
            if self.rest
            else np.zeros(0, dtype=int)
        )
        # each row's positions in block 1 (0..q1) and in the rest (0..q_r)
        k1, m1 = self.k[first], self.m[first]
        self.k1, self.m1, self.q1, self.q_r = k1, m1, m1 * k1, len(self.index_r)
        self.idx1 = self.codes[first][:, None] * k1 + np.arange(k1)
        starts = np.cumsum([0] + [self.m[i] * self.k[i] for i in self.rest])
        self.idx_r = (
            np.hstack(
                [
                    start + self.codes[i][:, None] * self.k[i] + np.arange(self.k[i])
                    for start, i in zip(starts, self.rest)
                ]
            )
            if self.rest
            else np.zeros((self.n, 0), dtype=int)
        )
        self.gather = [
            off + c[:, None] * k + np.arange(k)
            for c, k, off in zip(self.codes, self.k, self.offsets)
        ]
        q1, q_r, idx = self.q1, self.q_r, self.idx_r
        level = self.codes[first]
        self.IDX = np.ascontiguousarray(np.hstack(self.gather))  # every block's positions
        # per level of block 1, the rest's coefficients that share a data row with it
        # (CSR layout): the only rows of A21 its columns can touch
        pairs = np.unique(np.column_stack([np.repeat(level, idx.shape[1]), idx.ravel()]), axis=0)
        self.lvl_ptr = np.searchsorted(pairs[:, 0], np.arange(m1 + 1)).astype(np.int64)
        self.lvl_rows = np.ascontiguousarray(pairs[:, 1], dtype=np.int64)
        self.dense = (q_r + p) ** 2 <= _DENSE_MAX and (q_r + p) * q1 <= _DENSE_MAX


class ZLambda:
    """``Z Lambda(theta)`` kept as per-block row coefficients (never a dense ``n x q``).

    Parameters
    ----------
    pattern : BlockPattern
        The design's blocks and positions.
    factors : sequence of ndarray
        Each block's ``T_b``.
    """

    def __init__(self, pattern: BlockPattern, factors) -> None:
        self.pattern = pattern
        self.codes, self.k, self.m = pattern.codes, pattern.k, pattern.m
        self.offsets, self.q, self.n = pattern.offsets, pattern.q, pattern.n
        self.first, self.rest = pattern.first, pattern.rest
        self.index1, self.index_r = pattern.index1, pattern.index_r
        self.idx1, self.idx_r = pattern.idx1, pattern.idx_r
        self.V = [b.Z @ T for b, T in zip(pattern.blocks, factors)]
        self.val1 = self.V[self.first]
        self.val_r = (
            np.hstack([self.V[i] for i in self.rest]) if self.rest else np.zeros((self.n, 0))
        )

    def _sparse(self, which: list[int]) -> sp.csr_matrix:
        """Columns of the listed blocks (in their order) as a sparse ``n x sum q_b``."""
        cols, vals, start = [], [], 0
        for i in which:
            k = self.k[i]
            cols.append(start + self.codes[i][:, None] * k + np.arange(k))
            vals.append(self.V[i])
            start += self.m[i] * k
        width = cols[0].shape[1] if len(cols) == 1 else sum(c.shape[1] for c in cols)
        indices = np.hstack(cols).ravel()
        indptr = np.arange(0, self.n * width + 1, width)
        return sp.csr_matrix((np.hstack(vals).ravel(), indices, indptr), shape=(self.n, start))

    def times(self, u: np.ndarray) -> np.ndarray:
        """``Z Lambda u``."""
        out = np.zeros(self.n)
        for V, gather in zip(self.V, self.pattern.gather):
            if V.shape[1] == 1:
                out += V[:, 0] * u[gather[:, 0]]
            else:
                out += np.einsum("ij,ij->i", V, u[gather])
        return out

    def t_times(self, d: np.ndarray) -> np.ndarray:
        """``Lambda' Z' d``."""
        out = np.empty(self.q)
        for codes, V, k, m, off in zip(self.codes, self.V, self.k, self.m, self.offsets):
            for j in range(k):
                out[off + j : off + m * k : k] = np.bincount(codes, V[:, j] * d, minlength=m)
        return out

    def t_times_matrix(self, M: np.ndarray) -> np.ndarray:
        """``Lambda' Z' M`` for an ``n x c`` array."""
        out = np.empty((self.q, M.shape[1]))
        for c in range(M.shape[1]):
            out[:, c] = self.t_times(M[:, c])
        return out

    def factor(self, W: np.ndarray, X: np.ndarray | None = None) -> BlockedFactor:
        """Factor ``A`` at weights ``W`` (bordered by ``X``, unpenalised, when given)."""
        if self.pattern.dense:
            return self._factor_dense(W, X)
        return self._factor_sparse(W, X)

    def _factor_dense(self, W: np.ndarray, X: np.ndarray | None) -> BlockedFactor:
        """``A``'s parts from the compiled assembly (:func:`bayesmix.ml.pirls_blocks.assemble`),
        factored by :class:`BlockedFactor`."""
        pat = self.pattern
        border = np.zeros((self.n, 0)) if X is None else np.ascontiguousarray(X)
        A11, A21, A22 = assemble(
            np.ascontiguousarray(W), pat.codes[pat.first], pat.k1, pat.m1, pat.idx1,
            np.ascontiguousarray(self.val1), pat.idx_r, np.ascontiguousarray(self.val_r),
            pat.q_r, border, border.shape[1],
        )  # fmt: skip
        d = A22.shape[0]
        if pat.k1 == 1 and d * d * pat.q1 > _DENSE_PRODUCT_MAX:
            A21 = sp.csr_matrix(A21)  # few levels of block 1 meet each other level
        return BlockedFactor.build(A11, A21, A22, self.index1, self.index_r, self.q)

    def _factor_sparse(self, W: np.ndarray, X: np.ndarray | None) -> BlockedFactor:
        i = self.first
        k, m, codes, V = self.k[i], self.m[i], self.codes[i], self.V[i]
        # A11: one k x k matrix per level
        A11 = np.zeros((m, k, k))
        for a in range(k):
            for b in range(a + 1):
                value = np.bincount(codes, W * V[:, a] * V[:, b], minlength=m)
                A11[:, a, b] = value
                A11[:, b, a] = value
        A11[:, np.arange(k), np.arange(k)] += 1.0
        # the rest: other blocks (penalised) then X (not)
        parts = []
        if self.rest:
            parts.append(self._sparse(self.rest))
        if X is not None:
            parts.append(sp.csr_matrix(X))
        n_rest_random = len(self.index_r)
        if parts:
            R = sp.hstack(parts, format="csr") if len(parts) > 1 else parts[0]
            RW = R.multiply(W[:, None]).tocsr()
            A22 = np.ascontiguousarray((R.T @ RW).toarray())
            A22[np.arange(n_rest_random), np.arange(n_rest_random)] += 1.0
            # A21 = R' W Z1 Lambda1: columns of block 1 by level
            Z1 = sp.csr_matrix(
                (
                    V.ravel(),
                    (np.repeat(np.arange(self.n), k), (codes[:, None] * k + np.arange(k)).ravel()),
                ),
                shape=(self.n, m * k),
            )
            A21 = (RW.T @ Z1).tocsr()  # sparse: few levels of block 1 meet each other level
            if k > 1:
                A21 = A21.toarray()
        else:
            A22 = np.zeros((0, 0))
            A21 = np.zeros((0, m * k))
        return BlockedFactor.build(A11, A21, A22, self.index1, self.index_r, self.q)


@dataclass
class BlockedFactor:
    """``A = [[A11, A12], [A21, A22]]`` with ``A11`` block diagonal, factored.

    ``L11`` holds the per-level Cholesky factors, ``C = A21 A11^-1`` and ``LS`` the
    Cholesky factor of the Schur complement ``S = A22 - C A12``. Indices map the
    partition back to the caller's order (block 1's coefficients, then the rest).
    """

    L11: np.ndarray
    A11_inverse: np.ndarray
    A21: np.ndarray
    C: np.ndarray
    LS: np.ndarray
    index1: np.ndarray
    index_r: np.ndarray
    q: int

    @classmethod
    def build(cls, A11, A21, A22, index1, index_r, q) -> BlockedFactor:
        try:
            L11 = np.linalg.cholesky(A11)
        except np.linalg.LinAlgError:
            raise FitError("the penalised system is not positive definite.") from None
        m, k, _ = A11.shape
        inverse11 = 1.0 / A11 if k == 1 else np.linalg.inv(A11)  # tiny k x k per level
        if A21.shape[0]:
            if sp.issparse(A21):  # k == 1
                C = (A21 @ sp.diags(inverse11[:, 0, 0])).tocsr()
                S = A22 - (C @ A21.T).toarray()
            else:
                C = np.einsum("rmi,mij->rmj", A21.reshape(-1, m, k), inverse11).reshape(-1, m * k)
                S = A22 - C @ A21.T
            try:
                # C order: LAPACK via scipy is ~40x slower on the Fortran-ordered copy
                LS = la.cholesky(np.ascontiguousarray(S), lower=True)
            except la.LinAlgError:
                raise FitError("the penalised system is not positive definite.") from None
        else:
            C, LS = A21, np.zeros((0, 0))
        return cls(L11, inverse11, A21, C, LS, index1, index_r, q)

    @property
    def log_det_random(self) -> float:
        """``log det`` of the random-effects part (the Laplace term), when not bordered."""
        diag11 = np.diagonal(self.L11, axis1=1, axis2=2)
        return 2.0 * float(np.sum(np.log(diag11)) + np.sum(np.log(np.diag(self.LS))))

    def solve(self, g: np.ndarray) -> np.ndarray:
        """``A^-1 g`` for ``g`` ordered as the caller's ``[u, beta]``."""
        g1 = g[self.index1]
        gr = np.concatenate([g[self.index_r], g[self.q :]])
        h1 = self._solve11(g1)
        if len(gr):
            xr = la.cho_solve((self.LS, True), gr - self.A21 @ h1)
            x1 = h1 - self.C.T @ xr
        else:
            xr, x1 = gr, h1
        out = np.empty_like(g)
        out[self.index1] = x1
        n_r = len(self.index_r)
        out[self.index_r] = xr[:n_r]
        out[self.q :] = xr[n_r:]
        return out

    def _solve11(self, g1: np.ndarray) -> np.ndarray:
        m, k = self.L11.shape[0], self.L11.shape[1]
        if k == 1:
            return g1 * self.A11_inverse[:, 0, 0]
        return np.einsum("mij,mj->mi", self.A11_inverse, g1.reshape(m, k)).reshape(-1)

    def inverse_blocks(self, offsets, sizes) -> list[np.ndarray]:
        """Per block (caller's order; ``offsets``/``sizes`` = (levels, k)) the diagonal
        ``k x k`` blocks of ``A^-1`` per level (``A`` not bordered)."""
        q = self.q
        position = np.empty(q, dtype=int)  # where each coefficient sits in [block 1, rest]
        position[self.index1] = np.arange(len(self.index1))
        position[self.index_r] = len(self.index1) + np.arange(len(self.index_r))
        m1, k1 = self.L11.shape[0], self.L11.shape[1]
        first = self.A11_inverse.copy()
        S_inverse = np.zeros((0, 0))
        if len(self.index_r):
            S_inverse = la.cho_solve((self.LS, True), np.eye(len(self.index_r)))
            if sp.issparse(self.C):  # k1 == 1
                M = np.asarray(self.C.T @ S_inverse).T  # S^-1 C, dense
                first[:, 0, 0] += np.asarray(self.C.multiply(M).sum(axis=0)).ravel()
            else:
                M = S_inverse @ self.C
                first += np.einsum(
                    "rmi,rmj->mij", self.C.reshape(-1, m1, k1), M.reshape(-1, m1, k1)
                )
        out = []
        for off, (m, k) in zip(offsets, sizes):
            if off == self.index1[0]:
                out.append(first)
                continue
            at = position[off] - len(self.index1)
            local = S_inverse[at : at + m * k, at : at + m * k]
            out.append(
                np.stack([local[i * k : (i + 1) * k, i * k : (i + 1) * k] for i in range(m)])
            )
        return out
