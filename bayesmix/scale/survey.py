"""The first pass over a Dask DataFrame: check it, count what is missing, find every level.

One ``dask.compute`` reads the formula's columns once and returns

* the number of rows and of rows with a missing value (dropped, as in memory);
* *representative rows*: every observed combination of each bar's grouping
  columns, every observed combination of the fixed part's categorical columns,
  and the first rows of the data.

The representative rows, sorted, make the *template*: an ordinary in-memory
:class:`~bayesmix.spec.design_types.Design` of the formula whose factors have
exactly the levels (and so the columns, codes and names) of the whole data.
Building it runs the in-memory checks on every distinct value of every factor
column, so a column mixing text and numbers is refused with the same message.
The second pass (:mod:`bayesmix.scale.accumulate`) encodes every partition with
the template's encoder, so all partitions agree on the columns of ``X`` and the
codes of every level; the template's own rows are never fitted.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, FormulaError
from bayesmix.spec.data_prep import (
    check_column_types,
    infinite_values_error,
    report_missing,
    used_columns,
)
from bayesmix.spec.design import Design, build_design
from bayesmix.spec.formula import FormulaSpec, parse_formula

__all__ = ["Survey", "is_dask_frame", "survey"]

#: Functions whose value on a row depends on every row (a mean, an SD, a basis): a
#: partition cannot evaluate them alone.
_STATEFUL = re.compile(r"\b(scale|center|standardize|poly|bs|cr|cc|ns)\s*\(")
#: Warnings of the template's build about variation within levels: a template holds one
#: row per level, so they describe the template, not the data.
_TEMPLATE_ONLY = re.compile(r"does not vary within any level")
#: An error message that counts rows: counted in the template, which the message says.
_COUNTS_ROWS = re.compile(r"\d+ (?:of \d+ )?rows?\b|\d+ row\(s\)")
#: A column the formula codes as a factor: ``C(k)``, ``C(k, "sum")``.
_CODED_FACTOR = re.compile(r"\bC\(\s*`?([A-Za-z_.][\w.]*)`?")
#: First rows of the data added to the template (variety for the numeric columns).
_HEAD_ROWS = 1000


def is_dask_frame(data: Any) -> bool:
    """Whether ``data`` is a Dask DataFrame (without importing Dask otherwise)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "map_partitions")


@dataclass(frozen=True)
class Survey:
    """What the first pass found.

    Attributes
    ----------
    spec : FormulaSpec
    columns : list of str
        The columns the formula (and offset/weights) use.
    n_rows, n_dropped : int
        Rows read, and rows dropped for a missing value.
    template : Design
        The formula's design on the representative rows (every level).
    n_partitions : int
    """

    spec: FormulaSpec
    columns: list[str]
    n_rows: int
    n_dropped: int
    template: Design
    n_partitions: int


def _check_formula(spec: FormulaSpec) -> None:
    found = _STATEFUL.search(spec.formula)
    if found:
        raise FormulaError(
            f"{found.group(1)}() in {spec.formula!r} depends on all rows at once (a mean, an "
            "SD or a basis), which a fit by partitions cannot evaluate row by row; compute "
            "the transformed column once (e.g. with Dask) and use it in the formula."
        )


def _row_counts(frame: pd.DataFrame) -> pd.Series:
    """Rows, complete rows, and missing and infinite values per column of one partition."""
    out = {"rows": len(frame), "complete": int((~frame.isna().any(axis=1)).sum())}
    for name in frame.columns:
        column = frame[name]
        out[f"missing:{name}"] = int(column.isna().sum())
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        values = column.to_numpy(dtype=float, na_value=np.nan) if numeric else None
        out[f"infinite:{name}"] = int(np.isinf(values).sum()) if numeric else 0
    return pd.Series(out, dtype="int64")


def _report_missing(counts: pd.Series, columns: list[str], n_rows: int, n_complete: int) -> None:
    """The in-memory path's errors and warning (:func:`bayesmix.spec.data_prep.clean_rows`)."""
    for name in columns:
        n_inf = int(counts.get(f"infinite:{name}", 0))
        if n_inf:
            raise infinite_values_error(name, n_inf)
    per_column = {c: int(counts[f"missing:{c}"]) for c in columns}
    report_missing(per_column, n_rows, n_rows - n_complete, columns)


def _representatives(ddf: Any, spec: FormulaSpec, columns: list[str], meta: pd.DataFrame):
    """Lazy frames of representative rows: per bar, per fixed categorical set, the head."""
    # numeric columns coded as factors by C(...) need all their values too
    coded = set(_CODED_FACTOR.findall(spec.formula))
    numeric = {
        c for c in columns if pd.api.types.is_numeric_dtype(meta[c].dtype) and c not in coded
    }
    grouping = {f for bar in spec.bars for f in bar.factors}
    factor_sets = [list(dict.fromkeys(bar.factors)) for bar in spec.bars]
    fixed_factors = [c for c in columns if c not in numeric and c not in grouping]
    if fixed_factors:
        factor_sets.append(fixed_factors)
    # split_out=1: a tree of per-partition de-duplications, no shuffle
    frames = [ddf.drop_duplicates(subset=subset, split_out=1) for subset in factor_sets]
    frames.append(ddf.partitions[0].head(_HEAD_ROWS, compute=False))
    return frames


def survey(
    ddf: Any,
    formula: str,
    *,
    offset: Any = None,
    weights: Any = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
    progress: bool = False,
) -> Survey:
    """Check ``ddf`` against ``formula``, count missing rows and build the template.

    Raises
    ------
    ArgumentError
        ``offset``/``weights`` given as arrays (name columns instead).
    FormulaError, DataError
        As :func:`bayesmix.spec.design.build_design`, for the formula and the
        columns' types (an object column of mixed types, infinite values, no
        complete row); a stateful transform (``scale()``).
    """
    spec = parse_formula(formula)
    _check_formula(spec)
    meta = ddf._meta
    extra = []
    for name, value in (("offset", offset), ("weights", weights)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ArgumentError(
                f"{name}= of a fit on a Dask DataFrame must name a column, not pass "
                f"{type(value).__name__}: an array has no partitions to follow."
            )
        if value not in meta.columns:
            raise DataError(f"{name}={value!r} is not a column of the data.")
        extra.append(value)
    columns = used_columns(spec, meta, functions)
    needed = list(dict.fromkeys(columns + extra))
    grouping = {f for bar in spec.bars for f in bar.factors}
    check_column_types(meta, columns, grouping)
    for name in needed:
        dtype = meta[name].dtype
        if isinstance(dtype, pd.CategoricalDtype) and "__UNKNOWN_CATEGORIES__" in list(
            dtype.categories
        ):
            raise DataError(
                f"Column {name!r} is categorical with unknown categories; make them known "
                f"first: ddf = ddf.categorize(columns=[{name!r}])."
            )
    used = ddf[needed]
    complete = used.dropna()
    lazy = [
        used.map_partitions(_row_counts, meta=pd.Series(dtype="int64")),
        *_representatives(complete, spec, needed, meta),
    ]
    counts, *representatives = compute_naming_partition(ddf, lazy, progress)
    counts = counts.groupby(level=0).sum()
    n_rows, n_complete = int(counts["rows"]), int(counts["complete"])
    _report_missing(counts, needed, n_rows, n_complete)
    rows = pd.concat(representatives, ignore_index=True).drop_duplicates()
    rows = rows.sort_values(list(rows.columns), kind="stable", ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # every column kept: aliasing is decided on the whole data's X'X
            template = build_design(
                formula,
                rows,
                offset=offset,
                weights=weights,
                functions=functions,
                contrasts=contrasts,
                drop_aliased=False,
            )
        except DataError as error:
            if not _COUNTS_ROWS.search(str(error)):
                raise
            raise DataError(
                f"{error} (The counts are of the {len(rows)} rows the survey sampled from the "
                "data: one per level of each grouping factor and per combination of the "
                "categorical predictors, and the first rows.)"
            ) from error
    for record in caught:  # what the representatives alone cannot tell is not said
        if not _TEMPLATE_ONLY.search(str(record.message)):
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    return Survey(spec, needed, n_rows, n_rows - n_complete, template, ddf.npartitions)


def compute_naming_partition(ddf: Any, lazy: list, progress: bool) -> list:
    """``dask.compute(*lazy)`` on the current scheduler (a progress bar when asked); a
    failure is re-raised as a DataError naming the first partition of ``ddf`` that fails
    to read, found by reading them one by one (only after a failure)."""
    try:
        return list(_compute(lazy, progress))
    except (ArgumentError, DataError, FormulaError):
        raise
    except Exception as error:
        for index in range(ddf.npartitions):
            try:
                len(ddf.partitions[index])
            except Exception as reading:
                raise DataError(
                    f"partition {index} of the data failed to read: "
                    f"{type(reading).__name__}: {reading}"
                ) from reading
        raise DataError(f"reading the data failed: {type(error).__name__}: {error}") from error


def _compute(lazy: list, progress: bool) -> tuple:
    import dask

    if not progress:
        return dask.compute(*lazy)
    try:
        from distributed import get_client
        from distributed import progress as show_progress

        client = get_client()
    except (ImportError, ValueError):
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(*lazy)
    futures = client.compute(lazy)
    show_progress(futures)
    return tuple(client.gather(futures))
