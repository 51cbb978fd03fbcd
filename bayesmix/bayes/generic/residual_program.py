"""The Program of a linear mixed model (or gls) with a residual structure.

Describes :func:`bayesmix.bayes.residual_model.build_structured_model` to the
generic kernel (:mod:`bayesmix.bayes.generic.residual`) when its structure is
covered: any variance function (of a covariate or of the fitted values, and
their varComb) with corAR1, corCAR1, corCompSymm or no correlation, under the
kinds of priors the defaults use (LogNormal ratios and constants, Normal or
Student-t powers and exponents, a Uniform correlation). corARMA, corSymm, the
spatial correlations and Beta priors return ``None``: the model then gets its
own compiled log density.
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

VARIANCE_KINDS = {
    "varIdent": S.VAR_IDENT,
    "varPower": S.VAR_POWER,
    "varExp": S.VAR_EXP,
    "varConstPower": S.VAR_CONST_POWER,
    "varFixed": S.VAR_FIXED,
}
CORRELATION_KINDS = {"corAR1": S.COR_AR1, "corCAR1": S.COR_CAR1, "corCompSymm": S.COR_COMP_SYMM}
#: The parameters of each variance function, in the order the kernel reads them.
ROLES = {"varIdent": ("delta",), "varPower": ("power",), "varExp": ("expon",),
         "varConstPower": ("const", "power"), "varFixed": ()}  # fmt: skip


def _parts(bound) -> list:
    return list(bound.parts) if bound.kind == "varComb" else [bound]


def _variance(layout: VariableLayout, table: PriorRows, bound, priors, params, offset):
    """Per variance part: (kind, uses fitted, first a, first b), strata and covariate terms."""
    n = offset.size
    if bound is None:
        return [], [], []
    table_rows, strata, terms = [], [], []
    by_key = {p.key: p for p in params}
    for index, part in enumerate(_parts(bound)):
        if part.kind not in VARIANCE_KINDS:
            raise Unsupported(f"variance function {part.kind}")
        prefix = f"{chr(ord('A') + index)}_" if bound.kind == "varComb" else ""
        firsts = []
        for role in ROLES[part.kind]:
            param = by_key[f"{prefix}{role}"]
            size = max(1, len(param.labels))
            firsts.append(
                int(vector_positions(layout, table, param.key, [priors[param.key]] * size)[0])
            )
        firsts += [-1] * (2 - len(firsts))
        fitted = part.covariate is None and part.kind not in ("varIdent", "varFixed")
        codes = part.strata_codes
        codes = np.zeros(n, np.int64) if codes is None else np.asarray(codes, np.int64)
        if part.kind == "varFixed":
            term = 0.5 * np.log(np.asarray(part.covariate, dtype=float))
        elif fitted:
            term = offset  # v = eta + offset
        elif part.kind == "varExp":
            term = np.asarray(part.covariate, dtype=float)
        elif part.kind in ("varPower", "varConstPower"):
            term = np.log(np.abs(np.asarray(part.covariate, dtype=float)))
        else:
            term = np.zeros(n)
        if part.kind not in ("varIdent", "varFixed") and len(part.strata_levels) <= 1:
            codes = np.zeros(n, np.int64)  # one parameter for all rows
        table_rows.append((VARIANCE_KINDS[part.kind], int(fitted), *firsts))
        strata.append(codes)
        terms.append(term)
    return table_rows, strata, terms


def _correlation(layout: VariableLayout, table: PriorRows, bound, priors, n: int):
    """Kind, the parameter's position and interval, the rows' time order, first flags,
    gaps and correlation groups, and the number of groups."""
    unit = np.ones(n, np.int64)
    if bound is None:
        return S.NO_CORRELATION, -1, (0.0, 0.0), np.arange(n), unit, np.ones(n), unit * 0, 0
    if bound.kind not in CORRELATION_KINDS:
        raise Unsupported(f"correlation structure {bound.kind}")
    key = "Rho" if bound.kind == "corCompSymm" else "Phi"
    (position,) = vector_positions(layout, table, key, [priors[key]])
    interval = (priors[key].lower, priors[key].upper)
    kind = CORRELATION_KINDS[bound.kind]
    groups = np.unique(np.asarray(bound.group_codes), return_inverse=True)[1].astype(np.int64)
    if kind == S.COR_COMP_SYMM:
        return (
            kind,
            int(position),
            interval,
            np.arange(n),
            unit,
            np.ones(n),
            groups,
            groups.max() + 1,
        )
    markov = bound.markov
    gap = np.asarray(markov.gap, dtype=float)
    if kind == S.COR_AR1:
        gap = np.round(gap)  # as the model's graph: integer powers of phi
    order = np.asarray(markov.order, dtype=np.int64)
    first = np.asarray(markov.first, dtype=np.int64)
    return kind, int(position), interval, order, first, gap, groups, groups.max() + 1


def structured_program(
    model,
    design: Design,
    residual,
    priors: Mapping,
    params: Sequence,
) -> Program | None:
    """The Program of ``model`` (``build_structured_model(design, residual, priors,
    params)``), or ``None`` when its structure is not covered."""
    offset = np.asarray(design.offset_or_zero, dtype=float)
    design = design.offset_absorbed()
    try:
        layout, table = VariableLayout(model), PriorRows()
        j0 = intercept_index(design)
        name = "beta" if j0 is None else "beta_c"
        fixed_pos = vector_positions(layout, table, name, [priors[t] for t in design.fixed_terms])
        zbars = [block_centring(block) for block in design.blocks]
        effects = effect_tables(layout, table, design, priors, zbars, shear=False)
        n = design.n_obs
        parts, strata, terms = _variance(layout, table, residual.variance, priors, params, offset)
        sigma_name = "sigma" if residual.variance is None else "sigma_c"
        (sigma_pos,) = vector_positions(layout, table, sigma_name, [priors["sigma"]])
        kind, position, interval, order, first, gap, groups, n_groups = _correlation(
            layout, table, residual.correlation, priors, n
        )
        weights = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
        header = [len(parts), kind, position, int(sigma_pos), n_groups]
        res_i = np.concatenate([header, np.ravel(parts), *strata, order, first, groups])
        res_f = np.concatenate([interval, *terms, gap, np.log(weights)])
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
