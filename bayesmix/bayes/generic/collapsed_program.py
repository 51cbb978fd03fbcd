"""The Program of a Gaussian LMM whose likelihood is collapsed (family ``COLLAPSED``).

Reads the PyMC model of ``build_pymc_model(..., likelihood="collapsed")``: the
sampled blocks' effects (their tables as for any model, without fixed
effects, which are integrated out), ``sigma``, the collapsed blocks' SDs, and
the constants of :mod:`bayesmix.bayes.generic.collapsed_kernel` (the collapsed
columns ``W``, the Schur parts and the fixed effects' Normal priors). A model
whose sampled blocks include a one-term block (sampled partly centred by that
model, which the kernel does not do), or that has prior weights, gets ``None``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from bayesmix.bayes.generic.collapsed_kernel import COLLAPSED
from bayesmix.bayes.generic.program import (
    PriorRows,
    Program,
    Unsupported,
    VariableLayout,
    assemble,
    effect_tables,
    vector_positions,
)
from bayesmix.bayes.graph_parts import block_centring, block_infos, centring_offsets
from bayesmix.bayes.priors import Prior
from bayesmix.spec.design import Design

__all__ = ["collapsed_program"]


def collapsed_program(model, design: Design, priors: Mapping[str, Prior]) -> Program | None:
    """The Program of a collapsed model's PyMC model, or ``None`` (see the module docstring).

    ``design`` is the offset-absorbed design the model was built from.
    """
    from bayesmix.bayes.likelihoods.collapsed import (
        collapse_plan,
        collapsed_columns,
        schur_parts,
    )

    plan = collapse_plan(design, priors)
    if plan is None or design.weights is not None:
        return None
    sampled = plan.sampled(design)
    if any(design.blocks[i].n_terms == 1 for i in sampled):
        return None
    infos = block_infos(design)
    n = design.n_obs
    # the sampled blocks alone, with no fixed effects: what the kernel's tables describe
    sub = dataclasses.replace(
        design,
        X=np.zeros((n, 0)),
        fixed_terms=(),
        blocks=tuple(design.blocks[i] for i in sampled),
    )
    if [info.tag for info in block_infos(sub)] != [infos[i].tag for i in sampled]:
        return None  # the model names these blocks' variables by the full design's tags
    try:
        layout, table = VariableLayout(model), PriorRows()
        zbars = [block_centring(block) for block in sub.blocks]
        effects = effect_tables(layout, table, sub, priors, zbars, shear=False)
        (sigma_pos,) = vector_positions(layout, table, "sigma", [priors["sigma"]])
        sd_pos = {
            i: vector_positions(
                layout, table, infos[i].sd_name, [priors[key] for key in infos[i].sd_keys]
            )
            for i in (*plan.dense, *([] if plan.diagonal is None else [plan.diagonal]))
        }
        columns = collapsed_columns(design, plan, centring_offsets(design))
        parts = schur_parts(columns)
        term_pos = [int(sd_pos[i][k]) for i, k in columns.terms]
        diag_pos = -1 if plan.diagonal is None else int(sd_pos[plan.diagonal][0])
        fixed = [priors[name] for name in design.fixed_terms]
        W = columns.W.tocsc()
        W.sort_indices()
        res_i = np.concatenate(
            [
                [design.n_fixed, columns.p_c, columns.n_f, len(term_pos), diag_pos],
                term_pos,
                columns.sd_term[columns.n_fixed :],
                parts.b_indptr,
                parts.b_cols,
                W.indptr,
                W.indices,
            ]
        ).astype(np.int64)
        res_f = np.concatenate(
            [
                [prior.mu for prior in fixed],
                [prior.sigma for prior in fixed],
                parts.G.ravel(),
                parts.dzz,
                parts.b_vals,
                W.data,
            ]
        ).astype(float)
        return assemble(
            layout,
            table,
            sub,
            np.zeros(0, dtype=np.int64),
            effects,
            family=COLLAPSED,
            y=design.y,
            row_w=np.ones(n),
            row_const=np.zeros(n),
            sigma_pos=int(sigma_pos),
            residual=(res_i, res_f),
        )
    except Unsupported:
        return None
