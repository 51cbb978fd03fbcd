"""The Bayesian nonlinear mixed model with residual variance functions and correlation
structures (``nlmm(..., weights=, correlation=).sample()``).

(a) The PyMC model's likelihood potential at a point equals the numpy reference
(the SSlogis mean written out, then ``ResidualStructure.whiten``), for varPower of
the fitted values (random effects included) alone and with corAR1; (b) Orange
with ``varPower()`` agrees with nlme's ML fit (V21); (c) a short corAR1 run
reports its structure. Two models are sampled (two numba compilations).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from assertions import assert_within_k_sd
from pymc_points import value_point

import bayesmix as bmx
from bayesmix.errors import ArgumentError, PriorError, SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

import pytensor  # noqa: E402

from bayesmix.nonlinear.bayes_results import NLBayesResult  # noqa: E402

REF = Path(__file__).parent / "refs" / "varcorr" / "refs" / "V21_orange_nlme_varpower_ml.json"
FORMULA = "circumference ~ SSlogis(age, Asym, xmid, scal)"
PARAMS = {"Asym": "1 + (1|Tree)", "xmid": "1", "scal": "1"}


def _orange_model(**kwargs) -> bmx.NonlinearMixedModel:
    return bmx.nlmm(FORMULA, bmx.load_dataset("Orange"), PARAMS, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"weights": bmx.varPower()}, {"weights": "varPower()", "correlation": "corAR1()"}],
    ids=["varPower", "varPower_corAR1"],
)
def test_model_likelihood_equals_numpy(kwargs):
    """``loglik_y`` at a point is the numpy log-likelihood with the nonlinear mean
    (random effects included) as the variance covariate."""
    m = _orange_model(**kwargs)
    res, data = m.residual, m.data
    model = m.pymc_model()
    rng = np.random.default_rng(11)
    beta = np.array([190.0, 720.0, 340.0]) + rng.normal(scale=5.0, size=3)
    z = rng.normal(size=5)
    sd, sigma_c, power, phi = 25.0, 3.1, 0.3, 0.45
    values = {"beta": beta, "sd_Tree": [sd], "z0_Tree": z, "power": power, "sigma_c": sigma_c}
    u = [power]
    if res.correlation is not None:
        values["Phi"] = phi
        u.append(np.arctanh(phi))
    point = value_point(model, values)
    inputs = [model.rvs_to_values[rv] for rv in model.free_RVs]
    outputs = model.replace_rvs_by_values([model["loglik_y"], model["r_Tree"], model["sigma"]])
    f = pytensor.function(inputs, outputs, mode="FAST_COMPILE", on_unused_input="ignore")
    got, r, sigma = f(*[point[v.name] for v in inputs])
    np.testing.assert_allclose(r[:, 0], sd * z, rtol=1e-12)
    # numpy: SSlogis written out, Tree's codes from the data (nlme's level order)
    levels = list(m.design.blocks[0].levels)
    assert levels == ["3", "1", "5", "2", "4"]
    codes = np.array([levels.index(str(t)) for t in data["Tree"]])
    asym = beta[0] + r[codes, 0]
    age = data["age"].to_numpy(float)
    mu = asym / (1.0 + np.exp((beta[1] - age) / beta[2]))
    y = data["circumference"].to_numpy(float)
    u = np.array(u)
    W, log_det = res.whiten(u, y - mu, mu)
    log_g = res.log_sd(u, mu)
    scale = sigma_c * np.exp(-np.mean(log_g))  # nlme's sigma
    assert abs(float(sigma) - scale) <= 1e-12 * scale
    n = y.size
    expected = (
        -0.5 * np.sum(W**2) / scale**2
        - n * np.log(scale)
        - 0.5 * log_det
        - 0.5 * n * np.log(2 * np.pi)
    )
    assert abs(float(got) - expected) <= 1e-9 * abs(expected), (float(got), expected)


def test_priors_and_bad_keys():
    m = _orange_model(weights=bmx.varPower(), correlation=bmx.corAR1())
    priors = m.default_priors()
    assert {"Asym", "xmid", "scal", "sd(Asym|Tree)", "sigma", "power", "Phi"} <= set(priors)
    assert isinstance(priors["Phi"], bmx.Uniform)
    with pytest.raises(PriorError, match="'powr'.*did you mean 'power'"):
        m.pymc_model(priors={"powr": bmx.Normal(0, 1)})
    with pytest.raises(PriorError, match="Prior for 'power' must be one of"):
        m.pymc_model(priors={"power": bmx.Uniform(0, 1)})
    model = m.pymc_model(priors={"power": bmx.Normal(0.2, 0.5), "Asym": bmx.Normal(200, 50)})
    assert {"power", "Phi", "sigma_c", "sigma", "loglik_y"} <= set(model.named_vars)
    with pytest.raises(ArgumentError, match="draws"):
        m.sample(draws=3)


def _quiet(m, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return m.sample(**kwargs)


@pytest.fixture(scope="module")
def orange_varpower():
    m = _orange_model(weights=bmx.varPower())
    return _quiet(m, draws=500, tune=500, chains=4, random_seed=8)


def test_orange_varpower_agrees_with_nlme(orange_varpower):
    ref = json.loads(REF.read_text())
    assert ref["factors"]["Tree"]["levels"] == list(
        orange_varpower.nonlinear_design.blocks[0].levels
    )
    post = orange_varpower.idata["posterior"]
    beta = post["beta"].values
    for j, name in enumerate(orange_varpower.design.fixed_terms):
        assert_within_k_sd(beta[..., j], ref["fixef"][name], 2, name)
    power = ref["varStruct"]["coef"]["power"]
    assert_within_k_sd(post["power"].values, power, 2, "power")
    table = orange_varpower.residual_parameters()
    assert list(table["parameter"]) == ["power"]
    assert list(table["structure"]) == ["varPower(form = ~fitted(.))"]
    assert abs(table["mean"].iloc[0] - post["power"].values.mean()) < 1e-12
    assert table["r_hat"].iloc[0] < 1.05


def test_orange_result_reports_the_structure(orange_varpower):
    fit = orange_varpower
    assert isinstance(fit, NLBayesResult) and isinstance(fit, bmx.BayesResult)
    text = str(fit.summary())
    assert (
        "Residuals: varPower(form = ~fitted(.))" in text and "power" in text and "SSlogis" in text
    )
    assert "varPower:power" in fit.diagnostics()["table"].index
    assert "residuals: varPower(" in repr(fit)
    n = fit.design.n_obs
    ll = fit.idata["log_likelihood"]["y"]
    assert ll.shape[-1] == n and np.isfinite(ll.values).all()
    # without a correlation the LOO terms are the rows' own normal densities
    S = fit._n_draws()
    mu = fit._mu_draws(*fit._arrays(), draw_slice=slice(0, 3))
    log_s = fit._log_sd_draws(slice(0, 3), mu)
    y = fit.design.y
    own = -0.5 * ((y - mu) / np.exp(log_s)) ** 2 - log_s - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ll.values.reshape(S, n)[:3], own, rtol=1e-10)
    assert np.isfinite(fit.loo().elpd)
    pp = fit.predict(kind="posterior_predictive", draws=True, random_seed=1)
    assert pp.shape == (S, n)
    pearson = fit.residuals("pearson")
    assert abs(np.std(pearson) - 1) < 0.35
    assert fit.coef()["Tree"].shape[0] == 5 * 3


@pytest.mark.filterwarnings("ignore::bayesmix.errors.SamplingWarning")  # a short run
def test_orange_corar1_samples():
    m = _orange_model(correlation="corAR1()")
    fit = m.sample(draws=200, tune=300, chains=2, random_seed=4)
    table = fit.residual_parameters()
    assert list(table["parameter"]) == ["Phi"]
    assert -1 < table["mean"].iloc[0] < 1
    assert "Residuals: corAR1(" in str(fit.summary())
    ll = fit.idata["log_likelihood"]["y"]
    assert np.isfinite(ll.values).all() and "sigma_c" not in fit.idata["posterior"]


def test_orange_structured_posterior_saves_and_loads(orange_varpower, tmp_path):
    """The file records the structure: it loads back as a StructuredNLBayesResult."""
    path = tmp_path / "orange.bmx"
    orange_varpower.save(path)
    back = bmx.load(path)
    assert type(back).__name__ == "StructuredNLBayesResult"
    pd.testing.assert_frame_equal(back.residual_parameters(), orange_varpower.residual_parameters())
