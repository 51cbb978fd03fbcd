"""The parametric bootstrap of a linear mixed model (lme4's ``bootMer``), run on Dask.

Each replicate simulates a response from the fit (:mod:`.simulate`), refits
the same model by the same method from the fit's ``theta``, and evaluates a
statistic: by default the fixed effects, SDs, correlations and ``sigma`` in
:func:`~bayesmix.inference.confint.confint`'s names. Replicates run in
batches through :func:`~bayesmix.inference.distributed.run_replicates`, so a
seed gives the same numbers on any number of workers. A refit that fails is
kept as a row of ``NaN`` and counted, with its message; refits that warn
(singular, not converged) are counted too.

Notation
--------
t0 : the statistic of the fit; t* : its replicates; nsim : replicates asked for.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.inference.distributed import run_replicates
from bayesmix.inference.profile import sdcor_names, sdcor_values
from bayesmix.inference.simulate import check_nsim, check_simulable, simulate_response
from bayesmix.ml.fit import fit_estimates

__all__ = ["BootstrapResult", "bootstrap", "bootstrap_intervals"]


def default_statistic(fit: Any) -> np.ndarray:
    """SDs, correlations and ``sigma`` (lme4's ``sdcor``), then the fixed effects."""
    est = fit.estimates
    return np.concatenate([sdcor_values(fit.design, est), np.asarray(est.beta, dtype=float)])


@dataclass(frozen=True)
class ReplicateModel:
    """What a replicate's fit knows of its model: the conventions (so ``bic`` and
    ``fixef`` report as the original fit's), and no data to refit."""

    conventions: str

    def update(self, *args: Any, **kwargs: Any) -> Any:
        raise ArgumentError(
            "a bootstrap replicate cannot be refitted with update(): its response is "
            "simulated and not part of any data frame. Compute the statistic from the fit."
        )


@dataclass(frozen=True)
class RefitTask:
    """One batch of replicates: simulate, refit, evaluate (pickled to the workers)."""

    design: Any
    estimates: Any
    statistic: Callable[[Any], Any]
    n_values: int
    use_u: bool
    conventions: str
    # the fit's class (MLResult): taken from the fit, not imported, since MLResult's
    # methods import this module
    result_class: Any

    def refit(self, y: np.ndarray) -> Any:
        design = dataclasses.replace(self.design, y=y)
        start = np.asarray(self.estimates.theta, dtype=float)
        estimates = fit_estimates(design, self.estimates.method, start=start)
        return self.result_class(design, estimates, ReplicateModel(self.conventions))

    def __call__(self, indices: Any, seeds: Any) -> list[tuple[np.ndarray, str, int]]:
        out = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            y = simulate_response(self.design, self.estimates, rng, self.use_u)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    raw = self.statistic(self.refit(y))
                    raw = list(raw.values()) if isinstance(raw, dict) else raw
                    values = np.asarray(raw, dtype=float).ravel()
                    message = ""
                # a failed refit or a statistic that raises is that replicate's failure,
                # recorded with its message (bootMer keeps going the same way)
                except Exception as err:
                    values, message = np.full(self.n_values, np.nan), f"{type(err).__name__}: {err}"
            if values.size != self.n_values:
                message = f"the statistic returned {values.size} values, not {self.n_values}"
                values = np.full(self.n_values, np.nan)
            elif not message and not np.all(np.isfinite(values)):
                message = "the statistic returned NaN or infinite values"
            out.append((values, message, len(caught)))
        return out


@dataclass(frozen=True)
class BootstrapResult:
    """Replicates of a parametric bootstrap (lme4's ``bootMer`` object).

    Attributes
    ----------
    t0 : Series
        The statistic of the original fit.
    replicates : DataFrame
        One row per replicate (``NaN`` where the refit failed).
    failures : dict
        Replicate index -> error message of each failed refit.
    n_warned : int
        Refits that warned (singular, not converged) but are kept.
    seed_entropy, workers, batch_size, elapsed_s
        How the run was made (:class:`~bayesmix.inference.distributed.ReplicateRun`).
    """

    t0: pd.Series
    replicates: pd.DataFrame
    failures: dict[int, str]
    n_warned: int
    seed_entropy: int
    workers: int
    batch_size: int
    elapsed_s: float

    def std_error(self) -> pd.Series:
        """Bootstrap standard errors (SD of the replicates, failed ones left out)."""
        return self.replicates.std(ddof=1)

    def bias(self) -> pd.Series:
        """Mean of the replicates minus the original statistic."""
        return self.replicates.mean() - self.t0

    def intervals(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals (lme4's ``confint(method="boot")``, ``type="perc"``)."""
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
            raise ArgumentError(f"level must be a probability between 0 and 1, not {level!r}.")
        tail = (1.0 - level) / 2.0
        q = self.replicates.quantile([tail, 1.0 - tail]).T
        q.columns = [f"{100 * tail:.3g} %", f"{100 * (1 - tail):.3g} %"]
        return q

    def summary(self) -> pd.DataFrame:
        """``original``, ``bias`` and ``std_error`` per statistic (bootMer's print)."""
        return pd.DataFrame(
            {"original": self.t0, "bias": self.bias(), "std_error": self.std_error()}
        )

    def __repr__(self) -> str:
        n = len(self.replicates)
        head = (
            f"Parametric bootstrap: {n} replicates, {len(self.failures)} failed, "
            f"{self.n_warned} with warnings; {self.workers or 'no'} Dask workers, "
            f"{self.elapsed_s:.1f} s; seed entropy {self.seed_entropy}"
        )
        return head + "\n" + self.summary().to_string(float_format=lambda v: f"{v:.5g}")


def bootstrap(
    result: Any,
    nsim: int = 1000,
    statistic: Callable[[Any], Any] | None = None,
    *,
    seed: int | np.random.SeedSequence | None = None,
    use_u: bool = False,
    client: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> BootstrapResult:
    """Parametric bootstrap of ``statistic`` (default: SDs, correlations, sigma, fixed effects).

    See :meth:`bayesmix.ml.results.MLResult.bootstrap` for the arguments.
    """
    check_simulable(result)
    nsim = check_nsim(nsim)
    if not isinstance(use_u, bool | np.bool_):
        raise ArgumentError(f"use_u must be True or False, not {use_u!r}.")
    if statistic is None:
        statistic = default_statistic
        names = sdcor_names(result.design) + list(result.design.fixed_terms)
    elif not callable(statistic):
        raise ArgumentError("statistic must be a function of a fitted model (an MLResult).")
    else:
        names = None
    first = statistic(result)
    if isinstance(first, pd.Series | dict):
        first = pd.Series(first, dtype=float)
        names = [str(i) for i in first.index]
    values0 = np.asarray(first, dtype=float).ravel()
    if names is None or len(names) != values0.size:
        names = [f"t{i + 1}" for i in range(values0.size)]
    t0 = pd.Series(values0, index=names)
    task = RefitTask(
        result.design,
        result.estimates,
        statistic,
        t0.size,
        bool(use_u),
        result.conventions,
        type(result),
    )
    run = run_replicates(
        task, nsim, seed, client=client, workers=workers, batch_size=batch_size, progress=progress
    )
    values = np.array([r[0] for r in run.results]).reshape(-1, t0.size)
    failures = {i: r[1] for i, r in enumerate(run.results) if r[1]}
    if failures:
        first = next(iter(failures.values()))
        warn(
            f"{len(failures)} of {nsim} bootstrap replicates failed (refit errors or a "
            "statistic that raised or returned NaN) and are NaN rows in "
            f"replicates (first: {first}); summaries leave them out. Many failures mean "
            "the model is too rich for data like these: simplify its random part.",
            DataWarning,
        )
    return BootstrapResult(
        t0=t0,
        replicates=pd.DataFrame(values, columns=t0.index),
        failures=failures,
        n_warned=sum(1 for r in run.results if r[2] and not r[1]),
        seed_entropy=run.seed_entropy,
        workers=run.workers,
        batch_size=run.batch_size,
        elapsed_s=run.elapsed_s,
    )


def bootstrap_intervals(
    result: Any, level: float, names: list[str], nsim: int = 500, **options: Any
) -> pd.DataFrame:
    """``confint(method="boot")``: percentile intervals of the default statistic."""
    boot = bootstrap(result, nsim, **options)
    return boot.intervals(level).loc[names]
