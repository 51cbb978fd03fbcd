"""Run an R peer fit (lme4, nlme) on the data a bench script uses, in the same run.

Why: a ratio to a peer is only meaningful when both figures come from the same
machine, the same data and the same moment (the load of a shared machine
changes by the minute). So the bench scripts hand the data frame they fit to
``Rscript`` through a temporary CSV, R times the peer's fit with
``system.time`` around the fitting call only (reading the CSV and making the
factors happen before the clock starts, as the Python side's data are loaded
before its clock starts), and R prints one JSON line back.

Each R script is this module's :data:`R_PRELUDE` followed by the caller's
code, which reads ``spec`` (the caller's options plus ``csv`` and
``factors``) and ``data``, and ends with ``emit(list(...))``. ``emit`` adds
the R version, the BLAS and LAPACK R is linked to, the peak resident memory
of the R process (``VmHWM``, data included) and the versions of the packages
named in ``spec$packages``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

R_PRELUDE = r"""
spec <- jsonlite::fromJSON(commandArgs(trailingOnly = TRUE)[1], simplifyVector = TRUE)
factor_columns <- names(spec$factors)
classes <- NA
if (length(factor_columns) > 0) {
  classes <- setNames(rep("character", length(factor_columns)), factor_columns)
}
data <- read.csv(spec$csv, colClasses = classes, check.names = FALSE)
for (column in factor_columns) {  # the Python side's level order (R's, for R's datasets)
  data[[column]] <- factor(data[[column]], levels = spec$factors[[column]])
}

elapsed <- function(expr) system.time(expr)[["elapsed"]]

peak_rss_mb <- function() {
  status <- tryCatch(readLines("/proc/self/status"), error = function(e) character())
  line <- grep("^VmHWM:", status, value = TRUE)
  if (length(line) == 0) return(NA)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}

emit <- function(result) {
  packages <- spec$packages
  result$r_info <- list(
    r = R.version.string,
    blas = sessionInfo()$BLAS,
    lapack = La_library(),
    packages = lapply(setNames(packages, packages), function(p) as.character(packageVersion(p)))
  )
  result$peak_rss_mb <- peak_rss_mb()
  cat(jsonlite::toJSON(result, auto_unbox = TRUE, digits = NA, null = "null"), "\n")
}
"""


def r_available() -> bool:
    return shutil.which("Rscript") is not None


def run_r(code: str, data: pd.DataFrame, spec: dict, timeout: float | None = None) -> dict:
    """Run ``R_PRELUDE + code`` on ``data``; the JSON R emitted, or ``{"error": ...}``.

    Categorical columns become R factors with the same levels; every other
    column is read by ``read.csv`` as usual (numbers as numbers).
    """
    if not r_available():
        return {"error": "Rscript not found"}
    factors = {
        column: [str(level) for level in data[column].cat.categories]
        for column in data.columns
        if isinstance(data[column].dtype, pd.CategoricalDtype)
    }
    with tempfile.TemporaryDirectory(prefix="bmx-peer-r-") as tmp:
        tmp = Path(tmp)
        data.to_csv(tmp / "data.csv", index=False)
        (tmp / "spec.json").write_text(
            json.dumps({**spec, "csv": str(tmp / "data.csv"), "factors": factors})
        )
        (tmp / "peer.R").write_text(R_PRELUDE + code)
        try:
            out = subprocess.run(
                ["Rscript", "--vanilla", str(tmp / "peer.R"), str(tmp / "spec.json")],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"R did not finish within {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": " | ".join(out.stderr.strip().splitlines()[-3:])}
    return json.loads(lines[-1])


def blas_kind(path: str) -> str:
    """Which BLAS a library path is, where the path tells (Debian's layout)."""
    lowered = path.lower()
    for marker, kind in (("openblas", "OpenBLAS"), ("mkl", "MKL"), ("blis", "BLIS")):
        if marker in lowered:
            return kind
    if "/blas/libblas" in lowered:  # Debian's libblas3: netlib's Fortran reference code
        return "reference BLAS (netlib; unoptimised, one thread)"
    return "unknown kind"


def r_blas_line(result: dict) -> str:
    info = result.get("r_info", {})
    packages = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items())
    blas = info.get("blas", "?")
    return (
        f"{info.get('r', 'R ?')}, {packages}; BLAS {blas} = {blas_kind(blas)}; "
        f"LAPACK {info.get('lapack', '?')}"
    )
