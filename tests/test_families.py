"""The GLMM families of bayesmix.spec.families against closed forms and R's values.

Log-likelihoods are checked against the densities written out by hand (to
1e-12), links against their definitions and numerical derivatives, and
deviance residuals against R's ``family()$dev.resids`` (values quoted in the
test, R 4.2.2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesmix.errors import ArgumentError, DataError
from bayesmix.spec.families import FAMILIES, LINKS, family

ETA = np.linspace(-3.0, 3.0, 13)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_links_invert_and_differentiate(name):
    link = LINKS[name]
    eta = ETA if name not in ("log", "sqrt", "inverse") else np.linspace(0.2, 3.0, 13)
    if name == "cloglog":  # mu = 1 - exp(-e^3) rounds to within 2e-9 of 1: g(mu) loses digits
        eta = np.linspace(-3.0, 1.5, 13)
    mu = link.inverse(eta)
    np.testing.assert_allclose(link.link(mu), eta, rtol=1e-10, atol=1e-10)
    h = 1e-6
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-7, atol=1e-10)


def test_loglik_closed_forms():
    y = np.array([0.0, 1.0, 3.0, 7.0])
    mu = np.array([0.5, 1.5, 2.0, 6.0])
    poisson = family("poisson").loglik(y, mu)
    expected = [k * math.log(m) - m - math.lgamma(k + 1) for k, m in zip(y, mu)]
    np.testing.assert_allclose(poisson, expected, rtol=1e-12)
    theta = 2.5
    nb = family("negbinomial").loglik(y, mu, dispersion=theta)
    expected = [
        math.lgamma(k + theta) - math.lgamma(theta) - math.lgamma(k + 1)
        + theta * math.log(theta / (theta + m)) + k * math.log(m / (theta + m))
        for k, m in zip(y, mu)
    ]  # fmt: skip
    np.testing.assert_allclose(nb, expected, rtol=1e-12)
    shape = 3.0
    positive = np.array([0.5, 1.0, 2.5, 4.0])
    gamma = family("gamma").loglik(positive, mu, dispersion=shape)
    expected = [
        shape * math.log(shape / m) + (shape - 1) * math.log(v) - shape * v / m - math.lgamma(shape)
        for v, m in zip(positive, mu)
    ]
    np.testing.assert_allclose(gamma, expected, rtol=1e-12)


def test_binomial_proportions_with_trials():
    """y = successes / n with weights n: log C(n, s) + s log mu + (n - s) log(1 - mu)."""
    n = np.array([1.0, 5.0, 10.0, 4.0])
    s = np.array([1.0, 2.0, 0.0, 4.0])
    mu = np.array([0.3, 0.4, 0.1, 0.9])
    got = family("binomial").loglik(s / n, mu, weights=n)
    expected = [
        math.lgamma(k + 1) - math.lgamma(j + 1) - math.lgamma(k - j + 1)
        + j * math.log(m) + (k - j) * math.log(1 - m)
        for k, j, m in zip(n, s, mu)
    ]  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_deviance_residuals_match_r():
    """R 4.2.2: sign(y - mu) * sqrt(<family>()$dev.resids(y, mu, 1)), printed to 15 digits."""
    y = np.array([0.0, 1.0, 3.0, 7.0])
    mu = np.array([0.5, 1.5, 2.0, 6.0])
    r_poisson = [-1.000000000000000, -0.434821553954805, 0.657868260861539, 0.397629875112041]
    np.testing.assert_allclose(family("poisson").deviance_residuals(y, mu), r_poisson, rtol=1e-13)
    binomial = family("binomial").deviance_residuals(np.array([0.0, 1.0]), np.array([0.2, 0.2]))
    np.testing.assert_allclose(binomial, [-0.668047230836578, 1.794122577994101], rtol=1e-13)
    gamma = family("gamma").deviance_residuals(np.array([0.5, 1.0, 2.5]), np.array([1.0, 1.5, 2.0]))
    r_gamma = [-0.621525833026987, -0.379820417499721, 0.231760430987648]
    np.testing.assert_allclose(gamma, r_gamma, rtol=1e-13)


def test_saturated_loglik_is_the_maximum():
    y = np.array([0.0, 2.0, 5.0])
    poisson = family("poisson")
    sat = poisson.saturated_loglik(y)
    for mu in (np.array([0.1, 1.9, 5.2]), np.array([1.0, 2.5, 4.0])):
        assert np.all(sat >= poisson.loglik(y, mu))
    np.testing.assert_allclose(sat[0], 0.0)


def test_family_lookup_and_errors():
    assert family("poisson").link.name == "log"
    assert family("binomial", "probit").link.name == "probit"
    assert family("nbinom2").name == "negbinomial"
    assert set(FAMILIES) == {"gaussian", "binomial", "poisson", "negbinomial", "gamma"}
    with pytest.raises(ArgumentError, match="unknown family 'poison'"):
        family("poison")
    with pytest.raises(ArgumentError, match="takes the link 'logit' or 'probit' or 'cloglog'"):
        family("binomial", "log")


@pytest.mark.parametrize(
    ("name", "y", "weights", "match"),
    [
        ("poisson", [0, 1, -2], None, "1 response value\\(s\\) are negative"),
        ("poisson", [0, 1.5, 2], None, "not whole numbers"),
        ("negbinomial", [0, 0.2], None, "not whole numbers"),
        ("binomial", [0, 1, 2], None, "proportion in \\[0, 1\\]"),
        ("binomial", [0.5, 0.25], [2, 0], "positive whole numbers"),
        ("binomial", [0.5, 0.3], [2, 4], "whole numbers of successes"),
        ("gamma", [1.0, 0.0], None, "positive response"),
    ],
)
def test_bad_responses_are_refused(name, y, weights, match):
    with pytest.raises(DataError, match=match):
        family(name).check_response(np.array(y, dtype=float), weights)


def test_non_integer_counts_on_request():
    family("poisson").check_response(np.array([0.5, 1.5]), allow_non_integer=True)


def test_families_pickle():
    import pickle

    for name, (links, _) in FAMILIES.items():
        for link in links:
            restored = pickle.loads(pickle.dumps(family(name, link)))
            np.testing.assert_allclose(restored.link.inverse(ETA[:3]), LINKS[link].inverse(ETA[:3]))
