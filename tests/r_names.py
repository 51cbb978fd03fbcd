"""Translate R's coefficient and level names into bayesmix's (formulae) names.

R pastes a factor's name and level (``rack2``, ``SexFemale``,
``nutrient8:amdunclipped``, ``(Intercept)``); formulae writes ``rack[2]``,
``Sex[Female]``, ``nutrient[8]:amd[unclipped]``, ``Intercept``. nlme names
nested levels ``outer/inner`` where bayesmix writes ``outer:inner``.
"""

from __future__ import annotations

from collections.abc import Iterable


def r_term(name: str | None, factors: Iterable[str] = ()) -> str | None:
    """bayesmix name of an R coefficient; ``factors`` are the factor columns."""
    if name is None:
        return None
    factors = sorted(factors, key=len, reverse=True)  # longest prefix wins
    parts = []
    for part in name.split(":"):
        if part == "(Intercept)":
            parts.append("Intercept")
            continue
        for factor in factors:
            if part.startswith(factor) and len(part) > len(factor):
                part = f"{factor}[{part[len(factor) :]}]"
                break
        parts.append(part)
    return ":".join(parts)


def r_level(level: str) -> str:
    """bayesmix name of an nlme nested level (``"1.SP/13"`` -> ``"1.SP:13"``)."""
    return level.replace("/", ":")
