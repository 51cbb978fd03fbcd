"""Simulation, the parametric bootstrap and the bootstrap LRT against lme4's ``bootMer`` and
pbkrtest's ``PBmodcomp`` (``tests/refs/inference/make_bootstrap.R``).

R's random numbers cannot be reproduced, so Monte Carlo quantities are compared within
3 combined Monte Carlo SEs: for a bootstrap SD, ``sd sqrt((kurtosis + 2) / (4 nsim))``
on each side (the reference stores R's); for the mean of the LRT's reference
distribution, ``sqrt(var / nsim)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from inference_refs import dataset, reference

import bayesmix as bmx
from bayesmix.errors import ArgumentError, ComparisonError

pytestmark = pytest.mark.filterwarnings("ignore::bayesmix.errors.SingularFitWarning")


@pytest.fixture(scope="module")
def sleep_ml():
    data = dataset("sleepstudy_slope_ml")
    return bmx.lmm("Reaction ~ Days + (Days | Subject)", data).fit(method="ML")


@pytest.fixture(scope="module")
def boot(sleep_ml):
    return sleep_ml.bootstrap(2000, seed=1, client="sync", progress=False)


# bayesmix's default statistic -> bootMer's statistic in make_bootstrap.R
BOOT_NAMES = {
    "Intercept": "(Intercept)",
    "Days": "Days",
    "sigma": "sigma",
    "sd_(Intercept)|Subject": "sd1",
    "sd_Days|Subject": "sd2",
    "cor_Days.(Intercept)|Subject": "sd3",
}


def test_bootstrap_standard_errors_agree_with_bootmer(boot):
    ref = reference("sleepstudy_slope_ml_bootstrap")["bootMer"]
    per = {row["term"]: row for row in ref["per_statistic"]}
    reps = boot.replicates
    assert len(reps) == 2000 and not boot.failures
    for ours, theirs in BOOT_NAMES.items():
        x = reps[ours].dropna().to_numpy()
        sd = x.std(ddof=1)
        kurtosis = np.mean((x - x.mean()) ** 4) / np.mean((x - x.mean()) ** 2) ** 2 - 3
        mcse = np.hypot(sd * np.sqrt((kurtosis + 2) / (4 * x.size)), per[theirs]["mcse_sd"])
        assert abs(sd - per[theirs]["sd"]) < 3 * mcse, (ours, sd, per[theirs]["sd"], mcse)
    t0 = ref["t0"]
    np.testing.assert_allclose(boot.t0["Days"], t0["Days"], rtol=1e-5)
    np.testing.assert_allclose(boot.t0["sigma"], t0["sigma"], rtol=1e-5)


def test_bootstrap_is_the_same_on_any_number_of_workers(sleep_ml):
    sync = sleep_ml.bootstrap(40, seed=7, client="sync", progress=False, batch_size=7)
    dask = sleep_ml.bootstrap(40, seed=7, workers=2, progress=False)
    assert dask.workers == 2
    np.testing.assert_array_equal(sync.replicates.to_numpy(), dask.replicates.to_numpy())
    other = sleep_ml.bootstrap(40, seed=8, client="sync", progress=False)
    assert not np.array_equal(sync.replicates.to_numpy(), other.replicates.to_numpy())


def test_bootstrap_percentile_intervals_and_custom_statistic(sleep_ml, boot):
    ci = boot.intervals(0.9)
    assert list(ci.columns) == ["5 %", "95 %"]
    assert np.all(ci.iloc[:, 0] < boot.t0) and np.all(boot.t0 < ci.iloc[:, 1])
    via_confint = sleep_ml.confint(method="boot", nsim=50, seed=3, client="sync", progress=False)
    assert list(via_confint.index) == list(boot.t0.index)
    custom = sleep_ml.bootstrap(
        20,
        lambda f: {"slope": f.fixef()["estimate"]["Days"]},
        seed=2,
        client="sync",
        progress=False,
    )
    assert list(custom.replicates.columns) == ["slope"]


def test_failed_refits_are_counted_not_dropped(sleep_ml):
    calls = {"n": 0}

    def fragile(fit):
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            raise ValueError("refused")
        return [fit.sigma]

    with pytest.warns(bmx.DataWarning, match="failed"):
        result = sleep_ml.bootstrap(19, fragile, seed=1, client="sync", progress=False)
    assert len(result.replicates) == 19
    assert len(result.failures) == result.replicates["t1"].isna().sum() > 0


def test_simulate_matches_the_model_moments(sleep_ml):
    sims = sleep_ml.simulate(4000, seed=1)
    assert sims.shape == (180, 4000)
    days = dataset("sleepstudy_slope_ml")["Days"].to_numpy()
    est = sleep_ml.estimates
    mean = est.beta[0] + est.beta[1] * days
    # 4000 draws: the mean's SE is below 1.5 everywhere (SD < 60)
    assert np.max(np.abs(sims.mean(axis=1).to_numpy() - mean)) < 5 * 60 / np.sqrt(4000)
    cov = est.covariances[0]
    variance = cov[0, 0] + 2 * days * cov[0, 1] + days**2 * cov[1, 1] + est.sigma**2
    np.testing.assert_allclose(sims.var(axis=1, ddof=1), variance, rtol=0.15)
    conditional = sleep_ml.simulate(2000, seed=1, use_u=True)
    np.testing.assert_allclose(
        conditional.mean(axis=1), sleep_ml.fitted(), atol=5 * est.sigma / np.sqrt(2000)
    )


@pytest.mark.parametrize(
    "case,large,small",
    [
        (
            "sleepstudy_pbmodcomp_slope_vs_intercept",
            "Reaction ~ Days + (Days | Subject)",
            "Reaction ~ Days + (1 | Subject)",
        ),
        (
            "sleepstudy_pbmodcomp_days_fixed",
            "Reaction ~ Days + (1 | Subject)",
            "Reaction ~ 1 + (1 | Subject)",
        ),
    ],
)
def test_pbmodcomp_agrees_with_pbkrtest(case, large, small):
    ref = reference(case)["PBmodcomp"]
    data = dataset("sleepstudy_slope_ml")
    big = bmx.lmm(large, data).fit(method="ML")
    little = bmx.lmm(small, data).fit(method="ML")
    test = bmx.pbmodcomp(big, little, 1000, seed=1, client="sync", progress=False)
    np.testing.assert_allclose(test.table.loc["LRT", "stat"], ref["LRT_stat"], rtol=1e-6)
    assert test.table.loc["LRT", "df"] == ref["df"]
    assert test.table.loc["PBtest", "p_value"] == pytest.approx(1 / 1001)
    mcse = np.hypot(np.sqrt(test.reference.var() / 1000), np.sqrt(ref["ref_var"] / 1000))
    assert abs(test.reference.mean() - ref["ref_mean"]) < 3 * mcse


def test_bad_bootstrap_arguments_are_named(sleep_ml):
    with pytest.raises(ArgumentError, match="statistic"):
        sleep_ml.bootstrap(5, statistic="sigma", client="sync")
    with pytest.raises(ArgumentError, match="nsim"):
        sleep_ml.simulate(0)
    small = bmx.lmm("Reaction ~ Days + (1 | Subject)", dataset("sleepstudy_slope_ml")).fit()
    with pytest.raises(ComparisonError, match="bigger model first"):
        bmx.pbmodcomp(small, sleep_ml, 5, client="sync")
    assert isinstance(sleep_ml.simulate(2, seed=1), pd.DataFrame)


def test_pbmodcomp_refits_reml_fits_by_ml_even_with_different_fixed_effects(sleep_ml):
    data = dataset("sleepstudy_slope_ml")
    big = bmx.lmm("Reaction ~ Days + (1 | Subject)", data).fit(method="REML")
    little = bmx.lmm("Reaction ~ 1 + (1 | Subject)", data).fit(method="REML")
    test = bmx.pbmodcomp(big, little, 20, seed=1, client="sync", progress=False)
    ref = reference("sleepstudy_pbmodcomp_days_fixed")["PBmodcomp"]
    np.testing.assert_allclose(test.table.loc["LRT", "stat"], ref["LRT_stat"], rtol=1e-6)
    with pytest.raises(ArgumentError, match="nsim"):
        bmx.pbmodcomp(big, little, 0, client="sync")


def test_nan_statistics_are_failures_and_nsim_must_be_positive(sleep_ml):
    with pytest.warns(bmx.DataWarning, match="NaN"):
        result = sleep_ml.bootstrap(6, lambda f: [np.nan], seed=1, client="sync", progress=False)
    assert len(result.failures) == 6
    with pytest.raises(ArgumentError, match="nsim"):
        sleep_ml.bootstrap(0, client="sync")
    with pytest.raises(ArgumentError, match="level"):
        result.intervals(95)
