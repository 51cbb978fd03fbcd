"""The Program of a linear mixed model (or gls) with a residual structure.

Describes :func:`bayesmix.bayes.residual_model.build_structured_model` to the
generic kernel (:mod:`bayesmix.bayes.generic.residual`) when its structure is
covered: varIdent, varPower or varExp of a covariate, or varFixed, and/or corAR1
or corCAR1, with the default kinds of priors (LogNormal SD ratios, Normal or
Student-t powers and exponents, a Uniform autocorrelation). Anything else
(functions of ``fitted(.)``, varConstPower, varComb, other correlations, Beta
priors) returns ``None``, and the model gets its own compiled log density.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bayesmix.bayes.generic import families as F
from bayesmix.bayes.generic import residual as S
from bayesmix.bayes.generic.program import (
    PriorRows,
    Program,
    Unsupported,
    VariableLayout,
    assemble,
    effect_tables,
    vector_positions,
)
from bayesmix.bayes.graph_parts import block_centring
from bayesmix.bayes.priors import intercept_index
from bayesmix.spec.design import Design

VARIANCE_KINDS = {"varIdent": S.VAR_IDENT, "varPower": S.VAR_LINEAR, "varExp": S.VAR_LINEAR}
CORRELATION_KINDS = {"corAR1": S.COR_AR1, "corCAR1": S.COR_CAR1}


def _variance(layout: VariableLayout, table: PriorRows, bound, priors, params, n: int):
    """Kind, positions of u, each row's stratum and covariate term."""
    if bound is None:
        return S.NO_VARIANCE, [], np.zeros(n, np.int64), np.zeros(n)
    if bound.kind == "varFixed":
        return S.VAR_FIXED, [], np.zeros(n, np.int64), 0.5 * np.log(np.asarray(bound.covariate))
    linear = bound.kind in ("varPower", "varExp")
    if bound.kind not in VARIANCE_KINDS or (linear and bound.covariate is None):
        raise Unsupported(f"variance function {bound.kind}")
    (param,) = [p for p in params if p.role in ("delta", "power", "expon")]
    size = max(1, len(param.labels))
    positions = vector_positions(layout, table, param.key, [priors[param.key]] * size)
    codes = np.asarray(bound.strata_codes, dtype=np.int64)
    if bound.kind == "varIdent":
        return S.VAR_IDENT, list(positions), codes, np.zeros(n)
    v = np.asarray(bound.covariate, dtype=float)
    term = np.log(np.abs(v)) if bound.kind == "varPower" else v
    return S.VAR_LINEAR, list(positions), codes if size > 1 else np.zeros(n, np.int64), term


def _correlation(layout: VariableLayout, table: PriorRows, bound, priors, n: int):
    """Kind, phi's position and interval, the rows' time order, first flags and gaps."""
    if bound is None:
        return S.NO_CORRELATION, -1, (0.0, 0.0), np.arange(n), np.ones(n, np.int64), np.ones(n)
    if bound.kind not in CORRELATION_KINDS:
        raise Unsupported(f"correlation structure {bound.kind}")
    (phi_pos,) = vector_positions(layout, table, "Phi", [priors["Phi"]])
    prior = priors["Phi"]
    markov = bound.markov
    gap = np.asarray(markov.gap, dtype=float)
    if bound.kind == "corAR1":
        gap = np.round(gap)  # as the model's graph: integer powers of phi
    first = np.asarray(markov.first, dtype=np.int64)
    order = np.asarray(markov.order, dtype=np.int64)
    kind = CORRELATION_KINDS[bound.kind]
    return kind, int(phi_pos), (prior.lower, prior.upper), order, first, gap


def structured_program(
    model,
    design: Design,
    residual,
    priors: Mapping,
    params: Sequence,
) -> Program | None:
    """The Program of ``model`` (``build_structured_model(design, residual, priors,
    params)``), or ``None`` when its structure is not covered."""
    if residual.uses_fitted:
        return None
    design = design.offset_absorbed()
    try:
        layout, table = VariableLayout(model), PriorRows()
        j0 = intercept_index(design)
        name = "beta" if j0 is None else "beta_c"
        fixed_pos = vector_positions(layout, table, name, [priors[t] for t in design.fixed_terms])
        zbars = [block_centring(block) for block in design.blocks]
        effects = effect_tables(layout, table, design, priors, zbars, shear=False)
        n = design.n_obs
        var_kind, u_pos, strata, covariate = _variance(
            layout, table, residual.variance, priors, params, n
        )
        sigma_name = "sigma" if residual.variance is None else "sigma_c"
        (sigma_pos,) = vector_positions(layout, table, sigma_name, [priors["sigma"]])
        cor_kind, phi_pos, interval, order, first, gap = _correlation(
            layout, table, residual.correlation, priors, n
        )
        weights = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
        res_i = np.concatenate(
            [[var_kind, len(u_pos), cor_kind, phi_pos, int(sigma_pos)], u_pos, strata, order, first]
        )
        res_f = np.concatenate([interval, covariate, gap, np.log(weights)])
        return assemble(
            layout,
            table,
            design,
            fixed_pos,
            effects,
            family=F.GAUSSIAN,
            y=design.y,
            row_w=weights,
            row_const=np.zeros(n),
            residual=(res_i.astype(np.int64), res_f),
        )
    except Unsupported:
        return None
