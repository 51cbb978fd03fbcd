"""Which criterion an ML/REML fit minimises, and whether with its gradient.

Three kernels give lme4's profiled criterion, equal to rounding
(``tests/test_ml_gradient.py``, ``tests/test_residual_spec.py``):

* :class:`~bayesmix.ml.dense_kernel.DenseCriterion` up to
  :data:`~bayesmix.ml.dense_kernel.DENSE_MAX_EFFECTS` random and fixed effects in
  all (one compiled dense factorisation, with the exact gradient);
* :class:`~bayesmix.ml.structured_kernel.OneBlockCriterion` for one block with
  fewer ``theta`` or more effects (compiled, level by level, no gradient);
* :class:`~bayesmix.ml.deviance.ProfiledDeviance`, the general blocked kernel
  (with its gradient).

The estimates at the optimum come from the dense factor
(:class:`~bayesmix.ml.dense_solution.DenseKernel`) for a small model of any
number of blocks, else from the general kernel.

The gradient search pays on the blocked kernel, whose evaluations cost
milliseconds, and on the dense one from :data:`GRADIENT_MIN_THETA` parameters
on (the Arabidopsis slope model's 6 theta: 253 evaluations of 43 microseconds
against 54 of 127). Below that, one block is searched by BOBYQA on the
level-by-level criterion, whose evaluations are so cheap that BOBYQA's extra
ones cost less than gradients (sleepstudy: 60 evaluations of 5 microseconds
against 38 of 25). One block with more ``theta`` is searched with the gradient
although BOBYQA's evaluations would cost about as much in all (Oxboys'
quadratic ``(age + I(age^2) | Subject)``: 363 of 8 microseconds against 55 of
200): in ten dimensions BOBYQA stopped short, as in the LME step of Indometh's
nonlinear fit, 1.9 log-likelihood units below nlme's optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bayesmix.ml.deviance import ProfiledDeviance
from bayesmix.spec.covariance import n_theta
from bayesmix.spec.design import Design

__all__ = ["GRADIENT_MIN_THETA", "choose_criterion"]

GRADIENT_MIN_THETA = 4

Criterion = Callable[[np.ndarray], float]
CriterionAndGradient = Callable[[np.ndarray], tuple[float, np.ndarray]]


def _layout(design: Design) -> tuple[list[tuple], int, int]:
    """The design's blocks as kernel tuples, the order of the dense system (random effects
    plus fixed effects: its compiled factorisation grows as the cube) and the number of theta."""
    blocks = [(b.codes, b.Z, b.n_levels, b.covariance) for b in design.blocks]
    q = sum(b.n_levels * b.Z.shape[1] for b in design.blocks)
    q = q + design.n_fixed if q else 0
    k = sum(n_theta(b.covariance, b.Z.shape[1]) for b in design.blocks)
    return blocks, q, k


def estimates_kernel(design: Design) -> Any:
    """The kernel that gives the estimates: the dense one for a small design.

    :class:`~bayesmix.ml.dense_solution.DenseKernel` up to
    :data:`~bayesmix.ml.dense_kernel.DENSE_MAX_EFFECTS` random and fixed effects, else
    :class:`~bayesmix.ml.deviance.ProfiledDeviance`.
    """
    blocks, q, k = _layout(design)
    # numba is imported on the first fit, not with this module
    from bayesmix.ml.dense_kernel import DENSE_MAX_EFFECTS

    if 0 < q <= DENSE_MAX_EFFECTS:
        from bayesmix.ml.dense_solution import DenseKernel

        return DenseKernel(design.y, design.X, blocks, gradient=k >= GRADIENT_MIN_THETA)
    return ProfiledDeviance(design.y, design.X, blocks)


def _search_criterion(design: Design, kernel: Any) -> Any:
    """The criterion the search evaluates (``kernel`` unless a quicker one exists;
    ``kernel=None``: built here if needed)."""
    from bayesmix.ml.dense_kernel import DENSE_MAX_EFFECTS, DenseCriterion

    blocks, q, k = _layout(design)
    if len(blocks) == 1 and (k < GRADIENT_MIN_THETA or q > DENSE_MAX_EFFECTS):
        from bayesmix.ml.structured_kernel import OneBlockCriterion

        b = design.blocks[0]
        return OneBlockCriterion(design.y, design.X, b.codes, b.Z, b.n_levels, b.covariance)
    if isinstance(kernel, DenseCriterion):
        return kernel
    if not 0 < q <= DENSE_MAX_EFFECTS:
        return kernel if kernel is not None else ProfiledDeviance(design.y, design.X, blocks)
    return DenseCriterion(design.y, design.X, blocks, gradient=k >= GRADIENT_MIN_THETA)


def choose_criterion(
    design: Design, kernel: Any, reml: bool
) -> tuple[Criterion, CriterionAndGradient | None]:
    """The criterion of ``design`` (the working design of ``kernel``, which may be
    ``None``) and its gradient.

    The gradient is ``None`` where BOBYQA should search without it: the general
    kernel always has one; a compiled criterion when it has enough ``theta``.
    """
    criterion = _search_criterion(design, kernel)
    with_gradient = getattr(criterion, "with_gradient", isinstance(criterion, ProfiledDeviance))

    def value(theta: np.ndarray) -> float:
        return criterion(theta, reml=reml)

    def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        return criterion.value_and_gradient(theta, reml=reml)

    return value, (value_and_gradient if with_gradient else None)
