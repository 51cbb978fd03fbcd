"""One BLAS thread for the small dense products of a fit, cheaply.

Threads slow small factorisations down, tens of times on a busy machine
(InstEval's fit took 21.6 s instead of 4.5 s with oversubscribed OpenBLAS
threads on 2 shared cores). threadpoolctl's ``threadpool_limits`` rescans the
loaded libraries on every call (0.7 ms, a fifth of a small model's fit), so
one controller is made on first use and its ``limit`` (20 microseconds) reused.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["one_blas_thread"]

_CONTROLLER: list[Any] = []  # the cached ThreadpoolController (or None without threadpoolctl)


def one_blas_thread() -> contextlib.AbstractContextManager:
    """A context in which BLAS runs single-threaded."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - installed with pymc
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    controller = _CONTROLLER[0]
    if controller is None:  # pragma: no cover
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
