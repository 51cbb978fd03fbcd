"""The profiled criterion from summed chunk products equals the one from all rows (issue 19).

Every field of :class:`~bayesmix.ml.cross_products.CrossProducts` is a sum over
rows, so a kernel built from the products of any chunking of the rows must give
the criterion, gradient and estimates of the kernel built from the rows, to
rounding. Checked on crossed, nested and correlated-slope models, with chunks
missing whole levels.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import bayesmix as bmx
from bayesmix.ml.cross_products import add_products
from bayesmix.ml.deviance import ProfiledDeviance

MODELS = {
    "crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "nested": ("Pastes", "strength ~ 1 + (1 | batch) + (1 | batch:cask)"),
    "slopes": (
        "Arabidopsis",
        "log(1 + total.fruits) ~ nutrient * amd + rack + status"
        " + (nutrient | popu) + (nutrient | popu:gen)",
    ),
    "one_block": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "three_blocks": (
        "Arabidopsis",
        "log(1 + total.fruits) ~ nutrient + (1 | reg) + (1 | popu) + (nutrient | popu:gen)",
    ),
}


def _kernel_and_rows(name):
    dataset, formula = MODELS[name]
    design = bmx.lmm(formula, bmx.load_dataset(dataset)).design
    blocks = [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    return ProfiledDeviance(design.y, design.X, blocks), design


def _chunked(kernel, design, n_chunks, rng):
    """A kernel from the products of ``n_chunks`` random row sets (sorted by a column so
    that chunks miss whole levels)."""
    order = np.argsort(design.blocks[0].codes, kind="stable")
    chunks = np.array_split(order, n_chunks)
    ordered = [design.blocks[i] for i in kernel._order]

    def products(rows):
        return kernel.layout_products(
            design.y[rows], design.X[rows], [(b.codes[rows], b.Z[rows]) for b in ordered]
        )

    total = functools.reduce(
        add_products, [products(chunks[i]) for i in rng.permutation(len(chunks))]
    )
    return ProfiledDeviance.from_products(total, kernel.kinds, kernel.sizes, kernel.n_levels)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("n_chunks", [1, 3, 7])
def test_kernel_from_chunk_products_equals_the_kernel_from_rows(name, n_chunks):
    kernel, design = _kernel_and_rows(name)
    other = _chunked(kernel, design, n_chunks, np.random.default_rng(n_chunks))
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = kernel.initial_theta + 0.3 * rng.standard_normal(kernel.n_theta)
        theta = np.maximum(theta, kernel.lower_bounds + 0.05)
        for reml in (True, False):
            value, grad = kernel.value_and_gradient(theta, reml)
            value2, grad2 = other.value_and_gradient(theta, reml)
            assert value2 == pytest.approx(value, rel=1e-12, abs=1e-9)
            np.testing.assert_allclose(grad2, grad, rtol=1e-8, atol=1e-8)
            a, b = kernel.solve(theta, reml), other.solve(theta, reml)
            np.testing.assert_allclose(b.beta, a.beta, rtol=1e-10, atol=1e-10)
            assert b.sigma == pytest.approx(a.sigma, rel=1e-12)
            for u, v in zip(a.b, b.b, strict=True):
                np.testing.assert_allclose(v, u, rtol=1e-9, atol=1e-10)
    assert other.n_obs == kernel.n_obs


def test_a_kernel_from_products_has_no_rows():
    kernel, design = _kernel_and_rows("crossed")
    other = _chunked(kernel, design, 2, np.random.default_rng(1))
    theta = kernel.initial_theta
    var_a = kernel.conditional_variances(theta, 1.0)
    var_b = other.conditional_variances(theta, 1.0)
    for u, v in zip(var_a, var_b, strict=True):
        np.testing.assert_allclose(v, u, rtol=1e-10)
    with pytest.raises(ValueError, match="rows"):
        other.fitted(np.zeros(1), [np.zeros((6, 1)), np.zeros((24, 1))])


@pytest.mark.parametrize(("n_a", "n_b"), [(0, 0), (0, 5), (40, 0), (300, 200)])
def test_adding_pairs_sums_the_values_of_equal_keys(n_a, n_b):
    from bayesmix.ml.cross_products import _add_pairs

    rng = np.random.default_rng(n_a + n_b)
    keys_a = np.unique(rng.integers(0, 500, n_a))
    keys_b = np.unique(rng.integers(0, 500, n_b))
    a = (keys_a, rng.normal(size=(len(keys_a), 1, 2)))
    b = (keys_b, rng.normal(size=(len(keys_b), 1, 2)))
    keys, vals = _add_pairs(a, b)
    expected_keys = np.union1d(keys_a, keys_b)
    np.testing.assert_array_equal(keys, expected_keys)
    expected = np.zeros((len(expected_keys), 1, 2))
    expected[np.searchsorted(expected_keys, keys_a)] += a[1]
    expected[np.searchsorted(expected_keys, keys_b)] += b[1]
    np.testing.assert_allclose(vals, expected, rtol=1e-15, atol=1e-15)
