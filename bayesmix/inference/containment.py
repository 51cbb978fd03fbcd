"""nlme's denominator degrees of freedom for fixed effects ("containment", ``getFixDF``).

For nested grouping levels ``1`` (outermost) to ``Q`` and the residual
stratum, each stratum has ``m_i - m_(i-1)`` degrees of freedom (``m_0 = 0``,
``m_(Q+1) = n``). A column of ``X`` that is not constant is estimated in the
innermost stratum within whose groups it still varies (a column constant
within the groups of level ``i`` but varying within those of level ``i - 1``
belongs to stratum ``i``), and costs that stratum one degree of freedom. With
an intercept (a constant column) the first stratum loses one more and the
intercept gets the largest remaining count; without one, every stratum but the
first gains one. This is Pinheiro and Bates (2000, sec. 2.4.2) as nlme computes
it. A nonlinear fit applies it to its linearised design, whose columns (the
mean's derivatives) vary within groups, as nlme does. Models without random
effects get ``n - p``.

Notation
--------
m_i : groups at level i; Q : levels; n : observations; p : columns of X.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError

__all__ = ["containment_df", "containment_term_df"]

_TOLERANCE = float(np.sqrt(np.finfo(float).eps))


def _nested_levels(design: Any) -> list[np.ndarray]:
    """Group codes per level, outermost first; refuses groupings that are not nested."""
    seen: dict[str, np.ndarray] = {}
    for block in design.blocks:
        seen.setdefault(block.grouping, np.asarray(block.codes))
    levels = sorted(seen.items(), key=lambda item: len(np.unique(item[1])))
    for (outer_name, outer), (inner_name, inner) in zip(levels, levels[1:]):
        pairs = np.unique(np.stack([inner, outer]), axis=1)
        if len(np.unique(pairs[0])) != pairs.shape[1]:
            raise ArgumentError(
                f"containment degrees of freedom need nested groupings, but {inner_name!r} is "
                f"not nested in {outer_name!r}; use ddf='Satterthwaite' for crossed random "
                "effects."
            )
    return [codes for _, codes in levels]


def _varies_within(x: np.ndarray, codes: np.ndarray) -> bool:
    """Whether ``x`` is not constant within some group (nlme's ``const``, relative)."""
    order = np.argsort(codes, kind="stable")
    xs, cs = x[order], codes[order]
    starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
    first = np.repeat(xs[starts], np.diff(np.r_[starts, xs.size]))
    scale = np.where(first == 0.0, 1.0, np.abs(first))
    return bool(np.any(np.abs(xs - first) / scale >= _TOLERANCE))


def _constant(x: np.ndarray) -> bool:
    return not _varies_within(x, np.zeros(x.size, dtype=int))


def _strata(design: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratum of each column (0 = outermost level), which columns are constant, and the
    strata's degrees of freedom before any column is charged."""
    X = np.asarray(design.X, dtype=float)
    n, p = X.shape
    levels = _nested_levels(design)
    counts = [len(np.unique(codes)) for codes in levels] + [n]
    df = np.diff(np.r_[0, counts]).astype(float)  # per stratum, outermost first
    constant = np.array([_constant(X[:, j]) for j in range(p)], dtype=bool)
    stratum = np.zeros(p, dtype=int)
    for j in np.flatnonzero(~constant):
        for i, codes in enumerate(levels, start=1):
            if _varies_within(X[:, j], codes):
                stratum[j] = i
    return stratum, constant, df


def _charge(df: np.ndarray, strata: list[int], sizes: list[int], intercept: bool) -> np.ndarray:
    """Strata's df after charging each estimated unit (column or term) to its stratum."""
    df = df.copy()
    for s, size in zip(strata, sizes):
        df[s] -= size
    if intercept:
        df[0] -= 1.0
    else:
        df[1:] += 1.0
    return df


def containment_df(design: Any) -> np.ndarray:
    """nlme's degrees of freedom of each column of ``design.X`` (``fixDF$X``)."""
    stratum, constant, base = _strata(design)
    free = np.flatnonzero(~constant)
    df = _charge(base, list(stratum[free]), [1] * free.size, bool(constant.any()))
    out = df[stratum]
    out[constant] = df.max()
    return out


def containment_term_df(design: Any, terms: dict[str, np.ndarray]) -> dict[str, float]:
    """nlme's degrees of freedom of each term (``fixDF$terms``): a term is estimated in
    the innermost stratum of its columns and charged all of its columns there."""
    stratum, constant, base = _strata(design)
    placed = {name: int(stratum[cols].max()) for name, cols in terms.items()}
    sizes = [len(terms[name]) for name in placed]
    df = _charge(base, list(placed.values()), sizes, bool(constant.any()))
    return {name: float(df[s]) for name, s in placed.items()}
