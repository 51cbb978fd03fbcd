"""Benchmark the Bayesian engine for nonlinear mixed models on Theoph (not a test).

Usage::

    .venv/bin/python bench/bench_nl_bayes.py                 # nutpie, 4 x (1000 + 1000)
    .venv/bin/python bench/bench_nl_bayes.py --samplers nutpie,pymc --models diag2,symm2

Model: ``conc ~ SSfol(Dose, Time, lKe, lKa, lCl)`` with random effects on lKa
and lCl by Subject (``diag2``: pdDiag, nlme's reference fit in
``tests/refs/theoph_nlme_diag2_ml.json``; ``symm2``: pdSymm, LKJ block).

Every (model, sampler) runs in its own subprocess with a fresh, empty PyTensor
compile directory (``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds
PyTensor's numba cache), as ``bench/bench_bayes.py`` does:

* cold wall = process start (before ``import bayesmix``) to finished
  posterior, compiling everything from scratch;
* warm wall = a second ``model.sample`` in the same process with another seed;
* ESS figures use the warm run: min bulk ESS over all parameters (fixed
  effects, SDs, correlations, sigma and every random effect), per second of
  warm wall time and of sampling alone;
* ML wall = best of 5 Lindstrom-Bates ML fits (``model.fit()``) after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

T_START = time.perf_counter()

SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
MODELS = {"diag2": "diagonal", "symm2": "unstructured"}


def worker(name: str, sampler: str, draws: int, tune: int, chains: int) -> dict:
    import warnings

    import bayesmix as bmx

    theoph = bmx.load_dataset("Theoph")
    model = bmx.nlmm(SSFOL, theoph, params=PARAMS, cov={"Subject": MODELS[name]})
    options = dict(draws=draws, tune=tune, chains=chains, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(random_seed=1, **options)
        cold = time.perf_counter() - T_START
        t0 = time.perf_counter()
        result = model.sample(random_seed=2, **options)
        warm = time.perf_counter() - t0
        model.fit()  # warm-up
        ml_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            model.fit()
            ml_times.append(time.perf_counter() - t0)
    diag = result.diagnostics()
    fixef = result.fixef()
    varcorr = result.varcorr()
    return {
        "model": name,
        "sampler": sampler,
        "cold_wall_s": cold,
        "warm_wall_s": warm,
        "sample_s": result.timing["sample_s"],
        "min_ess_bulk": diag["min_ess_bulk"],
        "min_ess_parameter": diag["min_ess_parameter"],
        "max_r_hat": diag["max_r_hat"],
        "divergences": diag["divergences"],
        "ess_per_s_wall": diag["min_ess_bulk"] / warm,
        "ess_per_s_sampling": diag["min_ess_bulk"] / result.timing["sample_s"],
        "ml_wall_s": min(ml_times),
        "posterior_means": {
            **fixef["mean"].round(4).to_dict(),
            **{
                f"sd({r.var1})" if r.grp != "Residual" else "sigma": round(r.mean, 4)
                for r in varcorr.itertuples()
                if r.var2 is None or r.grp == "Residual"
            },
        },
    }


def run(name: str, sampler: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bmx-nl-bench-") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
        cmd = [sys.executable, __file__, "--worker", name, sampler]
        cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"model": name, "sampler": sampler, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="diag2")
    parser.add_argument("--samplers", default="nutpie")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SAMPLER"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.draws, args.tune, args.chains)))
        return
    print(
        f"Theoph SSfol; {args.chains} chains x {args.tune} tune + {args.draws} draws; "
        f"cpu count {os.cpu_count()}"
    )
    print(
        f"{'model':<7}{'sampler':<9}{'cold s':>8}{'warm s':>8}{'sample s':>9}{'minESS':>8}"
        f"{'div':>5}{'rhat':>7}{'ESS/s wall':>11}{'ESS/s samp':>11}{'ML s':>7}  min-ESS parameter"
    )
    for name in args.models.split(","):
        for sampler in args.samplers.split(","):
            r = run(name, sampler, args)
            if "error" in r:
                print(f"{name:<7}{sampler:<9} ERROR {r['error']}")
                continue
            print(
                f"{name:<7}{sampler:<9}{r['cold_wall_s']:>8.1f}{r['warm_wall_s']:>8.1f}"
                f"{r['sample_s']:>9.1f}{r['min_ess_bulk']:>8.0f}{r['divergences']:>5d}"
                f"{r['max_r_hat']:>7.3f}{r['ess_per_s_wall']:>11.1f}"
                f"{r['ess_per_s_sampling']:>11.1f}{r['ml_wall_s']:>7.3f}  {r['min_ess_parameter']}",
                flush=True,
            )
            means = ", ".join(f"{k} {v:.3f}" for k, v in r["posterior_means"].items())
            print(f"{'':<16}posterior means: {means}")


if __name__ == "__main__":
    main()
