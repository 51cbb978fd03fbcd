"""Benchmark bambi, the peer package, on the four models of ``bench_bayes.py`` (not a test).

This script is standalone: it never imports bayesmix and runs under a separate
"peer" virtual environment, because bambi pins ``formulae<0.7`` while bayesmix
needs ``formulae>=0.9``, so the two cannot share one environment.

Creating the peer environment (Python 3.12, as for bayesmix)::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/bambi-venv
    /tmp/bambi-venv/bin/pip install bambi nutpie

Usage (from the repository root)::

    /tmp/bambi-venv/bin/python bench/peer_bambi.py                     # sleepstudy, orthodont
    /tmp/bambi-venv/bin/python bench/peer_bambi.py --cases all --methods nutpie,pymc
    /tmp/bambi-venv/bin/python bench/peer_bambi.py --cases all --build-only   # no sampling
    /tmp/bambi-venv/bin/python bench/peer_bambi.py --worker sleepstudy nutpie  # one JSON line

or side by side with bayesmix, which calls this script's worker mode::

    .venv/bin/python bench/bench_bayes.py --cases all --bambi-python /tmp/bambi-venv/bin/python

Measurements follow ``bench_bayes.py`` exactly. Every (case, method) runs in its
own subprocess with a fresh, empty PyTensor compile directory
(``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds PyTensor's numba
cache), 4 chains x 1000 tune + 1000 draws by default, on
``min(chains, cpu count)`` cores:

* cold wall = process start (before ``import bambi``) to finished posterior
  (the idata returned by ``Model.fit``) of a first fit (seed 0), compiling
  everything from scratch; that fit is used for nothing else;
* then one warm fit per ``--seeds`` seed in the same process: warm wall = a
  fit of a freshly built PyMC model (``Model.build()`` then ``Model.fit``;
  bambi compiles it again, loading the compiled code from the now-warm
  on-disk cache, where bayesmix's nutpie route reuses its in-memory compiled
  model, so warm walls compare compile policies, not samplers). As in
  bench_bayes, whose warm run rebuilds the PyMC model but reuses the design
  from ``build_design``, the formulae design matrices (``bambi.Model(formula,
  data)``) are made once; that step is reported as ``design_s`` (about 6 s for
  InstEval, against 0.03 s for bayesmix's ``build_design``) and is part of the
  cold wall only;
* loop s = the draw loop alone, timed by ``bench/loop_timer.py`` with the same
  clock as bench_bayes (trace conversion excluded); PyMC's own
  ``sampling_time`` is also reported (``pymc_sampling_s``), but it includes
  nutpie's trace conversion for the ``nutpie`` method and not for ``pymc``;
* ESS figures per warm fit: min bulk ESS (``arviz.ess`` on ``(chain, draw,
  parameter)`` draws, as bayesmix's diagnostics do) over every variable of the
  posterior group, i.e. fixed effects, group SDs, ``sigma`` and every
  group-level effect (bambi's non-centred ``*_offset`` helpers are dropped, as
  bayesmix drops its ``z_*``), divided by the loop time and by the warm wall;
  tables show "median [min-max]" over the seeds.

Methods: ``nutpie`` is ``Model.fit(inference_method="nutpie")`` (PyMC's
``pm.sample(nuts_sampler="nutpie")``, numba backend) and ``pymc`` is bambi's
default, PyMC's own NUTS. ``target_accept`` is bambi's default, PyMC's 0.8
(bayesmix's default is 0.95 for models with at most 1,000 parameters, as here for
all but InstEval, where it is 0.8 too).

Model differences from bayesmix (what bambi can express):

* bambi's ``(x | g)`` terms are **uncorrelated**: each term has its own SD and
  there is no correlation parameter (bayesmix: unstructured covariance with an
  LKJ(2) prior). Three of the four models (sleepstudy, orthodont, arabidopsis)
  have such a block; InstEval has intercepts only and is the same model.
* Priors are bambi's defaults: Normal fixed effects auto-scaled to the data,
  ``HalfNormal`` group SDs and ``sigma ~ HalfStudentT(4, sd(y))`` (bayesmix:
  ``HalfStudentT(3, .)`` for both). bambi centres the fixed-effect predictors
  like bayesmix, but not the columns of group-level blocks.
* Grouping by an interaction (``popu:gen``, ``dept:service``) is written as a
  single pasted column of the observed combinations (``popu_gen``,
  ``dept_service``): formulae's ``(x | a:b)`` makes one level per element of
  the full product of the levels (216 for ``popu:gen`` instead of the 24 that
  occur), adding prior-only group effects that lme4 and bayesmix do not have.
  (All 28 ``dept:service`` combinations occur, so there it changes nothing.)
* Arabidopsis: response ``log(1 + total.fruits)`` as in bench_bayes; ``rack``
  and ``nutrient`` stay numeric, ``gen`` is read as text (it only enters the
  grouping). Factor reference levels are R's (Orthodont
  ``Sex``: Male; Arabidopsis ``amd``: clipped, ``status``: Normal; InstEval
  ``service``: 0), so the fixed effects are the same columns as bayesmix's.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "bayesmix" / "datasets" / "data"

# case -> (CSV file, bambi formula); the formulas are bench_bayes.CASES' models
CASES = {
    "sleepstudy": ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
    "orthodont": ("Orthodont.csv", "distance ~ age + Sex + (age | Subject)"),
    # bench_cold_start.py's Orthodont model
    "orthodont_interaction": ("Orthodont.csv", "distance ~ age * Sex + (age | Subject)"),
    "arabidopsis": (
        "Arabidopsis.csv",
        "log(1 + total.fruits) ~ rack + nutrient + amd + status"
        " + (nutrient | popu) + (nutrient | popu_gen)",
    ),
    "insteval": ("InstEval.csv.gz", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept_service)"),
}
# factor columns, read as text; a tuple fixes the level order (first = reference level)
FACTORS = {
    "sleepstudy": {"Subject": None},
    "orthodont": {"Subject": None, "Sex": ("Male", "Female")},
    "orthodont_interaction": {"Subject": None, "Sex": ("Male", "Female")},
    "arabidopsis": {
        "reg": None,
        "popu": None,
        "gen": None,  # only used for grouping (popu:gen)
        "amd": ("clipped", "unclipped"),
        "status": ("Normal", "Petri.Plate", "Transplant"),
    },
    "insteval": {
        "s": None,
        "d": None,
        "studage": None,
        "lectage": None,
        "service": ("0", "1"),
        "dept": None,
    },
}
VERSION_PACKAGES = ("bambi", "pymc", "pytensor", "nutpie", "numba", "arviz", "formulae", "numpy")


def load_case(case: str, data_dir: Path = DATA_DIR):
    """The bambi formula and the data frame of one case."""
    import pandas as pd

    file, formula = CASES[case]
    factors = FACTORS[case]
    data = pd.read_csv(data_dir / file, dtype={column: str for column in factors})
    for column, levels in factors.items():
        if levels is not None:  # formulae keeps the level order of *ordered* categoricals only
            data[column] = pd.Categorical(data[column], categories=list(levels), ordered=True)
    if case == "arabidopsis":
        data["popu_gen"] = data["popu"].astype(str) + ":" + data["gen"].astype(str)
    elif case == "insteval":
        data["dept_service"] = data["dept"].astype(str) + ":" + data["service"].astype(str)
    return formula, data


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": sys.version.split()[0]}
    out.update({name: version(name) for name in VERSION_PACKAGES})
    return out


def posterior_draws(idata):
    """All posterior variables as a ``(chain, draw, parameter)`` array, with names."""
    import numpy as np

    post = idata["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    arrays, names = [], []
    for name, var in post.data_vars.items():
        if name.endswith("_offset"):  # non-centred helpers (bambi drops them by default)
            continue
        var = var.transpose("chain", "draw", ...)
        values = np.asarray(var.values, dtype=float)
        arrays.append(values.reshape(values.shape[0], values.shape[1], -1))
        extra = var.dims[2:]
        if not extra:
            names.append(name)
            continue
        labels = np.array(np.meshgrid(*[var[d].values for d in extra], indexing="ij"))
        labels = labels.reshape(len(extra), -1).T
        names += [f"{name}[{','.join(str(x) for x in label)}]" for label in labels]
    return np.concatenate(arrays, axis=-1), names


def diagnostics(idata) -> dict:
    import warnings

    import arviz as az
    import numpy as np

    values, names = posterior_draws(idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = np.asarray(az.ess(values, method="bulk"))
        rhat = np.asarray(az.rhat(values))
    return {
        "n_parameters": len(names),
        "min_ess_bulk": float(np.nanmin(ess)),
        "min_ess_parameter": names[int(np.nanargmin(ess))],
        "max_r_hat": float(np.nanmax(rhat)),
        "divergences": int(np.asarray(idata["sample_stats"]["diverging"].values).sum()),
    }


def steps_per_draw(idata) -> float:
    """Mean leapfrog steps per draw (``n_steps``, recorded by PyMC's NUTS and by nutpie)."""
    stats = idata["sample_stats"]
    return float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")


def worker(case: str, method: str, draws: int, tune: int, chains: int, seeds: list[int]) -> dict:
    import logging
    import warnings

    import bambi as bmb
    import loop_timer  # bench/loop_timer.py: the draw-loop clock bench_bayes uses too

    loop_timer.install()
    logging.getLogger("pymc").setLevel(logging.ERROR)
    logging.getLogger("bambi").setLevel(logging.ERROR)
    formula, data = load_case(case)
    t0 = time.perf_counter()
    model = bmb.Model(formula, data)  # formulae design matrices, made once
    design_s = time.perf_counter() - t0

    def fit(seed: int):
        t0 = time.perf_counter()
        model.build()  # a fresh PyMC model
        build_s = time.perf_counter() - t0
        idata = model.fit(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(chains, os.cpu_count() or 1),
            random_seed=seed,
            inference_method=method,
            progressbar=False,
            compute_convergence_checks=False,
        )
        return idata, build_s

    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(0)
        cold = time.perf_counter() - T_START
        for seed in seeds:
            loop_timer.take()
            t0 = time.perf_counter()
            idata, build_s = fit(seed)
            warm = time.perf_counter() - t0
            spans = loop_timer.take()
            diag = diagnostics(idata)
            runs.append(
                {
                    "seed": seed,
                    "warm_wall_s": warm,
                    "build_s": build_s,
                    "pymc_sampling_s": float(
                        idata["posterior"].attrs.get("sampling_time", float("nan"))
                    ),
                    "loop_s": spans["loop_s"],
                    "convert_s": spans["convert_s"],
                    "steps_per_draw": steps_per_draw(idata),
                    **diag,
                }
            )
    return {
        "package": "bambi",
        "case": case,
        "sampler": method,
        "cold_wall_s": cold,
        "design_s": design_s,
        "runs": runs,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "versions": versions(),
    }


def build_only(case: str) -> str:
    """Load the data and build the bambi model (PyMC graph, no compiling or sampling)."""
    import bambi as bmb

    formula, data = load_case(case)
    t0 = time.perf_counter()
    model = bmb.Model(formula, data)
    model.build()
    built = time.perf_counter() - t0
    pm_model = model.backend.model
    sizes = {rv.name: int(rv.size.eval()) for rv in pm_model.free_RVs}
    return f"{model}\n  built in {built:.1f} s; free variables (size): {sizes}\n"


def run_case(case: str, method: str, args, python: str = sys.executable) -> dict:
    """Run one worker in a fresh subprocess with an empty PyTensor compile directory."""
    with tempfile.TemporaryDirectory(prefix="bambi-bench-") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
        cmd = [python, str(Path(__file__).resolve()), "--worker", case, method]
        cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
        cmd += ["--seeds", args.seeds]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"case": case, "sampler": method, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def med_range(values: list[float], digits: int = 1) -> str:
    """``median [min-max]`` over the seeds (as bench_bayes prints them)."""
    import statistics

    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sleepstudy,orthodont", help="comma list or 'all'")
    parser.add_argument("--methods", default="nutpie,pymc", help="bambi inference methods")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seeds", default="1,2,3", help="one warm fit per seed (comma list)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"))
    parser.add_argument(
        "--build-only", action="store_true", help="print each case's bambi model, no sampling"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.worker:
        print(json.dumps(worker(*args.worker, args.draws, args.tune, args.chains, seeds)))
        return
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    if args.build_only:
        for case in cases:
            print(f"== {case}\n{build_only(case)}", flush=True)
        return
    print(
        f"bambi: {args.chains} chains x {args.tune} tune + {args.draws} draws; seeds"
        f" {args.seeds} (median [min-max]); cpu count {os.cpu_count()}"
    )
    columns = (("warm s", "warm_wall_s", 1), ("loop s", "loop_s", 1))
    columns += (("min ESS", "min_ess_bulk", 0), ("ESS/s loop", "ess_per_s_loop", 0))
    print(
        f"{'case':<12}{'method':<9}{'cold s':>8}{'design s':>9}"
        + "".join(f"{h:>19}" for h, _, _ in columns)
        + f"{'div':>5}{'rhat':>7}  min-ESS parameter(s)"
    )
    seen_versions = None
    for case in cases:
        for method in args.methods.split(","):
            r = run_case(case, method, args)
            if "error" in r:
                print(f"{case:<12}{method:<9} ERROR {r['error']}", flush=True)
                continue
            seen_versions = seen_versions or r["versions"]
            for run in r["runs"]:
                run["ess_per_s_loop"] = run["min_ess_bulk"] / run["loop_s"]
            cells = "".join(
                f"{med_range([run[key] for run in r['runs']], digits):>19}"
                for _, key, digits in columns
            )
            names = "/".join(dict.fromkeys(run["min_ess_parameter"] for run in r["runs"]))
            print(
                f"{case:<12}{method:<9}{r['cold_wall_s']:>8.1f}{r['design_s']:>9.1f}{cells}"
                f"{sum(run['divergences'] for run in r['runs']):>5d}"
                f"{max(run['max_r_hat'] for run in r['runs']):>7.3f}  {names}",
                flush=True,
            )
    if seen_versions:
        print("versions: " + ", ".join(f"{k} {v}" for k, v in seen_versions.items()))


if __name__ == "__main__":
    main()
