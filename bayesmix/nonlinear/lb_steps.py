"""The two steps of nlme's Lindstrom-Bates algorithm, and the linearisation they share.

* **LME step** (:func:`lme_step`). The model is linearised at the current
  ``(beta, b)``: ``Xt = df/dbeta``, ``Zt = df/db`` and the working response
  ``w = y - f + Xt beta + Zt b`` define a linear mixed model whose covariance
  parameters ``theta`` are estimated with the profiled ML/REML criterion of
  :mod:`bayesmix.ml.deviance` (:func:`bayesmix.ml.fit.fit_estimates`).
* **PNLS step** (:func:`pnls`). At fixed ``theta`` (relative covariance factors
  ``T``), ``(beta, u)`` minimise ``||y - f(phi(beta, T u))||^2 + ||u||^2``
  (:func:`scipy.optimize.least_squares` with an analytic Jacobian; ``b = T u``).

An offset is moved into the response (``y - offset``). Prior weights (residual
variance ``sigma^2 / w``) scale the PNLS rows by ``sqrt(w)`` (the sum of
squares becomes ``sum w (y - f)^2``) and go with the pseudo-data to the LME
step, whose log-likelihood then includes ``0.5 sum(log w)`` as lme4's does.
A residual variance function or correlation structure (``Linearisation.residual``)
whitens the PNLS rows and is estimated in the LME step
(:mod:`bayesmix.nonlinear.residual_steps`).

Derivatives ``df/dphi`` use the complex step (exact to rounding for analytic
mean functions) and fall back to central differences when the mean function
rejects complex input or returns non-finite values.

Notation
--------
n : observations; p : fixed effects; beta, b, u, theta, sigma as in
:mod:`bayesmix.ml.fit`; phi : per-row parameter values; G_k = df/dphi_k.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares

from bayesmix.errors import FitError, FormulaError
from bayesmix.ml.fit import MLEstimates, estimates_at, fit_estimates
from bayesmix.nonlinear.build import NonlinearDesign
from bayesmix.nonlinear.residual_steps import structured_lme_step, structured_restricted_at
from bayesmix.spec.covariance import factors_from_theta
from bayesmix.spec.design import Design
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = ["Linearisation", "check_start", "lme_step", "mean_and_gradient", "pnls", "restricted_at"]

_COMPLEX_STEP = 1e-20
_DENSE_JACOBIAN_MAX = 4_000_000  # entries; larger PNLS Jacobians are sparse


class _NoComplexStep(Exception):
    """The mean function cannot be differentiated by the complex step."""


def mean_and_gradient(
    design: NonlinearDesign, phi: Mapping[str, np.ndarray], complex_step: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``f(phi)`` and ``G_k = df/dphi_k`` for every parameter ``k`` (row by row)."""
    gradient = {}
    with np.errstate(all="ignore"):
        f = np.broadcast_to(np.asarray(design.mean(np, phi), dtype=float), design.y.shape)
        for name, value in phi.items():
            if complex_step:
                shifted = dict(phi, **{name: value + 1j * _COMPLEX_STEP})
                try:
                    out = np.asarray(design.mean(np, shifted))
                except (TypeError, ValueError) as err:
                    raise _NoComplexStep(str(err)) from err
                # rows where f itself is not finite are the caller's business
                if not np.iscomplexobj(out) or np.any(np.isfinite(f) & ~np.isfinite(out)):
                    raise _NoComplexStep("real or non-finite output for complex input")
                gradient[name] = np.broadcast_to(out.imag / _COMPLEX_STEP, f.shape).copy()
            else:
                h = 6e-6 * np.maximum(1.0, np.abs(value))
                up = design.mean(np, dict(phi, **{name: value + h}))
                down = design.mean(np, dict(phi, **{name: value - h}))
                gradient[name] = np.broadcast_to((up - down) / (2 * h), f.shape).copy()
    return f.copy(), gradient


class Linearisation:
    """Evaluations of the model and its derivatives at ``(beta, b)``."""

    def __init__(self, design: NonlinearDesign, residual: ResidualStructure | None = None) -> None:
        self.design = design
        self.residual = residual  # variance function / correlation structure, bound to the rows
        self.complex_step = True
        self.n_fixed = design.n_fixed
        self.q = [blk.n_levels * blk.n_terms for blk in design.blocks]
        self.target = design.y_less_offset  # what f models
        self.sqrt_w = design.sqrt_weights  # ones without weights: unweighted fits unchanged

    def evaluate(self, beta: np.ndarray, b: Sequence[np.ndarray]):
        phi = self.design.phi(beta, b)
        if self.complex_step:
            try:
                return mean_and_gradient(self.design, phi, True)
            except _NoComplexStep:
                self.complex_step = False
        return mean_and_gradient(self.design, phi, False)

    def tilde(self, G: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """``Xt = df/dbeta`` (n, p) and ``Zt`` per block (n, k): multipliers times G."""
        columns = [G[p.name][:, None] * p.X for p in self.design.parameters]
        Xt = np.column_stack(columns) if self.n_fixed else np.zeros((self.design.n_obs, 0))
        Zt = [blk.Z * np.column_stack([G[p] for p in blk.params]) for blk in self.design.blocks]
        return Xt, Zt


def _check_mean_shape(design: NonlinearDesign, values: Any) -> np.ndarray:
    """The mean function's output as an array of one value per row, or a FormulaError.

    A scalar (a constant mean) broadcasts; any other length than the data's
    is a mistake in the mean function, reported before numpy's broadcasting
    error could be.
    """
    out = np.asarray(values)
    n = design.n_obs
    if out.shape not in ((), (1,), (n,)):
        text = design.mean_function.text
        raise FormulaError(
            f"the mean function {text!r} returned {out.size} value(s) (shape {out.shape}) for "
            f"{n} observations; it must return one value per row of the data (shape ({n},))"
        )
    return out


def check_start(design: NonlinearDesign, beta: np.ndarray) -> None:
    with np.errstate(all="ignore"):
        values = _check_mean_shape(design, design.mean(np, design.phi(beta)))
        f = np.broadcast_to(np.asarray(values, float), design.y.shape)
    bad = np.flatnonzero(~np.isfinite(f))
    if bad.size:
        shown = ", ".join(f"{t}={v:.6g}" for t, v in zip(design.fixed_terms, beta))
        rows = design.data.iloc[bad[:5]]
        raise FitError(
            f"the mean function is not finite at the starting values ({shown}) in "
            f"{bad.size} row(s), e.g. rows with index {list(rows.index)}:\n"
            f"{rows.head().to_string()}\nChoose other starting values with start=."
        )


def pnls(
    lin: Linearisation,
    theta: np.ndarray,
    beta: np.ndarray,
    u: list[np.ndarray],
    whiten: Callable[[np.ndarray], np.ndarray] | None = None,
):
    """Penalised nonlinear least squares at fixed ``theta``; returns beta, u, b, f, result.

    ``whiten`` (``M -> L^-1 M`` on ``(n, k)`` arrays, see
    :func:`bayesmix.nonlinear.residual_steps.whitener`) whitens the residuals
    and the Jacobian's rows for a residual variance function or correlation.
    """
    design = lin.design
    blocks = design.blocks
    T = factors_from_theta(
        theta, [blk.covariance for blk in blocks], [blk.n_terms for blk in blocks]
    )
    p, n, q = design.n_fixed, design.n_obs, sum(lin.q)
    offsets = np.cumsum([p] + lin.q)
    rows = np.arange(n)
    cache: dict[str, Any] = {}

    def unpack(x: np.ndarray):
        us = [
            x[offsets[i] : offsets[i + 1]].reshape(blk.n_levels, blk.n_terms)
            for i, blk in enumerate(blocks)
        ]
        return x[:p], us, [ui @ Ti.T for ui, Ti in zip(us, T)]

    def evaluate(x: np.ndarray):
        if cache.get("x") is None or not np.array_equal(cache["x"], x):
            beta_x, _, b_x = unpack(x)
            cache.update(x=x.copy(), fg=lin.evaluate(beta_x, b_x))
        return cache["fg"]

    s = lin.sqrt_w  # prior weights: sum w (f - y)^2 is the sum of squares of s (f - y)

    def residuals(x: np.ndarray) -> np.ndarray:
        f, _ = evaluate(x)
        r = s * (f - lin.target)
        if whiten is not None:
            r = whiten(r[:, None])[:, 0]
        r = np.concatenate([r, x[p:]])
        return np.where(np.isfinite(r), r, 1e150)

    def jacobian(x: np.ndarray):
        Xt, Zt = lin.tilde(evaluate(x)[1])
        Xt, Zt = s[:, None] * Xt, [s[:, None] * Z for Z in Zt]
        if whiten is not None:
            widths = np.cumsum([Xt.shape[1]] + [Z.shape[1] for Z in Zt])[:-1]
            parts = np.split(whiten(np.column_stack([Xt] + Zt)), widths, axis=1)
            Xt, Zt = parts[0], parts[1:]
        parts = [
            (np.broadcast_to(rows[:, None], Xt.shape), np.broadcast_to(np.arange(p), Xt.shape), Xt)
        ]
        for i, blk in enumerate(blocks):
            k = blk.n_terms
            cols = offsets[i] + blk.codes[:, None] * k + np.arange(k)[None, :]
            parts.append((np.broadcast_to(rows[:, None], cols.shape), cols, Zt[i] @ T[i]))
        r = np.concatenate([a.ravel() for a, _, _ in parts] + [n + np.arange(q)])
        c = np.concatenate([b.ravel() for _, b, _ in parts] + [p + np.arange(q)])
        v = np.concatenate([m.ravel() for _, _, m in parts] + [np.ones(q)])
        v = np.where(np.isfinite(v), v, 0.0)
        J = sp.csr_matrix((v, (r, c)), shape=(n + q, p + q))
        return J if (n + q) * (p + q) > _DENSE_JACOBIAN_MAX else J.toarray()

    x0 = np.concatenate([beta] + [ui.ravel() for ui in u])
    dense = (n + q) * (p + q) <= _DENSE_JACOBIAN_MAX
    result = least_squares(
        residuals,
        x0,
        jac=jacobian,
        method="lm" if dense else "trf",
        tr_solver="exact" if dense else "lsmr",
        x_scale="jac",
        xtol=1e-12,
        ftol=1e-12,
        gtol=1e-12,
        max_nfev=200 * (p + 1),
    )
    x = result.x if 2 * result.cost <= float(np.sum(residuals(x0) ** 2)) else x0
    beta_x, u_x, b_x = unpack(x)
    return beta_x, u_x, b_x, evaluate(x)[0], result


def linear_design_at(lin: Linearisation, beta, b) -> tuple[Design, np.ndarray]:
    """The linearised (LME) design at ``(beta, b)`` and the nonlinear mean ``f`` there.

    Its response is Lindstrom and Bates's pseudo-data ``w = y - f + X~ beta + Z~ b``;
    at convergence it is the linear model nlme's approximate inference uses.
    """
    design = lin.design
    f, G = lin.evaluate(beta, b)
    Xt, Zt = lin.tilde(G)
    w = lin.target - f + Xt @ beta
    for blk, Z, bb in zip(design.blocks, Zt, b):
        w = w + np.einsum("nk,nk->n", Z, bb[blk.codes])
    linear = Design(
        formula=design.description,
        response=design.response,
        y=w,
        X=Xt,
        fixed_terms=design.fixed_terms,
        blocks=tuple(blk.random_block(Z) for blk, Z in zip(design.blocks, Zt)),
        data=design.data,
        n_dropped=design.n_dropped,
        weights=design.weights,  # the ML kernel whitens by sqrt(w), adds 0.5 sum(log w)
    )
    return linear, f


def lme_step(
    lin: Linearisation,
    beta,
    b,
    method,
    theta,
    residual_u: np.ndarray | None = None,
    structure_method: str | None = None,
):
    """Linearise at ``(beta, b)`` and estimate ``theta`` of the linear model.

    With a residual structure (``lin.residual``) its parameters are estimated
    too, from ``residual_u`` (with ``theta``) and by ``structure_method``
    (default ``method``; see :mod:`bayesmix.nonlinear.residual_steps`).
    """
    design = lin.design
    linear, f = linear_design_at(lin, beta, b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if lin.residual is None:
            estimates = fit_estimates(linear, method, start=theta)
        else:
            start = None
            if theta is not None and residual_u is not None:
                start = np.concatenate([np.asarray(theta, float), np.asarray(residual_u, float)])
            estimates = structured_lme_step(
                linear,
                lin.residual,
                design.offset_or_zero + f,
                method,
                structure_method or method,
                start,
            )
    return estimates, f, caught, linear


def restricted_at(
    linear: Design, estimates: MLEstimates, residual: ResidualStructure | None = None
) -> MLEstimates:
    """REML quantities of the linearised model at the (ML) ``theta`` of ``estimates``
    (and the residual structure's ``u``, when there is one)."""
    if residual is not None:
        return structured_restricted_at(linear, residual, estimates)
    restricted = estimates_at(linear, estimates.theta, "REML")
    return dataclasses.replace(
        estimates,
        method="REML",
        sigma=restricted.sigma,
        vcov_beta=restricted.vcov_beta,
        b_cond_var=restricted.b_cond_var,
        covariances=restricted.covariances,
        loglik=restricted.loglik,
        criterion=restricted.criterion,
    )
