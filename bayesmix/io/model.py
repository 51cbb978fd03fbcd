"""The constructor arguments of a saved model: recorded, checked and rebuilt.

One job for :mod:`bayesmix.io`: read the arguments of ``lmm``/``nlmm`` off a
result (its ``model``, else its design), describe them in JSON with user
callables by name only, and rebuild the model from them and the stored data,
with the callables the user passes again at load time.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning
from bayesmix.io.archive import ArchiveReader, ArchiveWriter

__all__ = [
    "ModelSpec",
    "build_model",
    "decode_model",
    "encode_model",
    "is_nonlinear",
    "model_spec",
    "needed_columns",
]


#: Models built from one lme4-style formula (their files share a layout).
LINEAR_KINDS = ("LinearMixedModel", "GeneralizedLinearMixedModel")


@dataclasses.dataclass
class ModelSpec:
    """Constructor arguments of a linear (``lmm``) or nonlinear (``nlmm``) model."""

    kind: str  # "LinearMixedModel", "GeneralizedLinearMixedModel" or "NonlinearMixedModel"
    formula: str
    data: pd.DataFrame
    offset: Any = None
    weights: Any = None
    functions: dict[str, Callable] = dataclasses.field(default_factory=dict)
    params: dict[str, str] | None = None
    cov: Any = None
    start: Any = None
    mean: Callable | None = None
    contrasts: dict[str, str] = dataclasses.field(default_factory=dict)
    conventions: str = "lme4"
    family: str | None = None  # GLMMs: the family's and link's names
    link: str | None = None
    ziformula: str | None = None  # zero-inflated GLMMs: the right-hand side
    allow_non_integer: bool = False  # GLMMs: fractional counts accepted
    correlation: str | None = None  # nlme's correlation structure, in its syntax


def is_nonlinear(result: Any) -> bool:
    """Whether ``result`` is a nonlinear model's (it then carries ``nonlinear_design``)."""
    return getattr(result, "nonlinear_design", None) is not None


# --- the model's constructor arguments -------------------------------------------


def model_spec(result: Any) -> ModelSpec:
    """The arguments that rebuild ``result``'s model (from ``result.model`` or its design)."""
    model = getattr(result, "model", None)
    if is_nonlinear(result):
        if model is not None:
            options = model.options  # start, cov, mean, offset, weights
            return ModelSpec(
                "NonlinearMixedModel",
                model.formula,
                model.data,
                offset=options["offset"],
                weights=_structure_text(options["weights"]),
                correlation=_structure_text(options.get("correlation")),
                params=dict(model.params),
                cov=options["cov"],
                start=options["start"],
                mean=options["mean"],
            )
        return _nonlinear_spec_from_design(result.nonlinear_design)
    if model is not None:
        glmm = getattr(model, "family", None) is not None
        return ModelSpec(
            "GeneralizedLinearMixedModel" if glmm else "LinearMixedModel",
            model.formula,
            model.data,
            offset=model.offset,
            weights=_structure_text(model.weights),
            correlation=_structure_text(getattr(model, "correlation", None)),
            functions=dict(model.functions),
            contrasts=dict(model.contrasts),
            conventions=getattr(model, "conventions", "lme4"),
            family=model.family.name if glmm else None,
            link=model.family.link.name if glmm else None,
            ziformula=getattr(model, "ziformula", None),
            allow_non_integer=getattr(model, "allow_non_integer", False),
        )
    return _linear_spec_from_design(result.design)


def _structure_text(value: Any) -> Any:
    """A variance function or correlation structure as nlme's syntax (read back as
    data, never run); other values (prior weights) as they are."""
    from bayesmix.spec.correlation_structures import CorrelationStructure
    from bayesmix.spec.variance_functions import VarianceFunction

    if isinstance(value, VarianceFunction | CorrelationStructure):
        return value.nlme()
    return value


def _structure_columns(spec: ModelSpec) -> set[str]:
    """Columns of the model's variance function and correlation structure."""
    from bayesmix.spec.residual_structure import correlation_argument, variance_argument

    found: set[str] = set()
    variance = variance_argument(spec.weights)
    correlation = correlation_argument(spec.correlation)
    for part in (variance, correlation):
        if part is not None:
            found |= set(part.columns())
    return found


def _nonlinear_spec_from_design(nl: Any) -> ModelSpec:
    """Arguments of a nonlinear model read off its design (a result built without nlmm()).

    An ``offset=``/``weights=`` array sits in the column ``(offset)``/``(weights)``
    of the rows used; a column name is recorded in the design.
    """
    from bayesmix.spec.data_prep import OFFSET_COLUMN, WEIGHTS_COLUMN

    data = nl.data
    offset, weights = nl.offset_column, nl.weights_column
    if offset is None and OFFSET_COLUMN in data.columns:
        offset = data[OFFSET_COLUMN].to_numpy()
    if weights is None and WEIGHTS_COLUMN in data.columns:
        weights = data[WEIGHTS_COLUMN].to_numpy()
    data = data.drop(columns=[c for c in (OFFSET_COLUMN, WEIGHTS_COLUMN) if c in data.columns])
    evaluator = nl.mean_function._evaluate
    return ModelSpec(
        "NonlinearMixedModel",
        nl.formula,
        data,
        offset=offset,
        weights=weights,
        params={p.name: p.formula for p in nl.parameters},
        cov={b.grouping: b.covariance for b in nl.blocks} or None,
        mean=getattr(evaluator, "function", None) if nl.mean_function.kind == "callable" else None,
    )


def _linear_spec_from_design(design: Any) -> ModelSpec:
    """Arguments of a linear model read off its design (a result sampled without lmm()).

    The design's rows are the rows used; an ``offset=``/``weights=`` array sits
    in the columns ``(offset)``/``(weights)``; the user's functions are the
    names formulae's evaluation environment holds beyond bayesmix's own.
    """
    from bayesmix.spec.data_prep import OFFSET_COLUMN, WEIGHTS_COLUMN
    from bayesmix.spec.formula_eval import FORMULA_CONSTANTS, MATH_FUNCTIONS

    encoder = design.encoder
    data = design.data
    offset = getattr(encoder, "offset_column", None)
    if getattr(encoder, "offset_array", False):
        offset = data[OFFSET_COLUMN].to_numpy()
    weights = None
    if WEIGHTS_COLUMN in data.columns:
        weights = data[WEIGHTS_COLUMN].to_numpy()
    elif design.weights is not None:
        weights = np.asarray(design.weights)  # the column's name is not recorded
    data = data.drop(columns=[c for c in (OFFSET_COLUMN, WEIGHTS_COLUMN) if c in data.columns])
    functions: dict[str, Callable] = {}
    environment = getattr(getattr(encoder, "fixed_dm", None), "env", None)
    for namespace in getattr(environment, "_namespaces", []):
        own = set(MATH_FUNCTIONS) | set(FORMULA_CONSTANTS)
        functions.update(
            {
                k: v
                for k, v in namespace.items()
                if k not in own and callable(v) and not k.startswith("bmx_")  # bayesmix's own
            }
        )
    kind = "LinearMixedModel"
    spec = ModelSpec(kind, design.formula, data, offset, weights, functions)
    spec.contrasts = dict(getattr(design, "contrasts", {}) or {})
    return spec


def needed_columns(spec: ModelSpec, result: Any) -> set[str]:
    """Columns the model of ``result`` reads; every column when they cannot be worked out."""
    from bayesmix.spec.data_prep import used_columns
    from bayesmix.spec.formula import parse_formula

    try:
        if spec.kind in LINEAR_KINDS:
            found = set(used_columns(parse_formula(spec.formula), spec.data, spec.functions))
            found |= {v for v in (spec.offset, spec.weights) if isinstance(v, str)}
            found |= _structure_columns(spec)
            if spec.ziformula is not None:  # zero inflation: its columns too
                zi = parse_formula(f"{spec.formula.split('~')[0]} ~ {spec.ziformula}")
                found |= set(used_columns(zi, spec.data, spec.functions))
            return found
        nl = result.nonlinear_design
        found = set(nl.covariates) | {nl.response}
        found |= {v for v in (spec.offset, spec.weights) if isinstance(v, str)}
        found |= _structure_columns(spec)
        for parameter in nl.parameters:
            found |= set(used_columns(parse_formula(parameter.design.formula), spec.data))
        return found
    except Exception:  # an unusual formula: keep every column rather than guess
        return set(spec.data.columns)


def build_model(spec: ModelSpec, data: pd.DataFrame | None = None) -> Any:
    """The model of ``spec`` (on ``data`` when given), without repeating its DataWarnings.

    Dropped rows and aliased columns were reported when the model was first
    built; rebuilding it says nothing new.
    """
    data = spec.data if data is None else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        if spec.kind == "GeneralizedLinearMixedModel":
            from bayesmix.glmm_model import GeneralizedLinearMixedModel

            return GeneralizedLinearMixedModel(
                spec.formula,
                data,
                spec.family,
                link=spec.link,
                offset=spec.offset,
                weights=spec.weights,
                functions=spec.functions or None,
                contrasts=spec.contrasts or None,
                ziformula=None if spec.ziformula is None else f"~ {spec.ziformula}",
                allow_non_integer=spec.allow_non_integer,
            )
        if spec.kind == "LinearMixedModel":
            from bayesmix.model import LinearMixedModel

            return LinearMixedModel(
                spec.formula,
                data,
                offset=spec.offset,
                weights=spec.weights,
                functions=spec.functions or None,
                contrasts=spec.contrasts or None,
                conventions=spec.conventions,
                correlation=spec.correlation,
            )
        from bayesmix.nonlinear_model import NonlinearMixedModel

        return NonlinearMixedModel(
            spec.formula,
            data,
            spec.params,
            start=spec.start,
            cov=spec.cov,
            mean=spec.mean,
            offset=spec.offset,
            weights=spec.weights,
            correlation=spec.correlation,
        )


def encode_model(writer: ArchiveWriter, spec: ModelSpec) -> dict[str, Any]:
    """JSON description of the constructor arguments (user callables by name only)."""
    out: dict[str, Any] = {"class": spec.kind, "formula": spec.formula}
    if spec.kind in LINEAR_KINDS:
        out["offset"] = writer.encode(spec.offset, "model/offset")
        out["weights"] = writer.encode(spec.weights, "model/weights")
        out["functions"] = sorted(spec.functions)
        out["contrasts"] = dict(spec.contrasts)
        out["conventions"] = spec.conventions
        if spec.correlation is not None:
            out["correlation"] = spec.correlation
        if spec.family is not None:
            out["family"], out["link"] = spec.family, spec.link
            out["ziformula"] = spec.ziformula
            out["allow_non_integer"] = bool(spec.allow_non_integer)
        return out
    out["params"] = dict(spec.params or {})
    out["cov"] = writer.encode(spec.cov, "model/cov")
    out["start"] = writer.encode(spec.start, "model/start")
    out["mean"] = None if spec.mean is None else getattr(spec.mean, "__name__", "mean")
    out["offset"] = writer.encode(spec.offset, "model/offset")
    out["weights"] = writer.encode(spec.weights, "model/weights")
    if spec.correlation is not None:
        out["correlation"] = spec.correlation
    return out


def decode_model(
    reader: ArchiveReader,
    meta: Any,
    data: pd.DataFrame,
    functions: Mapping[str, Callable] | None,
    mean: Callable | None,
) -> ModelSpec:
    """The :class:`ModelSpec` of a file, with the user's callables checked against it."""
    if not isinstance(meta, dict) or not isinstance(meta.get("formula"), str):
        raise reader.damaged("the model description is malformed")
    kind = meta.get("class")
    functions = dict(functions or {})
    if kind in LINEAR_KINDS:
        if mean is not None:
            raise ArgumentError("mean= is for nonlinear models; this file holds a linear one.")
        names = meta.get("functions")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise reader.damaged("the model's function names are malformed")
        _check_functions(names, functions)
        # absent from files written before contrasts= and gls's conventions existed
        contrasts = meta.get("contrasts") or {}
        conventions = meta.get("conventions", "lme4")
        if not isinstance(contrasts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in contrasts.items()
        ):
            raise reader.damaged("the model's contrasts are malformed")
        if conventions not in ("lme4", "nlme"):
            raise reader.damaged("the model's conventions are malformed")
        family, link = meta.get("family"), meta.get("link")
        if kind == "GeneralizedLinearMixedModel" and not (
            isinstance(family, str) and isinstance(link, str)
        ):
            raise reader.damaged("the model's family is malformed")
        ziformula = meta.get("ziformula")  # absent from files before zero inflation
        if ziformula is not None and not isinstance(ziformula, str):
            raise reader.damaged("the model's ziformula is malformed")
        allow_non_integer = meta.get("allow_non_integer", False)
        if not isinstance(allow_non_integer, bool):
            raise reader.damaged("the model's allow_non_integer is malformed")
        correlation = _correlation_text(reader, meta)
        return ModelSpec(
            kind,
            meta["formula"],
            data,
            offset=reader.decode(meta.get("offset"), "model.offset"),
            weights=reader.decode(meta.get("weights"), "model.weights"),
            functions=functions,
            contrasts=contrasts,
            conventions=conventions,
            family=family if kind == "GeneralizedLinearMixedModel" else None,
            link=link if kind == "GeneralizedLinearMixedModel" else None,
            ziformula=ziformula if kind == "GeneralizedLinearMixedModel" else None,
            allow_non_integer=allow_non_integer,
            correlation=correlation,
        )
    if kind != "NonlinearMixedModel":
        raise reader.damaged(f"the model class {str(kind)[:40]!r} is unknown")
    if functions:
        raise ArgumentError(
            "functions= is for linear models' formulas; this file holds a nonlinear model "
            "(pass its Python mean function, if any, as mean=)."
        )
    params = meta.get("params")
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise reader.damaged("the parameter formulas are malformed")
    name = meta.get("mean")
    if name is not None and not isinstance(name, str):
        raise reader.damaged("the mean function's name is malformed")
    if name is not None and mean is None:
        raise ArgumentError(
            f"the saved model's mean is the Python function {name!r}, which a bayesmix file "
            f"does not store (it stores no code): pass it again, bmx.load(path, mean={name})."
        )
    if name is None and mean is not None:
        raise ArgumentError(
            "this file's model has no Python mean function (its formula gives the mean); "
            "load it without mean=."
        )
    if mean is not None and not callable(mean):
        raise ArgumentError(f"mean must be a function, got {type(mean).__name__}.")
    return ModelSpec(
        kind,
        meta["formula"],
        data,
        params=params,
        cov=reader.decode(meta.get("cov"), "model.cov"),
        start=reader.decode(meta.get("start"), "model.start"),
        mean=mean,
        # absent from files of models without them (and of bayesmix before nlmm had them)
        offset=reader.decode(meta.get("offset"), "model.offset"),
        weights=reader.decode(meta.get("weights"), "model.weights"),
        correlation=_correlation_text(reader, meta),
    )


def _correlation_text(reader: ArchiveReader, meta: dict) -> str | None:
    """The saved correlation structure, nlme's syntax (parsed later, never evaluated)."""
    correlation = meta.get("correlation")
    if correlation is not None and not isinstance(correlation, str):
        raise reader.damaged("the model's correlation structure is malformed")
    return correlation


def _check_functions(names: list[str], functions: dict[str, Callable]) -> None:
    missing = [n for n in names if n not in functions]
    if missing:
        listing = ", ".join(f"{n!r}: {n}" for n in missing)
        raise ArgumentError(
            f"the saved model's formula calls {', '.join(map(repr, missing))}, which a "
            "bayesmix file does not store (it stores no code): pass them again, "
            f"bmx.load(path, functions={{{listing}}})."
        )
    extra = [n for n in functions if n not in names]
    if extra:
        used = ", ".join(map(repr, names)) or "none"
        raise ArgumentError(
            f"functions= gives {', '.join(map(repr, extra))}, which the saved model does not "
            f"use (it uses: {used}); leave them out."
        )
    bad = [n for n in names if not callable(functions[n])]
    if bad:
        raise ArgumentError(f"functions[{bad[0]!r}] must be callable.")
