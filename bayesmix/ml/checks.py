"""Checks around an ML/REML fit: what cannot be fitted, and what to warn about.

Before the fit, :func:`check_identifiable` refuses random effects that the
data cannot separate from the residual (lme4's ``check.nobs.vs.nlev`` and
``check.nobs.vs.nRE``) and :func:`warn_badly_scaled` repeats lme4's
``check.scaleX`` advice, for the random-effect columns too. After it,
:func:`check_degenerate` refuses fits whose residual SD collapsed to zero,
:func:`singular_message` says *why* a fit is singular (a zero variance or a
correlation of +-1) and :func:`convergence_message` reports lme4's
gradient/Hessian check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayesmix.errors import DataWarning, FitError, warn
from bayesmix.ml.optimise import GRADIENT_TOLERANCE, OptimumCheck
from bayesmix.spec.covariance import theta_to_factor
from bayesmix.spec.design import Design

#: lme4's ``isSingular`` tolerance on diagonal ``theta`` entries.
SINGULAR_TOLERANCE = 1e-4
# lme4's check.scaleX: a predictor's SD outside [1/1e3, 1e3] or two SDs more
# than 1e3 apart.
_SCALE_RATIO = 1e3
# Residual SD below this times the response's residual scale: the random
# effects reproduce the response exactly (sigma -> 0, likelihood unbounded).
_DEGENERATE_SIGMA = 1e-7
# A relative factor entry above this is checked for an unbounded likelihood (a tenfold
# larger one lower by more than _UNBOUNDED_DROP in -2 logLik units).
_UNBOUNDED_THETA = 1e3
_UNBOUNDED_DROP = 1.0
# A correlation this close to +-1 is reported as +-1.
_UNIT_CORRELATION = 1 - 1e-6


def check_identifiable(design: Design) -> None:
    """Refuse random effects that cannot be told apart from the residual (as lme4).

    A grouping factor needs fewer levels than observations, and each random
    term fewer effects (levels x columns) than observations: otherwise its
    variance and the residual variance are confounded. As in lme4 the count
    is per term: crossed or nested terms may have more effects in total than
    there are rows and still be identified (the crossing separates them);
    a fit that nevertheless interpolates the data is caught afterwards by
    :func:`check_degenerate`.
    """
    n = design.n_obs
    crowded = [b.grouping for b in design.blocks if b.n_levels >= n]
    if crowded:
        raise FitError(
            f"grouping factor(s) {', '.join(crowded)} have as many levels as there are "
            f"observations ({n}), so their variance cannot be separated from the residual "
            "variance; remove that random effect"
        )
    for block in design.blocks:
        q = block.n_levels * block.n_terms
        if q >= n:
            raise FitError(
                f"the term {block.label} has {q} random effects for {n} observations; its "
                "variance components and the residual variance are not identifiable: "
                "simplify the random-effects terms"
            )


def _predictor_sds(design: Design) -> dict[str, float]:
    """SDs of the non-indicator columns of ``X`` and of every ``Z``, by name."""
    columns = [(name, design.X[:, j]) for j, name in enumerate(design.fixed_terms)]
    for block in design.blocks:
        columns += [(f"{t} | {block.grouping}", block.Z[:, j]) for j, t in enumerate(block.terms)]
    sds = {}
    for name, column in columns:
        column = np.asarray(column, dtype=float)
        if np.all((column == 0) | (column == 1)):  # intercepts and indicators: skip
            continue
        sd = float(np.std(column))
        if sd > 0:
            sds.setdefault(name, sd)
    return sds


def warn_badly_scaled(design: Design) -> None:
    """DataWarning naming predictors whose scale is far from the others' or from 1.

    The ML engine fits an orthonormalised ``X`` and rescaled random-effect
    columns (:mod:`bayesmix.ml.working`), so its estimates stay accurate; the
    warning is advice, as lme4's: coefficients per 1e-3 or per 1e3 units are
    hard to read, and lme4 itself loses accuracy on such columns.
    """
    sds = _predictor_sds(design)
    if not sds:
        return
    values = np.array(list(sds.values()))
    outside = [n for n, sd in sds.items() if not 1 / _SCALE_RATIO <= sd <= _SCALE_RATIO]
    spread = values.max() / values.min() > _SCALE_RATIO
    if not outside and not spread:
        return
    shown = sorted(sds, key=lambda n: -abs(np.log(sds[n])))
    listing = ", ".join(f"{n} (SD {sds[n]:.3g})" for n in shown[:4])
    warn(
        f"Some predictor variables are on very different scales: {listing}; consider "
        "rescaling them (e.g. centre and divide by the SD). The ML fit is computed on "
        "internally rescaled columns, so its estimates are accurate, but coefficients and "
        "variances on such scales are hard to read and trouble other software.",
        DataWarning,
    )


def check_degenerate(design: Design, sigma_working: float) -> None:
    """Refuse a fit whose residual SD collapsed: the random effects interpolate ``y``.

    ``sigma_working`` is the residual SD of the working problem, whose response
    has unit RMS after the least-squares fixed-effects fit (see
    :mod:`bayesmix.ml.working`). When the random effects can reproduce every
    observation (e.g. the response is constant within each group) the
    likelihood grows without bound as ``sigma -> 0``: there is no estimate,
    so this is an error rather than a warning.
    """
    if sigma_working < _DEGENERATE_SIGMA:
        terms = ", ".join(b.label for b in design.blocks) or "the fixed effects"
        raise FitError(
            f"the fit is degenerate: {terms} reproduce the response {design.response!r} "
            f"almost exactly (residual SD {sigma_working:.2g} of the response's scale), so the "
            "residual variance is (numerically) zero and the likelihood has no usable maximum; "
            "the response probably does not vary within groups: simplify the random effects"
        )


def check_unbounded(
    design: Design, criterion, theta_w: np.ndarray, value: float, diagonal: np.ndarray
) -> None:
    """Refuse a fit whose criterion still falls as the random effects grow without bound.

    Where the random effects can reproduce ``y`` the criterion decreases by about
    ``n`` per decade of ``theta`` and has no minimum; in double precision it turns
    into noise long before :func:`check_degenerate`'s ``sigma`` threshold, and
    the optimiser may stop anywhere on that slope. A tenfold larger ``theta``
    that is lower by more than :data:`_UNBOUNDED_DROP` shows the slope.
    """
    large = diagonal & (np.abs(theta_w) > _UNBOUNDED_THETA)
    if not large.any():
        return
    try:
        further = criterion(np.where(large, 10.0 * theta_w, theta_w))
    except FitError:  # the factorisation broke down further out: no minimum there either
        further = -np.inf
    if further < value - _UNBOUNDED_DROP:
        terms = ", ".join(b.label for b in design.blocks)
        raise FitError(
            f"the fit is degenerate: {terms} reproduce the response {design.response!r} "
            "almost exactly, so the residual variance tends to zero and the likelihood has "
            "no usable maximum (it keeps rising as the random effects grow); the response "
            "probably does not vary within groups: simplify the random effects"
        )


def singular_message(theta: np.ndarray, design: Design, kinds: Sequence[str]) -> str | None:
    """Why a fit is singular, term by term, or ``None`` when it is not.

    A diagonal entry of a relative factor ``T`` at 0 means that term's
    variance is ~0 when its whole row of ``T`` is ~0; otherwise the term is a
    linear combination of earlier ones, i.e. perfectly correlated with them.
    """
    reasons = []
    start = 0
    for block, kind in zip(design.blocks, kinds):
        k = block.n_terms
        count = k * (k + 1) // 2 if kind == "unstructured" else k
        T = theta_to_factor(theta[start : start + count], kind, k)
        start += count
        cov = T @ T.T
        sd = np.sqrt(np.diag(cov))
        for j in np.flatnonzero(np.abs(np.diag(T)) < SINGULAR_TOLERANCE):
            term = block.terms[j]
            if sd[j] < SINGULAR_TOLERANCE:
                reasons.append(f"the variance of {term} | {block.grouping} is estimated as ~0")
                continue
            earlier = [i for i in range(j) if sd[i] >= SINGULAR_TOLERANCE]
            if not earlier:  # only zero-variance terms before it: reported for those
                continue
            corr = {i: cov[i, j] / (sd[i] * sd[j]) for i in earlier}
            best = max(corr, key=lambda i: abs(corr[i]))
            if abs(corr[best]) >= _UNIT_CORRELATION:
                sign = "+1" if corr[best] > 0 else "-1"
                reasons.append(
                    f"the correlation of ({block.terms[best]}, {term} | {block.grouping}) is "
                    f"estimated as {sign}"
                )
            else:
                names = ", ".join(block.terms[i] for i in earlier)
                reasons.append(
                    f"{term} | {block.grouping} is estimated as an exact linear combination "
                    f"of {names} (a singular correlation matrix)"
                )
    if not reasons:
        return None
    return (
        "boundary (singular) fit: "
        + "; ".join(reasons)
        + ". The fit is usable, but consider simplifying the random-effects structure"
    )


def convergence_message(check: OptimumCheck, names: Sequence[str], method: str) -> str:
    """lme4-style explanation of a failed gradient/Hessian check."""
    parts = []
    if check.negative_eigenvalues:
        parts.append(
            f"the Hessian of the {method} criterion has {check.negative_eigenvalues} negative "
            "eigenvalue(s), so the point found is a saddle, not a minimum"
        )
    free = np.flatnonzero(check.free)
    if check.scaled_gradient.size and check.scaled_gradient.max() > GRADIENT_TOLERANCE:
        worst = free[check.worst]
        parts.append(
            f"the scaled gradient is {check.scaled_gradient.max():.3g} (tolerance "
            f"{GRADIENT_TOLERANCE:g}) for theta {names[worst]}"
        )
    return "; ".join(parts)
