"""Symbolic maps of the correlation structures' parameters, for PyTensor graphs.

Partial autocorrelations to AR coefficients (Durbin-Levinson), canonical partial
correlations to a Cholesky factor, and the autocorrelations of an ARMA(p, q):
the PyTensor twins of :mod:`bayesmix.spec.correlation_math`, written so that
numba compiles them quickly (scalar arithmetic for small systems, vectors
rather than per-lag scalars, O(log n) nodes for long groups).

Notation
--------
phi, theta : AR and MA coefficients (nlme's signs); r : partial autocorrelations;
z : canonical partial correlations; gamma : autocovariances.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytensor.tensor as pt

from bayesmix.bayes.lkj import lower_triangular

__all__ = ["arma_acf", "cpc_cholesky", "matmul_small", "pacf_to_ar"]

Tensor = pt.TensorVariable


def pacf_to_ar(r: Tensor, p: int) -> Tensor:
    """AR coefficients from partial autocorrelations (Durbin-Levinson), as the spec's."""
    phi: list[Tensor] = []
    for k in range(p):
        rk = r[k]
        phi = [phi[i] - rk * phi[k - 1 - i] for i in range(k)] + [rk]
    return pt.stack(phi) if phi else pt.zeros(0)


def cpc_cholesky(z: Tensor, K: int) -> Tensor:
    """Cholesky factor of the ``K x K`` correlation matrix with canonical partial
    correlations ``z`` (row by row of the lower triangle, as ``cpc_to_correlation``)."""
    rows, position = [], 0
    for i in range(K):
        row, remaining = [], None
        for _ in range(i):
            scale = 1.0 if remaining is None else pt.sqrt(remaining)
            entry = z[position] * scale
            row.append(entry)
            remaining = (1.0 if remaining is None else remaining) - entry**2
            position += 1
        row.append(pt.ones(()) if i == 0 else pt.sqrt(remaining))
        rows.append(row)
    return lower_triangular(rows)


def matmul_small(a: Tensor, b: Tensor) -> Tensor:
    """Batched ``a @ b`` of small matrices as a broadcast product and sum."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(axis=-2)


#: Systems up to this size are solved by Cramer's rule in scalars: numba compiles
#: a general solve and its gradient far more slowly than a few dozen products.
CRAMER_MAX = 4


def _det(A: list) -> object:
    """Determinant of a small matrix of scalars (Leibniz formula)."""
    k = len(A)
    total = 0.0
    for perm in itertools.permutations(range(k)):
        sign = 1.0
        for i in range(k):
            for j in range(i + 1, k):
                if perm[i] > perm[j]:
                    sign = -sign
        term = sign
        for i in range(k):
            term = term * A[i][perm[i]]
        total = total + term
    return total


def _cramer(A: list, b: list) -> list:
    """``A^-1 b`` for a small matrix of scalars (Cramer's rule)."""
    det = _det(A)
    out = []
    for j in range(len(A)):
        Aj = [[b[i] if c == j else A[i][c] for c in range(len(A))] for i in range(len(A))]
        out.append(pt.as_tensor_variable(_det(Aj) / det))
    return out


def arma_acf(phi: Tensor, theta: Tensor, p: int, q: int, max_lag: int) -> Tensor:
    """Autocorrelations ``rho_0 .. rho_max_lag`` of a stationary ARMA(p, q), symbolic.

    As :func:`bayesmix.spec.correlation_math.arma_acf`: ``gamma_0..gamma_p`` from
    the first ``p + 1`` Yule-Walker-type equations, the lags up to ``q`` with the
    MA tail, and the pure AR recursion beyond, written as powers of its companion
    matrix (doubling: a graph of O(log max_lag) nodes however long the groups).
    """
    ph = [phi[i] for i in range(p)]
    th: list = [1.0] + [theta[j] for j in range(q)]
    psi: list = []
    for j in range(q + 1):
        value = th[j]
        for i in range(min(p, j)):
            value = value + ph[i] * psi[j - i - 1]
        psi.append(value)

    def ma(k: int):
        return sum((th[k + m] * psi[m] for m in range(1, q + 1 - k)), th[k] * psi[0])

    rhs = [ma(k) if k <= q else pt.zeros(()) for k in range(p + 1)]
    if p == 0:
        gamma = [pt.as_tensor_variable(v) for v in rhs]
    else:
        A = [[1.0 if i == k else 0.0 for i in range(p + 1)] for k in range(p + 1)]
        for k in range(p + 1):
            for i in range(p):
                A[k][abs(k - i - 1)] = A[k][abs(k - i - 1)] - ph[i]
        if p + 1 <= CRAMER_MAX:
            gamma = _cramer(A, rhs)
        else:
            A_t = pt.stack([pt.stack([pt.as_tensor_variable(a) for a in row]) for row in A])
            solved = pt.linalg.solve(A_t, pt.stack([pt.as_tensor_variable(v) for v in rhs]))
            gamma = [solved[k] for k in range(p + 1)]
    n_total = max(max_lag, p) + 1
    for k in range(p + 1, min(q, n_total - 1) + 1):  # the MA tail still contributes
        gamma.append(sum((ph[i] * gamma[k - 1 - i] for i in range(p)), ma(k)))
    head = pt.stack([pt.as_tensor_variable(g) for g in gamma])
    k0 = len(gamma)
    n_rest = n_total - k0
    # the tail as one vector (per-lag scalars would each be a node for numba to compile)
    if n_rest <= 0:
        gamma_t = head
    elif p == 0:
        gamma_t = pt.concatenate([head, pt.zeros(n_rest)])
    elif p == 1:
        powers = pt.power(ph[0], np.arange(1, n_rest + 1, dtype=np.int64))
        gamma_t = pt.concatenate([head, powers * gamma[k0 - 1]])
    else:
        state = pt.stack([gamma[k0 - 1 - j] for j in range(p)])
        shift = np.eye(p - 1, p)  # the companion matrix's sub-diagonal
        F = pt.concatenate([pt.stack(ph)[None, :], pt.as_tensor_variable(shift)], axis=0)
        P, h = F[None], 1  # F^1 .. F^h
        while h < n_rest:
            P, h = pt.concatenate([P, matmul_small(P[h - 1][None], P)], axis=0), 2 * h
        tail = (P[:n_rest, 0, :] * state[None, :]).sum(axis=1)
        gamma_t = pt.concatenate([head, tail])
    return gamma_t[: max_lag + 1] / gamma_t[0]
