"""Result of a nonlinear mixed-model fit: :class:`NLMResult`.

An :class:`~bayesmix.ml.results.MLResult` of the model linearised at convergence
(so ``fixef``, ``vcov``, ``varcorr``, ``ranef``, ``coef``, AIC/BIC and
:func:`bayesmix.anova` behave as for linear fits) whose ``fitted``,
``residuals`` and ``predict`` use the nonlinear mean. Nothing here fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.ml.results import MLResult
from bayesmix.ml.summary import MLSummary, convention_line
from bayesmix.nonlinear.design import NonlinearDesign

__all__ = ["IterationRecord", "NLMResult", "NLMSummary", "StartRecord"]

#: Runs whose logLik differ by at most this reached the same fixed point.
AGREEMENT = 1e-3


@dataclass(frozen=True)
class IterationRecord:
    """One LME + PNLS iteration: LME-step logLik and largest relative change of beta, theta."""

    iteration: int
    loglik: float
    beta: np.ndarray
    theta: np.ndarray
    change: float
    pnls_evaluations: int


@dataclass(frozen=True)
class StartRecord:
    """One run of the alternation: where it set out from and the fixed point it reached.

    ``loglik`` is the fit's criterion at the end of the run (the REML
    log-likelihood for REML fits); ``beta`` and ``theta`` its estimates.
    """

    label: str
    loglik: float
    converged: bool
    iterations: int
    beta: np.ndarray
    theta: np.ndarray
    seconds: float


class NLMSummary(MLSummary):
    """lme4-style summary of a nonlinear fit (nlme's numbers)."""

    def _header(self) -> list[str]:
        r = self.result
        kind = "REML" if r.method == "REML" else "maximum likelihood"
        nl = r.nonlinear_design
        title = (
            f"Nonlinear mixed model fit by {kind} (Lindstrom-Bates)"
            if nl.blocks
            else f"Nonlinear model without random effects fit by {kind} (least squares)"
        )
        lines = [title, f"Model: {nl.formula}"]
        lines += [f"  {p.name} ~ {p.formula}" for p in nl.parameters]
        values = [r.aic, r.bic, r.loglik]
        lines += [convention_line(r)]
        if len(r.starts) > 1:
            lines.append(
                f"Starts: {len(r.starts)} runs of the alternation, {r.n_starts_agreeing} at the "
                f"reported optimum (kept: {r.starts[r.chosen_start].label})"
            )
        lines += [
            "",
            "      AIC       BIC    logLik",
            " ".join(f"{v:9.2f}" for v in values),
        ]
        return lines


@dataclass(frozen=True)
class NLMResult(MLResult):
    """Result of :func:`~bayesmix.nonlinear.ml_fit.fit_nonlinear`: the linearised MLResult.

    ``fixef``, ``vcov``, ``varcorr``, ``ranef``, ``coef`` and ``anova`` work as
    for linear fits; ``fitted``, ``residuals`` and ``predict`` use the
    nonlinear mean. ``history`` records the iterations; ``derivatives`` says
    how ``df/dphi`` was computed. ``bic`` and ``fixef`` follow nlme's
    conventions (``bic_lme4`` and ``fixef(adjust_sigma=False)`` give lme4's).
    ``residual`` is the bound residual structure (nlme's ``weights=`` and
    ``correlation=``), whose estimates ``residual_parameters()`` lists and
    which ``residuals("pearson")`` and ``residuals("normalized")`` use.
    """

    nonlinear_design: NonlinearDesign | None = None
    history: tuple[IterationRecord, ...] = ()
    derivatives: str = "complex step"
    starts: tuple[StartRecord, ...] = ()
    chosen_start: int = 0
    residual: Any = None

    @property
    def residual_structure(self) -> Any:
        """The fit's bound variance function and correlation structure, or ``None``
        (the model's, for a result rebuilt without it)."""
        if self.residual is not None:
            return self.residual
        return getattr(self.model, "residual", None)

    def starts_table(self) -> pd.DataFrame:
        """Every run of the alternation (the first and its restarts) and where it ended.

        Columns ``start``, ``logLik``, ``converged``, ``iterations``,
        ``seconds``, ``agrees`` (within 1e-3 of the chosen run's logLik) and
        ``chosen``; ``fixef`` holds each run's fixed effects.
        """
        chosen = self.starts[self.chosen_start].loglik if self.starts else math.nan
        rows = [
            {
                "start": record.label,
                "logLik": record.loglik,
                "converged": record.converged,
                "iterations": record.iterations,
                "seconds": record.seconds,
                "agrees": abs(record.loglik - chosen) <= AGREEMENT,
                "chosen": i == self.chosen_start,
                "fixef": dict(zip(self.design.fixed_terms, record.beta.tolist())),
            }
            for i, record in enumerate(self.starts)
        ]
        return pd.DataFrame(rows)

    @property
    def n_starts_agreeing(self) -> int:
        """How many runs reached the chosen fixed point (logLik within 1e-3)."""
        if not self.starts:
            return 0
        chosen = self.starts[self.chosen_start].loglik
        return sum(abs(record.loglik - chosen) <= AGREEMENT for record in self.starts)

    @property
    def conventions(self) -> str:
        """Always ``"nlme"``: nlmm is nlme's ``nlme``."""
        return "nlme"

    def phi(self, include_random: bool = True) -> pd.DataFrame:
        """Per-row parameter values at the estimates (rows of the data used)."""
        b = self.estimates.b if include_random else None
        phi = self.nonlinear_design.phi(np.asarray(self.estimates.beta), b)
        return pd.DataFrame(phi, index=self.design.data.index)

    def predict(
        self, newdata: pd.DataFrame | None = None, include_random: bool = True
    ) -> np.ndarray:
        """Predictions ``offset + f(phi)``; unseen levels get zero random effects.

        The offset of new rows is read from the column the model's ``offset=``
        named; a model whose offset was an array refuses new rows (``DataError``).
        """
        nl, beta = self.nonlinear_design, np.asarray(self.estimates.beta)
        b = self.estimates.b if include_random else None
        if newdata is None:
            if include_random:
                return self.fitted()
            with np.errstate(all="ignore"):
                f = np.broadcast_to(nl.mean(np, nl.phi(beta)), nl.y.shape)
            return nl.offset_or_zero + f
        new = nl.evaluate_new_data(newdata)
        if include_random and new.new_levels:
            warn(
                f"newdata has levels of {', '.join(new.new_levels)} not seen in fitting; their "
                "random effects are set to zero (population prediction).",
                DataWarning,
            )
        with np.errstate(all="ignore"):
            out = nl.mean(np, nl.phi_new(new, beta, b), new.covariates)
        return new.offset_or_zero + np.broadcast_to(np.asarray(out, dtype=float), (len(newdata),))

    def summary(self, ddf: str | None = None) -> NLMSummary:
        """nlme's summary (t tests on nlme's degrees of freedom); ``ddf`` is refused."""
        if ddf is not None:
            raise ArgumentError(
                "ddf= (Satterthwaite/Kenward-Roger) is not available for nonlinear mixed "
                "models; fit.intervals() gives nlme's t intervals on its degrees of freedom."
            )
        return NLMSummary(self)

    def update(
        self,
        formula: str | None = None,
        method: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        cov: Mapping[str, str] | str | None = None,
        start: Mapping[str, Any] | None = None,
    ) -> NLMResult:
        """Refit with parts replaced (R's ``update``); ``method`` defaults to this fit's.

        ``formula``, ``params``, ``cov`` and ``start`` are as in
        :meth:`bayesmix.nlmm`'s ``update``: given ``params`` entries replace the
        formulas of the parameters they name.
        """
        if self.model is None:
            raise ArgumentError(
                "update() needs the unfitted model, but this result was built without one; "
                "fit the new model directly with bayesmix.nlmm(...).fit()."
            )
        model = self.model.update(formula, params=params, cov=cov, start=start)
        return model.fit(method=method or self.method)

    def __repr__(self) -> str:
        return (
            f"<NLMResult {self.method}: {self.nonlinear_design.formula}; n={self.nobs}, "
            f"logLik={self.loglik:.4f}, df={self.df}>"
        )
