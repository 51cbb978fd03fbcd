"""The well-conditioned problem the ML kernel fits, and the exact way back.

The profiled criterion of :mod:`bayesmix.ml.deviance` is formed from the
cross-products ``[X, y]'[X, y]``. Those lose everything when a column of
``X`` carries a large constant (``x + 1e6``, a timestamp ``1.7e9 + 1e3 t``:
the information is in the last digits of numbers squared to 1e18) and
overflow or underflow for responses such as ``y * 1e200``. Neither is a
statistical problem, so the kernel is given an equivalent problem instead:

1. **Weights and offset** (:meth:`Design.whitened`): with ``s = sqrt(w)``,
   ``y* = s (y - offset)``, ``X* = s X``, ``Z* = s Z`` has unit weights.
2. **Fixed effects** ``X* = Q G`` with ``Q`` orthonormal (QR of the
   column-normalised ``X*``), ``G = R D`` upper triangular; the kernel sees
   ``Q``, whose coefficients are ``beta_w = G beta``.
3. **Response** ``y* = m (Q c + s1 y_w)``: ``m`` a power of two near
   ``max |y*|`` (dividing by it is exact), ``Q c`` the least-squares fit of
   ``y* / m`` on ``Q`` and ``y_w`` the residual scaled to unit RMS. ``y_w`` is
   orthogonal to the fixed effects, so no digit of ``y`` is spent on them.
4. **Random-effect columns** whose RMS is outside ``[1e-2, 1e2]`` are divided
   by a power of two ``d`` near it. ``theta`` of such a column is of order
   ``1 / RMS`` (1e-5 for ``Days * 1e4``): BOBYQA's trust region and the
   singular-fit tolerance need it near 1. With ``Z = Z_w D`` the relative
   factor is ``T_w = D T`` (still lower triangular), so each ``theta`` entry
   scales by the ``d`` of its row: ``theta = theta_w / d_row``. Ordinary
   columns keep ``d = 1``, so their fits follow lme4's path exactly.

With ``scale = m s1`` and ``k = n`` (ML) or ``n - p`` (REML) the criteria
differ by a constant (the ``Z`` scaling changes none: ``Z T`` is the same),

    crit(original) = crit(working) + 2 k log(scale)
                     [+ 2 log |det G|  for REML]  - sum(log w),

the last term being lme4's for prior weights (both methods). Estimates map
back as ``beta = G^-1 m (c + s1 beta_w')``, ``b = scale b' / d``,
``sigma = scale sigma'``, every variance by ``scale^2`` (and ``1 / d d'``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg as sla

from bayesmix.errors import FitError
from bayesmix.spec.covariance import theta_positions
from bayesmix.spec.design import Design

# |R_jj| of the QR of the column-normalised X below this: X is rank deficient
# in double precision (the design's rank check uses 1e-7 on singular values,
# so it is only reached by hand-built designs).
_RANK_TOLERANCE = 1e-10
# scale^2 multiplies every variance: refuse scales whose square (with four
# decades of room for the model's own ratios) is not a normal double.
_SCALE_LIMITS = (1e-152, 1e152)
# The residual of y* on X relative to max |y*| below this: the fixed effects
# reproduce the response exactly (rounding of y* itself is ~1e-16).
_EXACT_FIT_TOLERANCE = 64 * np.finfo(float).eps
# Random-effect columns with an RMS outside this band are rescaled (step 4).
_Z_RMS_BAND = (1e-2, 1e2)


@dataclass(frozen=True, eq=False)
class WorkingProblem:
    """A design rewritten for accuracy, with what maps its estimates back.

    Attributes
    ----------
    design : Design
        Unit-weight, offset-free design with ``X = Q`` and ``y = y_w``.
    G : ndarray, shape (p, p)
        Upper-triangular ``G`` of ``X* = Q G`` (``beta_w = G beta``).
    c : ndarray, shape (p,)
        Least-squares coefficients of ``y* / m`` on ``Q``.
    m, s1 : float
        ``y* = m (Q c + s1 y_w)``; ``scale = m * s1``.
    log_det_G : float
        ``log |det G|``.
    log_weights : float
        ``sum(log w)`` (0 without weights).
    column_scales : tuple of ndarray
        ``d`` per block and column (``Z = Z_w D``); ones for ordinary columns.
    theta_scale : ndarray
        ``d`` of each ``theta`` entry's row: ``theta_w = theta_scale * theta``.
    n_obs, n_fixed : int
        n and p (``design`` is ``None`` for a problem formed from summed products,
        :mod:`bayesmix.ml.products_fit`).
    """

    design: Design
    G: np.ndarray
    c: np.ndarray
    m: float
    s1: float
    log_det_G: float
    log_weights: float
    column_scales: tuple[np.ndarray, ...]
    theta_scale: np.ndarray
    n_obs: int
    n_fixed: int

    @property
    def scale(self) -> float:
        """Residual scale of the whitened response: ``sigma = scale * sigma'``."""
        return self.m * self.s1

    def criterion_shift(self, reml: bool) -> float:
        """``crit(original) - crit(working)`` (a constant in ``theta``)."""
        n, p = self.n_obs, self.n_fixed
        dof = n - p if reml else n
        shift = 2.0 * dof * (np.log(self.m) + np.log(self.s1)) - self.log_weights
        return shift + (2.0 * self.log_det_G if reml else 0.0)

    def theta(self, theta_w: np.ndarray) -> np.ndarray:
        """Original (lme4) ``theta`` from the working one."""
        return np.asarray(theta_w, dtype=float) / self.theta_scale

    def theta_w(self, theta: np.ndarray) -> np.ndarray:
        """Working ``theta`` from the original one."""
        return np.asarray(theta, dtype=float) * self.theta_scale

    def b(self, b_w: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Original conditional modes (per block ``(levels, k)``) from the working ones."""
        return tuple(self.scale * bi / d for bi, d in zip(b_w, self.column_scales))

    def cond_var(self, var_w: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Conditional covariances ``D^-1 V_w D^-1`` per block (``V_w`` at original sigma)."""
        return tuple(v / np.outer(d, d) for v, d in zip(var_w, self.column_scales))

    def beta(self, beta_w: np.ndarray) -> np.ndarray:
        """Original fixed effects from the working ones."""
        if not self.G.size:
            return np.zeros(0)
        rhs = self.m * (self.c + self.s1 * beta_w)
        return sla.solve_triangular(self.G, rhs, lower=False, check_finite=False)

    def vcov_factor(self, RX_w: np.ndarray, sigma: float) -> np.ndarray:
        """``F`` with ``vcov(beta) = F F'``: ``sigma G^-1 RX_w^-1`` (``sigma`` original)."""
        if not self.G.size:
            return np.zeros((0, 0))
        return sigma * (_upper_inverse(self.G) @ _upper_inverse(RX_w))

    def fitted(self, fitted_w: np.ndarray, original: Design) -> np.ndarray:
        """``offset + X beta + Z b`` on the original scale from working fitted values."""
        Q = self.design.X
        whitened = self.m * (Q @ self.c + self.s1 * fitted_w)
        if original.weights is not None:
            whitened = whitened / np.sqrt(original.weights)
        return original.offset_or_zero + whitened


def _upper_inverse(U: np.ndarray) -> np.ndarray:
    """Inverse of an upper-triangular matrix (LAPACK ``dtrtri``).

    Not ``solve_triangular(U, I)``: with a matrix right-hand side that is a
    threaded BLAS call which took 8 ms for a 2 x 2 system on a busy machine.
    """
    inverse, info = sla.lapack.dtrtri(U, lower=0)
    if info:  # pragma: no cover - U comes from a successful factorisation
        raise FitError(f"inverting a triangular factor failed (LAPACK info {info})")
    return inverse


def _power_of_two_at_least(value: float) -> float:
    """A power of two ``>= value`` (division by it is exact)."""
    return float(np.ldexp(1.0, int(np.frexp(value)[1])))


def _orthonormal_basis(X: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``Q`` (n, p) and upper-triangular ``G`` with ``X = Q G``; refuse rank deficiency."""
    norms = np.linalg.norm(X, axis=0)
    zero = [names[j] for j in np.flatnonzero(norms == 0)]
    if zero:
        raise FitError(
            f"the fixed-effects column(s) {', '.join(zero)} are all zero; drop them from "
            "the formula"
        )
    Q, R = np.linalg.qr(X / norms)
    small = np.flatnonzero(np.abs(np.diag(R)) < _RANK_TOLERANCE)
    if small.size:
        raise FitError(
            "the fixed-effects matrix X is rank deficient: column(s) "
            f"{', '.join(names[j] for j in small)} are linear combinations of earlier ones; "
            "drop redundant terms"
        )
    # signs: make diag(R) positive so that Q's columns point like X's
    signs = np.sign(np.diag(R))
    return Q * signs, (R * signs[:, None]) * norms


def working_problem(design: Design) -> WorkingProblem:
    """The accurate equivalent of ``design`` (see the module docstring).

    Raises
    ------
    FitError
        The response is constant, the fixed effects fit it exactly, ``X`` is
        rank deficient, or the response's scale is beyond double precision.
    """
    name = design.response
    n, p = design.n_obs, design.n_fixed
    if design.offset is None and n > 1 and np.ptp(design.y) == 0:
        raise FitError(
            f"the response {name!r} is constant (every value is {design.y[0]:.6g}), so "
            "there is no variation to model"
        )
    if p >= n and n:
        raise FitError(
            f"the fixed effects have {p} columns for {n} observations, so they reproduce "
            f"the response {name!r} exactly and no variance can be estimated; use fewer "
            "fixed-effect terms"
        )
    log_weights = 2.0 * design.log_weight_term  # sum(log w), lme4's weights term
    white = design.whitened()
    if p:
        Q, G = _orthonormal_basis(np.asarray(white.X, dtype=float), design.fixed_terms)
    else:
        Q, G = np.zeros((n, 0)), np.zeros((0, 0))
    y_star = np.asarray(white.y, dtype=float)
    top = float(np.max(np.abs(y_star))) if n else 0.0
    if top == 0.0:
        raise FitError(f"the response {name!r} (less any offset) is zero in every row")
    m = _power_of_two_at_least(top)
    scaled = y_star / m
    c = Q.T @ scaled
    residual = scaled - Q @ c
    refine = Q.T @ residual  # one step of refinement: large means leave no trace
    c, residual = c + refine, residual - Q @ refine
    s1 = float(np.sqrt(np.mean(residual**2)))
    if s1 <= _EXACT_FIT_TOLERANCE:
        raise FitError(
            f"the fixed effects reproduce the response {name!r} exactly (residual SD "
            f"{s1 * m:.3g} against values up to {top:.3g}), so the residual variance is "
            "zero and the likelihood has no maximum; remove terms that determine the response"
        )
    scale = m * s1
    if not _SCALE_LIMITS[0] <= scale <= _SCALE_LIMITS[1]:
        raise FitError(
            f"the response {name!r} varies on the scale {scale:.3g}, whose square (the "
            "variances) lies outside double precision; divide the response by a constant "
            f"near {scale:.0e} and fit again"
        )
    blocks, column_scales, theta_scale = _scaled_blocks(white)
    working = replace(white, y=residual / s1, X=Q, blocks=blocks, offset=None, weights=None)
    log_det_G = float(np.sum(np.log(np.abs(np.diag(G))))) if p else 0.0
    return WorkingProblem(
        working, G, c, m, s1, log_det_G, log_weights, column_scales, theta_scale, n, p
    )


def _scaled_blocks(white: Design) -> tuple[tuple, tuple[np.ndarray, ...], np.ndarray]:
    """Blocks with badly scaled columns divided by a power of two (step 4)."""
    blocks, scales, theta_scale = [], [], []
    for block in white.blocks:
        rms = np.sqrt(np.mean(np.asarray(block.Z, dtype=float) ** 2, axis=0))
        outside = (rms > 0) & ((rms < _Z_RMS_BAND[0]) | (rms > _Z_RMS_BAND[1]))
        d = np.where(
            outside, np.ldexp(1.0, np.round(np.log2(np.where(rms > 0, rms, 1.0))).astype(int)), 1.0
        )
        rows, _ = theta_positions(block.covariance, block.n_terms)
        theta_scale.append(d[rows])
        scales.append(d)
        blocks.append(replace(block, Z=block.Z / d) if outside.any() else block)
    theta = np.concatenate(theta_scale) if theta_scale else np.empty(0)
    return tuple(blocks), tuple(scales), theta
