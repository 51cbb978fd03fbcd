"""The pointwise log-likelihood of a Bayesian result, computed from its draws.

Evaluated with numpy from the posterior draws of the mean and ``sigma``, so no
second compilation is needed (as ``pm.compute_log_likelihood`` would need);
offsets and prior weights enter as in the model: ``y - offset ~ Normal(mu,
sigma / sqrt(w))``. Shared by the linear and nonlinear results (each provides
``_arrays`` and ``_mu_draws``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bayesmix.bayes.tables import flat_draws


def pointwise_loglik(result: Any, chunk: int = 200) -> xr.DataArray:
    """Log-likelihood of every observation under every draw, (chain, draw, obs)."""
    post = result.idata["posterior"]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    design = result.design
    y = np.asarray(design.y, dtype=float) - design.offset_or_zero
    sqrt_w = np.ones_like(y) if design.weights is None else np.sqrt(design.weights)
    sigma = flat_draws(post["sigma"])
    out = np.empty((sigma.shape[0], y.shape[0]))
    for start in range(0, sigma.shape[0], chunk):
        sl = slice(start, start + chunk)
        mu = result._mu_draws(*result._arrays(), draw_slice=sl)
        s = sigma[sl, None] / sqrt_w  # prior weights: residual SD sigma / sqrt(w)
        out[sl] = -0.5 * ((y - mu) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    return xr.DataArray(out.reshape(n_chain, n_draw, -1), dims=("chain", "draw", "obs"))
