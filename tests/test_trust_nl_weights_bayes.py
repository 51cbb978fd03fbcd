"""Offsets and prior weights of nonlinear mixed models in the Bayesian engine.

``y_i ~ Normal(offset_i + f(phi_i, x_i), sigma / sqrt(w_i))``. One short run
(2 chains x 100 + 100 on Theoph with the R reference's weights and an offset
column) is sampled for the module; the graph check compiles in FAST_COMPILE.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import bayesmix as bmx
from bayesmix.errors import SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

REFS = Path(__file__).parent / "refs" / "trust"
SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}


@pytest.fixture(scope="module")
def w():
    ref = json.loads((REFS / "nlme_theoph_weights_ml.json").read_text())
    return np.asarray(ref["weights"], dtype=float)


@pytest.fixture(scope="module")
def data(theoph, w):
    return theoph.assign(w=w, off=0.05 * theoph["Time"] + 0.1)


@pytest.fixture(scope="module")
def model(data):
    return bmx.nlmm(
        SSFOL, data, params=PARAMS, cov={"Subject": "diagonal"}, offset="off", weights="w"
    )


@pytest.fixture(scope="module")
def sampled(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # 2 x 100 draws: low ESS
        return model.sample(draws=100, tune=100, chains=2, random_seed=7)


def _draw(result, chain: int, draw: int):
    post = result.idata["posterior"]
    beta = post["beta"].values[chain, draw]
    r = post["r_Subject"].values[chain, draw]
    return beta, r, float(post["sigma"].values[chain, draw])


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_bayesian_pointwise_loglik_uses_offset_and_weights(sampled, data, w):
    nl = sampled.nonlinear_design
    beta, r, sigma = _draw(sampled, 1, 17)
    mu = data["off"].to_numpy() + nl.mean(np, nl.phi(beta, [r]))
    expected = stats.norm.logpdf(data["conc"].to_numpy(), mu, sigma / np.sqrt(w))
    stored = sampled.idata["log_likelihood"]["y"].values[1, 17]
    np.testing.assert_allclose(stored, expected, rtol=1e-12, atol=1e-12)
    # the unweighted density differs: the weights are not ignored
    assert not np.allclose(stored, stats.norm.logpdf(data["conc"], mu, sigma))
    assert np.isfinite(sampled.loo().elpd)


def test_bayesian_graph_has_the_weighted_likelihood(model, data, w):
    """The PyMC model's log-density of y equals scipy's with sd sigma / sqrt(w)."""
    pm_model = model.pymc_model()
    outputs = pm_model.replace_rvs_by_values(
        [
            pm_model.logp(vars=pm_model.observed_RVs),
            pm_model["beta"],
            pm_model["r_Subject"],
            pm_model["sigma"],
        ]
    )
    function = pm_model.compile_fn(outputs, mode="FAST_COMPILE")
    rng = np.random.default_rng(3)
    point = {
        k: v + rng.normal(0.0, 0.2, np.shape(v))
        for k, v in pm_model.initial_point(random_seed=3).items()
    }
    loglik, beta, r, sigma = function(point)
    nl = model.design
    mu = data["off"].to_numpy() + nl.mean(np, nl.phi(beta, [r]))
    expected = stats.norm.logpdf(data["conc"].to_numpy(), mu, sigma / np.sqrt(w)).sum()
    assert loglik == pytest.approx(expected, rel=1e-10)
    # the default sigma prior is scaled by the response less the offset
    assert model.default_priors()["sigma"].sigma == pytest.approx(
        np.std(data["conc"] - data["off"])
    )


def test_bayesian_predictions_add_the_offset(sampled, data, w):
    nl = sampled.nonlinear_design
    mu = sampled.predict(draws=True)  # (S, n) with random effects
    beta, r, _ = _draw(sampled, 0, 0)
    first = data["off"].to_numpy() + nl.mean(np, nl.phi(beta, [r]))
    np.testing.assert_allclose(mu[0], first, rtol=1e-12)
    np.testing.assert_allclose(sampled.fitted(), mu.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(sampled.residuals(), data["conc"] - sampled.fitted(), rtol=1e-12)
    # predictive noise of a fitted row has SD sigma / sqrt(w): the same normal deviates
    noisy = sampled.predict(kind="posterior_predictive", draws=True, random_seed=5)
    sigma = sampled.idata["posterior"]["sigma"].values.reshape(-1)
    z = (noisy - mu) * np.sqrt(w) / sigma[:, None]
    np.testing.assert_allclose(z, np.random.default_rng(5).standard_normal(mu.shape), atol=1e-8)
    # new rows read the offset column
    rows = data.iloc[:11]
    moved = sampled.predict(rows.assign(off=rows["off"] + 2.0))["mean"].to_numpy()
    np.testing.assert_allclose(moved, sampled.predict(rows)["mean"].to_numpy() + 2.0, atol=1e-10)
    np.testing.assert_allclose(sampled.predict(rows)["mean"], sampled.fitted()[:11], atol=1e-10)


def test_weighted_bayesian_fit_reloads_identically(sampled, data, tmp_path):
    sampled.save(tmp_path / "b.bmx")
    back = bmx.load(tmp_path / "b.bmx")
    assert back.model.offset == "off" and back.model.weights == "w"
    np.testing.assert_array_equal(back.fitted(), sampled.fitted())
    np.testing.assert_array_equal(
        back.idata["log_likelihood"]["y"].values, sampled.idata["log_likelihood"]["y"].values
    )
    np.testing.assert_array_equal(back.residuals("pearson"), sampled.residuals("pearson"))
