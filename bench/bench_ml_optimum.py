"""The ML/REML optimum of 54 fits, to compare two versions of bayesmix (prints a table).

Run from the repository root. Fits every model of :data:`MODELS` by REML and
ML (InstEval and the 10^5-row synthetic model by ML only) with the bayesmix
first on ``sys.path`` and saves logLik, evaluations, convergence and fit time
as JSON; ``--against`` prints the differences from a saved run. This is how a
change to the optimiser is checked against "the logLik never falls below
today's" (issue 18)::

    git worktree add /tmp/old <commit>
    export OMP_NUM_THREADS=1
    PYTHONPATH=/tmp/old .venv/bin/python bench/bench_ml_optimum.py --random 60 --save /tmp/old.json
    .venv/bin/python bench/bench_ml_optimum.py --random 60 --against /tmp/old.json

``--random N`` adds N random designs (:func:`random_design`) to the 54 fits.

Times include the first call's compilation (numba) in the first row only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_ml import synthetic_case

import bayesmix as bmx

AR = "log(1 + total.fruits) ~ rack + nutrient + amd + status"
MODELS = [
    ("sleepstudy", "Reaction ~ 1 + (1 | Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"),
    ("Dyestuff", "Yield ~ 1 + (1 | Batch)"),
    ("Orthodont", "distance ~ age + Sex + (age | Subject)"),
    ("Orthodont", "distance ~ age * Sex + (1 | Subject)"),
    ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("Pastes", "strength ~ 1 + (1 | batch) + (1 | sample)"),
    ("Machines", "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)"),
    ("Machines", "score ~ Machine + (Machine | Worker)"),
    ("cake", "angle ~ recipe * temperature + (1 | recipe:replicate)"),
    ("Oxboys", "height ~ age + (age | Subject)"),
    ("Oxboys", "height ~ age + I(age^2) + (age + I(age^2) | Subject)"),
    ("ChickWeight", "weight ~ Time * Diet + (Time | Chick)"),
    ("BodyWeight", "weight ~ Time * Diet + (Time | Rat)"),
    ("Arabidopsis", f"{AR} + (1 | reg) + (1 | popu) + (1 | gen)"),
    ("Arabidopsis", f"{AR} + (1 | popu/gen)"),
    ("Arabidopsis", f"{AR} + (1 | reg/popu/gen)"),
    ("Arabidopsis", f"{AR} + (nutrient | popu) + (nutrient | popu:gen)"),
    ("Arabidopsis", f"{AR} + (nutrient | reg/popu/gen)"),
    ("Arabidopsis", f"{AR} + (amd + nutrient | popu) + (1 | popu:gen)"),
    ("CO2", "uptake ~ Type * Treatment + log(conc) + (log(conc) | Plant)"),
    ("InstEval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"),
    ("syn1e5", "y ~ 1 + x + (1 + x | g1) + (1 | g2)"),
    ("syn2e4", "y ~ 1 + x + (1 + x | g1) + (1 + x | g2) + (1 | g3)"),
]


def data_of(name: str) -> pd.DataFrame:
    """A dataset of bayesmix, or one of the two synthetic data sets."""
    if name == "syn1e5":
        return synthetic_case(n=100_000, m1=1000, m2=100)[0]
    if name == "syn2e4":
        rng = np.random.default_rng(5)
        n = 20_000
        g1, g2, g3 = rng.integers(0, 600, n), rng.integers(0, 60, n), rng.integers(0, 9, n)
        x = rng.normal(size=n)
        y = (
            x
            + rng.normal(size=600)[g1] * (1 + 0.3 * x)
            + rng.normal(size=60)[g2] * (1 + x)
            + rng.normal(size=9)[g3]
            + rng.normal(size=n)
        )
        columns = {"g1": g1, "g2": g2, "g3": g3}
        return pd.DataFrame({"y": y, "x": x, **{k: pd.Categorical(v) for k, v in columns.items()}})
    return bmx.load_dataset(name)


# shapes of the random designs (--random): crossed, nested-free, correlated and not
RANDOM_FORMULAS = [
    "y ~ x + (1 + x | g) + (1 | h)",
    "y ~ x + (1 | g) + (1 | h) + (1 | c)",
    "y ~ x + z + (x + z | g)",
    "y ~ x + (1 + x | g) + (1 + z | h)",
    "y ~ x + (x || g) + (1 | c)",
]


def random_design(seed: int) -> tuple[str, pd.DataFrame]:
    """A formula and data with 200-1,500 rows; each variance 0, 0.05, 0.5 or 1.5 at random."""
    rng = np.random.default_rng(500 + seed)
    n = int(rng.integers(200, 1500))
    mg, mh, mc = int(rng.integers(10, 300)), int(rng.integers(3, 10)), int(rng.integers(20, 60))
    g, h, c = rng.integers(0, mg, n), rng.integers(0, mh, n), rng.integers(0, mc, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    sd = rng.choice([0.0, 0.05, 0.5, 1.5], size=6)
    y = (
        1
        + x
        + sd[0] * rng.normal(size=mg)[g]
        + sd[1] * rng.normal(size=mg)[g] * x
        + sd[2] * rng.normal(size=mh)[h]
        + sd[3] * rng.normal(size=mc)[c]
        + sd[4] * rng.normal(size=mh)[h] * z
        + rng.normal(size=n)
    )
    data = pd.DataFrame({"y": y, "x": x, "z": z, "g": g, "h": h.astype(str), "c": c})
    return RANDOM_FORMULAS[seed % len(RANDOM_FORMULAS)], data


def fit_all(n_random: int = 0) -> list[dict]:
    """Every model by REML and ML: logLik, evaluations, convergence, warnings and seconds."""
    out = []
    models = [(name, formula, None) for name, formula in MODELS]
    models += [(f"random{seed}", *random_design(seed)) for seed in range(n_random)]
    for name, formula, given in models:
        data = data_of(name) if given is None else given
        for method in ("REML", "ML"):
            if name in ("InstEval", "syn1e5") and method == "REML":
                continue
            start = time.perf_counter()
            row = {"data": name, "formula": formula, "method": method}
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fit = bmx.lmm(formula, data).fit(method=method)
            except Exception as error:  # a failure is a result here, reported as such
                out.append({**row, "error": str(error)[:200]})
                continue
            row["warnings"] = sorted({type(w.message).__name__ for w in caught})
            est = fit.estimates
            out.append(
                {
                    **row,
                    "loglik": fit.loglik,
                    "evaluations": int(est.n_evaluations),
                    "converged": bool(est.converged),
                    "seconds": time.perf_counter() - start,
                }
            )
    return out


def compare(new: list[dict], old: list[dict]) -> None:
    """One line per fit: logLik difference (new - old), evaluations and milliseconds."""
    worst = 0.0
    higher = 0
    for n, o in zip(new, old, strict=True):
        label = f"{n['data'][:11]:11s} {n['method']:4s} {n['formula'][:60]:60s}"
        if "error" in n or "error" in o:
            print(f"{label} error: {n.get('error') or o.get('error')}")
            continue
        diff = n["loglik"] - o["loglik"]
        worst = min(worst, diff)
        higher += diff > 1e-7
        changed = o.get("warnings", []) != n.get("warnings", [])
        print(
            f"{label} {diff:+.1e} {o['evaluations']:4d} -> {n['evaluations']:4d} evals "
            f"{o['seconds'] * 1e3:8.1f} -> {n['seconds'] * 1e3:8.1f} ms"
            + (f"  warnings {o.get('warnings')} -> {n.get('warnings')}" if changed else "")
        )
    total = {
        key: sum(r.get("evaluations", 0) for r in rows)
        for key, rows in (("old", old), ("new", new))
    }
    print(
        f"largest logLik shortfall (new below old): {-worst:.1e}; higher by > 1e-7: {higher} "
        f"of {len(new)}; evaluations {total['old']} -> {total['new']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write this run's results as JSON")
    parser.add_argument("--against", type=Path, help="print differences from a saved run")
    parser.add_argument("--random", type=int, default=0, help="also this many random designs")
    args = parser.parse_args()
    print(f"bayesmix from {Path(bmx.__file__).parent}", file=sys.stderr)
    results = fit_all(args.random)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    if args.against:
        compare(results, json.loads(args.against.read_text()))
    elif not args.save:
        for row in results:
            print(row)


if __name__ == "__main__":
    main()
