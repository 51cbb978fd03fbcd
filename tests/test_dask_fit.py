"""ML/REML fits on Dask DataFrames equal the in-memory fits of the same data (issue 19).

Tolerances: logLik 1e-8 (absolute), fixed effects 1e-8 (relative). Standard
errors, variance components and conditional modes depend on where the optimiser
stops along the criterion's flat directions, which differs between the
in-memory search (BOBYQA on small models) and the products' (L-BFGS on the
exact gradient): they agree to 2e-5 relative. Most fits here run partition by
partition in this process (``client="sync"``); one runs on the default local
cluster.
"""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import bayesmix as bmx
from bayesmix.errors import ArgumentError, DataError, DataWarning, FitError, FormulaError

CASES = {
    "crossed": ("Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "plate"),
    "nested": ("Pastes", "strength ~ 1 + (1 | batch) + (1 | batch:cask)", "batch"),
    "correlated_slopes": (
        "Arabidopsis",
        "log(1 + total.fruits) ~ nutrient * amd + rack + status"
        " + (nutrient | popu) + (nutrient | popu:gen)",
        "popu",
    ),
    "one_block": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", "Subject"),
}


def _quiet_fit(model, method, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmx.SingularFitWarning)
        return model.fit(method, **kwargs)


def assert_same_fit(dask_fit, fit):
    assert dask_fit.nobs == fit.nobs
    assert dask_fit.loglik == pytest.approx(fit.loglik, abs=1e-8)
    a, b = fit.fixef(), dask_fit.fixef()
    np.testing.assert_allclose(b["estimate"], a["estimate"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(b["std_error"], a["std_error"], rtol=2e-5)
    va, vb = fit.varcorr(), dask_fit.varcorr()
    np.testing.assert_allclose(vb["sdcor"], va["sdcor"], rtol=2e-5, atol=2e-5)
    for grouping, table in fit.ranef().items():
        other = dask_fit.ranef()[grouping]
        assert list(other.index) == list(table.index)
        scale = float(np.abs(table["estimate"]).max()) + 1e-12
        np.testing.assert_allclose(other["estimate"], table["estimate"], atol=2e-5 * scale)
    assert dask_fit.aic == pytest.approx(fit.aic, abs=1e-7)
    assert dask_fit.bic == pytest.approx(fit.bic, abs=1e-7)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("npartitions", [1, 4])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_dask_fit_equals_the_pandas_fit(case, npartitions, method):
    dataset, formula, grouping = CASES[case]
    # sorted by a grouping factor: most of its levels appear in one partition only
    data = bmx.load_dataset(dataset).sort_values(grouping, kind="stable")
    ddf = dd.from_pandas(data, npartitions=npartitions, sort=False)
    fit = _quiet_fit(bmx.lmm(formula, data), method)
    dask_fit = _quiet_fit(bmx.lmm(formula, ddf), method, client="sync")
    assert_same_fit(dask_fit, fit)


def test_missing_values_are_counted_and_dropped_as_in_memory():
    data = bmx.load_dataset("Arabidopsis").copy()
    rng = np.random.default_rng(3)
    data.loc[rng.choice(len(data), 40, replace=False), "nutrient"] = np.nan
    data.loc[rng.choice(len(data), 25, replace=False), "popu"] = None
    formula = "log(1 + total.fruits) ~ nutrient + rack + (1 | popu) + (1 | popu:gen)"
    message = r"Dropped 65 of 625 rows with missing values \(popu: 25, nutrient: 40\)\."
    with pytest.warns(DataWarning, match=message):
        fit = bmx.lmm(formula, data).fit("ML")
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.warns(DataWarning, match=message):
        dask_fit = bmx.lmm(formula, ddf).fit("ML", client="sync")
    assert dask_fit.nobs == fit.nobs < 625
    assert_same_fit(dask_fit, fit)
    assert dask_fit.survey.n_dropped == 625 - fit.nobs


def test_partitions_without_complete_rows_add_nothing():
    # the first two of six partitions lose every response: their empty products
    # meet first in the reduction, and must add up to nothing
    data = bmx.load_dataset("Penicillin").copy()
    data.loc[:47, "diameter"] = np.nan
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    with pytest.warns(DataWarning, match="Dropped 48 of 144 rows"):
        fit = bmx.lmm(formula, data).fit("REML")
    ddf = dd.from_pandas(data, npartitions=6, sort=False)
    with pytest.warns(DataWarning, match="Dropped 48 of 144 rows"):
        dask_fit = bmx.lmm(formula, ddf).fit("REML", client="sync")
    assert_same_fit(dask_fit, fit)


def test_prior_weights_and_offsets_as_in_memory():
    data = bmx.load_dataset("sleepstudy").copy()
    data["w"] = 1.0 + (np.arange(len(data)) % 3)
    data["off"] = 0.5 * data["Days"]
    formula = "Reaction ~ Days + (Days | Subject)"
    fit = bmx.lmm(formula, data, weights="w", offset="off").fit("REML")
    ddf = dd.from_pandas(data, npartitions=5)
    dask_fit = bmx.lmm(formula, ddf, weights="w", offset="off").fit("REML", client="sync")
    assert_same_fit(dask_fit, fit)
    np.testing.assert_allclose(dask_fit.fitted().compute(), fit.fitted(), atol=1e-4)


def test_lazy_rows_fitted_residuals_and_predictions():
    data = bmx.load_dataset("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    fit = bmx.lmm(formula, data).fit()
    ddf = dd.from_pandas(data, npartitions=4)
    dask_fit = bmx.lmm(formula, ddf).fit(client="sync")
    fitted = dask_fit.fitted()
    assert isinstance(fitted, dd.Series)
    fitted = fitted.compute()
    assert list(fitted.index) == list(data.index)
    scale = float(np.abs(fit.fitted()).max())
    np.testing.assert_allclose(fitted, fit.fitted(), atol=2e-5 * scale)
    pearson = dask_fit.residuals("pearson").compute()
    np.testing.assert_allclose(pearson, fit.residuals("pearson"), atol=2e-4)
    population = dask_fit.predict(include_random=False).compute()
    np.testing.assert_allclose(population, fit.predict(include_random=False), rtol=1e-8)
    new = pd.DataFrame({"Days": [0.0, 5.0, 9.0], "Subject": ["308", "309", "999"]})
    with pytest.warns(DataWarning, match="not seen"):
        expected = fit.predict(new)
    with pytest.warns(DataWarning, match="not seen"):
        got = dask_fit.predict(new)
    np.testing.assert_allclose(got, expected, atol=2e-5 * scale)
    lazy = dask_fit.predict(dd.from_pandas(new.iloc[:2], npartitions=1)).compute()
    np.testing.assert_allclose(lazy, expected[:2], atol=2e-5 * scale)
    with pytest.raises(ArgumentError, match="kind"):
        dask_fit.residuals("deviance")


def test_anova_between_dask_fits_equals_the_pandas_table():
    data = bmx.load_dataset("sleepstudy")
    small, large = "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"
    ddf = dd.from_pandas(data, npartitions=3)
    table = bmx.anova(bmx.lmm(small, data).fit("ML"), bmx.lmm(large, data).fit("ML"))
    dask_table = bmx.anova(
        bmx.lmm(small, ddf).fit("ML", client="sync"), bmx.lmm(large, ddf).fit("ML", client="sync")
    )
    np.testing.assert_allclose(dask_table["L.Ratio"].iloc[1], table["L.Ratio"].iloc[1], atol=1e-7)
    np.testing.assert_allclose(dask_table["p-value"].iloc[1], table["p-value"].iloc[1], rtol=1e-6)
    other = dd.from_pandas(data.assign(Reaction=data["Reaction"] + 1.0), npartitions=3)
    with pytest.raises(bmx.errors.ComparisonError, match="different data"):
        bmx.anova(
            bmx.lmm(small, ddf).fit("ML", client="sync"),
            bmx.lmm(large, other).fit("ML", client="sync"),
        )


def test_gls_and_summary_on_dask():
    data = bmx.load_dataset("Orthodont")
    fit = bmx.gls("distance ~ age + Sex", data).fit("REML")
    dask_fit = bmx.gls("distance ~ age + Sex", dd.from_pandas(data, npartitions=2)).fit(
        "REML", client="sync"
    )
    assert dask_fit.loglik == pytest.approx(fit.loglik, abs=1e-8)
    np.testing.assert_allclose(dask_fit.fixef()["estimate"], fit.fixef()["estimate"], rtol=1e-8)
    text = str(dask_fit.summary())
    assert "Data: Dask DataFrame, 2 partitions, 108 rows" in text
    assert "approximate" in text and "Fixed effects:" in text


def test_unknown_divisions_and_the_default_local_cluster():
    data = bmx.load_dataset("Penicillin")
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    ddf = dd.from_pandas(data, npartitions=3).clear_divisions()
    fit = bmx.lmm(formula, data).fit()
    dask_fit = bmx.lmm(formula, ddf).fit()  # a local cluster, started and closed here
    assert_same_fit(dask_fit, fit)


# ------------------------------------------------------------------ bad input
def test_object_columns_of_mixed_types_are_refused_as_in_memory():
    import dask

    orthodont = bmx.load_dataset("Orthodont").copy()
    orthodont["Sex"] = orthodont["Sex"].astype(object)
    orthodont.loc[orthodont.index[-10:], "Sex"] = 7  # numbers in the last partition only
    sleep = bmx.load_dataset("sleepstudy").copy()
    sleep["Subject"] = sleep["Subject"].astype(object)
    sleep.loc[sleep.index[-18:], "Subject"] = 7
    cases = [
        ("distance ~ age + Sex + (1 | Subject)", orthodont, "Sex.*type"),
        ("Reaction ~ Days + (1 | Subject)", sleep, "grouping column 'Subject' mixes"),
    ]
    # Dask turns object columns into strings by default; kept as objects here
    with dask.config.set({"dataframe.convert-string": False}):
        for formula, data, message in cases:
            with pytest.raises(DataError, match=message) as in_memory:
                bmx.lmm(formula, data)
            ddf = dd.from_pandas(data, npartitions=3)
            with pytest.raises(DataError, match=message) as on_dask:
                bmx.lmm(formula, ddf).fit(client="sync")
            assert str(on_dask.value) == str(in_memory.value)


def test_infinite_values_are_refused_as_in_memory():
    data = bmx.load_dataset("sleepstudy").copy()
    data["Days"] = data["Days"].astype(float)
    data.loc[data.index[100], "Days"] = np.inf
    with pytest.raises(DataError, match="infinite") as in_memory:
        bmx.lmm("Reaction ~ Days + (1 | Subject)", data)
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.raises(DataError, match="infinite") as on_dask:
        bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf).fit(client="sync")
    assert str(on_dask.value) == str(in_memory.value)


def test_a_model_too_large_for_the_driver_is_refused_with_its_size():
    data = bmx.load_dataset("Penicillin")
    ddf = dd.from_pandas(data, npartitions=2)
    model = bmx.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", ddf)
    with pytest.raises(FitError, match=r"need \d+\.\d GiB.*plate: 24 levels"):
        model.fit(client="sync", max_driver_memory=100)


def _fail_on_subject_335(part: pd.DataFrame) -> pd.DataFrame:
    """A partition reader that fails on the rows of one subject (the second partition's),
    wherever that partition is computed."""
    if (part["Subject"].astype(str) == "335").any():
        raise OSError("corrupt file")
    return part


def test_a_partition_that_fails_to_read_is_named():
    data = bmx.load_dataset("sleepstudy")
    ddf = dd.from_pandas(data, npartitions=3)
    assert (ddf.partitions[1]["Subject"].compute().astype(str) == "335").any()
    ddf = ddf.map_partitions(_fail_on_subject_335, meta=data.iloc[:0])
    with pytest.raises(DataError, match="partition 1 .*corrupt file"):
        bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf).fit(client="sync")


def test_what_needs_rows_in_memory_is_refused():
    data = bmx.load_dataset("sleepstudy")
    ddf = dd.from_pandas(data, npartitions=2)
    with pytest.raises(FormulaError, match="scale"):
        bmx.lmm("Reaction ~ scale(Days) + (1 | Subject)", ddf).fit(client="sync")
    with pytest.raises(ArgumentError, match="correlation"):
        bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf, correlation="corAR1()")
    with pytest.raises(ArgumentError, match="must name a column"):
        bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf, weights=np.ones(180)).fit(client="sync")
    with pytest.raises(DataError, match="Dayz"):
        bmx.lmm("Reaction ~ Dayz + (1 | Subject)", ddf)
    model = bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf)
    with pytest.raises(ArgumentError, match="in memory"):
        model.sample()
    fit = model.fit(client="sync")
    for call in (
        lambda: fit.bootstrap(10),
        lambda: fit.confint(method="profile"),
        lambda: fit.ranova(),
        lambda: fit.summary(ddf="Satterthwaite"),
        lambda: fit.save("x.bmx"),
        lambda: fit.r2(),
    ):
        with pytest.raises(ArgumentError, match="Dask DataFrame"):
            call()
    wald = fit.confint(method="Wald")
    expected = bmx.lmm("Reaction ~ Days + (1 | Subject)", data).fit().confint(method="Wald")
    assert list(wald.index) == list(expected.index)
    np.testing.assert_allclose(wald.to_numpy(float), expected.to_numpy(float), rtol=1e-6)


def test_the_template_says_nothing_of_itself():
    """The template holds one row per level, so within-level checks on it would describe
    the template, not the data: a varying slope gets no 'does not vary' warning."""
    rng = np.random.default_rng(5)
    groups = np.tile(np.arange(2000), 3)  # each level's rows are 2,000 rows apart
    x = rng.normal(size=groups.size)
    y = x + rng.normal(size=2000)[groups] + rng.normal(size=groups.size)
    data = pd.DataFrame({"y": y, "x": x, "g": groups.astype(str)})
    ddf = dd.from_pandas(data, npartitions=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bmx.lmm("y ~ x + (1 + x | g)", ddf).fit(client="sync")
    assert not [w for w in caught if "does not vary" in str(w.message)]
    assert fit.loglik == pytest.approx(bmx.lmm("y ~ x + (1 + x | g)", data).fit().loglik, abs=1e-8)


# ------------------------------------------------------------------ review findings
def test_a_term_absent_from_the_sampled_rows_is_kept():
    """Orthodont sorted by Sex: the first rows (part of the template) are all Male, yet
    age:Sex[Female] is estimable in the data and must not be dropped as aliased."""
    data = bmx.load_dataset("Orthodont").sort_values("Sex", kind="stable")
    formula = "distance ~ age * Sex + (1 | Subject)"
    fit = bmx.lmm(formula, data).fit("ML")
    dask_fit = bmx.lmm(formula, dd.from_pandas(data, npartitions=4)).fit("ML", client="sync")
    assert list(dask_fit.fixef().index) == list(fit.fixef().index)
    assert_same_fit(dask_fit, fit)


def test_aliased_columns_are_dropped_as_in_memory():
    data = bmx.load_dataset("sleepstudy").copy()
    data["Days2"] = 2.0 * data["Days"]
    formula = "Reaction ~ Days + Days2 + (1 | Subject)"
    with pytest.warns(DataWarning, match="dropping aliased column") as in_memory:
        fit = bmx.lmm(formula, data).fit("ML")
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.warns(DataWarning, match="dropping aliased column") as on_dask:
        dask_fit = bmx.lmm(formula, ddf).fit("ML", client="sync")
    assert str(on_dask[0].message) == str(in_memory[0].message)
    assert_same_fit(dask_fit, fit)
    np.testing.assert_allclose(dask_fit.fitted().compute(), fit.fitted(), rtol=1e-6)


def test_large_constant_parts_cost_no_digits():
    """y = 1e7 + ..., x = 1e6 + ...: the rows are centred before they are summed."""
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(40), 25)
    x = 1e6 + rng.normal(size=groups.size)
    y = 1e7 + 2.0 * (x - 1e6) + rng.normal(size=40)[groups] + rng.normal(size=groups.size)
    data = pd.DataFrame({"y": y, "x": x, "g": groups.astype(str)})
    # (a random slope on x + 1e6 is ill-conditioned in memory as well: Z is not centred)
    for formula in ("y ~ x + (1 | g)", "y ~ x + I(x * x) + (1 | g)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bmx.lmm(formula, data).fit("ML")
            dask_fit = bmx.lmm(formula, dd.from_pandas(data, npartitions=3)).fit(
                "ML", client="sync"
            )
        assert dask_fit.loglik == pytest.approx(fit.loglik, abs=1e-6)
        np.testing.assert_allclose(dask_fit.fixef()["estimate"], fit.fixef()["estimate"], rtol=1e-9)
        assert dask_fit.sigma == pytest.approx(fit.sigma, rel=1e-5)


def test_a_constant_or_exactly_fitted_response_is_refused():
    data = bmx.load_dataset("sleepstudy").copy()
    data["constant"] = 5.0
    data["exact"] = 1.0 + 2.0 * data["Days"]
    ddf = dd.from_pandas(data, npartitions=3)
    with pytest.raises(FitError, match="constant"):
        bmx.lmm("constant ~ Days + (1 | Subject)", ddf).fit(client="sync")
    with pytest.raises(FitError, match="reproduce the response"):
        bmx.lmm("exact ~ Days + (1 | Subject)", ddf).fit(client="sync")


def test_functions_written_for_rows_in_memory_refuse_a_dask_fit():
    data = bmx.load_dataset("sleepstudy")
    fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", dd.from_pandas(data, npartitions=2)).fit(
        client="sync"
    )
    for call in (
        lambda: bmx.ranova(fit),
        lambda: bmx.acf(fit),
        lambda: bmx.plot_effects(fit, "Days"),
    ):
        with pytest.raises(ArgumentError, match="Dask DataFrame"):
            call()
    assert repr(fit.design.y).startswith("<responses of the data's rows: (180,)")


def test_a_numeric_column_coded_as_a_factor_gets_every_level():
    data = bmx.load_dataset("sleepstudy").copy()
    data["phase"] = (data["Days"] >= 5).astype(int) + (data["Days"] >= 8).astype(int)
    data = data.sort_values("phase", kind="stable")  # the last levels only in late rows
    formula = "Reaction ~ C(phase) + (1 | Subject)"
    fit = bmx.lmm(formula, data).fit()
    dask_fit = bmx.lmm(formula, dd.from_pandas(data, npartitions=4)).fit(client="sync")
    assert_same_fit(dask_fit, fit)


def test_predictions_of_new_rows_need_only_the_predictors():
    data = bmx.load_dataset("sleepstudy")
    dask_fit = bmx.lmm("Reaction ~ Days + (1 | Subject)", dd.from_pandas(data, 2)).fit(
        client="sync"
    )
    new = pd.DataFrame(
        {"Days": [1.0, 2.0, 3.0, 4.0], "Subject": ["308"] * 4, "Reaction": [np.nan] * 4}
    )
    lazy = dask_fit.predict(dd.from_pandas(new, npartitions=2)).compute()
    assert len(lazy) == 4
    np.testing.assert_allclose(lazy, dask_fit.predict(new), rtol=1e-12)


def test_reml_anova_of_one_frame_on_two_schedulers():
    """The sums come in another order on a cluster: the fixed effects still compare equal."""
    data = bmx.load_dataset("sleepstudy")
    ddf = dd.from_pandas(data, npartitions=4)
    small = bmx.lmm("Reaction ~ Days + (1 | Subject)", ddf).fit(client="sync")
    large = bmx.lmm("Reaction ~ Days + (Days | Subject)", ddf).fit()
    table = bmx.anova(small, large)
    expected = bmx.anova(
        bmx.lmm("Reaction ~ Days + (1 | Subject)", data).fit(),
        bmx.lmm("Reaction ~ Days + (Days | Subject)", data).fit(),
    )
    np.testing.assert_allclose(table["L.Ratio"].iloc[1], expected["L.Ratio"].iloc[1], atol=1e-6)


def test_fit_uses_the_active_client():
    from distributed import Client, LocalCluster

    data = bmx.load_dataset("Penicillin")
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        ddf = client.persist(dd.from_pandas(data, npartitions=2))
        dask_fit = bmx.lmm(formula, ddf).fit()
    assert_same_fit(dask_fit, bmx.lmm(formula, data).fit())


def test_a_slope_constant_within_every_level_is_warned_about_as_in_memory():
    data = bmx.load_dataset("sleepstudy").copy()
    data["age"] = data["Subject"].astype(str).map(lambda s: float(int(s) % 7))
    formula = "Reaction ~ Days + (1 + age | Subject)"
    with warnings.catch_warnings(record=True) as in_memory:
        warnings.simplefilter("always")
        bmx.lmm(formula, data)
    with warnings.catch_warnings(record=True) as on_dask:
        warnings.simplefilter("always")
        bmx.lmm(formula, dd.from_pandas(data, npartitions=3)).fit(client="sync")
    expected = [str(w.message) for w in in_memory if "does not vary" in str(w.message)]
    assert expected
    assert [str(w.message) for w in on_dask if "does not vary" in str(w.message)] == expected
