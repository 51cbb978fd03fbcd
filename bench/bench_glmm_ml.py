"""Wall time of bayesmix's GLMM fits against lme4's glmer and glmmTMB, both run here.

Run from the repository root::

    .venv/bin/python bench/bench_glmm_ml.py [--repeats N] [--no-r] [--cases a,b,...]

Data: ``tests/refs/glmm/data/<name>.csv`` with the factor levels of
``<name>.levels.json`` (read by ``tests/rfidelity.py``'s ``read_with_levels``;
R gets the same factors and levels). In Arabidopsis ``gen`` is made a factor
with its levels in numeric order (the references' ``factor(gen)``); in VerbAgg
bayesmix fits ``r2`` as ``(r2 == "Y")`` (0/1 floats) while glmer gets the
factor (first level N = failure), the same model.

Table 1, bayesmix ``bmx.glmm(formula, data, family).fit()`` (Laplace) against
lme4 ``glmer(formula, data, family)`` (nAGQ = 1, lme4's default control):

- ``cbpp``: ``cbind(incidence, size - incidence) ~ period + (1 | herd)``, binomial
  (56 rows, 15 herds); 10 repeats by default.
- ``owls_slope``: glmmTMB's Owls, ``SiblingNegotiation ~ FoodTreatment * SexParent
  + offset(log(BroodSize)) + (1 + FoodTreatment | Nest)``, Poisson (599 rows,
  27 nests); 10 repeats.
- ``arab_gen``: Arabidopsis, ``total.fruits ~ nutrient + rack + status + amd
  + (1 | popu) + (1 | gen)``, Poisson (625 rows; the case this script had
  before the issue-14 cases); 10 repeats.
- ``arab_slope``: ``total.fruits ~ nutrient*amd + rack + status + (nutrient | popu)
  + (1 | popu:gen)``, Poisson (the GLMM tutorial's model); 5 repeats.
- ``arab_int``: its intercept-only twin, ``(1 | popu) + (1 | popu:gen)``; 5 repeats.
- ``grouseticks``: ``TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX)
  + (1 | LOCATION)``, Poisson (403 rows, INDEX one level per row); 5 repeats.
- ``verbagg``: ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``,
  binary (7,584 rows, 316 ids, 24 items); 5 repeats.

Table 2, bayesmix against ``glmmTMB(formula, data, family, ziformula)`` (its
default control; ziformula ``~0`` where there is none), both on glmmTMB's
observed-information Laplace approximation; 5 repeats each:

- ``nb_arab_int``: ``arab_int``'s formula, ``bmx.glmm(..., "negbinomial")
  .fit(information="observed")`` against ``family = nbinom2``.
- ``zip_arab_slope``: ``arab_slope``'s formula, ``bmx.glmm(..., "poisson",
  ziformula="~1").fit()`` against ``ziformula = ~1, family = poisson``.
- ``zinb_arab_int``: ``arab_int``'s formula, ``"negbinomial", ziformula="~1"``
  against ``ziformula = ~1, family = nbinom2``.
- ``zinb_sim``: simulated ``sim_zinb`` (40 groups), ``y ~ x + (1 | g)``,
  ``"negbinomial", ziformula="~ z"`` against ``ziformula = ~z, family = nbinom2``.

Each case is fitted once untimed (warm-up), then ``repeats`` times timed, on each
side: in Python by ``time.perf_counter`` around ``fit()`` alone (the model and
its design are built once, before the warm-up); in R (started by this script
through ``bench/peer_r.py``, one R process per case) by ``system.time`` around
the fitting call alone. ``--repeats N`` sets every case's count; ``--no-r``
skips R; ``--cases`` takes comma-separated case names (default: all).

Printed: a line with the date, CPU, cores, memory and load average; Python and
package versions and numpy's BLAS; then per table one row per case: best and
median wall time per fit in seconds on each side (``bmx best``, ``bmx med``,
then the peer's, headed ``lme4`` or ``TMB`` for glmmTMB), the ratio of the
medians bayesmix / peer (< 1: bayesmix is faster), bayesmix's logLik, the
peer's logLik and their difference bayesmix - peer; under each table R's
version, the peer packages' versions and R's BLAS/LAPACK. Where R fails, its
error is printed after the row. The last line is the load average at the end
(the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
from bench_env import machine_line, numpy_blas, package_versions
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "refs" / "glmm" / "data"
sys.path.insert(0, str(ROOT / "tests"))
from rfidelity import read_with_levels  # noqa: E402

ARAB = "total.fruits ~ nutrient*amd + rack + status"
ARAB_SLOPE = ARAB + " + (nutrient | popu) + (1 | popu:gen)"
ARAB_INT = ARAB + " + (1 | popu) + (1 | popu:gen)"

#: name -> (data, formula, bayesmix family, R family, ziformula, information, repeats)
LME4_CASES = {
    "cbpp": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
        "binomial",
        None,
        None,
        10,
    ),
    "owls_slope": (
        "Owls",
        "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize))"
        " + (1 + FoodTreatment | Nest)",
        "poisson",
        "poisson",
        None,
        None,
        10,
    ),
    "arab_gen": (
        "Arabidopsis_f",
        "total.fruits ~ nutrient + rack + status + amd + (1 | popu) + (1 | gen)",
        "poisson",
        "poisson",
        None,
        None,
        10,
    ),
    "arab_slope": ("Arabidopsis_f", ARAB_SLOPE, "poisson", "poisson", None, None, 5),
    "arab_int": ("Arabidopsis_f", ARAB_INT, "poisson", "poisson", None, None, 5),
    "grouseticks": (
        "grouseticks",
        "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
        "poisson",
        "poisson",
        None,
        None,
        5,
    ),
    "verbagg": (
        "VerbAgg",
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        "binomial",
        "binomial",
        None,
        None,
        5,
    ),
}
TMB_CASES = {
    "nb_arab_int": ("Arabidopsis_f", ARAB_INT, "negbinomial", "nbinom2", None, "observed", 5),
    "zip_arab_slope": ("Arabidopsis_f", ARAB_SLOPE, "poisson", "poisson", "~1", None, 5),
    "zinb_arab_int": ("Arabidopsis_f", ARAB_INT, "negbinomial", "nbinom2", "~1", None, 5),
    "zinb_sim": ("sim_zinb", "y ~ x + (1 | g)", "negbinomial", "nbinom2", "~ z", None, 5),
}

GLMER = r"""
suppressPackageStartupMessages(library(lme4))
fit_once <- function() glmer(as.formula(spec$formula), data = data, family = spec$family)
fit <- fit_once()  # warm-up, untimed
times <- numeric(spec$repeats)
for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- fit_once())
emit(list(times = I(times), loglik = as.numeric(logLik(fit))))
"""

GLMMTMB = r"""
suppressPackageStartupMessages(library(glmmTMB))
formula <- as.formula(spec$formula)
ziformula <- as.formula(spec$ziformula)
family <- get(spec$family, mode = "function")
fit_once <- function() glmmTMB(formula, data = data, family = family, ziformula = ziformula)
fit <- fit_once()  # warm-up, untimed
times <- numeric(spec$repeats)
for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- fit_once())
emit(list(times = I(times), loglik = as.numeric(logLik(fit))))
"""

TABLES = (  # title, peer column, cases, R code, R packages reported
    ("vs lme4 glmer (nAGQ = 1)", "lme4", LME4_CASES, GLMER, ["lme4", "Matrix"]),
    ("vs glmmTMB", "TMB", TMB_CASES, GLMMTMB, ["glmmTMB", "TMB"]),
)


def load(name: str) -> pd.DataFrame:
    """The data R gets (factors with the references' levels)."""
    frame = read_with_levels(DATA / f"{name}.csv", DATA / f"{name}.levels.json")
    if name == "Arabidopsis_f":  # the references' factor(gen): levels in numeric order
        gen = frame["gen"].astype(str)
        frame["gen"] = pd.Categorical(gen, categories=sorted(gen.unique(), key=int))
    return frame


def python_data(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The data bayesmix gets: VerbAgg's r2 as 0/1 (glmer: first level N = failure)."""
    if name == "VerbAgg":
        return frame.assign(r2=(frame["r2"] == "Y").astype(float))
    return frame


def time_bayesmix(model, information: str | None, repeats: int) -> tuple[list[float], object]:
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(information=information)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            fit = model.fit(information=information)
            times.append(time.perf_counter() - started)
    return times, fit


def main() -> None:
    every = {**LME4_CASES, **TMB_CASES}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per case")
    parser.add_argument("--no-r", action="store_true", help="skip the R peers")
    parser.add_argument("--cases", default=None, help=f"comma-separated, of: {', '.join(every)}")
    args = parser.parse_args()
    chosen = set(every)
    if args.cases:
        chosen = {c.strip() for c in args.cases.split(",") if c.strip()}
        unknown = sorted(chosen - set(every))
        if unknown:
            parser.error(f"unknown cases {unknown}; choose from {', '.join(every)}")
    use_r = not args.no_r and r_available()
    print(machine_line())
    print(package_versions(["bayesmix", "numpy", "scipy", "nlopt"]), "|", numpy_blas())
    for title, peer_name, cases, code, packages in TABLES:
        names = [name for name in cases if name in chosen]
        if not names:
            continue
        print(f"\n{title}")
        print(
            f"{'model':<15}{'bmx best':>9}{'bmx med':>9}{peer_name + ' best':>10}"
            f"{peer_name + ' med':>10}{'ratio':>7}{'bmx logLik':>14}"
            f"{peer_name + ' logLik':>14}{'diff':>10}"
        )
        last_peer = {}
        for name in names:
            data_name, formula, family, r_family, ziformula, information, repeats = cases[name]
            repeats = args.repeats if args.repeats is not None else repeats
            frame = load(data_name)
            options = {"ziformula": ziformula} if ziformula else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = bmx.glmm(formula, python_data(data_name, frame), family, **options)
            times, fit = time_bayesmix(model, information, repeats)
            peer = {}
            if use_r:
                spec = {
                    "formula": formula,
                    "family": r_family,
                    "ziformula": ziformula or "~0",
                    "repeats": repeats,
                    "packages": packages,
                }
                peer = run_r(code, frame, spec, timeout=900)
                last_peer = peer if "times" in peer else last_peer
            bmx_med = statistics.median(times)
            line = f"{name:<15}{min(times):>9.3f}{bmx_med:>9.3f}"
            if "times" in peer:
                r_med = statistics.median(peer["times"])
                line += f"{min(peer['times']):>10.3f}{r_med:>10.3f}{bmx_med / r_med:>7.2f}"
                line += f"{fit.loglik:>14.4f}{peer['loglik']:>14.4f}"
                line += f"{fit.loglik - peer['loglik']:>10.1e}"
            else:
                error = peer.get("error", "-")
                line += f"{'-':>10}{'-':>10}{'-':>7}{fit.loglik:>14.4f}{'-':>14}{'-':>10}"
                line += f"  {error}" if error != "-" else ""
            print(line, flush=True)
        if last_peer:
            print(r_blas_line(last_peer))
    load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload at the end {load_now:.1f}")


if __name__ == "__main__":
    main()
