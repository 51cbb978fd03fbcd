"""The vectorised rank diagnostics equal ArviZ's, parameter by parameter."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from bayesmix.bayes.diagnostics import BLOM_OFFSET, _normal_scores, rank_diagnostics


def test_scores_of_average_ranks_with_ties():
    rows = np.random.default_rng(1).integers(0, 5, size=(7, 40)).astype(float)
    ranks = stats.rankdata(rows, axis=1)  # ties share their mean rank
    expected = stats.norm.ppf((ranks - BLOM_OFFSET) / (40 - 2 * BLOM_OFFSET + 1))
    np.testing.assert_allclose(_normal_scores(rows), expected, rtol=1e-14)


def test_rank_diagnostics_equal_arviz():
    import arviz as az

    rng = np.random.default_rng(0)
    # more parameters than one block (BLOCK_SIZE): blocks run in threads
    draws = np.cumsum(rng.normal(size=(4, 200, 300)), axis=1) * 0.05
    draws += rng.normal(size=draws.shape)
    draws[1, :, 3] += 2.0
    draws[1, :, 290] += 2.0  # a chain off the others: R-hat well above 1
    draws[:, :, 4] = 1.0  # a constant
    draws[:, :, 5] = np.round(draws[:, :, 5])  # many ties
    with warnings.catch_warnings():  # the constant's R-hat is 0/0, as in ArviZ
        warnings.simplefilter("ignore", RuntimeWarning)
        r_hat, ess_bulk = rank_diagnostics(draws)
        expected_r_hat = np.asarray(az.rhat(draws))
        expected_ess = np.asarray(az.ess(draws, method="bulk"))
    np.testing.assert_allclose(r_hat, expected_r_hat, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ess_bulk, expected_ess, rtol=1e-12, equal_nan=True)
    assert r_hat[3] > 1.2 and r_hat[290] > 1.2


def test_posterior_tables_print_ess_as_draws_and_no_none_cells():
    """ESS as whole draws (not 1.121e+04), R-hat to 3 decimals, empty cells for missing
    names, in text and HTML."""
    import pandas as pd

    from bayesmix.bayes.tables import BayesSummary

    fixef = pd.DataFrame(
        {"mean": [251.4, 10.47], "r_hat": [1.0012, 1.0003], "ess_bulk": [11210.4, 3120.7]},
        index=["Intercept", "Days"],
    )
    varcorr = pd.DataFrame(
        {
            "grp": ["Subject", "Residual"],
            "var1": ["Intercept", None],
            "var2": [None, None],
            "mean": [24.1, 25.6],
        }
    )
    summary = BayesSummary("header", varcorr, fixef, "footer")
    text, html = str(summary), summary._repr_html_()
    for shown in (text, html):
        assert "11210" in shown and "e+04" not in shown and "None" not in shown
    assert "1.001" in text
