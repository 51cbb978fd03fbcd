"""One clock for the draw loop of nutpie and of PyMC's NUTS (used by the bench workers).

Why this exists: the samplers' own clocks time different spans, so their
sampling times cannot be divided by each other.

* PyMC stamps ``sampling_time`` on the posterior around its draw loop
  (tuning included; worker processes started inside it), *before* the trace
  is converted to InferenceData.
* bayesmix's ``timing["sample_s"]`` for nutpie spans the whole
  ``nutpie.sample`` call, which ends by converting nutpie's Arrow trace to
  InferenceData; so does the ``sampling_time`` PyMC stamps when it drives
  nutpie (``pm.sample(nuts_sampler="nutpie")``, bambi's ``"nutpie"`` method).

:func:`install` wraps the entry points of both samplers in this process with
the same ``time.perf_counter`` span: from the call that starts the chains to
all draws being in memory, trace conversion excluded (timed separately as
``convert_s``). It patches only this process's modules, and only the bench
workers call it. It imports neither bayesmix nor bambi, so the peer
environment of ``peer_bambi.py`` can use it too.
"""

from __future__ import annotations

import functools
import sys
import time

_SPANS = {"loop_s": 0.0, "convert_s": 0.0}
_INSTALLED: list[bool] = []

# PyMC's draw loops: parallel chains, sequential chains, population samplers.
# ``pm.sample`` looks them up in its module's globals when it runs, so
# replacing the module attributes times them without changing PyMC.
PYMC_LOOPS = ("_mp_sample", "_sample_many", "_sample_population")


def install() -> None:
    """Time nutpie's and PyMC's draw loops from now on (idempotent)."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)
    try:
        import nutpie
    except ImportError:
        nutpie = None
    if nutpie is not None:
        # ``nutpie.sample`` is the function; its module is only in sys.modules
        background = sys.modules["nutpie.sample"]._BackgroundSampler
        background._extract = _timed(background._extract, "convert_s")
        nutpie.sample = _nutpie_loop(nutpie.sample)
    try:
        import pymc.sampling.mcmc as mcmc
    except ImportError:
        return
    for name in PYMC_LOOPS:
        if hasattr(mcmc, name):
            setattr(mcmc, name, _timed(getattr(mcmc, name), "loop_s"))


def take() -> dict[str, float]:
    """Seconds spent in draw loops and trace conversion since the last call (then reset)."""
    out = dict(_SPANS)
    _SPANS.update(loop_s=0.0, convert_s=0.0)
    return out


def _timed(function, key: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _SPANS[key] += time.perf_counter() - start

    return wrapper


def _nutpie_loop(sample):
    """``nutpie.sample`` whose span, minus the conversion inside it, counts as the loop."""

    @functools.wraps(sample)
    def wrapper(*args, **kwargs):
        start, converted = time.perf_counter(), _SPANS["convert_s"]
        try:
            return sample(*args, **kwargs)
        finally:
            span = time.perf_counter() - start
            _SPANS["loop_s"] += span - (_SPANS["convert_s"] - converted)

    return wrapper
