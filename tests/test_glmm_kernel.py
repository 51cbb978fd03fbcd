"""The compiled PIRLS kernels give the numpy reference's numbers (bayesmix.ml.pirls_system).

Every family and link, zero inflation, scalar and vector-valued blocks, crossed
and nested factors, with and without the fixed effects bordering the system:
log-likelihoods and derivatives to 1e-12 relative, solves and log-determinants
to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.ml.glmm_laplace import LaplaceProblem
from bayesmix.ml.pirls_system import CompiledSystem, NumpySystem


def simulated(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 240
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "g": pd.Categorical(rng.integers(0, 12, n).astype(str)),
            "h": pd.Categorical(rng.integers(0, 5, n).astype(str)),
            "z": rng.normal(size=n),
        }
    )
    mu = np.exp(0.5 + 0.4 * frame["x"])
    frame["count"] = rng.poisson(mu)
    frame["count"] = np.where(rng.random(n) < 0.2, 0, frame["count"])
    frame["binary"] = (rng.random(n) < 0.4).astype(float)
    frame["trials"] = rng.integers(1, 6, n)
    frame["succ"] = rng.binomial(frame["trials"], 0.3)
    frame["pos"] = rng.gamma(3.0, mu / 3.0)
    return frame


CASES = [
    ("cbind(succ, trials - succ) ~ x + (x | g) + (1 | h)", "binomial", "logit", None, None),
    ("binary ~ x + (1 | g) + (1 | g:h)", "binomial", "probit", None, None),
    ("binary ~ x + (1 | g)", "binomial", "cloglog", None, None),
    ("count ~ x + (x | g) + (1 | h)", "poisson", "log", None, None),
    ("I(count + 1) ~ x + (1 | g)", "poisson", "sqrt", None, None),
    ("I(count + 1) ~ x + (1 | g)", "poisson", "identity", None, None),
    ("count ~ x + (1 | g) + (1 | h)", "negbinomial", "log", None, 1.7),
    ("pos ~ x + (x || g)", "gamma", "log", None, 3.0),
    ("pos ~ x + (1 | g)", "gamma", "inverse", None, 3.0),
    ("count ~ x + (1 | g) + (1 | h)", "poisson", "log", "~ z", None),
    ("count ~ x + (x | g)", "negbinomial", "log", "~1", 2.0),
]


@pytest.mark.parametrize("formula, family, link, zi, dispersion", CASES)
def test_compiled_system_matches_numpy(formula, family, link, zi, dispersion):
    model = bmx.glmm(formula, simulated(), family, link=link, ziformula=zi)
    problem = LaplaceProblem(model.design, model.family, zi_X=model.zi_X)
    problem.dispersion = dispersion
    if zi is not None:
        problem.set_zi_beta(np.linspace(-1.0, 0.5, model.zi_X.shape[1]))
    rng = np.random.default_rng(1)
    theta = np.abs(problem.initial_theta()) * 0.7 + 0.05
    compiled, reference = CompiledSystem(problem, theta), NumpySystem(problem, theta)
    # small effects under the inverse link, whose means must stay positive
    u = rng.normal(scale=0.01 if link == "inverse" else 0.3, size=problem.q)
    beta = problem.start_beta()
    if link == "inverse":  # a start with every mean positive (1 / eta)
        beta = np.array([1.0 / float(np.mean(problem.y)), 0.0])
    value_c, eta = compiled.penalised(u, beta)
    value_n, eta_n = reference.penalised(u, beta)
    np.testing.assert_allclose(eta, eta_n, rtol=1e-13)
    assert value_c == pytest.approx(value_n, rel=1e-12)
    mu_c, total, d1_c, d2_c, fisher_c = compiled.derivatives(eta)
    mu_n, ll, d1_n, d2_n, fisher_n = reference.derivatives(eta_n)
    assert total == pytest.approx(float(np.sum(ll)), rel=1e-12)
    for got, want in ((mu_c, mu_n), (d1_c, d1_n), (d2_c, d2_n), (fisher_c, fisher_n)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)
    W = problem._step_weights(fisher_c, d2_c)
    for bordered in (False, True):
        g = compiled.gradient(d1_c, u, bordered)
        np.testing.assert_allclose(g, reference.gradient(d1_n, u, bordered), rtol=1e-12)
        np.testing.assert_allclose(
            compiled.solve(W, g, bordered), reference.solve(W, g, bordered), rtol=1e-10, atol=1e-12
        )
    assert compiled.log_det(W) == pytest.approx(reference.log_det(W), rel=1e-10)


def test_indefinite_observed_information_is_a_fit_error():
    model = bmx.glmm("count ~ x + (1 | g)", simulated(), "poisson", ziformula="~1")
    problem = LaplaceProblem(model.design, model.family, zi_X=model.zi_X)
    problem.set_zi_beta(np.array([0.0]))
    system = CompiledSystem(problem, np.array([1.0]))
    with pytest.raises(bmx.FitError, match="not positive definite"):
        system.log_det(np.full(len(problem.y), -50.0))


def test_cholesky_skips_zeros_and_agrees_with_lapack():
    """The Schur complement's factor: over nonzero entries when mostly zero (nested
    factors), LAPACK otherwise; both equal numpy's, and an indefinite S is reported."""
    from bayesmix.ml.pirls_kernel import _cholesky

    rng = np.random.default_rng(3)
    d = 40
    sparse = np.eye(d) * 4.0
    for i in range(30):  # a diagonal part coupled to the last 10 rows only
        sparse[i, 30 + i % 10] = sparse[30 + i % 10, i] = 0.5
    M = rng.normal(size=(d, d))
    dense = M @ M.T + d * np.eye(d)
    for S in (sparse, dense):
        L, positive = _cholesky(S)
        assert positive
        np.testing.assert_allclose(L, np.linalg.cholesky(S), rtol=1e-12, atol=1e-14)
    indefinite = sparse.copy()
    indefinite[35, 35] = -1.0
    assert not _cholesky(indefinite)[1]
