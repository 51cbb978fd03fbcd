"""Benchmark bambi, the peer package, on the GLMMs of ``bench_glmm_bayes.py`` (not a test).

This script is standalone: it never imports bayesmix and runs under a separate
"peer" virtual environment, because bambi pins ``formulae<0.7`` while bayesmix
needs ``formulae>=0.9``, so the two cannot share one environment. It reads the
data from bayesmix's CSV files directly (``bayesmix/datasets/data``).

Creating the peer environment (Python 3.12, as for bayesmix)::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/bambi-venv
    /tmp/bambi-venv/bin/pip install bambi nutpie

Usage (from the repository root)::

    /tmp/bambi-venv/bin/python bench/peer_bambi_glmm.py                       # both cases
    /tmp/bambi-venv/bin/python bench/peer_bambi_glmm.py --worker arabidopsis  # one JSON line

or side by side with bayesmix, which calls this script's worker mode::

    .venv/bin/python bench/bench_glmm_bayes.py --bambi-python /tmp/bambi-venv/bin/python

Measurements follow ``bench_glmm_bayes.py``: each case runs in its own
subprocess with a fresh, empty PyTensor compile directory
(``PYTENSOR_FLAGS=base_compiledir=<tmp>``, which also holds PyTensor's numba
cache), and does one fit (``random_seed=1``) with
``Model.fit(inference_method="nutpie")`` (PyMC's ``pm.sample(nuts_sampler="nutpie")``,
numba backend) on ``min(chains, cpu count)`` cores:

* cold wall = process start (before ``import bambi``) to the finished posterior
  (the idata ``Model.fit`` returns), so it includes the formulae design
  (``design_s``), building the PyMC model, compiling and sampling;
* loop s = the draw loop alone (tuning included, trace conversion excluded),
  timed by ``bench/loop_timer.py``, the clock ``bench_glmm_bayes.py`` uses for
  bayesmix too; ``pymc_sampling_s`` is PyMC's own ``sampling_time`` (for nutpie
  it includes the trace conversion);
* min bulk ESS (``arviz.ess`` on ``(chain, draw, parameter)`` draws, as
  bayesmix's diagnostics do) over the *parameters* (fixed effects and group
  SDs, i.e. every posterior variable but the group-level effects) and over
  *all* variables (group-level effects included; bambi's non-centred
  ``*_offset`` helpers are dropped, as bayesmix drops its ``z_*``); divergences
  and max R-hat over all.

Cases (``--cases``, default both):

* ``arabidopsis``: Poisson,
  ``total.fruits ~ nutrient*amd + rack + status + (nutrient | popu) + (1 | popu_gen)``,
  ``chains x (tune + draws)`` (default 4 x (1000 + 1000)). As in bench_glmm_bayes,
  ``nutrient`` and ``rack`` are factors (reference levels "1"), ``amd``'s
  reference is "clipped" and ``status``'s "Normal" (R's), so the fixed effects
  are the same columns as bayesmix's.
* ``cbpp``: binomial, ``p(incidence, size) ~ period + (1 | herd)``, 4 x (1000 +
  1000) (the defaults of bayesmix's ``sample()``), for the cold start.

Model differences from bayesmix (what bambi can express):

* bambi's ``(nutrient | popu)`` is **uncorrelated**: one SD for the intercepts
  and one for the ``nutrient`` slopes, no correlation parameter (bayesmix:
  unstructured 2 x 2 covariance with an LKJ prior). The comparison is the
  issue's: bayesmix's correlated model against bambi's uncorrelated one.
* Grouping by the interaction ``popu:gen`` is written as a single pasted column
  of the observed combinations (``popu_gen``): formulae's ``(1 | popu:gen)``
  makes one level per element of the full product of the levels, adding
  prior-only group effects that lme4 and bayesmix do not have.
* Priors are bambi's defaults (Normal fixed effects auto-scaled to the data,
  ``HalfNormal`` group SDs); ``target_accept`` is bambi's default, PyMC's 0.8
  (bayesmix's default is 0.95 for models with at most 1,000 parameters).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before any heavy import: the cold wall starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1] / "bayesmix" / "datasets" / "data"

# case -> (CSV file, bambi formula, family)
CASES = {
    "arabidopsis": (
        "Arabidopsis.csv",
        "total.fruits ~ nutrient*amd + rack + status + (nutrient | popu) + (1 | popu_gen)",
        "poisson",
    ),
    "cbpp": ("cbpp.csv", "p(incidence, size) ~ period + (1 | herd)", "binomial"),
}
# factor columns, read as text; a tuple fixes the level order (first = reference level)
FACTORS = {
    "arabidopsis": {
        "reg": None,
        "popu": None,
        "gen": None,  # only used for grouping (popu:gen)
        "rack": ("1", "2"),
        "nutrient": ("1", "8"),
        "amd": ("clipped", "unclipped"),
        "status": ("Normal", "Petri.Plate", "Transplant"),
    },
    "cbpp": {"herd": None, "period": ("1", "2", "3", "4")},
}
VERSION_PACKAGES = ("bambi", "pymc", "pytensor", "nutpie", "numba", "arviz", "formulae", "numpy")
MODEL_NOTE = (
    "bambi's (nutrient | popu) is uncorrelated (two SDs, no correlation); bayesmix's is"
    " correlated (LKJ). Default priors of each package; target_accept bambi 0.8 (PyMC's"
    " default), bayesmix 0.95."
)


def load_case(case: str, data_dir: Path = DATA_DIR):
    """The bambi formula, family and data frame of one case."""
    import pandas as pd

    file, formula, family = CASES[case]
    factors = FACTORS[case]
    data = pd.read_csv(data_dir / file, dtype={column: str for column in factors})
    for column, levels in factors.items():
        if levels is not None:  # formulae keeps the level order of *ordered* categoricals only
            data[column] = pd.Categorical(data[column], categories=list(levels), ordered=True)
    if case == "arabidopsis":
        data["popu_gen"] = data["popu"].astype(str) + ":" + data["gen"].astype(str)
    return formula, family, data


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": sys.version.split()[0]}
    out.update({name: version(name) for name in VERSION_PACKAGES})
    return out


def posterior_draws(idata):
    """Posterior variables as a ``(chain, draw, parameter)`` array, names and a parameter mask.

    The mask is true for fixed effects and group SDs, false for group-level
    effects (bambi names them ``term|group``; their SDs ``term|group_sigma``).
    """
    import numpy as np

    post = idata["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    arrays, names, mask = [], [], []
    for name, var in post.data_vars.items():
        if name.endswith("_offset"):  # non-centred helpers (bambi drops them by default)
            continue
        var = var.transpose("chain", "draw", ...)
        values = np.asarray(var.values, dtype=float)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        arrays.append(values)
        is_parameter = "|" not in name or name.endswith("_sigma")
        mask += [is_parameter] * values.shape[-1]
        extra = var.dims[2:]
        if not extra:
            names.append(name)
            continue
        labels = np.array(np.meshgrid(*[var[d].values for d in extra], indexing="ij"))
        labels = labels.reshape(len(extra), -1).T
        names += [f"{name}[{','.join(str(x) for x in label)}]" for label in labels]
    return np.concatenate(arrays, axis=-1), names, np.array(mask)


def diagnostics(idata) -> dict:
    import warnings

    import arviz as az
    import numpy as np

    values, names, mask = posterior_draws(idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = np.asarray(az.ess(values, method="bulk"), dtype=float)
        rhat = np.asarray(az.rhat(values), dtype=float)
    par = np.where(mask, ess, np.nan)
    return {
        "n_parameters": int(mask.sum()),
        "n_all": len(names),
        "min_ess_parameters": float(np.nanmin(par)),
        "min_ess_parameter": names[int(np.nanargmin(par))],
        "min_ess_all": float(np.nanmin(ess)),
        "max_r_hat": float(np.nanmax(rhat)),
        "divergences": int(np.asarray(idata["sample_stats"]["diverging"].values).sum()),
    }


def worker(case: str, draws: int, tune: int, chains: int) -> dict:
    import logging
    import warnings

    import bambi as bmb
    import loop_timer  # bench/loop_timer.py: the draw-loop clock bench_glmm_bayes uses too

    loop_timer.install()
    logging.getLogger("pymc").setLevel(logging.ERROR)
    logging.getLogger("bambi").setLevel(logging.ERROR)
    formula, family, data = load_case(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = bmb.Model(formula, data, family=family)  # formulae design matrices
        design_s = time.perf_counter() - t0
        idata = model.fit(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=min(chains, os.cpu_count() or 1),
            random_seed=1,
            inference_method="nutpie",
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - T_START
    spans = loop_timer.take()
    stats = idata["sample_stats"]
    return {
        "package": "bambi",
        "case": case,
        "formula": formula,
        "family": family,
        "cold_wall_s": wall,
        "design_s": design_s,
        "loop_s": spans["loop_s"],
        "convert_s": spans["convert_s"],
        "pymc_sampling_s": float(idata["posterior"].attrs.get("sampling_time", float("nan"))),
        "steps_per_draw": float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan"),
        **diagnostics(idata),
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "versions": versions(),
    }


def run_case(case: str, args, cache: str | None = None, python: str = sys.executable) -> dict:
    """One worker in a fresh subprocess; ``cache``: its PyTensor compile directory.

    Without ``cache`` a new empty directory is used (a cold start); passing the
    same directory twice times a second process that finds the compiled code on disk.
    """
    with tempfile.TemporaryDirectory(prefix="bambi-glmm-bench-") as fresh:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache or fresh}")
        cmd = [python, str(Path(__file__).resolve()), "--worker", case]
        cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"package": "bambi", "case": case, "error": out.stderr.strip().splitlines()[-3:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="arabidopsis,cbpp")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--worker", choices=tuple(CASES))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.draws, args.tune, args.chains)))
        return
    print(f"bambi nutpie, cold start; cpu count {os.cpu_count()}; {MODEL_NOTE}")
    seen_versions = None
    for case in args.cases.split(","):
        r = run_case(case, args)
        if "error" in r:
            print(f"{case}: ERROR {r['error']}", flush=True)
            continue
        seen_versions = seen_versions or r["versions"]
        print(
            f"{case} ({r['family']}: {r['formula']}), {r['chains']} x ({r['tune']} + {r['draws']}):"
            f" cold wall {r['cold_wall_s']:.1f} s (design {r['design_s']:.1f} s, loop"
            f" {r['loop_s']:.1f} s, PyMC sampling_time {r['pymc_sampling_s']:.1f} s);"
            f" {r['divergences']} divergences, max R-hat {r['max_r_hat']:.4f};"
            f" min bulk ESS parameters {r['min_ess_parameters']:.0f} ({r['min_ess_parameter']}),"
            f" all {r['min_ess_all']:.0f}; ESS/s cold wall"
            f" {r['min_ess_parameters'] / r['cold_wall_s']:.0f} (parameters)",
            flush=True,
        )
    if seen_versions:
        print("versions: " + ", ".join(f"{k} {v}" for k, v in seen_versions.items()))


if __name__ == "__main__":
    main()
