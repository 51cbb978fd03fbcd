"""Residual variance functions and correlation structures in the Bayesian nonlinear model.

The nonlinear model of :mod:`bayesmix.nonlinear.bayes_model` with nlme's
``weights=`` and ``correlation=`` (:mod:`bayesmix.spec.residual_structure`):

    y - offset ~ N(f(covariates, phi), sigma^2 Lambda(u)),   Lambda = G C G,

with the linear engine's pieces reused unchanged: the structure's priors and
keys (:mod:`bayesmix.bayes.residual_priors`: ``power``, ``Phi``, ``delta``...),
its PyTensor whitening and log-determinant in one potential ``loglik_y``
(:func:`bayesmix.bayes.residual_model.structured_potential`), ``sigma_c`` (the
residual SD at the geometric mean of the SD multipliers) sampled with the
``"sigma"`` prior and nlme's ``sigma`` a deterministic, and the results'
exact-LOO terms, residual SDs and predictive noise
(:class:`StructuredNLBayesResult`).

A variance function of ``fitted(.)`` (``varPower()``'s default) reads the
nonlinear mean **with the random effects** plus the offset, the same quantity
as the mean of the likelihood: one joint posterior rather than nlme's
alternation with the fitted values held.

This module imports no PyMC at import time (priors are plain data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmix.bayes.priors import Prior, PriorTable, apply_overrides
from bayesmix.bayes.residual_priors import (
    StructureParameter,
    split_overrides,
    structure_parameters,
)
from bayesmix.bayes.residual_results import StructuredBayesResult
from bayesmix.errors import ArgumentError
from bayesmix.nonlinear.bayes_results import NLBayesResult
from bayesmix.nonlinear.design import NonlinearDesign
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = [
    "StructuredNLBayesResult",
    "add_structure",
    "nonlinear_result",
    "structure_priors",
]


def structure_priors(
    design: NonlinearDesign,
    residual: ResidualStructure,
    standard: PriorTable,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[PriorTable, list[StructureParameter]]:
    """The nonlinear model's default priors ``standard`` plus the structure's
    (:func:`bayesmix.bayes.residual_priors.structure_parameters`, the response standing
    in for the fitted values in default scales), all updated with ``overrides``; and
    the structure's parameters.

    Raises
    ------
    PriorError
        For an unknown key (the message lists every valid one) or a prior that
        does not fit its parameter.
    """
    params = structure_parameters(residual, design.y, taken=set(standard))
    rest, structure = split_overrides(overrides, params, list(standard))
    table = apply_overrides(standard, rest)
    table.update(structure)
    return table, params


def add_structure(
    coords: dict[str, Any],
    hyper: Any,
    residual: ResidualStructure,
    params: Sequence[StructureParameter],
    priors: Mapping[str, Prior],
) -> None:
    """Add the structure's coordinates and prior slots (before the model is opened)."""
    from bayesmix.bayes.residual_model import add_structure_hyper, structure_coords

    coords.update(structure_coords(residual, params))
    add_structure_hyper(hyper, params, priors)


def structured_likelihood(
    mean: Any,
    design: NonlinearDesign,
    residual: ResidualStructure,
    params: Sequence[StructureParameter],
    priors: Mapping[str, Prior],
    hyper: Any,
) -> None:
    """The structure's parameters and the potential ``loglik_y`` of ``y - offset``.

    ``mean`` is the mean function's output (offset excluded), random effects included.
    """
    import pytensor.tensor as pt

    from bayesmix.bayes.residual_model import structured_potential

    mu = pt.as_tensor_variable(mean) * pt.ones(design.n_obs)  # a constant mean broadcast
    structured_potential(
        residual,
        params,
        priors,
        hyper,
        mu,
        design.y_less_offset,
        design.offset_or_zero,
        design.weights,
    )


def nonlinear_result(
    design: NonlinearDesign,
    idata: Any,
    priors: PriorTable,
    sampler: str,
    timing: Any,
    residual: ResidualStructure | None = None,
    params: Sequence[StructureParameter] = (),
) -> NLBayesResult:
    """The result of a sampled nonlinear model: a :class:`StructuredNLBayesResult` with
    a residual structure, else an :class:`NLBayesResult`."""
    common = dict(
        design=design.linear_design(),
        idata=idata,
        priors=priors,
        sampler=sampler,
        timing=timing,
        nonlinear_design=design,
    )
    if residual is None:
        return NLBayesResult(**common)
    return StructuredNLBayesResult(**common, residual=residual, structure=tuple(params))


@dataclass(frozen=True, repr=False)
class StructuredNLBayesResult(StructuredBayesResult, NLBayesResult):
    """Posterior draws of a nonlinear mixed model with a residual structure.

    The mean-function machinery of :class:`NLBayesResult` (``coef``, ``phi``,
    ``predict``, ``fitted``) with the structure's parts of
    :class:`~bayesmix.bayes.residual_results.StructuredBayesResult`:
    :meth:`residual_parameters` (nlme's scale), the structure's table in
    :meth:`summary`, residual SDs ``sigma g_i`` from each draw's own fitted
    values (random effects and offset included), the exact leave-one-out
    log-likelihood of a correlated model, and predictive noise that follows the
    structure (``predict(kind="posterior_predictive")``, fitted rows only).
    """

    def __repr__(self) -> str:
        parts = " and ".join(p.spec.nlme() for p in self.residual.parts)
        return NLBayesResult.__repr__(self)[:-1] + f"; residuals: {parts}>"

    def summary(self, ci_prob: float = 0.95):
        """As :meth:`NLBayesResult.summary`, with a ``Residuals:`` line and the structure's
        parameters (nlme's scale)."""
        out = super().summary(ci_prob)
        if "\nResiduals:" not in out.header:
            parts = " and ".join(p.spec.nlme() for p in self.residual.parts)
            lines = out.header.splitlines()
            lines.insert(2 + len(self.nonlinear_design.parameters), f"Residuals: {parts}")
            out = dataclasses.replace(out, header="\n".join(lines))
        return out


def check_rows(residual: ResidualStructure, design: NonlinearDesign) -> None:
    """Refuse a structure bound to another number of rows."""
    n = (
        len(residual.correlation.group_codes)
        if residual.correlation is not None
        else len(np.asarray(residual.log_sd(residual.start, np.ones(design.n_obs))))
    )
    if n != design.n_obs:
        raise ArgumentError(
            f"residual is bound to {n} rows, but the design has {design.n_obs}; bind the "
            "structure to this design's rows (bind_residual)."
        )
