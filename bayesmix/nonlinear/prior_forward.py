"""The prior predictive of a nonlinear mixed model: its PyMC model built for drawing.

:func:`forward_model` is what ``NonlinearMixedModel.forward_model`` returns to
:mod:`bayesmix.bayes.prior_predictive`, which cannot import this package (it
sits below it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayesmix.nonlinear.bayes_model import build_nonlinear_pymc_model, resolve_nonlinear_priors
from bayesmix.nonlinear.residual_bayes import nonlinear_result

__all__ = ["forward_model"]


def forward_model(model: Any, priors: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """An nlmm's PyMC model (built inside ``bayesmix.bayes.forward.forward_sampling``) and
    how to wrap its prior draws as a result, for the prior predictive."""
    from bayesmix.bayes.prior_predictive import PRIOR_SAMPLER

    table, params = resolve_nonlinear_priors(model.design, model.residual, priors, model.start)
    pymc_model = build_nonlinear_pymc_model(model.design, table, model.residual, params)

    def wrap(idata: Any) -> Any:
        result = nonlinear_result(
            model.design, idata, table, PRIOR_SAMPLER, {}, model.residual, params
        )
        object.__setattr__(result, "model", model)
        return result

    return pymc_model, wrap
