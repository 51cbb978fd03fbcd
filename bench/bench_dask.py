"""ML fit of a linear mixed model on a Parquet data set larger than memory, with Dask.

Run from the repository root (the data are written once, then reused)::

    .venv/bin/python bench/bench_dask.py                        # 10^8 rows (issue 19)
    .venv/bin/python bench/bench_dask.py --rows 1e7 --g1 1e5 --g2 1e3 --subset-rows 2e6

The model is ``y ~ x + (1 + x | g1) + (1 | g2)``: ``g1`` (``--g1`` levels) sits
within ``g2`` (``--g2`` levels, ``g2 = g1 * g2_levels // g1_levels``) except for a
fraction ``--crossing`` of the rows, whose ``g2`` is drawn at random (trees in plots,
with a tenth of the records crossing plots, by default). The crossing fraction sets
how many (g1, g2) pairs the products hold: the driver receives about
``24 (n_pairs + ...)`` bytes, see ``bayesmix/dask_model.py``.

On a ``LocalCluster`` of this machine (``--workers`` single-threaded processes) the
script times, in one run:

* a plain Dask pass that reads every column and sums it (the physical limit here);
* the fit's first pass (survey), second pass (products) and the optimiser here;

and reports the driver's peak memory (this process) and each worker's, then fits the
first ``--subset-rows`` rows both in memory (pandas) and on Dask and prints the two
logLiks. Ratios are to the plain read of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_env import machine_line, package_versions  # noqa: E402

import bayesmix as bmx  # noqa: E402

FORMULA = "y ~ x + (1 + x | g1) + (1 | g2)"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_data(folder: Path, rows: int, g1: int, g2: int, crossing: float, per_file: int) -> None:
    """The data set, one Parquet file per ``per_file`` rows (kept when the settings match)."""
    settings = {"rows": rows, "g1": g1, "g2": g2, "crossing": crossing, "per_file": per_file}
    marker = folder / "settings.json"
    if marker.exists() and json.loads(marker.read_text()) == settings:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(20261205)
    intercepts, slopes = rng.normal(0, 1.0, g1), rng.normal(0, 0.3, g1)
    plots = rng.normal(0, 0.7, g2)
    start = time.perf_counter()
    for index, first in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - first)
        chunk = np.random.default_rng([20261205, index])
        level1 = chunk.integers(0, g1, n)
        level2 = (level1.astype(np.int64) * g2 // g1).astype(np.int64)
        crossed = chunk.random(n) < crossing
        level2[crossed] = chunk.integers(0, g2, int(crossed.sum()))
        x = chunk.normal(size=n)
        y = 1.0 + 0.5 * x + intercepts[level1] + slopes[level1] * x + plots[level2]
        y += chunk.normal(0, 1.0, n)
        frame = pd.DataFrame(
            {"y": y, "x": x, "g1": level1.astype(np.int32), "g2": level2.astype(np.int32)}
        )
        frame.to_parquet(folder / f"part-{index:05d}.parquet", index=False)
    marker.write_text(json.dumps(settings))
    print(f"wrote {rows:,} rows to {folder} in {time.perf_counter() - start:.0f} s", flush=True)


def _plain_read(ddf) -> float:
    start = time.perf_counter()
    ddf.map_partitions(lambda part: part.sum().to_frame().T).compute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--g1", type=float, default=1e6)
    parser.add_argument("--g2", type=float, default=1e4)
    parser.add_argument("--crossing", type=float, default=0.1)
    parser.add_argument("--partition-rows", type=float, default=2e6)
    parser.add_argument("--subset-rows", type=float, default=1e7)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--method", default="ML")
    parser.add_argument("--dir", default="/tmp/bayesmix_bench_dask")
    args = parser.parse_args()
    rows, g1, g2 = int(args.rows), int(args.g1), int(args.g2)
    per_file = int(args.partition_rows)
    folder = Path(args.dir) / f"n{rows}_g{g1}_{g2}_c{args.crossing}"
    print(machine_line())
    print(package_versions(("bayesmix", "dask", "distributed", "numpy", "pandas", "pyarrow")))
    print(f"{FORMULA}: {rows:,} rows, g1 {g1:,} levels within g2 {g2:,}, crossing {args.crossing}")
    write_data(folder, rows, g1, g2, args.crossing, per_file)

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from bayesmix.inference.distributed import usable_cores

    workers = args.workers or usable_cores()
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        ddf = dd.read_parquet(files)
        plain = _plain_read(ddf)
        start = time.perf_counter()
        fit = bmx.lmm(FORMULA, ddf).fit(args.method, client=client, progress=False)
        total = time.perf_counter() - start
        worker_peaks = client.run(_peak_rss_mib)
    t = fit.timing
    print(f"plain read of every column: {plain:.1f} s ({ddf.npartitions} partitions)")
    print(
        f"fit: {total:.1f} s = survey {t['survey_s']:.1f} + products {t['products_s']:.1f} "
        f"+ optimiser {t['optimise_s']:.1f} ({fit.estimates.n_evaluations} evaluations); "
        f"{total / plain:.2f}x the plain read"
    )
    print(
        f"peak memory: driver {_peak_rss_mib():,.0f} MiB; workers "
        + ", ".join(f"{v:,.0f}" for v in worker_peaks.values())
        + " MiB"
    )
    print(f"logLik {fit.loglik:.6f}; sigma {fit.sigma:.5f}")
    print(fit.varcorr().round(5).to_string())

    subset_rows = int(args.subset_rows)
    if subset_rows:
        n_files = max(1, -(-subset_rows // per_file))
        subset = files[:n_files]
        data = pd.concat([pd.read_parquet(f) for f in subset], ignore_index=True)
        start = time.perf_counter()
        in_memory = bmx.lmm(FORMULA, data).fit(args.method)
        memory_s = time.perf_counter() - start
        start = time.perf_counter()
        on_dask = bmx.lmm(FORMULA, dd.read_parquet(subset)).fit(
            args.method, client="sync", progress=False
        )
        dask_s = time.perf_counter() - start
        print(
            f"subset of {len(data):,} rows: logLik in memory {in_memory.loglik:.8f} "
            f"({memory_s:.1f} s), on Dask {on_dask.loglik:.8f} ({dask_s:.1f} s, sync), "
            f"difference {on_dask.loglik - in_memory.loglik:.2e}"
        )


if __name__ == "__main__":
    main()
