"""Stepwise selection of a linear mixed model's random effects by AIC, BIC or LRT.

The overview this package follows (Pinheiro and Bates) chooses random effects
by adding and deleting them one at a time and judging each refit by AIC, BIC or
a likelihood-ratio test, under ML or REML (the fixed part never changes, so
REML criteria compare). No peer automates it; :func:`select_random` does.

The random part is a set of bars, at most one per grouping factor (nesting
expanded: ``(1 | popu/gen)`` is ``(1 | popu)`` and ``(1 | popu:gen)``). The
``scope`` lists the bars that may take part. A move

* adds a scope bar for a grouping not in the model (``forward``),
* drops a bar (``backward``),
* or swaps a bar for a scope bar of the same grouping with more terms
  (``forward``: ``(1 | popu)`` to ``(nutrient | popu)``) or for one with fewer
  (``backward``: a scope bar, or the bar without one slope term, as ``ranova``
  reduces it).

Each step takes the best move by the criterion; it stops when none improves
it (AIC/BIC: lower by any amount; LRT: an addition with ``p < alpha``, a
deletion with ``p >= alpha``). Every fit is made once and kept.

Notation
--------
bar : one random-effects term ``(lhs | grouping)``; state : the model's bars;
LRT : ``2 |logLik_a - logLik_b|`` on the difference in parameters.
"""

from __future__ import annotations

from typing import Any, Literal

from bayesmix.errors import ArgumentError
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.inference.selection_steps import (
    Selection,
    check_options,
    path_table,
    quietly,
    walk,
)
from bayesmix.spec.formula import Bar, parse_formula

__all__ = ["Selection", "select_random"]

Criterion = Literal["AIC", "BIC", "LRT"]
Direction = Literal["backward", "forward", "both"]


def _terms(bar: Bar) -> frozenset[str]:
    parts = {p.strip() for p in bar.lhs.replace("-", "+ -").split("+") if p.strip()}
    if not parts & {"0", "-1", "- 1"}:
        parts.add("1")
    return frozenset(parts - {"0", "-1", "- 1"})


def _key(bar: Bar) -> frozenset[str]:
    return frozenset(bar.factors)


def _bars(text: str, what: str) -> list[Bar]:
    try:
        spec = parse_formula(f"bmx_response ~ 1 + {text}")
    except Exception as err:  # the parser's own error says what is wrong
        raise ArgumentError(f"{what}: {text!r} is not a set of random-effect bars ({err})") from err
    if not spec.bars or spec.fixed.strip() not in ("1", ""):
        raise ArgumentError(f"{what}: {text!r} must hold only bars such as '(1 | popu/gen)'.")
    return list(spec.bars)


def _label(state: tuple[Bar, ...]) -> str:
    return " + ".join(str(b) for b in state) or "(none)"


def _cache_key(state: tuple[Bar, ...]) -> tuple[str, ...]:
    return tuple(sorted(str(b) for b in state))


def _reductions(bar: Bar) -> list[Bar]:
    """The bar without one of its slope terms (lmerTest's ``ranova`` reductions)."""
    terms = _terms(bar)
    if len(terms) < 2:
        return []
    out = []
    for dropped in sorted(terms - {"1"}):
        kept = sorted(terms - {dropped}, key=lambda t: (t != "1", t))
        lhs = " + ".join(kept) if "1" in kept else "0 + " + " + ".join(kept)
        out.append(Bar(lhs, bar.factors, bar.covariance))
    return out


def _moves(state: tuple[Bar, ...], scope: list[Bar], direction: str) -> list[tuple[str, tuple]]:
    held = {_key(b): b for b in state}
    out = []
    if direction in ("backward", "both"):
        for bar in state:
            out.append((f"- {bar}", tuple(b for b in state if b is not bar)))
            smaller = {str(o): o for o in scope if _key(o) == _key(bar) and _terms(o) < _terms(bar)}
            smaller.update({str(o): o for o in _reductions(bar)})
            for other in smaller.values():
                out.append((f"{bar} -> {other}", tuple(other if b is bar else b for b in state)))
    if direction in ("forward", "both"):
        for other in scope:
            current = held.get(_key(other))
            if current is None:
                out.append((f"+ {other}", state + (other,)))
            elif _terms(other) > _terms(current):
                out.append(
                    (f"{current} -> {other}", tuple(other if b is current else b for b in state))
                )
    return out


def select_random(
    fit: Any,
    scope: str | list[str] | None = None,
    criterion: Criterion = "AIC",
    direction: Direction = "both",
    alpha: float = 0.05,
) -> Selection:
    """Choose the random part of ``fit`` by stepwise addition and deletion of bars.

    Parameters
    ----------
    fit : MLResult
        A fit of :func:`bayesmix.lmm` or :func:`bayesmix.nlmm` (by ML or REML; every
        refit uses its method). For ``nlmm`` see :mod:`.selection_nonlinear`.
    scope : str or list of str, optional
        Bars that may be added or swapped in (``"(1 | reg/popu/gen) + (nutrient | popu)"``);
        default: the fit's own bars (backward selection among them). For ``nlmm``: the
        parameters that may get random effects (default all).
    criterion : {"AIC", "BIC", "LRT"}
    direction : {"backward", "forward", "both"}
    alpha : float
        Level of the LRT criterion.

    Returns
    -------
    Selection
        ``path``: one row per step (the move, the random part, df, AIC, BIC,
        logLik, the LRT and its p against the previous step, and whether the fit
        is singular or failed to converge: candidates are fitted without those
        warnings, which these columns replace); ``fit``: the chosen model;
        ``fits``: every model fitted, by random part.
    """
    if getattr(fit, "nonlinear_design", None) is not None:
        from bayesmix.inference.selection_nonlinear import select_nonlinear

        return select_nonlinear(fit, scope, criterion, direction, alpha)
    require_linear_fit(fit, "select_random()")
    check_options(criterion, direction, alpha)
    if getattr(fit, "model", None) is None or not hasattr(fit.model, "update"):
        raise ArgumentError("select_random() needs a fit of bayesmix.lmm(...).fit().")
    state = tuple(parse_formula(fit.design.formula).bars)
    texts = [scope] if isinstance(scope, str) else list(scope or [])
    pool = [bar for text in texts for bar in _bars(text, "scope")]
    columns = set(fit.model.data.columns)
    missing = sorted({f for bar in pool for f in bar.factors} - columns)
    if missing:
        raise ArgumentError(f"scope names grouping columns not in the data: {missing}.")
    pool += [b for b in state if all(str(b) != str(p) for p in pool)]
    cache: dict[tuple[str, ...], Any] = {_cache_key(state): fit}
    fits: dict[str, Any] = {_label(state): fit}

    def fitted(bars: tuple[Bar, ...]) -> Any:
        key = _cache_key(bars)
        if key not in cache:
            random = " + ".join(str(b) for b in bars)
            cache[key] = fits[_label(bars)] = quietly(
                lambda: fit.model.update(random=random).fit(method=fit.method)
            )
        return cache[key]

    rows = walk(
        state, fit, lambda st: _moves(st, pool, direction), fitted, criterion, alpha, _cache_key
    )
    path = path_table(rows, _label, criterion, direction, fit.method)
    return Selection(path, rows[-1][2], fits)
