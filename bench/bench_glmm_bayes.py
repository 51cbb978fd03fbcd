"""Wall time and ESS per second of Bayesian GLMMs, optionally against bambi (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_glmm_bayes.py [--draws 1000] [--tune 1000] [--chains 4]
    .venv/bin/python bench/bench_glmm_bayes.py --bambi-python /tmp/bambi-venv/bin/python

Each figure is measured in a fresh subprocess with an empty bayesmix compile
cache (``BAYESMIX_CACHE_DIR`` a new temporary directory, which holds PyTensor's
compile directory and numba cache), so that compilation counts as a first fit
pays it:

* Arabidopsis, Poisson with correlated slopes:
  ``total.fruits ~ nutrient*amd + rack + status + (nutrient | popu) + (1 | popu:gen)``
  (``nutrient``, ``rack`` and ``gen`` factors), one fit (``random_seed=1``)
  sampled ``chains x (tune + draws)`` (default 4 x (1000 + 1000)). Printed: cold
  wall (process start, before ``import bayesmix``, to result), compile and
  sampling seconds (bayesmix's ``timing``; its ``sample_s`` spans
  ``nutpie.sample``, trace conversion included), loop seconds (the draw loop
  alone, tuning included, conversion excluded, timed by ``bench/loop_timer.py``,
  the same clock as the bambi worker's), divergences, max R-hat, the smallest
  bulk ESS of the parameters (fixed effects, SDs, correlation) and of
  everything (group effects included), and those ESS per second of loop and of
  cold wall.
* cbpp, binomial, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``,
  ``sample()`` with its defaults (4 x (1000 + 1000)): the cold-start wall
  (import, build, compile, sample, diagnostics) and the same in a second
  process that finds the compiled code in the on-disk cache.

``--bambi-python PATH`` also runs the peer package bambi on both cases
(``PATH bench/peer_bambi_glmm.py --worker CASE``, each in its own subprocess
with a fresh, empty PyTensor compile directory; cbpp twice, the second time
with the first's directory) and prints bayesmix and bambi side by side with
ratios bayesmix / bambi (wall ratio, ESS/s ratio) and the issue's criteria.
bambi samples with nutpie (``Model.fit(inference_method="nutpie")``) and its
default ``target_accept`` 0.8; its ``(nutrient | popu)`` is uncorrelated (no
correlation parameter), so the comparison is bayesmix's correlated model
against bambi's uncorrelated one. ``PATH`` is the python of a separate
environment with bambi and nutpie installed (bambi's formulae pin clashes with
bayesmix's); see ``bench/peer_bambi_glmm.py`` for how to create it and for the
other model differences (default priors; ``popu:gen`` as one pasted column).
The walls are single runs on a machine that may be busy: the load average is
printed before and after.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before any heavy import: the cold wall starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

ARABIDOPSIS = "total.fruits ~ nutrient*amd + rack + status + (nutrient | popu) + (1 | popu:gen)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
COLD_START_LIMIT_S = 20.0  # the cold-start criterion on cbpp


def worker(case: str, draws: int, tune: int, chains: int) -> dict:
    import bayesmix as bmx
    from bayesmix.bayes.compile.cache import configure_pytensor
    from bayesmix.errors import SamplingWarning

    configure_pytensor()  # before PyTensor is imported (by loop_timer's PyMC import)
    import loop_timer

    loop_timer.install()
    if case == "arabidopsis":
        data = bmx.load_dataset("Arabidopsis")
        for name in ("gen", "rack", "nutrient"):
            data[name] = data[name].astype("category")
        model = bmx.glmm(ARABIDOPSIS, data, family="poisson")
        kwargs = {"draws": draws, "tune": tune, "chains": chains}
    else:
        model = bmx.glmm(CBPP, bmx.load_dataset("cbpp"), family="binomial")
        kwargs = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        result = model.sample(random_seed=1, **kwargs)
    wall = time.perf_counter() - T_START
    spans = loop_timer.take()
    diag = result.diagnostics()
    table = diag["table"]
    parameters = table[~table.index.str.startswith("r_")]
    stats = result.idata["sample_stats"]
    return {
        "package": "bayesmix",
        "case": case,
        "cold_wall_s": wall,
        "compile_s": result.timing["compile_s"],
        "sample_s": result.timing["sample_s"],
        "loop_s": spans["loop_s"],
        "convert_s": spans["convert_s"],
        "target_accept": result.timing.get("target_accept", float("nan")),
        "steps_per_draw": float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan"),
        "divergences": diag["divergences"],
        "max_r_hat": diag["max_r_hat"],
        "min_ess_parameters": float(parameters["ess_bulk"].min()),
        "min_ess_parameter": str(parameters["ess_bulk"].idxmin()),
        "min_ess_all": diag["min_ess_bulk"],
        "warnings": [str(w.message)[:120] for w in caught],
    }


def run(case: str, args, cache: str) -> dict:
    env = dict(os.environ, BAYESMIX_CACHE_DIR=cache)
    cmd = [sys.executable, __file__, "--worker", case]
    cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"case": case, "error": out.stderr.strip().splitlines()[-3:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_arabidopsis(label: str, res: dict) -> None:
    print(f"  {label}:")
    if "error" in res:
        print("    failed:", res["error"])
        return
    if "compile_s" in res:  # bayesmix
        parts = f"compile {res['compile_s']:.1f} s, sampling {res['sample_s']:.1f} s"
    else:  # bambi
        parts = f"design {res['design_s']:.1f} s, PyMC sampling_time {res['pymc_sampling_s']:.1f} s"
    print(
        f"    cold wall {res['cold_wall_s']:.1f} s ({parts}, loop {res['loop_s']:.1f} s,"
        f" {res['steps_per_draw']:.1f} steps/draw); {res['divergences']} divergences,"
        f" max R-hat {res['max_r_hat']:.4f}"
    )
    for key, name in (("min_ess_parameters", "parameters"), ("min_ess_all", "all")):
        ess = res[key]
        print(
            f"    min bulk ESS ({name}) {ess:.0f}: {ess / res['loop_s']:.0f}/s of loop,"
            f" {ess / res['cold_wall_s']:.1f}/s of cold wall"
        )
    print(f"    (smallest among parameters: {res['min_ess_parameter']})")
    for message in res.get("warnings", []):
        print("    warning:", message)


def print_cbpp(label: str, cold: dict, warm: dict) -> None:
    for name, res in (("cold cache", cold), ("warm disk cache", warm)):
        if "error" in res:
            print(f"  {label} {name}: failed:", res["error"])
            continue
        compile_part = f"compile {res['compile_s']:.1f} s, " if "compile_s" in res else ""
        print(
            f"  {label} {name}: wall {res['cold_wall_s']:.1f} s from process start"
            f" ({compile_part}loop {res['loop_s']:.2f} s), min ESS {res['min_ess_all']:.0f},"
            f" {res['divergences']} divergences"
        )


def print_comparison(ara: dict, bara: dict, cbpp: tuple, bcbpp: tuple) -> None:
    """bayesmix and bambi side by side, ratios bayesmix / bambi, and the issue's criteria."""
    print(
        "\nbayesmix vs bambi (nutpie), single runs; ratio = bayesmix / bambi (walls: < 1 means"
        " bayesmix is faster; ESS and ESS/s: > 1 means bayesmix is better)"
    )
    print(f"{'':<44}{'bayesmix':>10}{'bambi':>10}{'ratio':>8}")

    def row(label: str, a: float, b: float, digits: int = 1) -> None:
        ratio = a / b if b else float("nan")
        print(f"{label:<44}{a:>10.{digits}f}{b:>10.{digits}f}{ratio:>8.2f}")

    ok_ara = "error" not in ara and "error" not in bara
    if ok_ara:
        print("Arabidopsis Poisson (bayesmix correlated, bambi uncorrelated slopes)")
        row("  cold wall s", ara["cold_wall_s"], bara["cold_wall_s"])
        row("  loop s (draw loop, same clock)", ara["loop_s"], bara["loop_s"])
        row("  steps/draw", ara["steps_per_draw"], bara["steps_per_draw"])
        row("  min bulk ESS, parameters", ara["min_ess_parameters"], bara["min_ess_parameters"], 0)
        row(
            "  ESS/s of cold wall, parameters",
            ara["min_ess_parameters"] / ara["cold_wall_s"],
            bara["min_ess_parameters"] / bara["cold_wall_s"],
        )
        row(
            "  ESS/s of loop, parameters",
            ara["min_ess_parameters"] / ara["loop_s"],
            bara["min_ess_parameters"] / bara["loop_s"],
        )
        row("  min bulk ESS, all", ara["min_ess_all"], bara["min_ess_all"], 0)
        row(
            "  ESS/s of cold wall, all",
            ara["min_ess_all"] / ara["cold_wall_s"],
            bara["min_ess_all"] / bara["cold_wall_s"],
        )
        print(
            f"{'  divergences':<44}{ara['divergences']:>10d}{bara['divergences']:>10d}\n"
            f"{'  max R-hat':<44}{ara['max_r_hat']:>10.4f}{bara['max_r_hat']:>10.4f}\n"
            f"{'  target_accept':<44}{ara['target_accept']:>10.2f}{0.8:>10.2f}"
        )
    else:
        print("Arabidopsis: no comparison (a run failed, see above)")
    cold, warm = cbpp
    bcold, bwarm = bcbpp
    print("cbpp binomial, 4 x (1000 + 1000)")
    for label, a, b in (
        ("  cold start wall s", cold, bcold),
        ("  warm disk cache wall s", warm, bwarm),
    ):
        if "error" in a or "error" in b:
            print(f"{label:<44}(a run failed, see above)")
        else:
            row(label, a["cold_wall_s"], b["cold_wall_s"])
    if ok_ara and "error" not in cold:
        ess_wall = ara["min_ess_parameters"] / ara["cold_wall_s"]
        bess_wall = bara["min_ess_parameters"] / bara["cold_wall_s"]
        checks = (
            ("faster wall than bambi", ara["cold_wall_s"] < bara["cold_wall_s"]),
            ("higher ESS/s of wall than bambi (parameters)", ess_wall > bess_wall),
            ("zero divergences", ara["divergences"] == 0),
            (
                f"cbpp cold start under {COLD_START_LIMIT_S:.0f} s",
                cold["cold_wall_s"] < COLD_START_LIMIT_S,
            ),
        )
        print("issue 14 criteria: " + "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks))
    versions = bara.get("versions") or bcold.get("versions")
    if versions:
        print("bambi environment: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("arabidopsis", "cbpp"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--bambi-python",
        metavar="PATH",
        help="python of a peer environment with bambi and nutpie: also benchmark bambi",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.draws, args.tune, args.chains)))
        return
    sys.path.insert(0, BENCH_DIR)
    from bench_env import machine_line, package_versions
    from peer_bambi_glmm import MODEL_NOTE
    from peer_bambi_glmm import run_case as run_bambi

    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "pytensor", "nutpie", "numba", "arviz")))
    with tempfile.TemporaryDirectory(prefix="bmx-glmm-bench-") as cache:
        ara = run("arabidopsis", args, cache)
    bara = run_bambi("arabidopsis", args, python=args.bambi_python) if args.bambi_python else None
    print(f"\nArabidopsis Poisson GLMM, {args.chains} x ({args.tune} + {args.draws}), cold cache")
    print_arabidopsis("bayesmix (correlated slopes)", ara)
    if bara is not None:
        print_arabidopsis("bambi nutpie (uncorrelated slopes)", bara)
    with tempfile.TemporaryDirectory(prefix="bmx-glmm-bench-") as cache:
        cold = run("cbpp", args, cache)
        warm = run("cbpp", args, cache)
    bcbpp = None
    if args.bambi_python:
        with tempfile.TemporaryDirectory(prefix="bambi-glmm-bench-") as cache:
            defaults = argparse.Namespace(draws=1000, tune=1000, chains=4)  # sample()'s
            bcbpp = tuple(
                run_bambi("cbpp", defaults, cache=cache, python=args.bambi_python) for _ in range(2)
            )
    print("\ncbpp binomial GLMM, sample() defaults (4 x (1000 + 1000))")
    print_cbpp("bayesmix", cold, warm)
    if bcbpp is not None:
        print_cbpp("bambi", *bcbpp)
        print_comparison(ara, bara, (cold, warm), bcbpp)
        print("note: " + MODEL_NOTE)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
