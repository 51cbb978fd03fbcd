"""Sample the posterior of a Gaussian linear mixed model: choose its likelihood form.

:func:`sample_model` decides how the model writes its likelihood (graph, fused
or collapsed; :func:`likelihood_form`), builds it and hands it to
:func:`bayesmix.bayes.run.run_sampler`, which samples and checks the diagnostics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from bayesmix.bayes.compile.nutpie import CompileRoute
from bayesmix.bayes.likelihoods.collapsed import collapse_plan, n_coefficients
from bayesmix.bayes.priors import Prior, resolve_priors
from bayesmix.bayes.run import Sampler, run_sampler
from bayesmix.bayes.validate import check_sampling_args
from bayesmix.spec.design import Design

#: Observations from which nutpie samples the fused or collapsed likelihood (see
#: ``likelihood_form``), each compiled for its model; below, the generic kernel
#: (:mod:`bayesmix.bayes.generic`) runs the graph form's density with nothing to compile.
#: At 20,000 rows (two blocks, 200 and 50 levels) the fused kernel samples 2.2x faster
#: than the generic one (3.0 vs 6.7 s for 4 x 1,000 iterations), but its first compile
#: costs 7.5 s: from here on its speed pays for the compile within a rerun or two.
FUSED_MIN_OBS = 10_000
#: Below ``FUSED_MIN_OBS``, sample the collapsed likelihood with the generic kernel
#: where it applies (False: the graph form, for comparison) and pays: when it integrates
#: every block out, or leaves one block sampled with at most ``COLLAPSE_SMALL_DENSE_MAX``
#: coefficients solved densely. Measured (bench/bench_convergence.py, seeds 1-10):
#: Penicillin, Pastes, Dyestuff, sleepstudy's intercept model (everything collapsed) and
#: Orthodont (one block sampled, 4 dense) converge at every seed, where the graph form
#: failed at 1-10 of 10; Arabidopsis with its slopes sampled (two blocks, or one block
#: and 31 dense coefficients) converged no better collapsed and sampled 2-3x slower.
COLLAPSE_SMALL = True
COLLAPSE_SMALL_DENSE_MAX = 16
#: Below ``FUSED_MIN_OBS``, a model left in the graph form with a random slope (a block of
#: two or more coefficients) is sampled with nutpie's low-rank modified mass matrix: a
#: diagonal one cannot follow a few groups' intercepts trading against the fixed intercept.
#: Measured in the graph form (bench_convergence.py --graph, seeds 1-10, R-hat <= 1.01,
#: ESS >= 400, no divergence): Arabidopsis' slope model 9/10 -> 10/10 (its default form;
#: largest R-hat 1.0128 -> 1.0074, 1.3 -> 1.8 s), Orthodont 5/10 -> 8/10, sleepstudy's
#: slope 10/10 -> 8/10 (both sampled collapsed by default). Intercept-only models keep
#: the diagonal one: low rank turned Penicillin's 3 divergences into 194.
LOW_RANK_SMALL = True


def sample_model(
    design: Design,
    *,
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
):
    """Draw from the posterior of a Gaussian linear mixed model with NUTS.

    Parameters
    ----------
    design : Design
        The model's design.
    priors : mapping, optional
        Prior overrides by key (see :func:`bayesmix.bayes.priors.default_priors`).
    draws, tune, chains : int
        Kept draws per chain (at least 8, which the R-hat and ESS checks
        need), tuning draws per chain (at least 1 with nutpie), number of
        chains.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        NUTS implementation; the last two need ``jax`` installed.
    target_accept : float, optional
        Target acceptance rate of NUTS. Default: 0.95 for models with at most
        1,000 parameters, 0.8 above (see ``TARGET_ACCEPT_SMALL``). Raise it
        (towards 0.99) when divergences appear.
    random_seed : int or numpy.random.Generator, optional
        Seed for reproducible draws: an integer from 0 to 2**63 - 1, or a
        Generator from which one such integer is drawn.
    progressbar : bool, optional
        Show a line while the model compiles and the sampler's progress bar;
        default: on in a notebook, IPython or at the Python prompt, off in
        scripts and tests.
    log_likelihood : bool, optional
        Store the pointwise log-likelihood (needed by ``loo``). Default: only
        when draws x observations <= 25 million (``loo`` computes it on demand
        otherwise).
    compile : {"auto", "generic", "python", "cfunc"}
        How nutpie gets the log density (see :mod:`bayesmix.bayes.compile.nutpie`):
        "generic" runs the kernel compiled once per machine
        (:mod:`bayesmix.bayes.generic`), nothing compiled for this model (with
        ``FUSED_MIN_OBS`` rows or more it replaces the fused and collapsed forms);
        "cfunc" compiles this model's own log density, "python" calls it from
        Python (starts fastest of the two in a new process). "auto" takes
        "generic" where it applies, else "python" for short runs of small models
        and "cfunc" otherwise.

    Returns
    -------
    BayesResult

    Raises
    ------
    ArgumentError
        For a bad sampling option (checked before the model is built).
    PriorError
        For an unknown prior key or a prior of the wrong kind.

    Warns
    -----
    SamplingWarning
        On divergences, R-hat > 1.01 or bulk ESS < 400.
    """
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.results import BayesResult

    options = check_sampling_args(  # before the model is built: bad options fail at once
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        random_seed=random_seed,
        compile=compile,
    )
    # Every likelihood form samples y - offset; the result adds the offset back.
    model_design = design.offset_absorbed()
    all_priors = resolve_priors(model_design, priors)
    form = likelihood_form(model_design, sampler, all_priors)
    model, program = None, None
    if form == "graph" and _collapses_small(model_design, all_priors, options):
        # below FUSED_MIN_OBS the generic kernel integrates the fixed effects and small
        # blocks out too, with no compile of its own (see COLLAPSE_SMALL; e.g. Penicillin's
        # smallest bulk ESS 109 -> 2,758, bench/bench_convergence.py)
        from bayesmix.bayes.generic.collapsed_program import collapsed_program

        candidate = build_pymc_model(model_design, all_priors, likelihood="collapsed")
        program = collapsed_program(candidate, model_design, all_priors)
        if program is not None:
            model, form = candidate, "collapsed"
    if model is None:
        if options["compile"] == "generic":
            form = "graph"  # the generic kernel computes the graph form's density
        model = build_pymc_model(model_design, all_priors, likelihood=form)
        if form == "graph" and options["sampler"] == "nutpie":
            from bayesmix.bayes.generic.program import lmm_program

            program = lmm_program(model, model_design, all_priors)
    complete = None
    if form == "collapsed":  # draw what the likelihood integrated out
        from bayesmix.bayes.likelihoods.collapsed_draws import add_collapsed_draws

        plan = collapse_plan(model_design, all_priors)

        def complete(idata, seed):
            add_collapsed_draws(idata, model_design, all_priors, plan, seed)

    def wrap(idata, timing):
        return BayesResult(
            design=design, idata=idata, priors=all_priors, sampler=sampler, timing=timing
        )

    return run_sampler(
        model,
        model_design,
        wrap,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        complete=complete,
        program=program,
        low_rank=_low_rank_small(model_design, form),
        **options,
    )


def _low_rank_small(design: Design, form: str) -> bool:
    """Whether nutpie adapts a low-rank modified mass matrix (see ``LOW_RANK_SMALL``)."""
    slopes = any(len(block.terms) >= 2 for block in design.blocks)
    return LOW_RANK_SMALL and form == "graph" and design.n_obs < FUSED_MIN_OBS and slopes


def _collapses_small(design: Design, priors, options: Mapping[str, Any]) -> bool:
    """Whether a model below ``FUSED_MIN_OBS`` rows is sampled collapsed by the generic kernel
    (see ``COLLAPSE_SMALL``)."""
    if not (
        COLLAPSE_SMALL
        and options["sampler"] == "nutpie"
        and options["compile"] in ("auto", "generic")
        and design.weights is None
        and design.blocks
    ):
        return False
    plan = collapse_plan(design, priors)
    if plan is None:
        return False
    sampled = plan.sampled(design)
    dense = design.n_fixed + sum(n_coefficients(design.blocks[i]) for i in plan.dense)
    return not sampled or (len(sampled) == 1 and dense <= COLLAPSE_SMALL_DENSE_MAX)


def likelihood_form(
    design: Design, sampler: str, priors: Mapping[str, Prior] | None = None
) -> Literal["graph", "fused", "collapsed"]:
    """How the model writes its likelihood for ``sampler`` (see ``build_pymc_model``).

    nutpie runs the numba backend, where the one-pass kernels are fastest from
    ``FUSED_MIN_OBS`` observations: the collapsed likelihood
    (:mod:`bayesmix.bayes.likelihoods.collapsed`) when the fixed effects have Normal
    priors (the default), else the fused one (:mod:`bayesmix.bayes.likelihoods.fused`).
    PyMC's C backend and JAX get PyTensor's own graph, and so do models with
    prior weights.
    """
    if design.weights is not None:  # only PyTensor's graph has per-row residual SDs
        return "graph"
    if sampler == "nutpie" and design.n_obs >= FUSED_MIN_OBS and design.blocks:
        if collapse_plan(design, resolve_priors(design, priors)) is not None:
            return "collapsed"
        return "fused"
    return "graph"
