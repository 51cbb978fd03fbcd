"""Time to a first posterior: fresh machine, new model structure, rerun (prints a table).

Run from the repository root::

    .venv/bin/python bench/bench_cold_start.py                    # all four cases
    .venv/bin/python bench/bench_cold_start.py sleepstudy glmm

Every measurement is a fresh Python process whose compile caches (bayesmix's
``BAYESMIX_CACHE_DIR`` and PyTensor's ``base_compiledir``, which holds PyTensor's
numba cache) point at a directory prepared for the scenario; wall time runs from
process start (before ``import bayesmix``) to the finished posterior of
``model.sample(random_seed=1)`` (4 chains x 1,000 draws after 1,000 tuning, the
defaults). Scenarios per case:

* ``fresh machine``: empty caches;
* ``new structure``: caches warmed by fitting a *different* model structure first
  (sleepstudy warms the others; Orthodont warms sleepstudy; Orthodont with varIdent
  warms Ovary's corAR1, since the kernel with residual structures compiles on a
  machine's first such fit), in another process;
* ``rerun``: the same structure fitted before with these caches, new process;
* ``2nd new, same process``: the case's structure fitted second in a process whose
  first fit (of the warming structure, already in the caches) has set everything up;
  its own wall time.

Each line splits the wall time into ``import bayesmix``, building the model, the
sampler's compile (``post.timing["compile_s"]``; with the generic kernel, loading its
compiled callbacks), sampling (``sample_s``) and the rest (PyMC's and nutpie's imports,
of which ArviZ's are ~0.8 s, PyMC model building, nutpie's set-up, post-processing).
Issue 20's targets: new structure under 5 s, at most 1.5x the rerun and at most 0.5x
bambi's cold wall time; the second new model in a process under 2 s; a fresh machine
under 20 s.

With ``--bambi-python PATH`` (the peer environment of ``peer_bambi.py``), each case
also runs bambi's cold fit of the same model (nutpie, 4 x 1,000 + 1,000, an empty
PyTensor cache) via ``peer_bambi.py``/``peer_bambi_glmm.py`` in worker mode, and
prints the ratio of bayesmix's new-structure wall time to it::

    .venv/bin/python bench/bench_cold_start.py --bambi-python /tmp/bambi-venv/bin/python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("sleepstudy", "orthodont", "arabidopsis", "glmm", "ovary_ar1")
# a different structure that warms the caches before a "new structure" run
WARMER = {
    "sleepstudy": "orthodont",
    "orthodont": "sleepstudy",
    "arabidopsis": "sleepstudy",
    "glmm": "sleepstudy",
    # another residual structure: the kernel with them compiles on a machine's first such fit
    "ovary_ar1": "orthodont_varident",
}


def _model(case: str):
    import bayesmix as bmx

    if case == "sleepstudy":
        return bmx.lmm("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    if case == "orthodont":
        return bmx.lmm("distance ~ age * Sex + (age | Subject)", bmx.load_dataset("Orthodont"))
    if case == "arabidopsis":
        data = bmx.load_dataset("Arabidopsis")
        for column in ("gen", "rack", "nutrient"):
            data[column] = data[column].astype("category")
        formula = "log(1 + total.fruits) ~ rack + nutrient + amd + status + (nutrient | popu/gen)"
        return bmx.lmm(formula, data)
    if case == "glmm":
        cbpp = bmx.load_dataset("cbpp")
        return bmx.glmm(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"
        )
    if case == "orthodont_varident":  # warms the cache for ovary_ar1
        formula = "distance ~ age + Sex + (1 | Subject)"
        return bmx.lmm(formula, bmx.load_dataset("Orthodont"), weights="varIdent(form = ~ 1 | Sex)")
    if case == "ovary_ar1":  # a residual correlation structure (bambi has none)
        formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1|Mare)"
        return bmx.lmm(formula, bmx.load_dataset("Ovary"), correlation="corAR1()")
    raise SystemExit(f"unknown case {case!r}; use some of {CASES}")


def worker(cases: list[str], start: float) -> None:
    """Fit ``cases`` in turn in this process; print one JSON line of timings."""
    import warnings

    began = time.perf_counter()
    import bayesmix  # noqa: F401  (timed)

    imported = time.perf_counter()
    out, mark = [], imported
    for case in cases:
        model = _model(case)
        built = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(random_seed=1)
        done = time.perf_counter()
        timing = getattr(post, "timing", {}) or {}
        out.append(
            {
                "case": case,
                "wall_s": done - (start if not out else mark),
                "build_s": built - mark,
                "sample_call_s": done - built,
                "compile_s": float(timing.get("compile_s", float("nan"))),
                "sampling_s": float(timing.get("sample_s", float("nan"))),
            }
        )
        mark = done
    print(json.dumps({"startup_s": began - start, "import_s": imported - began, "fits": out}))


def run(cases: list[str], cache: Path) -> dict:
    env = dict(os.environ)
    env["BAYESMIX_CACHE_DIR"] = str(cache / "bayesmix")
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache / 'pytensor'}"
    command = [sys.executable, __file__, "--worker", str(time.time()), *cases]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def line(label: str, result: dict, index: int = 0) -> None:
    if "error" in result:
        print(f"  {label:24s} failed: {result['error']}")
        return
    fit = result["fits"][index]
    rest = fit["sample_call_s"] - fit["compile_s"] - fit["sampling_s"]
    imported = result["import_s"] if index == 0 else 0.0
    print(
        f"  {label:24s} {fit['wall_s']:6.2f} s   import {imported:5.2f}  "
        f"build {fit['build_s']:5.2f}  compile {fit['compile_s']:5.2f}  "
        f"sample {fit['sampling_s']:5.2f}  rest {rest:5.2f}"
    )


#: bambi's worker command for each case (same model; the GLMM via peer_bambi_glmm.py)
BAMBI = {
    "sleepstudy": ["peer_bambi.py", "--worker", "sleepstudy", "nutpie", "--seeds", "1"],
    "orthodont": ["peer_bambi.py", "--worker", "orthodont_interaction", "nutpie", "--seeds", "1"],
    "arabidopsis": ["peer_bambi.py", "--worker", "arabidopsis", "nutpie", "--seeds", "1"],
    "glmm": ["peer_bambi_glmm.py", "--worker", "cbpp"],
}


def bambi_cold(python: str, case: str) -> float:
    """bambi's cold wall time (s) for ``case``, in a process with an empty PyTensor cache."""
    here = Path(__file__).resolve().parent
    script, *args = BAMBI[case]
    with tempfile.TemporaryDirectory(prefix="bambi-cold-") as tmp:
        env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp}"}
        proc = subprocess.run(
            [python, str(here / script), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=here.parent,
            check=False,
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return float("nan")
    return float(json.loads(lines[-1])["cold_wall_s"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        # the parent's clock at launch: process start-up counts in the wall time
        start = time.perf_counter() - (time.time() - float(sys.argv[2]))
        worker(sys.argv[3:], start)
        return
    from bench_env import machine_line, package_versions

    args = sys.argv[1:]
    bambi_python = None
    if "--bambi-python" in args:
        at = args.index("--bambi-python")
        bambi_python = args[at + 1]
        del args[at : at + 2]
    print(machine_line())
    print(package_versions(("bayesmix", "pymc", "nutpie", "numba")))
    cases = args or list(CASES)
    for case in cases:
        print(f"{case}:")
        with tempfile.TemporaryDirectory(prefix="bmx-cold-") as tmp:
            fresh = run([case], Path(tmp))
            line("fresh machine", fresh)
        with tempfile.TemporaryDirectory(prefix="bmx-cold-") as tmp:
            run([WARMER[case]], Path(tmp))
            new = run([case], Path(tmp))
            line("new structure", new)
            rerun = run([case], Path(tmp))
            line("rerun", rerun)
        with tempfile.TemporaryDirectory(prefix="bmx-cold-") as tmp:
            run([WARMER[case]], Path(tmp))
            second = run([WARMER[case], case], Path(tmp))
            line("2nd new, same process", second, index=1)
        if "error" not in new and "error" not in rerun:
            ratio = new["fits"][0]["wall_s"] / rerun["fits"][0]["wall_s"]
            print(f"  new structure / rerun: {ratio:.2f}x (target <= 1.5x)")
        if bambi_python and "error" not in new and case in BAMBI:
            cold = bambi_cold(bambi_python, case)
            ratio = new["fits"][0]["wall_s"] / cold
            print(f"  bambi cold {cold:6.2f} s; new structure / bambi cold: {ratio:.2f}x", end="")
            print(" (target <= 0.5x)")


if __name__ == "__main__":
    main()
