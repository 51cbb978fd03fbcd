"""The LKJ prior on a correlation matrix, as its Cholesky factor, for the generic kernels.

The map and density of :func:`bayesmix.bayes.lkj.correlation_cholesky_entries`
(Stan's canonical partial correlations ``w = tanh(y)``): the factor, the LKJ log
density plus the log Jacobian, and their gradient in reverse mode. Used for
the random-effects blocks (:mod:`bayesmix.bayes.generic.kernel`) and corSymm
(:mod:`bayesmix.bayes.generic.dense_correlation`).
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=False, error_model="numpy")
def lkj_forward(x, start, k, eta, L, offset):
    """Fill the ``k x k`` LKJ Cholesky factor at ``L[offset:]``; return the LKJ log
    density plus the log Jacobian of Stan's map from ``x[start:]`` (see
    :func:`bayesmix.bayes.lkj.correlation_cholesky_entries`)."""
    for i in range(k * k):
        L[offset + i] = 0.0
    L[offset] = 1.0
    logp = 0.0
    position = start
    for i in range(1, k):
        log_remaining = 0.0
        for j in range(i):
            w = math.tanh(x[position])
            log_rest = math.log1p(-w * w)
            L[offset + i * k + j] = w * math.exp(0.5 * log_remaining)
            logp += log_rest + 0.5 * log_remaining
            log_remaining += log_rest
            position += 1
        logp += (k - i + 2.0 * eta - 3.0) * 0.5 * log_remaining
        L[offset + i * k + i] = math.exp(0.5 * log_remaining)
    return logp


@njit(cache=False, error_model="numpy")
def lkj_backward(x, start, k, eta, adj_L, offset, grad):
    """Add to ``grad[start:]`` the gradient of ``lkj_forward``'s log density plus
    ``sum(adj_L * L)`` (the adjoint of the factor)."""
    for i in range(1, k):
        base = start + i * (i - 1) // 2
        log_remaining = 0.0
        for j in range(i):
            w = math.tanh(x[base + j])
            log_remaining += math.log1p(-w * w)
        adj_log = (
            adj_L[offset + i * k + i] * 0.5 * math.exp(0.5 * log_remaining)
            + (k - i + 2.0 * eta - 3.0) * 0.5
        )
        for j in range(i - 1, -1, -1):  # back along the row: the remaining length before j
            w = math.tanh(x[base + j])
            log_rest = math.log1p(-w * w)
            log_remaining -= log_rest
            scale = math.exp(0.5 * log_remaining)
            adj_rest = adj_log + 1.0
            adj_log = adj_log + 0.5 + adj_L[offset + i * k + j] * w * 0.5 * scale
            adj_w = adj_L[offset + i * k + j] * scale
            grad[base + j] += adj_w * (1.0 - w * w) - 2.0 * w * adj_rest
