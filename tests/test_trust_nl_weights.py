"""Offsets and prior weights of nonlinear mixed models (``nlmm(offset=, weights=)``).

Meaning (lme4's, nlme's ``weights = varFixed(~ 1/w)``): row i has mean
``offset_i + f(phi_i, x_i)`` and residual variance ``sigma^2 / w_i``.

The R reference is ``refs/trust/nlme_theoph_weights_ml.json`` (nlme 3.1-162);
the tightly converged nlme values below were computed for this file with the
same R and nlme. Every fit here is ML (about 0.2 s each); the Bayesian engine is
checked in ``test_trust_nl_weights_bayes.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import DataError, DataWarning

REFS = Path(__file__).parent / "refs" / "trust"
SSFOL = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"
PARAMS = {"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"}
START = {"lKe": -2.4, "lKa": 0.45, "lCl": -3.2}  # the reference's start

# nlme 3.1-162 (R 4.2.2) on the reference's model, data, weights and start, run to
# convergence with control = nlmeControl(tolerance = 1e-10, pnlsTol = 1e-7,
# msTol = 1e-12, maxIter = 500, msMaxIter = 500, pnlsMaxIter = 100) (pnlsTol = 1e-8
# stops with "step halving factor reduced below minimum in PNLS step"). Other tight
# settings and the transformed-response form spread over 2e-6 in logLik
# (-180.0081439 to -180.0081461). nlme's default settings stop after 3 iterations
# at the reference's -180.0091328, 9.9e-4 below: the Lindstrom-Bates logLik still
# oscillates there (our iterations 3 to 7: -180.00459, -180.00838, -180.00813,
# -180.008147, -180.008144).
NLME_CONVERGED = {
    "ML": {
        "logLik": -180.0081450020,
        "fixef": [-2.4456295655, 0.4574375993, -3.2235068385],
        "sd": [0.6634961943, 0.1646116067],
        "sigma": 0.8590170652,
    },
    "REML": {  # method = "REML", same control; nlme's REML keeps ML's fixed effects here
        "logLik": -184.8402711941,
        "fixef": [-2.4456295655, 0.4574375993, -3.2235068385],
        "sd": [0.6711669254, 0.1665146943],
        "sigma": 0.8689482283,
    },
}


def theoph_model(data: pd.DataFrame, formula: str = SSFOL, **options) -> bmx.NonlinearMixedModel:
    options.setdefault("start", START)
    return bmx.nlmm(formula, data, params=PARAMS, cov={"Subject": "diagonal"}, **options)


def estimates(fit) -> tuple[np.ndarray, np.ndarray]:
    """Fixed effects and the two random-effect SDs of a Theoph fit."""
    return fit.fixef()["estimate"].to_numpy(), fit.varcorr()["sdcor"].to_numpy()[:2]


@pytest.fixture(scope="module")
def ref():
    return json.loads((REFS / "nlme_theoph_weights_ml.json").read_text())


@pytest.fixture(scope="module")
def w(ref):
    return np.asarray(ref["weights"], dtype=float)


@pytest.fixture(scope="module")
def data(theoph, w):
    """Theoph with the reference's weights and an offset column."""
    return theoph.assign(w=w, off=0.05 * theoph["Time"] + 0.1)


@pytest.fixture(scope="module")
def weighted(theoph, w):
    return theoph_model(theoph, weights=w).fit(method="ML")


@pytest.fixture(scope="module")
def unweighted(theoph):
    return theoph_model(theoph).fit(method="ML")


# ------------------------------------------------------------------ nlme


def test_weights_follow_the_recorded_rule(ref, w, theoph):
    """``w = 2 - (row %% 2)`` on R's 1-based rows, in the CSV (= dataset) order."""
    rows = np.arange(1, len(theoph) + 1)
    np.testing.assert_array_equal(w, 2 - rows % 2)
    assert "2 - (row_index %% 2)" in ref["weights_rule"]
    assert theoph["conc"].iloc[:2].tolist() == [0.74, 2.84]  # the CSV's first rows


def test_weighted_theoph_agrees_with_nlme(weighted, ref, theoph, w):
    fit = weighted
    assert fit.converged and fit.df == ref["df"] and fit.nobs == ref["nobs"]
    # nlme's default stop is 9.9e-4 below the optimum (see NLME_CONVERGED): ours is above
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-3)
    assert fit.loglik >= ref["logLik"] - 1e-6
    assert fit.aic == pytest.approx(-2 * fit.loglik + 12) and fit.aic == pytest.approx(
        ref["AIC"], abs=2e-3
    )
    fixef, sds = estimates(fit)
    np.testing.assert_allclose(fixef, list(ref["fixef"].values()), rtol=1e-3)
    # nlme's printed ML standard errors carry sqrt(n / (n - p)), as nlmm's fixef() does
    se = fit.fixef()["std_error"].to_numpy()
    unscaled = fit.fixef(adjust_sigma=False)["std_error"].to_numpy()
    np.testing.assert_allclose(se, unscaled * np.sqrt(fit.nobs / (fit.nobs - 3)), rtol=1e-12)
    np.testing.assert_allclose(se, list(ref["fixef_se"].values()), rtol=1e-3)
    np.testing.assert_allclose(sds, list(ref["random_effect_sd"].values()), rtol=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    np.testing.assert_allclose(fit.fitted(), ref["fitted"], atol=5e-3)
    # Pearson residuals of a weighted fit: sqrt(w) (y - fitted) / sigma
    pearson = np.sqrt(w) * (theoph["conc"].to_numpy() - fit.fitted()) / fit.sigma
    np.testing.assert_allclose(fit.residuals("pearson"), pearson, rtol=1e-12)
    assert not np.allclose(fit.residuals("pearson"), fit.residuals() / fit.sigma)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_weighted_theoph_reaches_nlmes_converged_optimum(theoph, w, weighted, method):
    fit = weighted if method == "ML" else theoph_model(theoph, weights=w).fit(method="REML")
    target = NLME_CONVERGED[method]
    assert fit.converged
    assert fit.loglik == pytest.approx(target["logLik"], abs=3e-6)
    fixef, sds = estimates(fit)
    np.testing.assert_allclose(fixef, target["fixef"], rtol=1e-6)
    np.testing.assert_allclose(sds, target["sd"], rtol=1e-5)
    assert fit.sigma == pytest.approx(target["sigma"], rel=1e-6)


def test_weighted_optimum_is_a_fixed_point(weighted):
    """At convergence neither step moves: PNLS keeps beta, the LME step keeps theta,
    and the linearised logLik is a maximum in theta (1e-3 steps lower it by ~9e-6).

    One more iteration moves beta by 2.3e-7 (relative) and the logLik by 1.1e-6,
    within the fit's tolerance of 1e-6 on relative changes.
    """
    from bayesmix.ml.fit import estimates_at
    from bayesmix.nonlinear.lb_steps import Linearisation, lme_step, pnls

    est = weighted.estimates
    lin = Linearisation(weighted.nonlinear_design)
    # spherical effects of the one pdDiag block: b = u T' with T = diag(theta)
    u = [np.asarray(est.b[0], dtype=float) / np.asarray(est.theta, dtype=float)]
    beta, _, b, _, _ = pnls(lin, est.theta, np.asarray(est.beta, dtype=float), u)
    np.testing.assert_allclose(beta, est.beta, rtol=1e-6)
    np.testing.assert_allclose(b[0], est.b[0], atol=5e-6)
    again, _, _, linear = lme_step(lin, beta, b, "ML", est.theta)
    np.testing.assert_allclose(again.theta, est.theta, rtol=1e-5)
    assert again.loglik == pytest.approx(weighted.loglik, abs=5e-6)
    for j in range(est.theta.size):
        for step in (0.999, 1.001):
            theta = np.array(again.theta, dtype=float)
            theta[j] *= step
            assert estimates_at(linear, theta, "ML").loglik < again.loglik


def test_weights_equal_the_transformed_response_fit(weighted, theoph, w):
    """``Var = sigma^2 / w`` is the unweighted model of ``sqrt(w) y`` with mean
    ``sqrt(w) f``, whose logLik is lower by ``0.5 sum(log w)`` (the Jacobian of
    the transform): R's cross-check in the reference, fitted here with an
    explicit mean, so the weights code is not involved."""
    data = theoph.assign(sw=np.sqrt(w), yt=np.sqrt(w) * theoph["conc"])
    formula = (
        "yt ~ sw * Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time))"
        " / (exp(lKa) - exp(lKe))"
    )
    transformed = theoph_model(data, formula).fit(method="ML")
    # both fits stop at the LME step's optimiser tolerance (NLopt's ftol) and the
    # alternation's own: ~1e-6 in logLik
    shift = 0.5 * np.sum(np.log(w))
    assert weighted.loglik == pytest.approx(transformed.loglik + shift, abs=3e-6)
    for a, b in zip(estimates(weighted), estimates(transformed)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert weighted.sigma == pytest.approx(transformed.sigma, rel=1e-6)


# ------------------------------------------------------------- identities


@pytest.mark.parametrize("form", ["column", "array"])
def test_offset_equals_the_shifted_response(data, form):
    """``y ~ offset + f`` is ``y - offset ~ f``: the same likelihood, estimates and
    residuals; fitted values and predictions differ by the offset."""
    offset = data["off"].to_numpy()
    shifted = data.assign(shifted=data["conc"] - data["off"])
    with_offset = theoph_model(data, offset="off" if form == "column" else offset).fit()
    by_hand = theoph_model(shifted, "shifted ~ SSfol(Dose, Time, lKe, lKa, lCl)").fit()
    assert with_offset.loglik == pytest.approx(by_hand.loglik, abs=1e-8)
    for a, b in zip(estimates(with_offset), estimates(by_hand)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert with_offset.sigma == pytest.approx(by_hand.sigma, abs=1e-8)
    np.testing.assert_allclose(with_offset.fitted(), by_hand.fitted() + offset, atol=1e-8)
    np.testing.assert_allclose(with_offset.residuals(), by_hand.residuals(), atol=1e-8)
    population = with_offset.predict(include_random=False)
    np.testing.assert_allclose(
        population, by_hand.predict(include_random=False) + offset, atol=1e-8
    )
    # the offset changes the fit: it is not ignored
    assert abs(with_offset.loglik - theoph_model(data).fit().loglik) > 1.0


def test_self_start_sees_the_response_less_offset(data):
    """Without ``start`` the self-starting values come from ``y - offset``."""
    shifted = data.assign(shifted=data["conc"] - data["off"])
    a = bmx.nlmm(SSFOL, data, params=PARAMS, cov={"Subject": "diagonal"}, offset="off").fit()
    b = bmx.nlmm(
        "shifted ~ SSfol(Dose, Time, lKe, lKa, lCl)",
        shifted,
        params=PARAMS,
        cov={"Subject": "diagonal"},
    ).fit()
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.history[0].beta, b.history[0].beta, atol=1e-12)


@pytest.mark.parametrize("c", [4.0, 0.37])
def test_constant_weights_rescale_sigma_and_keep_the_loglik(theoph, unweighted, c):
    """Weights ``w = c`` for every row.

    ``N(y; mu, sigma^2 / c)`` is ``N(y; mu, s^2)`` with ``s = sigma / sqrt(c)``, so
    the weighted likelihood at ``(beta, Psi, sigma)`` is the unweighted one at
    ``(beta, Psi, sigma / sqrt(c))``. Hence the maximum (the logLik) is the same,
    beta, the random-effect SDs and modes are the same, and
    ``sigma_c = sqrt(c) * sigma_1``; Pearson residuals ``sqrt(c) r / sigma_c``
    are unchanged. (R agrees: nlme with ``varFixed(~1/w)``, ``w = 4`` gives
    logLik -177.0214169605 as unweighted, sigma 1.418509 = 2 * 0.7092544; lme4
    likewise for sleepstudy.) The ``0.5 n log(c)`` appears in the unweighted fit
    of the scaled data ``sqrt(c) y`` (whose mean is ``sqrt(c) f``, i.e. SSfol with
    dose ``sqrt(c) Dose``): its logLik is lower by exactly that (the Jacobian),
    and prior weights add ``0.5 sum(log w) = 0.5 n log(c)`` back.
    """
    fit = theoph_model(theoph, weights=np.full(len(theoph), c)).fit()
    n, k = fit.nobs, np.sqrt(c)
    # tolerances: the LME step stops at NLopt's ftol, which moves SDs by ~1e-6 and the
    # logLik by up to ~1e-6 (the weighted and unweighted paths round differently)
    assert fit.loglik == pytest.approx(unweighted.loglik, abs=2e-6)
    assert fit.sigma == pytest.approx(k * unweighted.sigma, rel=1e-6)
    np.testing.assert_allclose(estimates(fit)[0], estimates(unweighted)[0], rtol=1e-6)
    np.testing.assert_allclose(estimates(fit)[1], estimates(unweighted)[1], rtol=1e-5)
    np.testing.assert_allclose(fit.fitted(), unweighted.fitted(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fit.residuals("pearson"), unweighted.residuals("pearson"), atol=1e-5)
    scaled = theoph.assign(kconc=k * theoph["conc"], kDose=k * theoph["Dose"])
    by_hand = theoph_model(scaled, "kconc ~ SSfol(kDose, Time, lKe, lKa, lCl)").fit()
    assert by_hand.loglik == pytest.approx(unweighted.loglik - 0.5 * n * np.log(c), abs=3e-6)
    assert by_hand.sigma == pytest.approx(k * unweighted.sigma, rel=1e-6)
    assert fit.loglik == pytest.approx(by_hand.loglik + 0.5 * n * np.log(c), abs=3e-6)


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ("zero", "weights must be positive; 1 row"),
        ("negative", "weights must be positive; 2 row"),
        ("short", "weights must be a column name or a 1-d array with one value per row"),
        ("nowhere", "weights='nowhere' is not a column of the data"),
        ("Subject", "weights must be numeric; column 'Subject'"),
        ("text", "weights must be numeric, got values of type"),
        ("2-d", "weights must be a column name or a 1-d array"),
    ],
)
def test_bad_weights_are_data_errors_naming_weights(data, w, weights, words):
    values = {
        "zero": np.where(np.arange(len(w)) == 3, 0.0, w),
        "negative": np.where(np.arange(len(w)) < 2, -1.0, w),
        "short": w[:-1],
        "nowhere": "nowhere",
        "Subject": "Subject",
        "text": np.array(["1"] * len(w)),
        "2-d": w[:, None],
    }[weights]
    with pytest.raises(DataError, match="weights") as error:
        theoph_model(data, weights=values)
    assert words in str(error.value)


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        ("nowhere", "offset='nowhere' is not a column of the data"),
        ("short", "offset must be a column name or a 1-d array"),
        ("Subject", "offset must be numeric; column 'Subject'"),
    ],
)
def test_bad_offsets_are_data_errors_naming_offset(data, offset, words):
    value = data["off"].to_numpy()[:-1] if offset == "short" else offset
    with pytest.raises(DataError, match=words):
        theoph_model(data, offset=value)


def test_missing_weights_drop_their_rows(data):
    holes = data.assign(w=data["w"].where(data.index != 5))
    with pytest.warns(DataWarning, match=r"Dropped 1 of 132 rows .*w: 1"):
        model = theoph_model(holes, weights="w")
    assert model.design.n_obs == 131 and model.design.weights.shape == (131,)
    same = theoph_model(data.drop(index=5), weights="w")
    assert model.fit().loglik == pytest.approx(same.fit().loglik, abs=1e-10)


def test_update_keeps_offset_and_weights(data):
    model = theoph_model(data, offset="off", weights="w")
    assert model.options == {
        "start": START,
        "cov": {"Subject": "diagonal"},
        "mean": None,
        "offset": "off",
        "weights": "w",
        "correlation": None,
    }
    moved = model.update(start={"lKe": -2.5, "lKa": 0.5, "lCl": -3.0})
    assert moved.offset == "off" and moved.weights == "w"
    np.testing.assert_array_equal(moved.design.weights, data["w"])
    np.testing.assert_array_equal(moved.design.offset, data["off"])


def test_predict_new_rows_reads_the_offset_column(data):
    fit = theoph_model(data, offset="off", weights="w").fit()
    rows = data.iloc[:11]
    np.testing.assert_allclose(fit.predict(rows), fit.fitted()[:11], atol=1e-12)
    moved = rows.assign(off=rows["off"] + 1.5)
    np.testing.assert_allclose(fit.predict(moved), fit.predict(rows) + 1.5, atol=1e-12)
    population = fit.predict(moved, include_random=False)
    np.testing.assert_allclose(
        population, fit.predict(rows, include_random=False) + 1.5, atol=1e-12
    )
    with pytest.raises(DataError, match="lacks the offset column 'off'"):
        fit.predict(rows.drop(columns="off"))
    with pytest.raises(DataError, match="offset is missing or not finite"):
        fit.predict(rows.assign(off=np.nan))


def test_predict_new_rows_refuses_an_array_offset(data):
    fit = theoph_model(data, offset=data["off"].to_numpy()).fit()
    np.testing.assert_array_equal(fit.predict(), fit.fitted())  # the fitted rows are known
    with pytest.raises(DataError, match="offset was given as an array"):
        fit.predict(data.iloc[:3])


# ------------------------------------------------------------------ save/load


@pytest.mark.parametrize("keep_model", [True, False])
def test_weighted_nlmm_reloads_identically(data, w, tmp_path, keep_model):
    """Saved with an array of weights and an offset column, loaded without refitting;
    without ``result.model`` the arguments are read off the design."""
    fit = theoph_model(data, offset="off", weights=w).fit()
    if not keep_model:
        fit = dataclasses.replace(fit, model=None)
    fit.save(tmp_path / "w.bmx")
    back = bmx.load(tmp_path / "w.bmx")
    assert back.model.offset == "off"
    np.testing.assert_array_equal(back.model.weights, w)
    np.testing.assert_array_equal(back.nonlinear_design.weights, w)
    assert back.loglik == fit.loglik and back.sigma == fit.sigma
    pd.testing.assert_frame_equal(back.fixef(), fit.fixef())
    np.testing.assert_array_equal(back.fitted(), fit.fitted())
    np.testing.assert_array_equal(back.residuals("pearson"), fit.residuals("pearson"))
    np.testing.assert_array_equal(back.predict(data.iloc[:9]), fit.predict(data.iloc[:9]))
    assert str(back.summary()) == str(fit.summary())


def test_changed_weights_are_refused_on_save(data, tmp_path):
    holder = data.copy()
    fit = theoph_model(holder, weights="w").fit()
    holder["w"] = 1.0  # the DataFrame changes after fitting
    with pytest.raises(DataError, match="weights"):
        fit.save(tmp_path / "w.bmx")
