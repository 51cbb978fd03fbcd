"""Default priors of Bayesian GLMMs, on the scale of the linear predictor.

The keys follow :mod:`bayesmix.bayes.priors` (fixed coefficients by column
name, ``sd(<term>|<grouping>)``, ``cor(<grouping>)``) and add:

* ``"1/sqrt(theta)"`` (negative binomial): the prior is placed on
  ``1 / sqrt(theta)``, the coefficient of variation of the gamma-distributed
  multiplicative noise of NB2 (``Var(y) = mu + mu^2 / theta``);
* ``"1/sqrt(shape)"`` (Gamma): on ``1 / sqrt(shape)``, the coefficient of
  variation of ``y`` given its mean;
* ``"zi(<term>)"`` (zero inflation): the coefficients of the logit of the
  structural-zero probability, e.g. ``"zi(Intercept)"``.

Notation
--------
eta : linear predictor, ``g(mu)``; ybar : mean response (pooled proportion
for the binomial); s_eta : a unit of the link scale; s_x, s_z : SDs of a
fixed-effect and of a random-effect column; theta : NB2 size; shape : Gamma shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bayesmix.bayes.priors import (
    LKJ,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    PriorTable,
    _scale,
    apply_overrides,
    block_keys,
    intercept_index,
)
from bayesmix.spec.design_types import Design
from bayesmix.spec.families import Family

__all__ = [
    "DISPERSION_KEYS",
    "default_glmm_priors",
    "dispersion_names",
    "resolve_glmm_priors",
    "zi_key",
]

#: Prior key of each family's dispersion parameter (see the module docstring).
DISPERSION_KEYS = {"negbinomial": "1/sqrt(theta)", "gamma": "1/sqrt(shape)"}
#: Links whose scale is unit-free (log-odds, probits, log-rates): one unit is 1.
UNIT_FREE_LINKS = ("logit", "probit", "cloglog", "log")


def dispersion_names(family: Family) -> tuple[str, str] | None:
    """``(sampled, reported)`` names of the family's dispersion, e.g.
    ``("inv_sqrt_theta", "theta")``; ``None`` for the binomial and Poisson."""
    if family.name not in DISPERSION_KEYS:
        return None
    return f"inv_sqrt_{family.dispersion}", str(family.dispersion)


def zi_key(term: str) -> str:
    """Prior key of a zero-inflation coefficient, e.g. ``"zi(Intercept)"``."""
    return f"zi({term})"


def _mean_response(design: Design, family: Family) -> float:
    """Mean response; the pooled proportion of successes for the binomial."""
    y = np.asarray(design.y, dtype=float)
    if family.name == "binomial":
        n = np.ones_like(y) if design.weights is None else np.asarray(design.weights, dtype=float)
        return float(np.clip(np.sum(y * n) / np.sum(n), 1e-3, 1.0 - 1e-3))
    return float(max(np.mean(y), 1e-2))


def link_location_scale(design: Design, family: Family) -> tuple[float, float]:
    """``g(ybar)`` and the unit ``s_eta`` of the link scale (see ``default_glmm_priors``).

    The offset is subtracted from ``g(ybar)`` (on average), so that the intercept's
    prior is centred where the data put it.
    """
    ybar = _mean_response(design, family)
    location = float(family.link.link(np.asarray(ybar))) - float(np.mean(design.offset_or_zero))
    if family.link.name in UNIT_FREE_LINKS:
        return location, 1.0
    y = np.asarray(design.y, dtype=float)
    with np.errstate(divide="ignore"):
        transformed = family.link.link(np.maximum(y, 1e-2 if family.name != "gamma" else 0.0))
    return location, _scale(np.asarray(transformed, dtype=float)) or max(abs(location), 1.0)


def default_glmm_priors(
    design: Design,
    family: Family,
    zi_X: np.ndarray | None = None,
    zi_names: Sequence[str] = (),
) -> PriorTable:
    """Weakly informative priors on the link scale, in the spirit of brms/rstanarm.

    With ``g`` the link, ``s_eta`` one unit of the link scale (1 for the logit,
    probit, cloglog and log links; for the identity, sqrt and inverse links the
    SD of ``g(y)``, which carries the response's units) and ``s_x``, ``s_z``
    the SDs of a column:

    * ``Intercept``: ``Normal(g(ybar), 2.5 s_eta)`` on the intercept of the
      centred predictors: centred, as brms does, on the link of the mean
      response (less the mean offset), with rstanarm's scale. A normal rather
      than brms's Student-t keeps every fixed effect in one vector of normals,
      the graph the linear engine compiles (a mixed vector is split in two);
      the intercept of centred predictors is well identified, so the tails
      hardly matter.
    * other fixed coefficients: ``Normal(0, 2.5 s_eta / s_x)``, rstanarm's
      autoscaled GLM prior: a one-SD change of ``x`` moves the linear predictor
      by a few units at most (on the logit scale, 2.5 is a change of odds by a
      factor of about 12). Without an intercept the scale is
      ``2.5 sqrt(g(ybar)^2 + s_eta^2) / rms(x)``.
    * group SDs ``sd(term|g)``: ``HalfStudentT(3, 2.5 s_eta / s_z)``
      (``2.5 s_eta`` for an intercept column), brms's ``student_t(3, 0, 2.5)``
      on the link scale, scaled like the slopes.
    * correlations ``cor(g)``: ``LKJ(2)``, as for linear models (zero density
      at perfectly correlated effects, which few groups cannot rule out).
    * negative binomial ``1/sqrt(theta)``: ``HalfNormal(1)``. The NB2 variance
      is ``mu + mu^2 / theta``, so ``1/sqrt(theta)`` is the coefficient of
      variation of the extra-Poisson (gamma) noise; the prior puts its mode at
      0, the Poisson model, and keeps ``theta`` away from 0 (a CV above 2 is
      unlikely), the "shrink towards the simpler model" choice of the Stan
      prior recommendations. brms's ``Gamma(0.01, 0.01)`` on ``theta`` is nearly
      flat on the log scale and lets heavy overdispersion through.
    * Gamma ``1/sqrt(shape)``: ``HalfNormal(1)``; ``1/sqrt(shape)`` is the
      coefficient of variation of ``y`` given ``mu``, and the same argument holds.
    * zero inflation ``zi(Intercept)``: ``Normal(0, 1.5)`` on the logit of the
      structural-zero probability (at the mean of the zero-inflation predictors),
      nearly flat on the probability between 0.05 and 0.95 without piling mass
      at 0 and 1; other ``zi(term)``: ``Normal(0, 2.5 / s_x)``.

    Returns
    -------
    PriorTable
        Prior by key (see the module docstring for the keys).
    """
    location, s_eta = link_location_scale(design, family)
    j0 = intercept_index(design)
    priors = PriorTable()
    for j, name in enumerate(design.fixed_terms):
        x = np.asarray(design.X[:, j], dtype=float)
        if j == j0:
            priors[name] = Normal(location, 2.5 * s_eta)
        elif j0 is not None:
            priors[name] = Normal(0.0, 2.5 * s_eta / (_scale(x) or 1.0))
        else:
            rms_x = float(np.sqrt(np.mean(x**2))) or 1.0
            priors[name] = Normal(0.0, 2.5 * float(np.hypot(location, s_eta)) / rms_x)
    for block, (sd_keys, cor_key) in zip(design.blocks, block_keys(design), strict=True):
        for k, key in enumerate(sd_keys):
            s_z = _scale(np.asarray(block.Z[:, k], dtype=float))
            priors[key] = HalfStudentT(3.0, 2.5 * s_eta / s_z if s_z else 2.5 * s_eta)
        if cor_key is not None:
            priors[cor_key] = LKJ(2.0)
    if family.name in DISPERSION_KEYS:
        priors[DISPERSION_KEYS[family.name]] = HalfNormal(1.0)
    if zi_X is not None:
        for j, name in enumerate(zi_names):
            s_x = _scale(np.asarray(zi_X[:, j], dtype=float))
            priors[zi_key(name)] = Normal(0.0, 2.5 / s_x) if s_x else Normal(0.0, 1.5)
    return priors


def resolve_glmm_priors(
    design: Design,
    family: Family,
    zi_X: np.ndarray | None = None,
    zi_names: Sequence[str] = (),
    overrides: Mapping[str, Prior] | None = None,
) -> PriorTable:
    """:func:`default_glmm_priors` updated with the user's ``overrides``.

    Raises
    ------
    PriorError
        An unknown key (the message lists close matches and every valid key)
        or a prior that does not fit its parameter.
    """
    priors = default_glmm_priors(design, family, zi_X, zi_names)
    return apply_overrides(priors, overrides, positive=tuple(DISPERSION_KEYS.values()))
