"""Benchmark bayesmix's Bayesian engine against PyMC's NUTS and bambi (not a test).

Usage::

    .venv/bin/python bench/bench_bayes.py                       # sleepstudy, orthodont
    .venv/bin/python bench/bench_bayes.py --cases sleepstudy,orthodont,arabidopsis --seeds 1,2,3
    .venv/bin/python bench/bench_bayes.py --cases all --samplers nutpie,nutpie-python,pymc
    .venv/bin/python bench/bench_bayes.py --cases all --bambi-python /tmp/bambi-venv/bin/python

Every (case, sampler) runs in its own subprocess with fresh, empty compile
caches: PyTensor's (``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds
PyTensor's numba cache) and bayesmix's (``BAYESMIX_CACHE_DIR``: the generic
kernel and the compiled nutpie wrappers). In it:

* cold wall = process start (before ``import bayesmix``) to the finished
  posterior of a first run (seed 0), compiling everything from scratch; that
  run is used for nothing else;
* then one warm run per ``--seeds`` seed, in the same process: warm wall =
  one ``sample_model`` call (PyMC model rebuilt, compiled code reused as the
  sampler's compile policy allows, see below);
* loop s = the draw loop alone (tuning included), timed by the same clock for
  every sampler (``bench/loop_timer.py``): from the call that starts the chains
  to all draws in memory, conversion to InferenceData excluded. The samplers'
  own clocks differ: PyMC's ``sampling_time`` stops before the conversion,
  bayesmix's nutpie ``sample_s`` (column "bmx samp s") spans ``nutpie.sample``,
  conversion included;
* steps/draw = mean leapfrog steps per draw (``n_steps``), the work of a draw;
* min ESS = min bulk ESS over all parameters (fixed effects, SDs,
  correlations, sigma and every group effect); ESS/s loop = min ESS / loop s
  (the sampler comparison), ESS/s wall = min ESS / warm wall;
* a sampler's speed varies by seed (PyMC's NUTS on InstEval: under 100 s to
  220 s), so per-seed figures are shown as "median [min-max]" over the seeds,
  and a ratio of two samplers as the ratio of medians with the range over all
  pairs of seeds (lowest / highest to highest / lowest).

Warm wall is *not* a sampler comparison. bayesmix's nutpie route keeps the
compiled model in memory and reuses it for a model of the same structure, so
its warm run compiles nothing; ``pm.sample`` (bayesmix's ``sampler="pymc"``)
and bambi compile their functions again in every call, from the on-disk cache.
Warm-wall and ESS-per-wall-second ratios therefore compare compile policies as
much as samplers; the "loop" figures compare samplers.

The samplers do not always sample the same model: with nutpie and 10,000
observations or more (InstEval), bayesmix integrates the fixed effects and
some blocks out of the likelihood (``bayes/likelihoods/collapsed.py``), while
``sampler="pymc"`` samples the full model; the posterior is the same.

``--bambi-python PATH`` also runs the peer package bambi on the same cases
(``PATH bench/peer_bambi.py --worker CASE METHOD`` for each of
``--bambi-methods``, default ``nutpie``; each in its own subprocess with its
own empty compile directory, measured the same way, loop clock included) and
prints a second table: bayesmix's default (nutpie) against bambi's best method
by median ESS/s loop, with ratios bayesmix / bambi. ``PATH`` is the python of a
separate environment with bambi and nutpie installed (bambi's formulae pin
clashes with bayesmix's); see ``bench/peer_bambi.py`` for how to create it and
for how bambi's models differ (uncorrelated group effects, other default
priors).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before any heavy import: the cold wall starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from bench_env import machine_line, package_versions  # noqa: E402

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
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PEER_BAMBI = os.path.join(BENCH_DIR, "peer_bambi.py")
COLD_SEED = 0  # the cold run's seed; kept out of the per-seed figures

WARM_NOTE = (
    "warm wall: bayesmix's nutpie route reuses the model compiled earlier in the process;"
    " pm.sample (sampler 'pymc') and bambi recompile from the on-disk cache in every call,"
    " so warm-wall and ESS/s-wall ratios compare compile policies, not samplers."
    " ESS/s loop (same clock for all: draw loop only, trace conversion excluded) compares"
    " samplers."
)


def worker(case: str, sampler: str, draws: int, tune: int, chains: int, seeds: list[int]) -> dict:
    import warnings

    import bayesmix as bmx
    from bayesmix.bayes.compile.cache import configure_pytensor

    configure_pytensor()  # before PyTensor is imported (by loop_timer's PyMC import too)
    import loop_timer

    from bayesmix.bayes.fit import sample_model
    from bayesmix.spec.design import build_design

    loop_timer.install()
    dataset, formula = CASES[case]
    design = build_design(formula, bmx.load_dataset(dataset))
    # "nutpie-python" / "nutpie-cfunc" force a compile route (see bayesmix.bayes.fit)
    route = sampler.split("-")[1] if "-" in sampler else "auto"
    kwargs = dict(draws=draws, tune=tune, chains=chains, sampler=sampler.split("-")[0])
    kwargs["compile"] = route
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample_model(design, random_seed=COLD_SEED, **kwargs)
        cold = time.perf_counter() - T_START
        for seed in seeds:
            loop_timer.take()
            t0 = time.perf_counter()
            result = sample_model(design, random_seed=seed, **kwargs)
            wall = time.perf_counter() - t0
            spans = loop_timer.take()
            runs.append(run_record(seed, wall, spans, result))
    return {"case": case, "sampler": sampler, "cold_wall_s": cold, "runs": runs}


def run_record(seed: int, wall: float, spans: dict, result) -> dict:
    """One warm run's figures: walls, the draw loop, ESS, R-hat, divergences, steps."""
    diag = result.diagnostics()  # computed once by the sampling check, cached
    stats = result.idata["sample_stats"]
    # leapfrog steps per draw: the cost of a draw, whatever one step costs
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    return {
        "seed": seed,
        "warm_wall_s": wall,
        "bmx_sample_s": result.timing["sample_s"],
        "loop_s": spans["loop_s"],
        "convert_s": spans["convert_s"],
        "min_ess_bulk": diag["min_ess_bulk"],
        "min_ess_parameter": diag["min_ess_parameter"],
        "max_r_hat": diag["max_r_hat"],
        "divergences": diag["divergences"],
        "target_accept": result.timing["target_accept"],
        "steps_per_draw": steps,
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
        env = dict(
            os.environ,
            # bayesmix's own layout (PyTensor's directory inside its cache), which
            # bambi's worker gets through PYTENSOR_FLAGS
            BAYESMIX_CACHE_DIR=f"{cache}/bayesmix",
            PYTENSOR_FLAGS=f"base_compiledir={cache}/bayesmix/pytensor",
        )
        cmd = [
            *cmd,
            *("--draws", str(args.draws), "--tune", str(args.tune)),
            *("--chains", str(args.chains), "--seeds", args.seeds),
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


# --- per-seed figures --------------------------------------------------------------


def per_seed(r: dict, key: str) -> list[float]:
    """One figure of every warm run (derived ESS rates included)."""
    out = []
    for run in r["runs"]:
        if key == "ess_per_s_loop":
            out.append(run["min_ess_bulk"] / run["loop_s"])
        elif key == "ess_per_s_wall":
            out.append(run["min_ess_bulk"] / run["warm_wall_s"])
        else:  # a figure an older or peer worker does not record is NaN
            out.append(run.get(key, float("nan")))
    return out


def med_range(values: list[float], digits: int | None = 1) -> str:
    """``median [min-max]``, or the one value; ``digits=None``: 0 from 100 up, else 1.

    "-" when no run recorded the figure (all NaN: bambi has no bayesmix sample_s).
    """
    if all(v != v for v in values):
        return "-"
    med = statistics.median(values)
    if digits is None:
        digits = 0 if min(values) >= 100 else 1
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def ratio_text(ours: list[float], theirs: list[float]) -> str:
    """Ratio of medians, and its range over all pairs of seeds."""
    ratio = statistics.median(ours) / statistics.median(theirs)
    low, high = min(ours) / max(theirs), max(ours) / min(theirs)
    return f"{ratio:.1f}x [{low:.1f}-{high:.1f}x]"


COLUMNS = (
    # (header, key, digits, width)
    ("warm s", "warm_wall_s", 1, 20),
    ("bmx samp s", "bmx_sample_s", 1, 20),
    ("loop s", "loop_s", 1, 20),
    ("min ESS", "min_ess_bulk", 0, 20),
    ("steps/draw", "steps_per_draw", 1, 20),
    ("ESS/s loop", "ess_per_s_loop", None, 20),
    ("ESS/s wall", "ess_per_s_wall", None, 20),
)


def print_header() -> None:
    print(
        f"{'case':<12}{'sampler':<15}{'cold s':>8}"
        + "".join(f"{h:>{w}}" for h, _, _, w in COLUMNS)
        + f"{'div':>5}{'rhat':>7}  min-ESS parameter(s)"
    )


def print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['case']:<12}{r['sampler']:<15} ERROR {r['error']}", flush=True)
        return
    cells = "".join(f"{med_range(per_seed(r, key), digits):>{w}}" for _, key, digits, w in COLUMNS)
    divergences = sum(per_seed(r, "divergences"))
    rhat = max(per_seed(r, "max_r_hat"))
    names = "/".join(dict.fromkeys(per_seed(r, "min_ess_parameter")))
    print(
        f"{r['case']:<12}{r['sampler']:<15}{r['cold_wall_s']:>8.1f}{cells}"
        f"{divergences:>5d}{rhat:>7.3f}  {names}"
        + (f"  (rerun {r['rerun_wall_s']:.1f} s)" if "rerun_wall_s" in r else ""),
        flush=True,
    )


def print_sampler_ratios(cases: list[str], results: list[dict]) -> None:
    print(
        "\nnutpie (bayesmix default) / PyMC NUTS, both through bayesmix; median [seed-pair range]"
    )
    for case in cases:
        by = {r["sampler"]: r for r in results if r["case"] == case and "error" not in r}
        if "nutpie" not in by or "pymc" not in by:
            continue
        ours, theirs = by["nutpie"], by["pymc"]
        loop = ratio_text(per_seed(ours, "ess_per_s_loop"), per_seed(theirs, "ess_per_s_loop"))
        wall = ratio_text(per_seed(ours, "ess_per_s_wall"), per_seed(theirs, "ess_per_s_wall"))
        cold = ours["cold_wall_s"] / theirs["cold_wall_s"]
        print(
            f"{case:<12} ESS/s loop {loop}; ESS/s warm wall {wall} (compile policies differ);"
            f" cold wall {cold:.2f}x"
        )


def print_bambi_comparison(cases: list[str], results: list[dict], bambi: list[dict]) -> None:
    """bayesmix's default (nutpie) against bambi's best method (by median ESS/s loop)."""
    print(
        "\nbayesmix (nutpie) vs bambi (best method by median ESS/s loop); medians over seeds;"
        " ratio = bayesmix / bambi (wall: < 1 means bayesmix is faster; ESS, ESS/s: > 1 means"
        " bayesmix is better)"
    )
    metrics = [
        ("cold wall s", "cold_wall_s"),
        ("warm wall s*", "warm_wall_s"),
        ("min ESS", "min_ess_bulk"),
        ("ESS/s loop", "ess_per_s_loop"),
        ("ESS/s wall*", "ess_per_s_wall"),
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
        best = max(theirs, key=lambda r: statistics.median(per_seed(r, "ess_per_s_loop")))
        row = f"{case:<12}{best['sampler'].removeprefix('bambi-'):<15}"
        for _, key in metrics:
            if key == "cold_wall_s":
                a, b = ours[0][key], best[key]
            else:
                a, b = (statistics.median(per_seed(r, key)) for r in (ours[0], best))
            row += f"{a:>8.1f}{b:>8.1f}{a / b if b else float('nan'):>8.2f}"
        print(row)
    print("* " + WARM_NOTE)
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
    parser.add_argument("--seeds", default="1,2,3", help="one warm run per seed (comma list)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SAMPLER"))
    parser.add_argument(
        "--bambi-python",
        metavar="PATH",
        help="python of a peer environment with bambi and nutpie: also benchmark bambi",
    )
    parser.add_argument(
        "--bambi-methods", default="nutpie", help="bambi inference methods (nutpie,pymc)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures here")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="also time a second fresh process that finds the compile cache warm",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.worker:
        print(json.dumps(worker(*args.worker, args.draws, args.tune, args.chains, seeds)))
        return
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "pytensor", "nutpie", "numba", "numpy")))
    print(
        f"{args.chains} chains x {args.tune} tune + {args.draws} draws; warm runs with seeds "
        f"{args.seeds} (figures: median [min-max]); cold run seed {COLD_SEED}"
    )
    print_header()
    results, bambi = [], []
    for case in cases:
        for sampler in args.samplers.split(","):
            r = run_case(case, sampler, args)
            results.append(r)
            print_row(r)
        for method in args.bambi_methods.split(",") if args.bambi_python else []:
            r = run_bambi(case, method, args)
            bambi.append(r)
            print_row(r)
    print(WARM_NOTE)
    print_sampler_ratios(cases, results)
    if args.bambi_python:
        print_bambi_comparison(cases, results, bambi)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "bayesmix": results, "bambi": bambi}, handle, indent=1)


if __name__ == "__main__":
    main()
