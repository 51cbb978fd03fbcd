"""Responses simulated from a fitted linear mixed model (lme4's ``simulate.merMod``).

``y* = offset + X beta + sum_i Z_i b*_i + e*`` with ``e*_j ~ N(0, sigma^2 / w_j)``
and, per level of each block, new random effects ``b* ~ N(0, Sigma_b)``
(``use_u=False``, lme4's default) or the conditional modes ``b_hat``
(``use_u=True``: simulation conditional on the fitted groups).

Notation
--------
Sigma_b : (k, k) random-effects covariance of a block; S : a square root of it
(``S S' = Sigma_b``, by eigenvalues so a singular fit's covariance works too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.inference.distributed import count_argument

__all__ = ["check_nsim", "check_simulable", "simulate", "simulate_response"]


def _square_root(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def simulate_response(
    design: Any, estimates: Any, rng: np.random.Generator, use_u: bool = False
) -> np.ndarray:
    """One simulated response vector of the design's rows."""
    n = design.n_obs
    mean = design.offset_or_zero + np.asarray(design.X, dtype=float) @ np.asarray(estimates.beta)
    for i, block in enumerate(design.blocks):
        k = block.n_terms
        if use_u:
            b = np.asarray(estimates.b[i], dtype=float)
        else:
            S = _square_root(np.asarray(estimates.covariances[i], dtype=float))
            b = rng.standard_normal((block.n_levels, k)) @ S.T
        Z = np.asarray(block.Z, dtype=float).reshape(n, k)
        mean = mean + np.einsum("nk,nk->n", Z, b[block.codes])
    scale = float(estimates.sigma)
    if design.weights is not None:
        scale = scale / np.sqrt(np.asarray(design.weights, dtype=float))
    return mean + scale * rng.standard_normal(n)


def check_simulable(result: Any) -> None:
    """Refuse what :func:`simulate_response` cannot draw from, naming the alternative."""
    require_linear_fit(result, "simulate()/bootstrap()/pbmodcomp()")
    if result.residual_structure is not None:
        raise ArgumentError(
            "Simulating fits with weights= or correlation= structures is not available yet."
        )


def check_nsim(nsim: Any) -> int:
    """``nsim`` as a positive integer, or a bayesmix error naming it."""
    return count_argument("nsim", nsim, minimum=1)


def simulate(
    result: Any, nsim: int = 1, seed: int | None = None, use_u: bool = False
) -> pd.DataFrame:
    """``nsim`` simulated responses as columns ``sim_1``... (rows as the fit's data)."""
    check_simulable(result)
    nsim = check_nsim(nsim)
    if not isinstance(use_u, bool | np.bool_):
        raise ArgumentError(f"use_u must be True or False, not {use_u!r}.")
    rng = np.random.default_rng(seed)
    columns = {
        f"sim_{i + 1}": simulate_response(result.design, result.estimates, rng, use_u)
        for i in range(int(nsim))
    }
    return pd.DataFrame(columns, index=result.design.data.index)
