"""The generic kernel: one compiled log density for every LMM and GLMM (issue 20).

Its log density and gradient are compared with PyMC's own (PyTensor's Python
linker, no numba compilation of the model) at jittered points of many model
shapes: correlated, diagonal and centred blocks, several blocks, no intercept,
weights, mixed prior families, and each GLMM family and link it covers, with
zero inflation. The gradient must agree to 1e-9 relative; log densities agree to
1e-7 absolute (PyMC evaluates ``log(2)`` of HalfStudentT in single precision, a
2e-8 offset per such prior) and their differences between points to 1e-9
relative. Sampling runs are short; the disk cache is checked in subprocesses by
numba's own cache-hit counter, not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

import bayesmix as bmx
from bayesmix.errors import ArgumentError, SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from bayesmix.bayes.generic import kernel  # noqa: E402
from bayesmix.bayes.generic import special as gspecial
from bayesmix.bayes.generic.glmm_program import glmm_program  # noqa: E402
from bayesmix.bayes.generic.program import lmm_program  # noqa: E402
from bayesmix.bayes.priors import Exponential, HalfNormal, Normal, StudentT  # noqa: E402

SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _arabidopsis():
    data = bmx.load_dataset("Arabidopsis")
    for column in ("gen", "rack", "nutrient"):
        data[column] = data[column].astype("category")
    return data


def _simulated(seed: int = 3, n_groups: int = 12, per_group: int = 15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    h = np.tile(np.arange(5), n_groups * per_group // 5)
    x1, x2 = rng.normal(size=g.size), rng.uniform(1, 3, size=g.size)
    u = rng.normal(size=(n_groups, 3)) * [0.7, 0.4, 0.3]
    eta = 0.3 + 0.5 * x1 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + 0.2 * rng.normal(size=5)[h]
    counts = rng.poisson(np.exp(eta))
    counts[rng.random(g.size) < 0.2] = 0
    return pd.DataFrame(
        {
            "y": eta + rng.normal(scale=0.5, size=g.size),
            "count": counts,
            "gamma": rng.gamma(3.0, np.exp(eta) / 3.0),
            "x1": x1,
            "x2": x2,
            "w": rng.uniform(0.5, 2.0, size=g.size),
            "g": [f"g{i}" for i in g],
            "h": [f"h{i}" for i in h],
        }
    )


def _pymc_logp_grad(model):
    """PyMC's log density and gradient on nutpie's flat vector (free_RVs order)."""
    from pytensor.compile.mode import Mode

    # Python linker (no numba compilation), graph as written: rewrites would merge
    # sums into elementwise ops of more than the 32 operands that linker runs
    mode = Mode(linker="py", optimizer=None)
    logp = model.compile_logp(mode=mode)
    dlogp = model.compile_dlogp(mode=mode)
    start = model.initial_point()
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]

    def point(x):
        out, position = {}, 0
        for value in values:
            size = start[value.name].size
            out[value.name] = x[position : position + size].reshape(start[value.name].shape)
            position += size
        return out

    def gradient(x):
        """PyMC's gradient; where its Python linker cannot run the gradient graph (more
        than 32 operands in one op: corSymm, spatial correlations), central
        differences of PyMC's log density (then ``exact`` is False)."""
        try:
            flat = dlogp(point(x))
        except NotImplementedError:
            steps = 1e-5 * np.maximum(1.0, np.abs(x))
            out = np.empty(x.size)
            for i in range(x.size):
                up, down = x.copy(), x.copy()
                up[i] += steps[i]
                down[i] -= steps[i]
                out[i] = (float(logp(point(up))) - float(logp(point(down)))) / (2 * steps[i])
            return out, False
        # dlogp orders its output by model.value_vars; reorder to free_RVs' order
        parts, position = {}, 0
        for value in model.value_vars:
            size = start[value.name].size
            parts[value.name] = flat[position : position + size]
            position += size
        return np.concatenate([parts[v.name] for v in values]), True

    return lambda x: (float(logp(point(x))), *gradient(x)), point


def _assert_matches(model, program, scale: float = 1.0, seed: int = 0) -> None:
    assert program is not None
    reference, point = _pymc_logp_grad(model)
    start = model.initial_point()
    flat_start = np.concatenate(
        [np.ravel(start[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
    )
    # PyMC's support point (to rounding: a Beta's log-odds may differ in the last bit)
    np.testing.assert_allclose(program.support, flat_start, rtol=1e-14, atol=1e-14)
    rng = np.random.default_rng(seed)
    values, expected = [], []
    logp_grad = kernel.logp_grad_structured if program.structured else kernel.logp_grad
    for _ in range(3):
        x = program.support + scale * rng.uniform(-1, 1, program.n_dim)
        grad = np.empty(program.n_dim)
        value = logp_grad(x, grad, program.ints, program.floats)
        ref_value, ref_grad, exact = reference(x)
        assert value == pytest.approx(ref_value, abs=1e-7, rel=1e-12)
        tol = 1e-9 if exact else 1e-6  # central differences: error ~ step^2
        np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol * np.abs(ref_grad).max())
        values.append(value)
        expected.append(ref_value)
    differences = np.diff(values)
    np.testing.assert_allclose(differences, np.diff(expected), rtol=1e-9, atol=1e-9)


def _lmm_case(formula, data, priors=None, **kwargs):
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.priors import resolve_priors

    design = bmx.lmm(formula, data, **kwargs).design.offset_absorbed()
    all_priors = resolve_priors(design, priors)
    model = build_pymc_model(design, all_priors)
    return model, lmm_program(model, design, all_priors)


LMM_CASES = {
    "sleepstudy correlated": (SLEEP, "sleepstudy", {}),
    "sleepstudy diagonal": ("Reaction ~ Days + (Days || Subject)", "sleepstudy", {}),
    "Orthodont centred slopes": ("distance ~ age * Sex + (age | Subject)", "Orthodont", {}),
    "no intercept": ("Reaction ~ 0 + Days + (1 | Subject)", "sleepstudy", {}),
    "three-term block, crossed": ("y ~ x1 + x2 + (x1 + x2 | g) + (1 | h)", "sim", {}),
    "weights": ("y ~ x1 + (1 | g)", "sim", {"weights": "w"}),
}


@pytest.mark.parametrize("case", list(LMM_CASES))
def test_lmm_density_and_gradient_equal_pymc(case):
    formula, data_name, kwargs = LMM_CASES[case]
    data = _simulated() if data_name == "sim" else bmx.load_dataset(data_name)
    model, program = _lmm_case(formula, data, **kwargs)
    _assert_matches(model, program)


COLLAPSED_CASES = {
    "random intercept": ("Reaction ~ Days + (1 | Subject)", "sleepstudy"),
    "correlated slopes sampled": (SLEEP, "sleepstudy"),
    "crossed, both collapsed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin"),
    "nested, both collapsed": ("strength ~ 1 + (1 | batch) + (1 | batch:cask)", "Pastes"),
    "centred slopes sampled": ("distance ~ age * Sex + (age | Subject)", "Orthodont"),
    "three-term block sampled, one collapsed": ("y ~ x1 + x2 + (x1 + x2 | g) + (1 | h)", "sim"),
}


@pytest.mark.parametrize("case", list(COLLAPSED_CASES))
def test_collapsed_density_and_gradient_equal_pymc(case):
    """The COLLAPSED family against PyMC's collapsed model (its op, closed-form gradient)."""
    from bayesmix.bayes.generic.collapsed_program import collapsed_program
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.priors import resolve_priors

    formula, data_name = COLLAPSED_CASES[case]
    data = _simulated() if data_name == "sim" else bmx.load_dataset(data_name)
    design = bmx.lmm(formula, data).design.offset_absorbed()
    priors = resolve_priors(design, None)
    model = build_pymc_model(design, priors, likelihood="collapsed")
    program = collapsed_program(model, design, priors)
    assert not program.structured
    _assert_matches(model, program)


def test_collapsed_program_leaves_what_it_cannot_run_to_the_graph_form():
    from bayesmix.bayes.generic.collapsed_program import collapsed_program
    from bayesmix.bayes.model import build_pymc_model
    from bayesmix.bayes.priors import StudentT, resolve_priors

    sim = _simulated()
    # weights: only the graph form has per-row residual SDs; a Student-t fixed effect
    # cannot be integrated out
    for kwargs, priors in (({"weights": "w"}, None), ({}, {"x1": StudentT(3, 0, 1)})):
        design = bmx.lmm("y ~ x1 + (1 | g)", sim, **kwargs).design.offset_absorbed()
        table = resolve_priors(design, priors)
        model = build_pymc_model(design, table)
        assert collapsed_program(model, design, table) is None


def test_nested_blocks_and_mixed_prior_families():
    """Arabidopsis' nested slopes, with Student-t and Normal fixed effects in one vector
    and HalfNormal and Exponential SDs (PyMC splits such vectors by family)."""
    formula = "log(1 + total.fruits) ~ rack + nutrient + amd + (nutrient | popu/gen)"
    design = bmx.lmm(formula, _arabidopsis()).design
    keys = {
        "Intercept": StudentT(nu=4, mu=2.0, sigma=3.0),
        "amd[unclipped]": Normal(0.0, 2.0),
        "sd(Intercept|popu)": HalfNormal(1.5),
        "sd(nutrient[8]|popu)": Exponential(2.0),
        "sigma": Exponential(1.0),
    }
    priors = {
        k: v for k, v in keys.items() if k in bmx.lmm(formula, _arabidopsis()).default_priors()
    }
    assert len(priors) == len(keys), "prior keys of the Arabidopsis model changed"
    model, program = _lmm_case(formula, _arabidopsis(), priors)
    assert "beta_c_StudentT" in model.named_vars and "sd_popu_Exponential" in model.named_vars
    _assert_matches(model, program)
    assert design.n_obs == program.ints[0][kernel.N_ROWS]


GLMM_CASES = {
    "binomial logit": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
        "logit",
        None,
    ),
    "binomial cloglog": (
        "cbpp",
        "cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "binomial",
        "cloglog",
        None,
    ),
    "poisson slopes, offset": ("sim", "count ~ x1 + (x1 | g) + (1 | h)", "poisson", "log", None),
    "zero-inflated poisson": ("sim", "count ~ x1 + (1 | g)", "poisson", "log", "~ x1"),
    "zero-inflated NB2, slopes": ("sim", "count ~ x1 + x2 + (x2 | g)", "negbinomial", "log", "~ 1"),
    "NB2": ("sim", "count ~ x1 + (1 | g)", "negbinomial", "log", None),
    "gamma log": ("sim", "gamma ~ x1 + (1 | g)", "gamma", "log", None),
    "gamma inverse": ("sim", "gamma ~ x1 + (1 | g)", "gamma", "inverse", None),
    "gamma identity": ("sim", "gamma ~ x1 + (1 | g)", "gamma", "identity", None),
    "binomial probit": ("cbpp", CBPP, "binomial", "probit", None),
    "poisson identity": ("sim", "count ~ x2 + (1 | g)", "poisson", "identity", None),
    "poisson sqrt": ("sim", "count ~ x2 + (1 | g)", "poisson", "sqrt", None),
}
#: links whose mean is valid only for eta > 0: small steps from the support point
POSITIVE_ETA = ("inverse", "identity")


def _glmm_case(data_name, formula, family, link, zi, **kwargs):
    from bayesmix.bayes.glmm_model import build_glmm_model
    from bayesmix.bayes.glmm_priors import resolve_glmm_priors

    data = bmx.load_dataset("cbpp") if data_name == "cbpp" else _simulated()
    m = bmx.glmm(formula, data, family=family, link=link, ziformula=zi, **kwargs)
    priors = resolve_glmm_priors(m.design, m.family, m.zi_X, m.zi_names)
    model = build_glmm_model(m.design, m.family, priors, m.zi_X, m.zi_names)
    return model, glmm_program(model, m.design, m.family, priors, m.zi_X, m.zi_names)


@pytest.mark.parametrize("case", list(GLMM_CASES))
def test_glmm_density_and_gradient_equal_pymc(case):
    data_name, formula, family, link, zi = GLMM_CASES[case]
    kwargs = {"offset": np.full(180, 0.1)} if "offset" in case else {}
    model, program = _glmm_case(data_name, formula, family, link, zi, **kwargs)
    _assert_matches(model, program, scale=0.01 if link in POSITIVE_ETA else 0.5)


def test_compile_generic_refuses_a_model_the_kernel_does_not_cover():
    from bayesmix.bayes.residual_priors import Beta

    model, program = _structured_case("corAR1", {"Phi": Beta(2.0, 2.0)})
    assert program is None
    from bayesmix.bayes.compile.nutpie import compile_nutpie

    with pytest.raises(ArgumentError, match="compile='generic'"):
        compile_nutpie(model, None, "generic", program=program)


@pytest.mark.parametrize("eta", [-40.0, -12.0, -3.0, -0.4, 0.0, 0.7, 5.0, 30.0])
def test_log_normal_cdf_equals_scipy(eta):
    from scipy import stats

    value, ratio = gspecial.log_phi(eta)
    assert value == pytest.approx(stats.norm.logcdf(eta), rel=1e-13)
    expected = np.exp(stats.norm.logpdf(eta) - stats.norm.logcdf(eta))
    assert ratio == pytest.approx(expected, rel=1e-12)
    assert gspecial.erfcx(abs(eta)) == pytest.approx(special.erfcx(abs(eta)), rel=1e-13)


@pytest.mark.parametrize("x", [1e-6, 0.03, 0.5, 1.0, 2.5, 9.999, 10.0, 17.3, 250.0, 1e6])
def test_special_functions_equal_scipy(x):
    assert gspecial.digamma(x) == pytest.approx(special.digamma(x), rel=1e-13, abs=1e-14)
    for t in (-x, x, -800.0 * x):
        assert gspecial.softplus(t) == pytest.approx(np.logaddexp(0.0, t), rel=1e-14, abs=1e-300)
        assert gspecial.sigmoid(t) == pytest.approx(special.expit(t), rel=1e-14, abs=1e-300)
        assert gspecial.logaddexp(t, 0.3) == pytest.approx(np.logaddexp(t, 0.3), rel=1e-14)


def _quiet(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return model.sample(draws=300, tune=300, chains=2, **kwargs)


@pytest.mark.parametrize("collapsed", [True, False])
def test_auto_samples_with_the_generic_kernel_reproducibly(collapsed, monkeypatch):
    """Below 10,000 rows ``auto`` samples the collapsed likelihood with the generic kernel
    (``COLLAPSE_SMALL``; else the graph form); either way as the per-model route would."""
    from bayesmix.bayes import fit as bayes_fit
    from bayesmix.bayes.compile.nutpie import compile_nutpie
    from bayesmix.bayes.generic.nutpie_model import callbacks

    monkeypatch.setattr(bayes_fit, "COLLAPSE_SMALL", collapsed)

    model, program = _lmm_case(SLEEP, bmx.load_dataset("sleepstudy"))
    compiled = compile_nutpie(model, None, "auto", program=program)
    assert compiled.compiled_logp_func is callbacks()[0]
    m = bmx.lmm(SLEEP, bmx.load_dataset("sleepstudy"))
    first, second = _quiet(m, random_seed=5), _quiet(m, random_seed=5)
    for name in ("beta", "sd_Subject", "cor_Subject", "sigma", "r_Subject"):
        np.testing.assert_array_equal(
            first.idata["posterior"][name], second.idata["posterior"][name]
        )
    # the same variables, dimensions and coordinates as a model's own compiled density gives
    from bayesmix.bayes.fit import sample_model

    if collapsed:  # the per-model route writes the collapsed form from FUSED_MIN_OBS rows
        monkeypatch.setattr(bayes_fit, "FUSED_MIN_OBS", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        own = sample_model(m.design, draws=20, tune=20, chains=1, compile="cfunc", random_seed=1)
    assert first.timing["compile_s"] < 1.0  # the kernel was compiled by the lines above
    ours, theirs = first.idata["posterior"], own.idata["posterior"]
    assert set(ours.data_vars) == set(theirs.data_vars)
    for name in ours.data_vars:
        assert ours[name].dims == theirs[name].dims, name
    for dim in ours.dims:
        if dim not in ("chain", "draw"):
            assert list(ours[dim].values) == list(theirs[dim].values), dim


_CACHE_SCRIPT = """
import json, warnings
import bayesmix as bmx
from bayesmix.bayes.generic.nutpie_model import callbacks
m = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)",
             bmx.load_dataset("cbpp"), "binomial")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    post = m.sample(draws=50, tune=50, chains=1, random_seed=1)
logp, expand = callbacks()
print(json.dumps({"hits": [logp.cache_hits, expand.cache_hits],
                  "mean": float(post.idata["posterior"]["beta"].mean())}))
"""


def test_callbacks_compile_once_per_machine(tmp_path):
    """A second process loads the compiled callbacks from the disk cache (numba's own
    cache-hit counters), and samples the same draws."""
    env = {**os.environ, "BAYESMIX_CACHE_DIR": str(tmp_path)}
    env.pop("PYTENSOR_FLAGS", None)
    runs, between = [], 0.0
    for _ in range(2):
        between = time.time()
        out = subprocess.run(
            [sys.executable, "-c", _CACHE_SCRIPT], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["hits"] == [0, 0]
    assert runs[1]["hits"] == [1, 1]
    assert runs[0]["mean"] == runs[1]["mean"]
    # loading refreshed their files' times, so the cache bound removes them last
    files = list(tmp_path.rglob("*bayesmix-generic-*"))
    assert len(files) == 4 and all(f.stat().st_mtime >= between for f in files)


#: Residual structures the kernel covers: every case of test_residual_bayes.
RESIDUAL_COVERED = [
    "corAR1",
    "corARMA11",
    "corARMA21",
    "corARMA30_gaps",
    "corARMA02",
    "corAR1_gaps",
    "corCAR1",
    "corCAR1_unsorted",
    "corCompSymm",
    "corSymm_varIdent",
    "corSymm_unbalanced",
    "corExp_nugget",
    "corGaus",
    "corExp_spatial",
    "corGaus_maximum",
    "varIdent",
    "varPower_fitted",
    "varPower_strata",
    "varExp",
    "varExp_fitted_strata",
    "varConstPower",
    "varConstPower_fitted_strata",
    "varFixed",
    "varComb_corCAR1",
    "varPower_corAR1",
]


def _structured_case(case, overrides=None, route="generic"):
    from test_residual_bayes import CASES, _model

    from bayesmix.bayes.generic.residual_program import structured_program
    from bayesmix.bayes.residual_model import build_structured_model
    from bayesmix.bayes.residual_priors import resolve_structured_priors

    assert case in CASES
    m = _model(case)
    design = m.design.offset_absorbed()
    priors, params = resolve_structured_priors(design, m.residual, overrides)
    model = build_structured_model(m.design, m.residual, priors, params)
    return model, structured_program(model, m.design, m.residual, priors, params, route=route)


@pytest.mark.parametrize("case", RESIDUAL_COVERED)
def test_residual_structure_density_and_gradient_equal_pymc(case):
    """Including the starts the model sets (small group SDs under fitted-value variances)."""
    model, program = _structured_case(case)
    _assert_matches(model, program, scale=0.3)


def test_every_residual_case_is_covered():
    from test_residual_bayes import CASES

    assert sorted(RESIDUAL_COVERED) == sorted(CASES)


def test_auto_compiles_corarma_where_the_kernel_samples_slower():
    assert _structured_case("corARMA11", route="auto")[1] is None
    assert _structured_case("corAR1", route="auto")[1] is not None


def test_a_beta_prior_on_the_autocorrelation_is_left_to_its_own_compilation():
    from bayesmix.bayes.residual_priors import Beta

    assert _structured_case("corAR1", {"Phi": Beta(2.0, 2.0)})[1] is None
