"""The collapsed likelihood (``bayesmix.bayes.likelihoods.collapsed``) and its draws.

Checked against closed forms: the potential equals the dense Gaussian marginal
``log N(r | W m0, sigma^2 I + W V0 W')`` computed with scipy; its gradient
(written in closed form in ``collapsed_kernels``) matches central finite
differences; the numba kernels match their numpy ``perform``; the draws of the
collapsed coefficients have the conditional mean and variance of the dense
formula. A short nutpie run of a fully collapsed model matches lme4.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytensor
import pytest
import scipy.stats as st
import xarray as xr
from assertions import assert_within_k_sd

import bayesmix as bmx
from bayesmix.bayes.likelihoods.collapsed import centred_levels, collapse_plan, collapsed_columns
from bayesmix.bayes.likelihoods.collapsed_draws import add_collapsed_draws
from bayesmix.bayes.model import block_infos, build_pymc_model, centring_offsets
from bayesmix.bayes.priors import StudentT, resolve_priors
from bayesmix.errors import SamplingWarning
from bayesmix.spec.design import build_design

REFS = Path(__file__).parent / "refs"

CASES = {
    # a dense block, a diagonal block and a sampled block (partly centred)
    "insteval": (
        "InstEval",
        "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)",
        600,
    ),
    # only the fixed effects collapse; the sampled block is correlated and centred
    "sleepstudy_corr": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    # everything collapses (a dense || block): no sampled effects at all
    "orthodont_diag": ("Orthodont", "distance ~ age + Sex + (age || Subject)", None),
}


def _design(case):
    dataset, formula, rows = CASES[case]
    data = bmx.load_dataset(dataset)
    return build_design(formula, data if rows is None else data.iloc[:rows])


def _point_functions(model, mode):
    """The potential, the model's log density and its gradient, the model's values."""
    potential = next(v for v in model.potentials if v.name == "loglik_y")
    loglik = model.replace_rvs_by_values([potential])[0]
    kwargs = dict(inputs=model.value_vars, on_unused_input="ignore", mode=mode)
    value = model.compile_fn(loglik, **kwargs)
    logp = model.compile_fn(model.logp(), **kwargs)
    grad = model.compile_fn(pytensor.grad(model.logp(), model.value_vars), **kwargs)
    values = model.compile_fn(model.unobserved_value_vars, **kwargs)
    return value, logp, grad, values


def _random_point(model, seed=3):
    rng = np.random.default_rng(seed)
    start = model.initial_point()
    return {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in start.items()}


def _dense_marginal(design, priors, values):
    """log N(r | W m0, sigma^2 I + W V0 W') with scipy, from the model's values."""
    plan = collapse_plan(design, priors)
    columns = collapsed_columns(design, plan, centring_offsets(design))
    infos = block_infos(design)
    r = np.asarray(design.y, dtype=float).copy()
    for i in plan.sampled(design):
        block, effects = design.blocks[i], values[infos[i].r_name]
        r -= np.einsum("nk,nk->n", block.Z, effects[block.codes])
    fixed = [priors[name] for name in design.fixed_terms]
    v0 = [p.sigma**2 for p in fixed]
    for i, k in columns.terms:
        v0 += [values[infos[i].sd_name][k] ** 2] * len(design.blocks[i].levels)
    if plan.diagonal is not None:
        v0 += [values[infos[plan.diagonal].sd_name][0] ** 2] * columns.n_f
    m0 = np.zeros(columns.n_t)
    m0[: len(fixed)] = [p.mu for p in fixed]
    W = columns.W.toarray()
    cov = values["sigma"] ** 2 * np.eye(design.n_obs) + (W * np.array(v0)) @ W.T
    return st.multivariate_normal(W @ m0, cov).logpdf(r)


@pytest.mark.parametrize("case", list(CASES))
def test_potential_is_the_dense_gaussian_marginal(case):
    design = _design(case)
    priors = resolve_priors(design)
    model = build_pymc_model(design, priors, likelihood="collapsed")
    point = _random_point(model)
    value, logp, grad, values = _point_functions(model, "FAST_COMPILE")
    named = dict(zip([v.name for v in model.unobserved_value_vars], values(point), strict=True))
    assert value(point) == pytest.approx(_dense_marginal(design, priors, named), abs=1e-7)
    # numba kernels against numpy perform, value and gradient
    value_nb, logp_nb, grad_nb, _ = _point_functions(model, "NUMBA")
    assert value_nb(point) == pytest.approx(value(point), abs=1e-9)
    assert logp_nb(point) == pytest.approx(logp(point), abs=1e-9)
    for got, want in zip(grad_nb(point), grad(point), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", ["insteval", "sleepstudy_corr"])
def test_gradient_matches_finite_differences(case):
    model = build_pymc_model(_design(case), likelihood="collapsed")
    point = _random_point(model)
    _, value, grad, _ = _point_functions(model, "FAST_COMPILE")
    analytic = grad(point)
    eps = 1e-6
    for var, g in zip(model.value_vars, analytic, strict=True):
        flat = np.asarray(point[var.name], dtype=float).ravel()
        for j in range(min(flat.size, 3)):
            up, down = flat.copy(), flat.copy()
            up[j] += eps
            down[j] -= eps
            shape = np.shape(point[var.name])
            f_up = value({**point, var.name: up.reshape(shape)})
            f_down = value({**point, var.name: down.reshape(shape)})
            numeric = (f_up - f_down) / (2 * eps)
            assert np.ravel(g)[j] == pytest.approx(numeric, rel=1e-5, abs=1e-4), var.name


def test_collapsed_draws_have_the_conditional_mean_and_variance():
    """Many draws at one fixed parameter value: mean and variance of N(A^-1 h, A^-1)."""
    design = _design("insteval")
    priors = resolve_priors(design)
    plan = collapse_plan(design, priors)
    infos = block_infos(design)
    model = build_pymc_model(design, priors, likelihood="collapsed")
    *_, values = _point_functions(model, "FAST_COMPILE")
    named = dict(
        zip(
            [v.name for v in model.unobserved_value_vars], values(_random_point(model)), strict=True
        )
    )
    n_draw = 4000
    post = {}
    for name in ["sigma", *[infos[i].sd_name for i in range(len(infos))]]:
        value = np.asarray(named[name])
        dims = ("chain", "draw", *[f"{name}_dim{d}" for d in range(value.ndim)])
        post[name] = xr.DataArray(np.broadcast_to(value, (1, n_draw, *value.shape)), dims=dims)
    for i in plan.sampled(design):
        info = infos[i]
        r = np.broadcast_to(named[info.r_name], (1, n_draw, *named[info.r_name].shape))
        post[info.r_name] = xr.DataArray(r, dims=("chain", "draw", info.level_dim, info.term_dim))
    idata = xr.DataTree.from_dict({"posterior": xr.Dataset(post)})
    add_collapsed_draws(idata, design, priors, plan, seed=5)
    # the dense conditional posterior of gamma
    columns = collapsed_columns(design, plan, centring_offsets(design))
    sampled = plan.sampled(design)[0]
    block = design.blocks[sampled]
    r = design.y - named[infos[sampled].r_name][block.codes, 0]
    W = columns.W.toarray()
    fixed = [priors[name] for name in design.fixed_terms]
    v0 = np.array(
        [p.sigma**2 for p in fixed]
        + [named[infos[plan.dense[0]].sd_name][0] ** 2] * (columns.p_c - len(fixed))
        + [named[infos[plan.diagonal].sd_name][0] ** 2] * columns.n_f
    )
    m0 = np.zeros(columns.n_t)
    m0[: len(fixed)] = [p.mu for p in fixed]
    s2 = named["sigma"] ** 2
    A = np.diag(1 / v0) + W.T @ W / s2
    cov = np.linalg.inv(A)
    mean = cov @ (m0 / v0 + W.T @ r / s2)
    got = idata["posterior"]
    beta_c = got["beta"].values[0].copy()
    beta_c[:, 0] += beta_c[:, 1:] @ centring_offsets(design)[1:]  # back to centred columns
    gamma = np.concatenate(
        [
            beta_c,
            got[infos[plan.dense[0]].r_name].values[0, :, :, 0],
            got[infos[plan.diagonal].r_name].values[0, :, :, 0],
        ],
        axis=1,
    )
    se = np.sqrt(np.diag(cov) / n_draw)
    assert np.max(np.abs(gamma.mean(axis=0) - mean) / se) < 5.0
    np.testing.assert_allclose(gamma.var(axis=0, ddof=1), np.diag(cov), rtol=0.12)


def test_plan_and_form_policy():
    from bayesmix.bayes.fit import likelihood_form

    insteval = _design("insteval")
    plan = collapse_plan(insteval, resolve_priors(insteval))
    names = [insteval.blocks[i].grouping for i in plan.dense]
    assert names == ["dept:service"]  # small: collapsed densely
    # of s and d, the block with the most observations per level goes diagonal
    counts = {b.grouping: insteval.n_obs / len(b.levels) for b in insteval.blocks}
    assert insteval.blocks[plan.diagonal].grouping == max(["s", "d"], key=counts.get)
    # a non-Normal prior on a fixed effect: nothing can be integrated out exactly
    other = dict(resolve_priors(insteval))
    other["service[1]"] = StudentT(3.0, 0.0, 1.0)
    assert collapse_plan(insteval, other) is None
    full = build_design(
        "y ~ 1 + service + (1 | s) + (1 | d)", bmx.load_dataset("InstEval").iloc[:20_000]
    )
    assert likelihood_form(full, "nutpie") == "collapsed"
    fixed_t = {"service[1]": StudentT(3.0, 0.0, 1.0)}
    assert likelihood_form(full, "nutpie", fixed_t) == "fused"
    assert likelihood_form(full, "pymc") == "graph"


def test_centred_levels_follow_the_data_strength():
    """Simulated: levels with many observations are sampled centred, sparse ones not."""
    rng = np.random.default_rng(0)
    sizes = np.r_[np.full(30, 2), np.full(30, 60)]
    g = np.repeat(np.arange(60), sizes)
    y = rng.normal(0, 1.0, 60)[g] + rng.normal(0, 2.0, g.size)  # tau^2 n / sigma^2: 0.5 vs 15
    import pandas as pd

    design = build_design("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g.astype(str)}))
    block = design.blocks[0]
    centred = centred_levels(block, design.y)
    n_per_level = np.bincount(block.codes)
    assert centred[n_per_level == 60].all() and not centred[n_per_level == 2].any()


def test_collapsed_model_samples_like_lme4(monkeypatch):
    """All effects collapsed (NUTS samples the SDs and sigma only): lme4's REML fit."""
    import bayesmix.bayes.fit as bayes_fit

    monkeypatch.setattr(bayes_fit, "FUSED_MIN_OBS", 0)
    design = build_design("Reaction ~ Days + (Days || Subject)", bmx.load_dataset("sleepstudy"))
    assert bayes_fit.likelihood_form(design, "nutpie") == "collapsed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = bayes_fit.sample_model(design, draws=300, tune=300, chains=2, random_seed=4)
    ref = json.loads((REFS / "sleepstudy_slope_uncorr_reml.json").read_text())
    post = fit.idata["posterior"]
    assert set(post["r_Subject"].dims) >= {"Subject", "Subject_term"}
    beta = post["beta"].values
    assert_within_k_sd(beta[..., 0], ref["fixef"]["(Intercept)"], 2, "Intercept")
    assert_within_k_sd(beta[..., 1], ref["fixef"]["Days"], 2, "Days")
    assert post["sigma"].values.mean() == pytest.approx(ref["sigma"], rel=0.1)
    ranef = fit.ranef()["Subject"]
    assert np.all(np.isfinite(ranef["mean"].to_numpy()))
    loglik = fit.idata["log_likelihood"]["y"].values
    assert loglik.shape[-1] == design.n_obs and np.all(np.isfinite(loglik))
    assert fit.diagnostics()["divergences"] == 0


def test_partly_centred_prior_is_normal_with_the_block_sd():
    """Standard-normal ``z0`` plus the ``centred_<tag>`` potential = Normal(0, sd) there."""
    dataset, formula, _ = CASES["insteval"]
    design = build_design(formula, bmx.load_dataset(dataset))  # all rows: s is sampled
    model = build_pymc_model(design, likelihood="collapsed")
    sampled = {v.name for v in model.free_RVs}
    tag = next(t for t in ("s", "d") if f"z0_{t}" in sampled)
    block = next(b for b in design.blocks if b.grouping == tag)
    centred = centred_levels(block, design.y)
    assert 0 < centred.sum() < centred.size
    z_rv = next(v for v in model.free_RVs if v.name == f"z0_{tag}")
    potential = next(v for v in model.potentials if v.name == f"centred_{tag}")
    prior = model.replace_rvs_by_values([potential + model.logp(vars=[z_rv], sum=True)])[0]
    fn = model.compile_fn(prior, inputs=model.value_vars, on_unused_input="ignore")
    point = _random_point(model)
    z = point[f"z0_{tag}"]
    sd = float(np.exp(np.ravel(point[f"sd_{tag}_log__"])[0]))
    want = st.norm(0, sd).logpdf(z[centred]).sum() + st.norm(0, 1).logpdf(z[~centred]).sum()
    assert fn(point) == pytest.approx(want, abs=1e-8)
