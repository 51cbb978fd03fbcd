"""ML/REML fit of a linear mixed model known only by its summed cross-products.

Data too large for one process (a Dask DataFrame) reach the ML engine as the
:class:`~bayesmix.ml.cross_products.CrossProducts` of their whitened rows
(``sqrt(w) (y - offset)``, ``sqrt(w) X``, ``sqrt(w) Z``), added up partition by
partition. This module fits them with the same kernel, optimiser and checks as
:func:`bayesmix.ml.fit.fit_estimates`; only the accurate working problem of
:mod:`bayesmix.ml.working` is formed from the products instead of the rows:

* ``G``: the upper Cholesky factor of the column-normalised ``X'X`` (the rows'
  QR gives the same ``R``, to rounding), so ``Q = X G^-1`` is orthonormal;
* ``c = G^-T X'y / m`` and ``s1^2 = (y'y / m^2 - c'c) / n`` with ``m`` a power
  of two near the response's RMS;
* random-effect columns rescaled by powers of two from their RMS (``Z'Z``'s
  diagonal), as the rows' version does.

Every product is mapped by the one linear map ``[X, y] -> [Q, y_w]``, exactly
(no rows). Cross-products square the condition number of ``X``, so the rows are
centred before they are summed (:mod:`bayesmix.scale.accumulate`, on the survey's
means; :func:`centred_back` maps the estimates back): a large constant part of a
predictor or of the response (a timestamp, 1e6 + noise) then costs no digits.
What centring cannot remove, an ill-conditioned ``X`` itself, costs twice the
digits it costs the rows' QR, and aliased columns are told from ``X'X``
(:func:`independent_gram_columns`).

Notation
--------
As :mod:`bayesmix.ml.working` and :mod:`bayesmix.ml.cross_products`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from bayesmix.errors import ConvergenceWarning, FitError, SingularFitWarning, warn
from bayesmix.ml.checks import (
    SINGULAR_TOLERANCE,
    check_unbounded,
    convergence_message,
    singular_message,
)
from bayesmix.ml.cross_products import BlockLayout, CrossProducts, block_layout, level_grams
from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.ml.fit import MLEstimates, _diagonal_mask, _theta_names
from bayesmix.ml.optimise import optimise
from bayesmix.ml.working import WorkingProblem
from bayesmix.spec.covariance import (
    block_covariance,
    canonical_theta,
    factors_from_theta,
    theta_positions,
)
from bayesmix.spec.design import Design
from bayesmix.spec.design_columns import RANK_TOLERANCE, warn_aliased

__all__ = ["centred_back", "fit_products", "independent_gram_columns", "select_fixed"]

# |R_jj| of the column-normalised X'X's Cholesky factor below this: X is rank
# deficient (the rows' QR uses 1e-10; products lose half the digits)
_RANK_TOLERANCE = 1e-7
# The residual's RMS relative to the response's below this: an exact fit. Products carry
# the residual sum of squares as a difference of sums of squares, good to ~1e-16 of them,
# so the residual's RMS is resolved to ~1e-8 (the rows' QR resolves 64 eps).
_EXACT_FIT_PRODUCTS = 1e-7
# Random-effect columns with an RMS outside this band are rescaled (as working.py).
_Z_RMS_BAND = (1e-2, 1e2)


def independent_gram_columns(
    gram: np.ndarray, names: tuple[str, ...], norms_sq: np.ndarray | None = None
) -> list[int]:
    """The columns kept by R's rule (:func:`bayesmix.spec.design_columns.independent_columns`)
    read from ``X'X``: column j is aliased when its residual on the kept columns has norm at
    most ``RANK_TOLERANCE ||x_j||``. ``norms_sq`` are the columns' squared norms before
    centring (the residuals are the same once the intercept is kept, the norms are not);
    default ``gram``'s diagonal. Warns, as the in-memory design does, when one is dropped."""
    norms_sq = np.diag(gram) if norms_sq is None else norms_sq
    keep: list[int] = []
    for j in range(gram.shape[0]):
        norm_sq = float(norms_sq[j])
        if norm_sq <= 0:
            continue
        if keep:
            sub = gram[np.ix_(keep, keep)]
            cross = gram[keep, j]
            try:
                residual_sq = float(gram[j, j]) - float(cross @ np.linalg.solve(sub, cross))
            except np.linalg.LinAlgError:  # pragma: no cover - kept columns are independent
                residual_sq = 0.0
        else:
            residual_sq = float(gram[j, j])
        if residual_sq > RANK_TOLERANCE**2 * norm_sq:
            keep.append(j)
    warn_aliased([names[j] for j in range(gram.shape[0]) if j not in keep])
    return keep


def select_fixed(products: CrossProducts, keep: list[int]) -> CrossProducts:
    """The products of the rows with only the fixed-effects columns ``keep`` (and y)."""
    p = products.XyXy.shape[0] - 1
    columns = [*keep, p]
    return dataclasses.replace(
        products,
        XyXy=products.XyXy[np.ix_(columns, columns)],
        ZXy1=products.ZXy1[..., columns] if products.ZXy1.size else products.ZXy1,
        ZXy_r=products.ZXy_r[:, columns] if products.ZXy_r.size else products.ZXy_r,
    )


def centred_back(
    estimates: MLEstimates, intercept: int, x_shift: np.ndarray, y_shift: float
) -> MLEstimates:
    """Estimates of the model fitted with ``X - 1 x_shift'`` and ``y - y_shift`` (the
    ``intercept`` column absorbing both) in the original columns: ``beta = T beta_c +
    y_shift e_int`` with ``T = I - e_int x_shift'``; ``vcov = T V_c T'``; nothing else changes
    (the map has determinant 1, so the REML criterion is the same)."""
    T = np.eye(len(x_shift))
    T[intercept] -= x_shift
    beta = T @ estimates.beta
    beta[intercept] += y_shift
    return dataclasses.replace(estimates, beta=beta, vcov_beta=T @ estimates.vcov_beta @ T.T)


def _power_of_two_at_least(value: float) -> float:
    return float(np.ldexp(1.0, int(np.frexp(value)[1])))


def _fixed_factor(XtX: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Upper-triangular ``G`` with ``X'X = G'G`` and a positive diagonal."""
    norms = np.sqrt(np.diag(XtX))
    zero = [names[j] for j in np.flatnonzero(norms == 0)]
    if zero:
        raise FitError(
            f"the fixed-effects column(s) {', '.join(zero)} are all zero; drop them from "
            "the formula"
        )
    try:
        R = sla.cholesky(XtX / np.outer(norms, norms), lower=False)
    except np.linalg.LinAlgError:
        R = np.zeros_like(XtX)
    small = np.flatnonzero(~(np.abs(np.diag(R)) >= _RANK_TOLERANCE))
    if small.size:
        raise FitError(
            "the fixed-effects matrix X is rank deficient: column(s) "
            f"{', '.join(names[j] for j in small)} are linear combinations of earlier ones; "
            "drop redundant terms"
        )
    return R * norms


def _column_scales(
    products: CrossProducts, template: Design, order: list[int], layout: BlockLayout
):
    """``d`` per block column (powers of two, from the columns' RMS), in formula order,
    and each ``theta`` entry's row scale."""
    sums = [None] * len(order)
    for i, gram in zip(order, level_grams(products, layout), strict=True):
        sums[i] = np.einsum("mtt->t", gram)
    scales, theta_scale = [], []
    for block, total in zip(template.blocks, sums, strict=True):
        rms = np.sqrt(total / products.n_obs)
        outside = (rms > 0) & ((rms < _Z_RMS_BAND[0]) | (rms > _Z_RMS_BAND[1]))
        exponent = np.round(np.log2(np.where(rms > 0, rms, 1.0))).astype(int)
        d = np.where(outside, np.ldexp(1.0, exponent), 1.0)
        rows, _ = theta_positions(block.covariance, block.n_terms)
        scales.append(d)
        theta_scale.append(d[rows])
    return tuple(scales), (np.concatenate(theta_scale) if theta_scale else np.empty(0))


def _working_products(
    products: CrossProducts,
    template: Design,
    order: list[int],
    layout: BlockLayout,
    log_weights: float,
) -> tuple[CrossProducts, WorkingProblem]:
    """The products of the working problem and the map back (see the module docstring)."""
    n, p = products.n_obs, template.n_fixed
    name = template.response
    XyXy = products.XyXy
    if p >= n:
        raise FitError(
            f"the fixed effects have {p} columns for {n} observations, so they reproduce "
            f"the response {name!r} exactly and no variance can be estimated"
        )
    yy = float(XyXy[p, p])
    if not yy > 0:
        raise FitError(f"the response {name!r} (less any offset) is zero in every row")
    m = _power_of_two_at_least(np.sqrt(yy / n))
    G = _fixed_factor(XyXy[:p, :p], template.fixed_terms) if p else np.zeros((0, 0))
    c = sla.solve_triangular(G, XyXy[:p, p], trans="T") / m if p else np.zeros(0)
    s1_sq = (yy / m**2 - float(c @ c)) / n
    if not s1_sq > _EXACT_FIT_PRODUCTS**2:
        raise FitError(
            f"the fixed effects reproduce the response {name!r} to within "
            f"{_EXACT_FIT_PRODUCTS:g} of its scale, so the residual variance is zero or below "
            "what summed cross-products resolve; remove terms that determine the response, "
            "or fit these data in memory"
        )
    s1 = float(np.sqrt(s1_sq))
    # [Q, y_w] = [X, y] M
    M = np.zeros((p + 1, p + 1))
    if p:
        G_inv = sla.solve_triangular(G, np.eye(p))
        M[:p, :p] = G_inv
        M[:p, p] = -G_inv @ c / s1
    M[p, p] = 1.0 / (m * s1)
    column_scales, theta_scale = _column_scales(products, template, order, layout)
    d = [column_scales[i] for i in order]
    work = dataclasses.replace(
        products,
        XyXy=M.T @ XyXy @ M,
        D=products.D / np.einsum("t,s->ts", d[0], d[0]) if d else products.D,
        ZXy1=(products.ZXy1 @ M) / d[0][None, :, None] if d else products.ZXy1,
    )
    if len(d) > 1:
        d_rest = np.concatenate(
            [np.tile(di, template.blocks[i].n_levels) for di, i in zip(d[1:], order[1:])]
        )
        work = dataclasses.replace(
            work,
            A_rr=(sp.diags(1.0 / d_rest) @ products.A_rr @ sp.diags(1.0 / d_rest)).tocsr(),
            ZXy_r=(products.ZXy_r @ M) / d_rest[:, None],
            pairs=tuple(
                (keys, vals / np.einsum("t,s->ts", di, d[0])[None])
                for (keys, vals), di in zip(products.pairs, d[1:], strict=True)
            ),
        )
    log_det_G = float(np.sum(np.log(np.abs(np.diag(G))))) if p else 0.0
    problem = WorkingProblem(
        None, G, c, m, s1, log_det_G, log_weights, column_scales, theta_scale, n, p
    )
    return work, problem


def fit_products(
    products: CrossProducts,
    template: Design,
    method: str = "REML",
    *,
    log_weights: float = 0.0,
    max_evaluations: int = 100_000,
) -> MLEstimates:
    """Fit the model whose whitened rows have ``products`` (blocks in :func:`block_layout` order).

    ``template`` is a design of the same formula whose blocks carry every level
    (names, levels and covariance kinds are read from it, never its rows);
    ``log_weights`` is ``sum(log w)`` of the prior weights. ``fitted`` of the
    result is empty: fitted values live where the rows are.
    """
    reml = str(method).upper() == "REML"
    n, p = products.n_obs, template.n_fixed
    if n - (p if reml else 0) <= 0:
        raise FitError(f"{n} observations are too few for {p} fixed effects")
    crowded = [b.grouping for b in template.blocks if b.n_levels * b.n_terms >= n]
    if crowded:
        raise FitError(
            f"the random effects of {', '.join(crowded)} number at least the observations "
            f"({n}), so their variance cannot be told apart from the residual variance"
        )
    kinds = [b.covariance for b in template.blocks]
    sizes = [b.n_terms for b in template.blocks]
    n_levels = [b.n_levels for b in template.blocks]
    order, layout = block_layout(sizes, n_levels)
    work, problem = _working_products(products, template, order, layout, log_weights)
    kernel = ProfiledDeviance.from_products(work, kinds, sizes, n_levels)
    names = _theta_names(template)
    check, converged, message, n_evals = None, True, "no random effects: closed form", 0
    theta_w = np.empty(0)
    if kernel.n_theta:
        opt = optimise(
            lambda th: kernel(th, reml=reml),
            kernel.initial_theta,
            kernel.lower_bounds,
            max_evaluations,
            gradient=lambda th: kernel.value_and_gradient(th, reml=reml),
            canonical=lambda th: canonical_theta(th, kernel.kinds, kernel.sizes),
        )
        theta_w, converged, message = opt.x, opt.converged, opt.message
        n_evals, check = opt.n_evaluations, opt.check
        check_unbounded(
            template, lambda th: kernel(th, reml=reml), theta_w, opt.fx, _diagonal_mask(kernel)
        )
    sol = kernel.solve(theta_w, reml=reml)
    if template.blocks and sol.sigma < 1e-7:
        raise FitError(
            "the residual SD collapsed to zero: the random effects reproduce the response "
            "in every row; simplify the random effects"
        )
    sigma = problem.scale * sol.sigma
    F = problem.vcov_factor(sol.RX, sigma)
    criterion = sol.criterion + problem.criterion_shift(reml)
    theta = problem.theta(theta_w)
    singular_at = np.flatnonzero(_diagonal_mask(kernel) & (np.abs(theta_w) < SINGULAR_TOLERANCE))
    method_name = "REML" if reml else "ML"
    if not converged:
        reason = (
            convergence_message(check, names, method_name)
            if check is not None
            else f"the {method_name} optimiser did not converge ({message})"
        )
        warn(
            f"{reason} after {n_evals} evaluations; estimates may be inaccurate", ConvergenceWarning
        )
    if singular_at.size:
        text = singular_message(theta_w, template, kernel.kinds)
        warn(text or "boundary (singular) fit", SingularFitWarning)
    return MLEstimates(
        method=method_name,
        theta=theta,
        beta=problem.beta(sol.beta),
        sigma=sigma,
        vcov_beta=F @ F.T,
        b=problem.b(sol.b),
        b_cond_var=problem.cond_var(kernel.conditional_variances(theta_w, sigma)),
        covariances=tuple(
            block_covariance(T, sigma) for T in factors_from_theta(theta, kinds, sizes)
        ),
        loglik=-0.5 * criterion,
        criterion=criterion,
        n_params=p + len(theta) + 1,
        n_obs=n,
        converged=converged,
        message=message,
        n_evaluations=n_evals,
        singular=bool(singular_at.size),
        fitted=np.empty(0),
        theta_names=names,
    )
