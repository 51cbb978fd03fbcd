"""Bayesian nonlinear mixed models: Theoph against nlme, predictions, priors.

Sampling runs are short (2 chains x 300 + 300), so ESS warnings are expected
and filtered explicitly. Every sampled model shares one graph (Theoph, SSfol,
pdDiag(lKa + lCl)), so it is compiled once per process.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from assertions import assert_within_k_sd
from scipy import stats

import bayesmix as bmx
from bayesmix.bayes.priors import LKJ, HalfNormal, HalfStudentT, Normal
from bayesmix.errors import DataWarning, PriorError, SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from bayesmix.nonlinear.bayes_model import (  # noqa: E402
    build_nonlinear_pymc_model,
    default_priors,
    resolve_priors,
)
from bayesmix.nonlinear.bayes_results import NLBayesResult  # noqa: E402
from bayesmix.nonlinear.ml_fit import initial_beta  # noqa: E402

REFS = Path(__file__).parent / "refs"
SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
DIAG2 = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}


def assert_coverage(y: np.ndarray, table: pd.DataFrame, low: float, high: float) -> float:
    """Assert that the share of ``y`` inside ``[lower, upper]`` lies in ``[low, high]``."""
    inside = (np.asarray(y) >= table["lower"].to_numpy()) & (
        np.asarray(y) <= table["upper"].to_numpy()
    )
    share = float(inside.mean())
    assert low <= share <= high, f"coverage {share:.3f} outside [{low}, {high}]"
    return share


def _quiet_sample(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return model.sample(**kwargs)


@pytest.fixture(scope="module")
def ref():
    return json.loads((REFS / "theoph_nlme_diag2_ml.json").read_text())


@pytest.fixture(scope="module")
def model(theoph):
    return bmx.nlmm(SSFOL, theoph, params=DIAG2, cov={"Subject": "diagonal"})


@pytest.fixture(scope="module")
def fit(model):
    return _quiet_sample(model, draws=300, tune=300, chains=2, random_seed=11)


def test_assert_helpers_can_fail():
    draws = np.random.default_rng(0).normal(0.0, 1.0, 2000)
    assert_within_k_sd(draws, 1.0)
    with pytest.raises(AssertionError, match="SDs"):
        assert_within_k_sd(draws, 5.0)
    table = pd.DataFrame({"lower": [0.0, 0.0, 0.0, 0.0], "upper": [1.0, 1.0, 1.0, 1.0]})
    assert assert_coverage([0.5, 0.5, 0.5, 2.0], table, 0.7, 0.8) == 0.75
    with pytest.raises(AssertionError, match="coverage"):
        assert_coverage([2.0, 2.0, 0.5, 0.5], table, 0.7, 0.8)


# ------------------------------------------------------------------ priors


def test_default_priors_centred_on_start(model):
    priors = model.default_priors()
    assert list(priors) == ["lKe", "lKa", "lCl", "sd(lKa|Subject)", "sd(lCl|Subject)", "sigma"]
    start = initial_beta(model.design, None)  # SSfol's pooled least-squares values
    for j, name in enumerate(("lKe", "lKa", "lCl")):
        assert priors[name].mu == pytest.approx(start[j])
        assert priors[name].sigma == pytest.approx(2.5 * max(abs(start[j]), 1.0))
    assert priors["sd(lKa|Subject)"] == HalfStudentT(3.0, max(abs(start[1]), 1.0))
    assert priors["sigma"].sigma == pytest.approx(np.std(model.design.y))
    assert "Normal(mu=-2.524" in str(priors)
    # a user start moves the centres
    moved = model.update(start={"lKe": -2.5, "lKa": 0.5, "lCl": -3.0}).default_priors()
    assert moved["lCl"] == Normal(-3.0, 7.5)


def test_default_priors_covariates_and_correlation(theoph):
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    priors = bmx.nlmm(SSFOL, theoph, params=params).default_priors()
    assert priors["cor(Subject)"] == LKJ(2.0)
    assert priors["lCl:Wt"].mu == 0.0
    scale = 2.5 * abs(priors["lCl:Intercept"].mu) / np.std(theoph["Wt"])
    assert priors["lCl:Wt"].sigma == pytest.approx(scale)


def test_prior_errors(model, theoph):
    with pytest.raises(PriorError, match=r"'sd\(lka\|Subject\)'.*Valid keys: lKe, lKa, lCl"):
        model.sample(priors={"sd(lka|Subject)": HalfNormal(1.0)})
    with pytest.raises(PriorError, match=r"did you mean .*'lKa'"):
        resolve_priors(model.design, {"lKA": Normal(0.0, 1.0)})
    with pytest.raises(PriorError, match="must be one of HalfNormal"):
        resolve_priors(model.design, {"sigma": Normal(0.0, 1.0)})
    with pytest.raises(PriorError, match="must be one of LKJ"):
        bmx.nlmm(SSFOL, theoph, params=DIAG2).sample(priors={"cor(Subject)": Normal()})
    # no self-start and no start: the fixed-effect priors must be given
    expr = bmx.nlmm(
        "conc ~ Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time))"
        " / (exp(lKa) - exp(lKe))",
        theoph,
        params=DIAG2,
    )
    with pytest.raises(PriorError, match="pass start= to nlmm"):
        expr.default_priors()
    given = {"lKe": Normal(-2.5, 1.0), "lKa": Normal(0.5, 1.0), "lCl": Normal(-3.0, 1.0)}
    priors = default_priors(expr.design, overrides=given)
    assert priors["sd(lCl|Subject)"] == HalfStudentT(3.0, 3.0)


def test_pymc_graph_matches_numpy_likelihood(theoph):
    """Log-likelihood of the PyMC graph equals numpy's at a random point (centred Wt)."""
    params = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}
    design = bmx.nlmm(SSFOL, theoph, params=params).design
    pm_model = build_nonlinear_pymc_model(design, resolve_priors(design))
    free = {"beta_c", "z0_Subject", "z1_Subject", "sd_Subject", "corr_Subject_raw", "sigma"}
    assert {v.name for v in pm_model.free_RVs} == free
    outputs = pm_model.replace_rvs_by_values(
        [
            pm_model.logp(vars=pm_model.observed_RVs),
            pm_model["beta"],
            pm_model["r_Subject"],
            pm_model["sigma"],
        ]
    )
    function = pm_model.compile_fn(outputs, mode="FAST_COMPILE")
    rng = np.random.default_rng(1)
    point = {
        k: v + rng.normal(0.0, 0.2, np.shape(v))
        for k, v in pm_model.initial_point(random_seed=1).items()
    }
    point["beta_c"][3] = 0.01  # a non-zero Wt slope exercises the centring
    loglik, beta, r, sigma = function(point)
    assert beta[3] == pytest.approx(0.01)
    mu = design.mean(np, design.phi(beta, [r]))
    assert loglik == pytest.approx(stats.norm.logpdf(design.y, mu, sigma).sum(), rel=1e-9)


# ---------------------------------------------------------------- sampling


def test_theoph_agrees_with_nlme(fit, ref):
    assert isinstance(fit, NLBayesResult)
    post = fit.idata["posterior"]
    for j, name in enumerate(("lKe", "lKa", "lCl")):
        assert_within_k_sd(post["beta"].values[..., j], ref["fixef"][name], 2.0, name)
    vc = fit.varcorr(ci_prob=0.95)
    sds = ref["varcorr"]["groups"]["Subject"]["sd"]
    for row, target in ((0, sds["lKa"]), (1, sds["lCl"]), (2, ref["sigma"])):
        assert vc.loc[row, "lower"] <= target <= vc.loc[row, "upper"]
    assert vc.loc[2, "mean"] == pytest.approx(ref["sigma"], abs=0.08)
    diag = fit.diagnostics()
    assert diag["divergences"] == 0
    assert diag["max_r_hat"] < 1.1


def test_result_tables(fit):
    fe = fit.fixef()
    assert list(fe.index) == ["lKe", "lKa", "lCl"]
    assert list(fe.columns) == ["mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]
    re = fit.ranef()["Subject"]
    assert re.index.names == ["level", "term"] and len(re) == 24
    vc = fit.varcorr()
    assert vc["grp"].tolist() == ["Subject", "Subject", "Residual"]
    assert vc["var1"].tolist()[:2] == ["lKa", "lCl"]
    coef = fit.coef()["Subject"]
    assert coef.index.names == ["level", "coefficient"] and len(coef) == 36
    level = str(fit.nonlinear_design.blocks[0].levels[0])
    expected = fe.loc["lKa", "mean"] + re.loc[(level, "lKa"), "mean"]
    assert coef.loc[(level, "lKa"), "mean"] == pytest.approx(expected)
    assert coef.loc[(level, "lKe"), "sd"] == pytest.approx(fe.loc["lKe", "sd"])
    phi = fit.phi()
    assert phi.loc[(0, "lKa"), "mean"] == pytest.approx(coef.loc[("1", "lKa"), "mean"])
    text = str(fit.summary())
    assert "Bayesian nonlinear mixed model" in text and "lKa ~ 1 + (1 | Subject)" in text
    assert "<table" in fit._repr_html_()
    assert "NLBayesResult" in repr(fit)


def test_posterior_predictive_coverage(fit, model):
    table = fit.predict(kind="posterior_predictive", ci_prob=0.9, random_seed=1)
    assert_coverage(model.design.y, table, 0.8, 0.98)
    mean = fit.predict()
    assert np.allclose(mean["mean"], fit.fitted(), atol=1e-8)
    assert np.abs(fit.residuals()).mean() < 0.8


def test_predictions_on_new_grid(fit, theoph):
    grid = np.linspace(0.0, 24.0, 13)
    dose = float(theoph.loc[theoph["Subject"].astype(str) == "1", "Dose"].iloc[0])
    new = pd.DataFrame(
        {"Time": np.tile(grid, 2), "Dose": dose, "Subject": ["1"] * 13 + ["99"] * 13}
    )
    with pytest.warns(DataWarning, match="New levels of Subject"):
        individual = fit.predict(new, random_seed=3)
    seen, unseen = individual.iloc[:13], individual.iloc[13:]
    assert (individual["lower"] <= individual["mean"]).all()
    assert (individual["mean"] <= individual["upper"]).all()
    assert seen["mean"].iloc[0] == 0.0  # SSfol starts at zero
    assert seen["mean"].idxmax() < 5  # absorption peak in the first hours
    # a new subject is uncertain about its own parameters: wider bands
    assert (unseen["sd"].iloc[1:].to_numpy() > seen["sd"].iloc[1:].to_numpy()).all()
    population = fit.predict(new, include_random=False)
    assert np.allclose(population["mean"].iloc[:13], population["mean"].iloc[13:])
    # subject 1's curve passes near its data (fitted rows, same draws)
    rows = theoph[theoph["Subject"].astype(str) == "1"]
    at_data = fit.predict(rows)
    assert np.abs(at_data["mean"] - rows["conc"]).mean() < 1.0
    draws = fit.predict(new.iloc[:13], kind="posterior_predictive", draws=True, random_seed=1)
    assert draws.shape == (600, 13)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_loo(fit, model):
    loo = fit.loo()
    assert np.isfinite(loo.elpd)
    assert np.asarray(loo.pareto_k).size == model.design.n_obs


def test_prior_override_reuses_compiled_model(model, fit):
    from bayesmix.bayes.compile.nutpie import _COMPILED

    n_cached = len(_COMPILED)
    tight = _quiet_sample(
        model,
        priors={"lKe": Normal(-2.3, 0.005)},
        draws=150,
        tune=200,
        chains=1,
        random_seed=5,
    )
    assert len(_COMPILED) == n_cached  # prior values are data: no recompilation
    assert tight.timing["compile_s"] < 5
    assert tight.fixef().loc["lKe", "mean"] == pytest.approx(-2.3, abs=0.02)
    assert tight.priors["lKe"] == Normal(-2.3, 0.005)


def test_numpyro_sampler(model, ref):
    pytest.importorskip("numpyro")
    result = _quiet_sample(model, sampler="numpyro", draws=200, tune=300, chains=2, random_seed=2)
    assert result.sampler == "numpyro"
    post = result.idata["posterior"]
    for j, name in enumerate(("lKe", "lKa", "lCl")):
        assert_within_k_sd(post["beta"].values[..., j], ref["fixef"][name], 2.5, name)
