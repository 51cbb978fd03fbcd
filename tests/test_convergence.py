"""``model.sample()`` at its defaults converges on the classic models (issue 17, point 4).

Two seeds per model; ``bench/bench_convergence.py`` runs ten and prints the table.
Criteria: R-hat <= 1.01 and bulk ESS >= 400 over every parameter (group effects
included), and no divergence.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

import bayesmix as bmx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_convergence import ESS_MIN, MODELS, R_HAT_MAX  # noqa: E402


@pytest.mark.parametrize("name", list(MODELS))
def test_defaults_converge(name):
    dataset, formula = MODELS[name]
    model = bmx.lmm(formula, bmx.load_dataset(dataset))
    for seed in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("error", bmx.SamplingWarning)  # the check must stay silent
            post = model.sample(random_seed=seed)
        diag = post.diagnostics()
        assert diag["divergences"] == 0, (name, seed)
        assert diag["max_r_hat"] <= R_HAT_MAX, (name, seed, diag["max_r_hat"])
        assert diag["min_ess_bulk"] >= ESS_MIN, (name, seed, diag["min_ess_parameter"])
