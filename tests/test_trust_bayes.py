"""Bad arguments on the Bayesian path fail with bayesmix errors that name them.

Each check runs before the model is built or compiled, so every error case is
instant. One tiny sleepstudy model is sampled once (the smallest run the
diagnostics allow: 1 chain x 8 draws) for the result-method and seed tests;
later samples of the same model reuse its compilation.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import bayesmix as bmx
from bayesmix.errors import ArgumentError, PriorError, SamplingWarning

pytest.importorskip("pymc")
pytest.importorskip("nutpie")

from bayesmix.bayes.fit import sample_model  # noqa: E402
from bayesmix.bayes.validate import MIN_DRAWS  # noqa: E402
from bayesmix.nonlinear.bayes_results import NLBayesResult  # noqa: E402

TINY = {"draws": MIN_DRAWS, "tune": 20, "chains": 1}
BAD_PROBABILITIES = [1.5, 0, 1, "0.9", math.nan, True, -0.1]


def _quiet_sample(model, **options):
    # R-hat and ESS of 8 draws are poor by design: the warning is expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return model.sample(**{**TINY, **options})


@pytest.fixture(scope="module")
def model():
    return bmx.lmm("Reaction ~ Days + (1 | Subject)", bmx.load_dataset("sleepstudy"))


@pytest.fixture(scope="module")
def fit(model):
    return _quiet_sample(model, random_seed=1)


@pytest.fixture(scope="module")
def nl_model():
    return bmx.nlmm(
        "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        bmx.load_dataset("Theoph"),
        params={"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"},
        cov={"Subject": "diagonal"},
    )


def test_argument_error_is_exported_and_catchable_as_builtins():
    assert bmx.ArgumentError is ArgumentError
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, TypeError)


# ------------------------------------------------------------------ random_seed


@pytest.mark.parametrize("seed", [-1, 2**63, 2**70, "abc", 1.5, True, [1, 2]])
def test_bad_random_seed_is_refused(model, nl_model, seed):
    with pytest.raises(ArgumentError, match="random_seed must be None, an integer from 0"):
        model.sample(random_seed=seed)
    with pytest.raises(ArgumentError, match="random_seed"):
        nl_model.sample(random_seed=seed)


def test_large_integer_and_generator_seeds_are_accepted(model, fit):
    largest = _quiet_sample(model, random_seed=2**63 - 1)
    assert largest.idata["posterior"].sizes["draw"] == MIN_DRAWS
    first = _quiet_sample(model, random_seed=np.random.default_rng(7))
    again = _quiet_sample(model, random_seed=np.random.default_rng(7))
    np.testing.assert_array_equal(
        first.idata["posterior"]["sigma"].values, again.idata["posterior"]["sigma"].values
    )
    with pytest.raises(ArgumentError, match="random_seed"):
        fit.predict(random_seed=-1)


# ---------------------------------------------------------------- target_accept


@pytest.mark.parametrize("value", ["high", *BAD_PROBABILITIES])
def test_bad_target_accept_is_refused(model, nl_model, value):
    with pytest.raises(ArgumentError, match="target_accept must lie strictly between 0 and 1"):
        model.sample(target_accept=value)
    with pytest.raises(ArgumentError, match="target_accept"):
        nl_model.sample(target_accept=value)


# ---------------------------------------------------------- draws, tune, chains


@pytest.mark.parametrize(
    "options, message",
    [
        ({"draws": 0}, r"draws must be an integer >= 1, got 0 \(int\)"),
        ({"draws": -5}, "draws must be an integer >= 1"),
        ({"draws": 100.0}, r"draws must be an integer >= 1, got 100.0 \(float\)"),
        ({"draws": True}, r"draws must be an integer >= 1, got True \(bool\)"),
        ({"draws": "100"}, "draws must be an integer >= 1"),
        ({"draws": 1}, "draws=1 is too few: R-hat and bulk ESS need at least 8 draws"),
        ({"draws": MIN_DRAWS - 1}, "draws=7 is too few"),
        ({"tune": -1}, "tune must be an integer >= 0"),
        ({"tune": 0}, "tune=0 is not supported by nutpie"),
        ({"chains": 0}, "chains must be an integer >= 1"),
        ({"chains": 2.5}, "chains must be an integer >= 1"),
        ({"chains": False}, "chains must be an integer >= 1"),
    ],
)
def test_bad_draw_counts_are_refused_before_sampling(model, nl_model, options, message):
    with pytest.raises(ArgumentError, match=message):
        model.sample(**options)
    with pytest.raises(ArgumentError, match=message):
        nl_model.sample(**options)


def test_smallest_run_gives_a_usable_result(fit):
    assert fit.idata["posterior"].sizes["chain"] == 1
    assert fit.idata["posterior"].sizes["draw"] == MIN_DRAWS
    assert list(fit.fixef().index) == ["Intercept", "Days"]
    assert np.isfinite(fit.diagnostics()["max_r_hat"])
    assert "Reaction ~ Days" in str(fit.summary())


# ---------------------------------------------------------------- sampler, compile


@pytest.mark.parametrize("sampler", ["foo", None, "NUTPIE"])
def test_unknown_sampler_is_named(model, nl_model, sampler):
    with pytest.raises(ArgumentError, match=f"Unknown sampler {sampler!r}; use one of 'nutpie'"):
        model.sample(sampler=sampler)
    with pytest.raises(ArgumentError, match="Unknown sampler"):
        nl_model.sample(sampler=sampler)


def test_unknown_compile_route_is_named(model):
    with pytest.raises(ArgumentError, match="Unknown compile 'fast'; use one of 'auto'"):
        sample_model(model.design, compile="fast")


# ----------------------------------------------------------------------- priors


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: bmx.Normal(0, float("nan")), r"Normal: sigma must be a positive finite number"),
        (lambda: bmx.Normal("a", 1), r"Normal: mu must be a finite number, got 'a' \(str\)"),
        (lambda: bmx.Normal(float("inf"), 1), "Normal: mu must be a finite number"),
        (lambda: bmx.Normal(0, np.array([1.0, 2.0])), "Normal: sigma must be a positive"),
        (lambda: bmx.StudentT(nu=0), "StudentT: nu must be a positive finite number"),
        (lambda: bmx.StudentT(mu=None), "StudentT: mu must be a finite number"),
        (lambda: bmx.HalfNormal(float("inf")), "HalfNormal: sigma must be a positive finite"),
        (lambda: bmx.HalfStudentT(3, "2"), "HalfStudentT: sigma must be a positive finite"),
        (lambda: bmx.HalfStudentT(-3, 2), "HalfStudentT: nu must be a positive finite"),
        (lambda: bmx.Exponential(lam=True), r"Exponential: lam must be .*True \(bool\)"),
        (lambda: bmx.LKJ(eta=float("nan")), "LKJ: eta must be a positive finite number"),
    ],
)
def test_bad_prior_parameters_are_refused_at_construction(make, message):
    with pytest.raises(PriorError, match=message):
        make()


def test_prior_parameters_are_stored_as_floats():
    prior = bmx.Normal(np.float32(1), 2)
    assert type(prior.mu) is float and type(prior.sigma) is float
    assert prior == bmx.Normal(1.0, 2.0)


@pytest.mark.parametrize(
    "priors, message",
    [
        ({"Dayz": bmx.Normal()}, r"Unknown prior key\(s\): 'Dayz' \(did you mean 'Days'"),
        ({1: bmx.Normal()}, r"Unknown prior key\(s\): 1\. Valid keys"),
        ({"Days": 3.0}, "Prior for 'Days' must be one of Normal, StudentT"),
        ({"sigma": bmx.Normal()}, "Prior for 'sigma' must be one of HalfNormal"),
        ([bmx.Normal()], "priors must be a dict of key -> prior, got list"),
    ],
)
def test_bad_prior_tables_are_refused(model, nl_model, priors, message):
    with pytest.raises(PriorError, match=message):
        model.sample(priors=priors)
    if not isinstance(priors, dict) or "sigma" in priors:  # keys shared with the nlmm
        with pytest.raises(PriorError, match=message):
            nl_model.sample(priors=priors)


# ---------------------------------------------------------------------- ci_prob


@pytest.mark.parametrize("method", ["fixef", "ranef", "varcorr", "summary", "predict"])
@pytest.mark.parametrize("ci_prob", BAD_PROBABILITIES)
def test_bad_ci_prob_is_refused_by_result_methods(fit, method, ci_prob):
    with pytest.raises(ArgumentError, match="ci_prob must lie strictly between 0 and 1"):
        getattr(fit, method)(ci_prob=ci_prob)


@pytest.mark.parametrize("method", ["coef", "phi", "predict", "summary", "fixef"])
def test_bad_ci_prob_is_refused_by_nonlinear_results(nl_model, method):
    # the check comes first, so a result without draws shows it without sampling
    result = NLBayesResult(
        design=nl_model.design.linear_design(),
        idata=None,
        priors={},
        nonlinear_design=nl_model.design,
    )
    with pytest.raises(ArgumentError, match="ci_prob"):
        getattr(result, method)(ci_prob=1.5)
    if method in ("phi", "predict"):
        with pytest.raises(ArgumentError, match="random_seed"):
            getattr(result, method)(random_seed="abc")
