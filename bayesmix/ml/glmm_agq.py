"""Adaptive Gauss-Hermite quadrature for GLMMs with one scalar random effect (``nagq > 1``).

With a single random intercept (or one scalar term) the integral over the
spherical effects factorises into one integral per level ``j``:

    L_j = integral exp(h_j(u)) du,   h_j(u) = sum_{i in j} l_i(u) - u^2 / 2 - log(2 pi) / 2.

As lme4 does, each integral is centred at the conditional mode ``u*_j`` (from
PIRLS) and scaled by ``s_j = 1 / L_jj``, the conditional SD from the Laplace
factor; with the probabilists' Gauss-Hermite rule (nodes ``z_k``, weights
``w_k``, for the weight ``exp(-z^2 / 2)``):

    log L_j ~ log s_j + logsumexp_k(log w_k + h_j(u*_j + s_j z_k) + z_k^2 / 2).

One node (``z = 0``, ``w = sqrt(2 pi)``) is the Laplace approximation. The
result is the full log-likelihood (lme4's ``nAGQ > 1`` logLik leaves out the
saturated log-likelihood, ``sum_i l_i(mu_i = y_i)``; bayesmix reports both
Laplace and quadrature fits on the full scale).

Notation
--------
j level of the grouping factor, u*_j conditional mode, s_j conditional SD of u_j,
z_k, w_k Gauss-Hermite nodes and weights, l_i row log-likelihood.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from bayesmix.errors import ArgumentError, FitError
from bayesmix.spec.design import Design

__all__ = ["MAX_NODES", "agq_objective", "check_agq"]

#: lme4's limit on nAGQ
MAX_NODES = 25
_FAILED = 1e100


def check_agq(design: Design, zi_X: np.ndarray | None) -> None:
    """Refuse quadrature for models it does not apply to (as lme4 does)."""
    blocks = design.blocks
    if len(blocks) != 1 or blocks[0].n_terms != 1:
        raise ArgumentError(
            "nagq > 1 (adaptive Gauss-Hermite quadrature) needs exactly one scalar random "
            "effect such as (1 | g); use nagq=1 (Laplace) for this model."
        )
    if zi_X is not None:
        raise ArgumentError("nagq > 1 is not available with zero inflation; use nagq=1.")


def agq_objective(problem, theta: np.ndarray, beta: np.ndarray, nagq: int) -> float:
    """``-2 log L`` by ``nagq``-point adaptive quadrature at ``(theta, beta)``."""
    try:
        mode = problem.pirls(theta, beta)
    except FitError:
        problem._u = np.zeros_like(problem._u)
        return _FAILED
    block = problem.design.blocks[0]
    codes = block.codes
    z_lambda = block.Z[:, 0] * float(theta[0])  # the row's coefficient of u_j
    # conditional SDs of u: 1 / sqrt(A_jj), A diagonal with one scalar block
    a = np.bincount(codes, mode.weights * z_lambda**2, minlength=block.n_levels) + 1.0
    sd = 1.0 / np.sqrt(a)
    nodes, weights = hermegauss(nagq)
    terms = np.empty((block.n_levels, nagq))
    for k, z in enumerate(nodes):
        shift = sd * z
        eta = mode.eta + z_lambda * shift[codes]
        with np.errstate(all="ignore"):
            _, ll = problem.response.loglik(eta)
        per_level = np.bincount(codes, weights=ll, minlength=block.n_levels)
        u = mode.u + shift
        terms[:, k] = np.log(weights[k]) + per_level - 0.5 * u**2 + 0.5 * z**2
    log_levels = np.log(sd) - 0.5 * np.log(2 * np.pi) + logsumexp(terms, axis=1)
    value = -2.0 * float(np.sum(log_levels))
    return value if np.isfinite(value) else _FAILED
