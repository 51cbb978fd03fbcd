"""Parametric-bootstrap likelihood-ratio test of two nested fits (pbkrtest's ``PBmodcomp``).

The chi-square reference of the likelihood ratio fails when the smaller model
puts a variance on its boundary (a random term dropped). The parametric
bootstrap simulates responses from the smaller model, refits both models to
each by ML, and refers the observed ratio to the simulated ones as pbkrtest
does: of the positive simulated ratios (``nsim_used`` of them; a ratio of 0 or
below is a refit of the large model onto the small one's boundary, which
pbkrtest drops), ``p = (1 + #{LRT* > LRT}) / (1 + nsim_used)``. Bartlett's
correction rescales the observed ratio by ``df / mean(LRT*)`` over the same
ratios and keeps the chi-square. :attr:`PBTest.reference` keeps every
simulated ratio, zeros included, so the dropped ones can be counted. Refits run
in batches on Dask (:mod:`bayesmix.inference.distributed`); a replicate that
fails is counted, warned about and left out.

Notation
--------
LRT : ``2 (logLik_large - logLik_small)``; LRT* : its simulated values.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError, ComparisonError, DataWarning, FitError, warn
from bayesmix.inference.distributed import run_replicates
from bayesmix.inference.profile import ml_estimates
from bayesmix.inference.simulate import check_nsim, check_simulable, simulate_response
from bayesmix.ml.fit import fit_estimates

__all__ = ["PBTest", "pbmodcomp"]


@dataclass(frozen=True)
class LRTTask:
    """Simulate from the small model, refit both by ML, return the LRT (or NaN, message)."""

    small: Any
    small_estimates: Any
    large: Any
    theta_small: np.ndarray
    theta_large: np.ndarray

    def __call__(self, indices: Any, seeds: Any) -> list[tuple[float, str]]:
        out = []
        for seed in seeds:
            y = simulate_response(self.small, self.small_estimates, np.random.default_rng(seed))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    small = fit_estimates(
                        dataclasses.replace(self.small, y=y), "ML", start=self.theta_small
                    )
                    large = fit_estimates(
                        dataclasses.replace(self.large, y=y), "ML", start=self.theta_large
                    )
                    out.append((float(small.criterion - large.criterion), ""))
                except (FitError, ArithmeticError, ValueError, np.linalg.LinAlgError) as err:
                    out.append((np.nan, f"{type(err).__name__}: {err}"))
        return out


@dataclass(frozen=True)
class PBTest:
    """Result of :func:`pbmodcomp`: ``table`` (LRT, PBtest, Bartlett) and the reference."""

    table: pd.DataFrame
    reference: np.ndarray
    failures: dict[int, str]
    seed_entropy: int
    workers: int
    elapsed_s: float

    @property
    def nsim_used(self) -> int:
        """Simulated ratios the p-value uses (positive and finite, as pbkrtest's)."""
        return int(np.sum(np.isfinite(self.reference) & (self.reference > 0)))

    def __repr__(self) -> str:
        used = self.nsim_used
        head = (
            f"Parametric bootstrap test; {used} simulations used, {len(self.failures)} failed "
            f"({self.elapsed_s:.1f} s, {self.workers or 'no'} Dask workers)"
        )
        return head + "\n" + self.table.to_string(na_rep="", float_format=lambda v: f"{v:.5g}")


def pbmodcomp(
    large: Any,
    small: Any,
    nsim: int = 1000,
    *,
    seed: int | np.random.SeedSequence | None = None,
    client: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> PBTest:
    """Parametric-bootstrap LRT of ``small`` (the null) against ``large`` (pbkrtest's
    ``PBmodcomp``); REML fits are refitted by ML. See :meth:`MLResult.bootstrap` for
    ``seed``, ``client``, ``workers``, ``batch_size`` and ``progress``.
    """
    for name, fit in (("large", large), ("small", small)):
        check_simulable(fit)
        if not hasattr(fit, "design") or not hasattr(fit.design, "blocks"):
            raise ArgumentError(f"{name} must be an ML/REML fit of bmx.lmm or bmx.gls.")
    if large.df <= small.df:
        raise ComparisonError(
            f"large has {large.df} parameters and small {small.df}: pass the bigger model "
            "first (pbmodcomp(large, small))."
        )
    check_nsim(nsim)
    design_l, est_l = large.design, ml_estimates(large)  # pbkrtest refits REML fits by ML
    design_s, est_s = small.design, ml_estimates(small)
    if design_l.n_obs != design_s.n_obs or not np.array_equal(design_l.y, design_s.y):
        raise ComparisonError("large and small were fitted to different rows or responses.")
    weights = (design_l.weights, design_s.weights)
    if (weights[0] is None) != (weights[1] is None) or (
        weights[0] is not None and not np.array_equal(*weights)
    ):
        raise ComparisonError("large and small were fitted with different prior weights.")
    observed = float(est_s.criterion - est_l.criterion)
    task = LRTTask(
        design_s,
        est_s,
        design_l,
        np.asarray(est_s.theta, dtype=float),
        np.asarray(est_l.theta, dtype=float),
    )
    run = run_replicates(
        task, nsim, seed, client=client, workers=workers, batch_size=batch_size, progress=progress
    )
    reference = np.array([r[0] for r in run.results], dtype=float)
    failures = {i: r[1] for i, r in enumerate(run.results) if r[1]}
    if failures:
        warn(
            f"{len(failures)} of {nsim} simulated refits failed and are left out of the "
            f"reference distribution (first: {next(iter(failures.values()))}).",
            DataWarning,
        )
    # pbkrtest keeps the positive simulated ratios only (a ratio of 0 is a refit of the
    # large model onto the small one's boundary) and counts those above the observed one
    valid = reference[np.isfinite(reference) & (reference > 0)]
    if not valid.size:
        raise FitError(
            f"none of the {nsim} simulated likelihood ratios is positive and finite, so "
            "there is no reference distribution; check the two models are nested."
        )
    df = int(large.df - small.df)
    p_pb = (1.0 + np.sum(valid > observed)) / (1.0 + valid.size)
    bartlett = observed * df / valid.mean()
    table = pd.DataFrame(
        {
            "stat": [observed, observed, bartlett],
            "df": [df, np.nan, df],
            "p_value": [stats.chi2.sf(observed, df), p_pb, stats.chi2.sf(bartlett, df)],
        },
        index=pd.Index(["LRT", "PBtest", "Bartlett"], name="test"),
    )
    return PBTest(table, reference, failures, run.seed_entropy, run.workers, run.elapsed_s)
