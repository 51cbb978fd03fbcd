"""Codes of new rows' grouping levels, looked up among the fitted levels.

A level is a tuple of values, one per factor column of the grouping (``popu:gen``
has two), compared as :func:`level_key` normalises them: numbers by value
(``1 == 1.0``), text as text. :func:`level_codes` is the vectorised lookup
(pandas' hash indexes, then one sorted search of the combined codes); rows of
types it does not handle the same way (object columns mixing numbers and text,
integers beyond 2**53) go through the per-row reference, :func:`level_codes_by_row`.
Encoding a partition of a Dask DataFrame, and predicting on large new data, spend
most of their time here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LevelIndex", "level_codes", "level_codes_by_row", "level_key"]

_EXACT_INTEGER = 2**53


def level_key(value: Any) -> Any:
    """A value as a lookup key: numbers compare by value (1 == 1.0), text as text."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, float, np.number)):
        number = value.item() if isinstance(value, np.generic) else value
        # integral values as exact integers: IDs above 2**53 must not merge as floats
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        return ("number", number)
    return ("text", str(value))


def level_codes_by_row(
    newdata: pd.DataFrame, factors: Sequence[str], keys: Sequence[tuple]
) -> np.ndarray:
    """The reference lookup, row by row: the position of each row's level in ``keys``, or -1."""
    lookup = {tuple(level_key(v) for v in key): i for i, key in enumerate(keys)}
    rows = zip(*(newdata[name].tolist() for name in factors))
    return np.array(
        [lookup.get(tuple(level_key(v) for v in row), -1) for row in rows], dtype=np.int64
    )


def _factor_index(kind: str, values: list) -> pd.Index | None:
    """The hash index of one factor's distinct values, or ``None`` where a vectorised
    lookup could differ from :func:`level_key` (integers beyond 2**53)."""
    if kind == "text":
        return pd.Index(values, dtype=object)
    if kind == "number" and not any(abs(v) >= _EXACT_INTEGER for v in values):
        return pd.Index(np.asarray(values, dtype=float))
    return None


def _dense_table(kind: str, values: list) -> tuple[int, np.ndarray] | None:
    """``(lowest value, position of each value from it)`` for a factor of integer values
    in a span of a few times their count (codes by one gather: a partition's integer
    IDs are the common case), else ``None``."""
    if kind != "number" or not values or not all(float(v).is_integer() for v in values):
        return None
    low, high = int(values[0]), int(values[-1])  # values are sorted
    if high - low >= max(4 * len(values), 1024) or abs(low) >= _EXACT_INTEGER:
        return None
    table = np.full(high - low + 1, -1, dtype=np.int64)
    table[np.asarray(values, dtype=np.int64) - low] = np.arange(len(values))
    return low, table


def _table_codes(column: pd.Series, low: int, table: np.ndarray) -> np.ndarray | None:
    """A numeric column's positions by :func:`_dense_table`'s table (-1 where absent)."""
    dtype = column.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    values = column.to_numpy(dtype=float, na_value=np.nan)
    # NaN, fractions and values outside the span are not levels; wholeness is checked
    # on the value itself (3.0000000000000004 - (-5) rounds to a whole 8.0)
    inside = (values >= low) & (values < low + len(table)) & (values == np.floor(values))
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[inside] = table[values[inside].astype(np.int64) - low]
    return codes


def _column_codes(column: pd.Series, kind: str, index: pd.Index) -> np.ndarray | None:
    """Positions of a column's values in one factor's ``index`` (its values, all of
    ``kind``), or ``None`` when the vectorised comparison could differ from
    :func:`level_key`'s."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):  # look up the categories, then the codes
        positions = _column_codes(pd.Series(dtype.categories), kind, index)
        if positions is None:
            return None
        codes = column.cat.codes.to_numpy()
        return np.where(codes >= 0, positions[np.maximum(codes, 0)], -1)
    if kind == "text":
        is_object = pd.api.types.is_object_dtype(dtype)
        if pd.api.types.is_string_dtype(dtype) or is_object:
            if is_object and not all(isinstance(v, str) for v in column.dropna().unique()):
                return None
            return index.get_indexer(column.astype(object))
        return None
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    array = column.to_numpy(dtype=float, na_value=np.nan)
    if np.any(np.abs(array[np.isfinite(array)]) >= _EXACT_INTEGER):
        return None
    return index.get_indexer(array)


class LevelIndex:
    """The fitted levels of one grouping, prepared once for :meth:`codes` (their keys
    normalised, each factor's distinct values, the levels' combined codes sorted)."""

    def __init__(self, keys: Sequence[tuple]) -> None:
        self.keys = list(keys)
        normal = [tuple(level_key(v) for v in key) for key in self.keys]
        width = len(normal[0]) if normal else 0
        kinds = [{key[j][0] for key in normal} for j in range(width)]
        self.vectorised = bool(normal) and all(len(k) == 1 for k in kinds)
        if not self.vectorised:
            return
        self.kinds = [next(iter(k)) for k in kinds]
        self.values = [sorted({key[j][1] for key in normal}) for j in range(width)]
        self.indexes = [_factor_index(k, v) for k, v in zip(self.kinds, self.values, strict=True)]
        too_many = np.prod([float(len(v)) for v in self.values]) >= 2.0**62
        if too_many or any(index is None for index in self.indexes):
            self.vectorised = False
            return
        combined, stride = np.zeros(len(normal), dtype=np.int64), 1
        for j, values in enumerate(self.values):
            position = {v: i for i, v in enumerate(values)}
            combined += stride * np.array([position[key[j][1]] for key in normal], np.int64)
            stride *= len(values)
        self.order = np.argsort(combined, kind="stable")
        self.sorted_levels = combined[self.order]
        self.tables = [_dense_table(k, v) for k, v in zip(self.kinds, self.values, strict=True)]
        # one factor whose keys are its distinct values in order: codes are positions
        self.direct = (
            width == 1
            and len(self.values[0]) == len(normal)
            and np.array_equal(self.order, np.arange(len(normal)))
        )

    def codes(self, newdata: pd.DataFrame, factors: Sequence[str]) -> np.ndarray:
        """The position of each row's level among the keys (-1 for one not among them)."""
        n = len(newdata)
        if not self.keys or n == 0:
            return np.full(n, -1, dtype=np.int64)
        if not self.vectorised:
            return level_codes_by_row(newdata, factors, self.keys)
        combined = np.zeros(n, dtype=np.int64)
        missing = np.zeros(n, dtype=bool)
        stride = 1
        for name, kind, index, table in zip(
            factors, self.kinds, self.indexes, self.tables, strict=True
        ):
            column = newdata[name]
            codes = None
            if table is not None and not isinstance(column.dtype, pd.CategoricalDtype):
                codes = _table_codes(column, *table)
            if codes is None:
                codes = _column_codes(column, kind, index)
            if codes is None:
                return level_codes_by_row(newdata, factors, self.keys)
            missing |= codes < 0
            combined += stride * np.maximum(codes, 0)
            stride *= len(index)
        if self.direct:
            return np.where(missing, -1, combined)
        at = np.minimum(np.searchsorted(self.sorted_levels, combined), len(self.keys) - 1)
        found = (self.sorted_levels[at] == combined) & ~missing
        return np.where(found, self.order[at], -1).astype(np.int64)


def level_codes(newdata: pd.DataFrame, factors: Sequence[str], keys: Sequence[tuple]) -> np.ndarray:
    """The position of each row's level among ``keys`` (-1 for a level not among them).

    ``keys`` are the fitted levels as tuples of values, one per name in
    ``factors``, compared as :func:`level_key` normalises them. Equal to
    :func:`level_codes_by_row`, faster; :class:`LevelIndex` keeps the preparation
    for repeated lookups.
    """
    return LevelIndex(keys).codes(newdata, factors)
