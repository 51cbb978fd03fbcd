"""Formula parts made of an intercept and numeric columns, built without formulae.

``Days``, ``1 + x + z`` or ``0 + Days`` need no parsing, contrasts or
transforms: the design matrix is the columns themselves, with a column of ones
first unless ``0`` removes it, exactly as formulae builds it. A formulae call
costs about 0.8 ms whatever the data's size, more than a whole fit of a small
model (sleepstudy's two calls were half of its formula-to-fit time), so
:func:`build_design` takes this path when a part qualifies and formulae
otherwise. Anything else (a function call, an interaction, a factor, a boolean
or nullable-integer column, ``-1``) goes to formulae.

:class:`PlainMatrices` stands where formulae's ``DesignMatrices`` would, with
the two attributes the rest of bayesmix reads (``common`` and ``env``), so new
data are encoded (:class:`~bayesmix.spec.design_columns.Encoder`) by the same
path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PlainColumns", "PlainMatrices", "plain_part"]

# A bare column name as formulae reads it (no backticks, no operators).
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*\Z")


@dataclass(frozen=True)
class PlainColumns:
    """An optional intercept followed by numeric columns.

    Attributes
    ----------
    intercept : bool
    columns : tuple of str
        Column names, in formula order, each once.
    """

    intercept: bool
    columns: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """Column names of the matrix, formulae's (and so bayesmix's) spelling."""
        return (["Intercept"] if self.intercept else []) + list(self.columns)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The design matrix of ``frame``'s rows (``(n, len(names))``, C order).

        Raises ``ValueError``/``TypeError`` for a column that is not numbers (the
        encoder of new data turns them into a :class:`~bayesmix.errors.DataError`).
        """
        first = int(self.intercept)
        out = np.empty((len(frame), first + len(self.columns)))
        if first:
            out[:, 0] = 1.0
        for j, name in enumerate(self.columns, start=first):
            out[:, j] = frame[name].to_numpy(dtype=float)
        return out


@dataclass(frozen=True)
class PlainMatrices:
    """A plain part in the place of formulae's ``DesignMatrices``.

    Attributes
    ----------
    common : PlainColumns
        The right-hand side's columns.
    env : Any
        formulae's environment of the model (the functions a user passed), kept
        so a saved model records them as for a formulae-built part.
    """

    common: PlainColumns
    env: Any = None


def _numeric(column: pd.Series) -> bool:
    # numpy integer/unsigned/float only: booleans are factors to formulae, and
    # nullable extension types go through formulae's own conversion
    return isinstance(column.dtype, np.dtype) and column.dtype.kind in "iuf"


def plain_part(text: str, frame: pd.DataFrame) -> PlainColumns | None:
    """The :class:`PlainColumns` of ``text`` (a right-hand side), or ``None`` if not plain.

    ``text`` qualifies when it is terms joined by ``+``, each ``1``, ``0`` or the
    name of a numeric column of ``frame`` (``0`` and ``1`` not both).
    """
    terms = [term.strip() for term in text.split("+")]
    if not terms or any(not term for term in terms):
        return None
    has_zero, has_one = "0" in terms, "1" in terms
    if has_zero and has_one:
        return None
    names = [term for term in terms if term not in ("0", "1")]
    for name in names:
        if not _NAME.match(name) or name not in frame.columns or not _numeric(frame[name]):
            return None
    return PlainColumns(intercept=not has_zero, columns=tuple(dict.fromkeys(names)))


def plain_response(text: str, frame: pd.DataFrame) -> str | None:
    """``text`` when it is the name of a numeric column of ``frame``, else ``None``."""
    name = text.strip()
    if _NAME.match(name) and name in frame.columns and _numeric(frame[name]):
        return name
    return None
