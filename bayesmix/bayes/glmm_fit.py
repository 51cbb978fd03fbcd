"""Sample the posterior of a GLMM with NUTS: :func:`sample_glmm`.

Arguments are checked before anything is built; the model comes from
:func:`bayesmix.bayes.glmm_model.build_glmm_model` and is sampled by the
linear engine's :func:`bayesmix.bayes.run.run_sampler` (nutpie by default,
its compile caches, deterministics afterwards, diagnostics warnings), with the
family's pointwise log-likelihood stored for ``loo``. Errors of PyMC, PyTensor
or nutpie surface as :class:`~bayesmix.errors.FitError` naming what to try.

Notation
--------
zi_X : zero-inflation design; S : draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayesmix.bayes.compile.nutpie import CompileRoute
from bayesmix.bayes.glmm_priors import resolve_glmm_priors
from bayesmix.bayes.priors import Prior
from bayesmix.bayes.run import Sampler, run_sampler
from bayesmix.bayes.validate import check_sampling_args
from bayesmix.errors import ArgumentError, FitError
from bayesmix.spec.design_types import Design
from bayesmix.spec.families import Family

__all__ = ["sample_glmm"]

#: Families the Bayesian GLMM engine samples.
BAYES_FAMILIES = ("binomial", "poisson", "negbinomial", "gamma")


def check_samplable(design: Design, family: Family, zi_X: np.ndarray | None) -> None:
    """Refuse models the engine cannot sample, before anything is built.

    Raises
    ------
    ArgumentError
        No random-effects term, a family without a Bayesian likelihood, or zero
        inflation of a family other than Poisson or negative binomial.
    """
    if family.name not in BAYES_FAMILIES:
        raise ArgumentError(
            f"the Bayesian GLMM engine samples the {', '.join(BAYES_FAMILIES)} families, "
            f"not {family.name!r} (use bmx.lmm(...).sample() for a Gaussian response)."
        )
    if not design.blocks:
        raise ArgumentError(
            "glmm needs at least one random-effects term such as (1 | g); a GLM without "
            "random effects is statsmodels' GLM (or bambi's)."
        )
    if zi_X is not None and family.name not in ("poisson", "negbinomial"):
        raise ArgumentError(
            f"zero inflation applies to the poisson and negbinomial families, not {family.name!r}."
        )


def sample_glmm(
    design: Design,
    family: Family,
    *,
    zi_X: np.ndarray | None = None,
    zi_names: Sequence[str] = (),
    zi_formula: str | None = None,
    priors: Mapping[str, Prior] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: Sampler = "nutpie",
    target_accept: float | None = None,
    random_seed: int | np.random.Generator | None = None,
    progressbar: bool | None = None,
    log_likelihood: bool | None = None,
    compile: CompileRoute = "auto",
    model: Any = None,
):
    """Draw from the posterior of a generalized linear mixed model with NUTS.

    Parameters
    ----------
    design : Design
        The model's design (``weights``: binomial trials; ``offset`` on the link scale).
    family : Family
        Binomial, Poisson, negative binomial or Gamma, with its link.
    zi_X, zi_names, zi_formula : optional
        Zero-inflation design, its column names and the formula's right-hand
        side (Poisson and negative binomial).
    priors : mapping, optional
        Overrides of :func:`bayesmix.bayes.glmm_priors.default_glmm_priors`.
    draws, tune, chains, sampler, target_accept, random_seed, progressbar, log_likelihood, compile
        As for :func:`bayesmix.bayes.fit.sample_model`.
    model : object, optional
        The unfitted model, kept on the result.

    Returns
    -------
    GLMMBayesResult

    Raises
    ------
    ArgumentError
        A bad sampling option or a model that cannot be sampled (checked first).
    PriorError
        An unknown prior key or a prior of the wrong kind.
    FitError
        When PyMC, PyTensor or nutpie fail to build or sample the model.

    Warns
    -----
    SamplingWarning
        On divergences, R-hat > 1.01 or bulk ESS < 400.
    """
    from bayesmix.bayes.glmm_model import build_glmm_model
    from bayesmix.bayes.glmm_results import GLMMBayesResult
    from bayesmix.bayes.loglik import glmm_pointwise_loglik

    options = check_sampling_args(
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        random_seed=random_seed,
        compile=compile,
    )
    check_samplable(design, family, zi_X)
    all_priors = resolve_glmm_priors(design, family, zi_X, zi_names, priors)

    def wrap(idata, timing):
        return GLMMBayesResult(
            design=design,
            idata=idata,
            priors=all_priors,
            sampler=options["sampler"],
            timing=timing,
            model=model,
            family=family,
            zi_X=zi_X,
            zi_names=tuple(zi_names),
            zi_formula=zi_formula,
        )

    try:
        pymc_model = build_glmm_model(design, family, all_priors, zi_X, zi_names)
        program = None
        if options["sampler"] == "nutpie":
            from bayesmix.bayes.generic.glmm_program import glmm_program

            program = glmm_program(pymc_model, design, family, all_priors, zi_X, zi_names)
        return run_sampler(
            pymc_model,
            design,
            wrap,
            progressbar=progressbar,
            log_likelihood=log_likelihood,
            loglik=glmm_pointwise_loglik,
            program=program,
            **options,
        )
    except Exception as err:
        if type(err).__module__.startswith("bayesmix"):
            raise
        hint = "try stronger priors (priors=...), other sampling options or sampler='pymc'"
        if family.link.name in ("identity", "sqrt", "inverse"):
            hint = (
                f"with the {family.link.name} link the mean must stay valid at every draw: "
                f"use the default link or {hint}"
            )
        raise FitError(
            f"sampling the {family.name} GLMM failed ({type(err).__name__}: {err}); {hint}."
        ) from err
