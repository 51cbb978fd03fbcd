"""Wall time and ESS per second of Bayesian GLMMs (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_glmm_bayes.py [--draws 1000] [--tune 1000] [--chains 4]

Two figures, each measured in a fresh subprocess with an empty bayesmix compile
cache (``BAYESMIX_CACHE_DIR`` a new temporary directory), so that compilation
counts as a first fit pays it:

* Arabidopsis, Poisson with correlated slopes:
  ``total.fruits ~ nutrient*amd + rack + status + (nutrient | popu) + (1 | popu:gen)``
  sampled ``chains x (tune + draws)`` (default 4 x (1000 + 1000)). Printed: cold wall
  (process start to result), compile and sampling seconds, divergences, max R-hat,
  the smallest bulk ESS of the parameters (fixed effects, SDs, correlation) and of
  everything (group effects included), and those ESS per second of sampling and of
  cold wall.
* cbpp, binomial, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``,
  ``sample()`` with its defaults: the cold-start wall (import, build, compile,
  sample, diagnostics) and the same in a second process that finds the compiled
  code in the on-disk cache.

bambi is not compared here: its GLMM run needs a separate environment (see
``bench/peer_bambi.py``); none is installed in the main one.
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


def worker(case: str, draws: int, tune: int, chains: int) -> dict:
    import bayesmix as bmx
    from bayesmix.errors import SamplingWarning

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
    diag = result.diagnostics()
    table = diag["table"]
    parameters = table[~table.index.str.startswith("r_")]
    return {
        "case": case,
        "cold_wall_s": wall,
        "compile_s": result.timing["compile_s"],
        "sample_s": result.timing["sample_s"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("arabidopsis", "cbpp"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.draws, args.tune, args.chains)))
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_env import machine_line, package_versions

    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "pytensor", "nutpie", "numba", "arviz")))
    with tempfile.TemporaryDirectory(prefix="bmx-glmm-bench-") as cache:
        ara = run("arabidopsis", args, cache)
    print(f"\nArabidopsis Poisson GLMM, {args.chains} x ({args.tune} + {args.draws}), cold cache")
    if "error" in ara:
        print("  failed:", ara["error"])
    else:
        print(
            f"  cold wall {ara['cold_wall_s']:.1f} s (compile {ara['compile_s']:.1f} s, "
            f"sampling {ara['sample_s']:.1f} s); {ara['divergences']} divergences, "
            f"max R-hat {ara['max_r_hat']:.4f}"
        )
        for key, label in (("min_ess_parameters", "parameters"), ("min_ess_all", "all")):
            ess = ara[key]
            print(
                f"  min bulk ESS ({label}) {ess:.0f}: {ess / ara['sample_s']:.0f}/s of sampling, "
                f"{ess / ara['cold_wall_s']:.0f}/s of cold wall"
            )
        print(f"  (smallest among parameters: {ara['min_ess_parameter']})")
        for message in ara["warnings"]:
            print("  warning:", message)
    with tempfile.TemporaryDirectory(prefix="bmx-glmm-bench-") as cache:
        cold = run("cbpp", args, cache)
        warm = run("cbpp", args, cache)
    print("\ncbpp binomial GLMM, sample() defaults (4 x (1000 + 1000))")
    for label, res in (("cold cache", cold), ("warm disk cache", warm)):
        if "error" in res:
            print(f"  {label}: failed:", res["error"])
            continue
        print(
            f"  {label}: wall {res['cold_wall_s']:.1f} s from process start (compile "
            f"{res['compile_s']:.1f} s, sampling {res['sample_s']:.2f} s), min ESS "
            f"{res['min_ess_all']:.0f}, {res['divergences']} divergences"
        )


if __name__ == "__main__":
    main()
