"""Predictive-check and effect plots render, for ML and Bayesian fits (issue 17).

Each test counts what the figure holds (panels, lines, bands, points) and reads
its labels; the figures themselves were looked at when the plots were written.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

import bayesmix as bmx  # noqa: E402
from bayesmix.errors import ArgumentError  # noqa: E402

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def model():
    return bmx.lmm(FORMULA, bmx.load_dataset("sleepstudy"))


@pytest.fixture(scope="module")
def post(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(draws=200, tune=300, chains=2, random_seed=11)


@pytest.fixture(scope="module")
def fit(model):
    return model.fit()


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


@pytest.mark.parametrize("kind, lines", [("density", 21), ("stat", 1), ("intervals", 360)])
def test_plot_ppc_kinds(post, kind, lines):
    fig = bmx.plot_ppc(post, kind, num_samples=20, random_seed=1)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].lines) == lines  # 20 replicates + observed; 2 bars per point
    assert FORMULA in fig.get_suptitle() and "Posterior" in fig.get_suptitle()
    ax = fig.axes[0]
    assert "Reaction" in ax.get_title() + ax.get_ylabel()


def test_plot_ppc_by_group_level(post):
    fig = bmx.plot_ppc(post, group="Subject", levels=["308", "309", "310"], num_samples=10)
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == ["Subject 308", "Subject 309", "Subject 310"]
    assert all(len(ax.lines) == 11 for ax in fig.axes)


def test_plot_ppc_of_the_prior_and_of_an_ml_fit(model, fit):
    prior = model.sample_prior_predictive(100, random_seed=2)
    fig = bmx.plot_ppc(prior, num_samples=30)
    assert "Prior predictive" in fig.get_suptitle()
    assert len(fig.axes[0].lines) == 31
    fig = bmx.plot_ppc(fit, num_samples=25, random_seed=3)
    assert "Simulated from the fit" in fig.get_suptitle()
    assert len(fig.axes[0].lines) == 26
    fig = bmx.plot_ppc(prior, group="Subject", levels=["308", "372"], num_samples=5)
    assert len(fig.axes) == 2


def test_plot_ppc_of_an_ml_glmm():
    data = bmx.load_dataset("cbpp")
    glmm = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, "binomial")
    fig = bmx.plot_ppc(glmm.fit(), "stat", num_samples=40, random_seed=4)
    assert len(fig.axes) == 1 and "Simulated" in fig.get_suptitle()


def test_plot_ppc_refuses_bad_arguments(post):
    with pytest.raises(ArgumentError, match="kind"):
        bmx.plot_ppc(post, "violin")
    with pytest.raises(ArgumentError, match="choose at most"):
        bmx.plot_ppc(post, group="Subject")
    with pytest.raises(ArgumentError, match="not levels"):
        bmx.plot_ppc(post, group="Subject", levels=["999"])
    with pytest.raises(ArgumentError, match="grouping factor"):
        bmx.plot_ppc(post, group="Nope")
    with pytest.raises(ArgumentError, match="fitted result"):
        bmx.plot_ppc(np.zeros(3))


def test_plot_effects_ml_band_is_the_wald_interval(fit):
    fig = bmx.plot_effects(fit, "Days", n_points=10)
    ax = fig.axes[0]
    (line,) = ax.lines
    x, y = line.get_data()
    beta = fit.fixef()["estimate"].to_numpy()
    np.testing.assert_allclose(y, beta[0] + beta[1] * x, rtol=1e-12)
    (band,) = _bands(ax)
    upper = band.get_paths()[0].vertices[:, 1].max()
    X = np.column_stack([np.ones(10), x])
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, fit.vcov().to_numpy(), X))
    assert upper == pytest.approx((y + 1.959963984540054 * se).max(), rel=1e-9)
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"
    assert len(ax.collections) == 2  # the band and the data points


def test_plot_effects_new_group_band_is_wider(post):
    narrow = _bands(bmx.plot_effects(post, "Days", points=False).axes[0])[0]
    wide = _bands(bmx.plot_effects(post, "Days", include_random=True, points=False).axes[0])[0]

    def width(band):
        v = band.get_paths()[0].vertices[:, 1]
        return v.max() - v.min()

    assert width(wide) > 1.5 * width(narrow)


def test_plot_effects_by_and_categorical_x():
    orth = bmx.load_dataset("Orthodont")
    fit = bmx.lmm("distance ~ age * Sex + (age | Subject)", orth).fit()
    ax = bmx.plot_effects(fit, "age", by="Sex").axes[0]
    assert len(ax.lines) == 2 and len(_bands(ax)) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Sex = Male", "Sex = Female"]
    ax = bmx.plot_effects(fit, "Sex", points=False).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Male", "Female"]
    with pytest.raises(ArgumentError, match="include_random"):
        bmx.plot_effects(fit, "age", include_random=True)
    with pytest.raises(ArgumentError, match="not a column"):
        bmx.plot_effects(fit, "height")


def test_plot_effects_glmm_on_the_response_scale():
    data = bmx.load_dataset("cbpp")
    fit = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, "binomial")
    ax = bmx.plot_effects(fit.fit(), "period", points=False).axes[0]
    means = ax.lines[0].get_ydata()
    assert np.all((means > 0) & (means < 1))


def test_plot_individuals(post, fit):
    fig = bmx.plot_individuals(fit, "Days", levels=["308", "309"])
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["Subject 308", "Subject 309"]
    ax = visible[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # curve, population, points
    modes = fit.coef()["Subject"].loc["308"]
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, modes["Intercept"] + modes["Days"] * x, rtol=1e-10)
    fig = bmx.plot_individuals(post, "Days")
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(shown) == 16 and "16 of 18" in fig.get_suptitle()
    assert len(_bands(shown[0])) == 1


def test_effects_and_individuals_of_a_bayesian_glmm_and_a_nonlinear_fit():
    data = bmx.load_dataset("cbpp")
    model = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, "binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.sample(draws=100, tune=200, chains=2, random_seed=5)
    ax = bmx.plot_effects(post, "period", points=False).axes[0]
    means = ax.lines[0].get_ydata()
    table = post.predict(
        bmx.plotting_effects.reference_grid(post.design.data, "period", ["1", "2", "3", "4"]),
        include_random=False,
    )
    np.testing.assert_allclose(means, table["mean"].to_numpy())
    theoph = bmx.load_dataset("Theoph")
    fit = bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        theoph,
        {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"},
        cov="diagonal",
    ).fit(method="ML")
    fig = bmx.plot_individuals(fit, "Time", levels=["1", "2"])
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(shown) == 2 and len(shown[0].lines) == 2
    x, y = shown[0].lines[0].get_data()
    assert y.max() > 5 and y[0] == pytest.approx(0.0, abs=1e-9)  # concentration starts at 0
