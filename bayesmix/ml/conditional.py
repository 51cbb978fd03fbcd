"""lme4's conditional variances of the random effects, from the PLS factor.

A companion of :class:`bayesmix.ml.deviance.ProfiledDeviance` (it reads the
kernel's factor and block layout), kept apart because only the final
estimates need it, never the optimiser.

Notation
--------
L11 (batch of k1 x k1 factors), L22 (dense), B : the blocked Cholesky factor of
:mod:`bayesmix.ml.deviance`; T_i : relative covariance factors; S = L22 L22'.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from bayesmix.errors import FitError


def conditional_variances(
    kernel: Any, theta: np.ndarray, sigma: float, chunk: int = 4096
) -> tuple[np.ndarray, ...]:
    """``sigma^2 Lambda (L L')^-1 Lambda'`` per level of every block of ``kernel``.

    See :meth:`bayesmix.ml.deviance.ProfiledDeviance.conditional_variances`.
    """
    if not kernel._blocks:
        return ()
    f = kernel._factor(theta)
    T, out = f["T"], [None] * len(kernel._blocks)
    first, k1, m1 = kernel._order[0], kernel._k1, kernel._m1
    L1inv = f["L1inv"]
    P1 = L1inv.transpose(0, 2, 1) @ L1inv
    if kernel._q_r:
        L22 = f["L22"]
        S_inv, info = sla.lapack.dpotri(L22, lower=True)
        if info:  # pragma: no cover - L22 is a valid Cholesky factor
            raise FitError(f"inverting the random-effects factor failed (LAPACK info {info})")
        S_inv = np.tril(S_inv) + np.tril(S_inv, -1).T
        lam_r_t = sp.block_diag(
            [sp.kron(sp.eye(kernel.n_levels[i]), T[i].T) for i in kernel._order[1:]], format="csr"
        )
        L1inv_bd = sp.bsr_matrix((L1inv, np.arange(m1), np.arange(m1 + 1)), shape=(m1 * k1,) * 2)
        W = (lam_r_t @ sp.csr_matrix(f["B"]) @ L1inv_bd).tocsc()
        for start in range(0, m1, chunk):
            stop = min(start + chunk, m1)
            Wc = W[:, start * k1 : stop * k1].tocoo()
            Y = np.asarray(Wc.T.tocsr() @ S_inv)  # (chunk * k1, q_r) = W_c' S^-1
            level, t = np.divmod(Wc.col, k1)
            for s in range(k1):
                contrib = Y[level * k1 + s, Wc.row] * Wc.data
                P1[start:stop, s, :] += np.bincount(
                    level * k1 + t, contrib, minlength=(stop - start) * k1
                ).reshape(-1, k1)
        for pos, i in enumerate(kernel._order[1:]):
            sl = slice(kernel._offsets[pos], kernel._offsets[pos + 1])
            k = kernel.sizes[i]
            sub = S_inv[sl, sl].reshape(kernel.n_levels[i], k, kernel.n_levels[i], k)
            out[i] = sub[np.arange(kernel.n_levels[i]), :, np.arange(kernel.n_levels[i]), :]
    out[first] = P1
    return tuple(sigma**2 * (Ti[None] @ P @ Ti.T[None]) for P, Ti in zip(out, T))
