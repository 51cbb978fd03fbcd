"""Sample the posterior of a linear mixed model and check the sampler.

Compilation strategy for nutpie (the default sampler). nutpie's standard
route (``compile="cfunc"``, ``nutpie.compile_pymc_model``) wraps the
PyTensor/numba logp in a ``numba.cfunc``: gradients cost no Python and chains
run in parallel, but the cfunc cannot be cached on disk, so each new process
pays ~10-15 s (two cores) even with PyTensor's numba cache warm. The
alternative (``compile="python"``) hands nutpie the disk-cached numba function
through a Python callback: 1-2 s to start with a warm cache, but ~30-90 us of
nutpie Python-bridge overhead per gradient and chains serialised by the GIL
(sleepstudy, 4 x 2000 iterations: ~5-10 s of sampling instead of ~1 s).
``compile="auto"`` takes the Python route only for short runs (at most 4 000
iterations in all, e.g. quick checks and tests) of small models.

Compiled models are cached in-process: every prior parameter and centring
offset is data (``hyper``), so a refit with new priors or data of the same
shapes reuses the compiled model via ``with_data`` (no compilation), and models
of one structure share PyTensor's on-disk numba cache. A cold cache costs one
numba compilation of the model (~60-80 s on two cores).

Log-likelihood values are computed with numpy from the posterior draws of
``beta``, ``r_*`` and ``sigma`` (no second compilation, as
``pm.compute_log_likelihood`` would need).
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import xarray as xr

from bayesmix.design import Design
from bayesmix.errors import FitError, SamplingWarning, warn
from bayesmix.priors import Prior, resolve_priors

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]
CompileRoute = Literal["auto", "python", "cfunc"]

#: ``compile="auto"`` uses the Python-callback route for models with
#: ``n_obs * n_random_columns`` at most this, sampled for at most
#: ``PYTHON_ROUTE_MAX_ITERATIONS`` iterations (chains x (tune + draws)).
PYTHON_ROUTE_MAX_SIZE = 20_000
PYTHON_ROUTE_MAX_ITERATIONS = 4_000
#: Largest (draws * observations) for which the log-likelihood group is stored eagerly.
LOGLIK_MAX_SIZE = 25_000_000

RHAT_MAX = 1.01
ESS_MIN = 400


def _stored_names(model) -> list[str]:
    return [v.name for v in model.deterministics] + [v.name for v in model.free_RVs]


def _locked(func):
    """Serialise calls: compiled PyTensor functions are not thread-safe (chains are threads)."""
    lock = threading.Lock()

    def wrapper(*args, **kwargs):
        with lock:
            return func(*args, **kwargs)

    return wrapper


def _compile_python_route(model):
    """nutpie model whose logp is the PyTensor numba function called from Python."""
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    point_fn = _locked(
        make_initial_point_fn(
            model=model,
            jitter_rvs=set(model.free_RVs),
            default_strategy="support_point",
            return_transformed=True,
        )
    )
    n_dim, _, logp_pt, expand_pt, init_fn, shape_info, reparam = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=point_fn,
        var_names=_stored_names(model),
    )
    logp_jit = logp_pt.vm.jit_fn
    expand_jit = expand_pt.vm.jit_fn
    # data travel as nutpie "shared data" (by name) so that with_data can swap them
    logp_keys = tuple(v.name for v in logp_pt.get_shared())
    expand_keys = tuple(v.name for v in expand_pt.get_shared())
    shared = {
        v.name: np.asarray(v.get_value()) for v in (*logp_pt.get_shared(), *expand_pt.get_shared())
    }
    names, _, shapes = shape_info

    def make_logp_fn():
        def logp(x, **data):
            value, grad = logp_jit(x, *[data[k] for k in logp_keys])
            return float(value), grad

        return logp

    def make_expand_fn(seed1, seed2, chain):
        def expand(x, **data):
            values = expand_jit(x, *[data[k] for k in expand_keys])
            return {
                name: np.asarray(v, dtype="float64").reshape(shape)
                for name, v, shape in zip(names, values, shapes, strict=True)
            }

        return expand

    # numba compiles lazily: call both functions once so compilation happens here
    x0 = np.asarray(init_fn(0), dtype="float64")
    logp_jit(x0, *[shared[k] for k in logp_keys])
    expand_jit(x0, *[shared[k] for k in expand_keys])
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparam)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_fn,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=init_fn,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        shared_data=shared,
        dims=dims,
        coords=coords,
        reparameterized_names=reparam,
    )


def _structure_key(model, route: str) -> tuple:
    """Identifies models that can share a compiled nutpie model via ``with_data``.

    The log density graph (all numbers are data, see ``bayes_model``), the data
    shapes and the coordinates (compiled models keep their output labels).
    """
    import pytensor

    graph = pytensor.printing.debugprint(
        [model.logp(), *model.deterministics], file="str", print_type=True
    )
    shapes = tuple((v.name, np.shape(v.get_value())) for v in model.data_vars)
    coords = tuple((k, tuple(map(str, v))) for k, v in model.coords.items())
    return route, graph, shapes, coords


#: In-process cache of compiled nutpie models: key -> (compiled, the model's data variables).
_COMPILED: dict[tuple, tuple[Any, dict[str, Any]]] = {}
_CACHE_SIZE = 8


def compile_nutpie(model, design: Design, route: CompileRoute = "auto", n_iterations: int = 8000):
    """Compile a PyMC model for nutpie (see the module docstring for ``route``).

    A model with the same structure, data shapes and coordinates as one
    compiled earlier in this process reuses it with new data (no compilation).
    ``n_iterations`` (chains x (tune + draws)) informs the ``"auto"`` choice.
    """
    import nutpie

    if route == "auto":
        size = design.n_obs * max(1, sum(b.n_terms for b in design.blocks))
        short = n_iterations <= PYTHON_ROUTE_MAX_ITERATIONS
        route = "python" if short and size <= PYTHON_ROUTE_MAX_SIZE else "cfunc"
    key = _structure_key(model, route)
    values = {v.name: np.asarray(v.get_value()) for v in model.data_vars}
    if key in _COMPILED:
        compiled, old_data = _COMPILED[key]
        for name, var in old_data.items():  # initial-point function reads these
            var.set_value(values[name])
        known = getattr(compiled, "_shared_data", None) or {
            var.name for var in getattr(compiled, "shared_var_keys", {})
        }
        return compiled.with_data(**{k: v for k, v in values.items() if k in known})
    compiled = None
    if route == "python":
        try:
            compiled = _compile_python_route(model)
        except (ImportError, AttributeError, TypeError, ValueError):  # private nutpie API moved
            compiled = None
    if compiled is None:
        # Deterministics are computed afterwards (see _add_deterministics): leaving
        # them out of nutpie's numba-compiled expand function saves ~2 s of compile.
        compiled = nutpie.compile_pymc_model(model, var_names=[v.name for v in model.free_RVs])
    if len(_COMPILED) >= _CACHE_SIZE:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = (compiled, {v.name: v for v in model.data_vars})
    return compiled


def _add_deterministics(idata, model):
    """Add the model's deterministics that the sampler did not store.

    They are cheap functions of the draws, evaluated by PyTensor's Python
    linker: no numba compilation, a fraction of a second for 4,000 draws.
    """
    import pymc as pm

    missing = [v.name for v in model.deterministics if v.name not in idata["posterior"]]
    if not missing:
        return idata
    return pm.compute_deterministics(
        idata,
        var_names=missing,
        model=model,
        extend_dataset=True,
        progressbar=False,
        compile_kwargs={"mode": "FAST_COMPILE"},
    )


def sample_posterior(
    model, design, sampler, draws, tune, chains, target_accept, seed, progressbar, route
):
    import pymc as pm

    if sampler == "nutpie":
        import nutpie

        t0 = time.perf_counter()
        compiled = compile_nutpie(model, design, route, chains * (tune + draws))
        t1 = time.perf_counter()
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
    target_accept: float = 0.8,
    random_seed: int | None = None,
    progressbar: bool = False,
    log_likelihood: bool | None = None,
    compile: CompileRoute = "auto",
):
    """Draw from the posterior of a Gaussian linear mixed model with NUTS.

    Parameters
    ----------
    design : Design
        The model's design.
    priors : mapping, optional
        Prior overrides by key (see :func:`bayesmix.priors.default_priors`).
    draws, tune, chains : int
        Kept draws per chain, tuning draws per chain, number of chains.
    sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
        NUTS implementation; the last two need ``jax`` installed.
    target_accept : float
        Target acceptance rate; raise it (0.9, 0.95) when divergences appear.
    random_seed : int, optional
        Seed for reproducible draws.
    progressbar : bool
        Show the sampler's progress bar.
    log_likelihood : bool, optional
        Store the pointwise log-likelihood (needed by ``loo``). Default: only
        when draws x observations <= 25 million (``loo`` computes it on demand
        otherwise).
    compile : {"auto", "python", "cfunc"}
        How nutpie calls the compiled model (see the module docstring):
        "cfunc" samples fastest, "python" starts fastest in a new process;
        "auto" uses "python" only for short runs of small models.

    Returns
    -------
    BayesResult

    Warns
    -----
    SamplingWarning
        On divergences, R-hat > 1.01 or bulk ESS < 400.
    """
    from bayesmix.bayes_model import build_pymc_model
    from bayesmix.bayes_results import BayesResult

    _check_sampler(sampler)
    all_priors = resolve_priors(design, priors)
    model = build_pymc_model(design, all_priors)

    def wrap(idata, timing):
        return BayesResult(
            design=design, idata=idata, priors=all_priors, sampler=sampler, timing=timing
        )

    return run_sampler(
        model,
        design,
        wrap,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        random_seed=random_seed,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        compile=compile,
    )


def _check_sampler(sampler: str) -> None:
    if sampler not in ("nutpie", "pymc", "numpyro", "blackjax"):
        raise ValueError(
            f"Unknown sampler {sampler!r}; use 'nutpie', 'pymc', 'numpyro' or 'blackjax'."
        )


def run_sampler(
    model,
    design,
    wrap: Callable[[Any, dict[str, float]], Any],
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    random_seed: int | None,
    progressbar: bool,
    log_likelihood: bool | None,
    compile: CompileRoute,
):
    """Sample a built PyMC model; ``wrap(idata, timing)`` makes the result object.

    Shared by the linear and nonlinear engines: draws, observed data, the
    pointwise log-likelihood (when it fits in memory) and the diagnostics check.
    """
    from bayesmix.bayes_results import pointwise_loglik

    _check_sampler(sampler)
    seed = None if random_seed is None else int(random_seed)
    if seed is None and sampler == "nutpie":
        seed = int(np.random.default_rng().integers(2**31))
    idata, compile_s, sample_s = sample_posterior(
        model, design, sampler, draws, tune, chains, target_accept, seed, progressbar, compile
    )
    idata["observed_data"] = xr.Dataset({"y": ("obs", np.asarray(design.y, dtype=float))})
    result = wrap(idata, {"compile_s": compile_s, "sample_s": sample_s})
    if log_likelihood is None:
        log_likelihood = draws * chains * design.n_obs <= LOGLIK_MAX_SIZE
    if log_likelihood:
        idata["log_likelihood"] = xr.Dataset({"y": pointwise_loglik(result)})
    check_diagnostics(result)
    return result


def check_diagnostics(result, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> None:
    """Warn with :class:`SamplingWarning` when the draws look unreliable."""
    diag = result.diagnostics()
    problems = []
    if diag["divergences"] > 0:
        problems.append(
            f"{diag['divergences']} divergent transitions (raise target_accept, e.g. 0.95, "
            "or use stronger priors on the group SDs)"
        )
    table = diag["table"]
    bad_rhat = table.index[table["r_hat"] > rhat_max].tolist()
    if bad_rhat:
        problems.append(
            f"R-hat > {rhat_max:g} for {_names(bad_rhat)} (run more tune/draws or chains)"
        )
    bad_ess = table.index[table["ess_bulk"] < ess_min].tolist()
    if bad_ess:
        problems.append(
            f"bulk ESS < {ess_min:g} for {_names(bad_ess)} (increase draws/tune; "
            "for a poorly identified SD, consider a stronger prior or a simpler "
            "random-effects structure)"
        )
    if problems:
        warn("The posterior draws may be unreliable: " + "; ".join(problems) + ".", SamplingWarning)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
