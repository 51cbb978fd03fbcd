"""Draws from a model's priors and replicates of its rows from them (prior predictive).

The parameters come from PyMC's forward sampler on the model built for drawing
(:mod:`bayesmix.bayes.forward`: the LKJ prior and the GLMM intercept written as
random variables PyMC can draw) and are wrapped as a result of the model's class
whose "posterior" is the prior; its replicates then come from the same posterior
predictive code as a fit's (:mod:`bayesmix.bayes.predictive`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from bayesmix.bayes.predictive import grouping_levels, observed_dataset, predictive_draws
from bayesmix.errors import ArgumentError, FitError

__all__ = ["PRIOR_SAMPLER", "prior_result", "sample_prior_predictive"]

#: ``sampler`` of a result that holds prior draws (see :func:`sample_prior_predictive`)
PRIOR_SAMPLER = "prior"


def sample_prior_predictive(
    model: Any,
    draws: int = 500,
    priors: dict | None = None,
    random_seed: int | None = None,
) -> xr.DataTree:
    """Parameters from their priors and replicates of the model's rows from them.

    Parameters
    ----------
    model : LinearMixedModel or GeneralizedLinearMixedModel
        An unfitted model (``bmx.lmm``, ``bmx.gls``, ``bmx.glmm``), with or
        without a residual structure.
    draws : int
        Number of prior draws (one chain).
    priors : dict, optional
        Prior overrides, as for ``model.sample``.
    random_seed : int, optional

    Returns
    -------
    xarray.DataTree
        Groups ``prior`` (the model's parameters, named as in a posterior),
        ``prior_predictive`` (``y``, dims ``chain, draw, obs``),
        ``observed_data`` and ``constant_data`` (each row's grouping levels).
    """
    from bayesmix.bayes.validate import check_count, check_seed

    draws = check_count(draws, "draws", 1)
    check_seed(random_seed)
    result = prior_result(model, draws, priors, random_seed)
    rng = np.random.default_rng(random_seed)
    y_rep = predictive_draws(result, int(rng.integers(2**31)))
    observed = observed_dataset(result)
    tree = xr.DataTree.from_dict(
        {
            "prior": result.idata["posterior"].to_dataset(),
            "prior_predictive": xr.Dataset({"y": y_rep}, coords={"obs": observed["obs"]}),
            "observed_data": observed,
            "constant_data": grouping_levels(result.design),
        }
    )
    tree.attrs.update(formula=result.design.formula, response=result.design.response)
    return tree


def prior_result(model: Any, draws: int, priors: dict | None, random_seed: int | None) -> Any:
    """A result of ``model``'s class whose "posterior" holds draws from the priors."""
    from bayesmix.bayes.compile.cache import configure_pytensor

    configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
    import pymc as pm
    from pymc.distributions.continuous import FlatRV

    from bayesmix.bayes.forward import forward_sampling

    with forward_sampling():
        pymc_model, wrap = _forward_model(model, priors)
    flat = [rv.name for rv in pymc_model.free_RVs if isinstance(rv.owner.op, FlatRV)]
    if flat:
        raise ArgumentError(
            f"The prior predictive needs proper priors, but {', '.join(flat)} has a flat one; "
            "give it a proper prior with priors={...}."
        )
    unexpected = [p.name for p in pymc_model.potentials if p.name != "loglik_y"]
    if unexpected:  # pragma: no cover - forward building leaves only the likelihood
        raise FitError(f"cannot draw forward through the potentials {unexpected}.")
    names = [v.name for v in pymc_model.free_RVs + pymc_model.deterministics]
    logger = logging.getLogger("pymc.sampling.forward")  # its "Sampling: [...]" line
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with pymc_model, warnings.catch_warnings():
            # the likelihood's potential is the only one left; forward draws skip it on purpose
            warnings.filterwarnings(
                "ignore", message="The effect of Potentials", category=UserWarning
            )
            tree = pm.sample_prior_predictive(
                draws,
                var_names=names,
                random_seed=random_seed,
                compile_kwargs={"mode": "FAST_COMPILE"},
            )
    finally:
        logger.setLevel(level)
    return wrap(xr.DataTree.from_dict({"posterior": tree["prior"].to_dataset()}))


def _forward_model(model: Any, priors: dict | None) -> tuple[Any, Callable[[Any], Any]]:
    """The PyMC model of ``model`` (built for drawing) and how to wrap its draws.

    A model class from a layer above this one (``bmx.nlmm``) supplies both itself,
    through its ``forward_model(priors)`` method.
    """
    if hasattr(model, "forward_model"):  # a model that builds its own (nlmm)
        return model.forward_model(priors)
    kind = type(model).__name__
    design = model.design
    if kind == "GeneralizedLinearMixedModel":
        from bayesmix.bayes.glmm_fit import check_samplable
        from bayesmix.bayes.glmm_model import build_glmm_model
        from bayesmix.bayes.glmm_priors import resolve_glmm_priors
        from bayesmix.bayes.glmm_results import GLMMBayesResult

        check_samplable(design, model.family, model.zi_X)
        table = resolve_glmm_priors(design, model.family, model.zi_X, model.zi_names, priors)
        pymc_model = build_glmm_model(design, model.family, table, model.zi_X, model.zi_names)
        extra = {
            "family": model.family,
            "zi_X": model.zi_X,
            "zi_names": tuple(model.zi_names),
            "zi_formula": model.ziformula,
        }
        return pymc_model, _wrapper(GLMMBayesResult, design, table, model, extra)
    if kind != "LinearMixedModel":
        raise ArgumentError(
            f"sample_prior_predictive is available for bmx.lmm, bmx.gls, bmx.glmm and bmx.nlmm "
            "models, "
            f"not yet for {kind}; sample the model with priors only by hand with "
            "model.pymc_model() and pymc."
        )
    if model.residual is not None:
        from bayesmix.bayes.residual_model import build_structured_model
        from bayesmix.bayes.residual_priors import resolve_structured_priors
        from bayesmix.bayes.residual_results import StructuredBayesResult

        table, params = resolve_structured_priors(design.offset_absorbed(), model.residual, priors)
        pymc_model = build_structured_model(design, model.residual, table, params)
        extra = {"residual": model.residual, "structure": tuple(params)}
        return pymc_model, _wrapper(StructuredBayesResult, design, table, model, extra)
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.priors import resolve_priors
    from bayesmix.bayes.results import BayesResult

    table = resolve_priors(design.offset_absorbed(), priors)
    pymc_model = build_pymc_model(design, table)
    return pymc_model, _wrapper(BayesResult, design, table, model, {})


def _wrapper(cls: type, design: Any, table: Any, model: Any, extra: dict) -> Callable[[Any], Any]:
    def wrap(idata: Any) -> Any:
        return cls(
            design=design,
            idata=idata,
            priors=table,
            sampler=PRIOR_SAMPLER,
            timing={},
            model=model,
            **extra,
        )

    return wrap
