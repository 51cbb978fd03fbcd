"""Benchmark the Bayesian engine for nonlinear mixed models on Theoph (not a test).

Usage::

    .venv/bin/python bench/bench_nl_bayes.py                 # diag2; nutpie and PyMC's NUTS
    .venv/bin/python bench/bench_nl_bayes.py --models diag2,symm2 --seeds 1,2,3
    .venv/bin/python bench/bench_nl_bayes.py --samplers nutpie --json nl.json

Model: ``conc ~ SSfol(Dose, Time, lKe, lKa, lCl)`` with random effects on lKa
and lCl by Subject (``diag2``: pdDiag, nlme's reference fit in
``tests/refs/theoph_nlme_diag2_ml.json``; ``symm2``: pdSymm, LKJ block).

The peer is PyMC's own NUTS (``sampler="pymc"``, through bayesmix on the same
PyMC model), run in the same script; bambi cannot express a nonlinear model,
and nlme's ML fits are timed against bayesmix's by ``bench/bench_nl_ml.py``.

Measurements follow ``bench/bench_bayes.py``. Every (model, sampler) runs in
its own subprocess with a fresh, empty PyTensor compile directory
(``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds PyTensor's numba
cache and bayesmix's compiled nutpie wrappers). In it:

* cold wall = process start (before ``import bayesmix``) to the finished
  posterior of a first run (seed 0), compiling everything from scratch; that
  run is used for nothing else;
* then one warm run per ``--seeds`` seed, in the same process: warm wall =
  one ``model.sample`` call (PyMC model rebuilt, compiled code reused as the
  sampler's compile policy allows, see below);
* loop s = the draw loop alone (tuning included), timed by the same clock for
  both samplers (``bench/loop_timer.py``): from the call that starts the
  chains to all draws in memory, conversion to InferenceData excluded.
  bayesmix's own ``sample_s`` (column "bmx samp s") is PyMC's
  ``sampling_time`` for ``sampler="pymc"`` (conversion excluded) but spans
  ``nutpie.sample`` for nutpie (conversion included), so it is not divided
  across samplers;
* steps/draw = mean leapfrog steps per draw (``n_steps``), the work of a draw;
* min ESS = min bulk ESS over all parameters (fixed effects, SDs,
  correlations, sigma and every random effect); ESS/s loop = min ESS / loop s
  (the sampler comparison), ESS/s wall = min ESS / warm wall;
* per-seed figures are shown as "median [min-max]" over the seeds, and the
  nutpie / PyMC ratio as the ratio of medians with the range over all pairs
  of seeds (lowest / highest to highest / lowest);
* posterior means are medians over the seeds;
* ML s = best of 5 Lindstrom-Bates ML fits (``model.fit()``) after a warm-up,
  in the same process (it does not depend on the sampler).

Warm wall is *not* a sampler comparison: bayesmix's nutpie route keeps the
compiled model in memory and reuses it for a model of the same structure
(column "compile s": bayesmix's ``timing["compile_s"]`` of the warm runs, the
compile step before ``nutpie.sample``), while ``pm.sample`` (``sampler="pymc"``)
compiles its functions again in every call, from the on-disk cache (its
"compile s" is the time ``pm.sample`` spends outside its draw loop: compiling,
initialising the chains, converting the trace). Warm-wall and
ESS-per-wall-second ratios compare compile policies as much as samplers; the
"loop" figures compare samplers.
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

from bench_bayes import med_range, per_seed, ratio_text, run_record  # noqa: E402
from bench_env import machine_line, package_versions  # noqa: E402

SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
MODELS = {"diag2": "diagonal", "symm2": "unstructured"}
COLD_SEED = 0  # the cold run's seed; kept out of the per-seed figures

WARM_NOTE = (
    "warm wall: bayesmix's nutpie route reuses the model compiled earlier in the process"
    " (compile s); pm.sample (sampler 'pymc') recompiles from the on-disk cache in every call,"
    " so warm-wall and ESS/s-wall ratios compare compile policies, not samplers."
    " ESS/s loop (same clock for both: draw loop only, trace conversion excluded) compares"
    " samplers."
)


def posterior_means(result) -> dict[str, float]:
    fixef = result.fixef()
    varcorr = result.varcorr()
    return {
        **fixef["mean"].to_dict(),
        **{
            f"sd({r.var1})" if r.grp != "Residual" else "sigma": float(r.mean)
            for r in varcorr.itertuples()
            if r.var2 is None or r.grp == "Residual"
        },
    }


def worker(name: str, sampler: str, draws: int, tune: int, chains: int, seeds: list[int]) -> dict:
    import warnings

    import bayesmix as bmx
    from bayesmix.bayes.compile.cache import configure_pytensor

    configure_pytensor()  # before PyTensor is imported (by loop_timer's PyMC import too)
    import loop_timer

    loop_timer.install()
    theoph = bmx.load_dataset("Theoph")
    model = bmx.nlmm(SSFOL, theoph, params=PARAMS, cov={"Subject": MODELS[name]})
    options = dict(draws=draws, tune=tune, chains=chains, sampler=sampler)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(random_seed=COLD_SEED, **options)
        cold = time.perf_counter() - T_START
        for seed in seeds:
            loop_timer.take()
            t0 = time.perf_counter()
            result = model.sample(random_seed=seed, **options)
            wall = time.perf_counter() - t0
            spans = loop_timer.take()
            record = run_record(seed, wall, spans, result)
            record["bmx_compile_s"] = result.timing["compile_s"]
            record["posterior_means"] = posterior_means(result)
            runs.append(record)
        model.fit()  # warm-up
        ml_times = []
        for _ in range(5):
            t0 = time.perf_counter()
            model.fit()
            ml_times.append(time.perf_counter() - t0)
    return {
        "model": name,
        "sampler": sampler,
        "cold_wall_s": cold,
        "ml_wall_s": min(ml_times),
        "runs": runs,
    }


def run(name: str, sampler: str, args) -> dict:
    """Run a worker in a fresh subprocess with an empty PyTensor compile directory."""
    with tempfile.TemporaryDirectory(prefix="bmx-nl-bench-") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
        cmd = [sys.executable, __file__, "--worker", name, sampler]
        cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
        cmd += ["--seeds", args.seeds]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"model": name, "sampler": sampler, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


COLUMNS = (
    # (header, key, digits, width); digits None: 0 from 100 up, else 1
    ("warm s", "warm_wall_s", 1, 20),
    ("compile s", "bmx_compile_s", 2, 20),
    ("bmx samp s", "bmx_sample_s", 1, 20),
    ("loop s", "loop_s", 1, 20),
    ("min ESS", "min_ess_bulk", 0, 20),
    ("steps/draw", "steps_per_draw", 1, 20),
    ("ESS/s loop", "ess_per_s_loop", None, 20),
    ("ESS/s wall", "ess_per_s_wall", None, 20),
)


def print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['model']:<7}{r['sampler']:<9} ERROR {r['error']}", flush=True)
        return
    cells = "".join(f"{med_range(per_seed(r, key), digits):>{w}}" for _, key, digits, w in COLUMNS)
    names = "/".join(dict.fromkeys(per_seed(r, "min_ess_parameter")))
    print(
        f"{r['model']:<7}{r['sampler']:<9}{r['cold_wall_s']:>8.1f}{cells}"
        f"{sum(per_seed(r, 'divergences')):>5d}{max(per_seed(r, 'max_r_hat')):>7.3f}"
        f"{r['ml_wall_s']:>7.3f}  {names}",
        flush=True,
    )
    means = per_seed(r, "posterior_means")
    medians = {k: statistics.median(m[k] for m in means) for k in means[0]}
    print(f"{'':<16}posterior means: " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))


def print_sampler_ratios(names: list[str], results: list[dict]) -> None:
    print(
        "\nnutpie (bayesmix default) / PyMC NUTS, both through bayesmix; median [seed-pair range]"
    )
    for name in names:
        by = {r["sampler"]: r for r in results if r["model"] == name and "error" not in r}
        if "nutpie" not in by or "pymc" not in by:
            continue
        ours, theirs = by["nutpie"], by["pymc"]
        loop = ratio_text(per_seed(ours, "ess_per_s_loop"), per_seed(theirs, "ess_per_s_loop"))
        wall = ratio_text(per_seed(ours, "ess_per_s_wall"), per_seed(theirs, "ess_per_s_wall"))
        cold = ours["cold_wall_s"] / theirs["cold_wall_s"]
        print(
            f"{name:<7} ESS/s loop {loop}; ESS/s warm wall {wall} (compile policies differ);"
            f" cold wall {cold:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="diag2", help="comma list of diag2, symm2")
    parser.add_argument("--samplers", default="nutpie,pymc")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seeds", default="1,2,3", help="one warm run per seed (comma list)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SAMPLER"))
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.worker:
        print(json.dumps(worker(*args.worker, args.draws, args.tune, args.chains, seeds)))
        return
    names = args.models.split(",")
    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "pytensor", "nutpie", "numba", "numpy")))
    print(
        f"Theoph SSfol; {args.chains} chains x {args.tune} tune + {args.draws} draws; warm runs"
        f" with seeds {args.seeds} (figures: median [min-max]); cold run seed {COLD_SEED}"
    )
    print(
        f"{'model':<7}{'sampler':<9}{'cold s':>8}"
        + "".join(f"{h:>{w}}" for h, _, _, w in COLUMNS)
        + f"{'div':>5}{'rhat':>7}{'ML s':>7}  min-ESS parameter(s)"
    )
    results = []
    for name in names:
        for sampler in args.samplers.split(","):
            r = run(name, sampler, args)
            results.append(r)
            print_row(r)
    print(WARM_NOTE)
    print_sampler_ratios(names, results)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
