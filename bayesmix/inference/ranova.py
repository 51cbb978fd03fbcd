"""Likelihood-ratio tests of each random-effect term (lmerTest's ``ranova``).

Each bar is reduced in turn and the model refitted by the fit's own method
(the fixed effects do not change, so REML likelihoods compare): a bar with
slopes loses one slope term at a time, keeping the rest of its covariance
(``Days in (Days | Subject)`` tests ``(Days | Subject)`` against
``(1 | Subject)``); a ``||`` bar loses each of its terms, the intercept
included (lme4 splits it into one bar per term); a bar with one term is
removed. Reduced designs are built
from the fit's arrays, so no formula is re-parsed. A factor slope's columns
(``nutrient[8]``, ``nutrient[9]``) are removed together.

Notation
--------
LRT : ``2 (logLik_full - logLik_reduced)``; Df : difference in parameters.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.ml.fit import fit_estimates
from bayesmix.spec.formula import parse_formula

__all__ = ["RanovaTable", "ranova", "reduced_designs"]

_LEVEL = re.compile(r"\[[^\]]*\]")


def _term_groups(terms: tuple[str, ...], with_intercept: bool) -> dict[str, list[int]]:
    """Columns of a bar grouped by the formula term they come from; the intercept is a
    term of its own only in a ``||`` bar (lme4 splits those into one bar per term)."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(terms):
        if name != "Intercept" or with_intercept:
            groups.setdefault("1" if name == "Intercept" else _LEVEL.sub("", name), []).append(j)
    return groups


def _labels(design: Any) -> list[str]:
    """Each bar as written (``(nutrient | popu)``), else the block's column label."""
    try:
        bars = parse_formula(design.formula).bars
    except Exception:  # a hand-built design whose formula is a description
        bars = ()
    if len(bars) == len(design.blocks):
        return [str(bar) for bar in bars]
    return [block.label for block in design.blocks]


def reduced_designs(design: Any) -> dict[str, Any]:
    """Row label -> the design with that bar reduced (lmerTest's ``reduce.terms = TRUE``)."""
    out = {}
    labels = _labels(design)
    for i, block in enumerate(design.blocks):
        groups = _term_groups(block.terms, block.covariance == "diagonal")
        others = design.blocks[:i] + design.blocks[i + 1 :]
        if not groups or any(len(cols) == block.n_terms for cols in groups.values()):
            # one term (an intercept, or a factor's columns alone): the whole bar goes
            out[labels[i]] = dataclasses.replace(design, blocks=others)
            continue
        for term, columns in groups.items():
            keep = [j for j in range(block.n_terms) if j not in columns]
            Z = np.asarray(block.Z).reshape(design.n_obs, block.n_terms)[:, keep]
            smaller = dataclasses.replace(
                block, terms=tuple(block.terms[j] for j in keep), Z=np.ascontiguousarray(Z)
            )
            blocks = design.blocks[:i] + (smaller,) + design.blocks[i + 1 :]
            out[f"{term} in {labels[i]}"] = dataclasses.replace(design, blocks=blocks)
    return out


class RanovaTable(pd.DataFrame):
    """lmerTest's ranova table: ``npar``, ``logLik``, ``AIC``, ``LRT``, ``Df``, ``p_value``."""

    @property
    def _constructor(self):
        return RanovaTable

    def __repr__(self) -> str:
        shown = pd.DataFrame(self).rename(columns={"p_value": "Pr(>Chisq)"})
        title = "ANOVA-like table for random effects: single term deletions"
        return f"{title}\n" + shown.to_string(
            na_rep="", float_format=lambda v: f"{v:.6g}" if abs(v) >= 1e-4 else f"{v:.3g}"
        )

    __str__ = __repr__


def ranova(result: Any) -> RanovaTable:
    """Likelihood-ratio test of each random-effect term, by the fit's method."""
    require_linear_fit(result, "ranova()")
    if not getattr(result.design, "blocks", ()):
        raise ArgumentError("ranova() needs a fit with random effects; this one has none.")
    if result.residual_structure is not None:
        raise ArgumentError(
            "ranova() on fits with weights= or correlation= is not available yet; compare "
            "the fits with bayesmix.anova(full, reduced)."
        )
    method = result.method
    rows = {"<none>": (result.df, result.loglik)}
    for label, design in reduced_designs(result.design).items():
        est = fit_estimates(design, method)
        rows[label] = (int(est.n_params), float(est.loglik))
    npar = np.array([r[0] for r in rows.values()], dtype=float)
    loglik = np.array([r[1] for r in rows.values()])
    lrt = 2.0 * (loglik[0] - loglik)
    df = npar[0] - npar
    lrt[0] = df[0] = np.nan
    table = RanovaTable(
        {
            "npar": npar.astype(int),
            "logLik": loglik,
            "AIC": -2.0 * loglik + 2.0 * npar,
            "LRT": lrt,
            "Df": df,
            "p_value": stats.chi2.sf(lrt, df),
        },
        index=pd.Index(list(rows), name="term"),
    )
    table.attrs["method"] = method
    return table
