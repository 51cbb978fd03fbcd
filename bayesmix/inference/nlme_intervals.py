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
  where nlme computes its ``apVar`` too;
* a variance function's or correlation structure's parameters: Wald on their
  unconstrained scale (log ratios, atanh or logit of a correlation: nlme's up to a
  linear map, which leaves Wald intervals unchanged), the criterion evaluated on
  the design whitened at each ``u`` plus ``log|Lambda|``.

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
from bayesmix.inference.profile import (
    correlation_mask,
    sdcor_names,
    sdcor_values,
    theta_from_sdcor,
)
from bayesmix.inference.variance_parameters import VarianceParameters

__all__ = ["NlmeIntervals", "nlme_intervals"]

_COLUMNS = ["lower", "est.", "upper"]


@dataclass(frozen=True)
class NlmeIntervals:
    """nlme's ``intervals`` object: ``fixed``, ``random``, ``sigma`` and (with a variance
    function or correlation structure) ``structure`` tables."""

    fixed: pd.DataFrame
    random: pd.DataFrame
    sigma: pd.DataFrame
    level: float
    structure: pd.DataFrame | None = None

    def __repr__(self) -> str:
        parts = [f"Approximate {self.level:.0%} confidence intervals", "", " Fixed effects:"]
        parts.append(self.fixed.to_string(float_format=lambda v: f"{v:.6g}"))
        if len(self.random):
            random = self.random.to_string(float_format=lambda v: f"{v:.6g}")
            parts += ["", " Random effects:", random]
        if self.structure is not None and len(self.structure):
            table = self.structure.to_string(float_format=lambda v: f"{v:.6g}")
            parts += ["", " Residual structure:", table]
        parts += ["", " Within-group standard error:"]
        parts.append(self.sigma.to_string(float_format=lambda v: f"{v:.6g}"))
        return "\n".join(parts)


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
    est, se = np.asarray(result.estimates.beta, dtype=float), np.sqrt(np.diag(V))
    t = stats.t.ppf((1.0 + level) / 2.0, containment_df(design))  # n - p without groups
    index = pd.Index(list(result.design.fixed_terms), name="term")
    return pd.DataFrame(
        np.column_stack([est - t * se, est, est + t * se]), index=index, columns=_COLUMNS
    )


class _NaturalDeviance:
    """The criterion (sigma free) in nlme's natural parameters ``eta``: log SD and atanh
    correlation per random effect, the structure's unconstrained ``u``, log sigma.

    With a residual structure the design is whitened at ``u`` (fitted values held at
    the fit's, nlme's fixed point) and ``log|Lambda|`` added, as
    :mod:`bayesmix.ml.residual_fit` evaluates its criterion.
    """

    def __init__(self, result: Any, design: Any) -> None:
        est = result.estimates
        self.design, self.reml = design, est.method == "REML"
        self.structure = result.residual_structure
        self.fitted = getattr(est, "variance_fitted", None)
        self.corr = correlation_mask(design)
        self.n_random = self.corr.size
        self.u_hat = np.asarray(getattr(est, "residual_u", np.zeros(0)), dtype=float)
        self.plain = VarianceParameters(design, self.reml, np.zeros(0), ())

    def eta(self, x_hat: np.ndarray) -> np.ndarray:
        random = x_hat[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            natural = np.where(self.corr, np.arctanh(random), np.log(random))
        return np.concatenate([natural, self.u_hat, [math.log(x_hat[-1])]])

    def sdcor(self, eta: np.ndarray) -> np.ndarray:
        random = eta[: self.n_random]
        x = np.where(self.corr, np.tanh(random), np.exp(random))
        return np.append(x, math.exp(eta[-1]))

    def __call__(self, eta: np.ndarray) -> float:
        x = self.sdcor(eta)
        theta = theta_from_sdcor(self.design, x)
        if theta is None:
            return math.inf
        phi = np.append(theta, x[-1])
        if self.structure is None:
            return self.plain.deviance(phi)
        u = eta[self.n_random : -1]
        white, log_det = self.structure.whiten_design(self.design, u, self.fitted)
        return VarianceParameters(white, self.reml, phi, ()).deviance(phi) + log_det


def _structure_table(structure: Any, u_hat: np.ndarray, se: np.ndarray, z: float) -> pd.DataFrame:
    """nlme's corStruct / varStruct rows: Wald bounds of ``u`` mapped to the reported scale."""
    if structure is None or not u_hat.size:
        return pd.DataFrame(columns=_COLUMNS, dtype=float)
    tables = [structure.parameter_table(u) for u in (u_hat - z * se, u_hat, u_hat + z * se)]
    values = np.column_stack([t["estimate"].to_numpy() for t in tables])
    low, high = np.minimum(values[:, 0], values[:, 2]), np.maximum(values[:, 0], values[:, 2])
    index = [f"{s}: {p}" for s, p in zip(tables[1]["structure"], tables[1]["parameter"])]
    return pd.DataFrame(np.column_stack([low, values[:, 1], high]), index=index, columns=_COLUMNS)


def nlme_intervals(result: Any, level: float = 0.95) -> NlmeIntervals:
    """nlme's ``intervals(fit, level, which = "all")`` of a Gaussian ML/REML fit."""
    require_linear_fit(result, "intervals()", nonlinear_ok=True)
    if not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise ArgumentError(f"level must be a probability between 0 and 1, not {level!r}.")
    design, est = result.design, result.estimates
    structure = result.residual_structure
    if getattr(result, "nonlinear_design", None) is not None:
        if structure is not None:
            raise ArgumentError(
                "intervals() of nonlinear fits with weights= or correlation= structures are "
                "not available yet."
            )
        design = _linearised(result)
    if not design.blocks and structure is None:
        sigma = _sigma_chisq(result, level)
        return NlmeIntervals(_fixed(result, level), _no_random(), sigma, level)
    criterion = _NaturalDeviance(result, design)
    x_hat = sdcor_values(design, est)
    eta_hat = criterion.eta(x_hat)
    z = stats.norm.ppf((1.0 + level) / 2.0)
    se = np.full(eta_hat.size, math.nan)
    if np.all(np.isfinite(eta_hat)):
        H = hessian(criterion, eta_hat)
        se = np.sqrt(np.diag(2.0 * np.linalg.inv(H)))
    else:
        warn(
            "A variance is estimated as zero or a correlation as +-1, so the natural "
            "parameters are infinite there and nlme's intervals are undefined (nlme stops "
            "with 'Non-positive definite approximate variance-covariance'); the variance "
            "rows are NaN. Use profile intervals, fit.confint(), instead.",
            SingularFitWarning,
        )
    k = criterion.n_random
    random = np.column_stack(
        [
            criterion.sdcor(eta_hat - z * se)[:-1],
            x_hat[:-1],
            criterion.sdcor(eta_hat + z * se)[:-1],
        ]
    )
    sigma_row = [math.exp(eta_hat[-1] - z * se[-1]), x_hat[-1], math.exp(eta_hat[-1] + z * se[-1])]
    names = sdcor_names(design)
    return NlmeIntervals(
        fixed=_fixed(result, level, design),
        random=pd.DataFrame(random, index=names[:-1], columns=_COLUMNS),
        sigma=pd.DataFrame([sigma_row], index=["sigma"], columns=_COLUMNS),
        level=float(level),
        structure=_structure_table(structure, criterion.u_hat, se[k:-1], z),
    )
