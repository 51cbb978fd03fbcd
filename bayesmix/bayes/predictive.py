"""Posterior predictive draws as ArviZ groups (brms's ``pp_check`` data).

:func:`posterior_predictive_tree` gives replicates of the fitted rows from every
posterior draw, as the ``posterior_predictive`` group beside ``observed_data``.
The replicates come from the result classes' own posterior predictive code
(noise, residual structure, family, zero inflation, offset and prior weights as
fitted); :mod:`bayesmix.bayes.prior_predictive` draws its replicates the same
way, so prior and posterior checks compare like with like.

Notation: S draws (chains x draws), n fitted rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["grouping_levels", "observed_dataset", "posterior_predictive_tree", "predictive_draws"]


def predictive_draws(result: Any, random_seed: int | None = None) -> xr.DataArray:
    """Replicates of the fitted rows from each draw, dims ``(chain, draw, obs)``.

    On the scale of ``design.y``: binomial responses with trials as proportions.
    """
    if hasattr(result, "posterior_predictive"):  # GLMMs draw from their family
        return result.posterior_predictive(random_seed=random_seed, binomial="proportion")
    draws = result.predict(kind="posterior_predictive", draws=True, random_seed=random_seed)
    post = result.idata["posterior"]
    shape = (post.sizes["chain"], post.sizes["draw"], draws.shape[1])
    return xr.DataArray(np.reshape(draws, shape), dims=("chain", "draw", "obs"), name="y")


def observed_dataset(result: Any) -> xr.Dataset:
    y = np.asarray(result.design.y, dtype=float)
    return xr.Dataset({"y": ("obs", y)}, coords={"obs": np.arange(y.size)})


def grouping_levels(design: Any) -> xr.Dataset:
    """Each row's level of every grouping factor (for checks by group), dims ``obs``."""
    columns = {}
    for block in design.blocks:
        labels = np.asarray([str(level) for level in block.levels], dtype=object)
        columns[block.grouping] = ("obs", labels[np.asarray(block.codes)].astype(str))
    return xr.Dataset(columns, coords={"obs": np.arange(design.n_obs)})


def posterior_predictive_tree(result: Any, random_seed: int | None = None) -> xr.DataTree:
    """A copy of ``result.idata`` with ``posterior_predictive`` (and ``observed_data``)."""
    y_rep = predictive_draws(result, random_seed)
    tree = result.idata.copy()
    observed = observed_dataset(result)
    tree["posterior_predictive"] = xr.Dataset({"y": y_rep}, coords={"obs": observed["obs"]})
    tree["observed_data"] = observed
    constant = grouping_levels(result.design)
    if "constant_data" in tree.children:
        constant = tree["constant_data"].to_dataset().merge(constant, compat="override")
    tree["constant_data"] = constant
    tree.attrs = {
        **tree.attrs,
        "formula": result.design.formula,
        "response": result.design.response,
    }
    return tree
