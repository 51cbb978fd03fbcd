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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import formulae as fm
import numpy as np
import pandas as pd

from bayesmix.errors import DataError, DataWarning, FormulaError, warn
from bayesmix.spec.contrasts import check_contrasts, factor_codings
from bayesmix.spec.data_prep import (
    OFFSET_COLUMN,
    WEIGHTS_COLUMN,
    attach_argument,
    check_column_types,
    clean_rows,
    for_formulae,
    numeric_argument,
    predictor_columns,
    used_columns,
)
from bayesmix.spec.design_columns import (
    Encoder,
    NewData,
    grouping_codes,
    independent_columns,
    readonly,
    warn_constant_slopes,
)
from bayesmix.spec.formula import FormulaSpec, parse_formula
from bayesmix.spec.formula_eval import (
    check_functions,
    environment,
    formulae_text,
    r_column_names,
    referenced_columns,
)

__all__ = ["Design", "NewData", "RandomBlock", "build_design"]


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
    offset : ndarray, shape (n,), optional
        Known part of the linear predictor (``offset()`` terms plus the
        ``offset=`` argument), added to ``X beta + Z b``; ``None`` when absent.
    weights : ndarray, shape (n,), optional
        Prior weights (lme4's meaning: the residual variance of row i is
        ``sigma^2 / w_i``); ``None`` when all are 1.
    contrasts : dict
        The ``contrasts=`` argument, checked (column -> coding name).
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
    offset: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    contrasts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_fixed(self) -> int:
        return int(self.X.shape[1])

    @property
    def offset_or_zero(self) -> np.ndarray:
        """The offset, or zeros when the model has none."""
        return np.zeros(self.n_obs) if self.offset is None else self.offset

    @property
    def log_weight_term(self) -> float:
        """``0.5 * sum(log w)``: what prior weights add to the Gaussian log-likelihood."""
        return 0.0 if self.weights is None else 0.5 * float(np.sum(np.log(self.weights)))

    def offset_absorbed(self) -> Design:
        """The same model with the offset moved into the response (``y - offset``).

        A Gaussian likelihood of ``y`` with mean ``offset + mu`` is the likelihood
        of ``y - offset`` with mean ``mu``, so every Bayesian likelihood form
        samples this design unchanged; results add the offset back to predictions.
        """
        if self.offset is None:
            return self
        return replace(self, y=readonly(self.y - self.offset), offset=None)

    def whitened(self) -> Design:
        """The equivalent unit-weight, offset-free design.

        With ``s = sqrt(w)``, the model ``y ~ N(offset + X beta + Z b, sigma^2 / w)``
        is the model ``s (y - offset) ~ N(s X beta + s Z b, sigma^2)``; its
        log-likelihood differs by :attr:`log_weight_term` only. The engines fit
        this design and add that term, so neither needs its own weights code.
        """
        if self.offset is None and self.weights is None:
            return self
        s = np.ones(self.n_obs) if self.weights is None else np.sqrt(self.weights)
        blocks = tuple(replace(block, Z=readonly(block.Z * s[:, None])) for block in self.blocks)
        return replace(
            self,
            y=readonly(s * (self.y - self.offset_or_zero)),
            X=readonly(self.X * s[:, None]),
            blocks=blocks,
            offset=None,
            weights=None,
        )

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


def build_design(
    formula: str | FormulaSpec,
    data: pd.DataFrame,
    *,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | None = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
) -> Design:
    """Build the numeric design of a mixed model.

    Parameters
    ----------
    formula : str or FormulaSpec
        lme4-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``; see
        :mod:`bayesmix.spec.formula_eval` for what it may evaluate.
    data : DataFrame
        One row per observation. Rows with missing values in any column the
        formula uses (or in ``offset``/``weights``) are dropped with a
        :class:`~bayesmix.errors.DataWarning` that counts them.
    offset : str or array, optional
        A column name or an array of length ``len(data)``, added to the linear
        predictor (together with any ``offset()`` terms of the formula).
    weights : str or array, optional
        Prior weights, positive (lme4's meaning: residual variance ``sigma^2 / w``).
    functions : dict, optional
        Extra functions the formula may call, e.g. ``{"logit": my_logit}``.
    contrasts : dict, optional
        Coding of factor columns, lme4's ``contrasts=``: ``{"Sex": "sum"}``, with
        ``"treatment"``, ``"sum"``, ``"helmert"`` or ``"poly"`` (R's ``contr.*``
        names work too). Unordered factors default to treatment coding, ordered
        ones to ``"poly"``, as in R; see :mod:`bayesmix.spec.contrasts`.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DataError
        For malformed formulas, names a formula may not evaluate, unknown columns,
        non-numeric or non-finite responses, bad offsets or weights, grouping
        factors with fewer than two levels, or no usable rows.
    """
    spec = formula if isinstance(formula, FormulaSpec) else parse_formula(formula)
    functions = check_functions(functions)
    columns = used_columns(spec, data, functions)
    contrasts = check_contrasts(contrasts, data)
    # lme4 applies contrasts= to the fixed part only; bars keep R's defaults
    fixed_codings = factor_codings(
        data, columns, _fixed_contrasts(spec, data, contrasts, functions)
    )
    bar_codings = factor_codings(data, columns, {}, warn_intervals=False)
    data, offset_column, offset_array = attach_argument(data, offset, "offset", OFFSET_COLUMN)
    data, weights_column, _ = attach_argument(data, weights, "weights", WEIGHTS_COLUMN)
    extra = [c for c in (offset_column, weights_column) if c is not None and c not in columns]
    check_column_types(data, columns, {f for bar in spec.bars for f in bar.factors})
    kept, n_dropped = clean_rows(data, columns + extra)
    frame = for_formulae(kept, columns)
    env = environment(functions)

    fixed_dm, fixed_names = _design_matrices(
        f"{spec.response} ~ {spec.fixed}", frame, spec.formula, env, fixed_codings
    )
    if fixed_dm.response is None or fixed_dm.response.kind != "numeric":
        raise DataError(
            f"The response {spec.response!r} must be numeric; convert it first "
            "(e.g. a 0/1 indicator for a binary outcome)."
        )
    response_matrix = np.asarray(fixed_dm.response.design_matrix)
    if response_matrix.ndim > 1 and response_matrix.shape[1] != 1:
        raise FormulaError(
            f"The response {spec.response!r} gives {response_matrix.shape[1]} columns; a "
            "mixed model needs one response column."
        )
    y = _finite(response_matrix, f"The response {spec.response!r}").reshape(-1)
    if fixed_dm.common is None:  # "y ~ 0 + (1 | g)": no fixed effects
        X_full, names_full = np.zeros((len(y), 0)), []
    else:
        X_full = _finite(fixed_dm.common.design_matrix, "A fixed-effects column")
        names_full = fixed_names
    keep = independent_columns(X_full, names_full)

    offset_matrices = tuple(
        _design_matrices(f"0 + offset({text})", frame, spec.formula, env)[0]
        for text in spec.offsets
    )
    offsets = [_finite(dm.common.design_matrix, "An offset()")[:, 0] for dm in offset_matrices]
    if offset_column is not None:
        offsets.append(numeric_argument(kept[offset_column], "offset"))
    weight_values = (
        None if weights_column is None else numeric_argument(kept[weights_column], "weights")
    )
    if weight_values is not None and np.any(weight_values <= 0):
        raise DataError(
            f"weights must be positive; {int(np.sum(weight_values <= 0))} row(s) have weights "
            "<= 0 (drop those rows instead of giving them zero weight)."
        )

    lhs_matrices, lhs_names = {}, {}
    blocks, level_keys = [], []
    for bar in spec.bars:
        if bar.lhs not in lhs_matrices:
            lhs_matrices[bar.lhs], lhs_names[bar.lhs] = _design_matrices(
                bar.lhs, frame, spec.formula, env, bar_codings
            )
        dm = lhs_matrices[bar.lhs].common
        if dm is None:
            raise FormulaError(
                f"The bar {bar} in {spec.formula!r} has no random effect (its left-hand side "
                "has no columns); remove the bar, or use '(1 | g)'."
            )
        Z = _finite(dm.design_matrix, f"A column of {bar}")
        terms = tuple(lhs_names[bar.lhs])
        levels, keys, codes = grouping_codes(frame, bar.factors)
        if len(levels) < 2:
            raise DataError(
                f"The grouping factor {bar.grouping!r} has {len(levels)} level(s); a random "
                "effect needs at least 2 (use a fixed effect instead)."
            )
        block = RandomBlock(
            grouping=bar.grouping,
            levels=levels,
            codes=readonly(codes),
            terms=terms,
            Z=readonly(Z),
            covariance=bar.covariance,
        )
        warn_constant_slopes(block)
        blocks.append(block)
        level_keys.append(keys)

    predictors = predictor_columns(spec, columns, functions)
    encoder = Encoder(
        spec=spec,
        template=frame.iloc[:0],
        fixed_dm=fixed_dm,
        lhs_matrices=lhs_matrices,
        keep=keep,
        level_keys=tuple(level_keys),
        predictors=tuple(predictors),
        offset_matrices=offset_matrices,
        offset_column=None if offset_array else offset_column,
        offset_array=offset_array,
    )
    return Design(
        formula=spec.formula,
        response=spec.response,
        y=readonly(y),
        X=readonly(X_full[:, keep]),
        fixed_terms=tuple(names_full[j] for j in keep),
        blocks=tuple(blocks),
        data=kept,
        n_dropped=n_dropped,
        encoder=encoder,
        offset=readonly(np.sum(offsets, axis=0)) if offsets else None,
        weights=None if weight_values is None else readonly(weight_values),
        contrasts=contrasts,
    )


def _fixed_contrasts(
    spec: FormulaSpec,
    data: pd.DataFrame,
    contrasts: dict[str, str],
    functions: Mapping[str, Callable],
) -> dict[str, str]:
    """``contrasts=`` entries for columns of the fixed part; the others are ignored, as
    lme4 (R's model.matrix) ignores them, with a warning."""
    if not contrasts:
        return {}
    columns = [str(c) for c in data.columns]
    fixed = set(referenced_columns(spec.fixed, spec.formula, columns, functions))
    unused = [column for column in contrasts if column not in fixed]
    if unused:
        warn(
            f"contrasts: {', '.join(map(repr, unused))} {'is' if len(unused) == 1 else 'are'} "
            "not a factor of the fixed part, so its contrasts are ignored (random-effects "
            "bars use R's default codings, as in lme4).",
            DataWarning,
        )
    return {column: coding for column, coding in contrasts.items() if column in fixed}


def _finite(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
        raise DataError(
            f"{what} is not finite in {bad} row(s) (e.g. log(0) or an overflow); transform "
            "it differently or remove those rows."
        )
    return array


def _design_matrices(
    text: str, frame: pd.DataFrame, formula: str, env: Any, codings: Mapping[str, str] | None = None
) -> tuple[Any, list[str]]:
    """formulae's design matrices of one expression and R's names of their columns."""
    rewritten, renames = formulae_text(text, formula, codings)
    try:
        # Invalid transforms (log of a negative) are reported by the finiteness checks.
        with np.errstate(all="ignore"):
            matrices = fm.design_matrices(rewritten, frame, na_action="error", env=env)
            names = []
            if matrices.common is not None:
                # column naming fails here for e.g. poly(x, 0)
                names = [str(c) for c in matrices.common.as_dataframe().columns]
    except (FormulaError, DataError):
        raise
    except Exception as error:  # formulae raises many types; give one clear message
        raise FormulaError(f"Could not evaluate {text!r} from {formula!r}: {error}") from error
    return matrices, r_column_names(names, renames)
