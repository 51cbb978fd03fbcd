"""How numbers enter the PyMC models: observations, prior parameters, prior RVs.

Observations are compiled in as constants (:func:`model_data`); prior
parameters and centring offsets live in one ``pm.Data`` vector
(:class:`HyperData`) so that a compiled model serves any prior values; bayesmix
prior objects become PyMC distributions through ``PYMC_DIST``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.priors import (
    Exponential,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    StudentT,
    prior_params,
)

PYMC_DIST = {
    Normal: pm.Normal,
    StudentT: pm.StudentT,
    HalfNormal: pm.HalfNormal,
    HalfStudentT: pm.HalfStudentT,
    Exponential: pm.Exponential,
}


def _families(priors: Sequence[Prior]) -> list[tuple[type, list[int]]]:
    """Indices of ``priors`` grouped by distribution family, in first-seen order."""
    groups: dict[type, list[int]] = {}
    for i, prior in enumerate(priors):
        groups.setdefault(type(prior), []).append(i)
    return list(groups.items())


class HyperData:
    """All numeric hyperparameters in one ``pm.Data`` vector (``hyper``), sliced by key.

    Keeping prior parameters and centring offsets out of the graph as
    constants lets a refit with other priors reuse the compiled model.
    """

    def __init__(self) -> None:
        self.values: dict[str, np.ndarray] = {}
        self.data = None

    def add(self, key: str, values) -> None:
        """Add a value; scalars stay 0-d (no indexing node to compile)."""
        self.values[key] = np.asarray(values, dtype=float)

    def add_priors(self, prefix: str, priors: Sequence[Prior], scalar: bool = False) -> None:
        """Add the parameters of ``priors``, one vector per family and parameter.

        ``scalar=True`` (a single prior) stores 0-d values, for a scalar RV.
        """
        for cls, idx in _families(priors):
            for param in prior_params(priors[idx[0]]):
                values = [prior_params(priors[i])[param] for i in idx]
                self.add(f"{prefix}:{cls.__name__}:{param}", values[0] if scalar else values)

    def finalize(self) -> None:
        # One container for all: nutpie's compiled wrapper unpacks every data
        # container separately, and that code costs more to compile (1.5 s on
        # sleepstudy) than the slices of one vector do.
        flat = np.concatenate([np.ravel(v) for v in self.values.values()])
        vector = pm.Data("hyper", flat, shape=flat.shape)
        self.data, position = {}, 0
        for key, values in self.values.items():
            part = vector[position : position + values.size]
            self.data[key] = part.reshape(values.shape) if values.ndim != 1 else part
            position += values.size

    def __getitem__(self, key: str) -> pt.TensorVariable:
        return self.data[key]

    def params(self, prefix: str, cls: type, prior: Prior) -> dict[str, pt.TensorVariable]:
        return {p: self[f"{prefix}:{cls.__name__}:{p}"] for p in prior_params(prior)}


#: Data arrays up to this many entries are compiled in as constants (see :func:`model_data`).
CONSTANT_DATA_MAX_SIZE = 2_000_000


def model_data(name: str, values, dims, dtype: str = "float64") -> pt.TensorVariable:
    """A data array of the log density: a constant, or ``pm.Data`` when very large.

    As constants, the data's sizes and index ranges are known to numba, which
    drops run-time shape and bounds checks: a gradient of InstEval takes
    0.26 ms instead of 0.38 ms, at the same compile time. A new dataset then
    needs a new compilation (a new prior does not: prior parameters stay
    ``pm.Data``). Arrays above ``CONSTANT_DATA_MAX_SIZE`` entries stay data,
    with a static shape, rather than bloat the compiled code.
    """
    values = np.asarray(values, dtype=dtype)
    if values.size <= CONSTANT_DATA_MAX_SIZE:
        return pt.as_tensor_variable(values, name=name)
    return pm.Data(name, values, dims=dims, shape=values.shape)


def vector_rv(
    name: str, priors: Sequence[Prior], dims: str, hyper: HyperData, prefix: str
) -> pt.TensorVariable:
    """One vector RV with per-element parameters; split by family when mixed."""
    groups = _families(priors)
    if len(groups) == 1:
        cls = type(priors[0])
        return PYMC_DIST[cls](name, **hyper.params(prefix, cls, priors[0]), dims=dims)
    out = pt.zeros(len(priors))
    for cls, idx in groups:
        part = PYMC_DIST[cls](
            f"{name}_{cls.__name__}", **hyper.params(prefix, cls, priors[idx[0]]), shape=len(idx)
        )
        out = pt.set_subtensor(out[np.array(idx)], part)
    return pm.Deterministic(name, out, dims=dims)
