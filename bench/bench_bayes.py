"""Benchmark bayesmix's Bayesian engine (not a test).

Usage::

    .venv/bin/python bench/bench_bayes.py                       # sleepstudy, orthodont
    .venv/bin/python bench/bench_bayes.py --cases all --samplers nutpie,nutpie-python,pymc

Every (case, sampler) runs in its own subprocess with a fresh, empty PyTensor
compile directory (``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds
PyTensor's numba cache), so:

* cold wall = process start (before ``import bayesmix``) to finished posterior,
  compiling everything from scratch;
* warm wall = a second ``sample_model`` call in the same process with a new
  seed (model rebuilt, compiled code loaded from the now-warm cache);
* "nutpie" is the default route (``compile="auto"``: nutpie's cfunc for these
  run lengths), "nutpie-python" the Python-callback route;
* ESS figures use the warm run: min bulk ESS over all parameters (fixed
  effects, SDs, correlations, sigma and every group effect), divided by the
  warm wall time and by the sampling time alone.
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

CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "orthodont": ("Orthodont", "distance ~ age + Sex + (age | Subject)"),
    # rack and nutrient are numeric (as stored in the CSV), as in the issue
    "arabidopsis": (
        "Arabidopsis",
        "log(1 + total.fruits) ~ rack + nutrient + amd + status"
        " + (nutrient | popu) + (nutrient | popu:gen)",
    ),
    "insteval": ("InstEval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"),
}
TARGET_WALL = {"sleepstudy": 5.7, "orthodont": 6.8, "arabidopsis": 11.0, "insteval": 71.0}


def worker(case: str, sampler: str, draws: int, tune: int, chains: int) -> dict:
    import warnings

    import bayesmix as bmx
    from bayesmix.bayes_fit import sample_model
    from bayesmix.design import build_design

    dataset, formula = CASES[case]
    design = build_design(formula, bmx.load_dataset(dataset))
    # "nutpie-python" / "nutpie-cfunc" force a compile route (see bayesmix.bayes_fit)
    route = sampler.split("-")[1] if "-" in sampler else "auto"
    kwargs = dict(draws=draws, tune=tune, chains=chains, sampler=sampler.split("-")[0])
    kwargs["compile"] = route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample_model(design, random_seed=1, **kwargs)
        cold = time.perf_counter() - T_START
        t0 = time.perf_counter()
        warm_result = sample_model(design, random_seed=2, **kwargs)
        warm = time.perf_counter() - t0
    diag = warm_result.diagnostics()
    sample_s = warm_result.timing["sample_s"]
    return {
        "case": case,
        "sampler": sampler,
        "cold_wall_s": cold,
        "warm_wall_s": warm,
        "sample_s": sample_s,
        "min_ess_bulk": diag["min_ess_bulk"],
        "min_ess_parameter": diag["min_ess_parameter"],
        "max_r_hat": diag["max_r_hat"],
        "divergences": diag["divergences"],
        "ess_per_s_wall": diag["min_ess_bulk"] / warm,
        "ess_per_s_sampling": diag["min_ess_bulk"] / sample_s,
    }


def run_case(case: str, sampler: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bmx-bench-") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            case,
            sampler,
            "--draws",
            str(args.draws),
            "--tune",
            str(args.tune),
            "--chains",
            str(args.chains),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"case": case, "sampler": sampler, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sleepstudy,orthodont")
    parser.add_argument("--samplers", default="nutpie,pymc")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SAMPLER"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.draws, args.tune, args.chains)))
        return
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    print(
        f"{args.chains} chains x {args.tune} tune + {args.draws} draws; cpu count {os.cpu_count()}"
    )
    header = (
        f"{'case':<12}{'sampler':<13}{'cold s':>8}{'warm s':>8}{'target':>8}{'sample s':>9}"
        f"{'minESS':>8}{'div':>5}{'rhat':>7}{'ESS/s wall':>11}{'ESS/s samp':>11}  min-ESS parameter"
    )
    print(header)
    results = []
    for case in cases:
        for sampler in args.samplers.split(","):
            r = run_case(case, sampler, args)
            results.append(r)
            if "error" in r:
                print(f"{case:<12}{sampler:<13} ERROR {r['error']}")
                continue
            print(
                f"{case:<12}{sampler:<13}{r['cold_wall_s']:>8.1f}{r['warm_wall_s']:>8.1f}"
                f"{TARGET_WALL[case]:>8.1f}{r['sample_s']:>9.1f}{r['min_ess_bulk']:>8.0f}"
                f"{r['divergences']:>5d}{r['max_r_hat']:>7.3f}{r['ess_per_s_wall']:>11.1f}"
                f"{r['ess_per_s_sampling']:>11.1f}  {r['min_ess_parameter']}",
                flush=True,
            )
    for case in cases:
        by = {r["sampler"]: r for r in results if r["case"] == case and "error" not in r}
        if "nutpie" in by and "pymc" in by:
            ratio = by["nutpie"]["ess_per_s_sampling"] / by["pymc"]["ess_per_s_sampling"]
            print(f"{case}: nutpie / PyMC NUTS sampling ESS/s = {ratio:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
