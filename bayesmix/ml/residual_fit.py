"""ML and REML fits with a residual variance function and/or correlation structure.

For given structure parameters ``u`` the design is whitened
(:meth:`~bayesmix.spec.residual_structure.ResidualStructure.whiten_design`) and
the profiled criterion of the ordinary kernel (:mod:`bayesmix.ml.deviance`, on
the accurate working problem of :mod:`bayesmix.ml.working`) is evaluated there;
``log|Lambda|`` is added, which is all the structure changes:

    crit(theta, u) = crit_white(theta; L(u)^-1 [y, X, Z]) + log|Lambda(u)|

for both ML and REML (the REML term ``log|X' Lambda^-1 X|`` is the whitened
design's). BOBYQA minimises over ``(theta, u)`` jointly, as nlme's ``nlminb``
does over its parameters, and :func:`bayesmix.ml.optimise.optimise` proves the optimum.

A variance function of the fitted values (nlme's ``varPower()``) is not one
likelihood in ``(beta, u)``: as nlme does, the fitted values are held fixed
while ``(theta, u)`` are optimised, then updated from the fit, until they
settle; the criterion is reported at that fixed point.

Notation
--------
theta : relative covariance parameters of the random effects (lme4's);
u : unconstrained structure parameters; Lambda : residual covariance / sigma^2.
"""

from __future__ import annotations

import numpy as np

from bayesmix.errors import (
    ArgumentError,
    ConvergenceWarning,
    DataError,
    FitError,
    SingularFitWarning,
    warn,
)
from bayesmix.ml.blas_threads import one_blas_thread
from bayesmix.ml.checks import check_identifiable, singular_message
from bayesmix.ml.criterion_choice import choose_criterion
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.ml.fit import (
    SINGULAR_TOLERANCE,
    MLEstimates,
    _check_method,
    _estimates,
    _theta_names,
    deviance_function,
)
from bayesmix.ml.optimise import minimise
from bayesmix.ml.scaled_search import (
    SCALED_RHOBEG,
    coordinate_scales,
    newton_round,
    scaled_minimum,
)
from bayesmix.ml.structured_kernel import one_block_criterion
from bayesmix.ml.working import working_problem
from bayesmix.spec.covariance import (
    initial_theta,
    lower_bounds,
    theta_is_diagonal,
    theta_positions,
)
from bayesmix.spec.design import Design
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = ["fit_structured"]

# fitted-value iterations (nlme's maxIter for lme is 50)
_MAX_FITTED_ROUNDS = 50
# fitted values settle when they change by less than this relative to their scale
_FITTED_TOLERANCE = 1e-9
# the quick fit without the structure that gives the start of theta
_START_FTOL = 1e-5
_START_EVALUATIONS = 2000


class _Criterion:
    """``crit(theta, u)`` of a design and a structure, with the fitted values held.

    The accurate working problem (:mod:`bayesmix.ml.working`) is formed once, from
    the unstructured design; each evaluation whitens its arrays ``[y_w, Q, Z_w]``
    (whitening is linear, so this equals whitening first) and adds
    ``log|Lambda|`` to the working criterion's constant shift.
    """

    def __init__(self, design: Design, structure: ResidualStructure, reml: bool) -> None:
        self.design, self.structure, self.reml = design, structure, reml
        self.n_theta = sum(len(initial_theta(b.covariance, b.n_terms)) for b in design.blocks)
        self.fitted: np.ndarray | None = None
        self.work = working_problem(design)
        wd = self.work.design
        self._M = np.column_stack([wd.y, wd.X] + [b.Z for b in wd.blocks])
        widths = [1, wd.n_fixed] + [b.n_terms for b in wd.blocks]
        self._edges = np.cumsum(widths)[:-1]
        self._blocks = [(b.codes, b.n_levels, b.covariance) for b in wd.blocks]
        self._shift = self.work.criterion_shift(reml)
        # one block or none: the compiled kernel (structured_kernel), else the general one
        self._plain = None  # the unstructured criterion, formed on first use
        self._compiled = len(wd.blocks) <= 1
        if self._compiled:
            block = wd.blocks[0] if wd.blocks else None
            self._codes = np.ascontiguousarray(
                block.codes if block else np.zeros(design.n_obs), dtype=np.int64
            )
            self._n_levels = block.n_levels if block else 1
            self._size = block.n_terms if block else 0
            self._rows, self._cols = (
                theta_positions(block.covariance, block.n_terms) if block else ((), ())
            )

    def unstructured(self, theta: np.ndarray) -> float:
        """The criterion of the model without the structure, at lme4's ``theta``."""
        theta_w = self.work.theta_w(theta)
        if self._plain is None:  # formed once: the unstructured design never changes
            self._plain, _ = choose_criterion(self.work.design, None, self.reml)
        return self._plain(theta_w)

    def kernel(self, u: np.ndarray) -> tuple[ProfiledDeviance, float]:
        """The profiled kernel of the whitened working arrays, and ``log|Lambda|``.

        The variance function is centred (:meth:`ResidualStructure.whiten`), so the
        ``theta`` this criterion takes is ``theta * exp(-mean(log g))``:
        :meth:`theta` maps it back.
        """
        W, log_det = self.structure.whiten(u, self._M, self.fitted, centre=True)
        parts = np.split(W, self._edges, axis=1)
        blocks = [(c, z, m, kind) for (c, m, kind), z in zip(self._blocks, parts[2:])]
        return ProfiledDeviance(parts[0][:, 0], parts[1], blocks), log_det

    def theta(self, x: np.ndarray) -> np.ndarray:
        """lme4's ``theta`` of the uncentred model from this criterion's ``x``."""
        u = x[self.n_theta :]
        return x[: self.n_theta] * np.exp(self.structure.mean_log_sd(u, self.fitted))

    def centred(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """This criterion's ``x`` from lme4's ``theta`` and ``u``."""
        scale = np.exp(-self.structure.mean_log_sd(u, self.fitted))
        return np.concatenate([np.asarray(theta, dtype=float) * scale, u])

    def parts(self, x: np.ndarray):
        """Whitened (uncentred) design, its working problem and kernel, working theta
        and log|Lambda|."""
        theta, u = self.theta(x), x[self.n_theta :]
        white, log_det = self.structure.whiten_design(self.design, u, self.fitted)
        work = working_problem(white)
        kernel = deviance_function(work.design)
        return white, work, kernel, work.theta_w(theta), log_det

    def __call__(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=float)
        try:
            theta_w = self.work.theta_w(x[: self.n_theta])
            if self._compiled:
                W, log_det = self.structure.whiten(x[self.n_theta :], self._M, self.fitted, True)
                T = np.zeros((self._size, self._size))
                T[self._rows, self._cols] = theta_w
                p = self.work.design.n_fixed
                value = one_block_criterion(W, self._codes, self._n_levels, p, T, self.reml)
                value += self._shift + log_det
            else:
                kernel, log_det = self.kernel(x[self.n_theta :])
                value = kernel(theta_w, reml=self.reml) + self._shift + log_det
        except (FitError, DataError, np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf  # an extreme structure parameter: not a candidate
        return float(value) if np.isfinite(value) else np.inf


def _start(crit: _Criterion) -> np.ndarray:
    """``theta`` of the model without the structure (a quick, loose fit), then the
    structure's start: a ``theta`` near its optimum keeps the joint search short
    and away from the far local optima a correlation can create (Oxboys, corExp)."""
    design = crit.design
    theta = [initial_theta(b.covariance, b.n_terms) for b in design.blocks]
    theta = np.concatenate(theta) if theta else np.zeros(0)
    if design.blocks:
        try:
            fun = crit.unstructured
            lower = np.concatenate([lower_bounds(b.covariance, b.n_terms) for b in design.blocks])
            scales = coordinate_scales(fun, theta, lower)
            z, *_ = minimise(
                lambda z: fun(theta + scales * z),
                np.zeros_like(theta),
                (lower - theta) / scales,
                _START_EVALUATIONS,
                rhobeg=SCALED_RHOBEG,
                ftol_abs=_START_FTOL,
            )
            theta = np.maximum(theta + scales * z, lower)
        except FitError:
            pass  # lme4's start; the joint fit reports what is wrong
    return np.concatenate([theta, crit.structure.start])


def _population_start(design: Design) -> np.ndarray:
    """Least-squares fitted values ``offset + X beta_OLS``: the first fitted values."""
    y = design.y - design.offset_or_zero
    beta = np.linalg.lstsq(design.X, y, rcond=None)[0] if design.n_fixed else np.zeros(0)
    return design.offset_or_zero + design.X @ beta


def _conditional_fitted(design: Design, beta: np.ndarray, b: tuple) -> np.ndarray:
    eta = design.offset_or_zero + design.X @ beta
    for block, bi in zip(design.blocks, b):
        eta = eta + np.einsum("nk,nk->n", np.asarray(block.Z), np.asarray(bi)[block.codes])
    return eta


def fit_structured(
    design: Design,
    structure: ResidualStructure,
    method: str = "REML",
    *,
    start: np.ndarray | None = None,
    max_evaluations: int = 100_000,
) -> MLEstimates:
    """Fit by REML (default) or ML with a residual structure, as nlme's ``lme``/``gls``.

    Parameters
    ----------
    design : Design
    structure : ResidualStructure
    method : {"REML", "ML"}
    start : ndarray, optional
        ``(theta, u)``: lme4's ``theta`` followed by the structure's
        unconstrained parameters; default lme4's ``theta`` start and the
        structures' own (nlme's where it has one).

    Returns
    -------
    MLEstimates
        With ``residual_u`` set; ``n_params`` counts the structure's parameters.
    """
    dense = structure.correlation is not None and structure.correlation.dense is not None
    if not dense and len(design.blocks) <= 1:  # elementwise and compiled: no BLAS calls
        return _fit_structured(design, structure, method, start, max_evaluations)
    with one_blas_thread():  # dense whitening: many small products, slower threaded
        return _fit_structured(design, structure, method, start, max_evaluations)


def _fit_structured(
    design: Design,
    structure: ResidualStructure,
    method: str,
    start: np.ndarray | None,
    max_evaluations: int,
) -> MLEstimates:
    reml = _check_method(method)
    n, p = design.n_obs, design.n_fixed
    if n - (p if reml else 0) <= 0:
        raise FitError(f"{n} observations are too few for {p} fixed effects")
    check_identifiable(design)
    crit = _Criterion(design, structure, reml)
    lower = np.concatenate(
        [lower_bounds(b.covariance, b.n_terms) for b in design.blocks]
        + [np.full(structure.n_params, -np.inf)]
    )
    if structure.uses_fitted:
        crit.fitted = _population_start(design)
    if start is None:
        x = _start(crit)
    else:
        x = np.asarray(start, dtype=float)
        if x.shape != lower.shape or not np.all(np.isfinite(x)):
            raise ArgumentError(
                f"start needs {lower.size} finite values (theta, then u), got {start!r}"
            )
        x = np.maximum(x, lower)
    x = crit.centred(x[: crit.n_theta], x[crit.n_theta :])
    if not np.isfinite(crit(x)):
        raise FitError(
            "the residual structure gives an undefined likelihood at its start; check the "
            "variance covariate (zeros?) or give start values"
        )
    scales = coordinate_scales(crit, x, lower)
    x, converged, message, total = scaled_minimum(crit, x, lower, scales, max_evaluations)
    total += 2 * x.size + 1
    rounds = 1
    while structure.uses_fitted:
        # nlme's fixed point: refresh the fitted values the variance depends on, then
        # move to the new optimum by Newton steps (the last round's optimum is close)
        new_fitted = _fitted_at(crit, x)
        change = np.max(np.abs(new_fitted - crit.fitted)) / max(np.max(np.abs(new_fitted)), 1e-300)
        theta = crit.theta(x)
        crit.fitted = new_fitted
        x = crit.centred(theta, x[crit.n_theta :])
        if change <= _FITTED_TOLERANCE:
            break
        if rounds >= _MAX_FITTED_ROUNDS:
            converged = False
            message += f"; the fitted values still changed by {change:.2g} after {rounds} rounds"
            break
        x, step_converged, evaluations = newton_round(crit, x, lower, scales)
        total += evaluations
        if not step_converged:  # Newton failed: search afresh from here
            x, converged, message, used = scaled_minimum(crit, x, lower, scales, max_evaluations)
            total += used
        rounds += 1
    if structure.uses_fitted:
        message += f"; fitted values settled after {rounds} round(s)"
    values = _values(crit, x)
    diagonal = [theta_is_diagonal(b.covariance, b.n_terms) for b in design.blocks]
    diagonal = np.concatenate(diagonal) if diagonal else np.zeros(0, dtype=bool)
    singular = bool(np.any(diagonal & (np.abs(values["theta"]) < SINGULAR_TOLERANCE)))
    if not converged:
        warn(
            f"the {values['method']} optimiser did not converge ({message}) after {total} "
            "evaluations; estimates may be inaccurate: simplify the residual structure or "
            "the random effects, or refit with start= from this fit",
            ConvergenceWarning,
        )
    if singular:
        warn(
            singular_message(values["theta"], design, [b.covariance for b in design.blocks])
            or "boundary (singular) fit",
            SingularFitWarning,
        )
    return MLEstimates(
        **values,
        converged=converged,
        message=message,
        n_evaluations=total,
        singular=singular,
    )


def _fitted_at(crit: _Criterion, x: np.ndarray) -> np.ndarray:
    """Conditional fitted values at ``x`` (what a fitted-value variance function reads)."""
    _, work, kernel, theta_w, _ = crit.parts(x)
    sol = kernel.solve(theta_w, reml=crit.reml)
    return _conditional_fitted(crit.design, work.beta(sol.beta), work.b(sol.b))


def _values(crit: _Criterion, x: np.ndarray) -> dict:
    """Estimates at ``x`` on the original scale (``_estimates`` of the whitened design)."""
    design, structure = crit.design, crit.structure
    white, work, kernel, theta_w, log_det = crit.parts(x)
    names = _theta_names(design)
    values = _estimates(white, work, kernel, theta_w, crit.reml, names)
    values["fitted"] = _conditional_fitted(design, values["beta"], values["b"])
    # whiten_design absorbs prior weights before the working problem: add lme4's term back
    values["criterion"] += log_det - 2.0 * design.log_weight_term
    values["loglik"] = -0.5 * values["criterion"]
    values["n_params"] += structure.n_params
    values["residual_u"] = np.asarray(x[crit.n_theta :], dtype=float).copy()
    if structure.uses_fitted:
        values["variance_fitted"] = crit.fitted.copy()
    return values
