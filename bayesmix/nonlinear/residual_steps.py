"""The Lindstrom-Bates steps with a residual variance function and/or correlation structure.

With ``e ~ N(0, sigma^2 Lambda)`` (:mod:`bayesmix.spec.residual_structure`)
nlme's ``nlme()`` changes both steps:

* **LME step** (:func:`structured_lme_step`): the structure's parameters ``u``
  are estimated with the random-effects ``theta`` on the linearised model, by
  :func:`bayesmix.ml.residual_fit.fit_structured` on the pseudo-design. A
  variance function of the fitted values (``varPower()``) is evaluated at the
  fitted values ``offset + f`` of the point of linearisation and held there for
  the step (nlme updates them once per iteration, before its LME step).
* **PNLS step**: the residuals and their Jacobian are whitened by
  ``L(u)^-1`` (:func:`whitener`) at those same held fitted values, so PNLS
  minimises ``||L^-1 (y - f)||^2 + ||u||^2``, nlme's ``fit_nlme`` with
  ``varWeights`` and ``corFactor``.

nlme's REML (``reml="nlme"``) optimises ``(theta, u)`` by REML in its LME
step and then, in its PNLS step, re-optimises ``theta`` by ML with ``u`` held
(the C routine ``nlme_increment`` runs with ``RML = 0``). So at nlme's fixed
point ``u`` maximises the restricted likelihood jointly with ``theta``, and
``theta`` is the ML optimum given that ``u``. :func:`structured_lme_step` does
exactly that, in two stages; the fit's REML numbers are then those at this
``(theta, u)`` (:func:`structured_restricted_at`). ML fits and the
``"linearised"`` REML variant optimise ``(theta, u)`` jointly by their criterion.

Notation
--------
u : unconstrained parameters of the residual structure (``residual_u`` of
:class:`~bayesmix.ml.fit.MLEstimates`); Lambda = L L' : residual covariance / sigma^2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from bayesmix.errors import FitError
from bayesmix.ml.fit import MLEstimates, estimates_at, fit_estimates
from bayesmix.ml.residual_fit import fit_structured
from bayesmix.nonlinear.design import NonlinearDesign
from bayesmix.spec.design import Design
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = [
    "check_structure_start",
    "hold_fitted",
    "structured_lme_step",
    "structured_restricted_at",
    "whitener",
]


def hold_fitted(structure: ResidualStructure, fitted: np.ndarray | None) -> ResidualStructure:
    """``structure`` with a variance function of the fitted values held at ``fitted``.

    For one LME or PNLS step nlme holds ``fitted(.)`` where the model was
    linearised; ``fit_structured`` then treats the function like one of a
    covariate (no fixed-point rounds of its own).
    """
    return structure.held_at(fitted)


def whitener(
    structure: ResidualStructure | None, u: np.ndarray, fitted: np.ndarray | None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """``M -> L(u)^-1 M`` for ``(n, k)`` arrays (the PNLS rows), or ``None`` without a structure.

    Correlation groups are nested in every random-effects grouping (checked
    when the structure is bound), so whitening the per-row random-effect
    columns before they are spread over levels whitens the full ``Z``.
    """
    if structure is None:
        return None
    held = hold_fitted(structure, fitted)
    u = np.asarray(u, dtype=float).copy()

    def whiten(M: np.ndarray) -> np.ndarray:
        return held.whiten(u, M)[0]

    return whiten


def _at_u(linear: Design, held: ResidualStructure, u: np.ndarray) -> tuple[Design, float]:
    """The whitened pseudo-design at ``u`` and what the log-likelihood loses to it:
    ``-log|Lambda| / 2`` plus the prior weights' ``sum(log w) / 2``, as ``-2 loglik``."""
    white, log_det = held.whiten_design(linear, u)
    return white, log_det - 2.0 * linear.log_weight_term


def _unwhitened(
    estimates: MLEstimates,
    shift: float,
    structure: ResidualStructure,
    u: np.ndarray,
    fitted: np.ndarray | None,
) -> MLEstimates:
    """Estimates of the whitened design as those of the model with the structure."""
    criterion = estimates.criterion + shift
    return dataclasses.replace(
        estimates,
        criterion=criterion,
        loglik=-0.5 * criterion,
        n_params=estimates.n_params + structure.n_params,
        residual_u=np.asarray(u, dtype=float).copy(),
        variance_fitted=None if fitted is None else np.asarray(fitted, dtype=float).copy(),
    )


def structured_lme_step(
    linear: Design,
    structure: ResidualStructure,
    fitted: np.ndarray,
    step_method: str,
    structure_method: str,
    start: np.ndarray | None,
) -> MLEstimates:
    """Estimate ``(theta, u)`` of the linearised model ``linear`` (see the module docstring).

    Parameters
    ----------
    linear : Design
        The pseudo-design of the LME step.
    structure : ResidualStructure
    fitted : ndarray
        ``offset + f`` at the point of linearisation (for ``fitted(.)``).
    step_method : {"ML", "REML"}
        The criterion of ``theta``.
    structure_method : {"ML", "REML"}
        The criterion of ``u``: nlme's REML has ``step_method="ML"`` and
        ``structure_method="REML"``.
    start : ndarray, optional
        ``(theta, u)`` to start from (``fit_structured``'s own start when ``None``).

    Returns
    -------
    MLEstimates
        In ``step_method``, with ``residual_u`` and ``variance_fitted`` set.
    """
    held = hold_fitted(structure, fitted)
    uses_fitted = structure.uses_fitted
    joint = fit_structured(linear, held, structure_method, start=start)
    if step_method == structure_method:
        return dataclasses.replace(joint, variance_fitted=fitted.copy() if uses_fitted else None)
    u = joint.residual_u
    white, shift = _at_u(linear, held, u)
    n_theta = len(joint.theta)
    theta0 = joint.theta if start is None else np.asarray(start[:n_theta], dtype=float)
    theta_start = theta0 if n_theta else None
    ml = fit_estimates(white, step_method, start=theta_start)
    return _unwhitened(ml, shift, structure, u, fitted if uses_fitted else None)


def structured_restricted_at(
    linear: Design, structure: ResidualStructure, estimates: MLEstimates
) -> MLEstimates:
    """REML quantities of the linearised model at the ``(theta, u)`` of ``estimates``."""
    fitted = estimates.variance_fitted
    held = hold_fitted(structure, fitted)
    white, shift = _at_u(linear, held, estimates.residual_u)
    restricted = estimates_at(white, estimates.theta, "REML")
    criterion = restricted.criterion + shift
    return dataclasses.replace(
        estimates,
        method="REML",
        sigma=restricted.sigma,
        vcov_beta=restricted.vcov_beta,
        b_cond_var=restricted.b_cond_var,
        covariances=restricted.covariances,
        loglik=-0.5 * criterion,
        criterion=criterion,
    )


def check_structure_start(
    design: NonlinearDesign, beta: np.ndarray, structure: ResidualStructure
) -> None:
    """Refuse a variance function whose SD multiplier is 0 or infinite at the start.

    ``varPower()`` of the fitted values is undefined where the mean is 0
    (``SSfol`` at time 0); nlme stops with "NA/NaN/Inf in foreign function call".
    """
    if structure.variance is None:
        return
    with np.errstate(all="ignore"):
        f = np.broadcast_to(np.asarray(design.mean(np, design.phi(beta)), float), design.y.shape)
        fitted = design.offset_or_zero + f
        log_g = structure.variance.log_sd(structure.variance.start, fitted)
    bad = np.flatnonzero(~np.isfinite(log_g))
    if bad.size:
        rows = design.data.iloc[bad[:5]]
        where = "fitted value" if structure.uses_fitted else "variance covariate"
        raise FitError(
            f"{structure.variance.spec.nlme()}: the residual SD multiplier is 0 or infinite at "
            f"the starting values in {bad.size} row(s) (a {where} of 0), e.g. rows with index "
            f"{list(rows.index)}:\n{rows.head().to_string()}\nDrop those rows (nlme fails on "
            "them too) or choose another variance function (varConstPower, varExp)."
        )
