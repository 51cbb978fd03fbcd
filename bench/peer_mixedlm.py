"""Time mixedlm (a Rust clone of lme4 on PyPI) on one model: a peer worker of bench_ml_peers.py.

This script is standalone: it never imports bayesmix and runs under its own
"peer" virtual environment, so that mixedlm's dependencies (numpy, scipy,
pandas versions) do not meet bayesmix's. Creating it (Python 3.12, as for
bayesmix)::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/mixedlm-venv
    /tmp/mixedlm-venv/bin/pip install mixedlm pandas

Usage (``bench/bench_ml_peers.py`` writes the spec and the CSV and calls it)::

    /tmp/mixedlm-venv/bin/python bench/peer_mixedlm.py SPEC.json   # or "-": the spec on stdin

The spec is a JSON object:

* ``csv``: the data; ``factors``: ``{column: [levels, ...]}``, the columns to
  read as text and make categorical with these levels (in this order, so the
  reference level of a treatment contrast is the first, as in R);
* ``formula`` (lme4 syntax, as mixedlm parses it), ``reml`` (bool),
  ``repeats`` (timed fits);
* ``warmup``: ``null`` to warm up with one untimed fit of the same model on
  the same data, or ``"sleepstudy"`` to warm up on mixedlm's bundled
  sleepstudy instead (for models whose one fit takes minutes; the warm-up
  only loads code).

Timed: ``mixedlm.lmer(formula, data, REML=reml)``, formula to fitted model
(mixedlm's ``LmerMod`` parses the formula, builds the matrices and fits in
that call), with ``time.perf_counter``. Printed: one JSON line with the
median and all times in seconds, the logLik (``fit.logLik()``, the REML
log-likelihood for REML fits), the number of objective evaluations
(``fit.function_evals``), the optimizer mixedlm kept (its default "auto" is
L-BFGS-B with analytic gradients, refitted by COBYQA when L-BFGS-B ends at an
edge), the warnings of the timed fits, the peak resident memory of this
process (``getrusage``, MiB, data included) and mixedlm's version.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
import warnings
from importlib.metadata import version

import pandas as pd


def read_data(spec: dict) -> pd.DataFrame:
    """The CSV of ``spec`` with its factor columns as categoricals of the given levels."""
    factors = spec.get("factors", {})
    data = pd.read_csv(spec["csv"], dtype={column: str for column in factors})
    for column, levels in factors.items():
        data[column] = pd.Categorical(data[column], categories=levels)
    return data


def main() -> None:
    """Read the spec (argv[1], or stdin for "-"), fit, print one JSON line."""
    source = sys.argv[1] if len(sys.argv) > 1 else "-"
    spec = json.loads(sys.stdin.read() if source == "-" else open(source).read())
    import mixedlm

    data = read_data(spec)
    formula, reml, repeats = spec["formula"], bool(spec["reml"]), int(spec["repeats"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if spec.get("warmup") == "sleepstudy":
            mixedlm.lmer("Reaction ~ Days + (Days | Subject)", mixedlm.load_sleepstudy())
        else:
            mixedlm.lmer(formula, data, REML=reml)
        del caught[:]  # keep the timed fits' warnings only
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fit = mixedlm.lmer(formula, data, REML=reml)
            times.append(time.perf_counter() - start)
    messages = sorted({str(w.message) for w in caught})
    print(
        json.dumps(
            {
                "total_s": statistics.median(times),
                "times": times,
                "repeats": repeats,
                "loglik": float(fit.logLik()),
                "n_evaluations": int(fit.function_evals),
                "optimizer": fit.optimizer,
                "converged": bool(fit.converged),
                "fixed_names": list(fit.matrices.fixed_names),
                "messages": messages,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "version": f"mixedlm {version('mixedlm')}",
            }
        )
    )


if __name__ == "__main__":
    main()
