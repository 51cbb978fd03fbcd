"""Wall time of bayesmix's GLMM Laplace fits against lme4's glmer, both run here (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_glmm_ml.py [--repeats 10] [--no-r]

Three GLMMs of ``tests/test_glmm_laplace.py``: cbpp (binomial, cbind response,
15 herds), Arabidopsis' fruit counts (Poisson, 625 rows, crossed popu and gen
intercepts) and glmmTMB's Owls (Poisson with an offset and a correlated random
slope on FoodTreatment, 599 rows, 27 nests). Each is fitted ``repeats`` times
(default 10) after an untimed warm-up, by ``bmx.glmm(...).fit()`` and by
``glmer`` (nAGQ = 1, lme4's default control) in R started by this script
(``bench/peer_r.py``; R times the glmer call alone). Printed: best and median
wall time per fit on each side, the ratio of the medians bayesmix / lme4 (< 1:
bayesmix is faster) and both logLiks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd
from bench_env import machine_line, numpy_blas, package_versions
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx

REFS = Path(__file__).resolve().parent.parent / "tests" / "refs" / "glmm_laplace"

CASES = {  # name -> (data, bayesmix formula, glmer formula, family)
    "cbpp": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
    ),
    "arabidopsis": (
        "Arabidopsis_f",
        "total.fruits ~ nutrient + rack + status + amd + (1 | popu) + (1 | gen)",
        "total.fruits ~ nutrient + rack + status + amd + (1 | popu) + (1 | gen)",
        "poisson",
    ),
    "owls_slope": (
        "Owls",
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize))"
        " + (1 + FoodTreatment | Nest)",
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize))"
        " + (1 + FoodTreatment | Nest)",
        "poisson",
    ),
}

GLMER = r"""
suppressPackageStartupMessages(library(lme4))
fit_once <- function() glmer(as.formula(spec$formula), data = data, family = spec$family)
fit <- fit_once()  # warm-up, untimed
times <- numeric(spec$repeats)
for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- fit_once())
emit(list(times = I(times), loglik = as.numeric(logLik(fit))))
"""


def load(name: str) -> pd.DataFrame:
    frame = pd.read_csv(REFS / f"{name}.csv")
    factors = json.loads((REFS / f"{name}.levels.json").read_text())["factors"]
    for column, info in factors.items():
        levels = [str(level) for level in info["levels"]]
        frame[column] = pd.Categorical(frame[column].astype(str), categories=levels)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-r", action="store_true", help="skip lme4")
    args = parser.parse_args()
    print(machine_line())
    print(package_versions(["bayesmix", "numpy", "scipy", "nlopt"]), "|", numpy_blas())
    header = f"{'model':<13}{'bmx best':>9}{'bmx med':>9}{'lme4 best':>10}{'lme4 med':>10}"
    print(header + f"{'ratio':>7}{'bmx logLik':>14}{'lme4 logLik':>14}")
    for name, (data_name, formula, r_formula, family) in CASES.items():
        data = load(data_name)
        model = bmx.glmm(formula, data, family)
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit()  # warm-up
            for _ in range(args.repeats):
                started = time.perf_counter()
                fit = model.fit()
                times.append(time.perf_counter() - started)
        peer = {}
        if not args.no_r and r_available():
            factors = {c: list(data[c].cat.categories) for c in data if data[c].dtype == "category"}
            spec = {
                "formula": r_formula,
                "family": family,
                "repeats": args.repeats,
                "factors": factors,
                "packages": ["lme4"],
            }
            peer = run_r(GLMER, data, spec, timeout=900)
        line = f"{name:<13}{min(times):>9.3f}{statistics.median(times):>9.3f}"
        if "times" in peer:
            r_med = statistics.median(peer["times"])
            line += f"{min(peer['times']):>10.3f}{r_med:>10.3f}"
            line += f"{statistics.median(times) / r_med:>7.2f}{fit.loglik:>14.4f}"
            line += f"{peer['loglik']:>14.4f}"
        else:
            line += f"{'-':>10}{'-':>10}{'-':>7}{fit.loglik:>14.4f}{peer.get('error', '-')!s:>14}"
        print(line)
    if peer:
        print(r_blas_line(peer))


if __name__ == "__main__":
    main()
