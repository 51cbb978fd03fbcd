"""Wall time of ML/REML fits with residual variance/correlation structures against nlme.

bayesmix's fits with nlme's variance functions (``weights=``) and correlation
structures (``correlation=``), issue 15, against nlme's ``lme``/``gls``, both run here.

Run from the repository root::

    .venv/bin/python bench/bench_residual_ml.py [--repeats N] [--no-r] [--cases a,b,...]
                                                [--groups 250,500,...]

The default run (10 repeats, all cases, the scaling table) took 2 minutes on 2 cores, most
of it nlme on the largest panels.

Table 1, the reference models of ``tests/test_residual_ml.py`` (data
``tests/refs/varcorr/data/<name>.csv`` with the factor levels of ``<name>.levels.json``,
read by ``tests/rfidelity.py``'s ``read_with_levels``; R gets the same factors, levels
and ordered flags), each by ML and by REML. bayesmix's call is the test's,
``bmx.lmm(formula, data, weights=..., correlation=...)`` or ``bmx.gls(...)`` with the
structures in nlme's syntax; R's is the reference's own call, taken from
``tests/refs/varcorr/refs/<case>_<method>.json`` (``call``, with ``data = data``):

- ``V01_orthodont_lme_varident``: ``distance ~ age + Sex + (1|Subject)``,
  ``varIdent(form = ~1 | Sex)`` (108 rows).
- ``V02_ovary_lme_ar1``: ``follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1|Mare)``,
  ``corAR1()`` (308 rows).
- ``V03_ovary_lme_arma11``: the same, ``corARMA(p = 1, q = 1)``.
- ``V06_bodyweight_lme_varpower_car1``: ``weight ~ Time * Diet + (Time | Rat)``,
  ``varPower()`` (of the fitted values: nlme's alternation) + ``corCAR1(form = ~ Time)``
  (176 rows).
- ``V07_orthodont_gls_corsymm_varident``: gls ``distance ~ age * Sex``,
  ``corSymm(form = ~ 1 | Subject)`` + ``varIdent(form = ~ 1 | age)``.
- ``V13_bodyweight_lme_corexp_nugget``: BodyWeight's lme, ``corExp(form = ~ Time,
  nugget = TRUE)``.
- ``V15_spatial_gls_corexp_nugget``: gls ``resp ~ z`` on ``spatial_sim`` (80 rows, one
  group), ``corExp(form = ~ x + y, nugget = TRUE)``.
- ``V17_dialyzer_lme_varpower_ar1``: Dialyzer's quartic in pressure by QB with
  ``(pressure + I(pressure^2) | Subject)``, ``varPower(form = ~ pressure)`` +
  ``corAR1()`` (140 rows).

Each (case, method) is one row; its bayesmix and nlme timings run back to back (R
started by this script through ``bench/peer_r.py``, one R process per row), so a
change in the machine's load hits both sides of a row alike. Each side fits once
untimed (warm-up), then ``repeats`` times timed (default 10). Figures:

- ``nlme``: median seconds of the whole ``lme(...)``/``gls(...)`` call, timed in R by
  ``system.time`` (nlme builds its model frame inside that call).
- ``bmx a``: median seconds of ``bmx.lmm(...).fit(method)``: model construction
  (formula, design, the structures' syntax, binding) plus the fit, by
  ``time.perf_counter``. The like-for-like comparison with nlme's call.
- ``bmx b``: median seconds of ``model.fit(method)`` alone, on a model built before the
  warm-up.
- ``a/nlme``, ``b/nlme``: the ratios of the medians (< 1: bayesmix is faster).
- ``dlogLik``: bayesmix's logLik minus nlme's (REML: the restricted one); ``load``:
  the 1-minute load average when the row was done.

Table 2, scaling: a simulated AR(1) panel (seed 20240615), ``y = 1 + 0.5 x + b_g + e``,
``b_g ~ N(0, 0.8^2)``, ``e`` AR(1) within a group with ``phi = 0.6`` and unit
variance, 100 times per group, 250 / 500 / 1,000 / 2,000 groups (25k-200k rows; set by
``--groups``), fitted by ML: ``bmx.lmm("y ~ x + (1 | g)", data,
correlation=bmx.corAR1(group="g"))`` against ``lme(y ~ x, data, random = ~ 1 | g,
correlation = corAR1(form = ~ 1 | g), method = "ML")``. Each side warms up on the
first 20 groups, then bayesmix times ``a`` and ``b`` (as above) 3 times each and nlme
its call once (R gets the data through a CSV in a temporary folder). nlme is run only
at sizes where its time, extrapolated from the sizes before (power law in the rows,
exponent at least 1), is under 60 s; the others print ``skipped``. Printed per size:
the median seconds of each, the same as seconds per 100k rows (constant across
sizes = linear time), the ratios to nlme and the logLik difference.

``--repeats N`` sets table 1's count (and table 2's bayesmix count); ``--no-r`` skips R;
``--cases`` takes comma-separated case names or their V-numbers (``V02,V17``) and
``scaling`` for table 2 (default: all). Above the tables: a line with the date, CPU,
cores, memory and load; Python and package versions and numpy's BLAS; under each
table R's version, nlme's and R's BLAS/LAPACK. The last line is the load average at
the end: the machine may be shared, so read the ratios with the ``load`` column.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from bench_env import machine_line, numpy_blas, package_versions
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx

ROOT = Path(__file__).resolve().parent.parent
VARCORR = ROOT / "tests" / "refs" / "varcorr"
sys.path.insert(0, str(ROOT / "tests"))
from varcorr_cases import CASES as ALL_CASES  # noqa: E402
from varcorr_cases import data  # noqa: E402

#: the timed cases; their calls are tests/varcorr_cases.py's (as the tests fit them)
CASES = {
    case: ALL_CASES[case]
    for case in (
        "V01_orthodont_lme_varident",
        "V02_ovary_lme_ar1",
        "V03_ovary_lme_arma11",
        "V06_bodyweight_lme_varpower_car1",
        "V07_orthodont_gls_corsymm_varident",
        "V13_bodyweight_lme_corexp_nugget",
        "V15_spatial_gls_corexp_nugget",
        "V17_dialyzer_lme_varpower_ar1",
    )
}
METHODS = ("ML", "REML")
SCALING = "scaling"
GROUPS = (250, 500, 1000, 2000)
PER_GROUP = 100
SCALE_REPEATS = 3
NLME_LIMIT_S = 60.0
WARMUP_GROUPS = 20

LME = r"""
suppressPackageStartupMessages(library(nlme))
for (column in spec$ordered) {  # the references' ordered grouping factors
  data[[column]] <- factor(data[[column]], levels = levels(data[[column]]), ordered = TRUE)
}
expr <- parse(text = spec$call)[[1]]
fit <- eval(expr)  # warm-up, untimed
times <- numeric(spec$repeats)
for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- eval(expr))
emit(list(times = I(times), loglik = as.numeric(logLik(fit))))
"""

LME_PANEL = r"""
suppressPackageStartupMessages(library(nlme))
fit_once <- function(d) {
  lme(y ~ x, data = d, random = ~ 1 | g, correlation = corAR1(form = ~ 1 | g), method = "ML")
}
small <- droplevels(data[data$g %in% levels(data$g)[seq_len(spec$warmup_groups)], ])
fit <- fit_once(small)  # warm-up, untimed
times <- numeric(spec$repeats)
for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- fit_once(data))
emit(list(times = I(times), loglik = as.numeric(logLik(fit))))
"""


def ordered_columns(frame: pd.DataFrame) -> list[str]:
    return [
        column
        for column in frame.columns
        if isinstance(frame[column].dtype, pd.CategoricalDtype) and frame[column].cat.ordered
    ]


def r_call(case: str, method: str) -> str:
    """The reference's nlme call, on the data frame R calls ``data``."""
    ref = json.loads((VARCORR / "refs" / f"{case}_{method.lower()}.json").read_text())
    pattern = rf"\bdata = {re.escape(ref['dataset']['name'])}\b"
    call, count = re.subn(pattern, "data = data", ref["call"])
    if count != 1:
        raise ValueError(f"{case}: cannot find the data argument in {ref['call']!r}")
    return call


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def timed(function, repeats: int) -> tuple[list[float], object]:
    """``repeats`` timed calls of ``function()`` (after the caller's warm-up)."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = quiet(function)
        times.append(time.perf_counter() - started)
    return times, result


def build_and_fit(build, formula: str, data: pd.DataFrame, arguments: dict, method: str):
    """Figure ``a``: the model built from the formula and data, then fitted."""
    return build(formula, data, **arguments).fit(method)


def load_now() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def ratio(numerator: float, denominator: float | None) -> str:
    return f"{numerator / denominator:>8.2f}" if denominator else f"{'-':>8}"


def run_cases(names: list[str], repeats: int, use_r: bool) -> None:
    print("\nTable 1: median seconds per call; ratios to nlme's whole lme/gls call")
    print(
        f"{'case':<36}{'method':<7}{'rows':>6}{'nlme':>9}{'bmx a':>9}{'bmx b':>9}"
        f"{'a/nlme':>8}{'b/nlme':>8}{'dlogLik':>10}{'load':>6}"
    )
    last_peer: dict = {}
    for case in names:
        constructor, formula, dataset, arguments = CASES[case]
        frame = data(dataset)
        build = getattr(bmx, constructor)
        for method in METHODS:
            model = quiet(build, formula, frame, **arguments)
            quiet(build(formula, frame, **arguments).fit, method)  # warm-up
            a_times, fit = timed(
                partial(build_and_fit, build, formula, frame, arguments, method), repeats
            )
            b_times, _ = timed(partial(model.fit, method), repeats)
            peer: dict = {}
            if use_r:
                spec = {
                    "call": r_call(case, method),
                    "ordered": ordered_columns(frame),
                    "repeats": repeats,
                    "packages": ["nlme"],
                }
                peer = run_r(LME, frame, spec, timeout=600)
                last_peer = peer if "times" in peer else last_peer
            a_med, b_med = statistics.median(a_times), statistics.median(b_times)
            r_med = statistics.median(peer["times"]) if "times" in peer else None
            line = f"{case:<36}{method:<7}{len(frame):>6}"
            line += f"{r_med:>9.4f}" if r_med else f"{'-':>9}"
            line += f"{a_med:>9.4f}{b_med:>9.4f}{ratio(a_med, r_med)}{ratio(b_med, r_med)}"
            line += f"{fit.loglik - peer['loglik']:>10.1e}" if r_med else f"{'-':>10}"
            line += f"{load_now():>6.1f}"
            if "error" in peer:
                line += f"  R: {peer['error']}"
            print(line, flush=True)
    if last_peer:
        print(r_blas_line(last_peer))


def simulate_panel(groups: int, per: int = PER_GROUP, seed: int = 20240615) -> pd.DataFrame:
    """``groups`` groups of ``per`` consecutive AR(1) rows, sorted by group then time."""
    rng = np.random.default_rng(seed + groups)
    phi = 0.6
    errors = np.empty((groups, per))
    errors[:, 0] = rng.standard_normal(groups)
    innovations = rng.standard_normal((groups, per)) * math.sqrt(1 - phi**2)
    for t in range(1, per):
        errors[:, t] = phi * errors[:, t - 1] + innovations[:, t]
    x = rng.standard_normal(groups * per)
    b = rng.standard_normal(groups) * 0.8
    names = [f"g{k:05d}" for k in range(groups)]
    y = 1.0 + 0.5 * x + np.repeat(b, per) + errors.ravel()
    g = pd.Categorical(np.repeat(names, per), categories=names)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def predicted_nlme(measured: list[tuple[int, float]], rows: int) -> float:
    """nlme's time at ``rows`` by a power law through the last two sizes (exponent >= 1)."""
    if not measured:
        return 0.0
    rows_last, t_last = measured[-1]
    exponent = 1.0
    if len(measured) > 1:
        rows_prev, t_prev = measured[-2]
        exponent = max(1.0, math.log(t_last / t_prev) / math.log(rows_last / rows_prev))
    return t_last * (rows / rows_last) ** exponent


def run_scaling(groups_list: list[int], repeats: int, use_r: bool) -> None:
    formula = "y ~ x + (1 | g)"
    correlation = bmx.corAR1(group="g")
    print(
        f"\nTable 2: AR(1) panel {formula}, corAR1(group='g'), {PER_GROUP} rows per group, ML;"
        " median seconds, then seconds per 100k rows"
    )
    print(
        f"{'groups':>7}{'rows':>9}{'nlme':>9}{'bmx a':>9}{'bmx b':>9}{'nlme/100k':>11}"
        f"{'a/100k':>9}{'b/100k':>9}{'a/nlme':>8}{'b/nlme':>8}{'dlogLik':>10}{'load':>6}"
    )
    measured: list[tuple[int, float]] = []
    last_peer: dict = {}
    for groups in groups_list:
        data = simulate_panel(groups)
        rows = len(data)
        small = data[data["g"].cat.codes < WARMUP_GROUPS].copy()
        small["g"] = small["g"].cat.remove_unused_categories()
        quiet(bmx.lmm(formula, small, correlation=correlation).fit, "ML")  # warm-up
        model = quiet(bmx.lmm, formula, data, correlation=correlation)
        arguments = {"correlation": correlation}
        a_times, fit = timed(
            partial(build_and_fit, bmx.lmm, formula, data, arguments, "ML"), repeats
        )
        b_times, _ = timed(partial(model.fit, "ML"), repeats)
        del model
        peer: dict = {}
        note = ""
        if use_r:
            guess = predicted_nlme(measured, rows)
            if guess > NLME_LIMIT_S:
                note = f"  nlme skipped: ~{guess:.0f} s predicted > {NLME_LIMIT_S:.0f} s"
            else:
                spec = {"repeats": 1, "warmup_groups": WARMUP_GROUPS, "packages": ["nlme"]}
                peer = run_r(LME_PANEL, data, spec, timeout=max(180.0, 3 * guess))
                if "times" in peer:
                    last_peer = peer
                    measured.append((rows, statistics.median(peer["times"])))
                else:
                    note = f"  R: {peer.get('error', '?')}"
        a_med, b_med = statistics.median(a_times), statistics.median(b_times)
        r_med = statistics.median(peer["times"]) if "times" in peer else None
        per = 1e5 / rows
        line = f"{groups:>7}{rows:>9}"
        line += f"{r_med:>9.2f}" if r_med else f"{'-':>9}"
        line += f"{a_med:>9.3f}{b_med:>9.3f}"
        line += f"{r_med * per:>11.2f}" if r_med else f"{'-':>11}"
        line += f"{a_med * per:>9.3f}{b_med * per:>9.3f}{ratio(a_med, r_med)}{ratio(b_med, r_med)}"
        line += f"{fit.loglik - peer['loglik']:>10.1e}" if r_med else f"{'-':>10}"
        line += f"{load_now():>6.1f}{note}"
        print(line, flush=True)
    if last_peer:
        print(r_blas_line(last_peer))


def main() -> None:
    choices = [*CASES, SCALING]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per case (10)")
    parser.add_argument("--no-r", action="store_true", help="skip nlme")
    parser.add_argument(
        "--cases", default=None, help=f"comma-separated, of: {', '.join(choices)} (or V-numbers)"
    )
    parser.add_argument(
        "--groups",
        default=",".join(map(str, GROUPS)),
        help="comma-separated group counts of the scaling table",
    )
    args = parser.parse_args()
    chosen = list(choices)
    if args.cases:
        chosen = []
        for item in (c.strip() for c in args.cases.split(",") if c.strip()):
            matches = [c for c in choices if c == item or c.split("_")[0] == item]
            if not matches:
                parser.error(f"unknown case {item!r}; choose from {', '.join(choices)}")
            chosen += [m for m in matches if m not in chosen]
    groups_list = [int(g) for g in args.groups.split(",") if g.strip()]
    use_r = not args.no_r and r_available()
    print(machine_line())
    print(package_versions(["bayesmix", "numpy", "scipy", "nlopt"]), "|", numpy_blas())
    names = [c for c in CASES if c in chosen]
    if names:
        run_cases(names, args.repeats or 10, use_r)
    if SCALING in chosen:
        run_scaling(groups_list, args.repeats or SCALE_REPEATS, use_r)
    print(f"\nload at the end {load_now():.1f}")


if __name__ == "__main__":
    main()
