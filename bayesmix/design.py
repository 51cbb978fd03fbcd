"""Turn a parsed formula and a DataFrame into numeric design arrays.

Notation
--------
n : number of observations, p : number of fixed-effect columns,
X : (n, p) fixed-effects matrix, y : (n,) response.
Each random-effects bar becomes one :class:`RandomBlock` with k columns
(``Z``, shape (n, k)) and integer ``codes`` (shape (n,)) into its ``levels``:
the contribution of the block to the linear predictor is
``rowsum(Z * b[codes])`` with ``b`` of shape (n_levels, k). No dense
(n, n_levels * k) matrix is ever formed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import formulae as fm
import numpy as np
import pandas as pd

from .data_prep import FORMULA_NAMESPACE, align_categories, clean_rows, for_formulae, used_columns
from .errors import DataError, DataWarning, FormulaError, warn
from .formula import FormulaSpec, parse_formula

CovarianceKind = Literal["unstructured", "diagonal"]


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class RandomBlock:
    """One random-effects bar, e.g. ``(1 + Days | Subject)``.

    Attributes
    ----------
    grouping : str
        Name of the grouping factor (``"Subject"``, ``"popu:gen"``).
    levels : tuple of str
        Levels that occur in the data, in model order.
    codes : ndarray of int, shape (n,)
        Index into ``levels`` for every observation.
    terms : tuple of str
        Names of the bar's columns (``("Intercept", "Days")``).
    Z : ndarray of float, shape (n, k)
        Values of the bar's columns for every observation.
    covariance : {"unstructured", "diagonal"}
        ``"unstructured"`` for ``|`` (correlated), ``"diagonal"`` for ``||``.
    """

    grouping: str
    levels: tuple[str, ...]
    codes: np.ndarray
    terms: tuple[str, ...]
    Z: np.ndarray
    covariance: CovarianceKind = "unstructured"

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def label(self) -> str:
        """lme4-like label of the block, e.g. ``"(1 + Days | Subject)"``."""
        bar = "||" if self.covariance == "diagonal" else "|"
        terms = ["1" if t == "Intercept" else t for t in self.terms]
        if "1" not in terms:
            terms.insert(0, "0")
        return f"({' + '.join(terms)} {bar} {self.grouping})"


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class Design:
    """Numeric arrays of a mixed model, shared by the ML and Bayesian engines.

    Attributes
    ----------
    formula : str
        The formula as the user wrote it.
    response : str
        Name (expression) of the response, e.g. ``"log(1 + total.fruits)"``.
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    fixed_terms : tuple of str
        Column names of ``X`` (formulae naming: ``"Intercept"``, ``"Sex[Female]"``).
    blocks : tuple of RandomBlock
        One per bar after expanding ``a/b`` and ``||``, in formula order.
    data : DataFrame
        The rows actually used (after dropping missing values), original index.
    n_dropped : int
        Number of rows of the user's data dropped for missing values.
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_terms: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    data: pd.DataFrame = field(repr=False)
    n_dropped: int = 0
    encoder: Any = field(default=None, repr=False, compare=False)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_fixed(self) -> int:
        return int(self.X.shape[1])

    def evaluate_new_data(self, newdata: pd.DataFrame) -> NewData:
        """Encode new rows exactly as the fitting data were encoded.

        Parameters
        ----------
        newdata : DataFrame
            Must hold every predictor and grouping column of the formula (the
            response is not needed).

        Returns
        -------
        NewData
        """
        if self.encoder is None:
            raise RuntimeError("This design was built by hand and cannot encode new data.")
        return self.encoder.encode(newdata)


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class NewData:
    """Arrays for prediction on new rows, encoded as in fitting.

    ``blocks`` holds one ``(codes, Z)`` pair per block of the design; codes are
    -1 for levels not seen in fitting. ``new_levels`` names the grouping factors
    that had such levels.
    """

    X: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    new_levels: tuple[str, ...]


def build_design(formula: str | FormulaSpec, data: pd.DataFrame) -> Design:
    """Build the numeric design of a mixed model.

    Parameters
    ----------
    formula : str or FormulaSpec
        lme4-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : DataFrame
        One row per observation. Rows with missing values in any column the
        formula uses are dropped with a :class:`~bayesmix.errors.DataWarning`.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DataError
        For malformed formulas, unknown columns, non-numeric or non-finite
        responses, grouping factors with fewer than two levels, or no usable rows.
    """
    spec = formula if isinstance(formula, FormulaSpec) else parse_formula(formula)
    columns = used_columns(spec, data)
    kept, n_dropped = clean_rows(data, columns)
    frame = for_formulae(kept, columns)

    fixed_dm = _design_matrices(f"{spec.response} ~ {spec.fixed}", frame, spec.formula)
    if fixed_dm.response is None or fixed_dm.response.kind != "numeric":
        raise DataError(
            f"The response {spec.response!r} must be numeric; convert it first "
            "(e.g. a 0/1 indicator for a binary outcome)."
        )
    y = np.asarray(fixed_dm.response.design_matrix, dtype=float).reshape(-1)
    if not np.all(np.isfinite(y)):
        bad = int((~np.isfinite(y)).sum())
        raise DataError(
            f"The response {spec.response!r} is not finite in {bad} row(s) "
            "(e.g. log(0)); transform it differently or remove those rows."
        )
    X_full = np.asarray(fixed_dm.common.design_matrix, dtype=float)
    names_full = [str(c) for c in fixed_dm.common.as_dataframe().columns]
    keep = _independent_columns(X_full, names_full)
    X = X_full[:, keep]

    lhs_matrices = {}
    blocks = []
    for bar in spec.bars:
        if bar.lhs not in lhs_matrices:
            lhs_matrices[bar.lhs] = _design_matrices(bar.lhs, frame, spec.formula)
        dm = lhs_matrices[bar.lhs].common
        Z = np.asarray(dm.design_matrix, dtype=float)
        terms = tuple(str(c) for c in dm.as_dataframe().columns)
        levels, codes = _grouping(frame, bar.factors)
        if len(levels) < 2:
            raise DataError(
                f"The grouping factor {bar.grouping!r} has {len(levels)} level(s); a random "
                "effect needs at least 2 (use a fixed effect instead)."
            )
        block = RandomBlock(
            grouping=bar.grouping,
            levels=levels,
            codes=_readonly(codes),
            terms=terms,
            Z=_readonly(Z),
            covariance=bar.covariance,
        )
        _warn_constant_slopes(block)
        blocks.append(block)

    encoder = _Encoder(spec, frame.iloc[:0], fixed_dm, lhs_matrices, keep, tuple(blocks))
    return Design(
        formula=spec.formula,
        response=spec.response,
        y=_readonly(y),
        X=_readonly(X),
        fixed_terms=tuple(names_full[j] for j in keep),
        blocks=tuple(blocks),
        data=kept,
        n_dropped=n_dropped,
        encoder=encoder,
    )


def _design_matrices(text: str, frame: pd.DataFrame, formula: str):
    try:
        # Invalid transforms (log of a negative) are reported by the finiteness check.
        with np.errstate(all="ignore"):
            return fm.design_matrices(
                text, frame, na_action="error", extra_namespace=FORMULA_NAMESPACE
            )
    except (FormulaError, DataError):
        raise
    except Exception as error:  # formulae raises many types; give one clear message
        raise FormulaError(f"Could not evaluate {text!r} from {formula!r}: {error}") from error


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _independent_columns(X: np.ndarray, names: list[str], tol: float = 1e-7) -> list[int]:
    """Indices of columns kept after dropping aliased ones, as lme4 does."""
    if X.shape[1] == 0:
        return []
    scale = np.linalg.norm(X, axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    keep: list[int] = []
    for j in range(X.shape[1]):
        trial = keep + [j]
        if np.linalg.matrix_rank(Xs[:, trial], tol=tol * np.sqrt(X.shape[0])) == len(trial):
            keep.append(j)
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    if dropped:
        warn(
            f"The fixed-effects matrix is rank deficient; dropping aliased column(s) "
            f"{', '.join(dropped)}.",
            DataWarning,
        )
    return keep


def _factor_codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    categorical = column if isinstance(column.dtype, pd.CategoricalDtype) else None
    if categorical is None:
        categorical = column.astype(pd.CategoricalDtype(sorted(column.unique())))
    return categorical.cat.codes.to_numpy(), [str(v) for v in categorical.cat.categories]


def _grouping(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Levels that occur (in factor order) and integer codes of an interaction."""
    parts = [_factor_codes(frame[name]) for name in factors]
    sizes = tuple(len(levels) for _, levels in parts)
    key = np.ravel_multi_index(tuple(codes for codes, _ in parts), sizes)
    observed, codes = np.unique(key, return_inverse=True)
    combos = np.unravel_index(observed, sizes)
    labels = tuple(
        ":".join(parts[f][1][combos[f][i]] for f in range(len(factors)))
        for i in range(len(observed))
    )
    return labels, codes.astype(np.int64)


def _warn_constant_slopes(block: RandomBlock) -> None:
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
            warn(
                f"The random slope {term!r} in {block.label} does not vary within any level "
                f"of {block.grouping!r}, so it is confounded with the intercept; consider "
                "removing it from the bar.",
                DataWarning,
            )


@dataclass(frozen=True)
class _Encoder:
    """Everything needed to encode new data as the fitting data were encoded."""

    spec: FormulaSpec
    template: pd.DataFrame
    fixed_dm: Any
    lhs_matrices: dict
    keep: list[int]
    blocks: tuple[RandomBlock, ...]

    def encode(self, newdata: pd.DataFrame) -> NewData:
        if not isinstance(newdata, pd.DataFrame):
            raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
        needed = [c for c in self.template.columns if c != self.spec.response]
        grouping_columns = {f for bar in self.spec.bars for f in bar.factors}
        predictors = [c for c in needed if c in _predictor_columns(self.spec, needed)]
        missing = [c for c in set(predictors) | grouping_columns if c not in newdata.columns]
        if missing:
            raise DataError(f"newdata lacks column(s) {', '.join(sorted(missing))}.")
        frame = align_categories(
            newdata[[c for c in needed if c in newdata.columns]], self.template
        )
        for name in predictors:
            if frame[name].isna().any():
                raise DataError(
                    f"newdata column {name!r} has missing values or levels not seen in "
                    "fitting; predictions need known predictor values."
                )
        X = np.asarray(self.fixed_dm.common.evaluate_new_data(frame).design_matrix, dtype=float)[
            :, self.keep
        ]
        encoded, new_levels = [], []
        for bar, block in zip(self.spec.bars, self.blocks):
            Z = np.asarray(
                self.lhs_matrices[bar.lhs].common.evaluate_new_data(frame).design_matrix,
                dtype=float,
            )
            labels = newdata[list(bar.factors)].astype(str).agg(":".join, axis=1)
            lookup = {level: i for i, level in enumerate(block.levels)}
            codes = np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
            if (codes < 0).any() and block.grouping not in new_levels:
                new_levels.append(block.grouping)
            encoded.append((codes, Z))
        return NewData(X=X, blocks=tuple(encoded), new_levels=tuple(new_levels))


def _predictor_columns(spec: FormulaSpec, columns: list[str]) -> set[str]:
    """Columns used by the fixed part or a bar's left-hand side."""
    text = " ".join([spec.fixed] + [bar.lhs for bar in spec.bars])
    return {c for c in columns if re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", text)}
