"""Wall time of the nonlinear ML/REML engine against nlme on Theoph, both run here (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_nl_ml.py [--repeats 20] [--no-r]

The four fits checked against nlme in ``tests/test_nl_fit.py`` (SSfol with
diagonal random effects on lKa + lCl or lKe + lKa + lCl, ML and REML) are
each run ``repeats`` times (default 20) after one untimed warm-up fit, by
bayesmix (``model.fit(method)``) and by nlme in R, started by this script
(``bench/peer_r.py``: Theoph goes to R through a temporary CSV, Subject a
factor with the same levels, grouped by ``groups = ~ Subject``). R times
``nlme(...)`` alone with ``system.time``. nlme gets the start values of the
reference fits in ``tests/refs/theoph_nlme_*.json`` (lKe -2.5, lKa 0.5,
lCl -3); bayesmix computes its own self-start values inside each timed fit.
Printed: best and median wall time per fit on each side, the ratio of the
medians bayesmix / nlme (< 1: bayesmix is faster), the iteration counts, the
logLik of both and their difference, and the BLAS each side used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

from bench_env import machine_line, numpy_blas, package_versions
from peer_r import r_available, r_blas_line, run_r

import bayesmix as bmx
from bayesmix.errors import SingularFitWarning

SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
START = {"lKe": -2.5, "lKa": 0.5, "lCl": -3.0}  # the reference fits' start values
# name -> (parameters with random effects); lKe is fixed-only in diag2
MODELS = {"diag2": ("lKa", "lCl"), "diag3": ("lKe", "lKa", "lCl")}

NLME = r"""
suppressPackageStartupMessages(library(nlme))
start <- unlist(spec$start)
fit_one <- function(random, method) {
  nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = data,
       fixed = lKe + lKa + lCl ~ 1, random = pdDiag(as.formula(random)),
       groups = ~ Subject, start = start, method = method)
}
out <- list()
for (i in seq_len(nrow(spec$fits))) {
  random <- spec$fits$random[i]
  method <- spec$fits$method[i]
  fit <- fit_one(random, method)  # warm-up, untimed
  times <- numeric(spec$repeats)
  for (k in seq_len(spec$repeats)) times[k] <- elapsed(fit <- fit_one(random, method))
  out[[spec$fits$key[i]]] <- list(
    times = I(times), loglik = as.numeric(logLik(fit)), iterations = fit$numIter
  )
}
emit(list(fits = out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-r", action="store_true", help="bayesmix only")
    args = parser.parse_args()
    print(machine_line())
    print(package_versions(("bayesmix", "numpy", "scipy")))
    print(f"bayesmix side BLAS (numpy, scipy): {numpy_blas()}")
    theoph = bmx.load_dataset("Theoph")
    fits, ours = [], {}
    for name, random in MODELS.items():
        params = {p: "1 + (1 | Subject)" if p in random else "1" for p in START}
        model = bmx.nlmm(SSFOL, theoph, params, cov={"Subject": "diagonal"})
        for method in ("ML", "REML"):
            key = f"{name} {method}"
            fits.append({"key": key, "random": f"{' + '.join(random)} ~ 1", "method": method})
            times = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularFitWarning)
                fit = model.fit(method)  # warm-up (imports, caches)
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    fit = model.fit(method)
                    times.append(time.perf_counter() - start)
            ours[key] = {"times": times, "loglik": fit.loglik, "iterations": len(fit.history)}
    peer = None
    if not args.no_r and r_available():
        spec = {"start": START, "fits": fits, "repeats": args.repeats, "packages": ["nlme"]}
        peer = run_r(NLME, theoph, spec, timeout=600)
    elif not args.no_r:
        peer = {"error": "Rscript not found"}
    print(
        f"\nTheoph {SSFOL}, pdDiag by Subject; {args.repeats} timed fits per side; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'model':<12}{'bmx best':>9}{'bmx med':>9}{'nlme best':>10}{'nlme med':>10}"
        f"{'ratio':>7}{'bmx it':>7}{'nlme it':>8}{'bmx logLik':>13}{'nlme logLik':>13}{'diff':>10}"
    )
    for key, r in ours.items():
        line = f"{key:<12}{min(r['times']):>9.3f}{statistics.median(r['times']):>9.3f}"
        theirs = None if peer is None or "error" in peer else peer["fits"][key]
        if theirs is None:
            print(
                f"{line}{'-':>10}{'-':>10}{'-':>7}{r['iterations']:>7d}{'-':>8}{r['loglik']:>13.4f}"
            )
            continue
        ratio = statistics.median(r["times"]) / statistics.median(theirs["times"])
        print(
            f"{line}{min(theirs['times']):>10.3f}{statistics.median(theirs['times']):>10.3f}"
            f"{ratio:>6.2f}x{r['iterations']:>7d}{theirs['iterations']:>8d}"
            f"{r['loglik']:>13.4f}{theirs['loglik']:>13.4f}{r['loglik'] - theirs['loglik']:>+10.1e}"
        )
    print("ratio = median bayesmix / median nlme (< 1: bayesmix is faster)")
    if peer is not None and "error" in peer:
        print(f"nlme: not run ({peer['error']})")
    elif peer is not None:
        print(f"nlme side: {r_blas_line(peer)}")


if __name__ == "__main__":
    main()
