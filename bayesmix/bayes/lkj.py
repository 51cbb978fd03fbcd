"""The LKJ prior on a correlation matrix, as the scalar entries of its Cholesky factor.

Written out rather than taken from ``pm.LKJCholeskyCov`` because numba compiles
that distribution's graph ~12 s slower (measured on a 2-core machine), which
dominated a first fit; scalar entries also let :mod:`bayesmix.bayes.model` form
each group-effect column without matrix products.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.forward import is_forward


def correlation_cholesky_entries(
    name: str, k: int, eta: pt.TensorVariable
) -> list[list[pt.TensorVariable]]:
    """Lower triangle of the Cholesky factor of a ``k x k`` LKJ(``eta``) correlation.

    Row ``i`` holds the scalars ``L[i, 0..i]``; the log density goes in a
    potential. The map is Stan's: ``k(k-1)/2``
    unconstrained values ``y`` give canonical partial correlations
    ``w = tanh(y)``, and ``L[i, j] = w[i, j] * sqrt(1 - sum_{m<j} L[i, m]^2)``
    with the diagonal closing the row to unit length. The potential is the LKJ
    log density ``sum_i (k - i + 2 eta - 3) log L[i, i]`` (0-based ``i``) plus the
    log Jacobian ``sum_ij [log(1 - w_ij^2) + log sqrt(1 - sum_{m<j} L[i, m]^2)]``.

    Built for forward sampling (:func:`bayesmix.bayes.forward.forward_sampling`),
    the partial correlations are drawn instead: ``w`` of column ``j`` is
    ``2 Beta(a_j, a_j) - 1`` with ``a_j = eta + (k - 2 - j) / 2``, the
    distribution of an LKJ(eta) matrix's canonical partial correlations
    (Lewandowski, Kurowicka and Joe 2009), and no potential is added.
    """
    if is_forward():
        return _forward_entries(name, k, eta)
    raw = pm.Flat(f"{name}_raw", shape=k * (k - 1) // 2)
    log_rest = pt.log1p(-(pt.tanh(raw) ** 2))  # log(1 - w^2), one per partial correlation
    w = pt.tanh(raw)
    rows, logp, position = [], 0.0, 0
    for i in range(k):
        row, log_remaining = [], 0.0  # log(1 - sum of squares so far in this row)
        for _ in range(i):
            row.append(w[position] * pt.exp(0.5 * log_remaining))
            logp = logp + log_rest[position] + 0.5 * log_remaining
            log_remaining = log_remaining + log_rest[position]
            position += 1
        if i > 0:
            logp = logp + (k - i + 2.0 * eta - 3.0) * 0.5 * log_remaining
        row.append(pt.exp(0.5 * log_remaining) if i > 0 else pt.ones(()))
        rows.append(row)
    pm.Potential(f"{name}_lkj", logp)
    return rows


def _forward_entries(name: str, k: int, eta: pt.TensorVariable) -> list[list[pt.TensorVariable]]:
    """The factor's rows from drawn canonical partial correlations (row-major order)."""
    columns = np.array([j for i in range(k) for j in range(i)], dtype=float)
    half = pm.Beta(f"{name}_cpc", eta + 0.5 * (k - 2 - columns), eta + 0.5 * (k - 2 - columns))
    w = 2.0 * half - 1.0
    # the unconstrained values NUTS samples, w = tanh(raw): results read them by this name
    pm.Deterministic(f"{name}_raw", pt.arctanh(w))
    rows, position = [], 0
    for i in range(k):
        row, remaining = [], pt.ones(())
        for _ in range(i):
            row.append(w[position] * pt.sqrt(remaining))
            remaining = remaining * (1.0 - w[position] ** 2)
            position += 1
        row.append(pt.sqrt(remaining))
        rows.append(row)
    return rows


def lower_triangular(rows: Sequence[Sequence[pt.TensorVariable]]) -> pt.TensorVariable:
    """The ``k x k`` matrix whose row ``i`` starts with ``rows[i]`` and ends in zeros."""
    k = len(rows)
    zeros = [pt.zeros(()) for _ in range(k)]
    return pt.stack([pt.stack([*row, *zeros[len(row) :]]) for row in rows])


def correlation_cholesky(name: str, k: int, eta: pt.TensorVariable) -> pt.TensorVariable:
    """Cholesky factor (matrix) of a ``k x k`` correlation matrix with an LKJ(``eta``) prior.

    See :func:`correlation_cholesky_entries`.
    """
    return lower_triangular(correlation_cholesky_entries(name, k, eta))
