"""Stepwise selection of a nonlinear mixed model's random effects (``nlmm``).

For a nonlinear model the question is which parameters get random effects and
whether their covariance is diagonal or full (Pinheiro and Bates, ch. 8: Theoph's
``lKe`` needs none, ``lKa`` and ``lCl`` do, uncorrelated). A state is, per
grouping factor, the set of parameters with a random intercept there and the
covariance kind. A move adds a parameter's random effect, drops one (at least
one stays: without any the model is ``nls``), or switches a grouping's
covariance between ``"diagonal"`` and ``"unstructured"`` (with two or more
effects). Every refit is ``model.update(params=..., cov=...).fit(method)``,
judged as in :func:`bayesmix.inference.selection.select_random`.

Notation
--------
state : ((grouping, kind, parameters), ...); kind : "diagonal" or "unstructured".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayesmix.errors import ArgumentError
from bayesmix.inference.selection_steps import (
    Selection,
    check_options,
    path_table,
    quietly,
    walk,
)
from bayesmix.spec.formula import parse_formula

__all__ = ["select_nonlinear"]

State = tuple[tuple[str, str, frozenset[str]], ...]


def _parts(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Fixed part of each parameter's formula, and the groupings each has intercepts in."""
    fixed, random = {}, {}
    for name, text in params.items():
        spec = parse_formula(f"bmx_parameter ~ {text}")
        fixed[name] = spec.fixed
        for bar in spec.bars:
            if bar.lhs.strip() not in ("1", "1 + 1"):
                raise ArgumentError(
                    f"select_random() on nlmm handles random intercepts of parameters; "
                    f"{name} ~ {text} has a random slope."
                )
            random.setdefault(bar.grouping, set()).add(name)
    return fixed, random


def _label(state: State) -> str:
    return "; ".join(f"{', '.join(sorted(p))} | {g} ({kind})" for g, kind, p in state)


def _params(state: State, fixed: dict[str, str]) -> dict[str, str]:
    out = dict(fixed)
    for grouping, _, names in state:
        for name in names:
            out[name] = f"{out[name]} + (1 | {grouping})"
    return out


def _moves(state: State, allowed: set[str], direction: str) -> list[tuple[str, State]]:
    out = []
    total = sum(len(p) for _, _, p in state)
    for i, (grouping, kind, names) in enumerate(state):

        def with_block(new: tuple[str, str, frozenset[str]], i: int = i) -> State:
            return state[:i] + (new,) + state[i + 1 :]

        if direction in ("backward", "both") and total > 1:
            for name in sorted(names):
                out.append((f"- {name} | {grouping}", with_block((grouping, kind, names - {name}))))
        if direction in ("forward", "both"):
            for name in sorted(allowed - names):
                out.append((f"+ {name} | {grouping}", with_block((grouping, kind, names | {name}))))
        if len(names) > 1:
            other = "unstructured" if kind == "diagonal" else "diagonal"
            adds = other == "unstructured"
            if direction == "both" or (direction == "forward") == adds:
                out.append((f"{grouping}: {kind} -> {other}", with_block((grouping, other, names))))
    return [(move, tuple(b for b in st if b[2])) for move, st in out]


def select_nonlinear(
    fit: Any, scope: Any, criterion: str, direction: str, alpha: float
) -> Selection:
    """:func:`~bayesmix.inference.selection.select_random` for an ``nlmm`` fit."""
    check_options(criterion, direction, alpha)
    model = getattr(fit, "model", None)
    params = getattr(model, "params", None)
    if not isinstance(params, Mapping):
        raise ArgumentError(
            "select_random() on nlmm needs the model's params as a dict of formulas "
            "({'lKa': '1 + (1 | Subject)', ...})."
        )
    fixed, random = _parts(params)
    if len(random) == 0:
        raise ArgumentError("select_random() needs an nlmm fit with random effects to start from.")
    allowed = set(params) if scope is None else {scope} if isinstance(scope, str) else set(scope)
    unknown = sorted(allowed - set(params))
    if unknown:
        raise ArgumentError(f"scope names {unknown}, which are not parameters: {sorted(params)}.")
    cov = model.options.get("cov")
    kinds = cov if isinstance(cov, Mapping) else {}
    default = cov if isinstance(cov, str) else "unstructured"
    state: State = tuple(
        (g, kinds.get(g, default), frozenset(names)) for g, names in sorted(random.items())
    )
    fits: dict[str, Any] = {_label(state): fit}

    def fitted(st: State) -> Any:
        key = _label(st)
        if key not in fits:
            cov_new = {g: kind for g, kind, _ in st}
            new_model = model.update(params=_params(st, fixed), cov=cov_new)
            fits[key] = quietly(lambda: new_model.fit(method=fit.method))
        return fits[key]

    rows = walk(state, fit, lambda st: _moves(st, allowed, direction), fitted, criterion, alpha)
    path = path_table(rows, _label, criterion, direction, fit.method)
    return Selection(path, rows[-1][2], fits)
