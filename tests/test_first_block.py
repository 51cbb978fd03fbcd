"""The compiled first-block arithmetic (bayesmix.ml.first_block) against numpy.

Large first blocks (``COMPILED_FROM`` levels or more) are factored and multiplied
by compiled loops; below that, by numpy's broadcast products and batched LAPACK.
Both must give the same criterion, gradient and ``B`` to rounding, and ``B``
must equal its definition ``Z_r'Z_1 V`` computed from dense indicator matrices.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesmix.ml import deviance as deviance_module
from bayesmix.ml import small_algebra
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.ml.first_block import batched_matmul, first_factor, pair_products
from bayesmix.ml.small_algebra import level_factors


def _stack(rng, m, r, s):
    return rng.normal(size=(m, r, s))


@pytest.mark.parametrize(("ma", "mb"), [(200, 200), (1, 200), (200, 1)])
def test_batched_matmul_equals_numpy(ma, mb):
    rng = np.random.default_rng(1)
    a, b = _stack(rng, ma, 2, 3), _stack(rng, mb, 3, 4)
    np.testing.assert_allclose(batched_matmul(a, b), np.matmul(a, b), rtol=1e-14, atol=1e-14)
    # transposed views are read in place
    at = _stack(rng, ma, 3, 2).transpose(0, 2, 1)
    np.testing.assert_allclose(batched_matmul(at, b), np.matmul(at, b), rtol=1e-14, atol=1e-14)


def test_small_matmul_routes_large_stacks_to_the_compiled_loop(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = _stack(rng, 100, 2, 2), _stack(rng, 100, 2, 3)
    compiled = small_algebra.small_matmul(a, b)
    monkeypatch.setattr(small_algebra, "COMPILED_FROM", 10**9)
    np.testing.assert_allclose(compiled, small_algebra.small_matmul(a, b), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(compiled, np.matmul(a, b), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("k", [2, 3])
def test_first_factor_equals_lapack(k):
    rng = np.random.default_rng(3)
    m = 150
    Z = rng.normal(size=(m, 6, k))
    D = np.einsum("jni,jnk->jik", Z, Z)  # Z_j'Z_j of each level
    T1 = np.tril(rng.normal(size=(k, k)))
    L1inv, logdet = first_factor(T1, D)
    L = np.linalg.cholesky(np.einsum("ca,jcd,db->jab", T1, D, T1) + np.eye(k))
    np.testing.assert_allclose(L1inv, np.linalg.inv(L), rtol=1e-12, atol=1e-13)
    expected = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
    assert logdet == pytest.approx(expected, rel=1e-13)


def test_first_factor_of_a_non_finite_theta_is_nan():
    D = np.tile(np.eye(2), (80, 1, 1))
    _, logdet = first_factor(np.array([[np.nan, 0.0], [0.0, 1.0]]), D)
    assert np.isnan(logdet)


def test_level_factors_compiled_and_numpy_agree(monkeypatch):
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(90, 5, 2))
    D = np.einsum("jni,jnk->jik", Z, Z)
    T1 = np.array([[0.8, 0.0], [-0.3, 0.5]])
    compiled = level_factors(T1, D)
    monkeypatch.setattr(small_algebra, "COMPILED_FROM", 10**9)
    plain = level_factors(T1, D)
    np.testing.assert_allclose(compiled[0], plain[0], rtol=1e-12, atol=1e-14)
    assert compiled[1] == pytest.approx(plain[1], rel=1e-13)


def test_pair_products_writes_each_product_at_its_destination():
    rng = np.random.default_rng(5)
    a, V = rng.normal(size=(30, 1, 2)), rng.normal(size=(12, 2, 2))
    level = rng.integers(0, 12, 30)
    dest = rng.permutation(60)
    out = np.full(60, np.nan)
    pair_products(a, level, V, dest, out)
    np.testing.assert_allclose(out[dest], np.matmul(a, V[level]).ravel(), rtol=1e-14)


def _crossed_slopes(seed: int, m1: int = 120, m2: int = 30, n: int = 1500):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, m1, n), rng.integers(0, m2, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=m1)[g1] + 0.4 * rng.normal(size=m1)[g1] * x
    y = y + 0.7 * rng.normal(size=m2)[g2] + rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    blocks = [
        (g1, np.column_stack([np.ones(n), x]), m1, "unstructured"),
        (g2, np.ones((n, 1)), m2, "unstructured"),
    ]
    return y, X, blocks


@pytest.mark.parametrize("sparse_B", [False, True])
def test_kernel_with_compiled_first_block_equals_numpy(monkeypatch, sparse_B):
    if sparse_B:  # B stored in compressed sparse columns whatever its size
        monkeypatch.setattr(deviance_module, "_DENSE_B_ALWAYS", 0)
        monkeypatch.setattr(deviance_module, "_DENSE_B_MAX", 0)
    y, X, blocks = _crossed_slopes(6)
    theta = np.array([0.9, -0.2, 0.4, 0.6])
    compiled = ProfiledDeviance(y, X, blocks)
    assert compiled._dense_B is not sparse_B
    values = {reml: compiled.value_and_gradient(theta, reml) for reml in (False, True)}
    monkeypatch.setattr(small_algebra, "COMPILED_FROM", 10**9)
    plain = ProfiledDeviance(y, X, blocks)
    for reml in (False, True):
        value, gradient = plain.value_and_gradient(theta, reml)
        assert values[reml][0] == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(values[reml][1], gradient, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("sparse_B", [False, True])
def test_B_equals_its_definition(monkeypatch, sparse_B):
    if sparse_B:
        monkeypatch.setattr(deviance_module, "_DENSE_B_ALWAYS", 0)
        monkeypatch.setattr(deviance_module, "_DENSE_B_MAX", 0)
    y, X, blocks = _crossed_slopes(7)
    K = ProfiledDeviance(y, X, blocks)
    (g1, Z1, m1, _), (g2, _, m2, _) = blocks
    T1 = np.array([[0.9, 0.0], [-0.2, 0.4]])
    L1inv, _ = level_factors(T1, K._D)
    V = np.matmul(T1[None], L1inv.transpose(0, 2, 1))
    B = K._B(V)
    B = B if isinstance(B, np.ndarray) else B.toarray()
    # definition: Z_r'Z_1 blockdiag(V_j), from dense indicator-times-covariate matrices
    n = len(y)
    Z1_dense = np.zeros((n, 2 * m1))
    for s in range(2):
        Z1_dense[np.arange(n), 2 * g1 + s] = Z1[:, s]
    Zr_dense = np.zeros((n, m2))
    Zr_dense[np.arange(n), g2] = 1.0
    V_block = np.zeros((2 * m1, 2 * m1))
    for j in range(m1):
        V_block[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = V[j]
    np.testing.assert_allclose(B, Zr_dense.T @ Z1_dense @ V_block, rtol=1e-12, atol=1e-12)
