"""Sampling the posterior: agreement with lme4, parameter recovery, result API.

Runs are short (2 chains x 300-500 draws), so ESS warnings are expected and
filtered explicitly. Both sampled models share one graph structure (one
correlated intercept + slope block) so the numba compilation is reused.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from assertions import assert_within_k_sd

import bayesmix as bmx
from bayesmix.errors import DataWarning, FitError, SamplingWarning
from bayesmix.spec.design import build_design

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from bayesmix.bayes.fit import sample_model  # noqa: E402
from bayesmix.bayes.sampling_checks import check_diagnostics  # noqa: E402

REFS = Path(__file__).parent / "refs"


def assert_interval_covers(draws: np.ndarray, target: float, prob: float, label: str = "") -> None:
    """Assert that the equal-tailed ``prob`` interval of ``draws`` contains ``target``."""
    lower, upper = np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, (1 + prob) / 2])
    assert lower <= target <= upper, f"{label}: {target} outside [{lower:.4g}, {upper:.4g}]"


def _quiet_sample(design, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return sample_model(design, **kwargs)


@pytest.fixture(scope="module")
def sleep_data():
    return bmx.load_dataset("sleepstudy")


@pytest.fixture(scope="module")
def sleep_fit(sleep_data):
    design = build_design("Reaction ~ Days + (Days | Subject)", sleep_data)
    return _quiet_sample(design, draws=300, tune=300, chains=2, random_seed=11)


def _posterior(fit, name):
    return np.asarray(fit.idata["posterior"][name].values)


# --------------------------------------------------------------------------- helpers


def test_assert_helpers_can_fail():
    draws = np.random.default_rng(0).normal(10.0, 1.0, size=2000)
    assert_within_k_sd(draws, 11.0, k=2)
    with pytest.raises(AssertionError, match="SDs from"):
        assert_within_k_sd(draws, 13.0, k=2)
    assert_interval_covers(draws, 9.0, 0.9)
    with pytest.raises(AssertionError, match="outside"):
        assert_interval_covers(draws, 12.5, 0.9)


# ------------------------------------------------------------------------ sleepstudy


def test_sleepstudy_agrees_with_lme4(sleep_fit):
    ref = json.loads((REFS / "sleepstudy_slope_corr_reml.json").read_text())
    beta = _posterior(sleep_fit, "beta")
    assert_within_k_sd(beta[..., 0], ref["fixef"]["(Intercept)"], 2, "Intercept")
    assert_within_k_sd(beta[..., 1], ref["fixef"]["Days"], 2, "Days")
    sigma = _posterior(sleep_fit, "sigma").mean()
    assert sigma == pytest.approx(ref["sigma"], rel=0.10)
    cor = _posterior(sleep_fit, "cor_Subject")[..., 1, 0]
    assert np.all((cor > -1) & (cor < 1))
    assert cor.std() > 0.05  # a real posterior, not stuck at a boundary
    diag = sleep_fit.diagnostics()
    assert diag["divergences"] == 0
    assert diag["max_r_hat"] < 1.05


def test_result_tables(sleep_fit):
    fe = sleep_fit.fixef(ci_prob=0.9)
    assert list(fe.index) == ["Intercept", "Days"]
    assert list(fe.columns) == ["mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]
    assert fe.attrs == {"ci_prob": 0.9, "ci_kind": "equal-tailed"}
    assert np.all(fe["lower"] < fe["mean"]) and np.all(fe["mean"] < fe["upper"])

    re = sleep_fit.ranef()
    assert list(re) == ["Subject"]
    assert re["Subject"].shape == (36, 4)
    assert re["Subject"].index.names == ["level", "term"]
    # group effects are centred on zero across subjects
    assert abs(re["Subject"].xs("Intercept", level="term")["mean"].mean()) < 10

    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["grp", "var1", "var2", "mean", "sd", "lower", "upper"]
    assert vc["grp"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert vc["var1"].tolist()[:3] == ["Intercept", "Days", "Intercept"]
    assert vc["var2"].tolist()[2] == "Days"

    text = str(sleep_fit.summary(ci_prob=0.9))
    assert "90% equal-tailed interval" in text
    assert "Reaction ~ Days + (Days | Subject)" in text and "Residual" in text
    assert "<table" in sleep_fit._repr_html_()


def test_predictions_fitted_residuals(sleep_fit, sleep_data):
    fitted = sleep_fit.fitted()
    assert fitted.shape == (180,)
    res = sleep_fit.residuals()
    np.testing.assert_allclose(res, sleep_data["Reaction"].to_numpy() - fitted)
    assert np.std(sleep_fit.residuals("pearson")) == pytest.approx(1.0, abs=0.3)

    pred = sleep_fit.predict()
    np.testing.assert_allclose(pred["mean"].to_numpy(), fitted)
    ppc = sleep_fit.predict(kind="posterior_predictive", random_seed=1)
    assert np.all(ppc["sd"] > pred["sd"])

    new = sleep_data.iloc[[0, 1, 2]].copy()
    new["Subject"] = ["new", "new", sleep_data["Subject"].iloc[0]]
    with pytest.warns(DataWarning, match="New levels of Subject"):
        out = sleep_fit.predict(new, random_seed=1)
    assert out.shape == (3, 4)
    assert out["sd"].iloc[0] > 2 * out["sd"].iloc[2]  # unseen subject: population spread
    population = sleep_fit.predict(new, include_random=False)
    draws = sleep_fit.predict(new, include_random=False, draws=True)
    assert draws.shape == (600, 3)
    np.testing.assert_allclose(population["mean"], draws.mean(axis=0))


def test_loo_and_diagnostic_warning(sleep_fit):
    assert "log_likelihood" in sleep_fit.idata.children
    assert "observed_data" in sleep_fit.idata.children
    loo = sleep_fit.loo()
    assert np.isfinite(loo.elpd) and loo.elpd < 0
    with pytest.warns(SamplingWarning, match="bulk ESS < 1e\\+09 for Intercept"):
        check_diagnostics(sleep_fit, ess_min=1e9)


def test_sampler_choices(sleep_fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "numpyro", None)  # as if it were not installed
    with pytest.raises(FitError, match="pip install jax numpyro"):
        sample_model(sleep_fit.design, sampler="numpyro")
    with pytest.raises(ValueError, match="Unknown sampler"):
        sample_model(sleep_fit.design, sampler="stan")


# -------------------------------------------------------------------------- recovery


def test_parameter_recovery_correlated_effects():
    rng = np.random.default_rng(2024)
    n_groups, per_group = 40, 10
    sds, corr, sigma, beta = np.array([1.0, 0.5]), -0.6, 0.5, np.array([2.0, -1.0])
    cov = np.diag(sds) @ np.array([[1.0, corr], [corr, 1.0]]) @ np.diag(sds)
    effects = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    y = beta[0] + effects[g, 0] + (beta[1] + effects[g, 1]) * x + rng.normal(0, sigma, g.size)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    design = build_design("y ~ x + (x | g)", data)
    fit = _quiet_sample(design, draws=500, tune=500, chains=2, random_seed=3)

    post = fit.idata["posterior"]
    assert fit.diagnostics()["divergences"] == 0
    assert_interval_covers(post["beta"].values[..., 0], beta[0], 0.9, "Intercept")
    assert_interval_covers(post["beta"].values[..., 1], beta[1], 0.9, "x")
    assert_interval_covers(post["sd_g"].values[..., 0], sds[0], 0.9, "sd(Intercept)")
    assert_interval_covers(post["sd_g"].values[..., 1], sds[1], 0.9, "sd(x)")
    assert_interval_covers(post["cor_g"].values[..., 1, 0], corr, 0.9, "cor")
    assert_interval_covers(post["sigma"].values, sigma, 0.9, "sigma")


def test_compiled_model_reused_with_new_priors(sleep_fit):
    """The in-process cache swaps data and prior values into the compiled model."""
    from bayesmix.bayes.compile.nutpie import _COMPILED
    from bayesmix.bayes.priors import Normal

    n_cached = len(_COMPILED)
    fit = _quiet_sample(
        sleep_fit.design,
        priors={"Intercept": Normal(100.0, 1.0)},
        draws=100,
        tune=200,
        chains=1,
        random_seed=5,
    )
    assert len(_COMPILED) == n_cached  # reused, not recompiled
    assert fit.timing["compile_s"] < 5
    # the strong prior moves the centred intercept (mean response at mean Days) to ~100;
    # the model may integrate beta out (the collapsed form), so read it off beta
    beta = fit.idata["posterior"]["beta"].values.reshape(-1, 2)
    intercept_c = beta[:, 0] + sleep_fit.design.X[:, 1].mean() * beta[:, 1]
    assert abs(intercept_c.mean() - 100) < 5


def test_numpyro_sampler_agrees_with_lme4():
    pytest.importorskip("numpyro")
    ref_path = Path(__file__).parent / "refs" / "sleepstudy_slope_corr_reml.json"
    ref = json.loads(ref_path.read_text())
    design = build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short run: ESS below 400 is expected
        fit = sample_model(design, sampler="numpyro", draws=300, tune=300, chains=2, random_seed=5)
    fixef = fit.fixef()
    for name, r_name in (("Intercept", "(Intercept)"), ("Days", "Days")):
        assert abs(fixef.loc[name, "mean"] - ref["fixef"][r_name]) < 2 * fixef.loc[name, "sd"]
    assert fit.diagnostics()["divergences"] == 0


def test_cfunc_route_adds_deterministics_after_sampling(sleep_fit):
    """nutpie's compiled route stores only free variables; beta, SDs, correlations and
    group effects are filled in afterwards and must match the Python route's."""
    fit = _quiet_sample(
        sleep_fit.design, draws=300, tune=300, chains=2, random_seed=11, compile="cfunc"
    )
    post = fit.idata["posterior"]
    for name in ("beta", "sd_Subject", "cor_Subject", "r_Subject"):
        assert name in post
    cor = np.asarray(post["cor_Subject"].values)
    np.testing.assert_allclose(cor[..., 0, 0], 1.0)
    assert np.all(np.abs(cor[..., 0, 1]) < 1)
    # the random effects are the non-centred z scaled by the block's Cholesky factor
    sd = np.asarray(post["sd_Subject"].values)
    z = np.stack([np.asarray(post[f"z{j}_Subject"].values) for j in (0, 1)], axis=-1)
    r = np.asarray(post["r_Subject"].values)
    rho = cor[..., 1, 0]
    expected_intercept = z[..., 0] * sd[..., None, 0]
    expected_slope = sd[..., None, 1] * (
        rho[..., None] * z[..., 0] + np.sqrt(1 - rho[..., None] ** 2) * z[..., 1]
    )
    np.testing.assert_allclose(r[..., 0], expected_intercept, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(r[..., 1], expected_slope, rtol=1e-8, atol=1e-10)
    assert abs(fit.fixef().loc["Days", "mean"] - sleep_fit.fixef().loc["Days", "mean"]) < 1.0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"draws": -1}, "draws must be an integer >= 1"),
        ({"chains": 0}, "chains must be an integer >= 1"),
        ({"tune": 2.5}, "tune must be an integer >= 0"),
        ({"target_accept": 1.5}, "target_accept must lie strictly between 0 and 1"),
    ],
)
def test_bad_sampling_options_are_explained(sleep_fit, options, message):
    with pytest.raises(ValueError, match=message):
        sample_model(sleep_fit.design, **options)


@pytest.mark.parametrize(
    "dataset, formula",
    [
        ("Orthodont", "distance ~ age + Sex + (age | Subject)"),  # centred block: shift matrices
        ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),  # diagonal block
    ],
)
def test_vectorised_deterministics_match_draw_by_draw(dataset, formula, monkeypatch):
    """The batched evaluation of beta, sd_*, cor_* and r_* equals PyMC's per-draw one."""
    import arviz as az
    import pymc as pm

    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.run import _add_deterministics

    model = build_pymc_model(build_design(formula, bmx.load_dataset(dataset)))
    shapes = model.eval_rv_shapes()
    rng = np.random.default_rng(0)
    draws = {}
    for rv in model.free_RVs:  # 2 chains x 3 draws; positive where the RV is log-transformed
        value = rng.standard_normal((2, 3, *shapes[rv.name]))
        draws[rv.name] = np.exp(value) if model.rvs_to_transforms.get(rv) else value
    fake = az.from_dict(
        {"posterior": draws},
        dims={name: list(model.named_vars_to_dims.get(name, ())) for name in draws},
        coords={k: list(v) for k, v in model.coords.items()},
    )
    per_draw_fn = pm.compute_deterministics
    with monkeypatch.context() as patch:  # the batched path must not fall back
        patch.setattr(pm, "compute_deterministics", None)
        batched = _add_deterministics(fake.copy(), model)["posterior"]
    per_draw = per_draw_fn(fake["posterior"].to_dataset(), model=model, progressbar=False)
    names = [v.name for v in model.deterministics]
    assert {"beta", "r_Subject"} <= set(names)
    for name in names:
        np.testing.assert_allclose(
            batched[name].values, per_draw[name].values, rtol=1e-12, atol=1e-12, err_msg=name
        )
        assert batched[name].dims == per_draw[name].dims, name


def test_default_target_accept_depends_on_model_size(sleep_fit):
    """0.95 for small models (few groups: hard geometry, cheap steps), 0.8 for large."""
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.sampler_defaults import default_target_accept

    assert sleep_fit.timing["target_accept"] == 0.95  # 4 + 36 + 1 + 2 + 1 parameters
    rng = np.random.default_rng(1)
    big = pd.DataFrame(
        {"g": np.repeat([f"g{i}" for i in range(600)], 2), "x": rng.normal(size=1200)}
    )
    big["y"] = rng.normal(size=1200)
    model = build_pymc_model(build_design("y ~ x + (x | g)", big))  # 1,200 group effects
    assert default_target_accept(model) == 0.8


def test_divergence_warning_suggests_a_higher_target_accept(sleep_fit, monkeypatch):
    diag = dict(sleep_fit.diagnostics(), divergences=3)
    monkeypatch.setattr(type(sleep_fit), "diagnostics", lambda self: diag)
    with pytest.warns(SamplingWarning, match="3 divergent transitions .* above 0.95, e.g. to 0.99"):
        check_diagnostics(sleep_fit)
