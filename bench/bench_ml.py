"""Speed of the ML/REML engine against lme4, both run by this script (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_ml.py                       # all benchmarks
    .venv/bin/python bench/bench_ml.py insteval     # some of: sleepstudy, insteval, synthetic
    .venv/bin/python bench/bench_ml.py synthetic --no-r      # bayesmix only
    .venv/bin/python bench/bench_ml.py insteval --repeats 5

For each benchmark, bayesmix fits through its public path and lme4 fits the
same data in R, started by this script (``bench/peer_r.py``: the data go to R
through a temporary CSV; the factors keep their levels):

* bayesmix: design s = ``bmx.lmm(formula, data)`` (formula parsing and
  ``build_design``), fit s = ``model.fit(method)``;
* lme4: design s = ``lFormula(formula, data)``, total s = ``lmer(formula,
  data)``, fit s = total s - design s (``lmer`` builds the same model frame
  and design first). ``system.time`` is around these calls only.

Both sides first fit sleepstudy once, untimed, so that one-time loading (NLopt,
lme4's compiled code) is in neither figure. With ``--repeats n`` both sides
repeat the design and fit n times and report medians. Printed: both sides'
times, the ratios bayesmix / lme4 (< 1: bayesmix is faster), the logLik
difference (REML log-likelihood for REML fits), the number of deviance
evaluations, and the BLAS each side used (numpy's through threadpoolctl, R's
from ``sessionInfo()``): lme4's sparse Cholesky (CHOLMOD) and bayesmix's
blocked dense factors both call BLAS, so a faster BLAS on one side is part of
a ratio.

Peak memory: bayesmix's figure is this process's maximum resident set size
(``getrusage``) after the benchmark, so it is cumulative over the benchmarks
run before it (run one per process for clean figures); R's is its process's
``VmHWM``, data included. On a shared or small machine set
``OPENBLAS_NUM_THREADS=1``: oversubscribed multi-threaded BLAS makes the dense
Cholesky factorisations many times slower.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import warnings

import numpy as np
import pandas as pd
from bench_env import machine_line, numpy_blas, package_versions
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx
from bayesmix.errors import SingularFitWarning

# lme4's side: the design alone, then the whole lmer call, ``repeats`` times.
LMER = r"""
suppressPackageStartupMessages(library(lme4))
form <- as.formula(spec$formula)
reml <- isTRUE(spec$reml)
# warm-up (untimed), as on the Python side: loads lme4's compiled code
invisible(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
design_s <- numeric(spec$repeats)
total_s <- numeric(spec$repeats)
for (i in seq_len(spec$repeats)) {
  design_s[i] <- elapsed(lf <- lFormula(form, data = data, REML = reml))
  total_s[i] <- elapsed(fit <- lmer(form, data = data, REML = reml))
}
emit(list(
  design_s = I(design_s),  # I(): a JSON array even for one repeat
  total_s = I(total_s),
  loglik = as.numeric(logLik(fit)),
  sigma = sigma(fit),
  n_evaluations = fit@optinfo$feval,
  optimizer = fit@optinfo$optimizer,
  messages = as.list(c(fit@optinfo$conv$lme4$messages, unlist(fit@optinfo$warnings)))
))
"""


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sleepstudy_case():
    return bmx.load_dataset("sleepstudy"), "Reaction ~ Days + (Days | Subject)", "REML"


def insteval_case():
    data = bmx.load_dataset("InstEval")[["y", "service", "s", "d", "dept"]]
    return data, "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", "ML"


def synthetic_case(n: int = 1_000_000, m1: int = 10_000, m2: int = 1_000, seed: int = 1):
    """y ~ 1 + x + (1 + x | g1) + (1 | g2) with crossed, unbalanced groups (categorical columns)."""
    rng = np.random.default_rng(seed)
    g1 = rng.integers(0, m1, n)
    g2 = rng.integers(0, m2, n)
    x = rng.normal(size=n)
    b1 = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=m1)
    b2 = rng.normal(scale=0.7, size=m2)
    y = 1 + 0.5 * x + b1[g1, 0] + b1[g1, 1] * x + b2[g2] + rng.normal(size=n)
    data = pd.DataFrame(
        {
            "y": y,
            "x": x,
            # categorical, as the datasets are: both sides get factors, not strings to encode
            "g1": pd.Categorical.from_codes(g1, categories=[f"a{i}" for i in range(m1)]),
            "g2": pd.Categorical.from_codes(g2, categories=[f"b{i}" for i in range(m2)]),
        }
    )
    return data, "y ~ 1 + x + (1 + x | g1) + (1 | g2)", "ML"


CASES = {"sleepstudy": sleepstudy_case, "insteval": insteval_case, "synthetic": synthetic_case}
DEFAULT_REPEATS = {"sleepstudy": 20, "insteval": 3, "synthetic": 1}


def time_fits(data: pd.DataFrame, formula: str, method: str, repeats: int):
    """``repeats`` times ``bmx.lmm`` and ``fit``: design and fit seconds, last model and fit."""
    design_s, fit_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model = bmx.lmm(formula, data)
        built = time.perf_counter()
        fit = model.fit(method=method)
        done = time.perf_counter()
        design_s.append(built - start)
        fit_s.append(done - built)
    return design_s, fit_s, model, fit


def fit_bayesmix(data: pd.DataFrame, formula: str, method: str, repeats: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        design_s, fit_s, model, fit = time_fits(data, formula, method, repeats)
    return {
        "design_s": statistics.median(design_s),
        "fit_s": statistics.median(fit_s),
        "total_s": statistics.median(np.add(design_s, fit_s)),
        "loglik": fit.loglik,
        "sigma": fit.sigma,
        "n_evaluations": int(fit.estimates.n_evaluations),
        "n_obs": model.design.n_obs,
        "levels": {b.grouping: b.n_levels for b in model.design.blocks},
        "peak_rss_mb": peak_rss_mb(),
    }


def fit_lme4(data: pd.DataFrame, formula: str, method: str, repeats: int, timeout) -> dict:
    spec = {"formula": formula, "reml": method == "REML", "repeats": repeats}
    out = run_r(LMER, data, {**spec, "packages": ["lme4", "Matrix"]}, timeout=timeout)
    if "error" in out:
        return out
    design = statistics.median(out["design_s"])
    total = statistics.median(out["total_s"])
    return {**out, "design_s": design, "fit_s": total - design, "total_s": total}


def report(name: str, method: str, repeats: int, ours: dict, peer: dict | None) -> None:
    print(
        f"\n{name} {method}: {ours['n_obs']} rows, levels {ours['levels']}; "
        + (f"median of {repeats} fits" if repeats > 1 else "one fit")
        + f"; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'':<10}{'design s':>10}{'fit s':>10}{'total s':>10}{'evals':>7}{'s/eval':>9}"
        f"{'logLik':>16}{'sigma':>10}{'peak MiB':>10}"
    )
    rows = [("bayesmix", ours)]
    if peer is not None and "error" not in peer:
        rows.append(("lme4", peer))
    for label, r in rows:
        per_eval = r["fit_s"] / r["n_evaluations"] if r["n_evaluations"] else float("nan")
        print(
            f"{label:<10}{r['design_s']:>10.4f}{r['fit_s']:>10.4f}{r['total_s']:>10.4f}"
            f"{r['n_evaluations']:>7d}{per_eval:>9.4f}{r['loglik']:>16.4f}{r['sigma']:>10.5f}"
            f"{r['peak_rss_mb']:>10.0f}"
        )
    if peer is None:
        return
    if "error" in peer:
        print(f"lme4: not run ({peer['error']})")
        return
    ratios = ", ".join(
        f"{key.removesuffix('_s')} {ours[key] / peer[key]:.2f}x"
        for key in ("design_s", "fit_s", "total_s")
    )
    print(
        f"bayesmix / lme4: {ratios}; logLik diff (bayesmix - lme4) "
        f"{ours['loglik'] - peer['loglik']:+.2e}; lme4 optimizer {peer['optimizer']}"
        + (f"; lme4 messages: {peer['messages']}" if peer["messages"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", help=f"some of {', '.join(CASES)} (default: all)")
    parser.add_argument("--repeats", type=int, help="fits per side (default: per benchmark)")
    parser.add_argument("--no-r", action="store_true", help="bayesmix only")
    parser.add_argument("--r-timeout", type=float, default=3600, help="seconds per R run")
    args = parser.parse_args()
    unknown = set(args.benches) - set(CASES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {list(CASES)}")
    print(machine_line())
    print(package_versions(("bayesmix", "numpy", "scipy", "nlopt")))
    print(f"bayesmix side BLAS (numpy, scipy): {numpy_blas()}")
    run_peer = not args.no_r and r_available()
    if not args.no_r and not run_peer:
        print("Rscript not found: lme4 not run")
    data, formula, _ = sleepstudy_case()
    bmx.lmm(formula, data).fit()  # untimed warm-up (loads NLopt), as lme4's side does
    r_line = None
    for name in args.benches or list(CASES):
        data, formula, method = CASES[name]()
        repeats = args.repeats or DEFAULT_REPEATS[name]
        ours = fit_bayesmix(data, formula, method, repeats)
        peer = fit_lme4(data, formula, method, repeats, args.r_timeout) if run_peer else None
        report(name, method, repeats, ours, peer)
        if peer is not None and "error" not in peer:
            r_line = r_blas_line(peer)
    if r_line:
        print(f"\nlme4 side: {r_line}")


if __name__ == "__main__":
    main()
