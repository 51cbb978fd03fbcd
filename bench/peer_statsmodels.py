"""Time statsmodels' MixedLM on one model: a peer worker of bench_ml_peers.py.

This script is standalone: it never imports bayesmix and runs under its own
"peer" virtual environment. Creating it (Python 3.12, as for bayesmix)::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/statsmodels-venv
    /tmp/statsmodels-venv/bin/pip install statsmodels pandas

Usage (``bench/bench_ml_peers.py`` writes the spec and the CSV and calls it)::

    /tmp/statsmodels-venv/bin/python bench/peer_statsmodels.py SPEC.json   # or "-": stdin

MixedLM has one grouping factor, with an unstructured covariance for the
terms of ``re_formula``, plus independent variance components
(``vc_formula``, one variance per component) inside the groups. lme4's
``(Days | Subject)`` is ``groups="Subject", re_formula="~Days"``; crossed
random intercepts ``(1 | a) + (1 | b)`` are one group holding all rows
(``groups=None`` here: a constant column is added) with
``re_formula="0"`` and ``vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"}``.
Correlated slopes of a second grouping factor have no counterpart; the main
script does not run such models here.

The spec is a JSON object:

* ``csv``: the data; ``factors``: ``{column: [levels, ...]}``, the columns to
  read as text and make categorical with these levels (first level = reference);
* ``formula`` (the fixed part, ``y ~ x``), ``groups`` (a column, or ``null``
  for one group of all rows), ``re_formula``, ``vc_formula`` (or ``null``),
  ``use_sparse`` (sparse variance-component design matrices), ``reml``
  (bool), ``repeats`` (timed fits);
* ``warmup``: ``null`` for one untimed fit of the same model on the same data
  before the timed fits (the only warm-up this worker does).

Timed: ``smf.mixedlm(...).fit(reml=reml)``, formula to fitted model
(``fit`` includes the Hessian that MixedLM computes for standard errors),
with ``time.perf_counter``; MixedLM's default optimizer list (BFGS, then
L-BFGS and CG if BFGS does not converge). The number of evaluations is
counted in the warm-up fit, which is the same deterministic fit: calls of
the profiled log-likelihood and of its analytic gradient (``model.loglike``
and ``model.score``), reported as ``n_evaluations`` and ``n_gradients``.
Printed: one JSON line with the median and all times in seconds, the logLik
(``result.llf``: the REML log-likelihood for REML fits, on lme4's scale),
those counts, ``converged``, the warnings of the timed fits, the peak
resident memory of this process (``getrusage``, MiB, data included) and
statsmodels' version.
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

ONE = "_one_group"  # the constant grouping column for models without a single grouping factor


def read_data(spec: dict) -> pd.DataFrame:
    """The CSV of ``spec`` with its factor columns as categoricals of the given levels."""
    factors = spec.get("factors", {})
    data = pd.read_csv(spec["csv"], dtype={column: str for column in factors})
    for column, levels in factors.items():
        data[column] = pd.Categorical(data[column], categories=levels)
    return data


def build(smf, spec: dict, data: pd.DataFrame):
    """The MixedLM model of ``spec`` (formula to model, not fitted)."""
    return smf.mixedlm(
        spec["formula"],
        data,
        groups=spec.get("groups") or ONE,
        re_formula=spec.get("re_formula"),
        vc_formula=spec.get("vc_formula"),
        use_sparse=bool(spec.get("use_sparse", False)),
    )


def counted_fit(model, reml: bool):
    """Fit ``model``, counting log-likelihood and gradient calls; (result, calls, gradients)."""
    counts = {"loglike": 0, "score": 0}
    loglike, score = model.loglike, model.score

    def counting_loglike(*args, **kwargs):
        counts["loglike"] += 1
        return loglike(*args, **kwargs)

    def counting_score(*args, **kwargs):
        counts["score"] += 1
        return score(*args, **kwargs)

    model.loglike, model.score = counting_loglike, counting_score  # instance attributes
    result = model.fit(reml=reml)
    return result, counts["loglike"], counts["score"]


def main() -> None:
    """Read the spec (argv[1], or stdin for "-"), fit, print one JSON line."""
    source = sys.argv[1] if len(sys.argv) > 1 else "-"
    spec = json.loads(sys.stdin.read() if source == "-" else open(source).read())
    import statsmodels.formula.api as smf

    data = read_data(spec)
    if not spec.get("groups"):
        data[ONE] = 1
    reml, repeats = bool(spec["reml"]), int(spec["repeats"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, n_evaluations, n_gradients = counted_fit(build(smf, spec, data), reml)  # warm-up
        del caught[:]  # keep the timed fits' warnings only
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = build(smf, spec, data).fit(reml=reml)
            times.append(time.perf_counter() - start)
    messages = sorted({str(w.message) for w in caught})
    print(
        json.dumps(
            {
                "total_s": statistics.median(times),
                "times": times,
                "repeats": repeats,
                "loglik": float(result.llf),
                "n_evaluations": n_evaluations,
                "n_gradients": n_gradients,
                "converged": bool(result.converged),
                "messages": messages,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "version": f"statsmodels {version('statsmodels')}",
            }
        )
    )


if __name__ == "__main__":
    main()
