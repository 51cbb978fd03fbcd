"""A Bayesian result seen by the residual diagnostics (``acf``, ``variogram``) as a fit.

nlme's ``ACF`` and ``Variogram`` take one residual vector. For a posterior
that is the residual at the posterior mean (``result.residuals()``: ``y`` less
the posterior mean of the fitted values; Pearson residuals divide by the
posterior mean of the residual SD, or the family's SD for a GLMM). Without a
correlation structure, nlme's normalized residuals are the Pearson ones. With
one, they depend on the structure's parameters at a single point, which a
posterior does not have: such results are refused, naming the ML fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError

__all__ = ["PosteriorResiduals"]


class PosteriorResiduals:
    """``design``, ``nobs``, ``sigma``, ``residual_structure`` and ``residuals`` of a posterior."""

    def __init__(self, result: Any, function: str) -> None:
        residual = getattr(result, "residual", None)
        if residual is not None and residual.correlation is not None:
            raise ArgumentError(
                f"{function}() of a Bayesian fit with a correlation structure: its normalized "
                "residuals need the structure's parameters at one point; use the ML/REML fit "
                "(model.fit()) for this diagnostic."
            )
        self.result = result
        self.design = result.design
        self.nobs = result.design.n_obs
        self.residual_structure = None  # no fitted structure to draw or whiten with
        posterior = result.idata["posterior"]
        self.sigma = float(np.mean(posterior["sigma"])) if "sigma" in posterior else 1.0

    def residuals(self, kind: str) -> np.ndarray:
        """Residuals at the posterior mean; ``"normalized"`` is ``"pearson"`` here."""
        return np.asarray(
            self.result.residuals("pearson" if kind == "normalized" else kind), dtype=float
        )
