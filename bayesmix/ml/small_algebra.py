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

__all__ = ["lower_cholesky", "lower_solve", "small_matmul", "sparse_cross"]


def small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched ``a @ b`` for tiny trailing matrices, as elementwise vector ops."""
    return sum(a[..., :, t, None] * b[..., None, t, :] for t in range(a.shape[-1]))


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
