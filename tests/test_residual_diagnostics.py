"""Residuals, fitted values, ACF and semivariogram against nlme (tests/refs/varcorr/diagnostics).

The references come from ``make_diagnostics_refs.R`` there. nlme 3.1-162's
normalized residuals are misaligned when the data are not sorted by group (the
script's header explains), so the references are nlme's values on the sorted
rows, put back in the CSV's order, and checked against a direct whitening in R.

Two kinds of comparison:

* bayesmix's own fit against nlme's: residuals and fitted values agree to the
  precision the two optimisers agree on the estimates (1e-5 relative, a little
  more where nlme's and bayesmix's sigma differ by more);
* the fit with nlme's estimates put in (variance and correlation parameters,
  sigma, fitted values): the residual code, ``acf``, ``variogram`` and
  ``model_variogram`` reproduce nlme to 1e-8.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from varcorr_cases import CASES as ALL_CASES
from varcorr_cases import data

import bayesmix as bmx
from bayesmix.errors import ArgumentError, DataError
from bayesmix.ml.results import MLResult
from bayesmix.residual_diagnostics import acf, model_variogram, variogram

VARCORR = Path(__file__).parent / "refs" / "varcorr"

# the cases with diagnostics references (their calls: varcorr_cases.CASES)
CASES = {
    case: ALL_CASES[case]
    for case in (
        "V01_orthodont_lme_varident",
        "V02_ovary_lme_ar1",
        "V05_bodyweight_lme_car1",
        "V06_bodyweight_lme_varpower_car1",
        "V07_orthodont_gls_corsymm_varident",
        "V13_bodyweight_lme_corexp_nugget",
        "V15_spatial_gls_corexp_nugget",
    )
}
RUNS = [(case, method) for case in CASES for method in ("ML", "REML")]
KINDS = ("response", "pearson", "normalized")


@cache
def reference(case: str, method: str) -> tuple[dict, dict]:
    """(the diagnostics reference, the fit reference)."""
    tag = f"{case}_{method.lower()}.json"
    load = lambda path: json.loads(path.read_text())  # noqa: E731
    return load(VARCORR / "diagnostics" / tag), load(VARCORR / "refs" / tag)


@cache
def own_fit(case: str, method: str) -> MLResult:
    constructor, formula, name, structures = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BodyWeight's Time * Diet counts warning
        return getattr(bmx, constructor)(formula, data(name), **structures).fit(method)


def _coefficients(block: dict | None) -> list[float]:
    if not block or not block.get("coef"):
        return []
    coef = block["coef"]
    return list(coef.values()) if isinstance(coef, dict) else list(coef)


@cache
def nlme_fit(case: str, method: str) -> MLResult:
    """bayesmix's fit with nlme's structure parameters, sigma and fitted values put in."""
    fit = own_fit(case, method)
    diag, ref = reference(case, method)
    target = np.array(_coefficients(ref["varStruct"]) + _coefficients(ref["corStruct"]))
    structure = fit.residual_structure

    def gap(u: np.ndarray) -> np.ndarray:
        parts = zip((structure.variance, structure.correlation), structure.split(u))
        return np.concatenate([p.natural(ui) for p, ui in parts if p is not None]) - target

    start = np.asarray(fit.estimates.residual_u, dtype=float)
    solved = least_squares(gap, start, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.max(np.abs(solved.fun)) < 1e-12
    fitted = np.asarray(diag["fitted"], dtype=float)
    estimates = dataclasses.replace(
        fit.estimates,
        residual_u=solved.x,
        sigma=ref["sigma"],
        fitted=fitted,
        variance_fitted=None if fit.estimates.variance_fitted is None else fitted,
    )
    return MLResult(fit.design, estimates, fit.model)


def scaled_error(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


# ----------------------------------------------------------------- residuals and fitted values


@pytest.mark.parametrize("case, method", RUNS)
def test_residuals_and_fitted_of_the_fit_agree_with_nlme(case, method):
    fit = own_fit(case, method)
    diag, ref = reference(case, method)
    assert fit.loglik == pytest.approx(diag["logLik"], abs=5e-6)
    # Residuals agree as closely as the two optimisers' estimates do: 1e-5 relative, or twice
    # the estimates' relative difference where that is larger (V06's sigma differs by ~1.5e-4:
    # nlme's fitted-value iteration for varPower stops early, see test_residual_ml.py's
    # test_nlme_stops_before_the_fixed_point); the next test pins the code.
    ours = np.append(fit.residual_parameters()["estimate"].to_numpy(), fit.sigma)
    theirs = _coefficients(ref["varStruct"]) + _coefficients(ref["corStruct"]) + [ref["sigma"]]
    agreement = float(np.max(np.abs(ours / np.asarray(theirs) - 1.0)))
    assert agreement < 1e-3
    tolerance = max(1e-5, 2.0 * agreement)
    for kind in KINDS:
        assert scaled_error(fit.residuals(kind), diag["residuals"][kind]) < tolerance, kind
    assert scaled_error(fit.fitted(), diag["fitted"]) < tolerance


@pytest.mark.parametrize("case, method", RUNS)
def test_residuals_at_nlme_estimates_reproduce_nlme(case, method):
    fit = nlme_fit(case, method)
    diag, _ = reference(case, method)
    for kind in KINDS:
        assert scaled_error(fit.residuals(kind), diag["residuals"][kind]) < 1e-8, kind
    # the reference's normalized residuals are a direct whitening in R, too
    assert diag["checks"]["max_abs_diff_manual_normalized"] < 1e-12


def test_nlme_misaligns_normalized_residuals_of_unsorted_data():
    """Ovary's rows are not in Mare's level order: nlme's own normalized residuals are
    wrong in 16 rows at group boundaries; bayesmix agrees with the corrected ones."""
    diag, _ = reference("V02_ovary_lme_ar1", "ML")
    assert diag["checks"]["nlme_csv_order_normalized_rows_differing"] == 16
    ours = own_fit("V02_ovary_lme_ar1", "ML").residuals("normalized")
    buggy = np.asarray(diag["nlme_csv_order_normalized"])
    wrong = np.abs(buggy - np.asarray(diag["residuals"]["normalized"])) > 1e-10
    assert wrong.sum() == 16
    assert np.all(np.abs(ours[wrong] - buggy[wrong]) > 1e-3)


# ----------------------------------------------------------------- ACF and Variogram


def _arguments(call: str) -> dict[str, str]:
    return dict(re.findall(r'([\w.]+) = ("[^"]*"|[\w.~ +]+)', call))


def _diagnostics(keep) -> dict:
    """The reference calls ``keep(call)`` accepts, as pytest parameters named by their call."""
    out = {}
    for case, method in RUNS:
        for entry in reference(case, method)[0]["diagnostics"]:
            if keep(entry["call"]):
                out[f"{case[:3]}-{method}-{entry['call']}"] = (case, method, entry)
    return out


ACF_CALLS = _diagnostics(lambda call: call.startswith("ACF("))
VARIOGRAM_CALLS = _diagnostics(lambda call: call.startswith("Variogram(fit") and "$" not in call)
MODEL_CALLS = _diagnostics(lambda call: "$modelStruct$corStruct" in call)


@pytest.mark.parametrize("case, method, ref", ACF_CALLS.values(), ids=ACF_CALLS)
def test_acf_reproduces_nlme(case, method, ref):
    args = _arguments(ref["call"])
    max_lag = int(args["maxLag"]) if "maxLag" in args else None
    out = acf(nlme_fit(case, method), max_lag=max_lag, resid_type=args["resType"].strip('"'))
    assert out["lag"].tolist() == ref["lag"]
    assert out["n_pairs"].tolist() == ref["n_used"]
    np.testing.assert_allclose(out["acf"], ref["ACF"], rtol=0, atol=1e-10)


def _variogram_arguments(call: str) -> dict:
    args = _arguments(call)
    out = {"resid_type": args.get("resType", '"pearson"').strip('"'), "robust": "robust" in args}
    if "form" in args:
        columns = [c.strip() for c in args["form"].strip("~ ").split("+")]
        out.update(time=columns[0]) if len(columns) == 1 else out.update(coords=columns)
    if "maxDist" in args:
        out["max_dist"] = float(args["maxDist"])
    out["collapse"] = args.get("collapse", '"quantiles"').strip('"')
    out["n_intervals"] = int(args.get("nint", 20))
    return out


@pytest.mark.parametrize("case, method, ref", VARIOGRAM_CALLS.values(), ids=VARIOGRAM_CALLS)
def test_variogram_reproduces_nlme(case, method, ref):
    fit = nlme_fit(case, method)
    kwargs = _variogram_arguments(ref["call"])
    normalized = kwargs["resid_type"] == "normalized"
    out = variogram(fit, **kwargs)
    ours = out[["dist", "variog"]].to_numpy()
    theirs = np.column_stack([ref["dist"], ref["variog"]])
    if kwargs["collapse"] == "none":  # every pair; compare as sets
        ours = ours[np.lexsort(ours.T[::-1])]
        theirs = theirs[np.lexsort(theirs.T[::-1])]
    else:
        assert out["n_pairs"].tolist() == ref["n_pairs"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    applies = out.attrs["own_distances"] and not normalized
    if "modelVariog" in ref:
        assert applies
        model = model_variogram(fit, resid_type=kwargs["resid_type"])
        np.testing.assert_allclose(model["dist"], ref["modelVariog"]["dist"], rtol=1e-12)
        np.testing.assert_allclose(model["variog"], ref["modelVariog"]["variog"], rtol=1e-10)
    elif case.startswith("V05") and kwargs.get("time") == "Time" and not normalized:
        # nlme has no Variogram for corCAR1; bayesmix's is 1 - Phi^d (nlme's Phi)
        assert applies
        model = model_variogram(fit)
        phi = reference(case, method)[1]["corStruct"]["coef"]["Phi"]
        np.testing.assert_allclose(model["variog"], 1.0 - phi ** model["dist"], rtol=1e-12)
        assert model["dist"].iloc[0] == 1.0 and model["dist"].iloc[-1] == 63.0
    else:
        assert not applies


@pytest.mark.parametrize("case, method, ref", MODEL_CALLS.values(), ids=MODEL_CALLS)
def test_model_variogram_reproduces_nlme(case, method, ref):
    args = _arguments(ref["call"])
    out = model_variogram(nlme_fit(case, method), length_out=int(args.get("length.out", 50)))
    sig2 = float(args.get("sig2", 1.0))
    np.testing.assert_allclose(out["dist"], ref["dist"], rtol=1e-12)
    np.testing.assert_allclose(sig2 * out["variog"], ref["variog"], rtol=1e-10)


# ----------------------------------------------------------------- groupings and defaults


def test_groups_default_to_the_innermost_grouping_and_to_one_series_for_gls():
    orthodont = data("Orthodont")
    fit = own_fit("V01_orthodont_lme_varident", "ML")
    by_subject = acf(fit, resid_type="pearson", group="Subject")
    np.testing.assert_array_equal(acf(fit, resid_type="pearson"), by_subject)
    assert by_subject.attrs["grouping"] == "Subject"
    plain = bmx.gls("distance ~ age * Sex", orthodont).fit("ML")
    r = plain.residuals("pearson")
    out = acf(plain, max_lag=3, resid_type="pearson")
    n = r.size
    expected = [np.sum(r[: n - k] * r[k:]) / (n - k) / (np.sum(r * r) / n) for k in range(4)]
    np.testing.assert_allclose(out["acf"], expected, rtol=1e-12)
    assert out["n_pairs"].tolist() == [n, n - 1, n - 2, n - 3]
    assert out.attrs["grouping"] is None


def test_acf_follows_time_order_within_groups():
    ovary = data("Ovary")
    shuffled = ovary.sample(frac=1.0, random_state=3)
    formula = "follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)"
    fit = bmx.lmm(formula, ovary).fit("ML")
    again = bmx.lmm(formula, shuffled).fit("ML")
    ours = acf(fit, resid_type="pearson", time="Time")
    np.testing.assert_allclose(acf(again, resid_type="pearson", time="Time"), ours, atol=1e-7)
    np.testing.assert_allclose(acf(fit, resid_type="pearson"), ours, atol=1e-12)


# ----------------------------------------------------------------- bad input


def test_bad_input_raises_bayesmix_errors_that_name_the_problem():
    fit = own_fit("V05_bodyweight_lme_car1", "ML")
    stand_in = SimpleNamespace(residuals=lambda kind: np.zeros(3))
    with pytest.raises(ArgumentError, match=r"takes a fit .*SimpleNamespace"):
        acf(stand_in)
    with pytest.raises(ArgumentError, match="takes a fit"):
        bmx.plot_variogram(stand_in)
    with pytest.raises(DataError, match="'Tme'.*Did you mean 'Time'"):
        variogram(fit, time="Tme")
    with pytest.raises(DataError, match="'Rt'"):
        acf(fit, group="Rt")
    with pytest.raises(ArgumentError, match="resid_type"):
        acf(fit, resid_type="deviance")
    with pytest.raises(ArgumentError, match="not both"):
        variogram(fit, time="Time", coords=["Time"])
    with pytest.raises(ArgumentError, match="max_lag"):
        acf(fit, max_lag=-1)
    with pytest.raises(ArgumentError, match="max_dist"):
        variogram(fit, max_dist=0.0)
    with pytest.raises(ArgumentError, match="collapse"):
        variogram(fit, collapse="median")
    with pytest.raises(DataError, match="must be numeric"):
        variogram(fit, time="Diet")
    unique = data("BodyWeight").assign(row=lambda d: np.arange(len(d)))
    single = bmx.lmm("weight ~ Time + (1 | Rat)", unique).fit("ML")
    with pytest.raises(DataError, match="no group of 'row' has two rows"):
        acf(single, group="row")
    symm = own_fit("V07_orthodont_gls_corsymm_varident", "ML")
    with pytest.raises(ArgumentError, match="function of distance"):
        model_variogram(symm)
    with pytest.raises(ArgumentError, match="no model semivariogram"):
        bmx.plot_variogram(symm, show_model=True)


# ----------------------------------------------------------------- plots and the API


def test_plots_draw_the_diagnostics():
    fit = own_fit("V02_ovary_lme_ar1", "ML")
    ax = bmx.plot_acf(fit)
    table = acf(fit)
    assert len(ax.collections[0].get_segments()) == len(table)
    band = ax.lines[-1].get_ydata()  # the lower band: -z / sqrt(n_pairs)
    np.testing.assert_allclose(band, -1.959963984540054 / np.sqrt(table["n_pairs"]), rtol=1e-12)
    assert "normalized residuals within Mare" in ax.get_title()
    plt.close(ax.figure)

    spatial = own_fit("V15_spatial_gls_corexp_nugget", "REML")
    ax = bmx.plot_variogram(spatial)
    labels = [line.get_label() for line in ax.lines]
    assert labels == [
        "empirical semivariogram",
        "smooth (span 0.6)",
        "corExp(form = ~x + y, nugget = TRUE)",
    ]
    plt.close(ax.figure)
    ax = bmx.plot_variogram(spatial, resid_type="normalized", smooth=False)
    assert [line.get_label() for line in ax.lines][-1] == "independent residuals"
    plt.close(ax.figure)


def test_registered_lazily_without_matplotlib():
    code = (
        "import sys, bayesmix as bmx\n"
        "from bayesmix import residual_diagnostics as rd\n"
        "assert bmx.acf is rd.acf and bmx.variogram is rd.variogram\n"
        "assert 'matplotlib' not in sys.modules and 'pymc' not in sys.modules\n"
        "bmx.plot_acf, bmx.plot_variogram\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert {'acf', 'variogram', 'plot_acf', 'plot_variogram'} <= set(bmx.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_acf_of_a_posterior_uses_its_residuals_at_the_posterior_mean():
    """nlme's ACF of the Pearson residuals at the posterior mean: lag 1 by hand."""
    ovary = bmx.load_dataset("Ovary")
    model = bmx.lmm("follicles ~ sin(2*pi*Time) + cos(2*pi*Time) + (1 | Mare)", ovary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.sample(draws=100, tune=200, chains=2, random_seed=3)
    table = acf(post)
    r = post.residuals("pearson")
    codes = pd.factorize(ovary["Mare"], sort=True)[0]
    pairs = [
        (r[i], r[i + 1]) for i in range(len(r) - 1) if codes[i] == codes[i + 1]
    ]  # the data are sorted by Mare and Time
    lag1 = np.mean([a * b for a, b in pairs]) / np.mean(r**2)
    assert table.loc[table["lag"] == 1, "acf"].item() == pytest.approx(lag1, rel=1e-10)
    assert table.equals(acf(post, resid_type="pearson"))
    assert isinstance(variogram(post, time="Time"), pd.DataFrame)
    structured = bmx.lmm(
        "follicles ~ sin(2*pi*Time) + (1 | Mare)", ovary, correlation=bmx.corAR1(group="Mare")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post_ar1 = structured.sample(draws=50, tune=100, chains=2, random_seed=3)
    with pytest.raises(ArgumentError, match="correlation structure"):
        acf(post_ar1)
