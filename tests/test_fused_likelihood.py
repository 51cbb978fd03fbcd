"""The one-pass Gaussian likelihood kernel (``bayesmix.bayes.likelihoods.fused``).

Checked three ways: the numba kernel against the Op's numpy ``perform``; the
fused model's log density and gradient against the PyTensor-graph model's
(whose gradient PyTensor derives itself); and a short nutpie run of the fused
model against lme4.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from assertions import assert_within_k_sd

import bayesmix as bmx
from bayesmix.bayes.likelihoods.fused import MixedNormalLoglik
from bayesmix.bayes.model import build_pymc_model
from bayesmix.bayes.priors import StudentT
from bayesmix.errors import SamplingWarning
from bayesmix.spec.design import build_design

REFS = Path(__file__).parent / "refs"


def _random_inputs(rng, n, ones_beta, x_beta, z_columns, n_levels=7):
    p = len(ones_beta) + len(x_beta)
    n_terms, n_z = len(z_columns), sum(k >= 0 for k in z_columns)
    return [
        rng.normal(size=n),  # y
        rng.normal(size=(n, len(x_beta))),  # X
        rng.normal(size=p),  # beta
        np.asarray(rng.normal()),  # offset
        rng.integers(0, n_levels * n_terms, size=(n, n_terms)).astype(np.uint8),  # codes
        rng.normal(size=(n, n_z)),  # Z
        rng.normal(size=n_z),  # zbar
        rng.normal(size=n_levels * n_terms),  # effects
        np.asarray(1.3),  # sigma
    ]


@pytest.mark.parametrize(
    "ones_beta, x_beta, z_columns",
    [
        ((0,), (1, 2), (-1, 0)),  # intercept, two slopes; intercept and slope terms
        ((), (0,), (0, 1, -1)),  # no intercept column; two Z columns and a ones term
    ],
)
@pytest.mark.parametrize("n", [50, 3])  # unrolled loop and remainder; remainder only
def test_numba_kernel_matches_numpy(ones_beta, x_beta, z_columns, n):
    op = MixedNormalLoglik(ones_beta, x_beta, z_columns)
    inputs = _random_inputs(np.random.default_rng(1), n, ones_beta, x_beta, z_columns)
    symbols = [pt.as_tensor_variable(v).type() for v in inputs]
    outputs = op(*symbols)
    python = pytensor.function(symbols, outputs, mode="FAST_COMPILE")(*inputs)
    numba = pytensor.function(symbols, outputs, mode="NUMBA")(*inputs)
    for got, expected in zip(numba, python, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11)
    # and numpy's value is the Gaussian log-likelihood written out
    y, X, beta, offset, codes, Z, zbar, effects, sigma = inputs
    eta = offset + beta[list(ones_beta)].sum() + X @ beta[list(x_beta)]
    for t, k in enumerate(z_columns):
        eta = eta + (1.0 if k < 0 else Z[:, k] - zbar[k]) * effects[codes[:, t]]
    expected = -0.5 * np.sum(((y - eta) / sigma) ** 2) - len(y) * np.log(sigma * np.sqrt(2 * np.pi))
    assert float(python[0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "dataset, formula, centre",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "always"),  # centred Z
        ("sleepstudy", "Reaction ~ 0 + Days + (Days || Subject)", "auto"),
        ("Orthodont", "distance ~ age + Sex + (age | Subject)", "auto"),
        ("Pastes", "strength ~ 1 + (1 | batch/cask)", "auto"),
    ],
)
def test_fused_model_matches_graph_model(dataset, formula, centre):
    """Same log density and gradient at random points, with PyTensor's Python linker."""
    design = build_design(formula, bmx.load_dataset(dataset))
    graph = build_pymc_model(design, centre_random=centre)
    fused = build_pymc_model(design, centre_random=centre, likelihood="fused")
    assert "loglik_y" in {v.name for v in fused.potentials}
    rng = np.random.default_rng(2)
    for _ in range(2):
        point = {
            k: v + 0.5 * rng.standard_normal(np.shape(v)) for k, v in graph.initial_point().items()
        }
        for part in ("compile_logp", "compile_dlogp"):
            expected = getattr(graph, part)(mode="FAST_COMPILE")(point)
            got = getattr(fused, part)(mode="FAST_COMPILE")(point)
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)


def test_likelihood_form_policy():
    from bayesmix.bayes.fit import FUSED_MIN_OBS, likelihood_form

    small = build_design("Reaction ~ Days + (1 | Subject)", bmx.load_dataset("sleepstudy"))
    large = build_design(
        "y ~ 1 + service + (1 | s) + (1 | d)", bmx.load_dataset("InstEval").iloc[:FUSED_MIN_OBS]
    )
    assert likelihood_form(small, "nutpie") == "graph"
    assert likelihood_form(large, "nutpie") == "collapsed"  # Normal fixed-effect priors
    student = {"service[1]": StudentT(3.0, 0.0, 1.0)}
    assert likelihood_form(large, "nutpie", student) == "fused"
    assert likelihood_form(large, "pymc") == "graph"  # PyMC's C backend has no kernel


def test_fused_model_samples_like_lme4(monkeypatch):
    """A short nutpie run of the fused model; result tables and loo work without ``y_obs``.

    A Student-t prior on ``Days`` keeps the fixed effects from being integrated
    out (the collapsed likelihood needs Normal priors), so the fused form is used.
    """
    import bayesmix.bayes.fit as bayes_fit

    monkeypatch.setattr(bayes_fit, "FUSED_MIN_OBS", 0)
    design = build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    priors = {"Days": StudentT(3.0, 0.0, 50.0)}
    assert bayes_fit.likelihood_form(design, "nutpie", priors) == "fused"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = bayes_fit.sample_model(
            design, priors=priors, draws=300, tune=300, chains=2, random_seed=4
        )
    assert "loglik_y" not in fit.idata["posterior"]
    ref = json.loads((REFS / "sleepstudy_slope_corr_reml.json").read_text())
    beta = fit.idata["posterior"]["beta"].values
    assert_within_k_sd(beta[..., 0], ref["fixef"]["(Intercept)"], 2, "Intercept")
    assert_within_k_sd(beta[..., 1], ref["fixef"]["Days"], 2, "Days")
    assert fit.idata["posterior"]["sigma"].values.mean() == pytest.approx(ref["sigma"], rel=0.1)
    loglik = fit.idata["log_likelihood"]["y"].values
    assert loglik.shape[-1] == design.n_obs and np.all(np.isfinite(loglik))
