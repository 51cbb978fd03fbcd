"""Compile a GLMM's design, family and priors into a PyMC model.

The linear predictor is built exactly as for linear models (see
:mod:`bayesmix.bayes.model`, whose pieces in :mod:`bayesmix.bayes.graph_parts`
are reused): fixed effects sampled on centred columns, one LKJ block per
correlated bar with non-centred group effects, effects entering by integer
indexing (never a dense Z), products written out for numba's compile time,
data compiled in as constants and prior parameters in one ``pm.Data`` vector.
What differs is the response:

* the offset is added to the linear predictor (a GLMM cannot move it into y);
* the log-likelihood is one potential ``loglik_y``, written from the linear
  predictor (:mod:`bayesmix.bayes.likelihoods.glmm_families`): binomial
  (``round(y n)`` successes of ``n`` trials), Poisson, NB2 and Gamma with
  their links, and zero inflation with a per-row structural-zero probability;
* the dispersion is sampled as ``1 / sqrt(theta)`` (``inv_sqrt_theta``) or
  ``1 / sqrt(shape)`` (``inv_sqrt_shape``), the scale of its default prior
  (:mod:`bayesmix.bayes.glmm_priors`); ``theta`` and ``shape`` are deterministics;
* the sampled intercept absorbs the mean of every block's group intercepts:
  the predictor uses ``u + sum_b (r_b - mean(r_b))`` and the reported intercept
  is ``u - sum_b mean(r_b)`` (with its prior moved there by the potential
  ``intercept_prior``). This shear of ``(intercept, z)`` has a unit Jacobian, so
  the model is unchanged; it removes the ridge along which the intercept and
  all group intercepts trade off when the groups hold much data (non-centred
  effects are then inefficient). Per 2 x 1,000 draws, the intercept's bulk
  ESS doubled on simulated NB counts (50 groups of 20: ~490 to ~1,000) and the
  smallest ESS of Arabidopsis' Poisson GLMM rose from ~450-590 to ~760, at the
  same sampling time (``SHEAR = False`` turns it off, for comparison);
* zero-inflation coefficients ``zi_beta`` (dims ``zi_fixed``) are sampled on
  centred columns too (``zi_beta_c``) when the zero-inflation part has an intercept.

Notation
--------
eta : linear predictor (offset included); eta_zi : zero-inflation predictor;
beta, zi_beta : coefficients of the original columns; r_<tag>, sd_<tag>,
cor_<tag> : group effects, their SDs and correlations; theta, shape : dispersions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.forward import is_forward
from bayesmix.bayes.glmm_priors import DISPERSION_KEYS, dispersion_names, zi_key
from bayesmix.bayes.graph_inputs import PYMC_DIST, HyperData, model_data
from bayesmix.bayes.graph_parts import (
    block_centring,
    block_effects,
    block_infos,
    centring_offsets,
    effect_terms,
    fixed_part,
    model_coords,
    scalar_rv,
)
from bayesmix.bayes.likelihoods.glmm_families import family_loglik, zero_inflated_loglik
from bayesmix.bayes.priors import Prior, intercept_index
from bayesmix.spec.design_types import Design
from bayesmix.spec.families import Family

__all__ = ["build_glmm_model", "zi_intercept_index"]

#: Let the sampled intercept absorb the mean group intercepts (see the module docstring).
SHEAR = True

warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)


def zi_intercept_index(zi_X: np.ndarray, zi_names: Sequence[str]) -> int | None:
    """Index of the zero-inflation intercept (a column of ones named ``Intercept``)."""
    for j, name in enumerate(zi_names):
        if name == "Intercept" and np.allclose(zi_X[:, j], 1.0):
            return j
    return None


def absorb_mean_intercepts(
    design: Design, columns: list[list[pt.TensorVariable]]
) -> pt.TensorVariable | None:
    """Centre each block's intercept effects on their mean, in place; return the sum of means.

    The sampled intercept then absorbs those means (see the module docstring),
    and the reported one is the sampled one less their sum.
    """
    means = []
    for block, cols in zip(design.blocks, columns, strict=True):
        k0 = next((k for k in range(block.n_terms) if np.allclose(block.Z[:, k], 1.0)), None)
        if k0 is not None:
            means.append(pt.mean(cols[k0]))
            cols[k0] = cols[k0] - means[-1]
    return sum(means[1:], means[0]) if means else None


def shifted_prior(
    priors: Sequence[Prior],
    j0: int,
    hyper: HyperData,
    beta_c: pt.TensorVariable,
    level: pt.TensorVariable,
) -> pt.TensorVariable:
    """``log p(u - level) - log p(u)`` for the intercept's prior ``p`` and sampled value ``u``.

    ``beta_c`` carries the prior at ``u``; this moves it to the reported
    intercept ``u - level``.
    """
    cls = type(priors[j0])
    position = [i for i, prior in enumerate(priors) if type(prior) is cls].index(j0)
    params = {k: v[position] for k, v in hyper.params("beta", cls, priors[j0]).items()}
    dist = PYMC_DIST[cls].dist(**params)
    return pm.logp(dist, beta_c[j0] - level) - pm.logp(dist, beta_c[j0])


def build_glmm_model(
    design: Design,
    family: Family,
    priors: Mapping[str, Prior],
    zi_X: np.ndarray | None = None,
    zi_names: Sequence[str] = (),
    *,
    centre_random: Literal["auto", "always", "never"] = "auto",
) -> pm.Model:
    """Build the PyMC model of a generalized linear mixed model.

    Parameters
    ----------
    design : Design
        Numeric design; ``weights`` are the binomial trials, ``offset`` enters
        the linear predictor.
    family : Family
        Binomial, Poisson, negative binomial or Gamma, with its link.
    priors : mapping
        A prior for every key of
        :func:`bayesmix.bayes.glmm_priors.default_glmm_priors` (resolved by the caller).
    zi_X : ndarray, optional
        Zero-inflation design (rows as ``design``), Poisson and NB2 only.
    zi_names : sequence of str
        Column names of ``zi_X``.
    centre_random : {"auto", "always", "never"}
        Which columns of correlated blocks are sampled centred (as
        :func:`bayesmix.bayes.model.build_pymc_model`).

    Returns
    -------
    pymc.Model
        Free variables ``beta_c`` (or ``beta``), ``z<j>_<tag>``, ``sd_<tag>``,
        ``corr_<tag>_raw``, ``inv_sqrt_<dispersion>``, ``zi_beta_c`` (or
        ``zi_beta``); deterministics ``beta``, ``r_<tag>``, ``sd_<tag>``,
        ``cor_<tag>``, ``theta``/``shape``, ``zi_beta``; the potential ``loglik_y``.
    """
    infos = block_infos(design)
    coords = model_coords(design.n_obs, design.fixed_terms, design.blocks, infos)
    j0 = intercept_index(design)
    zbars = [block_centring(block, centre_random) for block in design.blocks]
    fixed_priors = [priors[name] for name in design.fixed_terms]
    hyper = HyperData()
    hyper.add_priors("beta", fixed_priors)
    hyper.add("xbar", centring_offsets(design))
    for info, zbar in zip(infos, zbars, strict=True):
        hyper.add_priors(f"sd:{info.tag}", [priors[key] for key in info.sd_keys])
        if info.cor_key is not None:
            hyper.add(f"eta:{info.tag}", priors[info.cor_key].eta)
        if np.any(zbar):
            hyper.add(f"zbar:{info.tag}", zbar)
    names = dispersion_names(family)
    if names is not None:
        hyper.add_priors("dispersion", [priors[DISPERSION_KEYS[family.name]]], scalar=True)
    zi_j0 = None
    if zi_X is not None:
        zi_X = np.asarray(zi_X, dtype=float)
        coords["zi_fixed"] = list(zi_names)
        zi_priors = [priors[zi_key(name)] for name in zi_names]
        zi_j0 = zi_intercept_index(zi_X, zi_names)
        hyper.add_priors("zi_beta", zi_priors)
        zi_xbar = np.zeros(zi_X.shape[1])
        if zi_j0 is not None:
            zi_xbar = zi_X.mean(axis=0)
            zi_xbar[zi_j0] = 0.0
            hyper.add("zi_xbar", zi_xbar)

    with pm.Model(coords=coords, check_bounds=False) as model:
        hyper.finalize()
        columns = [
            block_effects(block, info, priors, zbar, hyper)
            for block, info, zbar in zip(design.blocks, infos, zbars, strict=True)
        ]
        # drawn forward, the intercept carries its prior itself (see bayesmix.bayes.forward)
        shear = j0 is not None and SHEAR and not is_forward()
        level = absorb_mean_intercepts(design, columns) if shear else None
        beta_c, eta, _ = fixed_part(
            "beta", design.X, fixed_priors, hyper, j0, intercept_offset=level
        )
        if level is not None:  # the intercept's prior, at the reported intercept
            pm.Potential("intercept_prior", shifted_prior(fixed_priors, j0, hyper, beta_c, level))
        for block, info, zbar, cols in zip(design.blocks, infos, zbars, columns, strict=True):
            for term in effect_terms(block.codes, block.Z, info, cols, zbar, hyper):
                eta = eta + term
        if design.offset is not None:
            eta = eta + model_data("offset", design.offset, dims="obs")
        dispersion = None
        if names is not None:
            prior = priors[DISPERSION_KEYS[family.name]]
            inv_sqrt = scalar_rv(names[0], prior, hyper, "dispersion")
            dispersion = pm.Deterministic(names[1], 1.0 / inv_sqrt**2)
        loglik = family_loglik(family, eta, design.y, design.weights, dispersion)
        if zi_X is not None:
            _, eta_zi, _ = fixed_part(
                "zi_beta", zi_X, zi_priors, hyper, zi_j0, dim="zi_fixed", xbar_key="zi_xbar"
            )
            loglik = zero_inflated_loglik(loglik, design.y, eta_zi)
        pm.Potential("loglik_y", loglik.sum())
    return model
