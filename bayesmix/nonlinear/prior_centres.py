"""Start values and scales that the nonlinear model's default priors are centred on.

Split from :mod:`bayesmix.nonlinear.bayes_model` (which documents the priors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayesmix.bayes.priors import REAL_PRIORS, Prior
from bayesmix.errors import FitError, PriorError
from bayesmix.nonlinear.design import NonlinearDesign

__all__ = ["intercept_columns", "parameter_scales", "start_centres"]


def intercept_columns(design: NonlinearDesign) -> dict[str, int | None]:
    """Index (in stacked beta) of each parameter's column of ones, if any."""
    out, start = {}, 0
    for par in design.parameters:
        out[par.name] = next(
            (start + j for j in range(par.X.shape[1]) if np.allclose(par.X[:, j], 1.0)), None
        )
        start += par.X.shape[1]
    return out


def start_centres(
    design: NonlinearDesign, start: Any, overrides: Mapping[str, Prior] | None
) -> np.ndarray:
    """Start values of the fixed effects (self-start, ``start``, or the user's prior means)."""
    from bayesmix.nonlinear.build import initial_beta  # start-value logic shared with the ML engine

    try:
        return initial_beta(design, start)
    except FitError as err:
        given = [(overrides or {}).get(t) for t in design.fixed_terms]
        if all(isinstance(p, REAL_PRIORS) for p in given):
            return np.array([p.mu for p in given], dtype=float)
        raise PriorError(
            f"{err} The default priors of nonlinear parameters are centred on start values: "
            "pass start= to nlmm(), or give a Normal/StudentT prior for every fixed effect ("
            + ", ".join(map(repr, design.fixed_terms))
            + ")."
        ) from err


def parameter_scales(design: NonlinearDesign, centres: np.ndarray) -> dict[str, float]:
    """``max(|start|, 1)`` of each parameter's intercept (of all its columns without one)."""
    scales, position = {}, 0
    intercepts = intercept_columns(design)
    for par in design.parameters:
        width = par.X.shape[1]
        j0 = intercepts[par.name]
        values = centres[[j0]] if j0 is not None else centres[position : position + width]
        scales[par.name] = max(1.0, float(np.abs(values).max(initial=0.0)))
        position += width
    return scales
