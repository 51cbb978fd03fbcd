"""Variance functions and correlation structures: nlme's syntax, the arithmetic,
the compiled criterion, bad input, and what users see (summary, anova, save/load)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from varcorr_cases import OVARY, data

import bayesmix as bmx
from bayesmix.errors import ArgumentError, DataError, DataWarning, FormulaError
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.ml.structured_kernel import one_block_criterion
from bayesmix.spec.correlation_math import (
    ar_to_pacf,
    arma_acf,
    correlation_to_cpc,
    cpc_to_correlation,
    pacf_to_ar,
)
from bayesmix.spec.covariance import factors_from_theta
from bayesmix.spec.nlme_syntax import parse_structure

# --------------------------------------------------------------- nlme's syntax


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("varIdent(form = ~1 | Sex)", bmx.varIdent("Sex")),
        ("varPower()", bmx.varPower()),
        ("varPower(form = ~ fitted(.))", bmx.varPower()),
        ("varPower(0.5, form = ~ age | Sex)", bmx.varPower("age", strata="Sex", start=0.5)),
        ("varExp(form=~age)", bmx.varExp("age")),
        ("varConstPower(form = ~ pressure)", bmx.varConstPower("pressure")),
        ("varFixed(~ age)", bmx.varFixed("age")),
        (
            "varComb(varIdent(form = ~ 1 | Diet), varPower())",
            bmx.varComb(bmx.varIdent("Diet"), bmx.varPower()),
        ),
        ("corAR1()", bmx.corAR1()),
        ("corAR1(0.3, form = ~ Time | Mare)", bmx.corAR1("Time", "Mare", 0.3)),
        ("corCAR1(form = ~ Time)", bmx.corCAR1(time="Time")),
        ("corARMA(p = 1, q = 2)", bmx.corARMA(p=1, q=2)),
        ("corCompSymm(form = ~ 1 | Rat)", bmx.corCompSymm(group="Rat")),
        ("corSymm(form = ~ 1 | Subject)", bmx.corSymm(group="Subject")),
        (
            'corExp(form = ~ x + y | site, nugget = TRUE, metric = "manhattan")',
            bmx.corExp(("x", "y"), group="site", nugget=True, metric="manhattan"),
        ),
        (
            "corGaus(c(2, 0.1), form = ~ x, nugget = T)",
            bmx.corGaus("x", nugget=True, start=(2, 0.1)),
        ),
        ("corAR1(form = ~ 1 | `my group`)", bmx.corAR1(group="my group")),
    ],
)
def test_nlme_syntax_reads_as_objects(text, expected):
    parsed = parse_structure(text)
    assert parsed == expected
    if getattr(parsed, "start", None) is None:  # nlme() leaves out start values
        assert parse_structure(parsed.nlme()) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        "varIdent(form = ~1 | Sex); import os",
        "varPower(form = ~ log(age))",
        "varIdent(form = ~ age)",
        "corAR1(form = ~ a + b)",
        "corAR1(fixed = TRUE)",
        "corARMA(p = 1.5)",
        "varPower(bogus = 1)",
        "corExp(form = ~ 1)",
        "varComb(varPower())",
        "varIdent(form = ~1 | a/b)",
        "corAR1(form = ~ Time | Mare",
    ],
)
def test_bad_nlme_strings_are_refused(text):
    with pytest.raises((FormulaError, ArgumentError)):
        parse_structure(text)


def test_weights_and_correlation_swapped_are_named():
    ovary = data("Ovary")
    with pytest.raises(FormulaError, match="correlation"):
        bmx.lmm(OVARY, ovary, correlation="varPower()")
    with pytest.raises(ArgumentError, match="correlation="):
        bmx.lmm(OVARY, ovary, correlation=3)


# ----------------------------------------------------------------- arithmetic


def test_arma_acf_closed_forms():
    phi, theta = 0.7, -0.4
    rho = arma_acf([phi], [theta], 5)
    rho1 = (1 + phi * theta) * (phi + theta) / (1 + 2 * phi * theta + theta**2)
    np.testing.assert_allclose(rho[1:], rho1 * phi ** np.arange(5), rtol=1e-12)
    np.testing.assert_allclose(arma_acf([], [0.5], 3), [1, 0.4, 0, 0], atol=1e-15)
    ar2 = arma_acf([0.5, 0.3], [], 3)  # Yule-Walker: rho1 = phi1 / (1 - phi2)
    assert ar2[1] == pytest.approx(0.5 / 0.7, rel=1e-12)
    assert ar2[2] == pytest.approx(0.5 * ar2[1] + 0.3, rel=1e-12)


def test_parameter_maps_invert():
    rng = np.random.default_rng(1)
    r = np.tanh(rng.normal(size=4))
    np.testing.assert_allclose(ar_to_pacf(pacf_to_ar(r)), r, atol=1e-12)
    z = np.tanh(rng.normal(size=6))
    C = cpc_to_correlation(z, 4)
    assert np.all(np.linalg.eigvalsh(C) > 0) and np.allclose(np.diag(C), 1)
    np.testing.assert_allclose(correlation_to_cpc(C), z, atol=1e-12)


@pytest.mark.parametrize(
    "correlation",
    [
        "corAR1()",
        "corCAR1(form = ~ Time)",
        "corARMA(p = 2, q = 1)",
        "corCompSymm()",
        "corSymm()",
        "corExp(form = ~ Time, nugget = TRUE)",
        "corGaus(form = ~ Time, nugget = TRUE)",
    ],
)
def test_whitening_matches_the_dense_covariance(correlation):
    """L^-1 M and log|Lambda| of every structure equal a dense Cholesky of Lambda."""
    ovary = data("Ovary").iloc[:60].copy()
    ovary["Time"] = ovary.groupby("Mare", observed=True).cumcount() * 1.5 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = bmx.lmm(OVARY, ovary, correlation=correlation, weights=bmx.varExp("Time"))
    structure = model.residual
    rng = np.random.default_rng(2)
    u = structure.start + 0.3 * rng.normal(size=structure.n_params)
    n = model.design.n_obs
    M = rng.normal(size=(n, 3))
    W, log_det = structure.whiten(u, M)
    # the dense Lambda, group by group
    log_g = structure.log_sd(u)
    cor = structure.correlation
    Lam = np.zeros((n, n))
    for g in np.unique(cor.group_codes):
        rows = np.flatnonzero(cor.group_codes == g)
        C = cor.correlation(structure.split(u)[1], cor.coords[rows][None])[0]
        Lam[np.ix_(rows, rows)] = C
    Lam *= np.exp(log_g[:, None] + log_g[None, :])
    L = np.linalg.cholesky(Lam)
    assert log_det == pytest.approx(2 * np.log(np.diag(L)).sum(), rel=1e-10)
    # whitening is L^-1 up to an orthogonal map within groups: W'W = M' Lam^-1 M
    np.testing.assert_allclose(W.T @ W, M.T @ np.linalg.solve(Lam, M), rtol=1e-9)


@pytest.mark.parametrize(
    ("k", "p", "reml"), [(1, 3, True), (2, 4, False), (3, 1, True), (0, 2, False)]
)
def test_compiled_criterion_equals_the_general_kernel(k, p, reml):
    rng = np.random.default_rng(k + p)
    n, m = 200, 17
    codes = rng.integers(0, m, n)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, max(k - 1, 0)))])[:, :k]
    y = rng.normal(size=n)
    kinds, sizes = (["unstructured"], [k]) if k else ([], [])
    theta = (
        np.tril(rng.uniform(0.2, 1.5, size=(k, k)))[np.tril_indices(k)][
            np.argsort(np.tril_indices(k)[1], kind="stable")
        ]
        if k
        else np.zeros(0)
    )
    blocks = [(codes, Z, m, "unstructured")] if k else []
    expected = ProfiledDeviance(y, X, blocks)(theta, reml=reml)
    T = factors_from_theta(theta, kinds, sizes)[0] if k else np.zeros((0, 0))
    W = np.column_stack([y, X, Z])
    got = one_block_criterion(W, codes.astype(np.int64), m if k else 1, p, T, reml)
    assert got == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 6)
    t = np.tile(np.arange(1, 7), 12).astype(float)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + rng.normal(size=12)[g] + rng.normal(size=g.size)
    return pd.DataFrame(
        {"y": y, "x": x, "g": g.astype(str), "t": t, "sex": np.where(g < 6, "F", "M")}
    )


def test_duplicate_times_are_refused(panel):
    bad = panel.copy()
    bad.loc[1, "t"] = 1.0
    with pytest.raises(DataError, match="repeat a time"):
        bmx.lmm("y ~ x + (1|g)", bad, correlation=bmx.corCAR1(time="t"))


def test_unsorted_times_are_sorted_and_said(panel):
    shuffled = panel.sample(frac=1.0, random_state=1)
    with pytest.warns(DataWarning, match="sorted"):
        fit_s = bmx.lmm("y ~ x + (1|g)", shuffled, correlation=bmx.corCAR1(time="t")).fit()
    fit = bmx.lmm("y ~ x + (1|g)", panel, correlation=bmx.corCAR1(time="t")).fit()
    assert fit_s.loglik == pytest.approx(fit.loglik, abs=1e-8)


def test_correlation_group_must_nest_in_random_effects(panel):
    with pytest.raises(DataError, match="not nested"):
        bmx.lmm("y ~ x + (1|g)", panel, correlation=bmx.corAR1(group="sex"))


def test_variance_covariate_zero_is_refused(panel):
    bad = panel.assign(v=panel["t"] - 1)
    with pytest.raises(DataError, match="v = 0"):
        bmx.lmm("y ~ x + (1|g)", bad, weights=bmx.varPower("v"))
    with pytest.raises(DataError, match="positive"):
        bmx.lmm("y ~ x + (1|g)", bad, weights=bmx.varFixed("v"))


def test_varident_single_observation_level_is_warned(panel):
    odd = panel.assign(level=np.where(np.arange(len(panel)) == 0, "rare", panel["sex"]))
    with pytest.warns(DataWarning, match="single observation"):
        bmx.lmm("y ~ x + (1|g)", odd, weights=bmx.varIdent("level"))


def test_corsymm_needs_each_pair_of_times_together(panel):
    split = panel.copy()  # times 1..3 in half the groups, 4..6 in the other half
    half = split["g"].astype(int) < 6
    split = split[(half & (split["t"] <= 3)) | (~half & (split["t"] > 3))]
    with pytest.raises(DataError, match="never occur in the same group"):
        bmx.lmm("y ~ x + (1|g)", split, correlation=bmx.corSymm(time="t"))


def test_unknown_structure_column_is_named(panel):
    with pytest.raises(DataError, match="Did you mean 'sex'"):
        bmx.lmm("y ~ x + (1|g)", panel, weights=bmx.varIdent("sx"))


def test_ar1_needs_integer_time(panel):
    with pytest.raises(DataError, match="corCAR1"):
        bmx.lmm("y ~ x + (1|g)", panel.assign(t=panel["t"] + 0.5), correlation=bmx.corAR1("t"))


def test_single_row_groups_cannot_be_correlated(panel):
    with pytest.raises(DataError, match="single row"):
        bmx.gls("y ~ x", panel.assign(id=np.arange(len(panel))), correlation=bmx.corAR1(group="id"))


def test_missing_structure_values_drop_rows_with_a_count(panel):
    holes = panel.assign(t=panel["t"].where(np.arange(len(panel)) % 10 != 0))
    with pytest.warns(DataWarning, match="Dropped 8"):
        model = bmx.lmm("y ~ x + (1|g)", holes, correlation=bmx.corCAR1(time="t"))
    assert model.design.n_obs == len(panel) - 8


# ------------------------------------------------------------ what users see


@pytest.fixture(scope="module")
def ovary_ar1():
    return bmx.lmm(OVARY, data("Ovary"), correlation=bmx.corAR1()).fit()


def test_objects_and_strings_give_the_same_fit(ovary_ar1):
    other = bmx.lmm(OVARY, data("Ovary"), correlation="corAR1(form = ~ 1 | Mare)").fit()
    assert other.loglik == pytest.approx(ovary_ar1.loglik, abs=1e-9)


def test_summary_and_parameters(ovary_ar1):
    text = str(ovary_ar1.summary())
    assert "Correlation structure: corAR1(form = ~1 | Mare)" in text
    assert "Phi" in text and "0.60744" in text
    table = ovary_ar1.residual_parameters()
    assert list(table["parameter"]) == ["Phi"]
    assert "corAR1" in ovary_ar1.summary()._repr_html_()


def test_anova_compares_structures(ovary_ar1):
    plain = bmx.lmm(OVARY, data("Ovary")).fit()
    table = bmx.anova(plain, ovary_ar1)
    text = str(table)
    assert "corAR1" in text
    lr = 2 * (ovary_ar1.loglik - plain.loglik)
    assert lr == pytest.approx(2 * (-775.223348784056 + 829.6801501548823), abs=1e-6)


def test_normalized_residuals_are_whitened(ovary_ar1):
    """Normalised residuals: L^-1 (y - fitted) / sigma, so lag-1 correlation ~ 0."""
    r = ovary_ar1.residuals("normalized")
    p = ovary_ar1.residuals("pearson")
    mare = data("Ovary")["Mare"].to_numpy()
    same = mare[1:] == mare[:-1]
    lag1 = lambda v: np.corrcoef(v[1:][same], v[:-1][same])[0, 1]  # noqa: E731
    assert abs(lag1(r)) < 0.2 < 0.5 < lag1(p)


def test_save_and_load_keep_the_structure(tmp_path):
    bw = data("BodyWeight")
    fit = bmx.lmm(
        "weight ~ Time * Diet + (Time | Rat)",
        bw,
        weights=bmx.varIdent("Diet"),
        correlation=bmx.corCAR1(time="Time"),
    ).fit("ML")
    path = tmp_path / "fit.bmx"
    fit.save(path)
    back = bmx.load(path)
    assert back.loglik == fit.loglik
    pd.testing.assert_frame_equal(back.residual_parameters(), fit.residual_parameters())
    np.testing.assert_array_equal(back.residuals("normalized"), fit.residuals("normalized"))
    assert (
        back.refit().loglik == pytest.approx(fit.loglik, abs=1e-6)
        if hasattr(back, "refit")
        else True
    )


def test_update_keeps_the_structure(ovary_ar1):
    smaller = ovary_ar1.update(". ~ . - cos(2*pi*Time)")
    assert smaller.residual_structure is not None
    assert list(smaller.residual_parameters()["parameter"]) == ["Phi"]


def test_prior_weights_with_a_correlation_structure():
    """Constant prior weights w change nothing (lme4's +0.5 sum(log w) included)."""
    ovary = data("Ovary").assign(w=4.0)
    plain = bmx.lmm(OVARY, ovary, correlation="corAR1()").fit("ML")
    weighted = bmx.lmm(OVARY, ovary, weights="w", correlation="corAR1()").fit("ML")
    assert weighted.loglik == pytest.approx(plain.loglik, abs=1e-7)
    np.testing.assert_allclose(
        weighted.residuals("normalized"), plain.residuals("normalized"), atol=1e-6
    )
