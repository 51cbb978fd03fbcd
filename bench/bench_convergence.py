"""Convergence of ``model.sample()`` at its defaults on the classic models (prints a table).

Run from the repository root::

    .venv/bin/python bench/bench_convergence.py                 # seeds 1-10, all models
    .venv/bin/python bench/bench_convergence.py --seeds 1,2 --models sleepstudy_int

For each model and seed: ``model.sample(random_seed=seed)`` with every other
argument at its default (4 chains x 1,000 draws after 1,000 tuning, nutpie),
then the largest R-hat and the smallest bulk ESS over all parameters (fixed
effects, SDs, correlations, sigma and every group effect) and the divergences.
The table gives per model the worst of each over the seeds, how many seeds
meet all three criteria (R-hat <= 1.01, bulk ESS >= 400, no divergence: issue
17's) and the median wall time of a fit in a warm process.

Below 10,000 rows ``sample()`` integrates the fixed effects and the small
blocks out of the likelihood (the collapsed form, in the generic kernel:
:mod:`bayesmix.bayes.generic.collapsed_kernel`). ``--graph`` measures the
graph form it replaced (``bayesmix.bayes.fit.COLLAPSE_SMALL = False`` in this
process)::

    .venv/bin/python bench/bench_convergence.py --graph

Models left in the graph form below 10,000 rows (the Arabidopsis slope model
here) get nutpie's low-rank modified mass matrix; ``--diagonal`` measures them
with the diagonal one it replaced (``bayesmix.bayes.fit.LOW_RANK_SMALL = False``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_env import machine_line, package_versions  # noqa: E402

import bayesmix as bmx  # noqa: E402

MODELS = {
    "sleepstudy_int": ("sleepstudy", "Reaction ~ Days + (1 | Subject)"),
    "sleepstudy_slope": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "dyestuff": ("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
    "penicillin": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "pastes": ("Pastes", "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
    "orthodont": ("Orthodont", "distance ~ age * Sex + (age | Subject)"),
    "arabidopsis": (  # the tutorial's slope model, as bench_bayes.py and bench_cold_start.py
        "Arabidopsis",
        "log(1 + total.fruits) ~ nutrient * amd + rack + status"
        " + (nutrient | popu) + (nutrient | popu:gen)",
    ),
}
R_HAT_MAX, ESS_MIN = 1.01, 400


def run(name: str, seeds: list[int]) -> list[dict]:
    dataset, formula = MODELS[name]
    model = bmx.lmm(formula, bmx.load_dataset(dataset))
    with warnings.catch_warnings():  # the first fit compiles or loads; not timed
        warnings.simplefilter("ignore")
        model.sample(random_seed=0)
    out = []
    for seed in seeds:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(random_seed=seed)
        wall = time.perf_counter() - start
        diag = post.diagnostics()
        out.append(
            {
                "seed": seed,
                "wall": wall,
                "r_hat": float(diag["max_r_hat"]),
                "ess": float(diag["min_ess_bulk"]),
                "parameter": str(diag["min_ess_parameter"]),
                "divergences": int(diag["divergences"]),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=",".join(str(s) for s in range(1, 11)))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--per-seed", action="store_true", help="also print every seed's row")
    parser.add_argument(
        "--graph", action="store_true", help="the graph likelihood below 10,000 rows"
    )
    parser.add_argument(
        "--diagonal", action="store_true", help="nutpie's diagonal mass matrix in the graph form"
    )
    args = parser.parse_args()
    from bayesmix.bayes import fit

    fit.COLLAPSE_SMALL = not args.graph
    fit.LOW_RANK_SMALL = not args.diagonal
    seeds = [int(s) for s in args.seeds.split(",")]
    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "nutpie", "numba", "arviz")))
    form = "; the graph likelihood (COLLAPSE_SMALL off)" if args.graph else ""
    form += "; diagonal mass matrix (LOW_RANK_SMALL off)" if args.diagonal else ""
    print(f"model.sample(random_seed=s) at its defaults, seeds {args.seeds}{form}")
    header = (
        f"{'model':<18}{'max R-hat':>10}{'min ESS':>9}{'div':>5}{'seeds ok':>10}"
        f"{'wall s':>8}  smallest-ESS parameter (worst seed)"
    )
    print(header)
    for name in args.models.split(","):
        rows = run(name, seeds)
        ok = sum(
            r["r_hat"] <= R_HAT_MAX and r["ess"] >= ESS_MIN and r["divergences"] == 0 for r in rows
        )
        worst = min(rows, key=lambda r: r["ess"])
        walls = sorted(r["wall"] for r in rows)
        print(
            f"{name:<18}{max(r['r_hat'] for r in rows):>10.4f}{worst['ess']:>9.0f}"
            f"{sum(r['divergences'] for r in rows):>5}{f'{ok}/{len(rows)}':>10}"
            f"{walls[len(walls) // 2]:>8.2f}  {worst['parameter']} (seed {worst['seed']})"
        )
        if args.per_seed:
            for r in rows:
                print(
                    f"    seed {r['seed']:>3}: R-hat {r['r_hat']:.4f}, ESS {r['ess']:.0f}, "
                    f"{r['divergences']} div, {r['wall']:.2f} s, {r['parameter']}"
                )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
