"""nlme's ``intervals()``: approximate intervals of fixed effects, random-effect SDs and
correlations, and ``sigma``.

* fixed effects: ``estimate +- t(level; df) SE`` with nlme's containment degrees of
  freedom (:mod:`.containment`) and nlme's SEs (``varFix``, unscaled, for mixed
  models; a ``gls`` ML fit's scaled by ``sqrt(n / (n - p))``);
* ``sigma`` of a model without random effects or structures: nlme's chi-square
  interval on ``n - p`` (REML) or ``n`` (ML) degrees of freedom;
* variance parameters: Wald intervals on nlme's "natural" scale, ``log(sd)``,
  ``atanh(cor)`` and ``log(sigma)``, back-transformed; their covariance is
  ``2 H^-1``, ``H`` the Hessian of the fit's criterion (ML deviance or REML
  criterion, fixed effects profiled out, ``sigma`` free) in those parameters,
  as nlme's ``apVar``. A nonlinear fit uses its linearised model at convergence,
  where nlme computes its ``apVar`` too.

Notation
--------
eta : natural parameters (log sd, atanh cor, log sigma); H : Hessian of the
criterion in eta; z : normal quantile of the level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError, SingularFitWarning, warn
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.inference.containment import containment_df
from bayesmix.inference.derivatives import hessian
from bayesmix.inference.profile import VarianceProfile, sdcor_names
from bayesmix.spec.covariance import theta_positions

__all__ = ["NlmeIntervals", "nlme_intervals"]

_COLUMNS = ["lower", "est.", "upper"]


@dataclass(frozen=True)
class NlmeIntervals:
    """nlme's ``intervals`` object: ``fixed``, ``random`` and ``sigma`` tables."""

    fixed: pd.DataFrame
    random: pd.DataFrame
    sigma: pd.DataFrame
    level: float

    def __repr__(self) -> str:
        parts = [f"Approximate {self.level:.0%} confidence intervals", "", " Fixed effects:"]
        parts.append(self.fixed.to_string(float_format=lambda v: f"{v:.6g}"))
        if len(self.random):
            random = self.random.to_string(float_format=lambda v: f"{v:.6g}")
            parts += ["", " Random effects:", random]
        parts += ["", " Within-group standard error:"]
        parts.append(self.sigma.to_string(float_format=lambda v: f"{v:.6g}"))
        return "\n".join(parts)


def _is_correlation(design: Any) -> np.ndarray:
    flags = [
        r != c
        for block in design.blocks
        for r, c in zip(*theta_positions(block.covariance, block.n_terms))
    ]
    return np.array(flags + [False], dtype=bool)


def _linearised(result: Any) -> Any:
    """A nonlinear fit's LME approximation at its estimates (where nlme's apVar is taken)."""
    from bayesmix.nonlinear.lb_steps import Linearisation, linear_design_at

    lin = Linearisation(result.nonlinear_design, result.residual_structure)
    linear, _ = linear_design_at(lin, np.asarray(result.estimates.beta), result.estimates.b)
    return linear


def _no_random() -> pd.DataFrame:
    return pd.DataFrame(columns=_COLUMNS, dtype=float)


def _sigma_chisq(result: Any, level: float) -> pd.DataFrame:
    """nlme's interval of ``sigma`` without random effects or structures: chi-square on
    ``n - p`` (REML) or ``n`` (ML) degrees of freedom."""
    dof = result.nobs - (result.design.n_fixed if result.method == "REML" else 0)
    sigma = float(result.estimates.sigma)
    est = sigma * math.sqrt(dof)
    row = [
        est / math.sqrt(stats.chi2.ppf((1 + level) / 2, dof)),
        sigma,
        est / math.sqrt(stats.chi2.ppf((1 - level) / 2, dof)),
    ]
    return pd.DataFrame([row], index=["sigma"], columns=_COLUMNS)


def _fixed(result: Any, level: float, design: Any = None) -> pd.DataFrame:
    # nlme's varFix (lme, nlme: unscaled) or varBeta (gls: an ML fit's scaled by n / (n - p))
    design = result.design if design is None else design
    V = np.asarray(result.estimates.vcov_beta, dtype=float)
    n, p = result.nobs, V.shape[0]
    if not design.blocks and result.method == "ML":
        V = V * n / (n - p)
    fixed = pd.DataFrame(
        {
            "estimate": np.asarray(result.estimates.beta, dtype=float),
            "std_error": np.sqrt(np.diag(V)),
        },
        index=pd.Index(list(result.design.fixed_terms), name="term"),
    )
    if design.blocks:
        df = containment_df(design)
    else:
        df = np.full(len(fixed), float(result.nobs - result.design.n_fixed))
    t = stats.t.ppf((1.0 + level) / 2.0, df)
    est, se = fixed["estimate"].to_numpy(), fixed["std_error"].to_numpy()
    return pd.DataFrame(
        np.column_stack([est - t * se, est, est + t * se]), index=fixed.index, columns=_COLUMNS
    )


def nlme_intervals(result: Any, level: float = 0.95) -> NlmeIntervals:
    """nlme's ``intervals(fit, level, which = "all")`` of a Gaussian ML/REML fit."""
    require_linear_fit(result, "intervals()", nonlinear_ok=True)
    if not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise ArgumentError(f"level must be a probability between 0 and 1, not {level!r}.")
    if result.residual_structure is not None:
        raise ArgumentError(
            "intervals() of fits with weights= or correlation= structures are not available "
            "yet; the fixed effects' intervals are fit.confint(method='Wald')."
        )
    design, est = result.design, result.estimates
    if getattr(result, "nonlinear_design", None) is not None:
        design = _linearised(result)
    if not design.blocks:
        return NlmeIntervals(
            _fixed(result, level), _no_random(), _sigma_chisq(result, level), level
        )
    profile = VarianceProfile(design, est, reml=est.method == "REML")
    x_hat = profile.x_hat
    corr = _is_correlation(design)
    if np.any(x_hat[~corr] <= 0.0) or np.any(np.abs(x_hat[corr]) >= 1.0):
        warn(
            "A variance is estimated as zero or a correlation as +-1, so the natural "
            "parameters are infinite there and nlme's intervals are undefined for them (nlme "
            "stops with 'Non-positive definite approximate variance-covariance'); those rows "
            "are NaN. Use profile intervals, fit.confint(), instead.",
            SingularFitWarning,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        eta_hat = np.where(corr, np.arctanh(x_hat), np.log(x_hat))

    def to_x(eta: np.ndarray) -> np.ndarray:
        return np.where(corr, np.tanh(eta), np.exp(eta))

    finite = np.isfinite(eta_hat)
    z = stats.norm.ppf((1.0 + level) / 2.0)
    se = np.full(x_hat.size, math.nan)
    if finite.all():
        H = hessian(lambda eta: profile.deviance(to_x(eta)), eta_hat)
        se = np.sqrt(np.diag(2.0 * np.linalg.inv(H)))
    bounds = np.column_stack([to_x(eta_hat - z * se), x_hat, to_x(eta_hat + z * se)])
    names = sdcor_names(design)
    table = pd.DataFrame(bounds, index=names, columns=_COLUMNS)
    return NlmeIntervals(
        fixed=_fixed(result, level, design),
        random=table.iloc[:-1],
        sigma=table.iloc[-1:],
        level=float(level),
    )
