"""Numba implementations for bayesmix's PyTensor ops, cached on disk by PyTensor.

PyTensor's numba backend compiles an op through a registered "funcify"
function, and caches the result on disk under a key made of the op's class,
its props and an integer salt. :func:`register_kernel` registers a function
that builds the kernel from an op; :func:`source_salt` makes the salt from
the kernel's source, so a changed kernel is never served from a stale cache.
Where that disk cache lives is decided by :mod:`bayesmix.bayes.compile.cache`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np


def source_salt(*sources: str) -> int:
    """Salt of a kernel's disk-cache key: a hash of its source."""
    digest = hashlib.sha1("\n".join(sources).encode()).hexdigest()
    return int(digest[:12], 16)


def compile_source(source: str, name: str, label: str) -> Callable:
    """The function ``name`` defined by generated ``source`` (numpy available as ``np``)."""
    namespace = {"np": np}
    exec(compile(source, f"<{label}>", "exec"), namespace)
    return namespace[name]


def register_kernel(op_type: type, build: Callable[[object], tuple[Callable, int]]) -> None:
    """Use ``build(op) -> (python function, salt)``, njit-compiled, for ``op_type``.

    Without numba, nothing is registered and the op runs through ``perform``.
    """
    from bayesmix.bayes.compile.cache import configure_pytensor

    # PyTensor's numba backend fixes its disk-cache directory when first imported
    # (just below): bayesmix's cache directory must be chosen before that.
    configure_pytensor()
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:
        return

    @register_funcify_default_op_cache_key(op_type)
    def funcify(op, node=None, **kwargs):
        function, salt = build(op)
        return numba_njit(function), salt


def unrolled_loop(
    observation_lines: Callable[[str, int, str], list[str]], unroll: int
) -> list[str]:
    """Source lines of a loop over ``n`` observations unrolled ``unroll`` times.

    ``observation_lines(i, u, indent)`` writes the lines for observation ``i``
    adding into accumulator set ``u``; the remainder (``n % unroll``
    observations) uses set 0.
    """
    lines = [f"    m = n - n % {unroll}", f"    for i0 in range(0, m, {unroll}):"]
    for u in range(unroll):
        lines += observation_lines(f"i0 + {u}", u, "        ")
    lines.append("    for i in range(m, n):")
    return lines + observation_lines("i", 0, "        ")


def summed(name: str, unroll: int) -> str:
    """The accumulators' total, ``"a0 + a1 + ..."`` for ``name = "a{u}"``."""
    return " + ".join(name.format(u=u) for u in range(unroll))


def pack_columns(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, list[int]]:
    """The columns that are not all ones, stacked (n x m), and each column's place there.

    A generated kernel skips the multiplication for columns of ones: their
    place is -1.
    """
    varying = [k for k, z in enumerate(columns) if not np.all(np.asarray(z) == 1.0)]
    matrix = np.zeros((n, len(varying)))
    for place, k in enumerate(varying):
        matrix[:, place] = np.asarray(columns[k], dtype=float)
    return matrix, [varying.index(k) if k in varying else -1 for k in range(len(columns))]
