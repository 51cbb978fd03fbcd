"""Covariance parameterisations of random-effects blocks.

Each random-effects block with ``k`` columns has a ``k x k`` covariance matrix
``Sigma_b = sigma**2 * Lambda Lambda'`` where ``Lambda`` is the lower-triangular
*relative covariance factor* (lme4's ``Lambda_i``, "relative" to the residual
standard deviation ``sigma``).  The optimiser works on ``theta``, the free
entries of ``Lambda`` stacked block after block, as lme4 does.

Notation
--------
k : number of columns (terms) of a block.
theta : 1-d array of free entries of ``Lambda``. For an ``"unstructured"``
    block these are the lower triangle of ``Lambda`` in column-major order
    (``k = 2``: ``L11, L21, L22``); for a ``"diagonal"`` block the ``k``
    diagonal entries.
Lambda : (k, k) lower-triangular relative covariance factor.
sigma : residual standard deviation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bayesmix.spec.design import RandomBlock

COVARIANCE_KINDS = ("unstructured", "diagonal")


def _check_kind(kind: str) -> None:
    if kind not in COVARIANCE_KINDS:
        raise ValueError(f"unknown covariance kind {kind!r}; use one of {COVARIANCE_KINDS}")


def n_theta(kind: str, k: int) -> int:
    """Number of ``theta`` entries of one block with ``k`` columns."""
    _check_kind(kind)
    return k * (k + 1) // 2 if kind == "unstructured" else k


@functools.cache
def _lower_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle, column-major order (cached: GLMM
    fits build factors thousands of times; the arrays are read-only)."""
    cols, rows = np.triu_indices(k)  # row-major upper == column-major lower
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def theta_positions(kind: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of ``Lambda`` filled by each ``theta`` entry of a block."""
    _check_kind(kind)
    if kind == "diagonal":
        idx = np.arange(k)
        return idx, idx
    return _lower_indices(k)


def theta_is_diagonal(kind: str, k: int) -> np.ndarray:
    """Boolean mask: which ``theta`` entries of a block lie on ``Lambda``'s diagonal."""
    rows, cols = theta_positions(kind, k)
    return rows == cols


def lower_bounds(kind: str, k: int) -> np.ndarray:
    """Lower bounds of a block's ``theta``: 0 on the diagonal, ``-inf`` elsewhere."""
    return np.where(theta_is_diagonal(kind, k), 0.0, -np.inf)


def initial_theta(kind: str, k: int) -> np.ndarray:
    """lme4's starting value: 1 on the diagonal of ``Lambda``, 0 elsewhere."""
    return theta_is_diagonal(kind, k).astype(float)


def theta_to_factor(theta: np.ndarray, kind: str, k: int) -> np.ndarray:
    """Build the ``(k, k)`` lower-triangular ``Lambda`` of one block from its ``theta``."""
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (n_theta(kind, k),):
        raise ValueError(
            f"theta of a {kind} block with {k} terms needs {n_theta(kind, k)} "
            f"entries, got shape {theta.shape}"
        )
    rows, cols = theta_positions(kind, k)
    factor = np.zeros((k, k))
    factor[rows, cols] = theta
    return factor


def factor_to_theta(factor: np.ndarray, kind: str) -> np.ndarray:
    """Inverse of :func:`theta_to_factor` (entries outside the pattern are ignored)."""
    factor = np.asarray(factor, dtype=float)
    rows, cols = theta_positions(kind, factor.shape[0])
    return factor[rows, cols].copy()


def covariance_to_theta(cov: np.ndarray, sigma: float, kind: str) -> np.ndarray:
    """``theta`` of a block whose covariance is ``cov`` given residual SD ``sigma``.

    Uses the Cholesky factor of ``cov / sigma**2`` (only its diagonal for a
    ``"diagonal"`` block). Positive semi-definite ``cov`` is nudged by a tiny
    ridge so that boundary values (zero variance) are accepted.
    """
    cov = np.atleast_2d(np.asarray(cov, dtype=float)) / sigma**2
    if kind == "diagonal":
        return np.sqrt(np.clip(np.diag(cov), 0.0, None))
    k = cov.shape[0]
    ridge = 1e-12 * max(float(np.trace(cov)), 1e-300) * np.eye(k)
    return factor_to_theta(np.linalg.cholesky(cov + ridge), kind)


def split_theta(theta: np.ndarray, kinds: Sequence[str], sizes: Sequence[int]) -> list[np.ndarray]:
    """Split the stacked ``theta`` into one array per block."""
    theta = np.asarray(theta, dtype=float)
    counts = [n_theta(kind, k) for kind, k in zip(kinds, sizes, strict=True)]
    if theta.shape != (sum(counts),):
        raise ValueError(
            f"theta needs {sum(counts)} entries for these blocks, got shape {theta.shape}"
        )
    out, start = [], 0
    for count in counts:  # slices: np.split's generality costs more than the work here
        out.append(theta[start : start + count])
        start += count
    return out


def factors_from_theta(
    theta: np.ndarray, kinds: Sequence[str], sizes: Sequence[int]
) -> list[np.ndarray]:
    """One ``Lambda`` per block from the stacked ``theta``."""
    parts = split_theta(theta, kinds, sizes)
    return [theta_to_factor(t, kind, k) for t, kind, k in zip(parts, kinds, sizes)]


def stacked_lower_bounds(kinds: Sequence[str], sizes: Sequence[int]) -> np.ndarray:
    """:func:`lower_bounds` of every block, stacked as ``theta`` is."""
    parts = [lower_bounds(kind, k) for kind, k in zip(kinds, sizes)]
    return np.concatenate(parts) if parts else np.empty(0)


def stacked_initial_theta(kinds: Sequence[str], sizes: Sequence[int]) -> np.ndarray:
    """:func:`initial_theta` of every block (lme4's start), stacked as ``theta`` is."""
    parts = [initial_theta(kind, k) for kind, k in zip(kinds, sizes)]
    return np.concatenate(parts) if parts else np.empty(0)


def canonical_theta(theta: np.ndarray, kinds: Sequence[str], sizes: Sequence[int]) -> np.ndarray:
    """The same covariances with every diagonal ``theta`` made non-negative.

    ``Lambda Lambda'`` is unchanged when a column of ``Lambda`` changes sign, so a
    ``theta`` with negative diagonal entries (an optimiser run without bounds)
    maps to lme4's (diagonal >= 0) by flipping those columns.
    """
    parts = []
    for part, kind, k in zip(split_theta(theta, kinds, sizes), kinds, sizes):
        factor = theta_to_factor(part, kind, k)
        factor[:, np.diag(factor) < 0] *= -1.0
        parts.append(factor_to_theta(factor, kind))
    return np.concatenate(parts) if parts else np.empty(0)


def theta_names(grouping: str, terms: Sequence[str], kind: str) -> list[str]:
    """lme4-style names of a block's ``theta`` entries.

    Diagonal entries are ``"<grouping>.<term>"``; an off-diagonal entry in
    row ``i``, column ``j`` is ``"<grouping>.<term_i>.<term_j>"``
    (e.g. ``"Subject.Days.Intercept"``).
    """
    rows, cols = theta_positions(kind, len(terms))
    return [
        f"{grouping}.{terms[i]}" if i == j else f"{grouping}.{terms[i]}.{terms[j]}"
        for i, j in zip(rows, cols)
    ]


def block_covariance(factor: np.ndarray, sigma: float) -> np.ndarray:
    """Covariance matrix ``sigma**2 * Lambda Lambda'`` of one block."""
    factor = np.asarray(factor, dtype=float)
    return sigma**2 * factor @ factor.T


def sd_corr(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations and correlation matrix of a covariance matrix.

    Correlations involving a zero standard deviation are reported as ``nan``
    (as lme4 does), since they are not identified.
    """
    cov = np.atleast_2d(np.asarray(cov, dtype=float))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return sd, corr


def varcorr_group_labels(blocks: Sequence[RandomBlock]) -> list[list[str]]:
    """lme4's VarCorr group labels per block and term.

    lme4 gives every covariance matrix its own entry, suffixing repeated grouping
    names (``Subject``, ``Subject.1``); a ``||`` bar is one matrix per term.
    """
    seen: dict[str, int] = {}
    labels = []
    for block in blocks:
        parts = block.n_terms if block.covariance == "diagonal" else 1
        names = []
        for _ in range(parts):
            count = seen.get(block.grouping, 0)
            seen[block.grouping] = count + 1
            names.append(block.grouping if count == 0 else f"{block.grouping}.{count}")
        labels.append(names * block.n_terms if parts == 1 else names)
    return labels
