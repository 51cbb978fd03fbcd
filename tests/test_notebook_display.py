"""What a notebook shows: progress by default only when interactive, and HTML reprs."""

from __future__ import annotations

import sys
import warnings

import pytest

import bayesmix as bmx
from bayesmix.bayes.sampler_defaults import (
    announce_compile,
    interactive_session,
    resolve_progress,
)


def test_progress_is_off_in_tests_and_on_at_the_prompt(monkeypatch):
    monkeypatch.delenv("BAYESMIX_PROGRESS", raising=False)
    assert not interactive_session()
    assert resolve_progress(None) is False
    assert resolve_progress(True) is True and resolve_progress(False) is False
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert interactive_session() and resolve_progress(None) is True
    monkeypatch.setenv("BAYESMIX_PROGRESS", "0")  # e.g. notebooks built for the docs
    assert resolve_progress(None) is False and resolve_progress(True) is True


def test_compile_line_goes_to_stderr(capsys):
    announce_compile()
    captured = capsys.readouterr()
    assert captured.out == "" and "preparing the model" in captured.err


def test_sampling_with_progress_announces_the_compile(capfd):
    model = bmx.lmm("Yield ~ 1 + (1 | Batch)", bmx.load_dataset("Dyestuff"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=50, tune=50, chains=1, random_seed=1, progressbar=True)
    assert "bayesmix: preparing the model" in capfd.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.sample(draws=50, tune=50, chains=1, random_seed=1)
    assert "preparing" not in capfd.readouterr().err


def test_model_html_lists_the_models_parts():
    sleep = bmx.load_dataset("sleepstudy")
    html = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep)._repr_html_()
    for text in ("Reaction ~ Days + (Days | Subject)", "180", "Intercept, Days", "18 levels"):
        assert text in html
    assert "correlated" in html
    ovary = bmx.load_dataset("Ovary")
    html = bmx.lmm(
        "follicles ~ Time + (1 | Mare)", ovary, correlation=bmx.corAR1(group="Mare")
    )._repr_html_()
    assert "corAR1" in html
    cbpp = bmx.load_dataset("cbpp")
    html = bmx.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"
    )._repr_html_()
    assert "binomial (logit link)" in html and "15 levels" in html


def test_ml_result_html_is_its_summary():
    fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", bmx.load_dataset("sleepstudy")).fit()
    html = fit._repr_html_()
    assert "REML criterion at convergence: 1743.6" in html
    assert "Scaled residuals" in html and "Number of obs: 180" in html


@pytest.mark.parametrize("text", ["<script>", "a & b"])
def test_html_escapes_text(text):
    from bayesmix.spec.overview import html_table

    out = html_table(text, [(text, text)])
    assert text not in out
