"""The PLS kernel at fixed theta: against lme4's devcomp and a dense brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lme4_cases import REF_IDS, REFS, load_case

from bayesmix.datasets import load_dataset
from bayesmix.errors import FitError
from bayesmix.ml import deviance as ml_deviance
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.spec import covariance
from bayesmix.spec.design import build_design


def kernel_of(design) -> ProfiledDeviance:
    return ProfiledDeviance(
        design.y, design.X, [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    )


@pytest.fixture(scope="module", params=REF_IDS)
def ref_case(request):
    design, ref, method = load_case(request.param)
    return design, ref, method == "REML"


def test_criterion_at_lme4_theta_matches_devcomp(ref_case):
    design, ref, reml = ref_case
    theta = np.array(list(ref["theta"].values()))
    sol = kernel_of(design).solve(theta, reml=reml)
    dc = ref["devcomp"]
    np.testing.assert_allclose(sol.criterion, dc["REML" if reml else "dev"], rtol=1e-8)
    np.testing.assert_allclose(sol.criterion, ref["deviance"], rtol=1e-8)
    np.testing.assert_allclose(sol.ldL2, dc["ldL2"], rtol=1e-8)
    np.testing.assert_allclose(sol.ldRX2, dc["ldRX2"], rtol=1e-8)
    np.testing.assert_allclose(sol.pwrss, dc["pwrss"], rtol=1e-8)
    np.testing.assert_allclose(sol.sigma, dc["sigmaREML" if reml else "sigmaML"], rtol=1e-8)
    np.testing.assert_allclose(sol.beta, list(ref["fixef"].values()), rtol=1e-8)
    ussq = sum(float((u**2).sum()) for u in sol.u)
    np.testing.assert_allclose(ussq, dc["ussq"], rtol=1e-7)


def test_modes_and_conditional_sd_at_lme4_theta(ref_case):
    design, ref, reml = ref_case
    theta = np.array(list(ref["theta"].values()))
    kernel = kernel_of(design)
    sol = kernel.solve(theta, reml=reml)
    cond_var = kernel.conditional_variances(theta, sol.sigma)
    (grouping,) = ref["ranef"]
    block_b = np.column_stack(sol.b)  # (Days || Subject) may be split in blocks
    block_sd = np.column_stack([np.sqrt(np.diagonal(v, axis1=1, axis2=2)) for v in cond_var])
    levels = design.blocks[0].levels
    for level, values in ref["ranef"][grouping].items():
        i = levels.index(level)
        np.testing.assert_allclose(block_b[i], list(values.values()), rtol=1e-6, atol=1e-8)
        sds = list(ref["ranef_cond_sd"][grouping][level].values())
        np.testing.assert_allclose(block_sd[i], sds, rtol=1e-6)


def test_criterion_moves_away_from_lme4_theta(ref_case):
    """Guard against a tautology: a different theta gives a worse criterion."""
    design, ref, reml = ref_case
    theta = np.array(list(ref["theta"].values()))
    kernel = kernel_of(design)
    assert kernel(theta * 1.3, reml=reml) > kernel(theta, reml=reml) + 1e-3


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_uncorrelated_slope_as_two_scalar_blocks(method):
    """(1 | Subject) + (0 + Days | Subject): two blocks sharing a grouping factor."""
    ref = json.loads((REFS / f"sleepstudy_slope_uncorr_{method}.json").read_text())
    design = build_design("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    (block,) = design.blocks
    blocks = [
        (block.codes, block.Z[:, [0]], block.n_levels, "unstructured"),
        (block.codes, block.Z[:, [1]], block.n_levels, "unstructured"),
    ]
    kernel = ProfiledDeviance(design.y, design.X, blocks)
    assert kernel._q_r == block.n_levels  # the second block went to the dense part
    theta = np.array(list(ref["theta"].values()))
    np.testing.assert_allclose(kernel(theta, reml=method == "reml"), ref["deviance"], rtol=1e-8)


def test_too_many_effects_outside_the_first_block(monkeypatch):
    monkeypatch.setattr(ml_deviance, "_MAX_DENSE_REST", 10)
    y, X, blocks = random_design(3, first_has_slope=False)
    with pytest.raises(FitError, match="at most 10"):
        ProfiledDeviance(y, X, blocks)


# --------------------------------------------------------------- brute force
def random_design(seed: int, first_has_slope: bool):
    """Nested + crossed + random-slope blocks on an unbalanced random layout."""
    rng = np.random.default_rng(seed)
    n = 150
    g1 = rng.integers(0, 6, n)  # 6 outer groups
    g2 = g1 * 4 + rng.integers(0, 4, n)  # nested within g1: up to 24 levels
    h = rng.integers(0, 5, n)  # crossed with both
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    y = X @ [1.0, -0.5, 0.3] + rng.normal(size=6)[g1] + rng.normal(size=24)[g2] + rng.normal(size=n)
    _, g2 = np.unique(g2, return_inverse=True)
    ones = np.ones((n, 1))
    slope = np.column_stack([np.ones(n), x])
    if first_has_slope:  # slope block has the most effects; a diagonal block in the rest
        blocks = [
            (g2, slope, g2.max() + 1, "unstructured"),
            (h, slope, 5, "diagonal"),
            (g1, ones, 6, "unstructured"),
        ]
    else:  # scalar nested block first; an unstructured slope block in the rest
        blocks = [
            (g1, ones, 6, "unstructured"),
            (h, slope, 5, "unstructured"),
            (g2, ones, g2.max() + 1, "unstructured"),
        ]
    return y, X, blocks


def dense_pieces(y, X, blocks, theta):
    """Dense Z Lambda and the marginal covariance Sigma = Z Lambda Lambda'Z' + I."""
    n = len(y)
    kinds, sizes = [b[3] for b in blocks], [b[1].shape[1] for b in blocks]
    factors = covariance.factors_from_theta(theta, kinds, sizes)
    parts = []
    for (codes, Z, m, _), T in zip(blocks, factors):
        k = Z.shape[1]
        Zi = np.zeros((n, m * k))
        for t in range(k):
            Zi[np.arange(n), codes * k + t] = Z[:, t]
        parts.append(Zi @ np.kron(np.eye(m), T))
    ZL = np.hstack(parts)
    return ZL, ZL @ ZL.T + np.eye(n)


def brute_force(y, X, blocks, theta, reml):
    n, p = X.shape
    ZL, Sigma = dense_pieces(y, X, blocks, theta)
    Si = np.linalg.inv(Sigma)
    XtSiX = X.T @ Si @ X
    beta = np.linalg.solve(XtSiX, X.T @ Si @ y)
    r = y - X @ beta
    dof = n - p if reml else n
    s2 = r @ Si @ r / dof
    crit = dof * np.log(2 * np.pi * s2) + np.linalg.slogdet(Sigma)[1] + dof
    if reml:
        crit += np.linalg.slogdet(XtSiX)[1]
    # Conditional modes of u and (L L')^-1 from the dense system.
    A = ZL.T @ ZL + np.eye(ZL.shape[1])
    u = np.linalg.solve(A, ZL.T @ r)
    return crit, beta, np.sqrt(s2), u, np.linalg.inv(A), s2 * np.linalg.inv(XtSiX)


@pytest.mark.parametrize("first_has_slope", [False, True])
@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("dense_B", [False, True])
def test_kernel_matches_dense_brute_force(first_has_slope, reml, dense_B, monkeypatch):
    monkeypatch.setattr(ml_deviance, "_DENSE_SPEEDUP", 1e12 if dense_B else 0.0)
    monkeypatch.setattr(ml_deviance, "_DENSE_B_ALWAYS", 0)  # the cost rule alone decides
    y, X, blocks = random_design(3, first_has_slope)
    kernel = ProfiledDeviance(y, X, blocks)
    assert kernel._dense_B is dense_B
    rng = np.random.default_rng(7)
    theta = kernel.initial_theta + rng.uniform(-0.4, 0.6, kernel.n_theta)
    theta = np.maximum(theta, kernel.lower_bounds + 0.05)
    crit, beta, sigma, u, A_inv, vcov = brute_force(y, X, blocks, theta, reml)
    sol = kernel.solve(theta, reml=reml)
    np.testing.assert_allclose(sol.criterion, crit, rtol=1e-10)
    np.testing.assert_allclose(kernel(theta, reml=reml), crit, rtol=1e-10)
    np.testing.assert_allclose(sol.beta, beta, rtol=1e-9)
    np.testing.assert_allclose(sol.sigma, sigma, rtol=1e-9)
    np.testing.assert_allclose(
        np.concatenate([ui.ravel() for ui in sol.u]), u, rtol=1e-8, atol=1e-10
    )
    RXinv = np.linalg.inv(sol.RX)
    np.testing.assert_allclose(sol.sigma**2 * RXinv @ RXinv.T, vcov, rtol=1e-8)
    # conditional variances: sigma^2 T [(LL')^-1 diagonal block] T'
    factors = covariance.factors_from_theta(theta, kernel.kinds, kernel.sizes)
    cond = kernel.conditional_variances(theta, sol.sigma)
    offset = 0
    for (_codes, Z, m, _), T, cv, b, ui in zip(blocks, factors, cond, sol.b, sol.u):
        k = Z.shape[1]
        np.testing.assert_allclose(b, ui @ T.T)
        for level in range(m):
            sl = slice(offset + level * k, offset + (level + 1) * k)
            expected = sol.sigma**2 * T @ A_inv[sl, sl] @ T.T
            np.testing.assert_allclose(cv[level], expected, rtol=1e-8, atol=1e-12)
        offset += m * k
    # fitted values X beta + Z b
    ZL, _ = dense_pieces(y, X, blocks, theta)
    np.testing.assert_allclose(kernel.fitted(sol.beta, sol.b), X @ sol.beta + ZL @ u, rtol=1e-9)


@pytest.mark.parametrize("reml", [False, True])
def test_no_random_effects_is_least_squares(reml):
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(40), rng.normal(size=(40, 2))])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=40)
    sol = ProfiledDeviance(y, X, []).solve(np.empty(0), reml=reml)
    beta, rss = np.linalg.lstsq(X, y, rcond=None)[:2]
    dof = 40 - 3 if reml else 40
    crit = dof * (1 + np.log(2 * np.pi * rss[0] / dof))
    if reml:
        crit += np.linalg.slogdet(X.T @ X)[1]
    np.testing.assert_allclose(sol.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(sol.criterion, crit, rtol=1e-12)
    assert sol.ldL2 == 0.0 and sol.b == ()


def test_rank_deficient_X_raises():
    X = np.column_stack([np.ones(10), np.ones(10)])
    with pytest.raises(FitError, match="rank deficient"):
        ProfiledDeviance(np.arange(10.0), X, [])(np.empty(0))


# --------------------------------------------------------------- covariance
def test_theta_layout_and_names_follow_lme4():
    T = covariance.theta_to_factor(np.array([1.0, 2.0, 3.0]), "unstructured", 2)
    np.testing.assert_array_equal(T, [[1.0, 0.0], [2.0, 3.0]])
    T3 = covariance.theta_to_factor(np.arange(1.0, 7.0), "unstructured", 3)
    np.testing.assert_array_equal(T3, [[1, 0, 0], [2, 4, 0], [3, 5, 6]])  # column-major
    np.testing.assert_array_equal(
        covariance.factor_to_theta(T3, "unstructured"), np.arange(1.0, 7.0)
    )
    assert covariance.theta_names("Subject", ("Intercept", "Days"), "unstructured") == [
        "Subject.Intercept",
        "Subject.Days.Intercept",
        "Subject.Days",
    ]
    assert covariance.theta_names("Subject", ("Intercept", "Days"), "diagonal") == [
        "Subject.Intercept",
        "Subject.Days",
    ]
    np.testing.assert_array_equal(covariance.lower_bounds("unstructured", 2), [0, -np.inf, 0])
    np.testing.assert_array_equal(covariance.initial_theta("unstructured", 2), [1, 0, 1])
    with pytest.raises(ValueError, match="needs 3"):
        covariance.theta_to_factor(np.ones(2), "unstructured", 2)


def test_covariance_round_trip_and_sd_corr():
    cov = np.array([[4.0, 1.2], [1.2, 9.0]])
    theta = covariance.covariance_to_theta(cov, sigma=2.0, kind="unstructured")
    T = covariance.theta_to_factor(theta, "unstructured", 2)
    np.testing.assert_allclose(covariance.block_covariance(T, 2.0), cov, rtol=1e-10)
    sd, corr = covariance.sd_corr(cov)
    np.testing.assert_allclose(sd, [2.0, 3.0])
    np.testing.assert_allclose(corr[0, 1], 0.2)
    sd0, corr0 = covariance.sd_corr(np.diag([0.0, 1.0]))
    assert np.isnan(corr0[0, 1]) and sd0[0] == 0.0
