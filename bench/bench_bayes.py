"""Benchmark bayesmix's Bayesian engine (not a test).

Usage::

    .venv/bin/python bench/bench_bayes.py                       # sleepstudy, orthodont
    .venv/bin/python bench/bench_bayes.py --cases all --samplers nutpie,nutpie-python,pymc
    .venv/bin/python bench/bench_bayes.py --cases all --bambi-python /tmp/bambi-venv/bin/python

Every (case, sampler) runs in its own subprocess with a fresh, empty PyTensor
compile directory (``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds
PyTensor's numba cache), so:

* cold wall = process start (before ``import bayesmix``) to finished posterior,
  compiling everything from scratch;
* rerun wall (``--rerun``) = cold wall of a second fresh process sharing the
  first one's compile directory (a user re-running a script or notebook);
* warm wall = a second ``sample_model`` call in the same process with a new
  seed (model rebuilt, compiled code loaded from the now-warm cache);
* "nutpie" is the default route (``compile="auto"``: nutpie's cfunc for these
  run lengths), "nutpie-python" the Python-callback route;
* ESS figures use the warm run: min bulk ESS over all parameters (fixed
  effects, SDs, correlations, sigma and every group effect), divided by the
  warm wall time and by the sampling time alone; the nutpie / PyMC ratio is
  also printed for the first (seed 1) run, since a sampler's speed varies by
  seed (PyMC's NUTS on InstEval: under 100 s to 220 s).

``--bambi-python PATH`` also runs the peer package bambi on the same cases
(``PATH bench/peer_bambi.py --worker CASE METHOD`` for each of
``--bambi-methods``, default ``nutpie``; each in its own subprocess with its
own empty compile directory, measured the same way) and prints a second table:
bayesmix's default (nutpie) against bambi's best method by warm ESS/s, with
ratios bayesmix / bambi. ``PATH`` is the python of a separate environment with
bambi and nutpie installed (bambi's formulae pin clashes with bayesmix's); see
``bench/peer_bambi.py`` for how to create it and for how bambi's models differ
(uncorrelated group effects, other default priors).
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
PEER_BAMBI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_bambi.py")


def worker(case: str, sampler: str, draws: int, tune: int, chains: int) -> dict:
    import warnings

    import bayesmix as bmx
    from bayesmix.bayes.fit import sample_model
    from bayesmix.spec.design import build_design

    dataset, formula = CASES[case]
    design = build_design(formula, bmx.load_dataset(dataset))
    # "nutpie-python" / "nutpie-cfunc" force a compile route (see bayesmix.bayes.fit)
    route = sampler.split("-")[1] if "-" in sampler else "auto"
    kwargs = dict(draws=draws, tune=tune, chains=chains, sampler=sampler.split("-")[0])
    kwargs["compile"] = route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold_result = sample_model(design, random_seed=1, **kwargs)
        cold = time.perf_counter() - T_START
        t0 = time.perf_counter()
        warm_result = sample_model(design, random_seed=2, **kwargs)
        warm = time.perf_counter() - t0
    diag = warm_result.diagnostics()
    sample_s = warm_result.timing["sample_s"]
    cold_ess = cold_result.diagnostics()["min_ess_bulk"]
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
        # the first (seed 1) run too: samplers' speed varies by seed
        "seed1_ess_per_s_sampling": cold_ess / cold_result.timing["sample_s"],
    }


def run_case(case: str, sampler: str, args) -> dict:
    return run_worker([sys.executable, __file__, "--worker", case, sampler], case, sampler, args)


def run_bambi(case: str, method: str, args) -> dict:
    """bambi's worker (bench/peer_bambi.py) under the peer environment's python."""
    cmd = [args.bambi_python, PEER_BAMBI, "--worker", case, method]
    result = run_worker(cmd, case, f"bambi-{method}", args)
    result["sampler"] = f"bambi-{method}"
    return result


def run_worker(cmd: list[str], case: str, sampler: str, args) -> dict:
    """Run a worker command in a fresh subprocess with an empty PyTensor compile directory."""
    with tempfile.TemporaryDirectory(prefix="bmx-bench-") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
        cmd = [
            *cmd,
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
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if args.rerun:  # a new process finding the compiled code in the on-disk cache
            again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rerun = json.loads(again.stdout.strip().splitlines()[-1])
            result["rerun_wall_s"] = rerun["cold_wall_s"]
    return result


def print_row(r: dict, target: float | None) -> None:
    if "error" in r:
        print(f"{r['case']:<12}{r['sampler']:<13} ERROR {r['error']}", flush=True)
        return
    target_s = f"{target:>8.1f}" if target is not None else f"{'-':>8}"
    print(
        f"{r['case']:<12}{r['sampler']:<13}{r['cold_wall_s']:>8.1f}{r['warm_wall_s']:>8.1f}"
        f"{target_s}{r['sample_s']:>9.1f}{r['min_ess_bulk']:>8.0f}"
        f"{r['divergences']:>5d}{r['max_r_hat']:>7.3f}{r['ess_per_s_wall']:>11.1f}"
        f"{r['ess_per_s_sampling']:>11.1f}  {r['min_ess_parameter']}"
        + (f"  (rerun {r['rerun_wall_s']:.1f} s)" if "rerun_wall_s" in r else ""),
        flush=True,
    )


def print_bambi_comparison(cases: list[str], results: list[dict], bambi: list[dict]) -> None:
    """bayesmix's default (nutpie) against bambi's best method (by warm ESS/s)."""
    print(
        "\nbayesmix (nutpie) vs bambi (best method by ESS/s wall); ratio = bayesmix / bambi"
        " (wall: < 1 means bayesmix is faster; ESS, ESS/s: > 1 means bayesmix is better)"
    )
    metrics = [
        ("cold wall s", "cold_wall_s"),
        ("warm wall s", "warm_wall_s"),
        ("min ESS", "min_ess_bulk"),
        ("ESS/s wall", "ess_per_s_wall"),
    ]
    print(f"{'':<27}" + "".join(f"{label:^24}" for label, _ in metrics))
    print(f"{'case':<12}{'bambi best':<15}" + f"{'bmx':>8}{'bambi':>8}{'ratio':>8}" * len(metrics))
    for case in cases:
        ours = [r for r in results if r["case"] == case and r["sampler"] == "nutpie"]
        theirs = [r for r in bambi if r["case"] == case and "error" not in r]
        if not ours or "error" in ours[0] or not theirs:
            missing = "bayesmix nutpie" if not ours or "error" in ours[0] else "bambi"
            print(f"{case:<12}(no {missing} result)")
            continue
        best = max(theirs, key=lambda r: r["ess_per_s_wall"])
        row = f"{case:<12}{best['sampler'].removeprefix('bambi-'):<15}"
        for _, key in metrics:
            a, b = ours[0][key], best[key]
            row += f"{a:>8.1f}{b:>8.1f}{a / b if b else float('nan'):>8.2f}"
        print(row)
    versions = next((r["versions"] for r in bambi if "versions" in r), None)
    if versions:
        print("bambi environment: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sleepstudy,orthodont")
    parser.add_argument("--samplers", default="nutpie,pymc")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SAMPLER"))
    parser.add_argument(
        "--bambi-python",
        metavar="PATH",
        help="python of a peer environment with bambi and nutpie: also benchmark bambi",
    )
    parser.add_argument(
        "--bambi-methods", default="nutpie", help="bambi inference methods (nutpie,pymc)"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="also time a second fresh process that finds the compile cache warm",
    )
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
    results, bambi = [], []
    for case in cases:
        for sampler in args.samplers.split(","):
            r = run_case(case, sampler, args)
            results.append(r)
            print_row(r, TARGET_WALL[case])
        for method in args.bambi_methods.split(",") if args.bambi_python else []:
            r = run_bambi(case, method, args)
            bambi.append(r)
            print_row(r, None)
    for case in cases:
        by = {r["sampler"]: r for r in results if r["case"] == case and "error" not in r}
        if "nutpie" in by and "pymc" in by:
            ours, theirs = by["nutpie"], by["pymc"]
            ratio = ours["ess_per_s_sampling"] / theirs["ess_per_s_sampling"]
            key = "seed1_ess_per_s_sampling"
            print(
                f"{case}: nutpie / PyMC NUTS sampling ESS/s = {ratio:.1f}x (target >= 5x); "
                f"seed 1 run: {ours[key]:.1f} / {theirs[key]:.1f} = {ours[key] / theirs[key]:.1f}x"
            )
    if args.bambi_python:
        print_bambi_comparison(cases, results, bambi)


if __name__ == "__main__":
    main()
