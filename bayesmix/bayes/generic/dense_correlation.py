"""Residual correlations factored group by group: corExp, corGaus, corSymm and corARMA.

For each correlation group of m rows the kernel forms the m x m matrix C (the
spatial functions of the distances with their nugget, or corSymm's rows and
columns of ``S = L L'``, L the LKJ factor of
:mod:`bayesmix.bayes.generic.lkj_kernel`), factors it, and adds ``e' C^-1 e``
and ``log|C|``. The gradient uses ``d/dC of -1/2 (e' C^-1 e + log|C|) =
1/2 (a a' - C^-1)`` with ``a = C^-1 e``, so only C's derivatives in the
parameters are written out. Groups are small (tens of rows), where an explicit
inverse is cheap; the factorisation is hand-written (numba's LAPACK bindings
would tie the cached kernel to scipy's library addresses).

Notation
--------
e : scaled residuals; C : a group's correlation matrix; a : C^-1 e; G : d/dC;
S : corSymm's K x K correlation; d : a pair's distance.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.bayes.generic.arma import arma_rho_and_jacobian
from bayesmix.bayes.generic.lkj_kernel import lkj_backward, lkj_forward

COR_EXP, COR_GAUS, COR_SYMM, COR_ARMA = 4, 5, 6, 7


@njit(cache=False, error_model="numpy")
def _cholesky(C, L, m):
    """Lower factor of the leading m x m block of C (row stride m) into L; False if not PD."""
    for j in range(m):
        total = C[j * m + j]
        for k in range(j):
            total -= L[j * m + k] * L[j * m + k]
        if not total > 0.0:
            return False
        L[j * m + j] = math.sqrt(total)
        for i in range(j + 1, m):
            value = C[i * m + j]
            for k in range(j):
                value -= L[i * m + k] * L[j * m + k]
            L[i * m + j] = value / L[j * m + j]
            L[j * m + i] = 0.0
    return True


@njit(cache=False, error_model="numpy")
def _inverse(L, inverse, work, m):
    """C^-1 = L^-T L^-1 into ``inverse`` (work: L^-1)."""
    for col in range(m):
        for i in range(m):
            value = 1.0 if i == col else 0.0
            for k in range(i):
                value -= L[i * m + k] * work[k * m + col]
            work[i * m + col] = value / L[i * m + i]
    for i in range(m):
        for j in range(m):
            total = 0.0
            for k in range(max(i, j), m):
                total += work[k * m + i] * work[k * m + j]
            inverse[i * m + j] = total


@njit(cache=False, error_model="numpy")
def dense_groups(x, grad, e, adj_e, members, starts, times, distance, kind, p1, p2, K, q, c1, c2):
    """Add each group's ``e' C^-1 e`` and ``log|C|`` (returned, with corSymm's LKJ log
    density); ``adj_e`` gets ``-C^-1 e``, ``grad`` the parameters' gradient.

    Parameters by kind: spatial, the range's and nugget's positions (``p1``, ``p2``);
    corSymm, the LKJ values' first position ``p1``, ``K`` times and LKJ's ``eta = c1``;
    corARMA, the partial autocorrelations' first positions ``p1``, ``p2``, their
    numbers ``K``, ``q`` and interval ``(c1, c2)``; ``times`` are positions or times.
    """
    eta = c1
    n_groups = starts.size - 1
    largest = 0
    for g in range(n_groups):
        largest = max(largest, starts[g + 1] - starts[g])
    work = np.empty(4 * largest * largest + largest + 4 * K * K)
    C, Lg = work[: largest * largest], work[largest * largest : 2 * largest * largest]
    inverse = work[2 * largest * largest : 3 * largest * largest]
    scratch = work[3 * largest * largest : 4 * largest * largest]
    a = work[4 * largest * largest : 4 * largest * largest + largest]
    at = 4 * largest * largest + largest
    L, S = work[at : at + K * K], work[at + K * K : at + 2 * K * K]
    adj_S, adj_L = work[at + 2 * K * K : at + 3 * K * K], work[at + 3 * K * K :]
    extra = 0.0
    scale, nugget = 1.0, 0.0
    rho, jacobian = np.zeros(1), np.zeros((1, 1))
    if kind == COR_ARMA:
        max_lag = 0
        for g in range(n_groups):
            low, high = times[starts[g]], times[starts[g]]
            for i in range(starts[g], starts[g + 1]):
                low, high = min(low, times[i]), max(high, times[i])
            max_lag = max(max_lag, high - low)
        rho, jacobian = arma_rho_and_jacobian(x, p1, K, p2, q, c1, c2, max_lag)
        adj_rho = np.zeros(max_lag + 1)
    elif kind == COR_SYMM:
        extra = lkj_forward(x, p1, K, eta, L, 0)
        for i in range(K):
            for j in range(K):
                total = 0.0
                for k in range(min(i, j) + 1):
                    total += L[i * K + k] * L[j * K + k]
                S[i * K + j] = total
                adj_S[i * K + j] = 0.0
    else:
        scale = math.exp(x[p1])  # the range
        if p2 >= 0:
            nugget = 1.0 / (1.0 + math.exp(-x[p2]))
    quad, log_det, adj_range, adj_nugget = 0.0, 0.0, 0.0, 0.0
    offset = 0  # where the group's distances start
    for g in range(n_groups):
        first, m = starts[g], starts[g + 1] - starts[g]
        for i in range(m):
            for j in range(m):
                if kind == COR_SYMM:
                    value = S[times[first + i] * K + times[first + j]]
                elif kind == COR_ARMA:
                    value = rho[abs(times[first + i] - times[first + j])]
                elif i == j:
                    value = 1.0
                else:
                    t = distance[offset + i * m + j] / scale
                    value = (1.0 - nugget) * (math.exp(-t) if kind == COR_EXP else math.exp(-t * t))
                C[i * m + j] = value
        if not _cholesky(C, Lg, m):
            return math.inf, 0.0, extra
        for i in range(m):  # a = C^-1 e: forward, then back substitution
            value = e[members[first + i]]
            for k in range(i):
                value -= Lg[i * m + k] * a[k]
            a[i] = value / Lg[i * m + i]
            log_det += 2.0 * math.log(Lg[i * m + i])
        for i in range(m):
            quad += a[i] * a[i]
        for i in range(m - 1, -1, -1):
            value = a[i]
            for k in range(i + 1, m):
                value -= Lg[k * m + i] * a[k]
            a[i] = value / Lg[i * m + i]
        _inverse(Lg, inverse, scratch, m)
        for i in range(m):
            adj_e[members[first + i]] -= a[i]
            for j in range(m):
                G = 0.5 * (a[i] * a[j] - inverse[i * m + j])
                if kind == COR_SYMM:
                    adj_S[times[first + i] * K + times[first + j]] += G
                elif kind == COR_ARMA:
                    adj_rho[abs(times[first + i] - times[first + j])] += G
                elif i != j:
                    d = distance[offset + i * m + j]
                    t = d / scale
                    if kind == COR_EXP:
                        f = math.exp(-t)
                        d_scale = f * t / scale
                    else:
                        f = math.exp(-t * t)
                        d_scale = f * 2.0 * t * t / scale
                    adj_range += G * (1.0 - nugget) * d_scale
                    adj_nugget -= G * f
        offset += m * m
    if kind == COR_ARMA:  # through rho's Jacobian in the partial autocorrelations' x
        for k in range(K + q):
            total = 0.0
            for lag in range(adj_rho.size):
                total += adj_rho[lag] * jacobian[lag, k]
            grad[p1 + k if k < K else p2 + k - K] += total
    elif kind == COR_SYMM:  # S = L L': d/dL = (G + G') L, then through the LKJ map
        for i in range(K):
            for j in range(K):
                total = 0.0
                for k in range(K):
                    total += (adj_S[i * K + k] + adj_S[k * K + i]) * L[k * K + j]
                adj_L[i * K + j] = total
        lkj_backward(x, p1, K, eta, adj_L, 0, grad)
    else:
        grad[p1] += adj_range * scale
        if p2 >= 0:
            grad[p2] += adj_nugget * nugget * (1.0 - nugget)
    return quad, log_det, extra
