"""Hypotheses ``L beta = 0`` of type I (sequential) and type III (marginal) F tests per term.

* **Type I**: terms enter in R's order (by degree, then formula order); the
  hypothesis of a term is the rows of the upper Cholesky factor ``R`` of
  ``X'X`` (Doolittle's decomposition up to row scaling) at its columns: its
  effect adjusted for the terms before it.
* **Type III**: the term's coefficients are zero when every factor is coded
  with contrasts that sum to zero (``contr.sum``), whatever coding the fit
  used. That is SAS's and lmerTest's type III. The fit's design ``X`` and the
  sum-coded ``X_s`` span the same columns, ``X_s = X M``, so
  ``beta_s = M^-1 beta`` and the hypothesis on the fit's ``beta`` is
  ``L_s M^-1``. A term contained in no other term is tested on its own
  coefficients in the fit's coding (the same hypothesis in any coding).

The F statistic and Kenward–Roger's test depend on the hypothesis only, but
Satterthwaite's combined degrees of freedom (Fai and Cornelius) depend on the
basis of its rows: for terms contained in others (``A`` in ``A:B``) lmerTest
orthogonalises treatment-coded rows, this module uses the sum-coded ones, so
their DenDF can differ from lmerTest's slightly (3.3e-5 relative on an unbalanced
3 x 3 design with a factor-by-covariate interaction, ``tests/refs/inference/
make_contained_terms.R``).

The intercept is not tested (as lmerTest's tables).

Notation
--------
X : (n, p) fixed-effects design; L : (q, p) hypothesis of one term; M : (p, p)
map between codings; R : upper Cholesky factor of X'X.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError
from bayesmix.spec.contrasts import is_numeric_column
from bayesmix.spec.design import build_design

__all__ = ["contained", "term_columns", "type1_hypotheses", "type3_hypotheses"]

# Codings whose columns already sum to zero over the levels.
_ZERO_SUM = {"sum", "helmert", "poly"}


def term_columns(design: Any) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """Each fixed term's kept columns of ``X`` and its variables, intercept excluded."""
    encoder = design.encoder
    if encoder is None:
        raise ArgumentError(
            "F tests per term need the formula's terms, but this design was built without "
            "its encoder; fit the model with bayesmix.lmm(formula, data)."
        )
    common = encoder.fixed_dm.common
    position = {int(j): i for i, j in enumerate(encoder.keep)}
    out: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    if hasattr(common, "slices"):  # formulae's matrix
        for name, term in common.terms.items():
            if name == "Intercept":
                continue
            span = range(*common.slices[name].indices(common.slices[name].stop))
            columns = np.array([position[j] for j in span if j in position], dtype=int)
            variables = tuple(v.name for v in getattr(term, "components", ()))
            out[name] = (columns, variables)
    else:  # bayesmix.spec.plain_terms: each numeric column is its own term
        for j, name in enumerate(common.names):
            if name != "Intercept" and j in position:
                out[name] = (np.array([position[j]]), (name,))
    return {name: value for name, value in out.items() if value[0].size}


def _r_order(terms: dict[str, tuple[np.ndarray, tuple[str, ...]]]) -> list[str]:
    """R's ``terms.formula`` order: by degree (number of variables), then as written."""
    return sorted(terms, key=lambda name: len(terms[name][1]))


def type1_hypotheses(design: Any) -> dict[str, np.ndarray]:
    """Sequential hypotheses per term, in R's term order."""
    terms = term_columns(design)
    X = np.asarray(design.X, dtype=float)
    order = list(np.flatnonzero(np.all(X == 1.0, axis=0))[:1])  # the intercept first
    for name in _r_order(terms):
        order.extend(int(j) for j in terms[name][0])
    R = np.linalg.cholesky(X[:, order].T @ X[:, order]).T
    out = {}
    for name in _r_order(terms):
        rows = [order.index(int(j)) for j in terms[name][0]]
        L = np.zeros((len(rows), X.shape[1]))
        L[:, order] = R[rows]
        out[name] = L / np.abs(L).max(axis=1, keepdims=True)
    return out


def _sum_coded_design(result: Any) -> Any:
    """The fit's fixed part rebuilt with every treatment-coded factor in ``contr.sum``."""
    design = result.design
    data: pd.DataFrame = design.data
    variables = {v for _, names in term_columns(design).values() for v in names}
    contrasts = {
        name: "sum"
        for name in variables
        if name in data.columns
        and not is_numeric_column(data[name])
        and design.contrasts.get(name, "treatment") not in _ZERO_SUM
    }
    contrasts.update(
        {k: v for k, v in design.contrasts.items() if v in _ZERO_SUM and k in data.columns}
    )
    functions = getattr(result.model, "functions", None)
    return build_design(design.formula, data, functions=functions, contrasts=contrasts)


def type3_hypotheses(result: Any) -> dict[str, np.ndarray]:
    """Marginal (SAS / lmerTest type III) hypotheses per term, in R's term order."""
    design = result.design
    terms = term_columns(design)
    order = _r_order(terms)
    identity = np.eye(design.X.shape[1])
    if not any(contained(name, terms) for name in terms):  # no recoding needed
        return {name: identity[terms[name][0]] for name in order}
    summed = _sum_coded_design(result)
    X, Xs = np.asarray(design.X, dtype=float), np.asarray(summed.X, dtype=float)
    if Xs.shape != X.shape:
        raise ArgumentError(
            "type III tests need the sum-coded design to have the fit's rank; it has "
            f"{Xs.shape[1]} columns against {X.shape[1]}. Use type=1."
        )
    M, *_ = np.linalg.lstsq(X, Xs, rcond=None)
    if not np.allclose(X @ M, Xs, atol=1e-8 * max(1.0, np.abs(Xs).max())):
        raise ArgumentError(
            "type III tests: the sum-coded design does not span the fit's columns (a "
            "coding this package cannot map); use type=1."
        )
    M_inv = np.linalg.inv(M)
    # the recoded factors are renamed inside formulae, so terms pair up by position
    summed_columns = dict(zip(terms, (cols for cols, _ in term_columns(summed).values())))
    out = {}
    for name in order:
        if not contained(name, terms):
            # a term in no other term: its coefficients are zero in any coding; these
            # rows are lmerTest's basis, which Satterthwaite's combined df depends on
            out[name] = identity[terms[name][0]]
            continue
        L_s = np.eye(Xs.shape[1])[summed_columns[name]]
        out[name] = L_s @ M_inv
    return out


def contained(name: str, terms: dict[str, tuple[np.ndarray, tuple[str, ...]]]) -> bool:
    """Whether another term's variables include all of ``name``'s (``A`` in ``A:B``)."""
    own = set(terms[name][1])
    return any(other != name and own < set(v) for other, (_, v) in terms.items())
