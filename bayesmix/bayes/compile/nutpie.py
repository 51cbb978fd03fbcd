"""Compile PyMC models for nutpie, and reuse compiled models within a process.

Linear mixed models with the graph likelihood, GLMMs and residual structures
need no compilation of their own (``compile="auto"`` or
``"generic"``): :mod:`bayesmix.bayes.generic` describes the model as arrays to
one log density compiled once per machine. Every other model (large data with
the fused or collapsed likelihoods, nonlinear models, corARMA (the generic
kernel samples it more slowly: :mod:`bayesmix.bayes.generic.residual_program`),
a Beta prior on an autocorrelation, or
``compile="cfunc"``/``"python"`` by request) gets its own:

nutpie's standard route (``compile="cfunc"``, ``nutpie.compile_pymc_model``)
wraps the PyTensor/numba logp in a ``numba.cfunc``: gradients cost no Python and
chains run in parallel, but the cfunc cannot be cached on disk, so each new
process pays its compilation again. The alternative (``compile="python"``)
hands nutpie the disk-cached numba function through a Python callback: 1-2 s to
start with a warm cache, but ~30-90 us of Python-bridge overhead per gradient
and chains serialised by the GIL. ``compile="auto"`` takes the Python route
only for short runs (at most 4 000 iterations in all, e.g. quick checks and
tests) of small models.

Compiled models are cached in-process: every prior parameter and centring
offset is data (``hyper``), so a refit with new priors reuses the compiled
model via ``with_data`` (no compilation). A compiled model (5-10 MB) lives as
long as a design that used it, that is as long as a model or result refers to
it. The observations are compiled in as constants (see
:func:`bayesmix.bayes.graph_inputs.model_data`), so new data compile anew, unless
the on-disk numba cache has seen them (a re-run script; its place and size
bound are set by :mod:`bayesmix.bayes.compile.cache`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

from bayesmix.spec.design import Design

CompileRoute = Literal["auto", "generic", "python", "cfunc"]

#: ``compile="auto"`` uses the Python-callback route for models with
#: ``n_obs * n_random_columns`` at most this, sampled for at most
#: ``PYTHON_ROUTE_MAX_ITERATIONS`` iterations (chains x (tune + draws)).
PYTHON_ROUTE_MAX_SIZE = 20_000
PYTHON_ROUTE_MAX_ITERATIONS = 4_000


#: LLVM optimisation level numba uses while compiling a model. Level 1 instead of
#: numba's default 3 cuts a first sleepstudy fit from 21.4 s to 19.2 s on 2 cores and
#: leaves sampling speed unchanged (2.8 s for 4 x 4000 iterations either way):
#: these log densities are short scalar loops that gain nothing from -O3.
NUMBA_OPT_LEVEL = 1

_OPT_LOCK = threading.Lock()


@contextlib.contextmanager
def numba_opt_level(level: int) -> Iterator[None]:
    """Compile with numba at LLVM optimisation ``level``, restoring numba's setting after.

    numba reads ``config.OPT`` each time it builds an optimisation pipeline, so
    the change applies to what is compiled inside the block only. The lock
    keeps concurrent compilations from restoring each other's setting early.
    """
    from numba.core import config

    with _OPT_LOCK:
        previous = config.OPT
        config.OPT = type(previous)(level)
        try:
            yield
        finally:
            config.OPT = previous


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

    point_fn = _initial_point_fn(model)
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


def _initial_point_fn(model):
    """PyMC's jittered initial points, as nutpie draws them (locked: chains are threads)."""
    from pymc.initial_point import make_initial_point_fn

    return _locked(
        make_initial_point_fn(
            model=model,
            jitter_rvs=set(model.free_RVs),
            default_strategy="support_point",
            return_transformed=True,
        )
    )


def _compile_cfunc_route(model):
    """nutpie model with a C-callable logp, cached on disk where numba can.

    Deterministics are computed afterwards (see ``bayesmix.bayes.run._add_deterministics``),
    so only the free parameters are stored. nutpie's own wrapper is the fallback
    should its internals change.
    """
    import nutpie

    from bayesmix.bayes.compile.cfunc import compile_cached_cfunc

    try:
        return compile_cached_cfunc(model, _initial_point_fn(model))
    except (ImportError, AttributeError, TypeError):  # nutpie or PyTensor internals moved
        free = [v.name for v in model.free_RVs]
        return nutpie.compile_pymc_model(model, var_names=free)


def _structure_key(model, route: str) -> tuple:
    """Identifies models that can share a compiled nutpie model via ``with_data``.

    The log density graph (prior parameters are data, see ``bayes_model``), a
    digest of the arrays compiled in as constants (the printed graph abbreviates
    them), the data shapes and the coordinates (compiled models keep their
    output labels).
    """
    import hashlib

    import pytensor
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    outputs = [model.logp(), *model.deterministics]
    graph = pytensor.printing.debugprint(outputs, file="str", print_type=True)
    digest = hashlib.sha1()
    for var in graph_inputs(outputs):
        if isinstance(var, Constant) and np.ndim(var.data) > 0:
            digest.update(np.ascontiguousarray(var.data).tobytes())
    shapes = tuple((v.name, np.shape(v.get_value())) for v in model.data_vars)
    coords = tuple((k, tuple(map(str, v))) for k, v in model.coords.items())
    return route, graph, digest.hexdigest(), shapes, coords


class _Entry:
    """A compiled nutpie model, and the PyMC model's data variables its start function reads."""

    __slots__ = ("__weakref__", "compiled", "data_vars")

    def __init__(self, compiled, data_vars: dict[str, Any]):
        self.compiled = compiled
        self.data_vars = data_vars


#: Compiled models by structure key. Held weakly: each lives while a design in
#: ``_OWNERS`` holds it (models and results hold their design), so fits of
#: models no longer referenced release their compiled code.
_COMPILED: weakref.WeakValueDictionary[tuple, _Entry] = weakref.WeakValueDictionary()
_OWNERS: weakref.WeakKeyDictionary[Any, list[_Entry]] = weakref.WeakKeyDictionary()
#: Compiled models one design keeps alive at most (its likelihood forms and
#: routes, and prior families that change the graph), the latest used.
_PER_DESIGN = 4


def _hold(design, entry: _Entry) -> None:
    """Keep ``entry`` alive as long as ``design`` is (most recently used last)."""
    held = _OWNERS.setdefault(design, [])
    if entry in held:
        held.remove(entry)
    held.append(entry)
    del held[:-_PER_DESIGN]


def compile_nutpie(
    model,
    design: Design,
    route: CompileRoute = "auto",
    n_iterations: int = 8000,
    program=None,
):
    """Compile a PyMC model for nutpie (see the module docstring for ``route``).

    ``program`` (a :class:`~bayesmix.bayes.generic.program.Program` of
    ``model``, or ``None`` when the generic kernel does not cover it) is run by
    the generic kernel under ``"auto"`` and ``"generic"``: nothing is compiled
    for the model. Otherwise a model with the same structure, data shapes and
    coordinates as one compiled earlier in this process, and still referenced
    through a design, reuses it with new data (no compilation).
    ``n_iterations`` (chains x (tune + draws)) informs the ``"auto"`` choice.
    """
    if route == "generic" and program is None:
        from bayesmix.errors import ArgumentError

        raise ArgumentError(
            "compile='generic' runs linear mixed models and GLMMs, with any residual "
            "variance function and correlation structure; nonlinear models and Beta priors "
            "on an autocorrelation need compile='auto' or 'cfunc'."
        )
    if route in ("auto", "generic") and program is not None:
        from bayesmix.bayes.generic.nutpie_model import compiled_model

        return compiled_model(model, program)
    if route == "auto":
        size = design.n_obs * max(1, sum(b.n_terms for b in design.blocks))
        short = n_iterations <= PYTHON_ROUTE_MAX_ITERATIONS
        route = "python" if short and size <= PYTHON_ROUTE_MAX_SIZE else "cfunc"
    key = _structure_key(model, route)
    values = {v.name: np.asarray(v.get_value()) for v in model.data_vars}
    entry = _COMPILED.get(key)
    if entry is not None:
        _hold(design, entry)
        for name, var in entry.data_vars.items():  # initial-point function reads these
            var.set_value(values[name])
        compiled = entry.compiled
        known = getattr(compiled, "_shared_data", None) or {
            var.name for var in getattr(compiled, "shared_var_keys", {})
        }
        return compiled.with_data(**{k: v for k, v in values.items() if k in known})
    from bayesmix.bayes.compile.cache import before_compile

    before_compile()  # the disk cache's place, and its size bound
    compiled = None
    with numba_opt_level(NUMBA_OPT_LEVEL):
        if route == "python":
            try:
                compiled = _compile_python_route(model)
            except (ImportError, AttributeError, TypeError, ValueError):  # private nutpie API moved
                compiled = None
        if compiled is None:
            compiled = _compile_cfunc_route(model)
    entry = _Entry(compiled, {v.name: v for v in model.data_vars})
    _COMPILED[key] = entry
    _hold(design, entry)
    return compiled
