"""The matrices of Kenward and Roger's adjustment without forming ``n x n`` matrices.

With ``U = Z Lambda`` (``n x q``), ``W = U'U`` and ``N = (W + I)^-1``, the marginal
covariance ``Sigma = sigma^2 (I + U U')`` has ``Sigma^-k = sigma^(-2k) (I - U R_k U')``
with ``R_1 = N`` and ``R_(k+1) = N + R_k - R_k W N``. Every quantity the adjustment
needs is then a product of ``q x q``, ``q x p`` and ``p x p`` matrices: with
``G_j = Z D_j Z'`` for a covariance entry (``D_j`` selects that entry in every level
of its block) and ``G = I`` for ``sigma^2``,

    X'S G_i S X   = B' D_i B                   B = Z'S X,  A = Z'S Z
    X'S G_i S G_j S X = B' D_i A D_j B         tr(S G_i S G_j) = tr(D_i A D_j A)
    X'S S X, X'S S G_j S X, X'S^3 X, tr(S^2 G_j), tr(S^2)   from R_2, R_3

so the cost grows with the random effects ``q``, not with the observations ``n``
(pbkrtest forms ``n x n`` matrices).

Notation
--------
S = Sigma^-1; Z : (n, q) random-effects design; Lambda : relative covariance factor;
D_j : (q, q) sparse selector of covariance entry j; Phi = (X'S X)^-1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from bayesmix.spec.covariance import factors_from_theta, theta_positions

__all__ = ["kenward_roger_matrices"]


def _random_design(design: Any) -> tuple[sp.csr_matrix, list[tuple[int, int, int, int]]]:
    """Sparse ``Z`` (n, q) and each block's (offset, levels, columns, block index)."""
    n = design.n_obs
    rows, cols, vals, layout, offset = [], [], [], [], 0
    for b, block in enumerate(design.blocks):
        k, m = block.n_terms, block.n_levels
        Z = np.asarray(block.Z, dtype=float).reshape(n, k)
        for t in range(k):
            rows.append(np.arange(n))
            cols.append(offset + np.asarray(block.codes) * k + t)
            vals.append(Z[:, t])
        layout.append((offset, m, k, b))
        offset += m * k
    Zs = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, offset)
    )
    return Zs, layout


def _selectors(design: Any, layout: list, q: int) -> list[sp.csr_matrix]:
    """``D_j`` of every covariance entry, in ``theta`` order."""
    out = []
    for (offset, m, k, _), block in zip(layout, design.blocks):
        levels = offset + np.arange(m) * k
        for r, c in zip(*theta_positions(block.covariance, k)):
            i, j = levels + r, levels + c
            if r == c:
                D = sp.csr_matrix((np.ones(m), (i, i)), shape=(q, q))
            else:
                D = sp.csr_matrix((np.ones(2 * m), (np.r_[i, j], np.r_[j, i])), shape=(q, q))
            out.append(D)
    return out


def _lambda(design: Any, theta: np.ndarray, layout: list, q: int) -> sp.csr_matrix:
    kinds = [block.covariance for block in design.blocks]
    sizes = [block.n_terms for block in design.blocks]
    factors = factors_from_theta(np.asarray(theta, dtype=float), kinds, sizes)
    parts = [sp.kron(sp.identity(m), sp.csr_matrix(T)) for (_, m, _, _), T in zip(layout, factors)]
    return sp.block_diag(parts, format="csr") if parts else sp.csr_matrix((q, q))


def kenward_roger_matrices(design: Any, theta: np.ndarray, sigma: float) -> dict:
    """``Phi``, ``P`` (list), ``Q`` (list of lists) and ``K`` (traces) of the components
    ``gamma`` (covariance entries in ``theta`` order, then ``sigma^2``)."""
    X = np.asarray(design.X, dtype=float)
    n = design.n_obs
    Zs, layout = _random_design(design)
    q = Zs.shape[1]
    Lam = _lambda(design, theta, layout, q)
    K = (Zs.T @ Zs).toarray()
    ZX = np.asarray(Zs.T @ X)
    XX = X.T @ X
    ZU = np.asarray((sp.csr_matrix(K) @ Lam).toarray())
    XU = np.asarray((Lam.T @ ZX).T)
    W = np.asarray((Lam.T @ sp.csr_matrix(ZU)).toarray())
    N = np.linalg.inv(W + np.eye(q))

    R = [N]  # R_1, R_2, R_3
    for _ in range(2):
        R.append(N + R[-1] - R[-1] @ W @ N)

    def inverse_power(power: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``Z'S^k Z``, ``Z'S^k X``, ``X'S^k X``."""
        Rk, s = R[power - 1], sigma ** (-2 * power)
        return (
            s * (K - ZU @ Rk @ ZU.T),
            s * (ZX - ZU @ Rk @ XU.T),
            s * (XX - XU @ Rk @ XU.T),
        )

    A, B, C = inverse_power(1)
    S2_ZZ, S2_ZX, S2_XX = inverse_power(2)
    S3_XX = inverse_power(3)[2]
    trace_S2 = sigma**-4 * (n - float(np.sum(R[1] * W.T)))
    D = _selectors(design, layout, q)
    DA = [Dj @ A for Dj in D]
    DB = [Dj @ B for Dj in D]
    J = len(D)
    P = [-(B.T @ DBj) for DBj in DB] + [-S2_XX]
    Q = [[None] * (J + 1) for _ in range(J + 1)]
    Ktr = np.empty((J + 1, J + 1))
    for i in range(J):
        for j in range(J):
            Q[i][j] = DB[i].T @ A @ DB[j]
            Ktr[i, j] = float(np.sum(DA[i] * DA[j].T))
        Q[i][J] = DB[i].T @ S2_ZX
        Q[J][i] = Q[i][J].T
        Ktr[i, J] = Ktr[J, i] = float((D[i].multiply(S2_ZZ)).sum())
    Q[J][J] = S3_XX
    Ktr[J, J] = trace_S2
    return dict(Phi=np.linalg.inv(C), P=P, Q=Q, K=Ktr)
