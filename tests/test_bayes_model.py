"""Priors and PyMC model structure (no sampling)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytensor.tensor as pt
import pytest

import bayesmix as bmx
from bayesmix.bayes.priors import (
    LKJ,
    HalfNormal,
    HalfStudentT,
    Normal,
    StudentT,
    default_priors,
    prior_params,
    resolve_priors,
)
from bayesmix.errors import PriorError
from bayesmix.spec.design import build_design

pm = pytest.importorskip("pymc")

from bayesmix.bayes.model import block_centring, build_pymc_model  # noqa: E402


@pytest.fixture(scope="module")
def sleep_design():
    return build_design("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy"))


def _logp_and_grad(model):
    """Model log density and gradient at the initial point (fast python compile)."""
    point = model.initial_point()
    logp = model.compile_logp(mode="FAST_COMPILE")(point)
    grad = model.compile_dlogp(mode="FAST_COMPILE")(point)
    return float(logp), np.asarray(grad)


# ----------------------------------------------------------------------------- priors


def test_default_prior_keys(sleep_design):
    priors = default_priors(sleep_design)
    assert list(priors) == [
        "Intercept",
        "Days",
        "sd(Intercept|Subject)",
        "sd(Days|Subject)",
        "cor(Subject)",
        "sigma",
    ]
    y = sleep_design.y
    assert isinstance(priors["Intercept"], Normal)
    assert priors["Intercept"].mu == pytest.approx(y.mean())
    assert priors["Intercept"].sigma == pytest.approx(2.5 * y.std())
    days_sd = sleep_design.X[:, 1].std()
    assert priors["Days"].sigma == pytest.approx(2.5 * y.std() / days_sd)
    assert priors["cor(Subject)"] == LKJ(2.0)
    assert isinstance(priors["sigma"], HalfStudentT)


def test_default_priors_scale_with_response(sleep_design):
    base = default_priors(sleep_design)
    scaled = default_priors(dataclasses.replace(sleep_design, y=sleep_design.y * 100))
    assert list(base) == list(scaled)
    for key in base:
        for name, value in prior_params(base[key]).items():
            expected = value if name in ("nu", "eta") else 100 * value
            assert prior_params(scaled[key])[name] == pytest.approx(expected), (key, name)


def test_unknown_prior_key_names_alternatives(sleep_design):
    with pytest.raises(PriorError) as info:
        resolve_priors(sleep_design, {"sd(day|Subject)": HalfNormal(5.0)})
    message = str(info.value)
    assert "'sd(day|Subject)'" in message
    assert "did you mean 'sd(Days|Subject)'" in message
    assert "Valid keys" in message and "cor(Subject)" in message


def test_prior_family_and_parameter_checks(sleep_design):
    with pytest.raises(PriorError, match="sd\\(Days\\|Subject\\)"):
        resolve_priors(sleep_design, {"sd(Days|Subject)": Normal(0, 1)})
    with pytest.raises(PriorError, match="LKJ"):
        resolve_priors(sleep_design, {"cor(Subject)": HalfNormal(1)})
    with pytest.raises(PriorError, match="sigma must be a positive"):
        Normal(0.0, -1.0)
    merged = resolve_priors(sleep_design, {"Days": StudentT(3, 0, 10)})
    assert merged["Days"] == StudentT(3, 0, 10)
    assert merged["Intercept"] == default_priors(sleep_design)["Intercept"]


def test_prior_table_display(sleep_design):
    text = str(default_priors(sleep_design))
    assert "sd(Days|Subject)" in text and "HalfStudentT(nu=3" in text
    assert "LKJ(eta=2)" in text


def test_blocks_sharing_a_grouping_get_distinct_keys(sleep_design):
    block = sleep_design.blocks[0]
    design = dataclasses.replace(sleep_design, blocks=(block, block))
    keys = list(default_priors(design))
    assert "cor(Intercept+Days|Subject)" in keys
    assert "sd(Days|Subject)" in keys and "sd(Days|Subject)#2" in keys


# ------------------------------------------------------------------------------ model


def test_model_structure(sleep_design):
    model = build_pymc_model(sleep_design)
    free = {"beta_c", "z0_Subject", "z1_Subject", "sd_Subject", "corr_Subject_raw", "sigma"}
    assert {v.name for v in model.free_RVs} == free
    assert {v.name for v in model.deterministics} == {"beta", "cor_Subject", "r_Subject"}
    # the data are compiled in as constants; prior parameters stay data (reusable)
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    constants = {v.name for v in graph_inputs([model.logp()]) if isinstance(v, Constant)}
    assert {"codes_Subject", "y"} <= constants  # X's columns are folded into unnamed ones
    assert {v.name for v in model.data_vars} == {"hyper"}
    assert model.coords["fixed"] == ("Intercept", "Days")
    assert len(model.coords["Subject"]) == 18
    assert model.coords["Subject_term"] == ("Intercept", "Days")
    assert model.named_vars_to_dims["r_Subject"] == ("Subject", "Subject_term")
    assert model.named_vars_to_dims["cor_Subject"] == ("Subject_term", "Subject_term2")
    logp, grad = _logp_and_grad(model)
    assert np.isfinite(logp)
    assert grad.shape == (2 * 18 + 2 + 2 + 1 + 1,)
    assert np.all(np.isfinite(grad))


def test_centring_recovers_uncentred_coefficients(sleep_design):
    """beta (reported) and beta_c (sampled) give the same linear predictor."""
    model = build_pymc_model(sleep_design)
    fn = pm.compile([model["beta_c"]], model["beta"], mode="FAST_COMPILE")
    beta_c = np.array([300.0, 10.0])
    beta = fn(beta_c)
    xbar = sleep_design.X[:, 1].mean()
    X = sleep_design.X
    np.testing.assert_allclose(X @ beta, X @ beta_c - xbar * beta_c[1])
    assert beta[1] == beta_c[1]


def test_mixed_prior_families_and_diagonal_blocks():
    data = bmx.load_dataset("Orthodont")
    design = build_design("distance ~ age + Sex + (age || Subject)", data)
    assert all(b.covariance == "diagonal" or b.n_terms == 1 for b in design.blocks)
    model = build_pymc_model(design, {"age": StudentT(3.0, 0.0, 5.0)})
    names = {v.name for v in model.free_RVs}
    assert {"beta_c_Normal", "beta_c_StudentT", "sigma"} <= names
    assert not any(name.startswith("chol_") for name in names)
    assert any(name.startswith("sd_") for name in names)
    logp, grad = _logp_and_grad(model)
    assert np.isfinite(logp) and np.all(np.isfinite(grad))


def test_correlated_block_accepts_mixed_sd_families(sleep_design):
    model = build_pymc_model(sleep_design, {"sd(Days|Subject)": HalfNormal(10.0)})
    logp, _ = _logp_and_grad(model)
    assert np.isfinite(logp)


def test_correlation_cholesky_has_the_lkj_density():
    """Pushforward check: on the unconstrained scale the density must equal
    LKJ(eta) of R(y) = L L' times |d vech(R) / dy| (up to a constant)."""
    import pymc as pm
    import pytensor

    from bayesmix.bayes.lkj import correlation_cholesky

    k, eta = 3, 1.7
    with pm.Model() as model:
        L = correlation_cholesky("corr", k, pt.as_tensor(eta))
    logp = model.compile_logp(jacobian=True)
    value = model.rvs_to_values[model["corr_raw"]]
    L_of_y = pytensor.function([value], model.replace_rvs_by_values([L])[0])
    rows, cols = np.tril_indices(k, -1)

    def offdiag(y):
        Lv = L_of_y(y)
        return (Lv @ Lv.T)[rows, cols]

    def reference(y):
        Lv = L_of_y(y)
        R = Lv @ Lv.T
        h = 1e-6
        J = np.column_stack(
            [(offdiag(y + h * e) - offdiag(y - h * e)) / (2 * h) for e in np.eye(3)]
        )
        return (eta - 1) * np.linalg.slogdet(R)[1] + np.linalg.slogdet(J)[1]

    rng = np.random.default_rng(0)
    points = [rng.normal(scale=0.8, size=3) for _ in range(5)]
    diffs = [logp({"corr_raw": y}) - reference(y) for y in points]
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-6)  # equal up to the normalising constant
    L0 = L_of_y(points[0])
    np.testing.assert_allclose(np.sum(L0**2, axis=1), 1.0)  # unit rows: a correlation matrix


def test_model_without_intercept_is_not_centred():
    design = build_design("Reaction ~ 0 + Days + (1 | Subject)", bmx.load_dataset("sleepstudy"))
    model = build_pymc_model(design)
    names = {v.name for v in model.free_RVs}
    assert "beta" in names and "beta_c" not in names
    assert "z0_Subject" in names
    logp, _ = _logp_and_grad(model)
    assert np.isfinite(logp)


def test_centred_block_reports_original_columns():
    """With Z centred for sampling, r/sd/cor deterministics describe the original columns."""
    from scipy import stats

    design = build_design("distance ~ age + Sex + (age | Subject)", bmx.load_dataset("Orthodont"))
    model = build_pymc_model(design)  # age is 8..14: centred automatically
    rng = np.random.default_rng(1)
    point = {
        k: v + rng.normal(scale=0.5, size=np.shape(v)) for k, v in model.initial_point().items()
    }
    names = ["beta", "r_Subject", "sigma", "sd_Subject", "cor_Subject"]
    outs = model.replace_rvs_by_values([model[name] for name in names])
    fn = pm.compile(model.value_vars, outs, mode="FAST_COMPILE", on_unused_input="ignore")
    outs = fn(*[point[v.name] for v in model.value_vars])
    beta, r, sigma, sd, cor = outs
    block = design.blocks[0]
    assert block_centring(block)[1] == pytest.approx(11.0)  # mean age
    mu = design.X @ beta + np.sum(block.Z * r[block.codes], axis=1)
    expected = stats.norm.logpdf(design.y, mu, sigma).sum()
    loglik = model.compile_logp(vars=[model["y_obs"]], mode="FAST_COMPILE")(point)
    assert float(loglik) == pytest.approx(expected, rel=1e-9)
    assert cor[0, 0] == pytest.approx(1.0) and -1 < cor[0, 1] < 1
    # the reported SDs are those of the original-column effects implied by z and chol
    assert np.all(sd > 0)


@pytest.mark.parametrize("p, ones", [(3, True), (3, False), (12, True), (0, False)])
def test_fixed_predictor_equals_matrix_product(p, ones):
    """Column-wise, elementwise and BLAS forms of X @ beta all give the product."""
    import pytensor.tensor as pt

    from bayesmix.bayes.model import fixed_predictor

    rng = np.random.default_rng(p)
    x = rng.normal(size=(40, p))
    if ones and p:
        x[:, 0] = 1.0
    beta = rng.normal(size=p)
    X, b = pt.matrix("X"), pt.vector("b")
    value = fixed_predictor(X, b, x).eval({X: x, b: beta} if p else {})
    np.testing.assert_allclose(value, x @ beta, rtol=1e-12, atol=1e-12)


def test_compile_cache_key_sees_the_data(sleep_design):
    """Data are compiled in as constants: a model with other data must not reuse the code."""
    from bayesmix.bayes.compile.nutpie import _structure_key

    data = bmx.load_dataset("sleepstudy")
    other = data.assign(Reaction=data["Reaction"] + 1.0)
    key = _structure_key(build_pymc_model(sleep_design), "cfunc")
    same = build_design("Reaction ~ Days + (Days | Subject)", data)
    shifted = build_design("Reaction ~ Days + (Days | Subject)", other)
    assert _structure_key(build_pymc_model(same), "cfunc") == key
    assert _structure_key(build_pymc_model(shifted), "cfunc") != key
    # other priors are data: the compiled code is shared
    priors = {"sigma": bmx.HalfStudentT(3.0, 50.0)}
    assert _structure_key(build_pymc_model(same, priors), "cfunc") == key
