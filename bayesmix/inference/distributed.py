"""Independent replicates (bootstrap and simulation refits) in batches on Dask.

:func:`run_replicates` splits ``n`` replicates into contiguous batches and runs
each batch as one ``dask.distributed`` task, or in this process without Dask.
Replicate ``i`` always gets child ``i`` of one ``SeedSequence.spawn(n)`` made
here, so its result does not depend on the batch size or the number of workers.
Dask is imported only when a cluster is used: ``import bayesmix`` stays quick.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bayesmix.errors import ArgumentError, FitError

if TYPE_CHECKING:
    import distributed

__all__ = ["ReplicateRun", "count_argument", "local_client", "run_replicates", "usable_cores"]

Task = Callable[[Sequence[int], Sequence[np.random.SeedSequence]], list[Any]]

#: Batches per worker of the default batch size: enough to even out uneven batches,
#: few enough that Dask's per-task overhead (about a millisecond) stays negligible.
BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class ReplicateRun:
    """What :func:`run_replicates` computed, and how.

    Attributes
    ----------
    results : list
        One result per replicate, in replicate order.
    seed_entropy : int
        Entropy of the root ``SeedSequence``; passed as ``seed`` it repeats a run
        made with an integer seed or ``seed=None``.
    workers : int
        Dask worker threads used (0: in this process, without Dask).
    batch_size : int
        Replicates per task (the last batch may be smaller).
    elapsed_s : float
        Wall time of the whole call, cluster start-up and shutdown included.
    """

    results: list[Any]
    seed_entropy: int
    workers: int
    batch_size: int
    elapsed_s: float


def run_replicates(
    task: Task,
    n: int,
    seed: int | np.random.SeedSequence | None,
    *,
    client: distributed.Client | Literal["sync"] | None = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> ReplicateRun:
    """Run ``n`` independent replicates in batches, reproducibly for a given seed.

    Parameters
    ----------
    task : callable
        ``task(indices, seeds)`` computes the replicates ``indices`` (a contiguous
        ``range``), ``indices[j]`` with ``seeds[j]``, and returns a list of one result
        per index, in order. It must pickle (a module-level function or an instance
        of an importable class) and handle failures of single replicates itself.
    n : int
        Number of replicates (0 gives an empty run).
    seed : int, numpy.random.SeedSequence or None
        Replicate ``i`` gets ``SeedSequence(seed).spawn(n)[i]``. A ``SeedSequence`` is
        copied, not advanced, so passing it again repeats the run. ``None`` draws fresh
        entropy, reported as :attr:`ReplicateRun.seed_entropy`.
    client : distributed.Client, "sync" or None
        A client of the user's cluster, used and left open; ``None`` starts a local
        cluster of ``workers`` single-threaded processes and closes it at the end;
        ``"sync"`` runs in this process without Dask.
    workers : int, optional
        Processes of the local cluster, by default the usable cores; 0 is
        ``client="sync"``. Not allowed together with ``client``.
    batch_size : int, optional
        Replicates per task; by default about 4 batches per worker.
    progress : bool
        Show a ``tqdm`` bar of finished replicates.

    Returns
    -------
    ReplicateRun
        The results in replicate order, the seed entropy and how the work was split.

    Raises
    ------
    ArgumentError
        A bad ``n``, ``seed``, ``client``, ``workers`` or ``batch_size``, or a task
        returning the wrong number of results.
    FitError
        A batch raised: the message names its replicates and the error, which is
        chained; the remaining batches are cancelled.

    Notes
    -----
    Workers are spawned processes, so a script using ``client=None`` needs the
    ``if __name__ == "__main__":`` guard. Dask starts them with ``OMP_NUM_THREADS=1``;
    this process keeps its BLAS threads, which matters when timing ``"sync"``.
    """
    start_time = time.perf_counter()
    n = count_argument("n", n, minimum=0)
    if batch_size is not None:
        batch_size = count_argument("batch_size", batch_size, minimum=1)
    if workers is not None:
        workers = count_argument("workers", workers, minimum=0)
        if client is not None:
            raise ArgumentError("give either client= or workers=, not both")
    sync = workers == 0 or (isinstance(client, str) and client == "sync")
    if not (sync or client is None or _is_client(client)):
        raise ArgumentError(f"client must be a distributed.Client, 'sync' or None, not {client!r}")
    root = _root_seed(seed)
    # one spawn for the whole run: the children, not the batching, fix each replicate
    seeds = root.spawn(n)
    if sync:
        used, size = 0, batch_size or _default_batch_size(n, 1)
        results = _run_sync(task, seeds, size, progress)
    elif client is None:
        used = workers or usable_cores()
        size = batch_size or _default_batch_size(n, used)
        results = _run_local_cluster(task, seeds, size, used, progress)
    else:  # the user's cluster: its thread count is what can run at once
        used = max(sum(client.nthreads().values()), 1)
        size = batch_size or _default_batch_size(n, used)
        results = _run_on_client(client, task, seeds, size, progress)
    return ReplicateRun(results, int(root.entropy), used, size, time.perf_counter() - start_time)


def _call(task: Task, indices: range, seeds: list[np.random.SeedSequence]) -> list[Any]:
    """Run one batch on a worker; module-level so that it pickles by reference."""
    return task(indices, seeds)


def count_argument(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or a bayesmix error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ArgumentError(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, not {value}")
    return int(value)


def _root_seed(seed: Any) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        # a copy: spawning from the caller's object would advance it, and the same
        # SeedSequence passed twice would then give different replicates
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
    if seed is None:
        return np.random.SeedSequence()
    return np.random.SeedSequence(count_argument("seed", seed, minimum=0))


def _is_client(client: Any) -> bool:
    if "distributed" not in sys.modules:  # nobody made a Client, and importing costs 1 s
        return False
    from distributed import Client

    return isinstance(client, Client)


def usable_cores() -> int:
    # sched_getaffinity honours taskset and cgroup cpusets; cpu_count counts the machine
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _default_batch_size(n: int, workers: int) -> int:
    return max(1, -(-n // (BATCHES_PER_WORKER * workers)))


def _batches(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def _checked(indices: range, results: Any) -> list[Any]:
    # a short or long batch would silently shift every later replicate's result
    got = len(results) if isinstance(results, Sequence | np.ndarray) else None
    if got != len(indices):
        raise ArgumentError(
            f"task returned {type(results).__name__ if got is None else got} results for "
            f"the {len(indices)} replicates {indices.start}..{indices.stop - 1}; it must "
            "return a list of one result per index"
        )
    return list(results)


def _failed(indices: range, error: BaseException) -> FitError:
    return FitError(
        f"replicates {indices.start}..{indices.stop - 1} failed: {type(error).__name__}: {error}"
    )


def _run_sync(task: Task, seeds: list, size: int, progress: bool) -> list[Any]:
    results: list[Any] = []
    with _progress(len(seeds), progress) as bar:
        for indices in _batches(len(seeds), size):
            try:
                out = task(indices, seeds[indices.start : indices.stop])
            except Exception as error:  # KeyboardInterrupt passes through unchanged
                raise _failed(indices, error) from error
            results.extend(_checked(indices, out))
            bar.update(len(indices))
    return results


def _run_local_cluster(task: Task, seeds: list, size: int, workers: int, progress: bool) -> list:
    with local_client(workers) as client:
        return _run_on_client(client, task, seeds, size, progress)


@contextlib.contextmanager
def local_client(workers: int) -> Iterator[distributed.Client]:
    """A client of a fresh local cluster of ``workers`` single-threaded processes, closed
    (and this process's environment restored) on leaving, errors included."""
    import dask
    from distributed import Client, LocalCluster

    # Dask's MALLOC_TRIM_THRESHOLD_=65536 keeps long-lived workers small but turns off
    # glibc's adaptive mmap threshold: every array over 128 KiB is then mmapped and
    # zero-filled afresh, which made 300 x 300 Cholesky replicates 2x slower. These
    # workers live for one run, so speed wins.
    no_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    # the nannies also write the workers' variables (OMP_NUM_THREADS=1, PYTHONHASHSEED...)
    # into this process's os.environ, where later subprocesses would inherit them
    environ, cluster = dict(os.environ), None
    try:
        with dask.config.set(no_trim):
            # processes, not threads: refits hold the GIL in Python code between BLAS calls
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # without a dashboard the scheduler still serves /health and /metrics, on
                # port 8787 unless told otherwise: a second cluster would warn it is taken
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.WARNING,
            )
        with Client(cluster) as client:
            yield client
    finally:  # also on errors and KeyboardInterrupt: no orphaned worker processes
        if cluster is not None:
            cluster.close()
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        os.environ.update(environ)


def _run_on_client(client: Any, task: Task, seeds: list, size: int, progress: bool) -> list:
    from distributed import as_completed

    batches = _batches(len(seeds), size)
    if not batches:
        return []
    # the task (and the data it carries, e.g. a fitted model) goes to each worker once,
    # not once per batch; the list keeps scatter from iterating over the task itself
    [shared] = client.scatter([task], broadcast=True, hash=False)
    futures = {
        client.submit(_call, shared, b, seeds[b.start : b.stop], pure=False): b for b in batches
    }
    done: dict[int, list[Any]] = {}
    try:
        with _progress(len(seeds), progress) as bar:
            for future in as_completed(list(futures)):
                # dropping the last reference frees the batch's results on the worker
                indices = futures.pop(future)
                try:
                    out = future.result()
                except Exception as error:
                    raise _failed(indices, error) from error
                done[indices.start] = _checked(indices, out)
                bar.update(len(indices))
    except BaseException:
        client.cancel(list(futures))  # the batches still pending
        raise
    finally:
        client.cancel([shared])
    return [result for indices in batches for result in done[indices.start]]


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar of finished replicates (notebook-aware), silent when not ``enabled``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="replicates", unit="rep", disable=not enabled or total == 0)
