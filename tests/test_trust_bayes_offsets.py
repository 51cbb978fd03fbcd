"""Offsets and prior weights in the Bayesian engine (trust issue, item 3).

The posterior of a model with ``offset(10 * Days)`` is the posterior of the
model without it, shifted by 10 in the Days coefficient (lme4: Days = 0.467286
under REML); with prior weights the pointwise log-likelihood is the Normal
density with SD ``sigma / sqrt(w)``, checked against scipy; predictions on new
rows include the offset evaluated on those rows.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import bayesmix as bmx
from bayesmix.bayes.fit import likelihood_form
from bayesmix.bayes.tables import flat_draws

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.errors.SamplingWarning")
REFS = Path(__file__).parent / "refs" / "trust"
SAMPLE = dict(draws=300, tune=300, chains=2, random_seed=11)


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def offset_post(sleep):
    model = bmx.lmm("Reaction ~ Days + offset(10 * Days) + (1 | Subject)", sleep)
    return model.sample(**SAMPLE)


@pytest.fixture(scope="module")
def weighted_post(sleep):
    weights = 1.0 + sleep["Days"].to_numpy() % 3
    model = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep, weights=weights)
    return model.sample(**SAMPLE)


def test_formula_offset_shifts_the_posterior_like_lme4(offset_post, sleep):
    ref = json.loads((REFS / "offset_sleepstudy_reml.json").read_text())
    fixef = offset_post.fixef()
    days = fixef.loc["Days"]
    # lme4's REML estimate for the (Days | Subject) model; with (1 | Subject)
    # the point estimate is the same OLS slope shifted by the offset's 10.
    assert abs(days["mean"] - ref["fixef"]["Days"]) < 3 * days["sd"]
    assert abs(days["mean"]) < 1.5  # the offset's 10 is not absorbed by the slope
    # fitted values and predictions include the offset
    np.testing.assert_allclose(offset_post.predict(sleep)["mean"], offset_post.fitted(), rtol=1e-10)
    residuals = offset_post.residuals()
    assert abs(residuals.mean()) < 1.0  # without the offset the mean residual would be ~45


def test_offset_of_new_rows_is_evaluated_on_them(offset_post, sleep):
    rows = sleep.head(4)
    shifted = rows.assign(Days=rows["Days"] + 1.0)
    base = offset_post.predict(rows, include_random=False)["mean"].to_numpy()
    moved = offset_post.predict(shifted, include_random=False)["mean"].to_numpy()
    slope = offset_post.fixef().loc["Days", "mean"]
    np.testing.assert_allclose(moved - base, 10.0 + slope, rtol=1e-9)


def test_prior_weights_enter_the_likelihood(weighted_post, sleep):
    weights = weighted_post.design.weights
    assert likelihood_form(weighted_post.design, "nutpie") == "graph"
    loglik = weighted_post.idata["log_likelihood"]["y"].to_numpy().reshape(-1, len(sleep))
    post = weighted_post.idata["posterior"]
    sigma = flat_draws(post["sigma"])
    draw = 17
    mu = weighted_post._mu_draws(*weighted_post._arrays(), draw_slice=slice(draw, draw + 1))[0]
    expected = stats.norm.logpdf(sleep["Reaction"], mu, sigma[draw] / np.sqrt(weights))
    np.testing.assert_allclose(loglik[draw], expected, rtol=1e-10)
    ref = json.loads((REFS / "weights_sleepstudy_reml.json").read_text())
    days = weighted_post.fixef().loc["Days"]
    # lme4's weighted (Days | Subject) slope; the (1 | Subject) posterior mean is close
    assert abs(days["mean"] - ref["fixef"]["Days"]) < 3 * days["sd"]


def test_weights_are_validated(sleep):
    with pytest.raises(bmx.DataError, match="weights must be positive"):
        bmx.lmm("Reaction ~ Days", sleep, weights=np.zeros(len(sleep)))
    with pytest.raises(bmx.DataError, match="one value per row"):
        bmx.lmm("Reaction ~ Days", sleep, weights=np.ones(3))
    with pytest.raises(bmx.DataError, match="weights='w' is not a column"):
        bmx.lmm("Reaction ~ Days", sleep, weights="w")
    with pytest.warns(bmx.DataWarning, match="Dropped 1 of 180 rows"):
        model = bmx.lmm("Reaction ~ Days", sleep, weights=np.r_[np.nan, np.ones(179)])
    assert model.design.n_obs == 179
