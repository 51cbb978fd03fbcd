"""Run a built PyMC model through a NUTS sampler and gather what the result needs.

Shared by the linear, nonlinear and GLMM engines (:func:`run_sampler`). nutpie
(default) runs a model compiled by :mod:`bayesmix.bayes.compile.nutpie` or the
generic kernel; PyMC's NUTS and the JAX samplers go through ``pm.sample``.
Deterministics that the sampler did not store are evaluated afterwards without
numba. Log-likelihood values are computed with numpy from the posterior draws
(no second compilation, as ``pm.compute_log_likelihood`` would need).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr

from bayesmix.bayes.compile.nutpie import CompileRoute, compile_nutpie
from bayesmix.bayes.sampler_defaults import (
    announce_compile,
    default_target_accept,
    resolve_progress,
)
from bayesmix.bayes.sampling_checks import check_diagnostics
from bayesmix.bayes.validate import check_sampling_args, seed_to_int
from bayesmix.errors import FitError

__all__ = ["LOGLIK_MAX_SIZE", "Sampler", "run_sampler", "sample_posterior"]

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
#: Largest (draws * observations) for which the log-likelihood group is stored eagerly.
LOGLIK_MAX_SIZE = 25_000_000


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
    model,
    design,
    sampler,
    draws,
    tune,
    chains,
    target_accept,
    seed,
    progressbar,
    route,
    program,
    low_rank=False,
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
                adaptation="low_rank" if low_rank else "diag",
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
    low_rank: bool = False,
):
    """Sample a built PyMC model; ``wrap(idata, timing)`` makes the result object.

    Shared by the linear, nonlinear and GLMM engines: draws, observed data, the
    pointwise log-likelihood (when it fits in memory) and the diagnostics check.
    ``complete(idata, seed)``, when given, adds to the posterior what the
    sampler did not draw (the collapsed likelihood's coefficients);
    ``loglik(result)`` computes the pointwise log-likelihood (default: the
    Gaussian one of :func:`bayesmix.bayes.loglik.pointwise_loglik`);
    ``program`` describes the model to the generic kernel
    (:mod:`bayesmix.bayes.generic`), which nutpie then runs uncompiled;
    ``low_rank`` asks nutpie for its low-rank modified mass matrix.
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
        low_rank and sampler == "nutpie",
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
