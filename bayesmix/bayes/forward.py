"""Forward (prior predictive) building of bayesmix's PyMC models.

PyMC draws a model forward (``pm.sample_prior_predictive``) from its random
variables only: flat variables cannot be drawn and potentials are ignored.
Two parts of bayesmix's models are written for NUTS in exactly those forms:

* the LKJ prior (:mod:`bayesmix.bayes.lkj`), a flat vector of unconstrained
  partial correlations with the density in a potential;
* the GLMM intercept shear (:mod:`bayesmix.bayes.glmm_model`), whose prior is
  moved onto the reported intercept by a potential.

Inside :func:`forward_sampling` the model builders write the same priors as
random variables PyMC can draw: the canonical partial correlations of an
LKJ(eta) matrix as scaled Beta variables, and the intercept without the shear
(the same prior on the same coefficient, parametrised for drawing, not for NUTS).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["forward_sampling", "is_forward"]

_FORWARD: ContextVar[bool] = ContextVar("bayesmix_forward_sampling", default=False)


@contextmanager
def forward_sampling() -> Iterator[None]:
    """Build models for drawing from their priors (see the module docstring)."""
    token = _FORWARD.set(True)
    try:
        yield
    finally:
        _FORWARD.reset(token)


def is_forward() -> bool:
    """Whether models are being built for forward sampling."""
    return _FORWARD.get()
