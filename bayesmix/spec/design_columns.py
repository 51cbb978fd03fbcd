"""Columns of a design: the rank check of X, grouping codes, and new-data encoding.

One job: turn the columns formulae built into the arrays the engines read, in a
way that can be repeated on new rows for prediction.

* :func:`independent_columns` drops aliased fixed-effect columns by R's rule
  (``qr(X, tol = 1e-7)``): a column is kept when the part of it not explained by
  the columns already kept is larger than ``tol`` times its own norm, so a
  predictor far from zero (``x + 1e6``, a timestamp) is kept, as lme4 keeps it.
* :func:`grouping_codes` identifies the levels of an interaction ``a:b`` by the
  tuple of its factors' values, never by joined strings (``"x:y", "z"`` and
  ``"x", "y:z"`` are different levels).
* :class:`Encoder` encodes new rows exactly as the fitting rows were encoded.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.errors import DataError, DataWarning, warn
from bayesmix.spec.data_prep import align_categories, numeric_argument
from bayesmix.spec.level_codes import LevelIndex
from bayesmix.spec.plain_terms import PlainColumns

if TYPE_CHECKING:
    from bayesmix.spec.formula import FormulaSpec

#: R's tolerance in ``qr()``, used by lme4's rank check of X.
RANK_TOLERANCE = 1e-7


# A factor rewritten for its contrasts (bayesmix.spec.contrasts): bmx_code(f, bmx_contr_sum).
_CODED = re.compile(r"bmx_code\(([^,]*), bmx_contr_\w+\)")


def readonly(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, read-only copy (or view) of ``array``."""
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class NewData:
    """Arrays for prediction on new rows, encoded as in fitting.

    ``blocks`` holds one ``(codes, Z)`` pair per block of the design; codes are
    -1 for levels not seen in fitting. ``new_levels`` names the grouping factors
    that had such levels. ``offset`` is the model's offset on the new rows
    (``None`` when the model has none).
    """

    X: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    new_levels: tuple[str, ...]
    offset: np.ndarray | None = None

    @property
    def offset_or_zero(self) -> np.ndarray:
        """The offset, or zeros when the model has none."""
        return np.zeros(self.X.shape[0]) if self.offset is None else self.offset


def independent_columns(X: np.ndarray, names: list[str], tol: float = RANK_TOLERANCE) -> list[int]:
    """Indices of the columns kept after dropping aliased ones (R's ``qr`` rule).

    Columns are taken in order; column j is aliased when its residual after
    projection on the kept columns has norm at most ``tol * ||X[:, j]||``.
    """
    keep: list[int] = []
    basis = np.zeros((X.shape[0], 0))  # orthonormal basis of the kept columns
    for j in range(X.shape[1]):
        column = X[:, j]
        norm = np.linalg.norm(column)
        residual = column - basis @ (basis.T @ column)
        residual = residual - basis @ (basis.T @ residual)  # second pass: orthogonal to rounding
        size = np.linalg.norm(residual)
        if norm > 0 and size > tol * norm:
            keep.append(j)
            basis = np.column_stack([basis, residual / size])
    warn_aliased([names[j] for j in range(X.shape[1]) if j not in keep])
    return keep


def factor_levels(column: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Integer codes and levels of a grouping column (categorical order, else sorted)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categorical = column
    else:
        values = column.unique()
        kinds = {type(v) for v in values}
        if len(kinds) > 1 and not all(issubclass(k, (int, float, np.number)) for k in kinds):
            raise DataError(
                f"The grouping column {column.name!r} mixes values of types "
                f"{', '.join(sorted(k.__name__ for k in kinds))}; convert it to one type, "
                f"e.g. data[{column.name!r}] = data[{column.name!r}].astype(str)."
            )
        categorical = column.astype(pd.CategoricalDtype(sorted(values)))
    return categorical.cat.codes.to_numpy(), list(categorical.cat.categories)


def level_labels(keys: list[tuple[Any, ...]]) -> tuple[str, ...]:
    """Display labels of interaction levels: ``"a:b"``, or the tuple when those collide."""
    joined = tuple(":".join(str(v) for v in key) for key in keys)
    if len(set(joined)) == len(joined):
        return joined
    return tuple(str(tuple(str(v) for v in key)) for key in keys)


def grouping_codes(
    frame: pd.DataFrame, factors: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...], np.ndarray]:
    """Labels, value tuples and integer codes of the levels of an interaction that occur."""
    parts = [factor_levels(frame[name]) for name in factors]
    sizes = tuple(len(levels) for _, levels in parts)
    if len(parts) == 1:
        key = parts[0][0].astype(np.int64)
    else:
        key = np.ravel_multi_index(tuple(codes for codes, _ in parts), sizes)
    n_keys = int(np.prod(sizes, dtype=np.float64))
    if n_keys <= max(4 * key.size, 1 << 16):
        # a table of the possible keys: linear time where np.unique sorts
        # (a third of a 10^6-row design's build)
        present = np.zeros(n_keys, dtype=bool)
        present[key] = True
        observed = np.flatnonzero(present)
        codes = (np.cumsum(present) - 1)[key]
    else:
        observed, codes = np.unique(key, return_inverse=True)
    combos = np.unravel_index(observed, sizes)
    values = [_object_array(levels)[combo] for (_, levels), combo in zip(parts, combos)]
    keys = list(zip(*values))
    return level_labels(keys), tuple(keys), codes.astype(np.int64)


def _object_array(values: list[Any]) -> np.ndarray:
    """A 1-d object array of ``values`` as they are (tuples stay elements)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def warn_constant_slopes(block: Any) -> None:
    """Warn when a random slope's variable never varies within a group."""
    for j, term in enumerate(block.terms):
        column = block.Z[:, j]
        if term == "Intercept" or np.ptp(column) == 0:
            continue
        low = np.full(block.n_levels, np.inf)
        high = np.full(block.n_levels, -np.inf)
        np.minimum.at(low, block.codes, column)
        np.maximum.at(high, block.codes, column)
        if np.all(high - low == 0):
            warn(constant_slope_message(term, block), DataWarning)


def constant_slope_message(term: str, block: Any) -> str:
    """The warning about a random slope that never varies within a level of its grouping."""
    return (
        f"The random slope {term!r} in {block.label} does not vary within any level "
        f"of {block.grouping!r}, so it is confounded with the intercept; consider "
        "removing it from the bar."
    )


def warn_aliased(dropped: list[str]) -> None:
    """The warning about fixed-effects columns dropped as aliased (R's ``qr`` rule)."""
    if dropped:
        warn(
            f"The fixed-effects matrix is rank deficient; dropping aliased column(s) "
            f"{', '.join(dropped)}.",
            DataWarning,
        )


@dataclass(frozen=True)
class Encoder:
    """Everything needed to encode new data as the fitting data were encoded.

    ``level_keys`` holds, per block, the value tuples of its levels in order;
    ``offset_matrices`` the formulae matrices of the formula's ``offset()``
    terms; ``offset_column`` the column named by ``offset=``, if any.
    """

    spec: FormulaSpec
    template: pd.DataFrame
    fixed_dm: Any
    lhs_matrices: dict  # formulae's matrices per bar left-hand side; None for "1"
    keep: list[int]
    level_keys: tuple[tuple[tuple[Any, ...], ...], ...]
    predictors: tuple[str, ...]
    offset_matrices: tuple[Any, ...] = ()
    offset_column: str | None = None
    offset_array: bool = False

    @functools.cached_property
    def level_indexes(self) -> tuple[LevelIndex, ...]:
        """Each bar's levels prepared for lookups, once per encoder (a Dask fit encodes
        every partition with one encoder)."""
        return tuple(LevelIndex(keys) for keys in self.level_keys)

    def encode(self, newdata: pd.DataFrame) -> NewData:
        """Encode ``newdata`` (a DataFrame with the formula's predictor columns)."""
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
        if len(newdata) == 0:
            raise DataError("newdata has no rows; pass at least one row to predict.")
        if self.offset_array:
            raise DataError(
                "This model's offset was given as an array, so it is unknown for new rows; "
                "refit with offset='<column>' (or an offset() term in the formula) to predict "
                "on new data."
            )
        grouping_columns = [f for bar in self.spec.bars for f in bar.factors]
        needed = list(dict.fromkeys([*self.predictors, *grouping_columns]))
        if self.offset_column is not None:
            needed.append(self.offset_column)
        missing = [c for c in needed if c not in newdata.columns]
        if missing:
            raise DataError(f"newdata lacks column(s) {', '.join(sorted(missing))}.")
        # Unseen levels of a categorical predictor become missing here; grouping
        # columns are looked up by value below (unseen levels get code -1).
        frame = align_categories(newdata[needed], self.template)
        for name in needed:
            grouping = name in grouping_columns and name not in self.predictors
            if (newdata[name] if grouping else frame[name]).isna().any():
                detail = "" if grouping else " or levels not seen in fitting"
                raise DataError(
                    f"newdata column {name!r} has missing values{detail}; predictions need "
                    "known values (drop those rows first)."
                )
        X = self._evaluate(self.fixed_dm.common, frame)[:, self.keep]
        encoded, new_levels = [], []
        for bar, index in zip(self.spec.bars, self.level_indexes):
            matrices = self.lhs_matrices[bar.lhs]
            if matrices is None:  # an intercept-only bar
                Z = np.ones((len(frame), 1))
            else:
                Z = self._evaluate(matrices.common, frame)
            codes = index.codes(newdata, bar.factors)
            if (codes < 0).any() and bar.grouping not in new_levels:
                new_levels.append(bar.grouping)
            encoded.append((codes, Z))
        return NewData(
            X=X, blocks=tuple(encoded), new_levels=tuple(new_levels), offset=self._offset(frame)
        )

    def _offset(self, frame: pd.DataFrame) -> np.ndarray | None:
        parts = [self._evaluate(dm.common, frame)[:, 0] for dm in self.offset_matrices]
        if self.offset_column is not None:
            what = f"newdata's offset column {self.offset_column!r}"
            parts.append(numeric_argument(frame[self.offset_column], what))
        if not parts:
            return None
        offset = np.sum(parts, axis=0)
        if not np.all(np.isfinite(offset)):
            raise DataError("The offset is missing or not finite in some rows of newdata.")
        return offset

    @staticmethod
    def _evaluate(matrix: Any, frame: pd.DataFrame) -> np.ndarray:
        if matrix is None:
            return np.zeros((len(frame), 0))
        try:
            with np.errstate(all="ignore"):
                if isinstance(matrix, PlainColumns):
                    values = matrix.matrix(frame)
                else:
                    values = np.asarray(matrix.evaluate_new_data(frame).design_matrix, dtype=float)
        except (ValueError, TypeError, KeyError) as error:
            reason = _CODED.sub(r"\1", str(error))  # bayesmix's rewriting, not the user's text
            raise DataError(
                f"newdata cannot be encoded as the fitting data were ({reason}); check that "
                "its columns have the fitting data's types (numbers for numeric predictors)."
            ) from None
        if not np.all(np.isfinite(values)):
            raise DataError(
                "newdata gives non-finite predictor values (e.g. log(0) or an infinite "
                "value); predictions need finite predictors."
            )
        return values
