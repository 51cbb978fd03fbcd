"""Tests for bayesmix.plotting with small hand-made result objects."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection

import bayesmix as bmx
from bayesmix import plotting

LEVELS = ["308", "309", "310", "330", "331"]


class FakeML:
    """Just enough of MLResult's interface: ML column names."""

    def __init__(self, shift: float = 0.0, terms=("Intercept", "Days")):
        rng = np.random.default_rng(1)
        self._fixef = pd.DataFrame(
            {
                "estimate": [251.4 + shift, 10.5 + shift],
                "std_error": [6.8, 1.5],
                "t_value": [36.8, 6.8],
            },
            index=["Intercept", "Days"],
        )
        index = pd.MultiIndex.from_product([LEVELS, list(terms)], names=["level", "term"])
        self._ranef = {
            "Subject": pd.DataFrame(
                {"estimate": rng.normal(size=len(index)), "std_error": np.full(len(index), 0.5)},
                index=index,
            ),
            "Batch": pd.DataFrame(
                {"estimate": [1.0, -1.0], "std_error": [0.2, 0.2]},
                index=pd.MultiIndex.from_tuples([("A", "Intercept"), ("B", "Intercept")]),
            ),
        }
        self._fitted = np.linspace(200, 400, 40)
        self._resid = rng.normal(size=40)

    def fixef(self):
        return self._fixef

    def ranef(self):
        return self._ranef

    def residuals(self, kind="response"):
        return self._resid if kind != "double" else 2 * self._resid

    def fitted(self):
        return self._fitted


class FakeBayes(FakeML):
    """Posterior-summary column names with stored 90% intervals."""

    def __init__(self):
        super().__init__(shift=1.0)
        fixef = pd.DataFrame(
            {
                "mean": [252.0, 10.0, 3.0],
                "sd": [7.0, 1.6, 1.0],
                "lower": [240.0, 7.5, 1.3],
                "upper": [264.0, 12.5, 4.7],
                "r_hat": [1.0, 1.0, 1.0],
                "ess_bulk": [900.0, 800.0, 700.0],
            },
            index=["Intercept", "Days", "Extra"],
        )
        fixef.attrs["ci_prob"] = 0.9
        self._fixef = fixef
        ml = self._ranef["Subject"]
        table = pd.DataFrame(
            {
                "mean": ml["estimate"],
                "sd": ml["std_error"],
                "lower": ml["estimate"] - 1,
                "upper": ml["estimate"] + 1,
            }
        )
        table.attrs["ci_prob"] = 0.9
        self._ranef = {"Subject": table}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _errorbar_points(ax):
    """x positions of the markers drawn by errorbar / plot calls."""
    return [line.get_xdata() for line in ax.lines if line.get_marker() == "o"]


def test_plot_ranef_one_panel_per_term_sorted_by_estimate():
    result = FakeML()
    fig = plotting.plot_ranef(result, "Subject")
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["Intercept", "Days"]
    first = fig.axes[0]
    (x,) = _errorbar_points(first)
    assert len(x) == len(LEVELS)
    assert np.all(np.diff(x) >= 0)  # sorted by the first term's estimate
    table = result.ranef()["Subject"].xs("Intercept", level=1)
    expected = [str(level) for level in table["estimate"].sort_values().index]
    assert [t.get_text() for t in first.get_yticklabels()] == expected
    # The interval half-width is z(0.975) * std_error.
    segments = [c for c in first.collections if isinstance(c, LineCollection)][0].get_segments()
    widths = [seg[1][0] - seg[0][0] for seg in segments]
    np.testing.assert_allclose(widths, 2 * 1.959964 * 0.5, rtol=1e-5)


def test_plot_ranef_ci_prob_changes_ml_interval():
    fig = plotting.plot_ranef(FakeML(), "Subject", ci_prob=0.5)
    seg = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0].get_segments()
    np.testing.assert_allclose(seg[0][1][0] - seg[0][0][0], 2 * 0.6744898 * 0.5, rtol=1e-5)
    assert "50%" in fig._suptitle.get_text()


def test_plot_ranef_bayes_uses_stored_interval():
    fig = plotting.plot_ranef(FakeBayes())  # single grouping: no name needed
    seg = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0].get_segments()
    np.testing.assert_allclose([s[1][0] - s[0][0] for s in seg], 2.0)
    assert "90%" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="90% intervals"):
        plotting.plot_ranef(FakeBayes(), ci_prob=0.5)


def test_plot_ranef_bad_grouping_lists_available():
    with pytest.raises(ValueError, match=r"unknown grouping factor 'Subjct'.*'Subject', 'Batch'"):
        plotting.plot_ranef(FakeML(), "Subjct")


def test_plot_ranef_needs_grouping_when_several():
    with pytest.raises(ValueError, match="several grouping factors.*'Subject', 'Batch'"):
        plotting.plot_ranef(FakeML())


def test_plot_ranef_accepts_axes():
    fig, axes = plt.subplots(1, 2)
    out = plotting.plot_ranef(FakeML(), "Subject", ax=axes)
    assert out is fig
    with pytest.raises(ValueError, match="need 2 Axes"):
        plotting.plot_ranef(FakeML(), "Subject", ax=axes[0])
    single = plotting.plot_ranef(FakeML(), "Batch", ax=axes[0])
    assert single is fig


def test_plot_qq_points_and_reference_line():
    result = FakeML()
    ax = plotting.plot_qq(result, kind="double")
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    y = points.get_ydata()
    np.testing.assert_allclose(y, np.sort(2 * result.residuals()))
    x = points.get_xdata()
    assert np.all(np.diff(x) > 0) and np.isclose(x.mean(), 0.0, atol=1e-12)
    assert len([line for line in ax.lines if line.get_marker() != "o"]) == 1  # qq line
    assert "double" in ax.get_ylabel()


def test_plot_residuals_against_fitted():
    result = FakeML()
    fig, ax = plt.subplots()
    out = plotting.plot_residuals(result, ax=ax)
    assert out is ax
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(points.get_xdata(), result.fitted())
    np.testing.assert_allclose(points.get_ydata(), result.residuals())
    assert any(np.allclose(line.get_ydata(), 0.0) for line in ax.lines if line is not points)


def test_plot_coefficients_dodges_models():
    models = {"ML": FakeML(), "ML shifted": FakeML(shift=2.0), "Bayes": FakeBayes()}
    ax = plotting.plot_coefficients(models)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Intercept", "Days", "Extra"]
    marks = _errorbar_points(ax)
    assert [len(x) for x in marks] == [2, 2, 3]  # one point per coefficient per model
    y = [line.get_ydata() for line in ax.lines if line.get_marker() == "o"]
    assert len({round(float(v[0]), 6) for v in y}) == 3  # dodged, not overlapping
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(models)
    assert "90%" in ax.get_title() and "95%" in ax.get_title()


def test_plot_coefficients_list_and_terms():
    ax = plotting.plot_coefficients([FakeML(), FakeML(shift=1.0)], terms=["Days"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Days"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model 1", "model 2"]
    with pytest.raises(ValueError, match="unknown coefficient.*available: Intercept, Days"):
        plotting.plot_coefficients([FakeML()], terms=["Dayz"])
    with pytest.raises(ValueError, match="at least one"):
        plotting.plot_coefficients({})


def test_unreadable_table_is_rejected():
    class Odd(FakeML):
        def fixef(self):
            return pd.DataFrame({"value": [1.0]}, index=["Intercept"])

    with pytest.raises(ValueError, match="estimate/std_error or mean/lower/upper"):
        plotting.plot_coefficients([Odd()])


def test_importing_plotting_does_not_import_matplotlib():
    code = "import sys, bayesmix.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_residual_plots_default_to_each_results_standardised_residuals():
    """plot_qq/plot_residuals with default arguments on a posterior (which has Pearson but
    no normalised residuals) and on an ML GLMM (deviance residuals, as glmer)."""

    class Posterior:  # a BayesResult's residuals accept "response" and "pearson" only
        def residuals(self, kind="response"):
            if kind not in ("response", "pearson"):
                raise bmx.ArgumentError(f"kind must be 'response' or 'pearson', not {kind!r}.")
            return np.linspace(-2, 2, 20) * (0.5 if kind == "pearson" else 1.0)

        def fitted(self):
            return np.arange(20.0)

    assert "pearson" in plotting.plot_qq(Posterior()).get_ylabel()
    assert "pearson" in plotting.plot_residuals(Posterior()).get_ylabel()
    cbpp = bmx.load_dataset("cbpp")
    glmm = bmx.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"
    ).fit()
    ax = plotting.plot_qq(glmm)
    assert "deviance" in ax.get_ylabel()
    (points,) = [line for line in ax.lines if line.get_marker() == "o"]
    np.testing.assert_allclose(points.get_ydata(), np.sort(glmm.residuals("deviance")))
    plt.close("all")
