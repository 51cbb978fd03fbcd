"""Convergence diagnostics of many parameters at once.

ArviZ's rank-normalised R-hat and bulk ESS (Vehtari et al. 2021) rank the draws
one parameter at a time, which took 10 s of a 45 s InstEval fit (4,134
parameters). Here the rank normalisation is vectorised over parameters with
scipy, and ArviZ computes R-hat and ESS of the normalised draws: the same
numbers (tested against ``az.rhat`` and ``az.ess(method="bulk")``) in a fraction
of the time.
"""

from __future__ import annotations

import numpy as np

#: Blom's offset for back-transforming ranks to normal scores, as ArviZ uses.
BLOM_OFFSET = 3.0 / 8.0


def _ranks(rows: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) within each row.

    All rows are sorted at once, which is much faster than ``scipy.stats.rankdata``
    row by row; folded draws always hold ties (the two draws either side of the median).
    """
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    index = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
    starts = np.ones(rows.shape, dtype=bool)  # first element of a run of equal values
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(rows.shape, dtype=bool)  # last element of a run
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, index, rows.shape[1])[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(rows.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _z_scale(draws: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks of each parameter's draws (last axis: parameters)."""
    from scipy.special import ndtri

    columns = np.ascontiguousarray(draws.reshape(-1, draws.shape[-1]).T)
    n = columns.shape[1]
    scores = ndtri((_ranks(columns) - BLOM_OFFSET) / (n - 2.0 * BLOM_OFFSET + 1.0))
    return scores.T.reshape(draws.shape)


def rank_diagnostics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat and bulk ESS of every parameter.

    Parameters
    ----------
    draws : ndarray
        Shape ``(chains, draws, parameters)``.

    Returns
    -------
    r_hat, ess_bulk : ndarray
        One value per parameter.
    """
    import arviz as az

    draws = np.asarray(draws, dtype=float)
    half = draws.shape[1] // 2
    split = np.concatenate([draws[:, :half], draws[:, -half:]], axis=0)
    median = np.median(split.reshape(-1, split.shape[-1]), axis=0)
    bulk = _z_scale(split)  # ArviZ reads arrays as (chain, draw, ...)
    tail = _z_scale(np.abs(split - median))
    r_hat = np.maximum(
        np.asarray(az.rhat(bulk, method="identity")), np.asarray(az.rhat(tail, method="identity"))
    )
    ess_bulk = np.asarray(az.ess(bulk, method="identity"))
    return r_hat, ess_bulk
