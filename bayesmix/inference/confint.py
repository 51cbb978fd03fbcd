"""Confidence intervals for a linear mixed model's parameters (lme4's ``confint.merMod``).

Rows follow lme4's ``oldNames = FALSE`` layout: ``sd_<term>|<group>`` and
``cor_<term>.<term>|<group>`` per block in ``theta`` order, ``sigma``, then the
fixed effects. Methods:

* ``"profile"`` (lme4's default): likelihood-profile intervals
  (:mod:`.profile`), of the ML deviance as lme4's are, REML fits included;
* ``"Wald"``: ``estimate +- z SE`` for the fixed effects, ``NaN`` for the
  variance parameters (as lme4);
* ``"boot"``: percentile intervals of a parametric bootstrap
  (:func:`bayesmix.inference.bootstrap.bootstrap`).

Notation
--------
z : the normal quantile ``Phi^-1((1 + level) / 2)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesmix.errors import ArgumentError, SingularFitWarning, warn
from bayesmix.inference.applicability import require_linear_fit
from bayesmix.inference.profile import (
    VarianceProfile,
    fixed_effect_zeta,
    interval_ends,
    ml_estimates,
    sdcor_names,
)
from bayesmix.ml.criterion_choice import estimates_kernel
from bayesmix.ml.working import working_problem

__all__ = ["confint"]

_METHODS = {"profile": "profile", "wald": "Wald", "boot": "boot"}


def _check(result: Any, method: Any, level: Any) -> tuple[str, float]:
    require_linear_fit(result, "confint()")
    key = method.lower() if isinstance(method, str) else None
    if key not in _METHODS:
        raise ArgumentError(f"method must be 'profile', 'Wald' or 'boot', not {method!r}.")
    try:
        level = float(level)
    except (TypeError, ValueError):
        level = math.nan
    if not 0.0 < level < 1.0:
        raise ArgumentError(f"level must be a probability between 0 and 1, not {level!r}.")
    return _METHODS[key], level


def _columns(level: float) -> list[str]:
    tail = 100 * (1 - level) / 2
    return [f"{tail:.3g} %", f"{100 - tail:.3g} %"]


def _select(names: list[str], parm: Any) -> list[str]:
    if parm is None:
        return names
    wanted = [parm] if isinstance(parm, str) else list(parm)
    unknown = [p for p in wanted if p not in names]
    if unknown:
        raise ArgumentError(f"parm: {unknown} are not parameters of this fit; use some of {names}.")
    return wanted


def _wald(result: Any, level: float, names: list[str]) -> pd.DataFrame:
    z = stats.norm.ppf((1 + level) / 2)
    fixed = result.fixef(adjust_sigma=False)
    table = pd.DataFrame(np.nan, index=names, columns=_columns(level))
    for name in fixed.index:
        if name in table.index:
            est, se = fixed.loc[name, "estimate"], fixed.loc[name, "std_error"]
            table.loc[name] = [est - z * se, est + z * se]
    return table


def _profile(result: Any, level: float, names: list[str]) -> pd.DataFrame:
    design = result.design
    ml = ml_estimates(result)  # lme4 profiles the ML deviance (devfun2 calls refitML)
    z = stats.norm.ppf((1 + level) / 2)
    variance = VarianceProfile(design, ml)
    var_names = sdcor_names(design)
    se = np.sqrt(np.diag(np.asarray(ml.vcov_beta, dtype=float)))
    rows, bounded = {}, []
    for w, name in enumerate(var_names):
        if name not in names:
            continue
        estimate = float(variance.x_hat[w])
        # SDs in the response's units: a zero SD starts from a step of sigma / 20
        step = (
            0.1 if variance.corr[w] else max(0.2 * abs(estimate), 0.05 * float(variance.x_hat[-1]))
        )
        lo, hi = interval_ends(
            variance.zeta_function(w),
            estimate,
            step,
            z,
            lower=float(variance.lower[w]),
            upper=float(variance.upper[w]),
        )
        rows[name] = [lo.value, hi.value]
        bounded += [f"{name} (lower)"] * lo.at_bound + [f"{name} (upper)"] * hi.at_bound
    work = working_problem(design)
    kernel = estimates_kernel(work.design)
    for j, name in enumerate(design.fixed_terms):
        if name in names:
            zeta = fixed_effect_zeta(design, ml, j, work, kernel)
            lo, hi = interval_ends(zeta, float(ml.beta[j]), float(se[j]), z)
            rows[name] = [lo.value, hi.value]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=_columns(level))
    if bounded:
        warn(
            "The profile did not reach the interval's level before the parameter's boundary "
            f"for {', '.join(bounded)}: that end is the boundary itself (an SD of 0 or a "
            "correlation of +-1), so the interval there is one-sided. A variance estimated "
            "near zero is better judged by bayesmix.ranova or a parametric bootstrap "
            "(fit.bootstrap).",
            SingularFitWarning,
        )
    table.attrs["at_bound"] = bounded
    return table


def confint(
    result: Any,
    parm: str | list[str] | None = None,
    level: float = 0.95,
    method: str = "profile",
    **boot_options: Any,
) -> pd.DataFrame:
    """Confidence intervals of the SDs, correlations, ``sigma`` and fixed effects.

    ``boot_options`` (``nsim``, ``seed``, ``client``, ``workers``) go to the
    bootstrap when ``method="boot"``.
    """
    method, level = _check(result, method, level)
    if result.residual_structure is not None and method != "Wald":
        raise ArgumentError(
            "Profile and bootstrap intervals of fits with weights= or correlation= are not "
            "available yet; use method='Wald' for the fixed effects."
        )
    names = _select(sdcor_names(result.design) + list(result.design.fixed_terms), parm)
    if method == "Wald":
        table = _wald(result, level, names)
    elif method == "profile":
        table = _profile(result, level, names)
    else:
        from bayesmix.inference.bootstrap import bootstrap_intervals

        table = bootstrap_intervals(result, level, names, **boot_options)
    table = table.loc[[n for n in names if n in table.index]]
    table.attrs.update(method=method, level=level)
    return table
