"""The ML/REML optimum of 54 fits, to compare two versions of bayesmix (prints a table).

Run from the repository root. Fits every model of :data:`MODELS` by REML and
ML (InstEval and the 10^5-row synthetic model by ML only) with the bayesmix
first on ``sys.path`` and saves logLik, evaluations, convergence and fit time
as JSON; ``--against`` prints the differences from a saved run. This is how a
change to the optimiser is checked against "the logLik never falls below
today's" (issue 18)::

    git worktree add /tmp/old <commit>
    export OMP_NUM_THREADS=1
    PYTHONPATH=/tmp/old .venv/bin/python bench/bench_ml_optimum.py --save /tmp/old.json
    .venv/bin/python bench/bench_ml_optimum.py --against /tmp/old.json

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


def fit_all() -> list[dict]:
    """Every model by REML and ML: logLik, evaluations, convergence and seconds."""
    out = []
    warnings.simplefilter("ignore")
    for name, formula in MODELS:
        data = data_of(name)
        for method in ("REML", "ML"):
            if name in ("InstEval", "syn1e5") and method == "REML":
                continue
            start = time.perf_counter()
            row = {"data": name, "formula": formula, "method": method}
            try:
                fit = bmx.lmm(formula, data).fit(method=method)
            except Exception as error:  # a failure is a result here, reported as such
                out.append({**row, "error": str(error)[:200]})
                continue
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
    for n, o in zip(new, old, strict=True):
        label = f"{n['data'][:11]:11s} {n['method']:4s} {n['formula'][:60]:60s}"
        if "error" in n or "error" in o:
            print(f"{label} error: {n.get('error') or o.get('error')}")
            continue
        diff = n["loglik"] - o["loglik"]
        worst = min(worst, diff)
        print(
            f"{label} {diff:+.1e} {o['evaluations']:4d} -> {n['evaluations']:4d} evals "
            f"{o['seconds'] * 1e3:8.1f} -> {n['seconds'] * 1e3:8.1f} ms"
        )
    print(f"largest logLik shortfall (new below old): {-worst:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write this run's results as JSON")
    parser.add_argument("--against", type=Path, help="print differences from a saved run")
    args = parser.parse_args()
    print(f"bayesmix from {Path(bmx.__file__).parent}", file=sys.stderr)
    results = fit_all()
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    if args.against:
        compare(results, json.loads(args.against.read_text()))
    elif not args.save:
        for row in results:
            print(row)


if __name__ == "__main__":
    main()
