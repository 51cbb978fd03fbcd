"""The Program of a linear mixed model (or gls) with a residual structure.

Describes :func:`bayesmix.bayes.residual_model.build_structured_model` to the
generic kernel (:mod:`bayesmix.bayes.generic.residual`) when its structure is
covered: any variance function (of a covariate or of the fitted values, and
their varComb) with any correlation structure or none, under the kinds of
priors the defaults use (LogNormal ratios, constants and ranges, Normal or
Student-t powers and exponents, Uniform autocorrelations and partial
autocorrelations, a Beta or Uniform nugget, LKJ for corSymm). A Beta prior on
an autocorrelation returns ``None``: the model then gets its own compiled log
density.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bayesmix.bayes.generic import families as F
from bayesmix.bayes.generic import kernel as K
from bayesmix.bayes.generic import residual as S
from bayesmix.bayes.generic.prior_rows import PriorRows, Unsupported
from bayesmix.bayes.generic.program import (
    Program,
    VariableLayout,
    assemble,
    mean_part,
    vector_positions,
)
from bayesmix.bayes.residual_priors import Beta, Uniform
from bayesmix.spec.correlation_structures import distances
from bayesmix.spec.design import Design

VARIANCE_KINDS = {
    "varIdent": S.VAR_IDENT,
    "varPower": S.VAR_POWER,
    "varExp": S.VAR_EXP,
    "varConstPower": S.VAR_CONST_POWER,
    "varFixed": S.VAR_FIXED,
}
CORRELATION_KINDS = {
    "corAR1": S.COR_AR1,
    "corCAR1": S.COR_CAR1,
    "corCompSymm": S.COR_COMP_SYMM,
    "corExp": S.COR_EXP,
    "corGaus": S.COR_GAUS,
    "corSymm": S.COR_SYMM,
    "corARMA": S.COR_ARMA,
}
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


def _correlation(layout: VariableLayout, table: PriorRows, bound, priors, n: int) -> dict:
    """The correlation's kind, parameters' positions and the arrays its kernel reads."""
    out = {
        "kind": S.NO_CORRELATION, "p1": -1, "p2": -1, "K": 0, "interval": (0.0, 0.0),
        "order": np.arange(n), "first": np.ones(n, np.int64), "gap": np.ones(n),
        "groups": np.zeros(n, np.int64), "n_groups": 0, "starts": [], "distance": [], "q": 0,
    }  # fmt: skip
    if bound is None:
        return out
    if bound.kind not in CORRELATION_KINDS:
        raise Unsupported(f"correlation structure {bound.kind}")
    kind = out["kind"] = CORRELATION_KINDS[bound.kind]
    groups = np.unique(np.asarray(bound.group_codes), return_inverse=True)[1].astype(np.int64)
    out["n_groups"] = int(groups.max()) + 1
    if kind in (S.COR_AR1, S.COR_CAR1, S.COR_COMP_SYMM):
        key = "Rho" if kind == S.COR_COMP_SYMM else "Phi"
        out["p1"] = int(vector_positions(layout, table, key, [priors[key]])[0])
        out["interval"] = (priors[key].lower, priors[key].upper)
        out["groups"] = groups
        if kind != S.COR_COMP_SYMM:
            gap = np.asarray(bound.markov.gap, dtype=float)
            out["gap"] = np.round(gap) if kind == S.COR_AR1 else gap  # AR1: integer powers
            out["order"] = np.asarray(bound.markov.order, dtype=np.int64)
            out["first"] = np.asarray(bound.markov.first, dtype=np.int64)
        return out
    # dense: each group's rows, their times (corSymm) or distances (spatial)
    members, times, starts, distance = [], [], [0], []
    for rows, patterns, inverse in bound.dense.classes:
        for g in range(rows.shape[0]):
            coords = patterns[inverse[g]]
            members.append(rows[g])
            times.append(coords[:, 0])
            starts.append(starts[-1] + rows.shape[1])
            if kind in (S.COR_EXP, S.COR_GAUS):
                distance.append(distances(coords[None], bound.spec.metric)[0].ravel())
    out.update(order=np.concatenate(members), groups=np.concatenate(times).astype(np.int64))
    out.update(starts=starts, distance=distance, n_groups=len(starts) - 1)
    if kind == S.COR_ARMA:  # partial autocorrelations, Uniform on one interval
        counts = {"pacf_ar": bound.spec.p, "pacf_ma": bound.spec.q}
        for key, slot in (("pacf_ar", "p1"), ("pacf_ma", "p2")):
            if counts[key]:
                prior = priors[key]
                if not isinstance(prior, Uniform):
                    raise Unsupported("a corARMA prior other than Uniform")
                out[slot] = int(vector_positions(layout, table, key, [prior] * counts[key])[0])
                out["interval"] = (prior.lower, prior.upper)
        intervals = {(priors[k].lower, priors[k].upper) for k in counts if counts[k]}
        if len(intervals) != 1:
            raise Unsupported("corARMA priors on different intervals")
        out["K"], out["q"] = bound.spec.p, bound.spec.q
        return out
    if kind == S.COR_SYMM:
        out["K"] = bound.n_times
        out["p1"] = int(layout.positions("corSymm_raw", out["K"] * (out["K"] - 1) // 2)[0])
        out["interval"] = (priors["corSymm"].eta, 0.0)
        return out
    out["p1"] = int(vector_positions(layout, table, "range", [priors["range"]])[0])
    if layout.transform["range"] != K.LOG:
        raise Unsupported("a range prior without a log transform")
    if bound.spec.nugget:
        nugget = priors["nugget"]
        name = "nugget_unit" if isinstance(nugget, Beta) else "nugget"
        if not isinstance(nugget, Beta | Uniform) or (
            isinstance(nugget, Uniform) and (nugget.lower, nugget.upper) != (0.0, 1.0)
        ):
            raise Unsupported("a nugget prior other than Beta or Uniform(0, 1)")
        out["p2"] = int(vector_positions(layout, table, name, [nugget])[0])
    return out


#: Structures the generic kernel computes more slowly than a model's own compiled density
#: by more than that density's compile time: ``compile="auto"`` compiles them. Ovary's
#: corARMA(1, 1) (11 groups of 25-31 rows) samples in 19 s with the kernel's dense
#: per-group algebra, in 3.9 s with its own density (one factor shared by every group).
SLOWER_IN_THE_KERNEL = ("corARMA",)


def structured_program(
    model,
    design: Design,
    residual,
    priors: Mapping,
    params: Sequence,
    *,
    route: str = "auto",
) -> Program | None:
    """The Program of ``model`` (``build_structured_model(design, residual, priors,
    params)``), or ``None`` when its structure is not covered, or (``route="auto"``)
    is among ``SLOWER_IN_THE_KERNEL``."""
    correlation = residual.correlation
    if route == "auto" and correlation is not None and correlation.kind in SLOWER_IN_THE_KERNEL:
        return None
    offset = np.asarray(design.offset_or_zero, dtype=float)
    design = design.offset_absorbed()
    try:
        layout, table, fixed_pos, effects, _ = mean_part(model, design, priors)
        n = design.n_obs
        parts, strata, terms = _variance(layout, table, residual.variance, priors, params, offset)
        sigma_name = "sigma" if residual.variance is None else "sigma_c"
        (sigma_pos,) = vector_positions(layout, table, sigma_name, [priors["sigma"]])
        cor = _correlation(layout, table, residual.correlation, priors, n)
        weights = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
        header = [len(parts), cor["kind"], cor["p1"], int(sigma_pos), cor["n_groups"]]
        header += [cor["p2"], cor["K"], cor["q"]]
        res_i = np.concatenate(
            [header, np.ravel(parts), *strata, cor["order"], cor["first"], cor["groups"]]
            + [np.asarray(cor["starts"], dtype=np.int64)]
        )
        res_f = np.concatenate(
            [cor["interval"], *terms, cor["gap"], np.log(weights), *cor["distance"]]
        )
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
