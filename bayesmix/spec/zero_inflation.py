"""The zero-inflation part of a count GLMM (glmmTMB's ``ziformula``).

A zero-inflated model adds structural zeros: with probability
``pi_i = expit(x_zi,i' beta_zi)`` an observation is zero whatever its count
distribution says, otherwise it follows the count family (Poisson or NB2)
with mean ``mu_i``. ``ziformula`` is a one-sided formula of fixed effects
(``"~1"`` a constant probability, ``"~ x + f"`` predictors); ``"~0"`` means no
zero inflation, as in glmmTMB. Random effects in the zero-inflation part are
not supported (an error says so).

Notation
--------
pi : structural-zero probability; beta_zi : its coefficients on the logit scale;
X_zi : the zero-inflation design (one row per observation of the count design).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning, FormulaError, warn
from bayesmix.spec.data_prep import used_columns
from bayesmix.spec.design import build_design
from bayesmix.spec.design_types import Design
from bayesmix.spec.families import Family
from bayesmix.spec.formula import parse_formula

__all__ = ["check_ziformula", "usable_rows", "zi_design", "zi_new_data"]

#: a placeholder response for the one-sided zero-inflation formula
_RESPONSE = "bmx_zi_response"


def check_ziformula(ziformula: str | None, family: Family) -> str | None:
    """The right-hand side of ``ziformula`` (``None`` for no zero inflation).

    Raises
    ------
    ArgumentError
        Not a one-sided formula string, random effects in it, or a family
        other than Poisson or negative binomial.
    """
    if ziformula is None:
        return None
    if not isinstance(ziformula, str) or not ziformula.strip().startswith("~"):
        raise ArgumentError(
            f"ziformula must be a one-sided formula such as '~1' or '~ x', got {ziformula!r}."
        )
    rhs = ziformula.strip()[1:].strip()
    if rhs in ("0", "-1", "0 + 1"):
        return None
    if "|" in rhs:
        raise ArgumentError(
            "random effects in ziformula are not supported; use fixed effects only, "
            "e.g. ziformula='~ x'."
        )
    if family.name not in ("poisson", "negbinomial"):
        raise ArgumentError(
            f"zero inflation (ziformula=) applies to count families (poisson, negbinomial), "
            f"not {family.name!r}."
        )
    return rhs


def usable_rows(
    rhs: str, data: pd.DataFrame, functions: Mapping[str, Callable] | None
) -> np.ndarray:
    """Which rows of ``data`` the zero-inflation part can use (no missing value in its
    columns); the others are counted in a warning and dropped by the caller, so that
    both parts describe the same rows."""
    try:
        spec = parse_formula(f"{_RESPONSE} ~ {rhs}")
    except FormulaError as error:
        raise FormulaError(f"ziformula: {error}") from None
    probe = data.assign(**{_RESPONSE: 0.0}) if isinstance(data, pd.DataFrame) else data
    columns = [c for c in used_columns(spec, probe, functions) if c != _RESPONSE]
    missing = data[columns].isna().any(axis=1).to_numpy() if columns else np.zeros(len(data), bool)
    if missing.any():
        warn(
            f"{int(missing.sum())} row(s) with missing values in the zero-inflation "
            f"formula's columns ({', '.join(columns)}) were dropped.",
            DataWarning,
        )
    return ~missing


def zi_design(
    rhs: str,
    design: Design,
    functions: Mapping[str, Callable] | None,
    contrasts: Mapping[str, str] | None = None,
) -> Design:
    """The zero-inflation design on the rows of ``design`` (its ``X`` and
    ``fixed_terms``; ``evaluate_new_data`` encodes new rows). ``contrasts=`` apply to
    the factors this part uses, as glmmTMB applies them to every part."""
    rows = design.data.assign(**{_RESPONSE: 0.0})
    formula = f"{_RESPONSE} ~ {rhs}"
    used = set(used_columns(parse_formula(formula), rows, functions))
    codings = {k: v for k, v in (contrasts or {}).items() if k in used} or None
    zi = build_design(formula, rows, functions=functions, contrasts=codings)
    if zi.X.shape[0] != design.n_obs:  # cannot happen after usable_rows; guard anyway
        raise ArgumentError("the zero-inflation formula does not describe every row.")
    if zi.X.shape[1] == 0:
        raise ArgumentError("ziformula has no columns; use '~1' or None.")
    return zi


def zi_new_data(zi: Design, newdata: pd.DataFrame) -> np.ndarray:
    """The zero-inflation design of new rows (encoded as the fitting rows were)."""
    return np.asarray(zi.evaluate_new_data(newdata.assign(**{_RESPONSE: 0.0})).X, dtype=float)
