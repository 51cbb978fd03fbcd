"""Specification of nonlinear mixed models: :class:`NonlinearDesign`.

A nonlinear mixed model has a response ``y``, a mean function
``f(covariates, phi)`` (see :mod:`bayesmix.nonlinear.mean`) and one lme4-style
linear formula per nonlinear parameter, as in nlme's ``fixed =`` and
``random =``::

    phi_k = X_k beta_k + sum over bars of p_k: rowsum(Z * b[codes])

Each parameter formula is turned into a :class:`~bayesmix.spec.design.Design` by
:func:`~bayesmix.spec.design.build_design`. Random effects of all parameters on the
same grouping factor are then joined into one :class:`NonlinearBlock` with
one covariance matrix (nlme's ``pdSymm``; ``cov={"g": "diagonal"}`` gives
``pdDiag``). This module is numeric and engine-free: ``mean(xp, phi)`` and
``phi(beta, b, xp)`` accept numpy or pytensor.

Naming
------
A parameter whose fixed part is just an intercept gets one fixed effect named
after the parameter (``"lKe"``); otherwise its coefficients are
``"<param>:<term>"`` (``"lCl:Intercept"``, ``"lCl:Wt"``; nlme writes
``lCl.(Intercept)`` and ``lCl.Wt``). Random-effect terms use the same rule,
so ``coef()`` adds matching columns.

The containers live in :mod:`bayesmix.nonlinear.design` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, FitError, FormulaError
from bayesmix.nonlinear.design import (
    NonlinearBlock,
    NonlinearDesign,
    NonlinearNewData,
    ParameterDesign,
    _numeric,
    _readonly,
)
from bayesmix.nonlinear.mean import parse_mean
from bayesmix.spec.data_prep import (
    OFFSET_COLUMN,
    WEIGHTS_COLUMN,
    attach_argument,
    clean_rows,
    used_columns,
)
from bayesmix.spec.design import build_design
from bayesmix.spec.formula import parse_formula

__all__ = [
    "NonlinearBlock",
    "NonlinearDesign",
    "NonlinearNewData",
    "ParameterDesign",
    "build_nonlinear_design",
    "initial_beta",
]

_COV_KINDS = {
    "unstructured": "unstructured",
    "pdsymm": "unstructured",
    "diagonal": "diagonal",
    "pddiag": "diagonal",
}


def _parameter_rhs(name: str, text: Any) -> str:
    """Normalise ``"1 + x"``, ``"~ 1 + x"`` or ``"name ~ 1 + x"`` to the right-hand side."""
    if not isinstance(text, str):
        raise FormulaError(
            f"params[{name!r}] must be a formula string such as '1 + (1 | g)', got {text!r}."
        )
    lhs, tilde, rhs = text.partition("~")
    if tilde and lhs.strip() not in ("", name):
        raise FormulaError(f"params[{name!r}] = {text!r} has {lhs.strip()!r} left of '~'.")
    rhs = (rhs if tilde else lhs).strip()
    if not rhs:
        raise FormulaError(f"params[{name!r}] is empty; use '1' for a single fixed value.")
    return rhs


def _covariance_kinds(cov: Any, bars: dict[str, list[str]]) -> dict[str, str]:
    """Covariance kind per grouping factor from ``cov`` and the bars' ``|``/``||``."""
    if isinstance(cov, str):
        cov = {g: cov for g in bars}
    cov = dict(cov or {})
    unknown = [g for g in cov if g not in bars]
    if unknown:
        raise FormulaError(
            f"cov names {', '.join(map(repr, unknown))}, which has no random effects; grouping "
            f"factors with random effects: {', '.join(bars) or 'none'}."
        )
    kinds = {}
    for grouping, bar_kinds in bars.items():
        if grouping in cov:
            kind = _COV_KINDS.get(str(cov[grouping]).lower())
            if kind is None:
                raise FormulaError(
                    f"cov[{grouping!r}] = {cov[grouping]!r}; use 'unstructured' (pdSymm) or "
                    "'diagonal' (pdDiag)."
                )
        elif len(set(bar_kinds)) > 1:
            raise FormulaError(
                f"the random effects on {grouping!r} mix '|' and '||'; state the covariance "
                f"with cov={{{grouping!r}: 'diagonal'}} or 'unstructured'."
            )
        else:
            kind = bar_kinds[0]
        kinds[grouping] = kind
    return kinds


def build_nonlinear_design(
    formula: str,
    data: pd.DataFrame,
    params: Mapping[str, str],
    *,
    mean: Callable[..., Any] | None = None,
    cov: Mapping[str, str] | str | None = None,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | None = None,
    extra_columns: tuple[str, ...] = (),
) -> NonlinearDesign:
    """Build the :class:`NonlinearDesign` of ``nlmm`` (see its documentation).

    ``offset`` and ``weights`` are column names or arrays of one value per row
    of ``data`` (as for :func:`~bayesmix.spec.design.build_design`); rows with a
    missing value in them are dropped with the others. So are rows with a
    missing value in ``extra_columns`` (the columns of a residual variance
    function or correlation structure).

    Raises
    ------
    FormulaError
        Malformed formulas, parameters missing from (or unused in) ``params``,
        bad ``cov`` entries.
    DataError
        Unknown or non-numeric columns, no usable rows, an ``offset`` or
        ``weights`` that is not a column or has the wrong length, weights <= 0.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if not isinstance(params, Mapping) or not params:
        raise FormulaError(
            "params must map each parameter of the mean function to a formula, e.g. "
            "{'Asym': '1 + (1 | Tree)', 'xmid': '1', 'scal': '1'}."
        )
    if not isinstance(formula, str):
        raise FormulaError(f"the formula must be a string, got {type(formula).__name__}.")
    if mean is not None:
        if "~" in formula:
            raise FormulaError(
                f"with mean= give only the response as the formula (e.g. 'circumference'), "
                f"not {formula!r}."
            )
        response, rhs = formula.strip(), None
    else:
        if formula.count("~") != 1:
            raise FormulaError(
                f"the formula {formula!r} must read 'response ~ mean function', e.g. "
                "'conc ~ SSfol(Dose, Time, lKe, lKa, lCl)'."
            )
        response, rhs = (part.strip() for part in formula.split("~"))
        if not response or not rhs:
            raise FormulaError(f"the formula {formula!r} needs a response and a mean function.")
    columns = {str(c) for c in data.columns}
    mean_function = parse_mean(rhs, params, columns, mean)
    absent = [c for c in mean_function.covariates if c not in columns]
    if absent:
        raise DataError(f"the mean function uses column(s) {', '.join(absent)}, not in the data.")
    texts = {p: _parameter_rhs(p, params[p]) for p in mean_function.params}
    specs = {p: parse_formula(f"{response} ~ {texts[p]}") for p in mean_function.params}
    for name, spec in specs.items():
        if spec.offsets:  # an offset on one parameter's linear predictor is not modelled
            raise FormulaError(
                f"params[{name!r}] = {texts[name]!r} has an offset() term, which parameter "
                "formulas do not support; give the model's offset with nlmm(..., offset=)."
            )
    used = set(mean_function.covariates)
    for spec in specs.values():
        used.update(used_columns(spec, data))
    data, offset_column, offset_array = attach_argument(data, offset, "offset", OFFSET_COLUMN)
    data, weights_column, weights_array = attach_argument(data, weights, "weights", WEIGHTS_COLUMN)
    used.update(c for c in (offset_column, weights_column) if c is not None)
    used.update(extra_columns)
    kept, n_dropped = clean_rows(data, [c for c in data.columns if c in used])

    parameters, bars = [], {}
    for name, spec in specs.items():
        no_fixed = spec.fixed.replace(" ", "") in ("0", "-1")
        design = build_design(dataclasses.replace(spec, fixed="1") if no_fixed else spec, kept)
        X = design.X[:, :0] if no_fixed else design.X
        terms = () if no_fixed else design.fixed_terms
        plain = terms in ((), ("Intercept",))
        names = tuple(name if plain and t == "Intercept" else f"{name}:{t}" for t in terms)
        parameters.append(ParameterDesign(name, texts[name], _readonly(X), names, design))
        for j, blk in enumerate(design.blocks):
            bars.setdefault(blk.grouping, []).append((len(parameters) - 1, j, blk, plain))
    kinds = _covariance_kinds(cov, {g: [e[2].covariance for e in v] for g, v in bars.items()})

    blocks = []
    for grouping, entries in bars.items():
        first = entries[0][2]
        terms, owners, columns_z, sources = [], [], [], []
        for k, j, blk, plain in entries:
            if blk.levels != first.levels:  # pragma: no cover - same rows give same levels
                raise DataError(f"levels of {grouping!r} differ between parameters")
            name = parameters[k].name
            for t, term in enumerate(blk.terms):
                label = name if plain and term == "Intercept" else f"{name}:{term}"
                if label in terms:
                    raise FormulaError(
                        f"the random effect {label!r} on {grouping!r} appears twice."
                    )
                terms.append(label)
                owners.append(name)
                columns_z.append(blk.Z[:, t])
                sources.append((k, j, t))
        blocks.append(
            NonlinearBlock(
                grouping,
                first.levels,
                first.codes,
                tuple(terms),
                tuple(owners),
                _readonly(np.column_stack(columns_z)),
                kinds[grouping],
                tuple(sources),
            )
        )

    covariates = {c: _numeric(kept, c) for c in mean_function.covariates}
    y = parameters[0].design.y
    return NonlinearDesign(
        formula=formula if mean is None else response,
        response=response,
        y=y,
        mean_function=mean_function,
        parameters=tuple(parameters),
        blocks=tuple(blocks),
        covariates=MappingProxyType(covariates),
        data=kept,
        n_dropped=n_dropped,
        offset=_argument_values(kept, offset_column, "offset"),
        weights=_argument_values(kept, weights_column, "weights"),
        offset_column=None if offset_array else offset_column,
        weights_column=None if weights_array else weights_column,
    )


def _argument_values(kept: pd.DataFrame, column: str | None, argument: str) -> np.ndarray | None:
    """The kept rows' values of ``offset=``/``weights=`` (checked), or ``None`` when absent."""
    if column is None:
        return None
    values = kept[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(f"{argument} must be numeric; column {column!r} is {values.dtype}.")
    array = values.to_numpy(dtype=float)
    if argument == "weights" and np.any(array <= 0):
        # a zero weight is an infinite residual variance: the row carries no information
        raise DataError(
            f"weights must be positive; {int(np.sum(array <= 0))} row(s) have weights <= 0 "
            "(drop those rows instead of giving them zero weight)."
        )
    return _readonly(array)


def initial_beta(design: NonlinearDesign, start: Any) -> np.ndarray:
    """Fixed-effects start from ``start`` (or from the self-starting model).

    ``start`` maps parameter names to a number (the parameter's intercept, or
    each indicator column when it has none; other coefficients start at 0)
    or to one value per fixed effect of that parameter; fixed-effect names
    (``"lCl:Wt"``) may also be given. An array gives all fixed effects.
    """
    names = design.fixed_terms
    if start is None:
        call = design.mean_function.selfstart
        listing = ", ".join(f"{p!r}: ..." for p in design.params)
        if call is None:
            raise FitError(
                f"the mean function {design.mean_function.text!r} is not self-starting, so "
                f"the fit needs starting values: pass start={{{listing}}}."
            )
        arrays = call.input_arrays(design.covariates)
        try:  # the mean function models y - offset
            values = call.model.initial(*arrays, design.y_less_offset)
        except FitError as err:
            reason = str(err).split("; pass start=")[0].removeprefix(f"{call.model.name}: ")
            raise FitError(
                f"{call.model.name} could not find starting values ({reason}); pass "
                f"start={{{listing}}} to fit() or nlmm()."
            ) from err
        start = {user: values[own] for user, own in zip(call.params, call.model.params)}
    if not isinstance(start, Mapping):
        beta = np.asarray(start, dtype=float).ravel()
        if beta.shape != (len(names),):
            raise FitError(f"start needs {len(names)} values for {', '.join(names)}.")
        return beta
    unknown = [k for k in start if k not in design.params and k not in names]
    if unknown:
        raise FitError(
            f"start names {', '.join(map(repr, unknown))}, which are neither "
            f"parameters ({', '.join(design.params)}) nor fixed effects."
        )
    for key, value in start.items():
        try:
            finite = np.all(np.isfinite(np.asarray(value, dtype=float)))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ArgumentError(
                f"start[{key!r}] must be a finite number (or numbers), got {value!r}."
            )
    beta, position = np.zeros(len(names)), 0
    for par in design.parameters:
        width = par.X.shape[1]
        part = beta[position : position + width]
        value = start.get(par.name)
        if value is not None and np.ndim(value) > 0:
            if np.size(value) != width:
                raise FitError(f"start[{par.name!r}] needs {width} values {par.fixed_terms}.")
            part[:] = np.asarray(value, dtype=float).ravel()
        elif value is not None:
            targets = [
                j for j, t in enumerate(par.fixed_terms) if t in (par.name, f"{par.name}:Intercept")
            ]
            if not targets:  # no intercept: cell-means coding takes the value per cell
                targets = [j for j in range(width) if set(np.unique(par.X[:, j])) <= {0.0, 1.0}]
            part[targets] = float(value)
        for j, term in enumerate(par.fixed_terms):
            if term in start and term != par.name:
                part[j] = float(start[term])
        if value is None and not any(t in start for t in par.fixed_terms):
            raise FitError(f"start gives no value for the parameter {par.name!r}.")
        position += width
    return beta
