"""Marginal and conditional R² of a mixed model fit (Nakagawa and Schielzeth 2013).

``R²_m = s_f / (s_f + s_r + s_e)`` and ``R²_c = (s_f + s_r) / (s_f + s_r + s_e)``
with

* ``s_f``: the variance of the fixed part ``X beta`` over the fitted rows
  (denominator n - 1, offset excluded);
* ``s_r``: Johnson's (2014) extension for random slopes, summed over the
  blocks: the mean over rows of ``z_i' Sigma_k z_i``, ``z_i`` the row of the
  block's own columns (for ``(Days | Subject)``:
  ``s_0^2 + 2 s_01 mean(Days) + s_1^2 mean(Days^2)``);
* ``s_e``: the distribution-specific variance (Nakagawa, Johnson and
  Schielzeth 2017): ``sigma^2`` for a Gaussian model; ``pi^2 / 3`` (logit),
  1 (probit) or ``pi^2 / 6`` (cloglog) for a binomial one, per observation
  whatever its trials; ``log(1 + 1 / lambda)`` (lognormal), ``1 / lambda``
  (delta) or ``trigamma(lambda)`` for a log-link Poisson one, with ``lambda``
  the exponentiated intercept of the null model (the same random terms, fixed
  part ``1``, refitted);
* an observation-level random intercept (a grouping with one level per row)
  is overdispersion: it joins ``s_e`` in a GLMM (and is left out of ``s_r``).

These are the conventions of R's ``performance::r2_nakagawa`` (0.10), against
which ``tests/test_r2.py`` checks them (``tests/refs/r2/``); MuMIn's
``r.squaredGLMM`` divides the binomial's variance by the mean trials and adds
half the random variance to the log of ``lambda``. Three details differ from
performance, and agree with Johnson's and MuMIn's definitions: ``z_i`` are the
block's own columns (insight takes the fixed-effect columns of the same names,
dropping a random slope without a fixed counterpart); an observation-level term
is a one-term block with a level per row; and a singular fit still gets its
conditional R² (performance returns NA).

Notation
--------
X beta : fixed part; Sigma_k : covariance of block k; n : rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from bayesmix.errors import ArgumentError

__all__ = ["APPROXIMATIONS", "nakagawa_r2"]

#: Distribution-specific variances of a log-link Poisson model
APPROXIMATIONS = ("lognormal", "delta", "trigamma")
_LINK_VARIANCE = {"logit": np.pi**2 / 3, "probit": 1.0, "cloglog": np.pi**2 / 6}


def _is_observation_level(block: Any, n_obs: int) -> bool:
    return block.n_levels == n_obs and block.n_terms == 1


def _null_intercept(fit: Any) -> float:
    """The intercept of ``fit``'s null model: fixed part ``1``, the same random terms."""
    from bayesmix.spec.formula import parse_formula

    if fit.model is None:
        raise ArgumentError(
            "R² of a Poisson GLMM refits the null model, which needs the unfitted model; "
            "fit it with bayesmix.glmm(formula, data, family).fit()."
        )
    spec = parse_formula(fit.design.formula)
    parts = ["1", *(f"offset({o})" for o in spec.offsets), *(str(b) for b in spec.bars)]
    null = fit.model.update(f"{spec.response} ~ {' + '.join(parts)}")
    null_fit = null.fit(nagq=fit.nagq, information=fit.information)
    return float(np.asarray(null_fit.estimates.beta)[0])


def nakagawa_r2(fit: Any, approximation: str = "lognormal") -> pd.DataFrame:
    """Marginal and conditional R² of an ML/REML fit (see the module docstring).

    Parameters
    ----------
    fit : MLResult or GLMMResult
        A fit of ``bmx.lmm`` or of a binomial or Poisson ``bmx.glmm``.
    approximation : {"lognormal", "delta", "trigamma"}
        The Poisson model's distribution-specific variance.

    Returns
    -------
    DataFrame
        Rows ``marginal`` and ``conditional``, column ``R2``; ``attrs["variances"]``
        holds ``fixed``, ``random``, ``distribution``, ``dispersion`` and ``residual``.
    """
    if approximation not in APPROXIMATIONS:
        raise ArgumentError(
            f"approximation must be one of {', '.join(APPROXIMATIONS)}, not {approximation!r}."
        )
    design, estimates = fit.design, fit.estimates
    if getattr(fit, "residual_structure", None) is not None:
        raise ArgumentError(
            "R² is not defined here for fits with weights= or correlation= structures: "
            "their residual variance differs between rows."
        )
    if getattr(fit, "nonlinear_design", None) is not None:
        raise ArgumentError("R² is available for linear and generalized linear mixed models.")
    n = design.n_obs
    fixed = np.asarray(design.X, dtype=float) @ np.asarray(estimates.beta, dtype=float)
    s_f = float(np.var(fixed, ddof=1))
    s_r = s_olre = 0.0
    for block, cov in zip(design.blocks, estimates.covariances, strict=True):
        Z = np.asarray(block.Z, dtype=float)
        part = float(np.mean(np.einsum("ij,jk,ik->i", Z, np.asarray(cov), Z)))
        if _is_observation_level(block, n):
            s_olre += part
        else:
            s_r += part
    family = getattr(fit, "family", None)
    if family is None or family.name == "gaussian":
        s_d, s_disp = float(fit.sigma) ** 2, 0.0  # an observation-level term is unidentified
    else:
        if getattr(fit, "zi_beta", None) is not None:
            raise ArgumentError("R² is not available for zero-inflated models.")
        link = family.link.name
        if family.name == "binomial" and link in _LINK_VARIANCE:
            s_d = _LINK_VARIANCE[link]
        elif family.name == "poisson" and link == "log":
            lam = float(np.exp(_null_intercept(fit)))
            s_d = {
                "lognormal": float(np.log1p(1.0 / lam)),
                "delta": 1.0 / lam,
                "trigamma": float(special.polygamma(1, lam)),
            }[approximation]
        else:
            raise ArgumentError(
                f"R² is available for Gaussian, binomial (logit, probit, cloglog) and log-link "
                f"Poisson models, not for {family.name} with link {link}."
            )
        s_disp = s_olre
    total = s_f + s_r + s_d + s_disp
    table = pd.DataFrame(
        {"R2": [s_f / total, (s_f + s_r) / total]}, index=["marginal", "conditional"]
    )
    table.attrs["variances"] = {
        "fixed": s_f,
        "random": s_r,
        "distribution": s_d,
        "dispersion": s_disp,
        "residual": s_d + s_disp,
    }
    return table
