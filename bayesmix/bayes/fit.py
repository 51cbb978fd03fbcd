"""Sample the posterior of a mixed model and check the sampler's diagnostics.

nutpie (default) runs a model compiled by :mod:`bayesmix.bayes.compile.nutpie`;
PyMC's NUTS and the JAX samplers go through ``pm.sample``. Deterministics that
the sampler did not store are evaluated afterwards without numba. Log-likelihood
values are computed with numpy from the posterior draws of ``beta``, ``r_*`` and
``sigma`` (no second compilation, as ``pm.compute_log_likelihood`` would need).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import xarray as xr

from bayesmix.bayes.compile.nutpie import CompileRoute, compile_nutpie
from bayesmix.bayes.likelihoods.collapsed import collapse_plan, n_coefficients
from bayesmix.bayes.priors import Prior, resolve_priors
from bayesmix.bayes.sampler_defaults import (
    announce_compile,
    default_target_accept,
    resolve_progress,
)
from bayesmix.bayes.sampling_checks import check_diagnostics
from bayesmix.bayes.validate import check_sampling_args, seed_to_int
from bayesmix.errors import FitError
from bayesmix.spec.design import Design

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
#: Largest (draws * observations) for which the log-likelihood group is stored eagerly.
LOGLIK_MAX_SIZE = 25_000_000


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


def _add_deterministics(idata, model):
    """Add the model's deterministics that the sampler did not store.

    The deterministic graph is vectorised over a leading draw dimension and
    evaluated once on all draws by PyTensor's pure-Python linker: no numba
    compilation, and ~30x faster than PyMC's draw-by-draw
    ``compute_deterministics`` (0.4 s -> 0.01 s on sleepstudy, 4,000 draws),
    which remains the fallback for a graph that cannot be vectorised.
    """
    import pymc as pm
    import pytensor
    from pytensor.compile.mode import Mode
    from pytensor.graph.replace import vectorize_graph

    missing = [v for v in model.deterministics if v.name not in idata["posterior"]]
    if not missing:
        return idata
    posterior = idata["posterior"].to_dataset()
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    try:
        batched = {rv: rv.type.clone(shape=(None, *rv.type.shape))() for rv in model.free_RVs}
        outputs = vectorize_graph(missing, replace=batched)
        stored = [rv for rv in model.free_RVs if rv.name in posterior]
        inputs = [batched[rv] for rv in stored]
        # the pure-Python linker: FAST_COMPILE's VM would first build PyTensor's C
        # lazylinker (0.8 s with gcc, once per machine) for a one-off evaluation
        mode = Mode(linker="py", optimizer="fast_compile")
        function = pytensor.function(inputs, outputs, mode=mode, on_unused_input="ignore")
        draws = [posterior[rv.name].values for rv in stored]
        values = function(*[d.reshape(n_chain * n_draw, *d.shape[2:]) for d in draws])
    except Exception:  # a graph vectorize_graph cannot batch: evaluate draw by draw
        return pm.compute_deterministics(
            idata,
            var_names=[v.name for v in missing],
            model=model,
            extend_dataset=True,
            progressbar=False,
            compile_kwargs={"mode": "FAST_COMPILE"},
        )
    new = {}
    for var, value in zip(missing, values, strict=True):
        dims = model.named_vars_to_dims.get(var.name) or tuple(
            f"{var.name}_dim_{i}" for i in range(value.ndim - 1)
        )
        new[var.name] = xr.DataArray(
            np.asarray(value).reshape(n_chain, n_draw, *value.shape[1:]),
            dims=("chain", "draw", *dims),
            coords={d: list(model.coords[d]) for d in dims if model.coords.get(d) is not None},
        )
    idata["posterior"] = posterior.assign(new)
    return idata


def sample_posterior(
    model, design, sampler, draws, tune, chains, target_accept, seed, progressbar, route, program
):
    import pymc as pm

    if sampler == "nutpie":
        import nutpie

        t0 = time.perf_counter()
        if progressbar:
            announce_compile()
        compiled = compile_nutpie(model, design, route, chains * (tune + draws), program)
        t1 = time.perf_counter()
        try:
            idata = nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=min(chains, os.cpu_count() or 1),
                seed=seed,
                target_accept=target_accept,
                save_warmup=False,
                progress_bar=progressbar,
            )
        except BaseException as err:  # a panic in nutpie's Rust code is no Exception
            if type(err).__name__ != "PanicException":
                raise
            raise FitError(
                f"nutpie stopped with an internal error ({err}); "
                "try other sampling options or sampler='pymc'."
            ) from err
        t2 = time.perf_counter()
        return _add_deterministics(idata, model), t1 - t0, t2 - t1
    nuts: dict[str, Any] = {"target_accept": target_accept}
    if sampler in ("numpyro", "blackjax"):
        try:
            import jax  # noqa: F401

            importlib.import_module(sampler)
        except ImportError as err:
            raise FitError(
                f"sampler={sampler!r} needs JAX and {sampler}: install them with "
                f"`pip install jax {sampler}` (or `pip install bayesmix[jax]`), "
                "or use sampler='nutpie'."
            ) from err
        # One XLA device on a CPU: run the chains as one vectorised computation.
        nuts["chain_method"] = "vectorized"
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(chains, os.cpu_count() or 1),
            random_seed=seed,
            nuts_sampler=sampler,
            nuts=nuts,
            progressbar=progressbar,
            compute_convergence_checks=False,
            quiet=True,
        )
    total = time.perf_counter() - t0
    sample_s = float(idata["posterior"].attrs.get("sampling_time", float("nan")))
    return idata, total - sample_s, sample_s


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
        **options,
    )


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


def run_sampler(
    model,
    design,
    wrap: Callable[[Any, dict[str, float]], Any],
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float | None,
    random_seed: int | np.random.Generator | None,
    progressbar: bool | None,
    log_likelihood: bool | None,
    compile: CompileRoute,
    complete: Callable[[Any, int | None], None] | None = None,
    loglik: Callable[[Any], xr.DataArray] | None = None,
    program=None,
):
    """Sample a built PyMC model; ``wrap(idata, timing)`` makes the result object.

    Shared by the linear, nonlinear and GLMM engines: draws, observed data, the
    pointwise log-likelihood (when it fits in memory) and the diagnostics check.
    ``complete(idata, seed)``, when given, adds to the posterior what the
    sampler did not draw (the collapsed likelihood's coefficients);
    ``loglik(result)`` computes the pointwise log-likelihood (default: the
    Gaussian one of :func:`bayesmix.bayes.loglik.pointwise_loglik`);
    ``program`` describes the model to the generic kernel
    (:mod:`bayesmix.bayes.generic`), which nutpie then runs uncompiled.
    """
    from bayesmix.bayes.loglik import pointwise_loglik

    # checked again for direct callers; the engines check first, before building
    options = check_sampling_args(
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        random_seed=random_seed,
        compile=compile,
    )
    draws, tune, chains = options["draws"], options["tune"], options["chains"]
    target_accept = options["target_accept"]
    if target_accept is None:
        target_accept = default_target_accept(model)
    seed = seed_to_int(options["random_seed"])
    # None: on in a notebook or at the prompt; a bool for PyMC (it refuses other truthy values)
    progressbar = resolve_progress(progressbar)
    if seed is None and sampler == "nutpie":
        seed = int(np.random.default_rng().integers(2**31))
    idata, compile_s, sample_s = sample_posterior(
        model,
        design,
        sampler,
        draws,
        tune,
        chains,
        target_accept,
        seed,
        progressbar,
        compile,
        program,
    )
    if complete is not None:
        complete(idata, seed)
    result = wrap(
        idata,
        {"compile_s": compile_s, "sample_s": sample_s, "target_accept": float(target_accept)},
    )
    observed = np.asarray(result.design.y, dtype=float)  # the user's y, offset included
    idata["observed_data"] = xr.Dataset({"y": ("obs", observed)})
    if log_likelihood is None:
        log_likelihood = draws * chains * design.n_obs <= LOGLIK_MAX_SIZE
    if log_likelihood:
        idata["log_likelihood"] = xr.Dataset({"y": (loglik or pointwise_loglik)(result)})
    check_diagnostics(result)
    return result
