"""Check and clean the user's data before any design column is built.

One job: find the columns a formula uses, name unknown ones, refuse infinite
values, drop rows with missing values (saying how many), and present
categorical columns to formulae so that R's level order is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from bayesmix.errors import DataError, DataWarning, FormulaError, warn
from bayesmix.spec.formula import FormulaSpec, binomial_counts
from bayesmix.spec.formula_eval import referenced_columns, unknown_column

#: Names of the columns that hold ``offset=`` and ``weights=`` arrays (lme4's).
OFFSET_COLUMN = "(offset)"
WEIGHTS_COLUMN = "(weights)"


def used_columns(
    spec: FormulaSpec, data: pd.DataFrame, functions: Mapping[str, Callable] | None = None
) -> list[str]:
    """Columns of ``data`` referred to by the formula, in data order.

    Every expression of the formula is checked by
    :func:`~bayesmix.spec.formula_eval.referenced_columns` (names must be columns or
    allowed functions; every token must be used).

    Raises
    ------
    DataError
        If ``data`` is not a DataFrame, has duplicated column names, or the
        formula names a variable that is not a column (with close matches).
    FormulaError
        If the formula uses a name it may not evaluate, or the response also
        appears on the right-hand side.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    columns = [str(c) for c in data.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(
            f"data has duplicated column name(s) {', '.join(map(repr, duplicated))}; "
            "rename them so that each name is unique."
        )
    if any(not isinstance(c, str) for c in data.columns):
        raise DataError(
            "data's column names must be strings; rename them, e.g. "
            "data.columns = data.columns.astype(str)."
        )

    def refs(text: str) -> list[str]:
        return referenced_columns(text, spec.formula, columns, functions)

    counts = binomial_counts(spec.response)
    response = refs(spec.response) if counts is None else refs(counts[0]) + refs(counts[1])
    right = refs(spec.fixed)
    for text in spec.offsets:
        right += refs(text)
    for bar in spec.bars:
        right += refs(bar.lhs)
        for name in bar.factors:
            if name not in columns:
                raise DataError(unknown_column(name, columns, f"The grouping factor {name!r}"))
            right.append(name)
    clash = sorted(set(response) & set(right))
    if clash:
        raise FormulaError(
            f"{', '.join(map(repr, clash))} appears on both sides of {spec.formula!r}: the "
            "response cannot also be a predictor or grouping factor."
        )
    found = set(response) | set(right)
    return [c for c in columns if c in found]


def predictor_columns(
    spec: FormulaSpec, columns: list[str], functions: Mapping[str, Callable] | None = None
) -> list[str]:
    """Columns used by the fixed part, the offsets or a bar's left-hand side."""
    texts = [spec.fixed, *spec.offsets, *(bar.lhs for bar in spec.bars)]
    found = {
        c for text in texts for c in referenced_columns(text, spec.formula, columns, functions)
    }
    return [c for c in columns if c in found]


def check_column_types(data: pd.DataFrame, columns: list[str], grouping: set[str]) -> None:
    """Refuse column types a formula cannot use, naming the column and the fix.

    Dates and durations are not numbers to a formula, and an object column that
    mixes text with numbers would silently become a factor of both; complex
    numbers have no order. Grouping columns may hold any one type.
    """
    for name in columns:
        column = data[name]
        dtype = column.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise DataError(
                f"Column {name!r} holds dates or durations ({dtype}); convert it to a number, "
                f"e.g. (data[{name!r}] - data[{name!r}].min()).dt.days, or to text for a "
                "grouping factor."
            )
        if pd.api.types.is_complex_dtype(dtype):
            raise DataError(f"Column {name!r} is complex-valued; a formula needs real numbers.")
        if pd.api.types.is_object_dtype(dtype) and name not in grouping:
            kinds = {type(v) for v in column.dropna().unique()}
            if kinds and not all(issubclass(k, str) for k in kinds):
                shown = ", ".join(sorted(k.__name__ for k in kinds))
                raise DataError(
                    f"Column {name!r} holds values of type(s) {shown}; a formula needs numbers "
                    f"or text. Convert it, e.g. data[{name!r}].astype(float) or .astype(str)."
                )


def clean_rows(data: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Drop rows with missing values in ``columns``; refuse infinite values.

    Returns
    -------
    (DataFrame, int)
        The kept rows (original index, all original columns) and how many were dropped.
    """
    # column by column on numpy arrays: data[columns] and DataFrame.isna() cost
    # more than a whole small fit
    missing = np.zeros(len(data), dtype=bool)
    per_column = {}
    for name in columns:
        column = data[name]
        kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""
        if kind in "iub" and kind:  # numpy integers and booleans cannot be missing
            per_column[name] = 0
            continue
        if kind == "f":
            values = column.to_numpy()
            n_inf = int(np.isinf(values).sum())
            absent = np.isnan(values)
        elif isinstance(column.dtype, pd.CategoricalDtype):
            n_inf, absent = 0, column.cat.codes.to_numpy() < 0
        else:
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                n_inf = int(np.isinf(column.to_numpy(dtype=float, na_value=np.nan)).sum())
            else:
                n_inf = 0
            absent = column.isna().to_numpy()
        if n_inf:
            raise infinite_values_error(name, n_inf)
        per_column[name] = int(absent.sum())
        if per_column[name]:
            missing |= absent
    n_dropped = int(missing.sum())
    report_missing(per_column, len(data), n_dropped, columns)
    if not n_dropped:
        return data.copy(), 0  # a copy all the same: the fit keeps its rows
    return data.loc[~missing], n_dropped


def infinite_values_error(name: str, count: int) -> DataError:
    return DataError(f"Column {name!r} has {count} infinite value(s); replace or remove them.")


def report_missing(
    per_column: dict[str, int], n_rows: int, n_dropped: int, columns: list[str]
) -> None:
    """Refuse data without a complete row; warn with the count of rows dropped per column."""
    if n_dropped == n_rows:
        raise DataError(
            "No complete rows remain: every row has a missing value in one of "
            f"{', '.join(columns)}."
        )
    if n_dropped:
        detail = ", ".join(f"{c}: {k}" for c, k in per_column.items() if k)
        warn(f"Dropped {n_dropped} of {n_rows} rows with missing values ({detail}).", DataWarning)


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


def attach_argument(
    data: pd.DataFrame, values: str | np.ndarray | None, argument: str, column: str
) -> tuple[pd.DataFrame, str | None, bool]:
    """Resolve ``offset=``/``weights=``: a column name, or an array added as a column."""
    if values is None:
        return data, None, False
    if isinstance(values, str):
        if values not in data.columns:
            raise DataError(
                f"{argument}={values!r} is not a column of the data; pass a column name or "
                "an array with one value per row."
            )
        return data, values, False
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != len(data):
        raise DataError(
            f"{argument} must be a column name or a 1-d array with one value per row of the "
            f"data ({len(data)}), got shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"{argument} must be numeric, got values of type {array.dtype}.")
    return data.assign(**{column: array.astype(float)}), column, True


def numeric_argument(column: pd.Series, argument: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(f"{argument} must be numeric; column {column.name!r} is {column.dtype}.")
    return column.to_numpy(dtype=float)
