"""The compiled PIRLS kernels and loop give the numpy reference's numbers.

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
from bayesmix.ml import pirls_blocks as blocks
from bayesmix.ml import pirls_kernel as kernel
from bayesmix.ml.glmm_laplace import LaplaceProblem
from bayesmix.ml.pirls_system import NumpySystem


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


def problem_of(formula, family, link, zi, dispersion):
    model = bmx.glmm(formula, simulated(), family, link=link, ziformula=zi)
    problem = LaplaceProblem(model.design, model.family, zi_X=model.zi_X)
    problem.dispersion = dispersion
    if zi is not None:
        problem.set_zi_beta(np.linspace(-1.0, 0.5, model.zi_X.shape[1]))
    return problem


@pytest.mark.parametrize("formula, family, link, zi, dispersion", CASES)
def test_compiled_kernels_match_numpy(formula, family, link, zi, dispersion):
    """The row-wise log-likelihood, its derivatives and the blocked solve."""
    problem = problem_of(formula, family, link, zi, dispersion)
    rng = np.random.default_rng(1)
    theta = np.abs(problem.initial_theta()) * 0.7 + 0.05
    reference = NumpySystem(problem, theta)
    # small effects under the inverse link, whose means must stay positive
    u = rng.normal(scale=0.01 if link == "inverse" else 0.3, size=problem.q)
    beta = problem.start_beta()
    if link == "inverse":  # a start with every mean positive (1 / eta)
        beta = np.array([1.0 / float(np.mean(problem.y)), 0.0])
    value, eta = reference.penalised(u, beta)
    mu, ll, d1, d2, fisher = reference.derivatives(eta)
    k = problem.kernel_data
    zi_eta = np.zeros(0) if problem.response.zi_eta is None else problem.response.zi_eta
    out = [np.empty(len(eta)) for _ in range(4)]
    disp = 0.0 if dispersion is None else dispersion
    total = kernel.evaluate(k.family, k.link, k.y, k.n, k.s, k.const, eta, disp, zi_eta, True, *out)
    assert total == pytest.approx(float(np.sum(ll)), rel=1e-12)
    for got, want in zip(out, (mu, d1, d2, fisher)):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)
    ZL, pat = problem.z_lambda(theta), problem.pattern
    VAL = np.ascontiguousarray(np.hstack(ZL.V))
    np.testing.assert_allclose(
        kernel.zt_times(pat.IDX, VAL, d1, problem.q), reference.gradient(d1, u, False) + u
    )
    W = problem._step_weights(fisher, d2)
    for bordered in (False, True):
        X = problem.X_c if bordered else problem.X_c[:, :0]
        g = reference.gradient(d1, u, bordered)
        x, log_det, ok = blocks.schur_solve(
            W, g, pat.codes[pat.first], pat.k1, pat.m1, pat.idx1,
            np.ascontiguousarray(ZL.val1), pat.idx_r, np.ascontiguousarray(ZL.val_r),
            pat.q_r, X, X.shape[1], pat.index1, pat.index_r, pat.q, pat.lvl_ptr, pat.lvl_rows,
        )  # fmt: skip
        assert ok
        np.testing.assert_allclose(x, reference.solve(W, g, bordered), rtol=1e-10, atol=1e-12)
        if not bordered:
            assert log_det == pytest.approx(reference.log_det(W), rel=1e-10)


# the inverse link's generic start (start_beta) gives negative means here
@pytest.mark.parametrize(
    "formula, family, link, zi, dispersion", [c for c in CASES if c[2] != "inverse"]
)
def test_compiled_pirls_matches_the_python_loop(formula, family, link, zi, dispersion):
    """The whole loop (bayesmix.ml.pirls_loop) against the Python one on numpy's system:
    the same conditional modes, beta and Laplace objective."""
    theta = None
    results = []
    for dense in (True, False):
        problem = problem_of(formula, family, link, zi, dispersion)
        problem.pattern.dense = dense  # False: the Python loop with numpy
        theta = np.abs(problem.initial_theta()) * 0.7 + 0.05
        first = problem.pirls(theta, problem.start_beta(), update_beta=True)
        second = problem.pirls(theta * 1.1, first.beta)
        results.append((first, second))
    for compiled, python in zip(*results):
        assert compiled.converged and python.converged
        np.testing.assert_allclose(compiled.u, python.u, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(compiled.beta, python.beta, rtol=1e-8, atol=1e-10)
        assert compiled.objective == pytest.approx(python.objective, rel=1e-11)


def test_indefinite_observed_information_is_a_fit_error():
    problem = problem_of("count ~ x + (1 | g)", "poisson", "log", "~1", None)
    system = NumpySystem(problem, np.array([1.0]))
    pat = problem.pattern
    ZL = problem.z_lambda(np.array([1.0]))
    W = np.full(len(problem.y), -50.0)
    _, _, ok = blocks.schur_solve(
        W, np.zeros(problem.q), pat.codes[pat.first], pat.k1, pat.m1, pat.idx1,
        np.ascontiguousarray(ZL.val1), pat.idx_r, np.ascontiguousarray(ZL.val_r), pat.q_r,
        problem.X_c[:, :0], 0, pat.index1, pat.index_r, pat.q, pat.lvl_ptr, pat.lvl_rows,
    )  # fmt: skip
    assert not ok
    with pytest.raises(bmx.FitError, match="not positive definite"):
        system.log_det(W)


def test_cholesky_skips_zeros_and_agrees_with_lapack():
    """The Schur complement's factor: over nonzero entries when mostly zero (nested
    factors), LAPACK otherwise; both equal numpy's, and an indefinite S is reported."""
    from bayesmix.ml.pirls_blocks import _cholesky

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
