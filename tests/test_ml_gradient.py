"""The ML engine's speed work (issue 18) computes the same numbers, only faster.

* the exact gradient of the profiled criterion (dense kernel of small models and
  the blocked kernel, dense and sparse ``B``) against central differences, also
  with a variance on its boundary;
* the dense kernel's criterion against the general kernel's;
* the gradient search against BOBYQA's optimum and lme4's (InstEval);
* the sparse ``A - B B'`` and the unbounded search's sign map;
* formula parts built without formulae against formulae's matrices.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
import bayesmix.ml.deviance as ml_deviance
import bayesmix.spec.design as spec_design
from bayesmix.ml import fit as ml_fit
from bayesmix.ml import optimise as ml_optimise
from bayesmix.ml.dense_kernel import DenseCriterion
from bayesmix.ml.dense_solution import DenseKernel
from bayesmix.ml.fit import deviance_function, fit_estimates
from bayesmix.ml.sparse_gram import subtract_gram
from bayesmix.ml.working import working_problem
from bayesmix.spec.covariance import canonical_theta, factors_from_theta
from bayesmix.spec.design import build_design

REFS = Path(__file__).parent / "refs" / "ml_speed"
# central differences with h = 1e-5 on criteria of order 1e2-1e5: ~1e-7 relative
GRADIENT_RTOL = 1e-6


def _random_groups(seed: int = 5, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1, g2, g3 = rng.integers(0, 90, n), rng.integers(0, 25, n), rng.integers(0, 6, n)
    x = rng.normal(size=n)
    y = (
        x
        + rng.normal(size=90)[g1]
        + rng.normal(size=25)[g2] * (1 + x)
        + rng.normal(size=6)[g3]
        + rng.normal(size=n)
    )
    return pd.DataFrame(
        {"y": y, "x": x, "g1": pd.Categorical(g1), "g2": pd.Categorical(g2), "g3": g3.astype(str)}
    )


CASES = {
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    "penicillin": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "pastes": ("Pastes", "strength ~ 1 + (1 | batch/cask)"),
    "orthodont": ("Orthodont", "distance ~ age + Sex + (age | Subject)"),
    "uncorrelated": ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    "vector_rest": (None, "y ~ x + (1 + x | g1) + (1 + x | g2) + (1 | g3)"),
}


def _working(case: str):
    dataset, formula = CASES[case]
    data = _random_groups() if dataset is None else bmx.load_dataset(dataset)
    return working_problem(build_design(formula, data)).design


def _central(fun, theta: np.ndarray, h: float = 1e-5) -> np.ndarray:
    return np.array(
        [(fun(theta + h * e) - fun(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]
    )


def _points(kernel, seed: int) -> list[np.ndarray]:
    """A random interior point and the same point with its first diagonal theta at 0."""
    rng = np.random.default_rng(seed)
    theta = np.maximum(kernel.initial_theta + 0.3 * rng.normal(size=kernel.n_theta), 0.05)
    theta[~np.isfinite(kernel.lower_bounds)] = 0.3 * rng.normal(
        size=int(np.sum(~np.isfinite(kernel.lower_bounds)))
    )
    boundary = theta.copy()
    boundary[0] = 0.0
    return [theta, boundary]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_blocked_gradient_matches_central_differences(case, sparse, reml, monkeypatch):
    if sparse:  # the kernel's sparse B (InstEval's path) on every case
        monkeypatch.setattr(ml_deviance, "_DENSE_B_ALWAYS", 0)
        monkeypatch.setattr(ml_deviance, "_DENSE_SPEEDUP", 0.0)
    kernel = deviance_function(_working(case))
    for theta in _points(kernel, seed=len(case)):
        value, gradient = kernel.value_and_gradient(theta, reml)
        assert value == kernel(theta, reml)
        expected = _central(lambda t: kernel(t, reml), theta)
        np.testing.assert_allclose(gradient, expected, rtol=GRADIENT_RTOL, atol=1e-6)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_dense_kernel_matches_the_general_kernel_and_its_gradient(case, reml):
    design = _working(case)
    kernel = deviance_function(design)
    dense = DenseCriterion(
        design.y, design.X, [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    )
    for theta in _points(kernel, seed=2 * len(case)):
        value, gradient = dense.value_and_gradient(theta, reml)
        assert value == pytest.approx(kernel(theta, reml), rel=1e-13)
        assert dense(theta, reml) == value
        _, blocked = kernel.value_and_gradient(theta, reml)
        np.testing.assert_allclose(gradient, blocked, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_dense_estimates_equal_the_general_kernels(case, reml):
    design = _working(case)
    kernel = deviance_function(design)
    dense = DenseKernel(
        design.y, design.X, [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    )
    assert (dense.n_theta, dense.kinds, dense.sizes) == (kernel.n_theta, kernel.kinds, kernel.sizes)
    np.testing.assert_array_equal(dense.lower_bounds, kernel.lower_bounds)
    np.testing.assert_array_equal(dense.initial_theta, kernel.initial_theta)
    theta = _points(kernel, seed=3 * len(case))[0]
    ours, general = dense.solve(theta, reml), kernel.solve(theta, reml)
    assert ours.criterion == pytest.approx(general.criterion, rel=1e-13)
    for field in ("beta", "sigma", "pwrss", "ldL2", "ldRX2", "RX"):
        np.testing.assert_allclose(
            getattr(ours, field), getattr(general, field), rtol=1e-9, atol=1e-10
        )
    for name in ("u", "b"):
        for a, b in zip(getattr(ours, name), getattr(general, name)):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    for a, b in zip(
        dense.conditional_variances(theta, ours.sigma),
        kernel.conditional_variances(theta, general.sigma),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        dense.fitted(ours.beta, ours.b), kernel.fitted(general.beta, general.b), rtol=1e-10
    )


def test_insteval_gradient_matches_central_differences():
    data = bmx.load_dataset("InstEval")
    design = build_design("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)", data)
    kernel = deviance_function(working_problem(design).design)
    assert not kernel._dense_B  # the sparse path with its compiled B B'
    theta = np.array([0.3, 0.45, 0.1])
    value, gradient = kernel.value_and_gradient(theta, False)
    np.testing.assert_allclose(
        gradient, _central(lambda t: kernel(t, False), theta), rtol=GRADIENT_RTOL
    )


def test_insteval_reaches_lme4s_optimum():
    ref = json.loads((REFS / "insteval_ml.json").read_text())
    model = bmx.lmm(ref["formula"], bmx.load_dataset("InstEval"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = model.fit(method="ML")
    assert fit.loglik >= ref["logLik"] - 1e-6
    assert fit.estimates.converged
    np.testing.assert_allclose(fit.estimates.theta, list(ref["theta"].values()), atol=2e-4)
    np.testing.assert_allclose(fit.fixef()["estimate"], list(ref["fixef"].values()), rtol=1e-4)
    assert fit.estimates.n_evaluations < 60  # BOBYQA took 125 (lme4: 79)


@pytest.mark.parametrize("case", ["vector_rest", "orthodont", "penicillin"])
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_search_reaches_bobyqas_optimum(case, reml):
    kernel = deviance_function(_working(case))

    def canonical(theta):
        return canonical_theta(theta, kernel.kinds, kernel.sizes)

    args = (lambda t: kernel(t, reml), kernel.initial_theta, kernel.lower_bounds, 10_000)
    bobyqa = ml_optimise.optimise(*args)
    searched = ml_optimise.optimise(
        *args, gradient=lambda t: kernel.value_and_gradient(t, reml), canonical=canonical
    )
    assert searched.converged
    assert searched.fx <= bobyqa.fx + 1e-9
    assert np.all(searched.x >= kernel.lower_bounds)
    assert searched.n_evaluations < bobyqa.n_evaluations


def test_a_search_stuck_at_zero_is_restarted():
    # Orthodont's (age | Subject) by ML: with bounds, a quasi-Newton search stops
    # on theta_22 = 0, where the gradient vanishes, 1.6 deviance units short
    kernel = deviance_function(_working("orthodont"))
    bobyqa = ml_optimise.optimise(
        lambda t: kernel(t, False), kernel.initial_theta, kernel.lower_bounds, 10_000
    )
    stuck = np.array([0.84, 0.035, 0.0])
    value, gradient = kernel.value_and_gradient(stuck, False)
    assert gradient[2] == 0.0 and value > bobyqa.fx + 1.0
    searched = ml_optimise.optimise(
        lambda t: kernel(t, False),
        stuck,
        kernel.lower_bounds,
        10_000,
        gradient=lambda t: kernel.value_and_gradient(t, False),
        canonical=lambda t: canonical_theta(t, kernel.kinds, kernel.sizes),
    )
    assert searched.fx <= bobyqa.fx + 1e-9


def test_canonical_theta_keeps_the_covariances():
    kinds, sizes = ["unstructured", "diagonal", "unstructured"], [2, 2, 1]
    theta = np.array([-0.5, 0.3, -0.2, -1.0, 0.4, -0.7])
    mapped = canonical_theta(theta, kinds, sizes)
    for before, after in zip(
        factors_from_theta(theta, kinds, sizes), factors_from_theta(mapped, kinds, sizes)
    ):
        np.testing.assert_allclose(after @ after.T, before @ before.T, rtol=0, atol=1e-15)
        assert np.all(np.diag(after) >= 0)
    np.testing.assert_array_equal(canonical_theta(mapped, kinds, sizes), mapped)


@pytest.mark.parametrize("k1", [1, 2, 3])
def test_sparse_gram_equals_the_dense_product(k1):
    rng = np.random.default_rng(k1)
    q_r, m1 = 40, 30
    rows, cols = [], []
    for j in range(m1):  # each level's k1 columns share their rows (the kernel's layout)
        pattern = np.sort(rng.choice(q_r, size=rng.integers(1, 12), replace=False))
        for s in range(k1):
            rows += list(pattern)
            cols += [j * k1 + s] * len(pattern)
    B = np.zeros((q_r, m1 * k1))
    B[rows, cols] = rng.normal(size=len(rows))
    A = rng.normal(size=(q_r, q_r))
    A = A + A.T
    from scipy.sparse import csc_matrix

    sparse = csc_matrix(B)
    sparse.sort_indices()
    result = subtract_gram(A, sparse.data, sparse.indices, sparse.indptr, k1)
    np.testing.assert_allclose(result, A - B @ B.T, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result, result.T)


# ------------------------------------------------ formula parts without formulae
PLAIN = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleepstudy", "Reaction ~ 0 + Days + (0 + Days | Subject)"),
    ("sleepstudy", "Reaction ~ 1 + (1 + Days | Subject)"),
    ("sleepstudy", "Reaction ~ Days + Days + (Days || Subject)"),
    ("Orthodont", "distance ~ age + (age | Subject)"),
]


def _without_plain_path(monkeypatch):
    monkeypatch.setattr(spec_design, "plain_part", lambda text, frame: None)
    monkeypatch.setattr(spec_design, "plain_response", lambda text, frame: None)


@pytest.mark.parametrize("dataset, formula", PLAIN)
def test_plain_parts_equal_formulaes_matrices(dataset, formula, monkeypatch):
    data = bmx.load_dataset(dataset)
    data = data.assign(**{c: data[c].astype(np.int64) for c in ["Days"] if c in data})
    plain = build_design(formula, data)
    assert type(plain.encoder.fixed_dm).__name__ == "PlainMatrices"
    new = data.head(7)
    new_plain = plain.evaluate_new_data(new)
    _without_plain_path(monkeypatch)
    reference = build_design(formula, data)
    assert type(reference.encoder.fixed_dm).__name__ != "PlainMatrices"
    np.testing.assert_array_equal(plain.y, reference.y)
    np.testing.assert_array_equal(plain.X, reference.X)
    assert plain.fixed_terms == reference.fixed_terms
    for ours, theirs in zip(plain.blocks, reference.blocks):
        np.testing.assert_array_equal(ours.Z, theirs.Z)
        np.testing.assert_array_equal(ours.codes, theirs.codes)
        assert ours.terms == theirs.terms
    new_reference = reference.evaluate_new_data(new)
    np.testing.assert_array_equal(new_plain.X, new_reference.X)
    for (c1, z1), (c2, z2) in zip(new_plain.blocks, new_reference.blocks):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(z1, z2)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ flag + (1 | g)",  # a boolean is a factor
        "y ~ x - 1 + (1 | g)",
        "log(y) ~ x + (1 | g)",
        "y ~ xn + (1 | g)",  # nullable integers go through formulae's conversion
        "y ~ x + (flag | g)",
    ],
)
def test_other_parts_still_go_through_formulae(formula):
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "y": rng.uniform(1, 2, 40),
            "x": rng.normal(size=40),
            "xn": pd.array(rng.integers(0, 5, 40), dtype="Int64"),
            "flag": rng.integers(0, 2, 40).astype(bool),
            "g": np.repeat(list("abcd"), 10),
        }
    )
    design = build_design(formula, data)
    kinds = [type(design.encoder.fixed_dm).__name__] + [
        type(m).__name__ for m in design.encoder.lhs_matrices.values()
    ]
    assert "DesignMatrices" in kinds


def test_the_design_keeps_its_own_copy_of_the_rows():
    data = bmx.load_dataset("sleepstudy")
    fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", data).fit()
    before = fit.loglik
    data.loc[:, "Reaction"] = 0.0  # the user's frame changes after fitting
    assert fit.model.design.data["Reaction"].iloc[0] != 0.0
    assert fit.model.fit().loglik == before
    assert fit_estimates(fit.model.design, "REML").loglik == pytest.approx(before, abs=1e-9)


# ------------------------------------------------ the search's edge cases (review of issue 18)
def _two_bars(seed: int, n: int, noise: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h, x = rng.integers(0, 20, n), rng.integers(0, 5, n), rng.normal(size=n)
    a = rng.normal(size=20)
    y = a[g] + 0.3 * a[g] * x + (rng.normal(size=5)[h] + rng.normal(size=n) if noise else 0.0)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h.astype(str)})


def test_an_optimiser_failure_is_a_bayesmix_outcome():
    # no noise: the criterion has no minimum and L-BFGS runs away until NLopt gives up,
    # raising nlopt's own exception type (not a RuntimeError)
    data = _two_bars(3, 200, noise=False)
    with pytest.raises(bmx.FitError, match="degenerate"):
        bmx.lmm("y ~ x + (1 + x | g) + (1 | h)", data).fit("ML")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bmx.lmm("y ~ x + (1 + x | g) + (1 | h)", data).fit("REML")
    assert np.isfinite(fit.loglik)


@pytest.mark.parametrize("limit", [1, 10])
def test_max_evaluations_is_a_limit_for_the_gradient_search(limit):
    design = build_design("y ~ x + (1 + x | g) + (1 | h)", _two_bars(1, 300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmx.ConvergenceWarning)
        est = fit_estimates(design, "ML", max_evaluations=limit)
    assert est.n_evaluations <= limit and not est.converged


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_a_flat_ridge_by_the_bound_ends_on_the_bound(method, monkeypatch):
    # the intercept SD of g ~ 0 leaves its correlation with the slope free: L-BFGS
    # stopped at theta_11 ~ 1e-4 and the check then crawled for 1,251 evaluations
    rng = np.random.default_rng(502)
    n = int(rng.integers(400, 1500))
    mg, mh, mc = int(rng.integers(100, 300)), int(rng.integers(3, 10)), int(rng.integers(20, 60))
    g, h, c = rng.integers(0, mg, n), rng.integers(0, mh, n), rng.integers(0, mc, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    sd = rng.choice([0.0, 0.05, 0.5, 1.5], size=6)
    y = (
        1
        + x
        + sd[0] * rng.normal(size=mg)[g]
        + sd[1] * rng.normal(size=mg)[g] * x
        + sd[2] * rng.normal(size=mh)[h]
        + sd[3] * rng.normal(size=mc)[c]
        + sd[4] * rng.normal(size=mh)[h] * z
        + rng.normal(size=n)
    )
    data = pd.DataFrame({"y": y, "x": x, "g": g, "h": h.astype(str)})
    design = build_design("y ~ x + (1 + x | g) + (1 | h)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", bmx.ConvergenceWarning)
        warnings.simplefilter("ignore", bmx.SingularFitWarning)
        searched = fit_estimates(design, method)
        optimise = ml_optimise.optimise
        monkeypatch.setattr(
            ml_fit, "optimise", lambda *a, **k: optimise(*a, **{**k, "gradient": None})
        )
        bobyqa = fit_estimates(design, method)
    assert searched.converged and searched.singular and searched.theta[0] == 0.0
    assert searched.n_evaluations < 60
    assert searched.loglik >= bobyqa.loglik - 1e-9
