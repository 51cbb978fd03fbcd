"""A nutpie model that runs the generic kernel: compiled once per machine, not per model.

nutpie calls a model's log density through a C function pointer,
``int64(n_dim, x*, grad*, logp*, user_data*)``, and hands it the address of a
``user_data`` record it does not read itself. Here that record is a vector of
8-byte words holding each of a :class:`~bayesmix.bayes.generic.program.Program`'s
arrays as (address, length), and the C callbacks below are fixed code that
views those words as arrays and calls
:func:`bayesmix.bayes.generic.kernel.logp_grad` (or ``logp_grad_structured``
for a residual structure, and ``expand``). None depends on the model, so numba
compiles each on the first fit on a machine that needs it,
stores them in bayesmix's compile cache (:mod:`bayesmix.bayes.compile.cache`)
under a key made of this code's source, and every later model in any process
loads them (about 0.1 s) instead of compiling its own log density.

Only nutpie's documented C interface and its ``CompiledPyMCModel`` container
are used: the same container as for per-model code, so everything after
sampling is unchanged. Hand-written, because nutpie has no route for a log
density that takes its model as data.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numba
import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from bayesmix.bayes.generic import (
    arma,
    collapsed_kernel,
    dense_correlation,
    families,
    kernel,
    lkj_kernel,
    residual,
    special,
)
from bayesmix.bayes.generic.kernel import N_DIM, expand, logp_grad, logp_grad_structured
from bayesmix.bayes.generic.program import Program
from bayesmix.bayes.likelihoods import collapsed_marginal

#: Arrays in the record: the program's 8 integer and 10 float arrays, then its
#: transforms and bounds (for ``expand``).
N_INTS, N_FLOATS = 8, 10
N_WORDS = 2 * (N_INTS + N_FLOATS + 2)


@intrinsic
def address_to_pointer(typingctx, address):
    """An integer address as a ``void*`` (numba has no built-in cast)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@numba.njit(cache=False, error_model="numpy", inline="always")
def _ints(record, k):
    return carray(address_to_pointer(record[2 * k]), (record[2 * k + 1],), np.int64)


@numba.njit(cache=False, error_model="numpy", inline="always")
def _floats(record, k):
    return carray(address_to_pointer(record[2 * k]), (record[2 * k + 1],), np.float64)


@numba.njit(cache=False, error_model="numpy")
def _unpack(user_data_):
    record = carray(user_data_, (N_WORDS,))
    ints = (
        _ints(record, 0),
        _ints(record, 1),
        _ints(record, 2),
        _ints(record, 3),
        _ints(record, 4),
        _ints(record, 5),
        _ints(record, 6),
        _ints(record, 7),
    )
    floats = (
        _floats(record, 8),
        _floats(record, 9),
        _floats(record, 10),
        _floats(record, 11),
        _floats(record, 12),
        _floats(record, 13),
        _floats(record, 14),
        _floats(record, 15),
        _floats(record, 16),
        _floats(record, 17),
    )
    return ints, floats, _ints(record, 18), _floats(record, 19)


def _logp_callback(dim, x_, grad_, logp_, user_data_):
    """nutpie's logp callback; return codes 3 and 4: non-finite gradient, logp."""
    ints, floats, _, _ = _unpack(user_data_)
    if dim != ints[0][N_DIM]:
        return -1
    grad = carray(grad_, (dim,))
    return _finish(logp_grad(carray(x_, (dim,)), grad, ints, floats), grad, logp_)


def _logp_structured_callback(dim, x_, grad_, logp_, user_data_):
    """As ``_logp_callback``, for models with a residual structure."""
    ints, floats, _, _ = _unpack(user_data_)
    if dim != ints[0][N_DIM]:
        return -1
    grad = carray(grad_, (dim,))
    return _finish(logp_grad_structured(carray(x_, (dim,)), grad, ints, floats), grad, logp_)


@numba.njit(cache=False, error_model="numpy")
def _finish(value, grad, logp_):
    """Store the log density; nutpie's codes 3 and 4 for a non-finite gradient or value."""
    logp_[0] = value
    for i in range(grad.size):
        if not np.isfinite(grad[i]):
            return 3
    if not np.isfinite(value):
        return 4
    return 0


def _expand_callback(dim, n_expanded, x_, out_, user_data_):
    """nutpie's expand callback: what the sampler stores (see ``kernel.expand``)."""
    ints, _, transforms, bounds = _unpack(user_data_)
    if dim != ints[0][N_DIM] or n_expanded != dim + np.count_nonzero(transforms):
        return -1
    expand(carray(x_, (dim,)), transforms, bounds, carray(out_, (n_expanded,)))
    return 0


_LOGP_SIGNATURE = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.uint64),
)
_EXPAND_SIGNATURE = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.uint64),
)

_LOCK = threading.Lock()
#: The compiled callbacks: "logp" and "logp-structured" (compiled when first needed),
#: and "expand".
_CALLBACKS: dict[str, object] = {}
_PYTHON_FUNCTIONS = {
    "logp": (_logp_callback, _LOGP_SIGNATURE),
    "logp-structured": (_logp_structured_callback, _LOGP_SIGNATURE),
    "expand": (_expand_callback, _EXPAND_SIGNATURE),
}


def cache_key() -> str:
    """Disk-cache key of the callbacks: this code's source and numba's version."""
    digest = hashlib.sha256(numba.__version__.encode())
    modules = (
        kernel,
        families,
        residual,
        dense_correlation,
        arma,
        lkj_kernel,
        special,
        collapsed_kernel,
        collapsed_marginal,
    )
    for path in (*[m.__file__ for m in modules], __file__):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _callback(name: str, key: str):
    if name not in _CALLBACKS:
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

        function, signature = _PYTHON_FUNCTIONS[name]
        CACHED_SRC_FUNCTIONS[function] = f"bayesmix-generic-{name}-{key}"
        _CALLBACKS[name] = numba.cfunc(signature, cache=True, error_model="numpy")(function)
    return _CALLBACKS[name]


def callbacks(structured: bool = False):
    """The compiled C callbacks (logp, expand), the logp with the residual structures'
    code or without: from the disk cache after a machine's first fit of each kind."""
    with _LOCK:
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # bayesmix's cache directory, before PyTensor's numba cache
        key = cache_key()
        out = (
            _callback("logp-structured" if structured else "logp", key),
            _callback("expand", key),
        )
        _mark_used(key)
    return out


def _mark_used(key: str) -> None:
    """Refresh the callbacks' cache files' times: the cache bound removes the entries
    written longest ago first, and every model uses these."""
    import os
    import time

    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    now = time.time()
    try:
        for path in Path(NUMBA_CACHE_PATH).glob(f"*bayesmix-generic-*-{key}*"):
            os.utime(path, (now, now))
    except OSError:  # another process is pruning: the next load refreshes them
        pass


def record(program: Program) -> tuple[np.ndarray, list[np.ndarray]]:
    """The user-data record of ``program`` and the arrays it points to (keep them alive)."""
    arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in program.ints]
    arrays += [np.ascontiguousarray(a, dtype=np.float64) for a in program.floats]
    arrays.append(np.ascontiguousarray(program.transforms, dtype=np.int64))
    arrays.append(np.ascontiguousarray(program.bounds, dtype=np.float64))
    if len(arrays) != N_INTS + N_FLOATS + 2:
        raise ValueError("a program has 8 integer and 10 float arrays")
    words = np.zeros(N_WORDS, dtype=np.uint64)
    for k, array in enumerate(arrays):
        array.flags.writeable = False
        words[2 * k] = array.ctypes.data
        words[2 * k + 1] = array.size
    return words, arrays


def initial_point_function(program: Program):
    """PyMC's initial points as nutpie draws them: the support point jittered by U(-1, 1)."""
    support = program.support.copy()

    def initial_point(seed=None):
        rng = np.random.default_rng(seed)
        return support + rng.uniform(-1.0, 1.0, size=support.size)

    return initial_point


def compiled_model(model, program: Program):
    """nutpie's ``CompiledPyMCModel`` of the PyMC ``model`` that ``program`` describes."""
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords

    logp_callback, expand_callback = callbacks(structured=program.structured)
    words, arrays = record(program)
    shapes = [tuple(int(d) for d in shape) for shape in program.shapes]
    slices, position = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        slices.append(slice(position, position + size))
        position += size
    shape_info = (list(program.names), slices, shapes)
    reparameterized = list(program.reparameterized)
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    return CompiledPyMCModel(
        _n_dim=program.n_dim,
        dims=dims,
        _coords=coords,
        _shapes=dict(zip(program.names, shapes, strict=True)),
        compiled_logp_func=logp_callback,
        compiled_expand_func=expand_callback,
        initial_point_func=initial_point_function(program),
        shared_data={f"array{k}": array for k, array in enumerate(arrays)},  # kept alive
        shared_var_keys={},
        user_data=words,
        n_expanded=program.n_expanded,
        shape_info=shape_info,
        logp_func=None,
        expand_func=None,
        reparameterized_names=reparameterized,
    )
