"""Shared helpers for the R-fidelity tests: R's data with its factors, R's names.

The references under ``tests/refs/rfidelity`` store each dataset as CSV and, in
the JSON beside it, every factor's levels in R's order and whether it is
ordered; :func:`r_data` rebuilds the DataFrame R fitted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

REFS = Path(__file__).parent / "refs" / "rfidelity"


def load_ref(folder: str, name: str) -> dict:
    return json.loads((REFS / folder / f"{name}.json").read_text())


def restore_factors(frame: pd.DataFrame, factors: dict) -> pd.DataFrame:
    """Make ``frame``'s factor columns categoricals with R's levels and ordered flags
    (``factors``: column -> ``{"levels": [...], "ordered": bool}``)."""
    for column, info in factors.items():
        if column in frame:
            frame[column] = pd.Categorical(
                frame[column].astype(str),
                categories=[str(level) for level in info["levels"]],
                ordered=bool(info.get("ordered", False)),
            )
    return frame


def read_with_levels(csv: Path, levels: Path) -> pd.DataFrame:
    """A CSV written by R, with its factors from the ``*.levels.json`` beside it."""
    factors = json.loads(Path(levels).read_text())["factors"]
    frame = pd.read_csv(csv, dtype={column: str for column in factors})
    return restore_factors(frame, factors)


def r_data(folder: str, ref: dict) -> pd.DataFrame:
    """The data of a reference fit, with R's factor levels and ordered flags."""
    factors = ref.get("factors", {})
    source = ref["data"]["csv"] if isinstance(ref["data"], dict) else ref["data"]
    frame = pd.read_csv(REFS / folder / source, dtype={c: str for c in factors})
    return restore_factors(frame, factors)


def name_key(name: str) -> frozenset[str]:
    """A coefficient name that R and bayesmix spell alike.

    ``recipe[B]:temperature.L`` (bayesmix) and ``recipeB:temperature.L`` (R) give
    the same key; the parts of an interaction may come in either order.
    """
    parts = []
    for part in name.split(":"):
        part = "Intercept" if part == "(Intercept)" else part
        if part.endswith("]") and "[" in part and not part.startswith("C("):
            head, _, level = part.partition("[")
            part = head + level[:-1]
        parts.append(part.replace(" ", ""))
    return frozenset(parts)


def match_names(ours: list[str], theirs: list[str]) -> dict[str, str]:
    """Map each of R's names to bayesmix's; every name must find exactly one partner."""
    keys = {name_key(n): n for n in ours}
    assert len(keys) == len(ours), f"ambiguous names {ours}"
    out = {}
    for r_name in theirs:
        key = name_key(r_name)
        assert key in keys, f"R's {r_name!r} has no counterpart among {ours}"
        out[r_name] = keys[key]
    assert len(out) == len(ours), (
        f"bayesmix has extra columns: {sorted(set(ours) - set(out.values()))}"
    )
    return out


def assert_close(got: float, expected: float, rtol: float, atol: float, what: str) -> None:
    ok = math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol)
    assert ok, f"{what}: got {got!r}, R {expected!r} (rtol {rtol}, atol {atol})"


def assert_named_close(got: pd.Series, expected: dict, rtol: float, atol: float, what: str) -> None:
    """Compare a bayesmix Series with R's named values, matching names."""
    mapping = match_names(list(got.index), list(expected))
    for r_name, value in expected.items():
        assert_close(got[mapping[r_name]], value, rtol, atol, f"{what} {r_name}")


def scale_of(values) -> float:
    return float(np.max(np.abs(np.asarray(list(values), dtype=float))))
