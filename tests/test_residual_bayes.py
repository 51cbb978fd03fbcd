"""The Bayesian engine with residual variance functions and correlation structures.

(a) The PyTensor whitening (:mod:`bayesmix.bayes.residual_structures`) gives the
numpy log-likelihood of ``ResidualStructure.whiten`` to 1e-10 for every kind at
random parameters, and the PyMC model's likelihood potential equals it at a point;
(b) a simulated AR(1) model with varIdent heteroscedasticity recovers phi and the
SD ratios; (c) Ovary with corAR1 agrees with nlme's ML fit. Two models are
sampled (two numba compilations); everything else compiles with PyTensor's
Python linker.
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from assertions import assert_within_k_sd
from pymc_points import value_point
from rfidelity import read_with_levels

import bayesmix as bmx
from bayesmix.errors import ArgumentError, PriorError, SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from bayesmix.bayes.graph_parts import block_infos  # noqa: E402
from bayesmix.bayes.residual_model import build_structured_model, sample_structured  # noqa: E402
from bayesmix.bayes.residual_priors import Beta, Uniform, resolve_structured_priors  # noqa: E402
from bayesmix.bayes.residual_results import correlated_normal, precision_terms  # noqa: E402
from bayesmix.bayes.residual_structures import residual_whiten  # noqa: E402

VARCORR = Path(__file__).parent / "refs" / "varcorr"


def _data(name: str) -> pd.DataFrame:
    return read_with_levels(
        VARCORR / "data" / f"{name}.csv", VARCORR / "data" / f"{name}.levels.json"
    )


def _synthetic() -> pd.DataFrame:
    """Groups of 3-6 rows at integer times that skip values, given unsorted."""
    rng = np.random.default_rng(7)
    times = np.array([0, 1, 2, 4, 5, 7])
    keep = [np.delete(times, g) for g in range(6)] + [times, times, times[[0, 3, 5]]]
    rows = []
    for g, kept in enumerate(keep):
        for t in rng.permutation(kept):
            rows.append((f"g{g}", int(t), t * 0.7 + rng.uniform(0, 0.3), rng.normal()))
    frame = pd.DataFrame(rows, columns=["g", "t", "tc", "x"])
    frame["y"] = frame["x"] + rng.normal(size=len(frame))
    return frame


OVARY = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1|Mare)"
BODY = "weight ~ Time * Diet + (Time|Rat)"
ORTHO = "distance ~ age + Sex + (1|Subject)"
DIAL = "rate ~ pressure * QB + (pressure|Subject)"
SYN = "y ~ x + (1|g)"

#: id -> (constructor, formula, dataset, keyword arguments): every variance function
#: and correlation structure, strata, fitted-value covariates, varComb, gls and lmm.
CASES = {
    "corAR1": ("lmm", OVARY, "Ovary", {"correlation": "corAR1()"}),
    "corAR1_gaps": ("lmm", SYN, "syn", {"correlation": "corAR1(form = ~ t | g)"}),
    "corARMA11": ("lmm", OVARY, "Ovary", {"correlation": "corARMA(p = 1, q = 1)"}),
    "corARMA21": ("lmm", OVARY, "Ovary", {"correlation": "corARMA(p = 2, q = 1)"}),
    "corARMA30_gaps": ("lmm", SYN, "syn", {"correlation": "corARMA(form = ~ t | g, p = 3)"}),
    "corARMA02": ("lmm", OVARY, "Ovary", {"correlation": "corARMA(p = 0, q = 2)"}),
    "corCAR1": ("lmm", BODY, "BodyWeight", {"correlation": "corCAR1(form = ~ Time)"}),
    "corCAR1_unsorted": ("gls", "y ~ x", "syn", {"correlation": "corCAR1(form = ~ tc | g)"}),
    "corCompSymm": (
        "gls",
        "weight ~ Time * Diet",
        "BodyWeight",
        {"correlation": "corCompSymm(form = ~ 1 | Rat)"},
    ),
    "corSymm_varIdent": (
        "gls",
        "distance ~ age * Sex",
        "Orthodont",
        {"correlation": "corSymm(form = ~ 1 | Subject)", "weights": "varIdent(form = ~ 1 | age)"},
    ),
    "corSymm_unbalanced": ("gls", "y ~ x", "syn", {"correlation": "corSymm(form = ~ t | g)"}),
    "corExp_nugget": (
        "lmm",
        BODY,
        "BodyWeight",
        {"correlation": "corExp(form = ~ Time, nugget = TRUE)"},
    ),
    "corGaus": ("lmm", BODY, "BodyWeight", {"correlation": "corGaus(form = ~ Time)"}),
    "corExp_spatial": (
        "gls",
        "resp ~ z",
        "spatial_sim",
        {"correlation": "corExp(form = ~ x + y, nugget = TRUE)"},
    ),
    "corGaus_maximum": (
        "gls",
        "resp ~ z",
        "spatial_sim",
        {"correlation": bmx.corGaus(coords=("x", "y"), metric="maximum")},
    ),
    "varIdent": ("lmm", ORTHO, "Orthodont", {"weights": "varIdent(form = ~ 1 | Sex)"}),
    "varPower_fitted": ("lmm", BODY, "BodyWeight", {"weights": "varPower()"}),
    "varPower_strata": ("lmm", ORTHO, "Orthodont", {"weights": "varPower(form = ~ age | Sex)"}),
    "varExp": ("lmm", ORTHO, "Orthodont", {"weights": "varExp(form = ~ age)"}),
    "varExp_fitted_strata": (
        "lmm",
        ORTHO,
        "Orthodont",
        {"weights": "varExp(form = ~ fitted(.) | Sex)"},
    ),
    "varConstPower": ("lmm", DIAL, "Dialyzer", {"weights": "varConstPower(form = ~ pressure)"}),
    "varConstPower_fitted_strata": (
        "lmm",
        BODY,
        "BodyWeight",
        {"weights": "varConstPower(form = ~ fitted(.) | Diet)"},
    ),
    "varFixed": ("lmm", ORTHO, "Orthodont", {"weights": "varFixed(~ age)"}),
    "varComb_corCAR1": (
        "lmm",
        BODY,
        "BodyWeight",
        {
            "weights": "varComb(varIdent(form = ~ 1 | Diet), varPower())",
            "correlation": "corCAR1(form = ~ Time)",
        },
    ),
    "varPower_corAR1": (
        "lmm",
        DIAL,
        "Dialyzer",
        {"weights": "varPower(form = ~ pressure)", "correlation": "corAR1()"},
    ),
}

_DATA: dict[str, pd.DataFrame] = {}


def _model(case: str):
    ctor, formula, name, kwargs = CASES[case]
    if name not in _DATA:
        _DATA[name] = _synthetic() if name == "syn" else _data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. corSymm: few groups per correlation
        return getattr(bmx, ctor)(formula, _DATA[name], **kwargs)


def _loglik(W: np.ndarray, log_det: float) -> float:
    return float(-0.5 * np.sum(W**2) - 0.5 * log_det - 0.5 * W.size * np.log(2 * np.pi))


# ------------------------------------------------------------------ (a) log-likelihoods


@pytest.mark.parametrize("case", list(CASES))
def test_pytensor_whitening_equals_numpy(case):
    m = _model(case)
    res = m.residual
    n = m.design.n_obs
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # stable across processes
    u_s, M_s, f_s = pt.vector("u"), pt.matrix("M"), pt.vector("fitted")
    W_s, ld_s = residual_whiten(res, u_s, M_s, f_s if res.uses_fitted else None)
    fn = pytensor.function(
        [u_s, M_s, f_s], [W_s, ld_s], mode="FAST_COMPILE", on_unused_input="ignore"
    )
    M = np.column_stack(
        [m.design.y - m.design.X @ rng.normal(size=m.design.n_fixed), rng.normal(size=(n, 2))]
    )
    fitted = np.asarray(m.design.y, dtype=float) * rng.uniform(0.8, 1.2, size=n)
    for _ in range(4):
        u = rng.normal(scale=0.8, size=res.n_params)
        if case == "corGaus_maximum":
            u[0] = np.log(0.05)  # Gaussian correlation is not PD in this metric at long ranges
        W_np, ld_np = res.whiten(u, M, fitted if res.uses_fitted else None)
        W_pt, ld_pt = fn(u, M, fitted)
        np.testing.assert_allclose(W_pt, W_np, rtol=1e-10, atol=1e-10)
        ll_np, ll_pt = _loglik(W_np[:, 0], ld_np), _loglik(W_pt[:, 0], ld_pt)
        assert abs(ll_pt - ll_np) <= 1e-10 * max(1.0, abs(ll_np)), (case, ll_pt, ll_np)


@pytest.mark.parametrize("case", ["corAR1", "varComb_corCAR1", "corSymm_varIdent"])
def test_model_likelihood_equals_numpy(case):
    """The PyMC model's ``loglik_y`` at a point is the numpy log-likelihood there."""
    m = _model(case)
    design, res = m.design, m.residual
    priors, params = resolve_structured_priors(design, res)
    model = build_structured_model(design, res, priors, params)
    rng = np.random.default_rng(3)
    u = rng.normal(scale=0.5, size=res.n_params)
    values: dict = {"beta_c": rng.normal(size=design.n_fixed)}
    z = {}
    for block in design.blocks:
        for j in range(block.n_terms):
            z[f"z{j}_{block.grouping}"] = rng.normal(size=block.n_levels)
    values.update(z)
    sigma = 1.7
    values["sigma_c" if res.variance is not None else "sigma"] = sigma
    start = 0
    for p in params:  # the structure's parameters from u, through their own maps
        if p.support == "lkj":
            values[f"{p.key}_raw"] = u[start : start + res.correlation.n_params]
            start += res.correlation.n_params
            continue
        k = p.size
        ui = u[start : start + k]
        natural = {
            "delta": np.exp(ui),
            "power": ui,
            "Phi": np.tanh(ui) if p.bounds[0] < 0 else 1 / (1 + np.exp(-ui)),
        }[p.role]
        values[p.key] = natural if p.labels else natural[0]
        start += k
    point = value_point(model, values)
    inputs = [model.rvs_to_values[rv] for rv in model.free_RVs]
    args = [point[v.name] for v in inputs]
    infos = block_infos(design)
    outputs = model.replace_rvs_by_values(
        [model["loglik_y"], model["beta"], *[model[info.r_name] for info in infos]]
    )
    f = pytensor.function(inputs, outputs, mode="FAST_COMPILE", on_unused_input="ignore")
    got, beta, *effects = f(*args)
    # numpy: the same point's mu, then the spec's whitening
    mu = design.X @ beta
    for block, r in zip(design.blocks, effects, strict=True):
        mu = mu + np.einsum("nk,nk->n", block.Z, r[block.codes])
    fitted = mu if res.uses_fitted else None
    W, log_det = res.whiten(u, np.asarray(design.y, dtype=float) - mu, fitted)
    log_g = res.log_sd(u, fitted)
    scale = sigma if log_g is None else sigma * np.exp(-np.mean(log_g))  # nlme's sigma
    n = design.n_obs
    expected = (
        -0.5 * np.sum(W**2) / scale**2
        - n * np.log(scale)
        - 0.5 * log_det
        - 0.5 * n * np.log(2 * np.pi)
    )
    assert abs(float(got) - expected) <= 1e-9 * abs(expected), (float(got), expected)


# ------------------------------------------------------------------ LOO terms, noise


@pytest.mark.parametrize(
    "case", ["corAR1_gaps", "corCAR1_unsorted", "corSymm_unbalanced", "corARMA30_gaps"]
)
def test_loo_terms_and_noise_match_dense_algebra(case):
    m = _model(case)
    cor = m.residual.correlation
    n = m.design.n_obs
    rng = np.random.default_rng(5)
    u = rng.normal(scale=0.6, size=cor.n_params)
    Linv, _ = cor.whiten(u, np.eye(n))  # rows of L^-1 in the original order
    Cinv = Linv.T @ Linv
    e = rng.normal(size=n)
    a, q = precision_terms(cor, u, e)
    np.testing.assert_allclose(a, Cinv @ e, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(q, np.diag(Cinv), rtol=1e-10)
    # correlated_normal applies a factor of C: with z = I its rows give C = X'X
    X = correlated_normal(cor, np.tile(u, (n, 1)), np.eye(n))
    np.testing.assert_allclose(X.T @ X @ Cinv, np.eye(n), atol=1e-9)


# ------------------------------------------------------------------ priors and arguments


def test_structure_priors_defaults_overrides_and_errors():
    m = _model("varComb_corCAR1")
    priors, params = resolve_structured_priors(m.design, m.residual)
    assert [p.key for p in params] == ["A_delta", "B_power", "Phi"]
    assert isinstance(priors["Phi"], Uniform) and (priors["Phi"].lower, priors["Phi"].upper) == (
        0,
        1,
    )
    overrides = {"Phi": Beta(2, 2), "sigma": bmx.HalfNormal(5.0)}
    table, _ = resolve_structured_priors(m.design, m.residual, overrides)
    assert isinstance(table["Phi"], Beta) and table["sigma"] == bmx.HalfNormal(5.0)
    model = build_structured_model(m.design, m.residual, table, params)
    assert "Phi_unit" in model.named_vars and "Phi" in model.named_vars
    with pytest.raises(PriorError, match="Unknown prior key.*'Phy'.*did you mean 'Phi'"):
        resolve_structured_priors(m.design, m.residual, {"Phy": Uniform(0, 1)})
    with pytest.raises(PriorError, match="Prior for 'B_power' must be one of Normal, StudentT"):
        resolve_structured_priors(m.design, m.residual, {"B_power": Beta(1, 1)})
    with pytest.raises(PriorError, match="inside the parameter's interval"):
        resolve_structured_priors(m.design, m.residual, {"Phi": Uniform(-1, 1)})
    with pytest.raises(PriorError, match="upper"):
        Uniform(1, 0)


def test_bad_arguments_fail_before_building():
    m = _model("corAR1")
    with pytest.raises(ArgumentError, match="draws"):
        sample_structured(m.design, m.residual, draws=3)
    with pytest.raises(ArgumentError, match="residual must be"):
        sample_structured(m.design, None)
    other = _model("corAR1_gaps")
    with pytest.raises(ArgumentError, match="bound to"):
        sample_structured(m.design, other.residual)


# ------------------------------------------------------------------ (b) recovery


def _simulated() -> pd.DataFrame:
    rng = np.random.default_rng(20240615)
    G, T, phi, sigma = 40, 12, 0.6, 0.8
    ratios = {"a": 1.0, "b": 2.0, "c": 0.5}
    rows = []
    for g in range(G):
        arm = "abc"[g % 3]
        e = np.empty(T)
        e[0] = rng.normal()
        for t in range(1, T):
            e[t] = phi * e[t - 1] + np.sqrt(1 - phi**2) * rng.normal()
        b = rng.normal(0.0, 1.0)
        for t in range(T):
            x = rng.normal()
            y = 1.0 + 0.5 * x + b + sigma * ratios[arm] * e[t]
            rows.append((f"s{g:02d}", arm, t, x, y))
    return pd.DataFrame(rows, columns=["g", "arm", "t", "x", "y"])


def _quiet(m, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return sample_structured(m.design, m.residual, **kwargs)


def _covers(draws, target: float, prob: float, label: str) -> None:
    lo, hi = np.quantile(np.asarray(draws).ravel(), [(1 - prob) / 2, (1 + prob) / 2])
    assert lo <= target <= hi, f"{label}: {target} outside [{lo:.4g}, {hi:.4g}]"


@pytest.fixture(scope="module")
def simulated_fit():
    m = bmx.lmm(
        "y ~ x + (1|g)",
        _simulated(),
        weights="varIdent(form = ~ 1 | arm)",
        correlation="corAR1(form = ~ t | g)",
    )
    return _quiet(m, draws=500, tune=500, chains=4, random_seed=21)


def test_ar1_and_varident_recovered(simulated_fit):
    post = simulated_fit.idata["posterior"]
    _covers(post["Phi"].values, 0.6, 0.9, "Phi")
    delta = post["delta"]
    _covers(delta.sel(delta_dim="b").values, 2.0, 0.9, "delta[b]")
    _covers(delta.sel(delta_dim="c").values, 0.5, 0.9, "delta[c]")
    _covers(post["sigma"].values, 0.8, 0.9, "sigma")
    table = simulated_fit.residual_parameters(ci_prob=0.9)
    assert list(table["parameter"]) == ["b", "c", "Phi"]
    assert table["r_hat"].max() < 1.05


# ------------------------------------------------------------------ (c) Ovary vs nlme


@pytest.fixture(scope="module")
def ovary_fit():
    return _quiet(_model("corAR1"), draws=500, tune=500, chains=4, random_seed=5)


def test_ovary_ar1_agrees_with_nlme(ovary_fit):
    ref = json.loads((VARCORR / "refs" / "V02_ovary_lme_ar1_ml.json").read_text())
    post = ovary_fit.idata["posterior"]
    beta = post["beta"].values
    for j, name in enumerate(ref["fixef"]):
        assert_within_k_sd(beta[..., j], ref["fixef"][name], 2, name)
    assert_within_k_sd(post["Phi"].values, ref["corStruct"]["coef"]["Phi"], 2, "Phi")
    assert_within_k_sd(post["sigma"].values, ref["sigma"], 2, "sigma")
    sd = post["sd_Mare"].values
    assert_within_k_sd(sd, ref["random"]["Mare"]["sd"]["(Intercept)"], 2, "sd(Mare)")


def test_result_reports_the_structure(ovary_fit):
    text = str(ovary_fit.summary())
    assert "Residuals: corAR1" in text and "Phi" in text
    table = ovary_fit.residual_parameters()
    assert list(table.columns) == [
        "structure",
        "parameter",
        "mean",
        "sd",
        "lower",
        "upper",
        "r_hat",
        "ess_bulk",
    ]
    assert "corAR1:Phi" in ovary_fit.diagnostics()["table"].index
    assert isinstance(ovary_fit, bmx.BayesResult)
    # LOO of the correlated model: finite, and its terms are conditional densities
    ll = ovary_fit.idata["log_likelihood"]["y"]
    assert ll.shape[-1] == ovary_fit.design.n_obs and np.isfinite(ll.values).all()
    loo = ovary_fit.loo()
    assert np.isfinite(loo.elpd)
    pp = ovary_fit.predict(kind="posterior_predictive", draws=True, random_seed=1)
    assert pp.shape == (ovary_fit._n_draws(), ovary_fit.design.n_obs)
    with pytest.raises(ArgumentError, match="newdata"):
        ovary_fit.predict(_DATA["Ovary"].head(), kind="posterior_predictive")
    pearson = ovary_fit.residuals("pearson")
    assert abs(np.std(pearson) - 1) < 0.3


@pytest.mark.filterwarnings("ignore::bayesmix.errors.SamplingWarning")  # a short run
def test_model_samples_saves_and_loads_a_structured_posterior(tmp_path):
    """``lmm(..., correlation=).sample()`` samples the structure; the result saves and
    loads back with its structure and priors (Uniform etc.)."""
    import bayesmix as bmx

    ovary = bmx.load_dataset("Ovary")
    model = bmx.lmm(
        "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1|Mare)", ovary, correlation="corAR1()"
    )
    assert "Phi" in model.default_priors()
    post = model.sample(draws=200, tune=200, chains=2, random_seed=3)
    table = post.residual_parameters()
    assert list(table["parameter"]) == ["Phi"]
    assert 0.4 < float(table["mean"].iloc[0]) < 0.8
    path = tmp_path / "post.bmx"
    post.save(path)
    back = bmx.load(path)
    assert type(back).__name__ == "StructuredBayesResult"
    assert back.residual_parameters()["mean"].iloc[0] == table["mean"].iloc[0]
    assert "corAR1" in str(back.summary())
