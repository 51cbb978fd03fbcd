"""Wall time of the nonlinear ML/REML engine on nlme's Theoph reference fits (prints figures).

Run from the repository root::

    .venv/bin/python bench/bench_nl_ml.py [repeats]

Each of the four fits checked against nlme in ``tests/test_nl_fit.py``
(SSfol with diagonal random effects on lKa + lCl or lKe + lKa + lCl, ML and
REML) is run ``repeats`` times (default 5) after one warm-up fit; the best and
median wall times are printed with the iteration count and logLik. nlme
3.1-162 took 0.03-0.14 s per fit for these models (``fit_elapsed_s`` in
``tests/refs/theoph_nlme_*.json``, another machine).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import bayesmix as bmx
from bayesmix.errors import SingularFitWarning
from bayesmix.nonlinear_model import nlmm

SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"


def main(repeats: int = 5) -> None:
    theoph = bmx.load_dataset("Theoph")
    print(f"{'model':<12} {'method':<6} {'best s':>8} {'median s':>9} {'iter':>5} {'logLik':>11}")
    for name, three in (("diag2", False), ("diag3", True)):
        params = {
            "lKe": "1 + (1 | Subject)" if three else "1",
            "lKa": "1 + (1 | Subject)",
            "lCl": "1 + (1 | Subject)",
        }
        model = nlmm(SSFOL, theoph, params, cov={"Subject": "diagonal"})
        for method in ("ML", "REML"):
            times = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SingularFitWarning)
                fit = model.fit(method)  # warm-up (imports, caches)
                for _ in range(repeats):
                    start = time.perf_counter()
                    fit = model.fit(method)
                    times.append(time.perf_counter() - start)
            print(
                f"{name:<12} {method:<6} {min(times):8.3f} {statistics.median(times):9.3f} "
                f"{len(fit.history):5d} {fit.loglik:11.4f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
