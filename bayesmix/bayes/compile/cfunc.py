"""nutpie's C-callable log density, built so that numba can cache it on disk.

nutpie calls the log density and gradient through a C function pointer with
the signature ``int64(n_dim, x*, grad*, logp*, user_data*)``. Its own wrapper
(``nutpie.compile_pymc_model``) is a closure over the PyTensor function and
numba helpers that unpack a record of data pointers, so numba can never cache
it: every new process spends 2-3 s (sleepstudy) compiling it again, even when
PyTensor's disk cache already holds the log density itself.

Here the wrapper is generated as source code with every size written in as a
literal and the PyTensor function as its only global, and registered in
PyTensor's numba cache under a key derived from that function's own cache key.
A second run of the same model in a new process then loads the compiled
wrapper from disk, and even a first compile is ~2 s cheaper because the
wrapper is a few lines of scalar code instead of nutpie's generic unpacking.
It reads nutpie's ``user_data`` record (data pointers, then sizes, then
shapes, each 8 bytes), so ``with_data`` keeps working unchanged.

Only nutpie's documented C interface and its ``CompiledPyMCModel`` container
are used, plus ``_make_functions``, the private helper that builds the
PyTensor functions; :func:`compile_cached_cfunc` raises ``TypeError`` when that
helper's shape changes, and the caller then falls back on nutpie's own route.
This file is hand-written because nutpie offers no cacheable route.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

#: Bumped whenever the generated source below changes meaning.
_WRAPPER_VERSION = "1"

_address_to_pointer = None
_INTRINSIC_LOCK = threading.Lock()


def _pointer_intrinsic():
    """numba intrinsic turning an integer address into a ``void*`` (built once, lazily)."""
    global _address_to_pointer
    with _INTRINSIC_LOCK:
        if _address_to_pointer is None:
            from numba import types
            from numba.core import cgutils
            from numba.extending import intrinsic

            @intrinsic
            def address_to_pointer(typingctx, address):
                def codegen(context, builder, signature, args):
                    return builder.inttoptr(args[0], cgutils.voidptr_t)

                return types.voidptr(address), codegen

            _address_to_pointer = address_to_pointer
    return _address_to_pointer


#: One data array a wrapper reads: the record word holding its address, the
#: words holding its shape, and its dtype's name.
ArrayEntry = tuple[int, tuple[int, ...], str]


def _unpack_shared(entries: list[ArrayEntry], n_words: int) -> tuple[list[str], str]:
    """Source lines viewing nutpie's user data as arrays, and the call's extra arguments.

    nutpie's user-data record holds, for K arrays, K data addresses, K sizes,
    then each array's shape, all 8-byte words: read here as one uint64 vector
    of ``n_words``.
    """
    if not entries:
        return [], ""
    lines = [f"        record = carray(user_data_, ({n_words},))"]
    for i, (address, shape_words, dtype) in enumerate(entries):
        shape = "".join(f"record[{word}], " for word in shape_words)
        pointer = f"address_to_pointer(record[{address}])"
        lines.append(f"        a{i} = carray({pointer}, ({shape}), np.{dtype})")
    return lines, "".join(f", a{i}" for i in range(len(entries)))


def _logp_source(n_dim: int, unpack: list[str], args: str) -> str:
    """Source of the logp wrapper (nutpie's return codes: 3, 4 = non-finite gradient, logp)."""
    lines = [
        "def logp_cfunc(dim, x_, grad_, logp_, user_data_):",
        f"    if dim != {n_dim}:",
        "        return -1",
        "    try:",
        f"        x = carray(x_, ({n_dim},))",
        *unpack,
        f"        value, grad = inner(x{args})",
        f"        out = carray(grad_, ({n_dim},))",
        "        logp_[0] = value",
        "        finite = True",
        f"        for i in range({n_dim}):",  # a loop: `out[:] = grad` compiles error formatting
        "            out[i] = grad[i]",
        "            finite = finite and np.isfinite(grad[i])",
        "        if not finite:",
        "            return 3",
        "        if not np.isfinite(value):",
        "            return 4",
        "    except Exception:",
        "        return 1",
        "    return 0",
    ]
    return "\n".join(lines) + "\n"


def _expand_source(n_dim: int, n_expanded: int, unpack: list[str], args: str) -> str:
    """Source of the wrapper computing the stored values (constrained parameters too)."""
    lines = [
        "def expand_cfunc(dim, n_expanded, x_, out_, user_data_):",
        f"    if dim != {n_dim} or n_expanded != {n_expanded}:",
        "        return -1",
        "    try:",
        f"        x = carray(x_, ({n_dim},))",
        *unpack,
        f"        (values,) = inner(x{args})",
        f"        out = carray(out_, ({n_expanded},))",
        f"        for i in range({n_expanded}):",
        "            out[i] = values[i]",
        "    except Exception:",
        "        return -2",
        "    return 0",
    ]
    return "\n".join(lines) + "\n"


def _record_entries(variables: list, keys: list, ndims: list[int]) -> list[ArrayEntry]:
    """Where each of ``variables`` sits in the user-data record of ``keys`` (with ``ndims``)."""
    n_keys = len(keys)
    entries = []
    for var in variables:
        position = keys.index(var)
        first = 2 * n_keys + sum(ndims[:position])
        shape_words = tuple(range(first, first + ndims[position]))
        entries.append((position, shape_words, np.dtype(var.dtype).name))
    return entries


def _untrampolined(function):
    """The numba function PyTensor's cached entry point calls, when it is a plain trampoline.

    PyTensor wraps each cacheable graph function in a one-line trampoline
    compiled with a CPython wrapper. Calling the wrapped function directly spares
    numba from compiling (and optimising the whole graph's code) one more time.
    """
    source = getattr(getattr(function, "py_func", None), "__source__", "")
    target = function.py_func.__globals__.get("jitable_func") if source else None
    if source.endswith("return jitable_func(*args)") and hasattr(target, "py_func"):
        return target
    return function


def _cfunc(source: str, name: str, signature, inner):
    """numba ``cfunc`` of the generated ``source`` calling ``inner``, disk-cached when ``inner`` is.

    The cache key combines PyTensor's key for ``inner`` (a digest of its graph)
    with the wrapper's source, this module's name and numba's version.
    """
    import numba
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    cache_key = None
    if inner_key is not None:
        # the module name is part of the key: numba's cache imports it when loading
        parts = ["bayesmix", __name__, _WRAPPER_VERSION, numba.__version__, inner_key, source]
        text = "|".join(parts)
        cache_key = hashlib.sha256(text.encode()).hexdigest()
    global_env = {
        "__name__": __name__,  # numba's disk cache rebuilds the function's module by name
        "inner": _untrampolined(inner),
        "np": np,
        "carray": numba.carray,
        "address_to_pointer": _pointer_intrinsic(),
    }
    function = compile_numba_function_src(source, name, global_env=global_env, cache_key=cache_key)
    return numba.cfunc(signature, cache=cache_key is not None)(function)


def compile_cached_cfunc(model, initial_point_fn):
    """nutpie ``CompiledPyMCModel`` of ``model``, storing its free parameters only.

    ``initial_point_fn`` is PyMC's initial-point function (transformed values).
    Raises ``TypeError`` if nutpie's internals do not have the expected shape.
    """
    from numba import types
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _make_functions,
        _prepare_dims_and_coords,
        make_user_data,
    )

    free = [v.name for v in model.free_RVs]
    (n_dim, n_expanded, logp_pt, expand_pt, init_fn, shape_info, reparameterized) = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point_fn,
        var_names=free,
    )
    variables = list(dict.fromkeys([*logp_pt.get_shared(), *expand_pt.get_shared()]))
    keys = {var: f"data{i}" for i, var in enumerate(variables)}
    shared_data = {}
    for var, key in keys.items():
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
    user_data = make_user_data(keys, shared_data)
    ndims = [shared_data[key].ndim for key in keys.values()]
    n_words = 2 * len(keys) + sum(ndims)
    if user_data.dtype.itemsize != 8 * n_words:
        raise TypeError("nutpie's user-data record does not have the expected layout")
    logp_unpack = _unpack_shared(
        _record_entries(list(logp_pt.get_shared()), variables, ndims), n_words
    )
    expand_unpack = _unpack_shared(
        _record_entries(list(expand_pt.get_shared()), variables, ndims), n_words
    )

    logp_signature = types.int64(
        types.uint64,
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.CPointer(types.uint64),
    )
    expand_signature = types.int64(
        types.uint64,
        types.uint64,
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.CPointer(types.uint64),
    )
    logp_cfunc = _cfunc(
        _logp_source(n_dim, *logp_unpack), "logp_cfunc", logp_signature, logp_pt.vm.jit_fn
    )
    expand_cfunc = _cfunc(
        _expand_source(n_dim, n_expanded, *expand_unpack),
        "expand_cfunc",
        expand_signature,
        expand_pt.vm.jit_fn,
    )
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_cfunc,
        compiled_expand_func=expand_cfunc,
        initial_point_func=init_fn,
        shared_data=shared_data,
        shared_var_keys=keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=reparameterized,
    )
