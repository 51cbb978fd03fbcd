"""The fitted quantities of a saved result, and the check of its rebuilt design.

One job for :mod:`bayesmix.io`: map the four result classes (``MLResult``,
``NLMResult``, ``BayesResult``, ``NLBayesResult``) to the metadata and entries
of a save file and back, on a model rebuilt by :mod:`bayesmix.io.model` (never
refitted). The rebuilt design is compared with arrays stored at save time
(:func:`fingerprint`), so that a user function passed again at load time that
computes something else, or a change in how bayesmix encodes data, is an error
rather than a silently different model.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError
from bayesmix.io.archive import ArchiveReader, ArchiveWriter
from bayesmix.io.model import is_nonlinear

__all__ = [
    "compare_fingerprints",
    "decode_result",
    "encode_result",
    "fingerprint",
    "result_class",
    "result_fingerprint",
]

#: Relative tolerance when comparing a rebuilt design with the stored one; the
#: same data give bit-identical arrays, other platforms may round differently.
CHECK_RTOL = 1e-9


def result_class(result: Any) -> str:
    """Name of the result class as recorded in the file."""
    from bayesmix.bayes.glmm_results import GLMMBayesResult
    from bayesmix.bayes.residual_results import StructuredBayesResult
    from bayesmix.bayes.results import BayesResult
    from bayesmix.ml.glmm_results import GLMMResult
    from bayesmix.ml.results import MLResult
    from bayesmix.nonlinear.bayes_results import NLBayesResult
    from bayesmix.nonlinear.ml_results import NLMResult
    from bayesmix.nonlinear.residual_bayes import StructuredNLBayesResult

    classes = (
        StructuredNLBayesResult,
        NLBayesResult,
        GLMMBayesResult,
        StructuredBayesResult,
        BayesResult,
        NLMResult,
        GLMMResult,
        MLResult,
    )
    for cls in classes:  # subclasses first
        if isinstance(result, cls):
            return cls.__name__
    raise ArgumentError(
        f"save() takes a fitted result (MLResult, GLMMResult, BayesResult, GLMMBayesResult, "
        "StructuredBayesResult, NLMResult, NLBayesResult, StructuredNLBayesResult), "
        f"got {type(result).__name__}."
    )


# --- the design check -------------------------------------------------------------


def fingerprint(
    design: Any, nonlinear_design: Any = None, beta: Any = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Names and arrays that identify a design (compared after rebuilding it).

    For a nonlinear model they include its covariates and the mean function at
    ``beta`` (random effects zero), which tells a different ``mean=`` apart.
    """
    structure = {
        "fixed_terms": list(design.fixed_terms),
        "blocks": [
            {
                "grouping": b.grouping,
                "terms": list(b.terms),
                "levels": [str(level) for level in b.levels],
                "covariance": b.covariance,
            }
            for b in design.blocks
        ],
    }
    arrays = {"y": np.asarray(design.y, dtype=float), "X": np.asarray(design.X, dtype=float)}
    for i, block in enumerate(design.blocks):
        arrays[f"Z{i}"] = np.asarray(block.Z, dtype=float)
        arrays[f"codes{i}"] = np.asarray(block.codes)
    if nonlinear_design is not None:
        nl = nonlinear_design
        for i, name in enumerate(nl.covariates):
            arrays[f"covariate{i}"] = np.asarray(nl.covariates[name], dtype=float)
        with np.errstate(all="ignore"):
            mean = nl.mean(np, nl.phi(np.asarray(beta, dtype=float)))
        arrays["mean"] = np.broadcast_to(np.asarray(mean, dtype=float), nl.y.shape).copy()
    for name in ("offset", "weights"):  # a nonlinear model's linear view carries them too
        if getattr(design, name, None) is not None:
            arrays[name] = np.asarray(getattr(design, name), dtype=float)
    return structure, arrays


def result_fingerprint(result: Any, model: Any = None) -> tuple[dict, dict]:
    """:func:`fingerprint` of ``result``'s design, or of ``model``'s at ``result``'s estimates."""
    beta = None
    if is_nonlinear(result):
        if hasattr(result, "estimates"):
            beta = result.estimates.beta
        else:  # the posterior mean
            draws = result.idata["posterior"]["beta"].transpose("chain", "draw", ...).values
            beta = np.asarray(draws, dtype=float).reshape(-1, draws.shape[-1]).mean(axis=0)
    if model is None:
        return fingerprint(result.design, getattr(result, "nonlinear_design", None), beta)
    if is_nonlinear(result):
        return fingerprint(model.design.linear_design(), model.design, beta)
    return fingerprint(model.design)


def compare_fingerprints(expected: tuple, found: tuple) -> str | None:
    """``None`` when two fingerprints agree, else what differs (for the error message)."""
    (names_a, arrays_a), (names_b, arrays_b) = expected, found
    if names_a != names_b:
        for key in ("fixed_terms", "blocks"):
            if names_a.get(key) != names_b.get(key):
                return f"the {key.replace('_', ' ')} differ"
        return "the model structure differs"
    if set(arrays_a) != set(arrays_b):
        return f"the design holds {sorted(arrays_b)} instead of {sorted(arrays_a)}"
    for name, a in arrays_a.items():
        a, b = np.asarray(a), np.asarray(arrays_b[name])
        if a.shape != b.shape:
            return f"{name} has shape {b.shape} instead of {a.shape}"
        if a.dtype.kind in "iub":
            same = np.array_equal(a, b)
        else:
            scale = float(np.nanmax(np.abs(a), initial=0.0))
            same = np.allclose(a, b, rtol=CHECK_RTOL, atol=CHECK_RTOL * scale, equal_nan=True)
        if not same:
            return f"the values of {name} differ"
    return None


# --- results ----------------------------------------------------------------------


def encode_result(writer: ArchiveWriter, result: Any, kind: str) -> dict[str, Any]:
    """JSON description (and entries) of the fitted quantities of ``result``."""
    if kind in ("MLResult", "NLMResult", "GLMMResult"):
        estimates = result.estimates
        out: dict[str, Any] = {
            "estimates": {
                f.name: writer.encode(getattr(estimates, f.name), f"result/estimates/{f.name}")
                for f in dataclasses.fields(estimates)
            }
        }
        if kind == "GLMMResult":
            out["nagq"] = int(result.nagq)
            out["dispersion"] = None if result.dispersion is None else float(result.dispersion)
            out["dispersion_se"] = (
                None if result.dispersion_se is None else float(result.dispersion_se)
            )
            out["information"] = result.information
            out["zi_beta"] = writer.encode(result.zi_beta, "result/zi_beta")
            out["zi_vcov"] = writer.encode(result.zi_vcov, "result/zi_vcov")
        if kind == "NLMResult":
            out["history"] = [
                {
                    f.name: writer.encode(getattr(record, f.name), f"result/history/{i}/{f.name}")
                    for f in dataclasses.fields(record)
                }
                for i, record in enumerate(result.history)
            ]
            out["derivatives"] = result.derivatives
            out["starts"] = [
                {
                    f.name: writer.encode(getattr(record, f.name), f"result/starts/{i}/{f.name}")
                    for f in dataclasses.fields(record)
                }
                for i, record in enumerate(result.starts)
            ]
            out["chosen_start"] = int(result.chosen_start)
        return out
    from bayesmix.bayes.priors import prior_params

    return {
        "posterior": writer.add_tree("result/posterior.nc", result.idata),
        "priors": {
            key: {"family": type(prior).__name__, "params": prior_params(prior)}
            for key, prior in result.priors.items()
        },
        "sampler": str(result.sampler),
        "timing": writer.encode(dict(result.timing), "result/timing"),
    }


def decode_result(reader: ArchiveReader, kind: str, meta: Any, model: Any) -> Any:
    """The result object of class ``kind`` on the rebuilt ``model``."""
    if not isinstance(meta, dict):
        raise reader.damaged("the result description is malformed")
    nonlinear = kind.startswith("NL") or kind == "StructuredNLBayesResult"
    design = model.design.linear_design() if nonlinear else model.design
    extra = {"nonlinear_design": model.design} if nonlinear else {}
    if kind in ("MLResult", "NLMResult", "GLMMResult"):
        from bayesmix.ml.fit import MLEstimates

        estimates = _dataclass(reader, MLEstimates, meta.get("estimates"), "estimates")
        if kind == "MLResult":
            from bayesmix.ml.results import MLResult

            return MLResult(design=design, estimates=estimates, model=model)
        if kind == "GLMMResult":
            from bayesmix.ml.glmm_results import GLMMResult

            nagq = meta.get("nagq")
            if not isinstance(nagq, int) or not 0 <= nagq <= 25 or model.family is None:
                raise reader.damaged("the GLMM description is malformed")
            numbers = {key: meta.get(key) for key in ("dispersion", "dispersion_se")}
            if any(v is not None and not isinstance(v, (int, float)) for v in numbers.values()):
                raise reader.damaged("the GLMM's dispersion is malformed")
            information = meta.get("information", "fisher")  # absent before glmmTMB's
            if information not in ("fisher", "observed"):
                raise reader.damaged("the GLMM's Laplace convention is malformed")
            zi = {k: reader.decode(meta.get(k), f"result.{k}") for k in ("zi_beta", "zi_vcov")}
            if (zi["zi_beta"] is None) != (getattr(model, "zi_X", None) is None):
                raise reader.damaged("the zero-inflation coefficients do not match the model")
            return GLMMResult(
                design,
                estimates,
                model,
                family=model.family,
                nagq=nagq,
                information=information,
                **numbers,
                **zi,
            )
        from bayesmix.nonlinear.ml_results import IterationRecord, NLMResult, StartRecord

        history = meta.get("history")
        derivatives = meta.get("derivatives")
        if not isinstance(history, list) or not isinstance(derivatives, str):
            raise reader.damaged("the iteration history is malformed")
        records = tuple(
            _dataclass(reader, IterationRecord, h, f"history[{i}]") for i, h in enumerate(history)
        )
        # absent from files written before fits recorded their restarts
        starts, chosen = meta.get("starts", []), meta.get("chosen_start", 0)
        if not isinstance(starts, list) or not isinstance(chosen, int):
            raise reader.damaged("the record of the starts is malformed")
        start_records = tuple(
            _dataclass(reader, StartRecord, s, f"starts[{i}]") for i, s in enumerate(starts)
        )
        if start_records and not 0 <= chosen < len(start_records):
            raise reader.damaged("the chosen start is out of range")
        return NLMResult(
            design=design,
            estimates=estimates,
            model=model,
            history=records,
            derivatives=derivatives,
            starts=start_records,
            chosen_start=chosen,
            **extra,
        )
    timing = reader.decode(meta.get("timing"), "timing")
    if not isinstance(timing, dict) or not isinstance(meta.get("sampler"), str):
        raise reader.damaged("the sampler description is malformed")
    if kind == "StructuredNLBayesResult":
        from bayesmix.nonlinear.bayes_model import default_priors
        from bayesmix.nonlinear.residual_bayes import StructuredNLBayesResult as cls
        from bayesmix.nonlinear.residual_bayes import structure_priors

        residual = getattr(model, "residual", None)
        if residual is None:
            raise reader.damaged("the Bayesian fit's model has no residual structure")
        standard = default_priors(model.design, model.options.get("start"))
        extra["residual"] = residual
        extra["structure"] = tuple(structure_priors(model.design, residual, standard)[1])
    elif nonlinear:
        from bayesmix.nonlinear.bayes_results import NLBayesResult as cls
    elif kind == "GLMMBayesResult":
        from bayesmix.bayes.glmm_results import GLMMBayesResult as cls

        if getattr(model, "family", None) is None:
            raise reader.damaged("the Bayesian GLMM's model has no family")
        extra = {
            "family": model.family,
            "zi_X": model.zi_X,
            "zi_names": tuple(model.zi_names),
            "zi_formula": model.ziformula,
        }
    elif kind == "StructuredBayesResult":
        from bayesmix.bayes.priors import default_priors
        from bayesmix.bayes.residual_priors import structure_parameters
        from bayesmix.bayes.residual_results import StructuredBayesResult as cls

        residual = getattr(model, "residual", None)
        if residual is None:
            raise reader.damaged("the Bayesian fit's model has no residual structure")
        sampled = design.offset_absorbed()  # the parameters as sample_structured named them
        taken = set(default_priors(sampled))
        extra = {
            "residual": residual,
            "structure": tuple(structure_parameters(residual, sampled.y, taken=taken)),
        }
    else:
        from bayesmix.bayes.results import BayesResult as cls
    return cls(
        design=design,
        idata=reader.read_tree(meta.get("posterior")),
        priors=_priors(reader, meta.get("priors")),
        sampler=meta["sampler"],
        timing=timing,
        model=model,
        **extra,
    )


def _dataclass(reader: ArchiveReader, cls: type, meta: Any, where: str) -> Any:
    """``cls(**fields)`` from tagged values; the field names must be ``cls``'s."""
    if not isinstance(meta, dict):
        raise reader.damaged(f"{where} is malformed")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown, missing = sorted(set(meta) - known), sorted(required - set(meta))
    if unknown or missing:
        raise reader.damaged(
            f"{where} has fields {unknown} this bayesmix does not know and lacks {missing}"
        )
    return cls(**{k: reader.decode(v, f"{where}.{k}") for k, v in meta.items()})


def _priors(reader: ArchiveReader, meta: Any) -> Any:
    from bayesmix.bayes import priors, residual_priors

    families = {cls.__name__: cls for cls in typing.get_args(priors.Prior)}
    families.update(  # the residual structures' priors
        {
            cls.__name__: cls
            for cls in (residual_priors.Uniform, residual_priors.Beta, residual_priors.LogNormal)
        }
    )
    if not isinstance(meta, dict):
        raise reader.damaged("the priors are malformed")
    table = priors.PriorTable()
    for key, spec in meta.items():
        if not isinstance(spec, dict) or spec.get("family") not in families:
            raise reader.damaged(f"the prior of {key!r} is malformed")
        params = spec.get("params")
        try:
            table[key] = families[spec["family"]](**params)
        except (TypeError, ValueError) as err:  # PriorError is a ValueError
            raise reader.damaged(f"the prior of {key!r} is invalid ({err})") from err
    return table
