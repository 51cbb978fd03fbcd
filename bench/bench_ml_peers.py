"""Speed of bayesmix's ML/REML linear mixed models against three peers in one run (prints a table).

Run from the repository root::

    .venv/bin/python bench/bench_ml_peers.py                        # all six cases
    .venv/bin/python bench/bench_ml_peers.py sleepstudy penicillin  # some cases
    .venv/bin/python bench/bench_ml_peers.py insteval --repeats 1 --timeout 600
    .venv/bin/python bench/bench_ml_peers.py --no-r --statsmodels-python none

Cases (name: model, method, timed fits; ``--repeats`` overrides the last):

* sleepstudy: ``Reaction ~ Days + (Days | Subject)``, REML, 50;
* penicillin: ``diameter ~ 1 + (1 | plate) + (1 | sample)``, REML, 50;
* arabidopsis: ``log(1 + total.fruits) ~ rack + nutrient + amd + status +
  (nutrient | popu) + (nutrient | popu:gen)``, ML, 10;
* insteval: ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)``, ML, 3;
* synthetic1e5: ``y ~ 1 + x + (1 + x | g1) + (1 | g2)`` (``bench_ml.synthetic_case``),
  10^5 rows, 1,000 x 100 levels, ML, 1;
* synthetic1e6: the same with 10^6 rows, 10,000 x 1,000 levels, ML, 1.

Arabidopsis: ``gen``, ``rack`` and ``nutrient`` are made factors (levels in
numeric order), as in lme4's copy of the data set (bayesmix's copy stores them
as integers), so that every side fits the same columns.

Sides, each in its own process, one after another (never two at once):

* bayesmix (this venv, ``sys.executable``, run as a subprocess of this script
  so that its peak resident memory is per case): timed = ``bmx.lmm(formula,
  data)`` (design) plus ``model.fit(method=...)`` (fit), both reported;
  ``fit.loglik`` and ``fit.estimates.n_evaluations``;
* lme4 through ``Rscript`` (``bench/peer_r.py``: the data go to R through a
  temporary CSV, factors with the same levels): timed = the ``lmer(formula,
  data, REML = ...)`` call; evaluations = ``fit@optinfo$feval``;
* mixedlm, a Rust clone of lme4 on PyPI (``bench/peer_mixedlm.py``, its own
  venv): timed = ``mixedlm.lmer(formula, data, REML=...)``; evaluations =
  ``fit.function_evals``;
* statsmodels' MixedLM (``bench/peer_statsmodels.py``, its own venv): timed =
  ``smf.mixedlm(...)`` plus ``.fit(reml=...)``; evaluations = log-likelihood
  + gradient calls. It runs the models it can express (one grouping factor
  with correlated terms, or crossed intercepts as variance components of one
  group); the table says "—" for the others, with the reason underneath.

The Python peers get the data as a temporary CSV (categoricals written as
their labels, with the list of factor columns and their levels in a JSON spec
on stdin) and print one JSON line. Every side first fits once, untimed: the
same model on the same data, except for the synthetic cases, where a single
fit takes minutes and the warm-up is a sleepstudy fit (it only loads code).
Times are medians over the repeats of the formula-to-fit wall time
(``time.perf_counter`` in Python, ``Sys.time`` in R). All sides run with
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1`` (set by this
script for every subprocess). The ratio column is bayesmix's total time over
the fastest peer's (< 1: bayesmix is faster); the logLik column is the largest
absolute difference between a peer's logLik (REML log-likelihood for REML
fits) and bayesmix's, flagged with "!" above 1e-4. Peak memory is each
process's maximum resident set size (``getrusage``; R's ``VmHWM``), data and
interpreter included.

Creating the peer venvs (Python 3.12, as for bayesmix; a missing venv skips
that peer with a note)::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/mixedlm-venv
    /tmp/mixedlm-venv/bin/pip install mixedlm pandas
    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/statsmodels-venv
    /tmp/statsmodels-venv/bin/pip install statsmodels pandas

lme4 needs ``Rscript`` with the R packages lme4 and jsonlite (``--no-r`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from bench_env import machine_line, numpy_blas, package_versions
from bench_ml import insteval_case, sleepstudy_case, synthetic_case, time_fits
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx

BENCH_DIR = Path(__file__).resolve().parent
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LOGLIK_TOL = 1e-4
PEERS = ("lme4", "mixedlm", "statsmodels")

# lme4's side: one untimed warm-up, then the lmer call ``repeats`` times.
LMER = r"""
suppressPackageStartupMessages(library(lme4))
form <- as.formula(spec$formula)
reml <- isTRUE(spec$reml)
seconds <- function(expr) {  # wall time of expr, evaluated in the caller's frame
  start <- Sys.time()
  force(expr)
  as.numeric(difftime(Sys.time(), start, units = "secs"))
}
if (isTRUE(spec$warmup_same)) {
  invisible(lmer(form, data = data, REML = reml))
} else {
  invisible(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
}
times <- numeric(spec$repeats)
for (i in seq_len(spec$repeats)) times[i] <- seconds(fit <- lmer(form, data = data, REML = reml))
emit(list(
  total_s = median(times),
  times = I(times),
  repeats = spec$repeats,
  loglik = as.numeric(logLik(fit)),
  n_evaluations = fit@optinfo$feval,
  optimizer = fit@optinfo$optimizer,
  messages = as.list(c(fit@optinfo$conv$lme4$messages, unlist(fit@optinfo$warnings)))
))
"""


def penicillin_case() -> tuple[pd.DataFrame, str, str]:
    """Penicillin: two crossed random intercepts, REML."""
    return bmx.load_dataset("Penicillin"), "diameter ~ 1 + (1 | plate) + (1 | sample)", "REML"


def arabidopsis_case() -> tuple[pd.DataFrame, str, str]:
    """Arabidopsis with lme4's factors: ``gen``, ``rack``, ``nutrient`` categorical, ML."""
    data = bmx.load_dataset("Arabidopsis")
    data = data[["popu", "gen", "rack", "nutrient", "amd", "status", "total.fruits"]].copy()
    for column in ("gen", "rack", "nutrient"):  # integers in bayesmix's copy, factors in lme4's
        values = data[column]
        levels = [str(v) for v in sorted(values.unique())]
        data[column] = pd.Categorical(values.astype(str), categories=levels)
    formula = (
        "log(1 + total.fruits) ~ rack + nutrient + amd + status"
        " + (nutrient | popu) + (nutrient | popu:gen)"
    )
    return data, formula, "ML"


def interaction(data: pd.DataFrame, first: str, second: str) -> pd.Categorical:
    """The observed combinations of two factors as one factor (labels "a:b")."""
    labels = data[first].astype(str) + ":" + data[second].astype(str)
    return pd.Categorical(labels, categories=sorted(labels.unique()))


def mixedlm_arabidopsis(data: pd.DataFrame, formula: str) -> tuple[pd.DataFrame, str]:
    """mixedlm parses no function of the response: the response as a computed column."""
    data = data.assign(log1p_fruits=np.log1p(data["total.fruits"].to_numpy(dtype=float)))
    return data, "log1p_fruits" + formula[formula.index(" ~") :]


def statsmodels_insteval(data: pd.DataFrame) -> pd.DataFrame:
    """statsmodels' variance components need ``dept:service`` as one column."""
    return data.assign(dept_service=interaction(data, "dept", "service"))


NOT_EXPRESSIBLE = (
    "MixedLM has one grouping factor with correlated terms and independent variance"
    " components: correlated slopes of a second grouping factor, as here, cannot be expressed"
)


@dataclass(frozen=True)
class Case:
    """One benchmark: the data and model, and how each peer gets them."""

    label: str
    build: Callable[[], tuple[pd.DataFrame, str, str]]
    repeats: int
    big: bool = False  # a fit takes minutes: every side warms up on sleepstudy instead
    mixedlm: Callable[[pd.DataFrame, str], tuple[pd.DataFrame, str]] | None = None
    mixedlm_note: str = ""
    statsmodels: dict | str = field(default_factory=dict)  # the worker spec, or why not run
    statsmodels_data: Callable[[pd.DataFrame], pd.DataFrame] | None = None


CASES = {
    "sleepstudy": Case(
        "sleepstudy",
        sleepstudy_case,
        50,
        statsmodels={"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"},
    ),
    "penicillin": Case(
        "Penicillin",
        penicillin_case,
        50,
        statsmodels={
            "formula": "diameter ~ 1",
            "groups": None,  # one group of all rows, the crossed factors as variance components
            "re_formula": "0",
            "vc_formula": {"plate": "0 + C(plate)", "sample": "0 + C(sample)"},
        },
    ),
    "arabidopsis": Case(
        "Arabidopsis",
        arabidopsis_case,
        10,
        mixedlm=mixedlm_arabidopsis,
        mixedlm_note=(
            "mixedlm's formula parser rejects a function of the response (log(1 + total.fruits):"
            " 'Expected TokenType.TILDE, got TokenType.LPAREN'), so it gets log1p(total.fruits)"
            " as a column; it parses popu:gen itself"
        ),
        statsmodels=NOT_EXPRESSIBLE + " ((nutrient | popu:gen))",
    ),
    "insteval": Case(
        "InstEval",
        insteval_case,
        3,
        statsmodels={
            "formula": "y ~ 1 + service",
            "groups": None,
            "re_formula": "0",
            "vc_formula": {
                "s": "0 + C(s)",
                "d": "0 + C(d)",
                "dept_service": "0 + C(dept_service)",
            },
            "use_sparse": True,
        },
        statsmodels_data=statsmodels_insteval,
    ),
    "synthetic1e5": Case(
        "synthetic 1e5",
        lambda: synthetic_case(n=100_000, m1=1_000, m2=100),
        1,
        big=True,
        statsmodels=NOT_EXPRESSIBLE + " ((1 + x | g1) crossed with (1 | g2))",
    ),
    "synthetic1e6": Case(
        "synthetic 1e6",
        lambda: synthetic_case(n=1_000_000, m1=10_000, m2=1_000),
        1,
        big=True,
        statsmodels=NOT_EXPRESSIBLE + " ((1 + x | g1) crossed with (1 | g2))",
    ),
}


def thread_env() -> dict:
    """This process's environment with the BLAS/OpenMP thread counts forced to 1."""
    return {**os.environ, **THREAD_ENV}


def factor_levels(data: pd.DataFrame) -> dict[str, list[str]]:
    """``{column: levels}`` of the categorical columns, levels as the CSV writes them."""
    return {
        column: [str(level) for level in data[column].cat.categories]
        for column in data.columns
        if isinstance(data[column].dtype, pd.CategoricalDtype)
    }


def run_json(command: list[str], stdin: str | None, timeout: float) -> dict:
    """Run ``command`` under :data:`THREAD_ENV`; its last stdout line as JSON, or an error."""
    try:
        out = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=thread_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": " | ".join(out.stderr.strip().splitlines()[-3:]) or "no output"}
    return json.loads(lines[-1])


def run_python_peer(
    python: str, script: str, data: pd.DataFrame, spec: dict, timeout: float
) -> dict:
    """Run a peer worker script on ``data`` (a temporary CSV) with ``spec`` on stdin."""
    with tempfile.TemporaryDirectory(prefix="bmx-peer-") as tmp:
        csv = Path(tmp) / "data.csv"
        data.to_csv(csv, index=False)
        spec = {**spec, "csv": str(csv), "factors": factor_levels(data)}
        return run_json([python, str(BENCH_DIR / script), "-"], json.dumps(spec), timeout)


def fit_lme4(case: Case, data: pd.DataFrame, formula: str, method: str, repeats: int, timeout):
    """lme4's side through Rscript."""
    spec = {
        "formula": formula,
        "reml": method == "REML",
        "repeats": repeats,
        "warmup_same": not case.big,
        "packages": ["lme4", "Matrix"],
    }
    return run_r(LMER, data, spec, timeout=timeout)


def fit_mixedlm(case, data, formula, method, repeats, python, timeout) -> dict:
    """mixedlm's side: its worker under its own venv."""
    if case.mixedlm is not None:
        data, formula = case.mixedlm(data, formula)
    spec = {
        "formula": formula,
        "reml": method == "REML",
        "repeats": repeats,
        "warmup": "sleepstudy" if case.big else None,
    }
    return run_python_peer(python, "peer_mixedlm.py", data, spec, timeout)


def fit_statsmodels(case, data, method, repeats, python, timeout) -> dict:
    """statsmodels' side: its worker under its own venv (expressible models only)."""
    if case.statsmodels_data is not None:
        data = case.statsmodels_data(data)
    spec = {**case.statsmodels, "reml": method == "REML", "repeats": repeats, "warmup": None}
    return run_python_peer(python, "peer_statsmodels.py", data, spec, timeout)


def bayesmix_worker(name: str, repeats: int) -> dict:
    """bayesmix's side of one case, in this process (run as a subprocess by :func:`main`)."""
    case = CASES[name]
    data, formula, method = case.build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data_ss, formula_ss, _ = sleepstudy_case()
        bmx.lmm(formula_ss, data_ss).fit()  # warm-up: loads NLopt and the compiled kernels
        if not case.big:
            bmx.lmm(formula, data).fit(method=method)  # warm-up on the same data
        del caught[:]  # keep the timed fits' warnings only
        design_s, fit_s, model, fit = time_fits(data, formula, method, repeats)
    return {
        "design_s": statistics.median(design_s),
        "fit_s": statistics.median(fit_s),
        "total_s": statistics.median(np.add(design_s, fit_s).tolist()),
        "repeats": repeats,
        "loglik": float(fit.loglik),
        "n_evaluations": int(fit.estimates.n_evaluations),
        "n_obs": int(model.design.n_obs),
        "messages": sorted({str(w.message) for w in caught}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "blas": numpy_blas(),
    }


def fit_bayesmix(name: str, repeats: int, timeout: float) -> dict:
    """Run :func:`bayesmix_worker` in a fresh process of this venv's python."""
    command = [sys.executable, str(Path(__file__).resolve()), "--bayesmix-worker", name]
    return run_json(command + ["--repeats", str(repeats)], None, timeout)


def peer_version(python: str, package: str) -> str:
    """``package``'s version in the venv of ``python``."""
    code = (
        "import json; from importlib.metadata import version;"
        f" print(json.dumps({{'version': version({package!r})}}))"
    )
    return f"{package} {run_json([python, '-c', code], None, 60).get('version', '?')}"


def r_version() -> str:
    """R's and lme4's versions."""
    code = 'cat(R.version.string, "lme4", as.character(packageVersion("lme4")))'
    try:
        out = subprocess.run(
            ["Rscript", "--vanilla", "-e", code], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "R ?"
    return out.stdout.strip() or "R ?"


def fmt_time(seconds: float | None) -> str:
    """Seconds as "12.3 ms" below 1 s, else "4.56 s"."""
    if seconds is None:
        return "—"
    if seconds < 0.01:
        return f"{seconds * 1e3:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_evals(result: dict | None) -> str:
    """A side's evaluation count ("f+g" where gradients are counted apart)."""
    if not result or "error" in result or result.get("n_evaluations") is None:
        return "—"
    if result.get("n_gradients") is not None:
        return f"{result['n_evaluations']}+{result['n_gradients']}"
    return str(result["n_evaluations"])


def ok(result: dict | None) -> bool:
    return bool(result) and "error" not in result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"some of {', '.join(CASES)} (default: all)")
    parser.add_argument("--repeats", type=int, help="timed fits per side (default: per case)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per side and case")
    parser.add_argument("--no-r", action="store_true", help="skip lme4")
    parser.add_argument(
        "--mixedlm-python",
        default="/tmp/mixedlm-venv/bin/python",
        help="python of the mixedlm venv ('none': skip mixedlm)",
    )
    parser.add_argument(
        "--statsmodels-python",
        default="/tmp/statsmodels-venv/bin/python",
        help="python of the statsmodels venv ('none': skip statsmodels)",
    )
    parser.add_argument("--bayesmix-worker", metavar="CASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bayesmix_worker:
        print(json.dumps(bayesmix_worker(args.bayesmix_worker, args.repeats or 1)))
        return
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    os.environ.update(THREAD_ENV)  # run_r's Rscript inherits this process's environment

    notes: list[str] = []
    run_peer = {"lme4": not args.no_r and r_available()}
    if not args.no_r and not run_peer["lme4"]:
        notes.append("lme4 skipped: Rscript not found")
    pythons = {"mixedlm": args.mixedlm_python, "statsmodels": args.statsmodels_python}
    for peer, python in pythons.items():
        run_peer[peer] = python != "none" and Path(python).exists()
        if python != "none" and not run_peer[peer]:
            notes.append(f"{peer} skipped: {python} not found (see the docstring for the venv)")

    versions = [package_versions(("bayesmix", "numpy", "scipy", "nlopt"))]
    for peer, python in pythons.items():
        if run_peer[peer]:
            versions.append(peer_version(python, peer))
    print(machine_line())
    if run_peer["lme4"]:
        versions.append(r_version())
    print("; ".join(versions))
    print("every side: " + " ".join(f"{k}={v}" for k, v in THREAD_ENV.items()), flush=True)

    rows, r_line, bmx_blas = [], None, None
    for name in args.cases or list(CASES):
        case = CASES[name]
        repeats = args.repeats or case.repeats
        data, formula, method = case.build()
        results: dict[str, dict | None] = {}
        print(f"[{name}] bayesmix ...", file=sys.stderr, flush=True)
        results["bayesmix"] = fit_bayesmix(name, repeats, args.timeout)
        if ok(results["bayesmix"]):
            bmx_blas = results["bayesmix"]["blas"]
        if run_peer["lme4"]:
            print(f"[{name}] lme4 ...", file=sys.stderr, flush=True)
            results["lme4"] = fit_lme4(case, data, formula, method, repeats, args.timeout)
            if ok(results["lme4"]):
                r_line = r_blas_line(results["lme4"])
        if run_peer["mixedlm"]:
            print(f"[{name}] mixedlm ...", file=sys.stderr, flush=True)
            results["mixedlm"] = fit_mixedlm(
                case, data, formula, method, repeats, args.mixedlm_python, args.timeout
            )
            if case.mixedlm_note:
                notes.append(f"{case.label}: {case.mixedlm_note}")
        if run_peer["statsmodels"]:
            if isinstance(case.statsmodels, str):
                notes.append(f"{case.label}: statsmodels not run: {case.statsmodels}")
            else:
                print(f"[{name}] statsmodels ...", file=sys.stderr, flush=True)
                results["statsmodels"] = fit_statsmodels(
                    case, data, method, repeats, args.statsmodels_python, args.timeout
                )
        rows.append((name, case, method, repeats, len(data), results))
        notes.extend(case_notes(case, results))

    print_table(rows)
    print("\nNotes:")
    if bmx_blas:
        print(f"- bayesmix side BLAS (numpy, scipy): {bmx_blas}")
    if r_line:
        print(f"- lme4 side: {r_line}")
    print(
        "- times: median formula-to-fit wall time over the repeats, after one untimed warm-up"
        " fit (same data; sleepstudy for the synthetic cases); bayesmix total = design + fit"
    )
    print(
        "- evals: bayesmix/lme4/mixedlm objective evaluations; statsmodels"
        " log-likelihood + gradient calls"
    )
    for note in notes:
        print(f"- {note}")


def case_notes(case: Case, results: dict) -> list[str]:
    """Errors, logLik disagreements, optimizers, warnings and peak memory of one case."""
    out = []
    ours = results.get("bayesmix")
    for side, result in results.items():
        if result is not None and "error" in result:
            out.append(f"{case.label}: {side} failed: {result['error']}")
    if ok(ours):
        for peer in PEERS:
            result = results.get(peer)
            if ok(result) and abs(result["loglik"] - ours["loglik"]) > LOGLIK_TOL:
                out.append(
                    f"{case.label}: logLik {peer} {result['loglik']:.6f} vs bayesmix"
                    f" {ours['loglik']:.6f} ({result['loglik'] - ours['loglik']:+.2e})"
                )
    if ok(results.get("mixedlm")):
        m = results["mixedlm"]
        out.append(
            f"{case.label}: mixedlm kept {m['optimizer']}"
            + ("" if m["converged"] else " (not converged)")
        )
    for side, result in results.items():
        if ok(result) and result.get("messages"):
            out.append(f"{case.label}: {side} warnings: {'; '.join(result['messages'])[:300]}")
    peaks = ", ".join(
        f"{side} {result['peak_rss_mb']:.0f}"
        for side, result in results.items()
        if ok(result) and result.get("peak_rss_mb") is not None
    )
    out.append(f"{case.label}: peak RSS MiB: {peaks}")
    return out


def print_table(rows: list) -> None:
    """The table: one row per case."""
    head = (
        f"{'case':<14}{'meth':<5}{'rows':>8}{'repeats':>8} | {'bayesmix':>9}{'design':>9}"
        f"{'fit':>9}{'evals':>6} | {'lme4':>9}{'evals':>6} | {'mixedlm':>9}{'evals':>6} |"
        f" {'statsmodels':>11}{'evals':>8} | {'bmx/fastest':>19} | {'max|ΔlogLik|':>12}"
    )
    print()
    print(head)
    print("-" * len(head))
    for _name, case, method, repeats, n_rows, results in rows:
        ours = results.get("bayesmix")
        cells = [f"{case.label:<14}{method:<5}{n_rows:>8}{repeats:>8} |"]
        if ok(ours):
            cells.append(
                f"{fmt_time(ours['total_s']):>10}{fmt_time(ours['design_s']):>9}"
                f"{fmt_time(ours['fit_s']):>9}{fmt_evals(ours):>6} |"
            )
        else:
            cells.append(f"{'—':>10}{'—':>9}{'—':>9}{'—':>6} |")
        for peer, width in (("lme4", 9), ("mixedlm", 9), ("statsmodels", 11)):
            result = results.get(peer)
            time_cell = fmt_time(result["total_s"]) if ok(result) else "—"
            evals_width = 8 if peer == "statsmodels" else 6
            cells.append(f" {time_cell:>{width}}{fmt_evals(result):>{evals_width}} |")
        peers = {p: results[p] for p in PEERS if ok(results.get(p))}
        if ok(ours) and peers:
            fastest = min(peers, key=lambda p: peers[p]["total_s"])
            ratio = f"{ours['total_s'] / peers[fastest]['total_s']:.2f} ({fastest})"
            diff = max(abs(r["loglik"] - ours["loglik"]) for r in peers.values())
            flag = " !" if diff > LOGLIK_TOL else "  "
            cells.append(f" {ratio:>19} | {diff:>10.1e}{flag}")
        else:
            cells.append(f" {'—':>19} | {'—':>12}")
        print("".join(cells))


if __name__ == "__main__":
    main()
