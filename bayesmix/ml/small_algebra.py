"""Small dense and sparse building blocks of the PLS kernel (:mod:`bayesmix.ml.deviance`).

Each is a few lines that avoid a library call's overhead where a small model's
evaluation is otherwise mostly argument checking: batched products of tiny
matrices as vector operations, a block's sparse ``Z``, and LAPACK's Cholesky and
triangular solve called directly.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from bayesmix.errors import FitError

__all__ = [
    "COMPILED_FROM",
    "level_factors",
    "lower_cholesky",
    "lower_solve",
    "small_matmul",
    "sparse_cross",
]


#: From this many matrices in a stack on, small_matmul (and the kernel's first-block
#: factor) run a compiled loop: numpy's broadcast products allocate a temporary per
#: term (16 of a 50-s fit with 10^6 levels).
COMPILED_FROM = 64


def small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched ``a @ b`` for tiny trailing matrices (a leading size of 1 is broadcast).

    Small stacks are elementwise vector ops; stacks of :data:`COMPILED_FROM`
    matrices or more, a compiled loop (:func:`bayesmix.ml.first_block.batched_matmul`).
    """
    m = max(a.shape[0], b.shape[0]) if a.ndim == 3 and b.ndim == 3 else 0
    if m >= COMPILED_FROM and a.shape[0] in (1, m) and b.shape[0] in (1, m):
        from bayesmix.ml.first_block import batched_matmul  # numba: large models only

        return batched_matmul(a, b)
    return sum(a[..., :, t, None] * b[..., None, t, :] for t in range(a.shape[-1]))


def level_factors(T1: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, float]:
    """``L_j^-1`` of every level (``L_j L_j' = T1'D_j T1 + I``) and ``sum_j log|L_j|^2``.

    ``D`` is the levels' ``(m, k, k)`` stack of ``Z_j'Z_j``; the first block of the
    PLS kernel is factored this way (:mod:`bayesmix.ml.deviance`).
    """
    m, k = D.shape[0], D.shape[1]
    if k == 1:
        L1 = np.sqrt(T1[0, 0] ** 2 * D + 1.0)
        return 1.0 / L1, 2.0 * float(np.log(L1).sum())
    if m < COMPILED_FROM:
        L1 = np.linalg.cholesky(small_matmul(small_matmul(T1.T[None], D), T1[None]) + np.eye(k))
        return np.linalg.inv(L1), 2.0 * float(np.log(np.diagonal(L1, axis1=1, axis2=2)).sum())
    from bayesmix.ml.first_block import first_factor  # numba: large models only

    return first_factor(T1, D)


def sparse_cross(codes: np.ndarray, Z: np.ndarray, n_levels: int) -> sp.csr_matrix:
    """The (n, n_levels * k) indicator-times-covariate matrix of one block."""
    n, k = Z.shape
    cols = (codes[:, None] * k + np.arange(k)).ravel()
    return sp.csr_matrix((Z.ravel(), (np.repeat(np.arange(n), k), cols)), shape=(n, n_levels * k))


def lower_cholesky(A: np.ndarray, overwrite: bool = False) -> np.ndarray | None:
    """Lower Cholesky factor by LAPACK's ``dpotrf`` directly, or ``None`` if not PD.

    scipy's ``cholesky`` and ``solve_triangular`` wrappers cost ~15-25 microseconds
    a call in argument checks: most of a small model's evaluation. ``overwrite``
    lets LAPACK factor a Fortran-ordered (or symmetric C-ordered) ``A`` in place
    instead of copying it (a temporary of the caller's, e.g. 10 MB for InstEval).
    """
    if overwrite and A.flags.c_contiguous:
        # a symmetric C array is its own transpose: factor the Fortran view in place
        L, info = sla.lapack.dpotrf(A.T, lower=1, clean=1, overwrite_a=1)
        return None if info else L
    L, info = sla.lapack.dpotrf(A, lower=1, clean=1)
    return None if info else L


def lower_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``L^-1 b`` for lower-triangular ``L`` by LAPACK's ``dtrtrs``."""
    x, info = sla.lapack.dtrtrs(L, b, lower=1)
    if info:  # pragma: no cover - L comes from a successful factorisation
        raise FitError(f"a triangular solve failed (LAPACK info {info})")
    return x
