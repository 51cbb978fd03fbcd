"""Realized residuals of posterior draws and the residual plots that show them (issue 17).

``residual_draws`` is checked against the same quantity computed another way
from the stored draws (``predict(draws=True)``, sigma, the varIdent ratio, the
binomial variance), and its mean over all draws against ``residuals()``.
Sampling is short (2 chains x 100-300 draws).
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection

import bayesmix as bmx
from bayesmix.errors import ArgumentError


def _short(model, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: R-hat/ESS warnings are expected
        return model.sample(draws=150, tune=200, chains=2, random_seed=seed)


@pytest.fixture(scope="module")
def sleep():
    return bmx.load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def post(sleep):
    return _short(bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep), 1)


def test_response_draws_average_to_the_residuals(post, sleep):
    draws = post.residual_draws()
    assert draws.shape == (300, 180)
    np.testing.assert_allclose(draws.mean(axis=0), post.residuals(), rtol=0, atol=1e-9)
    mean = post.predict(draws=True)
    np.testing.assert_allclose(draws, sleep["Reaction"].to_numpy() - mean, atol=1e-9)


def test_pearson_draws_divide_by_each_draws_sigma(post, sleep):
    sigma = post.idata["posterior"]["sigma"].values.reshape(-1, 1)
    expected = (sleep["Reaction"].to_numpy() - post.predict(draws=True)) / sigma
    np.testing.assert_allclose(post.residual_draws("pearson"), expected, atol=1e-11)


def test_draws_are_evenly_spaced_over_the_chains(post):
    every = post.residual_draws("pearson")
    some = post.residual_draws("pearson", draws=7)
    assert some.shape == (7, 180)
    step = 300 // 7
    np.testing.assert_array_equal(some, every[0 : 7 * step : step])
    assert post.residual_draws(draws=1000).shape == (300, 180)  # more than stored: all


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kind": "deviance"}, "kind"), ({"draws": 0}, "draws"), ({"draws": 2.5}, "draws")],
)
def test_residual_draws_refuses_bad_arguments(post, kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        post.residual_draws(**kwargs)


def test_structured_pearson_draws_use_the_variance_function():
    """varIdent by Sex: Male rows have SD sigma, Female rows sigma * delta, per draw."""
    orth = bmx.load_dataset("Orthodont")
    model = bmx.lmm("distance ~ age + (1 | Subject)", orth, weights="varIdent(form = ~ 1 | Sex)")
    fit = _short(model, 2)
    posterior = fit.idata["posterior"]
    sigma = posterior["sigma"].values.reshape(-1, 1)
    delta = posterior["delta"].values.reshape(sigma.shape[0], -1)[:, :1]
    female = (orth["Sex"] == "Female").to_numpy()
    sd = np.where(female[None, :], sigma * delta, sigma)
    expected = (orth["distance"].to_numpy() - fit.predict(draws=True)) / sd
    np.testing.assert_allclose(fit.residual_draws("pearson"), expected, atol=1e-10)


def test_binomial_pearson_draws_use_each_draws_probability():
    cbpp = bmx.load_dataset("cbpp")
    model = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    fit = _short(model, 3)
    p = fit.predict(type="response", draws=True)
    y = (cbpp["incidence"] / cbpp["size"]).to_numpy()
    expected = (y - p) / np.sqrt(p * (1 - p) / cbpp["size"].to_numpy())
    np.testing.assert_allclose(fit.residual_draws("pearson"), expected, rtol=1e-10)
    np.testing.assert_allclose(fit.residual_draws().mean(axis=0), fit.residuals(), atol=1e-12)


def test_nonlinear_draws_average_to_the_residuals():
    orange = bmx.load_dataset("Orange")
    model = bmx.nlmm(
        "circumference ~ SSlogis(age, Asym, xmid, scal)",
        orange,
        {"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"},
    )
    fit = _short(model, 4)
    draws = fit.residual_draws()
    np.testing.assert_allclose(draws.mean(axis=0), fit.residuals(), atol=1e-9)
    sigma = fit.idata["posterior"]["sigma"].values.reshape(-1, 1)
    np.testing.assert_allclose(fit.residual_draws("pearson"), draws / sigma, rtol=1e-12)


# ------------------------------------------------------------------ plots
def test_qq_plot_of_draws_has_one_curve_per_draw(post):
    ax = bmx.plot_qq(post, draws=20)
    curves = [line for line in ax.lines if len(line.get_ydata()) == 180]
    assert len(curves) == 20 and len(ax.lines) == 21  # and the quartile reference line
    sorted_draws = np.sort(post.residual_draws("pearson", draws=20), axis=1)
    for curve, expected in zip(curves, sorted_draws, strict=True):
        np.testing.assert_allclose(curve.get_ydata(), expected)
    assert "20 posterior draws" in ax.get_title() and post.design.formula in ax.get_title()
    assert ax.get_ylabel() == "pearson residuals"
    plt.close("all")


def test_residual_plot_of_draws_adds_each_rows_interval(post):
    ax = bmx.plot_residuals(post, "response", draws=100)
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    paths = segments.get_segments()
    assert len(paths) == 180
    draws = post.residual_draws("response", draws=100)
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    np.testing.assert_allclose([p[0, 1] for p in paths], low)
    np.testing.assert_allclose([p[1, 1] for p in paths], high)
    np.testing.assert_allclose([p[0, 0] for p in paths], post.fitted())
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(points.get_ydata(), post.residuals())
    assert "90% intervals over 100 posterior draws" in ax.get_title()
    plt.close("all")


def test_draws_needs_a_posterior(sleep):
    fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", sleep).fit()
    with pytest.raises(ArgumentError, match="Bayesian result"):
        bmx.plot_qq(fit, draws=10)
    with pytest.raises(ArgumentError, match="Bayesian result"):
        bmx.plot_residuals(fit, draws=10)
    plt.close("all")
