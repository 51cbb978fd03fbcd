"""Classic mixed-model datasets from R, bundled as CSV files.

>>> from bayesmix.datasets import load_dataset
>>> load_dataset("sleepstudy").shape
(180, 3)

Factor columns come back as (unordered) pandas ``Categorical`` columns with
R's level order, so the first level is R's reference level. Grouping factors
whose labels look numeric (``Subject``, ``herd``, ``s``, ``d``...) are always
categorical, never integers. See ``README.md`` in this folder for provenance
and licences.
"""

from __future__ import annotations

import difflib
from importlib import resources

import pandas as pd

from bayesmix.datasets._catalog import CATALOG, DatasetInfo
from bayesmix.errors import DataError

__all__ = ["list_datasets", "load_dataset"]


def list_datasets() -> pd.DataFrame:
    """List the bundled datasets.

    Returns
    -------
    pandas.DataFrame
        One row per dataset with columns ``name``, ``rows``, ``columns``,
        ``source`` (the R package it ships with) and ``description``.
    """
    records = [
        {
            "name": info.name,
            "rows": info.rows,
            "columns": info.columns,
            "source": info.source,
            "description": info.description,
        }
        for info in CATALOG.values()
    ]
    return pd.DataFrame.from_records(records)


def load_dataset(name: str) -> pd.DataFrame:
    """Load a bundled dataset as a DataFrame.

    Parameters
    ----------
    name : str
        Dataset name as in R (``"sleepstudy"``, ``"Orthodont"``...). Matching
        ignores case when the name is otherwise unambiguous.

    Returns
    -------
    pandas.DataFrame
        A fresh copy; factor columns are ``Categorical`` in R's level order.

    Raises
    ------
    bayesmix.errors.DataError
        If no dataset has that name; the message suggests close matches.
    """
    info = _lookup(name)
    data_dir = resources.files("bayesmix.datasets").joinpath("data")
    resource = data_dir.joinpath(info.file)
    # Read factor columns as text so labels like "308" or "01" survive as-is.
    dtypes = {column: str for column in info.factors}
    compression = "gzip" if info.file.endswith(".gz") else None
    with resource.open("rb") as handle:
        frame = pd.read_csv(handle, dtype=dtypes, compression=compression)
    for column, levels in info.factors.items():
        frame[column] = _as_factor(frame[column], levels, ordered=column in info.ordered)
    return frame


def _lookup(name: str) -> DatasetInfo:
    if not isinstance(name, str):
        raise DataError(f"dataset name must be a string, got {type(name).__name__}")
    if name in CATALOG:
        return CATALOG[name]
    folded = {key.lower(): key for key in CATALOG}
    if name.lower() in folded:
        return CATALOG[folded[name.lower()]]
    close = difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(folded[c]) for c in close)}?" if close else ""
    raise DataError(
        f"unknown dataset {name!r}.{hint} Available: {', '.join(sorted(CATALOG, key=str.lower))}."
    )


def _as_factor(
    values: pd.Series, levels: tuple[str, ...] | None, ordered: bool = False
) -> pd.Series:
    observed = pd.unique(values.dropna())
    if levels is None:
        levels = tuple(sorted(observed, key=_default_level_key(observed)))
    missing = set(observed) - set(levels)
    if missing:  # guards the hand-written level lists against the CSVs
        raise DataError(f"column {values.name!r} has labels without a level: {sorted(missing)}")
    return pd.Series(
        pd.Categorical(values, categories=list(levels), ordered=ordered),
        index=values.index,
        name=values.name,
    )


def _default_level_key(observed):
    """R's factor() order: numeric for integer codes, else sorted strings."""
    if all(_is_integer_label(label) for label in observed):
        return int
    return str


def _is_integer_label(label: str) -> bool:
    text = label.removeprefix("-")
    return text.isdigit()
