"""Speed and memory benchmarks of the ML/REML engine (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_ml.py            # all benchmarks
    .venv/bin/python bench/bench_ml.py insteval   # one of: sleepstudy, insteval, synthetic

Peak memory is the process's maximum resident set size (``getrusage``), read
after each benchmark, so it is cumulative over the benchmarks run before it;
run one benchmark per process for clean figures. On a shared or small machine
set ``OPENBLAS_NUM_THREADS=1``: oversubscribed multi-threaded BLAS makes the
dense Cholesky factorisations many times slower.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.ml.fit import _blas_threads, deviance_function, fit_estimates
from bayesmix.spec.design import Design, RandomBlock, build_design

DATA = Path(__file__).resolve().parents[1] / "bayesmix" / "datasets" / "data"
INSTEVAL_LME4_LOGLIK = -118825.8914  # lme4 1.1-31, ML fit, ~25 s


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_eval(design: Design, theta: np.ndarray, reml: bool, repeats: int = 5) -> float:
    kernel = deviance_function(design)
    with _blas_threads(kernel):  # as fit_estimates does
        start = time.perf_counter()
        for _ in range(repeats):
            kernel(theta, reml=reml)
    return (time.perf_counter() - start) / repeats


def bench_sleepstudy() -> None:
    data = pd.read_csv(DATA / "sleepstudy.csv")
    design = build_design("Reaction ~ Days + (Days | Subject)", data)
    fit_estimates(design, "REML")  # warm-up: first call loads nlopt
    times = []
    for _ in range(20):
        start = time.perf_counter()
        est = fit_estimates(design, "REML")
        times.append(time.perf_counter() - start)
    print(
        f"sleepstudy (Days|Subject) REML: median {np.median(times) * 1e3:.1f} ms, "
        f"min {min(times) * 1e3:.1f} ms over 20 fits; {est.n_evaluations} evaluations, "
        f"REML criterion {est.criterion:.6f} (lme4 1743.628272)"
    )


def bench_insteval() -> None:
    start = time.perf_counter()
    data = pd.read_csv(DATA / "InstEval.csv.gz", dtype=str)
    data["y"] = data["y"].astype(float)
    design = build_design("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", data)
    t_design = time.perf_counter() - start
    start = time.perf_counter()
    est = fit_estimates(design, "ML")
    t_fit = time.perf_counter() - start
    t_eval = time_eval(design, est.theta, reml=False)
    print(
        f"InstEval ML ({design.n_obs} rows, levels "
        f"{[b.n_levels for b in design.blocks]}): read+design {t_design:.2f} s, "
        f"fit {t_fit:.2f} s ({est.n_evaluations} evaluations, {t_eval * 1e3:.1f} ms each); "
        f"logLik {est.loglik:.4f} (lme4 {INSTEVAL_LME4_LOGLIK}, diff "
        f"{est.loglik - INSTEVAL_LME4_LOGLIK:+.2e}); peak RSS {peak_rss_mb():.0f} MiB"
    )


def synthetic_design(
    n: int = 1_000_000, m1: int = 10_000, m2: int = 1_000, seed: int = 1
) -> Design:
    """y ~ 1 + x + (1 + x | g1) + (1 | g2) with crossed, unbalanced groups."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, m1, n)
    g2 = rng.integers(0, m2, n)
    x = rng.normal(size=n)
    b1 = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=m1)
    b2 = rng.normal(scale=0.7, size=m2)
    y = 1 + 0.5 * x + b1[g1, 0] + b1[g1, 1] * x + b2[g2] + rng.normal(size=n)
    ones = np.ones(n)
    blocks = (
        RandomBlock(
            "g1",
            tuple(map(str, range(m1))),
            g1,
            ("Intercept", "x"),
            np.column_stack([ones, x]),
            "unstructured",
        ),
        RandomBlock(
            "g2", tuple(map(str, range(m2))), g2, ("Intercept",), ones[:, None], "unstructured"
        ),
    )
    return Design(
        formula="y ~ 1 + x + (1 + x | g1) + (1 | g2)",
        response="y",
        y=y,
        X=np.column_stack([ones, x]),
        fixed_terms=("Intercept", "x"),
        blocks=blocks,
        data=pd.DataFrame(index=range(0)),
    )


def bench_synthetic() -> None:
    design = synthetic_design()
    rss_data = peak_rss_mb()
    start = time.perf_counter()
    est = fit_estimates(design, "ML")
    t_fit = time.perf_counter() - start
    t_eval = time_eval(design, est.theta, reml=False, repeats=3)
    print(
        f"synthetic 1e6 rows, (1 + x | g1: 10000) + (1 | g2: 1000), ML: fit {t_fit:.1f} s "
        f"({est.n_evaluations} evaluations, {t_eval:.2f} s each); theta {np.round(est.theta, 4)}; "
        f"sigma {est.sigma:.4f}; peak RSS {peak_rss_mb():.0f} MiB (data alone {rss_data:.0f} MiB)"
    )


BENCHES = {"sleepstudy": bench_sleepstudy, "insteval": bench_insteval, "synthetic": bench_synthetic}

if __name__ == "__main__":
    print(
        f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    for name in sys.argv[1:] or list(BENCHES):
        BENCHES[name]()
