"""Likelihood profiles of a linear mixed model and the intervals they give (lme4's ``confint``).

As lme4's ``profile.merMod`` does, every profile is of the **ML** deviance (a
REML fit is refitted by ML first), in lme4's ``"sdcor"`` parameters: each
random-effect SD, each correlation, ``sigma``, and each fixed effect. For a
parameter fixed at ``x`` the others are re-optimised, and the signed root
``zeta(x) = sign(x - x_hat) sqrt(dev(x) - dev_min)`` is compared with the
normal quantile. lme4 tabulates ``zeta`` on a grid and interpolates splines;
here each end of the interval is solved for directly (a bracket, then Brent's
method), so no interpolation error enters.

* variance parameters: the deviance with ``sigma`` free,
  ``log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)``
  (:class:`~bayesmix.inference.variance_parameters.VarianceParameters`),
  minimised over the other SDs, correlations and ``sigma`` by BOBYQA;
* a fixed effect ``beta_j = x``: the ML deviance minimised over ``theta`` with
  ``beta_j`` fixed, the minimum lme4 finds by refitting with ``X_j x`` in the
  offset (:func:`fixed_effect_zeta`).

An end that would lie beyond a parameter's boundary (an SD of 0, a correlation
of +-1) is reported at the boundary and flagged in the result's ``attrs``.

Notation
--------
x : lme4's profile parameters (SDs and correlations per block, sigma); zeta :
signed root deviance; z : normal quantile of the level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import nlopt
import numpy as np
from scipy import optimize

from bayesmix.inference.variance_parameters import VarianceParameters
from bayesmix.ml.criterion_choice import estimates_kernel
from bayesmix.ml.fit import fit_estimates
from bayesmix.ml.working import working_problem
from bayesmix.spec.covariance import theta_positions, varcorr_group_labels

__all__ = [
    "ProfileEnd",
    "VarianceProfile",
    "correlation_mask",
    "fixed_effect_zeta",
    "ml_estimates",
    "interval_ends",
    "sdcor_names",
    "sdcor_values",
    "theta_from_sdcor",
]

# A point the deviance cannot be evaluated at (correlations not positive definite).
_OUTSIDE = 1e10


def _label(term: str) -> str:
    return "(Intercept)" if term == "Intercept" else term


def sdcor_names(design: Any) -> list[str]:
    """lme4's ``oldNames = FALSE`` names, in ``theta`` order per block, then ``sigma``.

    Groups are labelled as in :meth:`MLResult.varcorr` (``Subject.1`` for a
    repeated grouping factor, one per term of a ``||`` bar).
    """
    names = []
    for block, groups in zip(design.blocks, varcorr_group_labels(design.blocks)):
        rows, cols = theta_positions(block.covariance, block.n_terms)
        for r, c in zip(rows, cols):
            if r == c:
                names.append(f"sd_{_label(block.terms[r])}|{groups[r]}")
            else:
                names.append(f"cor_{_label(block.terms[r])}.{_label(block.terms[c])}|{groups[r]}")
    return names + ["sigma"]


def sdcor_values(design: Any, estimates: Any) -> np.ndarray:
    """lme4's ``sdcor`` parameters of a fit: SDs and correlations per block, then ``sigma``."""
    x = []
    for block, cov in zip(design.blocks, estimates.covariances):
        sd = np.sqrt(np.diag(cov))
        for r, c in zip(*theta_positions(block.covariance, block.n_terms)):
            if r == c:
                x.append(sd[r])
            else:
                x.append(cov[r, c] / (sd[r] * sd[c]) if sd[r] * sd[c] > 0 else 0.0)
    return np.array(x + [float(estimates.sigma)])


def theta_from_sdcor(design: Any, x: np.ndarray) -> np.ndarray | None:
    """lme4's ``theta`` of ``sdcor`` parameters ``x`` (SDs, correlations, then ``sigma``), or
    ``None`` where the correlations are not positive definite."""
    sigma = x[-1]
    theta, position = [], 0
    for block in design.blocks:
        k = block.n_terms
        rows, cols = theta_positions(block.covariance, k)
        values = x[position : position + len(rows)]
        position += len(rows)
        if block.covariance == "diagonal" or k == 1:
            theta.extend(values / sigma)
        elif k == 2:  # (sd1, rho, sd2): the 2 x 2 Cholesky factor in closed form
            sd1, rho, sd2 = values
            if abs(rho) >= 1.0:
                return None
            theta.extend((sd1 / sigma, sd2 * rho / sigma, sd2 * math.sqrt(1 - rho**2) / sigma))
        else:
            sd, corr = np.zeros(k), np.eye(k)
            for r, c, v in zip(rows, cols, values):
                if r == c:
                    sd[r] = v
                else:
                    corr[r, c] = corr[c, r] = v
            try:
                chol = np.linalg.cholesky(corr)
            except np.linalg.LinAlgError:
                return None
            theta.extend(((sd[:, None] * chol) / sigma)[rows, cols])
    return np.array(theta)


def correlation_mask(design: Any) -> np.ndarray:
    """Which ``sdcor`` parameters (in :func:`sdcor_names` order, ``sigma`` excluded) are
    correlations."""
    return np.array(
        [
            r != c
            for block in design.blocks
            for r, c in zip(*theta_positions(block.covariance, block.n_terms))
        ],
        dtype=bool,
    )


def ml_estimates(result: Any) -> Any:
    """The fit's ML estimates; a REML fit is refitted by ML from its ``theta`` (lme4's
    profiles and pbkrtest's bootstrap test both use the ML deviance)."""
    est = result.estimates
    if est.method == "ML":
        return est
    return fit_estimates(result.design, "ML", start=np.asarray(est.theta, dtype=float))


class VarianceProfile:
    """The ML deviance in lme4's ``sdcor`` parameters ``x`` (SDs, correlations, ``sigma``)."""

    def __init__(self, design: Any, estimates: Any) -> None:
        self.design = design
        self.function = VarianceParameters(design, False, np.zeros(0), ())
        self.corr = np.append(correlation_mask(design), False)
        self.x_hat = sdcor_values(design, estimates)
        self.lower = np.where(self.corr, -1.0, 0.0)
        self.upper = np.where(self.corr, 1.0, math.inf)
        theta_hat = theta_from_sdcor(design, self.x_hat)
        self.base = self.function.deviance(np.append(theta_hat, self.x_hat[-1]))

    def deviance(self, x: np.ndarray) -> float:
        """ML deviance at ``x`` (compare with :attr:`base`); large outside the space."""
        theta = theta_from_sdcor(self.design, x) if x[-1] > 0.0 else None
        if theta is None:
            return self.base + _OUTSIDE
        return self.function.deviance(np.append(theta, x[-1]))

    def minimise_others(self, w: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """``min dev`` over all parameters but ``w`` (fixed at ``value``), from ``start``."""
        free = [i for i in range(self.x_hat.size) if i != w]
        x = start.copy()
        x[w] = value

        def objective(z: np.ndarray, grad: np.ndarray) -> float:
            x[free] = z
            return self.deviance(x)

        corr = self.corr[free]
        opt = nlopt.opt(nlopt.LN_BOBYQA, len(free))
        opt.set_min_objective(objective)
        # correlations stay inside (-1, 1), where their Cholesky factor exists
        lower, upper = np.where(corr, -1.0 + 1e-9, 0.0), np.where(corr, 1.0 - 1e-9, 1e300)
        opt.set_lower_bounds(lower)
        opt.set_upper_bounds(upper)
        z0 = np.clip(start[free], lower, upper)
        floor = 1e-3 * float(self.x_hat[-1])  # SDs are in the response's units, as sigma
        scale = np.where(corr, 0.1, np.maximum(0.1 * np.abs(z0), floor))
        opt.set_initial_step(scale)
        opt.set_xtol_rel(1e-8)
        opt.set_ftol_abs(1e-10)
        opt.set_maxeval(20_000)
        try:
            z = opt.optimize(z0)
            value_min = opt.last_optimum_value()
        except nlopt.RoundoffLimited:
            z, value_min = z0, objective(z0, np.empty(0))
        x[free] = z
        return value_min, x.copy()

    def zeta_function(self, w: int) -> Callable[[float], float]:
        """``zeta`` of parameter ``w``, warm-starting each optimisation at the last optimum."""
        state = {"start": self.x_hat.copy()}

        def zeta(value: float) -> float:
            if len(self.x_hat) == 1:
                dev = self.deviance(np.array([value]))
            else:
                dev, state["start"] = self.minimise_others(w, value, state["start"])
            return math.copysign(math.sqrt(max(dev - self.base, 0.0)), value - self.x_hat[w])

        return zeta


def fixed_effect_zeta(
    design: Any, estimates: Any, j: int, work: Any = None, kernel: Any = None
) -> Callable[[float], float]:
    """``zeta`` of fixed effect ``j``: the ML deviance at ``beta_j`` fixed, minimised over theta.

    lme4 refits the model with ``X_j beta_j`` in the offset. The same minimum
    comes without a refit: at each ``theta`` the penalised least squares with
    ``beta_j = b`` adds ``(b - beta_hat_j)^2 / C_jj`` to the penalised RSS, ``C``
    being ``V_beta / sigma^2``, so only ``theta`` is searched (BOBYQA), on the
    fit's own kernel (``work`` and ``kernel``: the design's, shared between effects).
    """
    work = working_problem(design) if work is None else work
    kernel = estimates_kernel(work.design) if kernel is None else kernel
    n = design.n_obs
    scale2 = work.scale**2
    beta_hat = float(estimates.beta[j])

    def deviance(theta_w: np.ndarray, value: float) -> float:
        sol = kernel.solve(theta_w, reml=False)
        F = work.vcov_factor(sol.RX, 1.0)
        beta_j = float(work.beta(sol.beta)[j])
        pwrss = scale2 * sol.pwrss + (value - beta_j) ** 2 / float(F[j] @ F[j])
        return sol.ldL2 + n * (1.0 + math.log(2.0 * math.pi * pwrss / n))

    theta_hat = work.theta_w(np.asarray(estimates.theta, dtype=float))
    base = deviance(theta_hat, beta_hat)
    state = {"theta": theta_hat}
    lower = np.asarray(kernel.lower_bounds, dtype=float)

    def zeta(value: float) -> float:
        if kernel.n_theta:
            opt = nlopt.opt(nlopt.LN_BOBYQA, kernel.n_theta)
            opt.set_min_objective(lambda th, grad: deviance(th, value))
            opt.set_lower_bounds(lower)
            start = np.maximum(state["theta"], lower)
            opt.set_initial_step(np.maximum(0.1 * np.abs(start), 0.02))
            opt.set_xtol_rel(1e-8)
            opt.set_ftol_abs(1e-10)
            opt.set_maxeval(20_000)
            try:
                state["theta"] = opt.optimize(start)
                dev = opt.last_optimum_value()
            except nlopt.RoundoffLimited:
                dev = deviance(start, value)
        else:
            dev = deviance(np.zeros(0), value)
        return math.copysign(math.sqrt(max(dev - base, 0.0)), value - beta_hat)

    return zeta


@dataclasses.dataclass(frozen=True)
class ProfileEnd:
    """One end of a profile interval; ``at_bound`` when the profile never reached ``z``."""

    value: float
    at_bound: bool


def interval_ends(
    zeta: Callable[[float], float],
    estimate: float,
    step: float,
    z: float,
    lower: float = -math.inf,
    upper: float = math.inf,
) -> tuple[ProfileEnd, ProfileEnd]:
    """Solve ``zeta(x) = -z`` below and ``+z`` above ``estimate``.

    Each side is bracketed by steps aimed at the crossing (``zeta`` is nearly
    linear, so a secant through ``(estimate, 0)`` predicts it; the step then
    overshoots by 15 %), and solved by Brent's method to 1e-7 of the
    parameter's scale. An end that would cross ``lower``/``upper`` without
    reaching ``z`` is returned at that bound.
    """
    tolerance = 1e-7 * max(abs(estimate), step)
    ends = []
    for direction, bound, target in ((-1.0, lower, -z), (1.0, upper, z)):
        inner, width = estimate, step
        end = None
        for _ in range(60):
            outer = estimate + direction * width
            if (direction < 0 and outer <= bound) or (direction > 0 and outer >= bound):
                outer = bound
            value = zeta(outer)
            if direction * (value - target) >= 0.0:
                lo, hi = sorted((inner, outer))
                root = optimize.brentq(
                    lambda t, goal=target: zeta(t) - goal, lo, hi, xtol=tolerance, rtol=1e-10
                )
                end = ProfileEnd(float(root), False)
                break
            if outer == bound:
                end = ProfileEnd(float(bound), True)
                break
            aimed = width * target / value if direction * value > 0 else 0.0
            inner, width = outer, min(max(1.15 * aimed, 1.5 * width), 8.0 * width)
        ends.append(end if end is not None else ProfileEnd(math.nan, True))
    return ends[0], ends[1]
