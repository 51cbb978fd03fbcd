"""Speed of bayesmix's inference tools against lme4, lmerTest and bootMer in the same run.

Run from the repository root (one BLAS thread on both sides)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_inference.py            # all parts
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_inference.py profile bootstrap
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_inference.py satterthwaite

Parts:

* ``profile``: ``confint(method="profile")`` (95 %) of sleepstudy
  ``Reaction ~ Days + (Days | Subject)`` by ML and of Arabidopsis
  ``log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen)``
  by REML; timed: the ``confint`` call only, after the fit (median of 3), both sides.
* ``satterthwaite``: InstEval ``y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service)``
  by REML; bayesmix: the fit, then ``coef_table("Satterthwaite")`` and the type III
  ``anova``; R: ``lme4::lmer`` and ``lmerTest::lmer`` (lmerTest computes its Hessian
  and Jacobian while fitting, so its Satterthwaite cost is the difference), then
  ``summary`` and ``anova``.
* ``bootstrap``: 1,000 parametric-bootstrap refits of sleepstudy (ML) in this
  process, on a local Dask cluster of 1 and of 2 worker processes (start-up
  included), on an already running cluster of 1 and 2 workers (warmed up: the
  refits alone), and lme4's ``bootMer`` (``nsim = 1000``).

Every figure prints with its ratio to the peer measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer_r import r_available, run_r  # noqa: E402

import bayesmix as bmx  # noqa: E402

PROFILE_R = r"""
suppressMessages(library(lme4))
fit <- lmer(as.formula(spec$formula), data, REML = spec$reml)
times <- sapply(1:3, function(i) elapsed(ci <<- suppressWarnings(
    confint(fit, method = "profile", oldNames = FALSE))))
emit(list(confint_s = median(times), lower = unname(ci[, 1]), upper = unname(ci[, 2])))
"""

SATTERTHWAITE_R = r"""
suppressMessages({library(lme4); library(lmerTest)})
plain_s <- elapsed(plain <- lme4::lmer(as.formula(spec$formula), data, REML = TRUE))
test_s <- elapsed(fit <- lmerTest::lmer(as.formula(spec$formula), data, REML = TRUE))
summary_s <- elapsed(table <- summary(fit, ddf = "Satterthwaite")$coefficients)
anova_s <- elapsed(a <- anova(fit, type = 3, ddf = "Satterthwaite"))
emit(list(lme4_fit_s = plain_s, lmertest_fit_s = test_s, summary_s = summary_s,
          anova_s = anova_s, df = unname(table[, "df"])))
"""

BOOT_R = r"""
suppressMessages(library(lme4))
fit <- lmer(Reaction ~ Days + (Days | Subject), data, REML = FALSE)
stat <- function(m) c(fixef(m), sigma = sigma(m), as.data.frame(VarCorr(m))$sdcor)
boot_s <- elapsed(b <- suppressWarnings(suppressMessages(
    bootMer(fit, stat, nsim = 1000, seed = 1))))
emit(list(boot_s = boot_s))
"""


def factors(data: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    data = data.copy()
    for column in columns:
        data[column] = data[column].astype("category")
    return data


def ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def profile_part() -> None:
    arabidopsis = factors(bmx.load_dataset("Arabidopsis"), ("gen", "rack", "nutrient"))
    cases = [
        (
            "sleepstudy ML",
            bmx.load_dataset("sleepstudy"),
            "Reaction ~ Days + (Days | Subject)",
            "ML",
        ),
        (
            "Arabidopsis slopes REML",
            arabidopsis,
            "log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen)",
            "REML",
        ),
    ]
    print("Profile intervals (confint, 95 %), median of 3 calls after the fit")
    for name, data, formula, method in cases:
        fit = bmx.lmm(formula, data).fit(method=method)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit.confint()
            times.append(time.perf_counter() - start)
        ours = statistics.median(times)
        peer = None
        if r_available():
            out = run_r(PROFILE_R, data, {"formula": formula, "reml": method == "REML"}, 1800)
            peer = out.get("confint_s")
        print(
            f"  {name:26s} bayesmix {ours:7.2f} s   lme4 {peer if peer else float('nan'):7.2f} s"
            f"   ratio {ratio(ours, peer)}"
        )


def satterthwaite_part() -> None:
    data = bmx.load_dataset("InstEval")[["y", "service", "s", "d", "dept"]]
    formula = "y ~ service + dept + (1 | s) + (1 | d) + (1 | dept:service)"
    start = time.perf_counter()
    fit = bmx.lmm(formula, data).fit(method="REML")
    fitted = time.perf_counter()
    table = fit.coef_table("Satterthwaite")
    tabled = time.perf_counter()
    fit.anova(type=3)
    done = time.perf_counter()
    ours_extra = done - fitted
    print("Satterthwaite degrees of freedom on InstEval (73,421 rows), REML")
    print(
        f"  bayesmix: fit {fitted - start:.2f} s, coef_table {tabled - fitted:.2f} s, "
        f"type III anova {done - tabled:.2f} s (df of service1: {table['df'].iloc[1]:.3f})"
    )
    if r_available():
        out = run_r(SATTERTHWAITE_R, data, {"formula": formula}, 3600)
        if "error" in out:
            print(f"  R failed: {out['error']}")
            return
        extra = out["lmertest_fit_s"] - out["lme4_fit_s"] + out["summary_s"] + out["anova_s"]
        print(
            f"  lmerTest: lme4 fit {out['lme4_fit_s']:.2f} s, lmerTest fit "
            f"{out['lmertest_fit_s']:.2f} s, summary {out['summary_s']:.2f} s, anova "
            f"{out['anova_s']:.2f} s (df of service1: {out['df'][1]:.3f})"
        )
        whole = out["lmertest_fit_s"] + out["summary_s"] + out["anova_s"]
        print(
            f"  Satterthwaite's cost beyond the fit: bayesmix {ours_extra:.2f} s, lmerTest "
            f"{extra:.2f} s, ratio {ratio(ours_extra, extra)}; whole job "
            f"{done - start:.2f} s vs {whole:.2f} s"
        )


def bootstrap_part() -> None:
    data = bmx.load_dataset("sleepstudy")
    fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", data).fit(method="ML")
    print("Parametric bootstrap, 1,000 refits of sleepstudy (Days | Subject), ML")
    runs = {}
    for label, options in (
        ("in this process", {"client": "sync"}),
        ("Dask, 1 worker", {"workers": 1}),
        ("Dask, 2 workers", {"workers": 2}),
    ):
        start = time.perf_counter()
        result = fit.bootstrap(1000, seed=1, progress=False, **options)
        runs[label] = time.perf_counter() - start
        print(f"  {label:16s} {runs[label]:6.2f} s (batches of {result.batch_size})")
    print(
        f"  speed-up of 2 workers over 1: "
        f"{runs['Dask, 1 worker'] / runs['Dask, 2 workers']:.2f}x (cluster start-up included)"
    )
    from distributed import Client, LocalCluster

    for n_workers in (1, 2):  # a cluster already running: the refits alone
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            fit.bootstrap(2 * n_workers, seed=2, progress=False, client=client)  # warm workers
            start = time.perf_counter()
            fit.bootstrap(1000, seed=1, progress=False, client=client)
            runs[f"running {n_workers}"] = time.perf_counter() - start
        print(f"  running cluster, {n_workers} worker(s): {runs[f'running {n_workers}']:.2f} s")
    print(
        f"  speed-up of 2 workers over 1 on a running cluster: "
        f"{runs['running 1'] / runs['running 2']:.2f}x"
    )
    if r_available():
        out = run_r(BOOT_R, data, {}, 1800)
        peer = out.get("boot_s")
        if peer:
            print(
                f"  lme4 bootMer {peer:.2f} s; ratio of bayesmix on 2 workers "
                f"{ratio(runs['Dask, 2 workers'], peer)}, in this process "
                f"{ratio(runs['in this process'], peer)}"
            )


PARTS = {"profile": profile_part, "satterthwaite": satterthwaite_part, "bootstrap": bootstrap_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", choices=[*PARTS, []], default=[])
    args = parser.parse_args()
    for name in args.parts or list(PARTS):
        PARTS[name]()
        print()


if __name__ == "__main__":
    main()
