"""Which fits each inference tool takes, and what to use instead for the others.

The tools of this package are built on the Gaussian linear mixed model's
profiled criterion. A Bayesian result, a GLMM or a nonlinear fit reaching them
(the methods are inherited by :class:`~bayesmix.ml.glmm_results.GLMMResult` and
the nonlinear result) gets a :class:`~bayesmix.errors.ArgumentError` that says
what answers the same question for that fit, never a number computed on the
wrong likelihood.
"""

from __future__ import annotations

from typing import Any

from bayesmix.errors import ArgumentError

__all__ = ["require_linear_fit"]


def require_linear_fit(result: Any, what: str, nonlinear_ok: bool = False) -> None:
    """Raise unless ``result`` is an ML/REML fit of a Gaussian linear mixed model (or gls)."""
    if not hasattr(result, "estimates") or not hasattr(result.estimates, "theta"):
        raise ArgumentError(
            f"{what} takes an ML/REML fit. A Bayesian fit has no degrees of freedom or "
            "profiles: its uncertainty is the posterior, read its intervals from "
            "post.summary() and post.fixef()."
        )
    if getattr(result, "family", None) is not None:
        raise ArgumentError(
            f"{what} is not available for GLMMs yet: their fixed effects have z tests in "
            "fit.summary(), nested fits compare by likelihood ratio with bmx.anova, and the "
            "Bayesian fit (model.sample()) gives intervals for everything."
        )
    if getattr(result, "nonlinear_design", None) is not None and not nonlinear_ok:
        raise ArgumentError(
            f"{what} is not available for nonlinear mixed models yet: use fit.intervals() "
            "(nlme's approximate intervals) and bmx.anova for nested fits."
        )
