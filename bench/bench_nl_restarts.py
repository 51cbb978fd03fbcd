"""Cost and gain of the nonlinear fit's restarts on 101 nlme textbook fits (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_nl_restarts.py [--repeats 3] [--cases chick,indometh]

The cases are those of ``tests/refs/rfidelity/multistart/cases.json`` (51 nlme
models on R's ChickWeight, CO2, DNase, Indometh, Loblolly, Orange, Soybean and
Theoph data, ML and REML, pdSymm and pdDiag), each started where nlme started
(``getInitial``). Every case is fitted ``repeats`` times (default 3) with
``restarts=False`` (one run of the Lindstrom-Bates alternation, as nlme) and
with the default restarts, alternately, after one untimed warm-up of each.
Printed per case: the median wall time of both, their ratio (restarts / one
run: the price of the restarts), the runs made and how many agreed, and the
logLik of both against nlme's (``nlme_all.json``). The summary gives the
median and 90th percentile of the ratio over the cases where the restarts
agree with the first run (the fast path), over those where they moved, and
the cases that end more than 0.01 below nlme with and without restarts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_env import machine_line, package_versions

import bayesmix as bmx

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "refs" / "rfidelity" / "multistart"
FACTORS = {"ChickWeight": ["Diet"], "Soybean": ["Variety", "Year"], "CO2": ["Type", "Treatment"]}


def model_of(case: dict) -> bmx.NonlinearMixedModel:
    data = pd.read_csv(FOLDER / f"{case['data']}.csv")
    for column in [*FACTORS.get(case["data"], []), case["group"]]:
        data[column] = data[column].astype(str).astype("category")
    random = [case["random"]] if isinstance(case["random"], str) else case["random"]
    fixed = case.get("fixed") or {}
    params = {}
    for name in case["params"]:
        formula = fixed.get(name, "1")
        formula = formula if formula.startswith("1") else f"1 + {formula}"
        params[name] = formula + (f" + (1 | {case['group']})" if name in random else "")
    cov = "diagonal" if case["cov"] == "pdDiag" else "unstructured"
    return bmx.nlmm(f"{case['response']} ~ {case['mean']}", data, params, cov=cov)


def timed(model, case, restarts):
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(method=case["method"], start=case["start"], restarts=restarts)
    return time.perf_counter() - started, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="", help="comma-separated prefixes of case ids")
    args = parser.parse_args()
    cases = json.loads((FOLDER / "cases.json").read_text())["cases"]
    nlme = json.loads((FOLDER / "nlme_all.json").read_text())
    nlme = nlme["results"]
    prefixes = [p for p in args.cases.split(",") if p]
    if prefixes:
        cases = [c for c in cases if any(c["id"].startswith(p) for p in prefixes)]
    print(machine_line())
    print(package_versions(["bayesmix", "numpy", "scipy", "nlopt"]))
    print(f"{len(cases)} cases, {args.repeats} repeats each (median wall time per fit)\n")
    header = f"{'case':30s} {'one run':>8s} {'restarts':>9s} {'ratio':>6s} {'runs':>5s}"
    print(header + f" {'agree':>5s} {'once-nlme':>10s} {'best-nlme':>10s}")
    rows = []
    for case in cases:
        reference = nlme.get(case["id"]) or {}
        target = (reference.get("nlme") or {}).get("logLik")
        case = {**case, "start": reference.get("start") or case["start"] or None}
        try:
            model = model_of(case)
            timed(model, case, False), timed(model, case, True)  # warm-up
            once, full = [], []
            for _ in range(args.repeats):
                t, single = timed(model, case, False)
                once.append(t)
                t, fit = timed(model, case, True)
                full.append(t)
        except Exception as error:  # a case bayesmix cannot fit is reported, not hidden
            print(f"{case['id']:30s} failed: {type(error).__name__}: {error}")
            continue
        ratio = statistics.median(full) / statistics.median(once)
        moved = fit.chosen_start != 0
        gap_once = single.loglik - target if target is not None else np.nan
        gap_best = fit.loglik - target if target is not None else np.nan
        rows.append((case["id"], ratio, moved, gap_once, gap_best))
        print(
            f"{case['id']:30s} {statistics.median(once):8.3f} {statistics.median(full):9.3f} "
            f"{ratio:6.2f} {len(fit.starts):5d} {fit.n_starts_agreeing:5d} "
            f"{gap_once:+10.4f} {gap_best:+10.4f}" + ("  (moved)" if moved else "")
        )
        sys.stdout.flush()
    agree = [r[1] for r in rows if not r[2]]
    moved = [r[1] for r in rows if r[2]]
    print()
    if agree:
        q = np.quantile(agree, [0.5, 0.9])
        print(
            f"restarts agree with the first run in {len(agree)} of {len(rows)} cases: time "
            f"ratio median {q[0]:.2f}, 90th percentile {q[1]:.2f}"
        )
    if moved:
        print(
            f"restarts moved to a better fixed point in {len(moved)} cases: time ratio median "
            f"{statistics.median(moved):.2f} ({', '.join(r[0] for r in rows if r[2])})"
        )
    below_once = [r[0] for r in rows if r[3] < -0.01]
    below_best = [r[0] for r in rows if r[4] < -0.01]
    print(f"more than 0.01 below nlme: one run {len(below_once)} {below_once}")
    print(f"more than 0.01 below nlme: restarts {len(below_best)} {below_best}")


if __name__ == "__main__":
    main()
