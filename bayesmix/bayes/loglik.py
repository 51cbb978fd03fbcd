"""The pointwise log-likelihood of a Bayesian result, computed from its draws.

:func:`glmm_pointwise_loglik` does the same for GLMMs with the response family.

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


def glmm_pointwise_loglik(result: Any, chunk: int = 200) -> xr.DataArray:
    """The family's log-likelihood of every observation under every draw, (chain, draw, obs).

    For a :class:`~bayesmix.bayes.glmm_results.GLMMBayesResult`: the family's
    full log-likelihood (:meth:`~bayesmix.spec.families.Family.loglik`) at
    each draw's mean, mixed with the structural zeros under zero inflation.
    """
    y = np.asarray(result.design.y, dtype=float)
    weights, rows = result.design.weights, result._rows(None, True)
    n = result._n_draws()
    out = np.empty((n, y.size))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        mu = result.family.link.inverse(result._eta_draws(rows, True, sl))
        disp = result._dispersion(sl)
        if disp is None:
            ll = result.family.loglik(y, mu, weights)
        else:  # the family takes one dispersion value at a time
            ll = np.stack(
                [result.family.loglik(y, m, weights, d) for m, d in zip(mu, disp, strict=True)]
            )
        eta_zi = result._zi_eta(rows, sl)
        if eta_zi is not None:  # log pi and log(1 - pi), stable for any eta_zi
            log_pi, log_1mpi = -np.logaddexp(0.0, -eta_zi), -np.logaddexp(0.0, eta_zi)
            ll = np.where(y == 0, np.logaddexp(log_pi, log_1mpi + ll), log_1mpi + ll)
        out[sl] = ll
    post = result.idata["posterior"]
    shape = (post.sizes["chain"], post.sizes["draw"], y.size)
    return xr.DataArray(out.reshape(shape), dims=("chain", "draw", "obs"))
