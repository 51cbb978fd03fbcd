"""The pieces the benchmarks rely on: cached diagnostics, the parameter count, bench helpers.

No sampling: the Bayesian result is built from hand-made draws, and the bench
helpers are checked on small inputs (R only where ``Rscript`` is installed).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bmx
from bayesmix.bayes.results import BayesResult
from bayesmix.spec.design import build_design

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_bayes
        import loop_timer
        import peer_r

        yield bench_bayes, loop_timer, peer_r
    finally:
        sys.path.remove(str(BENCH))


def _fake_result() -> BayesResult:
    """A BayesResult of ``y ~ x + (1 | g)`` with random draws (2 chains x 50)."""
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"g": np.repeat(list("abcd"), 5), "x": rng.normal(size=20)})
    data["y"] = rng.normal(size=20)
    design = build_design("y ~ x + (1 | g)", data)
    shape = (2, 50)
    posterior = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), rng.normal(size=(*shape, 2))),
            "sd_g": (("chain", "draw", "g_term"), rng.gamma(2.0, size=(*shape, 1))),
            "r_g": (("chain", "draw", "g", "g_term"), rng.normal(size=(*shape, 4, 1))),
            "sigma": (("chain", "draw"), rng.gamma(2.0, size=shape)),
        },
        coords={"g": list("abcd"), "g_term": ["(Intercept)"]},
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros(shape, dtype=bool))})
    idata = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    return BayesResult(design=design, idata=idata, priors={})


def test_diagnostics_are_computed_once(monkeypatch):
    result = _fake_result()
    calls = []
    compute = BayesResult._compute_diagnostics
    monkeypatch.setattr(
        BayesResult, "_compute_diagnostics", lambda self: calls.append(1) or compute(self)
    )
    first = result.diagnostics()
    first["table"].loc[:, "ess_bulk"] = -1.0  # a caller editing its copy
    second = result.diagnostics()
    assert len(calls) == 1
    assert (second["table"]["ess_bulk"] > 0).all()
    assert second["min_ess_bulk"] == first["min_ess_bulk"]
    assert len(second["table"]) == 2 + 1 + 1 + 4  # fixef, sd, sigma, group effects


def test_cached_diagnostics_travel_with_copies_and_are_no_field():
    result = _fake_result()
    expected = result.diagnostics()
    for copied in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        assert "_diagnostics_cache" in copied.__dict__
        found = copied.diagnostics()
        pd.testing.assert_frame_equal(found["table"], expected["table"])
        assert found["max_r_hat"] == expected["max_r_hat"]
    # not a field: save() and dataclasses.replace() do not see it
    assert "_diagnostics_cache" not in {f.name for f in dataclasses.fields(result)}
    assert "_diagnostics_cache" not in dataclasses.replace(result).__dict__


def test_parameter_count_matches_the_initial_point():
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.sampler_defaults import default_target_accept, n_free_parameters

    sleep = bmx.load_dataset("sleepstudy")
    for formula in ("Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days || Subject)"):
        model = build_pymc_model(build_design(formula, sleep))
        expected = sum(np.size(v) for v in model.initial_point().values())
        assert n_free_parameters(model) == expected
        assert default_target_accept(model) == 0.95


def test_bench_summaries(bench_modules):
    bench_bayes, _, _ = bench_modules
    assert bench_bayes.med_range([3.0, 1.0, 2.0]) == "2.0 [1.0-3.0]"
    assert bench_bayes.med_range([5.0], digits=0) == "5"
    # medians 20 / 10; the range over pairs of seeds: 10 / 12 to 30 / 8
    assert bench_bayes.ratio_text([10.0, 20.0, 30.0], [8.0, 10.0, 12.0]) == "2.0x [0.8-3.8x]"
    record = {"runs": [{"min_ess_bulk": 100.0, "loop_s": 2.0, "warm_wall_s": 4.0}]}
    assert bench_bayes.per_seed(record, "ess_per_s_loop") == [50.0]
    assert bench_bayes.per_seed(record, "ess_per_s_wall") == [25.0]


def test_loop_clock_leaves_the_conversion_out(bench_modules, monkeypatch):
    _, loop_timer, _ = bench_modules
    monkeypatch.setattr(loop_timer, "_SPANS", {"loop_s": 0.0, "convert_s": 0.0})
    clock = iter([0.0, 1.0, 1.5, 2.0])  # sample starts, conversion starts, ends, sample ends
    monkeypatch.setattr(loop_timer.time, "perf_counter", lambda: next(clock))
    convert = loop_timer._timed(lambda: "idata", "convert_s")
    sample = loop_timer._nutpie_loop(lambda: convert())
    assert sample() == "idata"
    assert loop_timer.take() == {"loop_s": 1.5, "convert_s": 0.5}
    assert loop_timer.take() == {"loop_s": 0.0, "convert_s": 0.0}


@pytest.mark.skipif(not __import__("shutil").which("Rscript"), reason="R not installed")
def test_r_peer_gets_the_factors_and_reports_blas(bench_modules):
    _, _, peer_r = bench_modules
    data = pd.DataFrame(
        {"y": [1.5, 2.5, 3.5], "g": pd.Categorical(["b", "a", "b"], categories=["b", "a"])}
    )
    code = "emit(list(levels = levels(data$g), mean = mean(data$y), n = spec$n))"
    out = peer_r.run_r(code, data, {"n": 3, "packages": []}, timeout=120)
    assert out["levels"] == ["b", "a"]
    assert out["mean"] == pytest.approx(2.5)
    assert out["n"] == 3
    assert out["r_info"]["blas"]
    assert "error" in peer_r.run_r("stop('no')", data, {"packages": []}, timeout=120)
