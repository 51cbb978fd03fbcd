"""The posterior workflow: predictive checks, coef, Bayesian R², hypotheses (issue 17).

Checks are against closed forms (prior predictive moments, LKJ marginals),
against the same quantity computed another way from the stored draws, and
against the parameter draws themselves. Sampling is short (2 chains x 300).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import bayesmix as bmx
from bayesmix.errors import ArgumentError


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def post(sleep):
    model = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: R-hat/ESS warnings are expected
        return model.sample(draws=300, tune=300, chains=2, random_seed=1)


@pytest.fixture(scope="module")
def cbpp_post():
    data = bmx.load_dataset("cbpp")
    model = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, "binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(draws=300, tune=300, chains=2, random_seed=2)


# ------------------------------------------------------------------ predictive draws
def test_posterior_predictive_group(post, sleep):
    tree = post.sample_posterior_predictive(random_seed=3)
    y_rep = tree["posterior_predictive"]["y"]
    assert y_rep.dims == ("chain", "draw", "obs") and y_rep.shape == (2, 300, 180)
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, sleep["Reaction"].values)
    assert set(tree["constant_data"]["Subject"].values) == set(sleep["Subject"].astype(str))
    assert tree.attrs["formula"] == post.design.formula
    again = post.sample_posterior_predictive(random_seed=3)["posterior_predictive"]["y"]
    np.testing.assert_array_equal(again.values, y_rep.values)
    # each draw's replicates scatter around that draw's means with that draw's sigma
    noise = y_rep.values.reshape(-1, 180) - post.predict(draws=True)
    sigma = post.idata["posterior"]["sigma"].values.reshape(-1, 1)
    z = noise / sigma
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and z.std() == pytest.approx(1.0, abs=0.01)


def test_prior_predictive_moments_of_a_gaussian_model(sleep):
    """y = b0 + u + e with b0 ~ N(m, s), sd_u ~ HalfNormal(a), sigma ~ HalfNormal(b):
    E[y] = m and Var(y) = s^2 + a^2 + b^2 (closed form)."""
    m, s, a, b = 300.0, 20.0, 30.0, 40.0
    priors = {
        "Intercept": bmx.Normal(m, s),
        "sd(Intercept|Subject)": bmx.HalfNormal(a),
        "sigma": bmx.HalfNormal(b),
    }
    model = bmx.lmm("Reaction ~ 1 + (1 | Subject)", sleep)
    tree = model.sample_prior_predictive(4000, priors=priors, random_seed=4)
    y = tree["prior_predictive"]["y"].values.reshape(4000, -1)
    assert set(tree.children) >= {"prior", "prior_predictive", "observed_data"}
    # one row per draw: its draws are independent across draws
    row = y[:, 0]
    assert row.mean() == pytest.approx(m, abs=4 * np.sqrt(s**2 + a**2 + b**2) / np.sqrt(4000))
    assert row.var() == pytest.approx(s**2 + a**2 + b**2, rel=0.08)
    sigma = tree["prior"]["sigma"].values.ravel()
    assert stats.kstest(sigma, stats.halfnorm(scale=b).cdf).pvalue > 1e-3


def test_prior_predictive_mean_of_a_poisson_glmm():
    """log mu = b0 + u, b0 ~ N(m, s), u ~ N(0, sd^2), sd ~ HalfNormal(a):
    E[y] = exp(m + s^2 / 2) (1 - a^2)^(-1/2) (closed form, a < 1)."""
    data = bmx.load_dataset("cbpp")
    m, s, a = 1.0, 0.5, 0.5
    model = bmx.glmm("incidence ~ 1 + (1 | herd)", data, "poisson")
    priors = {"Intercept": bmx.Normal(m, s), "sd(Intercept|herd)": bmx.HalfNormal(a)}
    tree = model.sample_prior_predictive(4000, priors=priors, random_seed=5)
    y = tree["prior_predictive"]["y"].values.reshape(4000, -1)
    assert np.all(y >= 0) and np.all(y == np.round(y))
    expected = np.exp(m + s**2 / 2) / np.sqrt(1 - a**2)
    per_draw = y.mean(axis=1)
    assert per_draw.mean() == pytest.approx(expected, abs=4 * per_draw.std() / np.sqrt(4000))


def test_forward_lkj_draws_have_lkj_marginals(sleep):
    """An LKJ(eta) correlation of a 2 x 2 matrix is Beta(eta, eta) on (-1, 1); sleepstudy's
    block is not centred (Days includes 0), so cor_Subject is the LKJ-distributed one."""
    model = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    for eta in (1.0, 3.0):
        tree = model.sample_prior_predictive(
            3000, priors={"cor(Subject)": bmx.LKJ(eta)}, random_seed=6
        )
        cor = tree["prior"]["cor_Subject"].values.reshape(3000, 2, 2)[:, 1, 0]
        assert stats.kstest((cor + 1) / 2, stats.beta(eta, eta).cdf).pvalue > 1e-3


def test_forward_lkj_draws_of_a_3x3_block(sleep):
    """k = 3: each correlation is Beta(eta + 1/2, eta + 1/2) on (-1, 1); the partial
    correlations of the later column have another Beta than the first's."""
    data = sleep.assign(D2=sleep["Days"] ** 2 / 10)
    model = bmx.lmm("Reaction ~ Days + D2 + (Days + D2 | Subject)", data)
    eta = 1.5
    tree = model.sample_prior_predictive(3000, priors={"cor(Subject)": bmx.LKJ(eta)}, random_seed=8)
    cor = tree["prior"]["cor_Subject"].values.reshape(3000, 3, 3)
    shape = eta - 1 + 3 / 2
    for i, j in [(1, 0), (2, 0), (2, 1)]:
        u = (cor[:, i, j] + 1) / 2
        assert stats.kstest(u, stats.beta(shape, shape).cdf).pvalue > 1e-3


def test_prior_predictive_of_residual_structures():
    orth = bmx.load_dataset("Orthodont")
    model = bmx.lmm(
        "distance ~ age + (1 | Subject)", orth, correlation=bmx.corSymm(group="Subject")
    )
    tree = model.sample_prior_predictive(200, random_seed=9)
    y = tree["prior_predictive"]["y"].values
    assert y.shape == (1, 200, 108) and np.all(np.isfinite(y))
    ovary = bmx.load_dataset("Ovary")
    model = bmx.lmm(
        "follicles ~ sin(2*pi*Time) + (1 | Mare)", ovary, correlation=bmx.corAR1(group="Mare")
    )
    phi = model.sample_prior_predictive(2000, random_seed=10)["prior"]["Phi"].values.ravel()
    # Phi's default prior is Uniform(-1, 1)
    assert stats.kstest(phi, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_prior_predictive_of_a_nonlinear_model(theoph):
    model = bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        theoph,
        {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"},
    )
    prior = model.default_priors()["lKa"]
    tree = model.sample_prior_predictive(2000, random_seed=11)
    assert tree["prior_predictive"]["y"].shape == (1, 2000, 132)
    beta = tree["prior"]["beta"].sel(fixed="lKa").values.ravel()
    law = stats.norm(prior.mu, prior.sigma)
    assert stats.kstest(beta, law.cdf).pvalue > 1e-3


def test_prior_predictive_refuses_bad_arguments(sleep):
    model = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(ArgumentError, match="draws"):
        model.sample_prior_predictive(0)
    with pytest.raises(ArgumentError, match="random_seed"):
        model.sample_prior_predictive(10, random_seed=-1)


# ------------------------------------------------------------------ coef, R², hypotheses
def test_coef_is_fixed_plus_random_per_draw(post):
    table = post.coef()["Subject"]
    beta = post.idata["posterior"]["beta"].values.reshape(-1, 2)
    r = post.idata["posterior"]["r_Subject"].values.reshape(-1, 18, 2)
    draws = beta[:, 1] + r[:, 3, 1]
    level = str(post.design.blocks[0].levels[3])
    assert table.loc[(level, "Days"), "mean"] == pytest.approx(draws.mean(), rel=1e-12)
    assert table.loc[(level, "Days"), "lower"] == pytest.approx(np.quantile(draws, 0.025))
    assert list(table.index.get_level_values("coefficient")[:2]) == ["Intercept", "Days"]


def test_coef_adds_random_terms_without_a_fixed_part(sleep):
    model = bmx.lmm("Reaction ~ 1 + (Days | Subject)", sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.sample(draws=100, tune=200, chains=2, random_seed=7)
    table = fit.coef()["Subject"]
    r = fit.idata["posterior"]["r_Subject"].values.reshape(-1, 18, 2)
    level = str(fit.design.blocks[0].levels[0])
    assert table.loc[(level, "Days"), "mean"] == pytest.approx(r[:, 0, 1].mean(), rel=1e-12)


def _r2_direct(y, ypred):
    fit_var = ypred.var(axis=1, ddof=1)
    return fit_var / (fit_var + (y - ypred).var(axis=1, ddof=1))


def test_bayes_r2_equals_its_definition(post, sleep):
    table = post.r2()
    y = sleep["Reaction"].to_numpy()
    cond = _r2_direct(y, post.predict(draws=True))
    marg = _r2_direct(y, post.predict(draws=True, include_random=False))
    assert table.loc["conditional", "mean"] == pytest.approx(cond.mean(), rel=1e-10)
    assert table.loc["marginal", "mean"] == pytest.approx(marg.mean(), rel=1e-10)
    assert table.loc["conditional", "upper"] == pytest.approx(np.quantile(cond, 0.975))
    # and it is near lme4's conditional R² of the same model (performance: 0.799)
    assert 0.75 < table.loc["conditional", "mean"] < 0.85


def test_bayes_r2_of_a_binomial_glmm_uses_counts(cbpp_post):
    table = cbpp_post.r2()
    n = np.asarray(cbpp_post.design.weights)
    y = np.asarray(cbpp_post.design.y) * n
    ypred = cbpp_post.predict(draws=True) * n
    assert table.loc["conditional", "mean"] == pytest.approx(_r2_direct(y, ypred).mean())


def test_hypothesis_probabilities(post):
    draws = post.idata["posterior"]["beta"].values.reshape(-1, 2)
    table = post.hypothesis(["Days > 10", "Intercept + 10 * Days < 400", "(Days - 10) * 2 = 0"])
    row = table.loc["Days > 10"]
    assert 0 < row["post_prob"] < 1
    assert row["post_prob"] == pytest.approx(np.mean(draws[:, 1] > 10))
    assert row["estimate"] == pytest.approx(draws[:, 1].mean() - 10)
    assert row["evid_ratio"] == pytest.approx(row["post_prob"] / (1 - row["post_prob"]))
    second = table.loc["Intercept + 10 * Days < 400"]
    assert second["post_prob"] == pytest.approx(np.mean(draws[:, 0] + 10 * draws[:, 1] < 400))
    third = table.loc["(Days - 10) * 2 = 0"]
    assert np.isnan(third["post_prob"])
    assert third["estimate"] == pytest.approx(2 * (draws[:, 1].mean() - 10))
    sd = post.idata["posterior"]["sd_Subject"].values.reshape(-1, 2)[:, 1]
    quoted = post.hypothesis("`sd(Days|Subject)` > 5").iloc[0]
    assert quoted["post_prob"] == pytest.approx(np.mean(sd > 5))
    plain = post.hypothesis("sd(Days|Subject) > 5").iloc[0]
    assert plain["post_prob"] == quoted["post_prob"]


@pytest.mark.parametrize(
    "statement, message",
    [
        ("Dayz > 5", "not a parameter name"),
        ("Days * Intercept > 1", "not linear"),
        ("Days > 5 > 3", "exactly one comparison"),
        ("Days + 1", "exactly one comparison"),
        ("__import__('os').system('true') > 0", "not a parameter name"),
        ("5 > 3", "names no parameter"),
        ("(Days > 5", "not closed"),
        ("Days > 1e999", "not a finite number"),
        ("", "non-empty"),
    ],
)
def test_hypothesis_refuses_bad_statements(post, statement, message):
    with pytest.raises(ArgumentError, match=message):
        post.hypothesis(statement)
