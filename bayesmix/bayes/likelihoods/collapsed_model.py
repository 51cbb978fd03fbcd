"""The PyMC model of a Gaussian LMM whose likelihood is collapsed.

:func:`collapsed_likelihood` adds, inside :func:`bayesmix.bayes.model.build_pymc_model`'s
model context, ``sigma``, the sampled blocks' effects (as
:mod:`bayesmix.bayes.model` writes them, one-term blocks partly centred), the
collapsed blocks' SDs and the potential ``loglik_y``
(:mod:`bayesmix.bayes.likelihoods.collapsed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.graph_inputs import HyperData, vector_rv
from bayesmix.bayes.graph_parts import BlockInfo, block_effects, centring_offsets, residual_sd
from bayesmix.bayes.likelihoods.collapsed import (
    SampledTerm,
    centred_levels,
    collapse_plan,
    collapsed_columns,
    collapsed_loglik,
)
from bayesmix.bayes.priors import Prior
from bayesmix.spec.design import Design


def collapsed_likelihood(
    design: Design,
    priors: Mapping[str, Prior],
    infos: Sequence[BlockInfo],
    zbars: Sequence[np.ndarray],
    hyper: HyperData,
) -> None:
    """``sigma``, the sampled blocks, the collapsed blocks' SDs and the potential ``loglik_y``."""
    plan = collapse_plan(design, priors)
    if plan is None:
        raise ValueError("likelihood='collapsed' needs Normal priors on every fixed effect")
    columns = collapsed_columns(design, plan, centring_offsets(design))
    terms = []
    for i in plan.sampled(design):
        block, info, zbar = design.blocks[i], infos[i], zbars[i]
        centred = centred_levels(block, design.y) if block.n_terms == 1 else None
        effects = block_effects(block, info, priors, zbar, hyper, centred)
        z = np.asarray(block.Z, dtype=float) - zbar[None, :]
        terms += [SampledTerm(e, block, z[:, k]) for k, e in enumerate(effects)]
    sds = {
        i: vector_rv(
            infos[i].sd_name,
            [priors[key] for key in infos[i].sd_keys],
            infos[i].term_dim,
            hyper,
            f"sd:{infos[i].tag}",
        )
        for i in (*plan.dense, *([] if plan.diagonal is None else [plan.diagonal]))
    }
    term_sd = pt.stack([sds[i][k] for i, k in columns.terms]) if columns.terms else pt.zeros(0)
    sigma = residual_sd(priors["sigma"], hyper)
    loglik = collapsed_loglik(
        design.y,
        terms,
        columns,
        sigma,
        hyper["beta:Normal:mu"],
        hyper["beta:Normal:sigma"],
        term_sd,
        None if plan.diagonal is None else sds[plan.diagonal][0],
    )
    pm.Potential("loglik_y", loglik)
