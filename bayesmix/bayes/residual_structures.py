"""PyTensor versions of the residual structures: log SD multipliers and whitening.

The Bayesian twin of :meth:`bayesmix.spec.residual_structure.ResidualStructure.whiten`:
the same unconstrained parameters ``u`` give the same ``L^-1 M`` and ``log|Lambda|``
(checked to 1e-10 in ``tests/test_residual_bayes.py``), written as PyTensor graphs with
the bound structure's layouts as constants.

* Variance functions: ``log g`` per row for every kind, strata and ``varComb``
  included; ``fitted`` (the linear predictor, random effects included) may be
  symbolic, which is the natural Bayesian reading of nlme's ``~ fitted(.)``.
* corAR1 and corCAR1: the O(n) Markov recursion of
  :class:`~bayesmix.spec.correlation_math.MarkovLayout` (rows sorted by group and
  time, each residual whitened against its predecessor).
* Every other structure: batched Cholesky factors over the
  :class:`~bayesmix.spec.correlation_math.DenseLayout` classes (groups of one size;
  groups with one coordinate pattern share a factor; groups on the positions
  ``0..s-1`` share the largest group's factor). corARMA's autocorrelations are
  built symbolically for its ``p`` and ``q``, corSymm's matrix from canonical
  partial correlations (:mod:`bayesmix.bayes.correlation_graphs`).

Correlation parameters enter in natural form (:func:`correlation_params` maps
``u`` to them), so the PyMC model can put its priors on ``Phi``, ``range``... directly.

Notation
--------
u : unconstrained structure parameters (the spec's); g : SD multipliers; C : a
group's correlation matrix, ``C = L L'``; M : rows to whiten, shape (n,) or (n, k);
phi, theta : AR and MA coefficients (nlme's signs); z : canonical partial correlations.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

from bayesmix.bayes.correlation_graphs import arma_acf, cpc_cholesky, matmul_small, pacf_to_ar
from bayesmix.errors import ArgumentError
from bayesmix.spec.correlation_structures import BoundCorrelation, distances
from bayesmix.spec.residual_structure import ResidualStructure
from bayesmix.spec.variance_functions import BoundVariance

__all__ = ["correlation_params", "correlation_whiten", "residual_whiten", "variance_log_sd"]

Tensor = pt.TensorVariable

#: Groups of unequal sizes are whitened in one padded product when the padding at
#: most multiplies the rows by this (else one product per group size).
PAD_MAX_RATIO = 2.0


# ------------------------------------------------------------ variance functions


def variance_log_sd(bound: BoundVariance, u, fitted=None) -> Tensor:
    """``log g`` per row at unconstrained ``u`` (mirrors ``BoundVariance.log_sd``).

    Parameters
    ----------
    bound : BoundVariance
    u : tensor, shape (bound.n_params,)
    fitted : tensor, shape (n,), optional
        The fitted values, for a function of ``fitted(.)``.
    """
    u = pt.as_tensor_variable(u)
    kind = bound.kind
    if kind == "varComb":
        total, start = None, 0
        for part in bound.parts:
            piece = variance_log_sd(part, u[start : start + part.n_params], fitted)
            total = piece if total is None else total + piece
            start += part.n_params
        return total
    if kind == "varFixed":
        return pt.as_tensor_variable(0.5 * np.log(np.asarray(bound.covariate, dtype=float)))
    codes = np.asarray(bound.strata_codes, dtype=np.int64)
    if kind == "varIdent":
        return pt.concatenate([pt.zeros(1), u])[codes]
    m = len(bound.strata_levels)

    def per_row(values: Tensor) -> Tensor:  # one value per stratum -> one per row
        return values[0] if m == 1 else values[codes]

    if bound.covariate is not None:
        v = pt.as_tensor_variable(np.asarray(bound.covariate, dtype=float))
    elif fitted is None:
        raise ArgumentError(f"{bound.spec.nlme()} needs the fitted values (fitted=).")
    else:
        v = pt.as_tensor_variable(fitted)
    if kind == "varExp":
        return per_row(u) * v
    log_abs = pt.log(pt.abs(v))
    if kind == "varPower":
        return per_row(u) * log_abs
    if kind == "varConstPower":
        return pt.logaddexp(per_row(u[:m]), per_row(u[m:]) * log_abs)
    raise ArgumentError(f"bound: unknown variance function {kind!r}.")


# ------------------------------------------------------------ correlation parameters


def correlation_params(bound: BoundCorrelation, u) -> tuple[Tensor | None, ...]:
    """The natural parameters that :func:`correlation_whiten` takes, from ``u``.

    ``(phi,)`` for corAR1 and corCAR1; ``(phi, theta)`` vectors for corARMA;
    ``(rho,)`` for corCompSymm; ``(L,)``, the Cholesky factor of the ``K x K``
    correlation matrix, for corSymm; ``(range, nugget or None)`` for corExp/corGaus.
    """
    u = pt.as_tensor_variable(u)
    kind = bound.kind
    if kind == "corAR1":
        return (pt.tanh(u[0]),)
    if kind == "corCAR1":
        return (pt.sigmoid(u[0]),)
    if kind == "corARMA":
        p, q = bound.spec.p, bound.spec.q
        return pacf_to_ar(pt.tanh(u[:p]), p), -pacf_to_ar(pt.tanh(u[p:]), q)
    if kind == "corCompSymm":
        lo = -1.0 / (bound.max_size - 1)
        return (lo + (1.0 - lo) * pt.sigmoid(u[0]),)
    if kind == "corSymm":
        return (cpc_cholesky(pt.tanh(u), bound.n_times),)
    nugget = pt.sigmoid(u[1]) if bound.spec.nugget else None
    return pt.exp(u[0]), nugget


# ------------------------------------------------------------ whitening


def _markov_whiten(bound: BoundCorrelation, phi: Tensor, M2: Tensor, keep_order: bool):
    layout = bound.markov
    order = np.asarray(layout.order, dtype=np.int64)
    later = ~np.asarray(layout.first, dtype=bool)
    gap = np.asarray(layout.gap, dtype=float)
    if bound.kind == "corCAR1":
        rho = pt.exp(gap * pt.log(phi))
    elif np.all(gap[later] == 1.0):
        rho = phi * pt.ones(order.size)
    else:
        rho = pt.power(phi, np.round(gap).astype(np.int64))
    rho = rho * later.astype(float)
    Ms = M2[order]
    prev = pt.concatenate([Ms[:1], Ms[:-1]], axis=0)
    log_one_minus = pt.log1p(-(rho**2))
    W = (Ms - rho[:, None] * prev) * pt.exp(-0.5 * log_one_minus)[:, None]
    if keep_order:
        W = W[np.argsort(order)]
    return W, pt.sum(log_one_minus)


def _shared_matrix(bound: BoundCorrelation, params) -> Tensor | None:
    """What every size class indexes: corARMA's autocorrelations up to the largest
    lag, corSymm's ``K x K`` matrix (built once, not once per class)."""
    if bound.kind == "corARMA":
        max_lag = max(
            int(np.ptp(patterns[:, :, 0], axis=1).max()) for _, patterns, _ in bound.dense.classes
        )
        return arma_acf(params[0], params[1], bound.spec.p, bound.spec.q, max_lag)
    if bound.kind == "corSymm":
        return matmul_small(params[0], params[0].T)
    return None


def _pattern_correlation(
    bound: BoundCorrelation, params, shared: Tensor | None, patterns: np.ndarray
) -> Tensor:
    """Correlation matrices (U, s, s) of the coordinate patterns (U, s, d)."""
    kind = bound.kind
    s = patterns.shape[1]
    eye = np.eye(s)
    if kind == "corARMA":
        lags = np.abs(patterns[:, :, None, 0] - patterns[:, None, :, 0]).astype(np.int64)
        return shared[lags]
    if kind == "corCompSymm":
        rho = params[0]
        return pt.broadcast_to(rho + (1.0 - rho) * eye, (patterns.shape[0], s, s))
    if kind == "corSymm":
        idx = patterns[:, :, 0].astype(np.int64)
        return shared[idx[:, :, None], idx[:, None, :]]
    if kind in ("corExp", "corGaus"):
        scaled = distances(patterns, bound.spec.metric) / params[0]
        cor = pt.exp(-scaled) if kind == "corExp" else pt.exp(-(scaled**2))
        if params[1] is not None:
            cor = (1.0 - params[1]) * cor
        return pt.switch(eye.astype(bool), 1.0, cor)
    raise ArgumentError(f"bound: no dense correlation for {kind!r}.")


def _full_pattern(bound: BoundCorrelation, patterns: np.ndarray) -> bool:
    """corSymm patterns that are all K times in order: their factor is ``L`` itself."""
    K = bound.n_times
    return (
        bound.kind == "corSymm"
        and patterns.shape[1] == K
        and np.all(patterns[:, :, 0] == np.arange(K)[None, :])
    )


def _prefix_factor(bound: BoundCorrelation, params, shared: Tensor | None):
    """``(L^-1, cumsum(log diag L))`` of the largest group, when every group holds
    the first positions ``0..s-1`` of a stationary or indexed structure.

    The Cholesky factor of a leading block is the leading block of the factor
    (and so is its inverse), so one factorisation serves every group size:
    corARMA, corCompSymm and corSymm on positions (their default) in groups of
    any sizes, e.g. Ovary's 25-31 rows per mare.
    """
    if bound.kind not in ("corARMA", "corCompSymm", "corSymm"):
        return None
    classes = bound.dense.classes
    for _, patterns, _ in classes:
        s = patterns.shape[1]
        if patterns.shape[0] != 1 or not np.array_equal(patterns[0, :, 0], np.arange(s)):
            return None
    m = max(patterns.shape[1] for _, patterns, _ in classes)
    if bound.kind == "corSymm":
        L = params[0][:m, :m]
    else:
        C = _pattern_correlation(bound, params, shared, np.arange(m, dtype=float)[None, :, None])
        L = pt.linalg.cholesky(C[0], check_finite=False)
    Linv = pt.linalg.solve_triangular(L, np.eye(m), lower=True, check_finite=False)
    return Linv, pt.cumsum(pt.log(pt.diagonal(L)))


def _padded_whiten(bound: BoundCorrelation, prefix, M2: Tensor, keep_order: bool):
    """Every group at once against the largest group's factor, shorter groups padded.

    Row ``i`` of ``L^-1 e`` reads rows ``j <= i`` only, so padding a group at its
    end leaves its own rows' values unchanged; the padded ones are dropped. One
    product instead of one per group size keeps the graph (and numba's compile
    time) small.
    """
    Linv, cum_log_diag = prefix
    classes = bound.dense.classes
    m = max(rows.shape[1] for rows, _, _ in classes)
    n = int(sum(rows.size for rows, _, _ in classes))
    padded = np.concatenate(
        [
            np.pad(np.asarray(rows), ((0, 0), (0, m - rows.shape[1])), constant_values=n)
            for rows, _, _ in classes
        ]
    )
    sizes = np.concatenate([np.full(rows.shape[0], rows.shape[1]) for rows, _, _ in classes])
    real = (padded != n).ravel()
    M_pad = pt.concatenate([M2, pt.zeros((1, M2.shape[1]))], axis=0)
    W = matmul_small(Linv[None], M_pad[padded]).reshape((padded.size, -1))[np.flatnonzero(real)]
    log_det = 2.0 * pt.sum(cum_log_diag[sizes - 1])
    if keep_order:
        W = W[np.argsort(padded.ravel()[real])]
    return W, log_det


def _dense_whiten(bound: BoundCorrelation, params, M2: Tensor, keep_order: bool):
    shared = _shared_matrix(bound, params)
    prefix = _prefix_factor(bound, params, shared)
    if prefix is not None:
        classes = bound.dense.classes
        m = max(rows.shape[1] for rows, _, _ in classes)
        padded_size = m * sum(rows.shape[0] for rows, _, _ in classes)
        if padded_size <= PAD_MAX_RATIO * sum(rows.size for rows, _, _ in classes):
            return _padded_whiten(bound, prefix, M2, keep_order)
    pieces, row_order, log_det = [], [], pt.zeros(())
    for rows, patterns, inverse in bound.dense.classes:
        rows = np.asarray(rows, dtype=np.int64)
        inverse = np.asarray(inverse, dtype=np.int64)
        G, s = rows.shape
        block = M2[rows]  # (G, s, k)
        row_order.append(rows.ravel())
        if s == 1:  # a group of one row: nothing to whiten
            pieces.append(block.reshape((G, -1)))
            continue
        if prefix is not None:
            Linv, cum_log_diag = prefix
            log_det = log_det + 2.0 * G * cum_log_diag[s - 1]
            pieces.append(matmul_small(Linv[None, :s, :s], block).reshape((G * s, -1)))
            continue
        if _full_pattern(bound, patterns):
            L = pt.broadcast_to(params[0], (patterns.shape[0], s, s))
        else:
            C = _pattern_correlation(bound, params, shared, patterns)
            L = pt.linalg.cholesky(C, check_finite=False)
        diag = pt.diagonal(L, axis1=1, axis2=2)
        counts = np.bincount(inverse, minlength=patterns.shape[0]).astype(float)
        log_det = log_det + 2.0 * pt.sum(counts * pt.sum(pt.log(diag), axis=1))
        if patterns.shape[0] == G and np.array_equal(inverse, np.arange(G)):
            W = pt.linalg.solve_triangular(L, block, lower=True, b_ndim=2, check_finite=False)
        else:
            eye = np.broadcast_to(np.eye(s), (patterns.shape[0], s, s))
            Linv = pt.linalg.solve_triangular(L, eye, lower=True, b_ndim=2, check_finite=False)
            W = matmul_small(Linv[inverse], block)
        pieces.append(W.reshape((G * s, -1)))
    W = pt.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
    if keep_order:
        W = W[np.argsort(np.concatenate(row_order))]
    return W, log_det


def correlation_whiten(
    bound: BoundCorrelation, params, M, keep_order: bool = True
) -> tuple[Tensor, Tensor]:
    """``L^-1 M`` and ``log|C|`` for natural parameters ``params``.

    Parameters
    ----------
    bound : BoundCorrelation
    params : tuple
        As :func:`correlation_params` returns them.
    M : tensor, shape (n,) or (n, k)
    keep_order : bool
        Return the rows in the original order (``False``: in the layout's
        order, enough for a sum of squares, and one gather fewer).
    """
    M = pt.as_tensor_variable(M)
    M2 = M[:, None] if M.ndim == 1 else M
    if bound.markov is not None:
        W, log_det = _markov_whiten(bound, params[0], M2, keep_order)
    else:
        W, log_det = _dense_whiten(bound, params, M2, keep_order)
    return (W[:, 0] if M.ndim == 1 else W), log_det


def residual_whiten(
    structure: ResidualStructure, u, M, fitted=None, keep_order: bool = True
) -> tuple[Tensor, Tensor]:
    """``L^-1 M`` and ``log|Lambda|`` at ``u``: ``ResidualStructure.whiten`` in PyTensor."""
    u = pt.as_tensor_variable(u)
    M = pt.as_tensor_variable(M)
    k = structure.variance.n_params if structure.variance is not None else 0
    log_det = pt.zeros(())
    if structure.variance is not None:
        log_g = variance_log_sd(structure.variance, u[:k], fitted)
        scale = pt.exp(-log_g)
        M = M * (scale if M.ndim == 1 else scale[:, None])
        log_det = log_det + 2.0 * pt.sum(log_g)
    if structure.correlation is not None:
        params = correlation_params(structure.correlation, u[k:])
        M, log_det_c = correlation_whiten(structure.correlation, params, M, keep_order)
        log_det = log_det + log_det_c
    return M, log_det
