"""Check and clean the user's data before any design column is built.

One job: find the columns a formula uses, name unknown ones, refuse infinite
values, drop rows with missing values (saying how many), and present
categorical columns to formulae so that R's level order is kept.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import pandas as pd

from .errors import DataError, DataWarning, warn
from .formula import FormulaSpec

# Functions a formula may call without qualification (R names where they exist).
FORMULA_NAMESPACE = {
    "log": np.log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "np": np,
}

_IDENTIFIER = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_RESERVED = {"True", "False", "None", "C", "I"}


def used_columns(spec: FormulaSpec, data: pd.DataFrame) -> list[str]:
    """Columns of ``data`` referred to by the formula, in data order.

    Raises
    ------
    DataError
        If the formula names a variable that is not a column, with close matches.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    text = _QUOTED.sub(" ", spec.formula)
    columns = [str(c) for c in data.columns]
    column_set = set(columns)
    found: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        following = text[match.end() :].lstrip()[:1]
        if following in ("(", "=") or name in _RESERVED or name[0].isdigit() or name == ".":
            continue
        if _looks_numeric(name):
            continue
        if name in column_set:
            found.add(name)
            continue
        close = difflib.get_close_matches(name, columns, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            f"The formula refers to {name!r}, which is not a column of the data.{hint} "
            f"Available columns: {', '.join(columns)}."
        )
    return [c for c in columns if c in found]


def _looks_numeric(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def clean_rows(data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Drop rows with missing values in ``columns``; refuse infinite values.

    Returns
    -------
    (DataFrame, int)
        The kept rows (original index, all original columns) and how many were dropped.
    """
    subset = data[columns]
    for name in columns:
        column = subset[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            n_inf = int(np.isinf(column.to_numpy(dtype=float, na_value=np.nan)).sum())
            if n_inf:
                raise DataError(
                    f"Column {name!r} has {n_inf} infinite value(s); replace or remove them."
                )
    missing = subset.isna().any(axis=1).to_numpy()
    n_dropped = int(missing.sum())
    if n_dropped == len(data):
        raise DataError(
            "No complete rows remain: every row has a missing value in one of "
            f"{', '.join(columns)}."
        )
    if n_dropped:
        per_column = subset.isna().sum()
        detail = ", ".join(f"{c}: {int(k)}" for c, k in per_column.items() if k)
        warn(
            f"Dropped {n_dropped} of {len(data)} rows with missing values ({detail}).", DataWarning
        )
    return data.loc[~missing], n_dropped


def for_formulae(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Copy of the used columns with categoricals made ordered.

    formulae keeps a categorical's level order only when it is *ordered*; it sorts
    the levels otherwise. Marking the copy ordered (levels unchanged, unused ones
    removed) keeps R's reference levels such as Orthodont's ``Sex`` (Male, Female).
    """
    out = frame[columns].copy()
    for name in columns:
        column = out[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            out[name] = column.cat.remove_unused_categories().cat.as_ordered()
    return out


def align_categories(new: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Give categorical columns of ``new`` the categories used in fitting."""
    out = new.copy()
    for name in reference.columns:
        if name in out.columns and isinstance(reference[name].dtype, pd.CategoricalDtype):
            categories = reference[name].cat.categories
            known = out[name].where(out[name].isin(categories))  # unseen levels -> missing
            out[name] = pd.Categorical(known, categories=categories, ordered=True)
    return out
