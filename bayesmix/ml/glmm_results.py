"""Result of a GLMM's ML fit: :class:`GLMMResult`, with glmer's summary layout.

The fixed effects, variance components, conditional modes and information
criteria are read as for linear fits (:class:`~bayesmix.ml.results.MLResult`);
what differs is the scale: fitted values and predictions are on the response
scale by default (``type="link"`` gives the linear predictor), and residuals
are GLM residuals (response, Pearson, deviance). The log-likelihood is the
full one (with the binomial coefficient, the log-factorials...), as lme4
reports for Laplace fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError
from bayesmix.ml.random_tables import varcorr_table
from bayesmix.ml.results import MLResult
from bayesmix.ml.rformat import render_table
from bayesmix.ml.summary import MLSummary
from bayesmix.spec.families import Family

__all__ = ["GLMMResult", "GLMMSummary"]


@dataclass(frozen=True, repr=False)
class GLMMResult(MLResult):
    """A fitted generalized linear mixed model (lme4's ``glmerMod``).

    Attributes
    ----------
    family : Family
        The response distribution and link.
    nagq : int
        0 (lme4's fast fit) or 1 (Laplace).
    dispersion : float or None
        The negative binomial's ``theta`` (lme4's ``getME(fit, "glmer.nb.theta")``,
        glmmTMB's ``sigma``); ``None`` for binomial and Poisson fits.
    """

    family: Family | None = None
    nagq: int = 1
    dispersion: float | None = None

    @property
    def deviance(self) -> float:
        """``-2 logLik`` (glmer's summary column; lme4's ``deviance()`` is the sum
        of squared deviance residuals, :meth:`residuals` ``("deviance")``)."""
        return -2.0 * self.loglik

    def varcorr(self) -> pd.DataFrame:
        """Variance components (no residual row: the family has no dispersion parameter)."""
        return varcorr_table(self.design.blocks, self.estimates.covariances, None)

    def __repr__(self) -> str:
        return (
            f"<GLMMResult {self.family.name} ({self.family.link.name}): {self.formula}; "
            f"n={self.nobs}, logLik={self.loglik:.4f}, df={self.df}>"
        )

    def fixef(self, adjust_sigma: bool | None = None) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``std_error`` and the Wald ``z_value``."""
        if adjust_sigma:
            raise ArgumentError(
                "adjust_sigma scales the SEs of Gaussian ML fits (nlme's convention); a GLMM "
                "has no residual variance to adjust."
            )
        table = super().fixef(adjust_sigma=False)
        return table.rename(columns={"t_value": "z_value"})

    def update(self, *args, **kwargs):
        raise ArgumentError(
            "update() is not available for GLMM fits yet; build the new model with "
            "bayesmix.glmm(...) and fit it."
        )

    def linear_predictor(self) -> np.ndarray:
        """``eta = offset + X beta + Z b`` at the conditional modes."""
        eta = self.design.offset_or_zero + self.design.X @ np.asarray(self.estimates.beta)
        for block, b in zip(self.design.blocks, self.estimates.b):
            eta = eta + np.sum(block.Z * np.asarray(b)[block.codes], axis=1)
        return eta

    def residuals(self, kind: str = "deviance") -> np.ndarray:
        """GLM residuals at the conditional modes.

        Parameters
        ----------
        kind : {"deviance", "pearson", "response"}
            ``deviance``: ``sign(y - mu) sqrt(d_i)`` (glmer's default);
            ``pearson``: ``(y - mu) sqrt(n / V(mu))``; ``response``: ``y - mu``.
        """
        y = np.asarray(self.design.y, dtype=float)
        mu = self.fitted()
        weights = self.design.weights
        if kind == "response":
            return y - mu
        if kind == "pearson":
            w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
            return (y - mu) * np.sqrt(w / self.family.variance(mu, self.dispersion))
        if kind == "deviance":
            return self.family.deviance_residuals(y, mu, weights, self.dispersion)
        raise ArgumentError(f"kind must be 'deviance', 'pearson' or 'response', not {kind!r}.")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        include_random: bool = True,
        type: Literal["response", "link"] = "response",
    ) -> np.ndarray:
        """Predictions on the response scale (``type="link"``: the linear predictor).

        ``newdata`` and ``include_random`` are as for linear fits; levels not
        seen in fitting get a zero random effect, with a ``DataWarning``.
        """
        if type not in ("response", "link"):
            raise ArgumentError(f"type must be 'response' or 'link', not {type!r}.")
        if newdata is None and include_random:
            eta = self.linear_predictor()
        else:
            eta = MLResult.predict(self, newdata, include_random)
        return eta if type == "link" else self.family.link.inverse(eta)

    def summary(self) -> GLMMSummary:
        return GLMMSummary(self)


def _family_title(result: GLMMResult) -> str:
    if result.family.name == "negbinomial":
        return f"Negative Binomial({result.dispersion:.4g})"
    return result.family.name


class GLMMSummary(MLSummary):
    """glmer's summary: family, AIC/BIC/logLik/deviance, z values and Wald p-values."""

    fixed_header = ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)"]

    def _header(self) -> list[str]:
        r = self.result
        method = (
            "Laplace Approximation"
            if r.nagq == 1
            else "Adaptive Gauss-Hermite Quadrature, nAGQ = 0"
        )
        cells = [f"{v:.1f}" for v in (r.aic, r.bic, r.loglik, r.deviance)] + [str(r.df_resid)]
        return [
            f"Generalized linear mixed model fit by maximum likelihood ({method})",
            f" Family: {_family_title(r)}  ( {r.family.link.name} )",
            f"Formula: {r.design.formula}",
            "",
            render_table(["AIC", "BIC", "logLik", "deviance", "df.resid"], [cells], "rrrrr"),
        ]

    def _residual_lines(self) -> list[str]:
        from bayesmix.ml.rformat import format_column, zapsmall

        q = np.quantile(self.result.residuals("pearson"), [0, 0.25, 0.5, 0.75, 1.0])
        cells = format_column(zapsmall(q, digits=5), digits=4)
        return [
            "Scaled residuals:",
            render_table(["Min", "1Q", "Median", "3Q", "Max"], [cells], "rrrrr"),
        ]

    def fixed_table(self) -> list[list[str]]:
        from scipy import stats

        from bayesmix.ml.rformat import decimals_needed, format_fixed

        fe = self.result.fixef()
        est, se, z = (fe[c].to_numpy() for c in ("estimate", "std_error", "z_value"))
        p = 2 * stats.norm.sf(np.abs(z))
        decimals = max([decimals_needed(v, 4) for v in se] + [1])
        cells = zip(
            format_fixed(est, decimals),
            format_fixed(se, decimals),
            format_fixed(z, 3),
            [f"{v:.4g}" if v >= 2e-16 else "< 2e-16" for v in p],
        )
        return [[name, *row] for name, row in zip(fe.index, cells)]
