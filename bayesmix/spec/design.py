"""Turn a parsed formula and a DataFrame into numeric design arrays (:func:`build_design`).

The arrays are held by :class:`~bayesmix.spec.design_types.Design` and its
:class:`~bayesmix.spec.design_types.RandomBlock` bars (re-exported here); see
that module for the notation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from bayesmix.spec.design_types import Design, RandomBlock
from bayesmix.spec.formula import FormulaSpec, binomial_counts, parse_formula
from bayesmix.spec.formula_eval import (
    check_functions,
    environment,
    formulae_text,
    r_column_names,
    referenced_columns,
    uses_scale,
)
from bayesmix.spec.plain_terms import PlainMatrices, plain_part, plain_response

__all__ = ["Design", "NewData", "RandomBlock", "build_design"]


def build_design(
    formula: str | FormulaSpec,
    data: pd.DataFrame,
    *,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | None = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
    binomial: bool = False,
    extra_columns: tuple[str, ...] = (),
    drop_aliased: bool = True,
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
    binomial : bool
        The model is a binomial GLMM, whose response may be
        ``cbind(successes, failures)``: ``y`` is then the proportion of
        successes and ``weights`` the trials.
    extra_columns : tuple of str
        Further columns whose missing values drop a row (those of a residual
        variance function or correlation structure).
    drop_aliased : bool
        Drop aliased fixed-effects columns (R's rule, with a warning). ``False``
        keeps every column: for a design of sampled rows whose rank says nothing
        of the whole data's (:mod:`bayesmix.scale.survey`).

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
    extra += [c for c in dict.fromkeys(extra_columns) if c not in columns and c not in extra]
    check_column_types(data, columns, {f for bar in spec.bars for f in bar.factors})
    kept, n_dropped = clean_rows(data, columns + extra)
    if n_dropped and uses_scale(spec.formula):
        warn(
            f"scale() standardises the {len(kept)} rows used; R's model.frame evaluates "
            f"scale() before dropping the {n_dropped} row(s) with missing values, so a scaled "
            "column's coefficient differs from lme4's by the ratio of the two SDs. Drop those "
            "rows from the data first to match R.",
            DataWarning,
        )
    env = environment(functions)
    # formulae reads a copy with ordered categoricals (for_formulae); a model whose
    # parts are all plain columns (bayesmix.spec.plain_terms) never needs it
    plain_y = plain_response(spec.response, kept) if not spec.offsets else None
    plain_fixed = plain_part(spec.fixed, kept) if plain_y is not None else None
    plain_bars = {bar.lhs: plain_part(bar.lhs, kept) for bar in spec.bars}
    if plain_fixed is not None and all(p is not None for p in plain_bars.values()):
        frame = kept[columns]
    else:
        frame = for_formulae(kept, columns)

    counts = binomial_counts(spec.response)
    if counts is not None and not binomial:
        raise FormulaError(
            f"The response {spec.response!r} counts successes and failures, which only a "
            "binomial model describes: use bmx.glmm(formula, data, family='binomial')."
        )
    if counts is not None and weights is not None:
        raise DataError("cbind(successes, failures) gives the trials; leave out weights=.")
    if plain_fixed is not None and counts is None:
        fixed_dm = PlainMatrices(plain_fixed, env)
        y = _finite(frame[plain_y].to_numpy(dtype=float), f"The response {spec.response!r}")
        X_full, names_full = plain_fixed.matrix(frame), plain_fixed.names
        trials = None
    else:
        fixed_dm, y, trials, X_full, names_full = _fixed_part(
            spec, frame, env, fixed_codings, counts
        )
    keep = independent_columns(X_full, names_full) if drop_aliased else list(range(len(names_full)))

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
    if trials is not None:
        weight_values = trials
    if weight_values is not None and np.any(weight_values <= 0):
        raise DataError(
            f"weights must be positive; {int(np.sum(weight_values <= 0))} row(s) have weights "
            "<= 0 (drop those rows instead of giving them zero weight)."
        )

    lhs_columns: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    lhs_matrices: dict[str, Any] = {}  # for new data; None: an intercept
    blocks, level_keys = [], []
    for bar in spec.bars:
        if bar.lhs.strip() == "1":  # an intercept: no formulae call (half a small build)
            lhs_columns[bar.lhs] = (np.ones((len(frame), 1)), ("Intercept",))
            lhs_matrices[bar.lhs] = None
        elif plain_bars[bar.lhs] is not None:
            plain = plain_bars[bar.lhs]
            lhs_matrices[bar.lhs] = PlainMatrices(plain, env)
            lhs_columns[bar.lhs] = (plain.matrix(frame), tuple(plain.names))
            if not plain.names:
                raise FormulaError(
                    f"The bar {bar} in {spec.formula!r} has no random effect (its left-hand "
                    "side has no columns); remove the bar, or use '(1 | g)'."
                )
        elif bar.lhs not in lhs_columns:
            matrices, names = _design_matrices(bar.lhs, frame, spec.formula, env, bar_codings)
            lhs_matrices[bar.lhs] = matrices
            if matrices.common is None:
                raise FormulaError(
                    f"The bar {bar} in {spec.formula!r} has no random effect (its left-hand "
                    "side has no columns); remove the bar, or use '(1 | g)'."
                )
            Z = _finite(matrices.common.design_matrix, f"A column of {bar}")
            lhs_columns[bar.lhs] = (Z, tuple(names))
        Z, terms = lhs_columns[bar.lhs]
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


def _fixed_part(
    spec: FormulaSpec,
    frame: pd.DataFrame,
    env: Any,
    codings: Mapping[str, str],
    counts: tuple[str, str] | None,
) -> tuple[Any, np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """formulae's matrices, response, binomial trials, X and column names of the fixed part."""
    response = spec.response if counts is None else f"I({counts[0]})"
    fixed_dm, fixed_names = _design_matrices(
        f"{response} ~ {spec.fixed}", frame, spec.formula, env, codings
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
    trials = None
    if counts is not None:
        y, trials = _proportions(y, counts, frame, spec.formula, env)
    if fixed_dm.common is None:  # "y ~ 0 + (1 | g)": no fixed effects
        return fixed_dm, y, trials, np.zeros((len(y), 0)), []
    X = _finite(fixed_dm.common.design_matrix, "A fixed-effects column")
    return fixed_dm, y, trials, X, fixed_names


def _proportions(
    successes: np.ndarray, counts: tuple[str, str], frame: pd.DataFrame, formula: str, env: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Proportions of successes and the trials of a ``cbind(successes, failures)`` response."""
    failures_dm, _ = _design_matrices(f"I({counts[1]}) ~ 1", frame, formula, env)
    failures = _finite(np.asarray(failures_dm.response.design_matrix), "cbind()'s failures")
    failures = failures.reshape(-1)
    if np.any(successes < 0) or np.any(failures < 0):
        bad = int(np.sum((successes < 0) | (failures < 0)))
        raise DataError(
            f"cbind({counts[0]}, {counts[1]}) has negative counts in {bad} row(s); successes "
            "and failures must be counts >= 0."
        )
    trials = successes + failures
    if np.any(trials == 0):
        raise DataError(
            f"cbind({counts[0]}, {counts[1]}) has zero trials in {int(np.sum(trials == 0))} "
            "row(s); they carry no information: drop them."
        )
    return successes / trials, trials


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
