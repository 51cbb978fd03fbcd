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
from scipy import special, stats

from bayesmix.errors import ArgumentError
from bayesmix.ml.random_tables import varcorr_table
from bayesmix.ml.results import MLResult
from bayesmix.ml.rformat import render_table
from bayesmix.ml.summary import MLSummary
from bayesmix.spec.families import Family
from bayesmix.spec.zero_inflation import zi_new_data

__all__ = ["GLMMResult", "GLMMSummary"]


@dataclass(frozen=True, repr=False)
class GLMMResult(MLResult):
    """A fitted generalized linear mixed model (lme4's ``glmerMod``).

    Attributes
    ----------
    family : Family
        The response distribution and link.
    nagq : int
        0 (lme4's fast fit), 1 (Laplace) or the quadrature points.
    dispersion : float or None
        The negative binomial's ``theta`` (lme4's ``getME(fit, "glmer.nb.theta")``,
        glmmTMB's ``sigma``) or the Gamma ``shape`` (glmmTMB's ``sigma`` is
        ``1 / sqrt(shape)``); ``None`` for binomial and Poisson fits.
    dispersion_se : float or None
        Standard error of ``log(dispersion)`` (glmmTMB's ``betadisp``), when the
        dispersion is part of the Hessian (``information="observed"``).
    zi_beta, zi_vcov : ndarray or None
        Zero-inflation coefficients (logit of the structural-zero probability)
        and their covariance; see :meth:`zi_fixef`.
    information : str
        The Laplace convention, ``"fisher"`` (lme4) or ``"observed"`` (glmmTMB).
    """

    family: Family | None = None
    nagq: int = 1
    dispersion: float | None = None
    dispersion_se: float | None = None
    zi_beta: np.ndarray | None = None
    zi_vcov: np.ndarray | None = None
    information: str = "fisher"

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

    def update(
        self, formula: str | None = None, nagq: int | None = None, *, random: str | None = None
    ) -> GLMMResult:
        """Refit with a changed formula, random part and/or ``nagq`` (R's ``update``),
        under this fit's Laplace convention.

        ``formula`` takes ``". ~ . + x"`` edits; ``random`` replaces the whole random part.
        """
        if self.model is None:
            raise ArgumentError(
                "update() needs the unfitted model, but this result was built without one; "
                "fit the new model directly with bayesmix.glmm(formula, data, family).fit()."
            )
        changed = formula is not None or random is not None
        model = self.model.update(formula, random=random) if changed else self.model
        information = None if model.zi_X is not None else self.information
        return model.fit(nagq=self.nagq if nagq is None else nagq, information=information)

    def linear_predictor(self) -> np.ndarray:
        """``eta = offset + X beta + Z b`` at the conditional modes (of the count mean,
        for zero-inflated models)."""
        eta = self.design.offset_or_zero + self.design.X @ np.asarray(self.estimates.beta)
        for block, b in zip(self.design.blocks, self.estimates.b):
            eta = eta + np.sum(block.Z * np.asarray(b)[block.codes], axis=1)
        return eta

    def zi_fixef(self) -> pd.DataFrame:
        """Zero-inflation coefficients (logit of the structural-zero probability):
        ``estimate``, ``std_error``, ``z_value`` (glmmTMB's ``fixef(fit)$zi``).

        Raises
        ------
        ArgumentError
            The model has no zero inflation.
        """
        if self.zi_beta is None:
            raise ArgumentError("this model has no zero inflation (ziformula=).")
        est = np.asarray(self.zi_beta, dtype=float)
        se = np.sqrt(np.diag(np.asarray(self.zi_vcov, dtype=float)))
        index = pd.Index(list(self.model.zi_names), name="term")
        return pd.DataFrame({"estimate": est, "std_error": se, "z_value": est / se}, index=index)

    def zero_probability(self) -> np.ndarray | None:
        """Each row's structural-zero probability ``pi`` (``None`` without zero inflation)."""
        if self.zi_beta is None:
            return None
        return special.expit(np.asarray(self.model.zi_X) @ np.asarray(self.zi_beta))

    def fitted(self) -> np.ndarray:
        """The conditional mean of the response: ``mu``, or ``(1 - pi) mu`` with zero
        inflation (glmmTMB's ``fitted``); binomial fits give the probability."""
        mu = np.array(self.estimates.fitted, dtype=float)
        pi = self.zero_probability()
        return mu if pi is None else (1.0 - pi) * mu

    def residuals(self, kind: str = "deviance") -> np.ndarray:
        """GLM residuals at the conditional modes.

        Parameters
        ----------
        kind : {"deviance", "pearson", "response"}
            ``deviance``: ``sign(y - mu) sqrt(d_i)`` (glmer's default; not defined
            for zero-inflated models); ``pearson``: ``(y - E y) / SD(y)`` (with
            the binomial trials, the dispersion and the zero inflation);
            ``response``: ``y - E y``.
        """
        y = np.asarray(self.design.y, dtype=float)
        mu = np.asarray(self.estimates.fitted, dtype=float)
        weights = self.design.weights
        pi = self.zero_probability()
        if kind == "response":
            return y - self.fitted()
        if kind == "pearson":
            w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
            variance = self.family.response_variance(mu, self.dispersion)
            if pi is not None:  # Var = (1 - pi) (V(mu) + pi mu^2)
                variance = (1 - pi) * (variance + pi * mu**2)
            return (y - self.fitted()) * np.sqrt(w / variance)
        if kind == "deviance":
            if pi is not None:
                raise ArgumentError(
                    "deviance residuals are not defined for zero-inflated models; use "
                    "residuals('pearson') or residuals('response')."
                )
            return self.family.deviance_residuals(y, mu, weights, self.dispersion)
        raise ArgumentError(f"kind must be 'deviance', 'pearson' or 'response', not {kind!r}.")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        include_random: bool = True,
        type: Literal["response", "link", "conditional", "zprob"] = "response",
    ) -> np.ndarray:
        """Predictions: the mean response (``type="response"``), the linear predictor
        (``"link"``), the count mean without zero inflation (``"conditional"``) or the
        structural-zero probability (``"zprob"``), as glmmTMB's ``predict``.

        ``newdata`` and ``include_random`` are as for linear fits; levels not
        seen in fitting get a zero random effect, with a ``DataWarning``.
        """
        if type not in ("response", "link", "conditional", "zprob"):
            raise ArgumentError(
                f"type must be 'response', 'link', 'conditional' or 'zprob', not {type!r}."
            )
        if newdata is None and include_random:
            eta = self.linear_predictor()
        else:
            eta = MLResult.predict(self, newdata, include_random)
        if type == "link":
            return eta
        mu = self.family.link.inverse(eta)
        if self.zi_beta is None:
            if type == "zprob":
                return np.zeros_like(mu)
            return mu
        zi_X = self.model.zi_X if newdata is None else zi_new_data(self.model.zi_design, newdata)
        pi = special.expit(zi_X @ np.asarray(self.zi_beta))
        return {"zprob": pi, "conditional": mu, "response": (1 - pi) * mu}[type]

    def summary(self, ddf: str | None = None) -> GLMMSummary:
        """lme4's glmer summary (z tests); ``ddf`` is refused: a GLMM has no t tests."""
        if ddf is not None:
            raise ArgumentError(
                "ddf= (Satterthwaite/Kenward-Roger) is for linear mixed models; a GLMM's "
                "fixed effects have z tests in fit.summary(), and nested fits compare by "
                "likelihood ratio with bmx.anova."
            )
        return GLMMSummary(self)


def _family_title(result: GLMMResult) -> str:
    if result.family.name == "negbinomial":
        title = f"Negative Binomial({result.dispersion:.4g})"
    else:
        title = {"gamma": "Gamma"}.get(result.family.name, result.family.name)
    if result.zi_beta is not None:
        title = f"zero-inflated {title}"
    return title


class GLMMSummary(MLSummary):
    """glmer's summary: family, AIC/BIC/logLik/deviance, z values and Wald p-values."""

    fixed_header = ["", "Estimate", "Std. Error", "z value", "Pr(>|z|)"]

    def _header(self) -> list[str]:
        r = self.result
        if r.nagq == 1:
            method = "Laplace Approximation" + (
                ", observed information as glmmTMB" if r.information == "observed" else ""
            )
        else:
            method = f"Adaptive Gauss-Hermite Quadrature, nAGQ = {r.nagq}"
        cells = [f"{v:.1f}" for v in (r.aic, r.bic, r.loglik, r.deviance)] + [str(r.df_resid)]
        return [
            f"Generalized linear mixed model fit by maximum likelihood ({method})",
            f" Family: {_family_title(r)}  ( {r.family.link.name} )",
            f"Formula: {r.design.formula}",
            "",
            render_table(["AIC", "BIC", "logLik", "deviance", "df.resid"], [cells], "rrrrr"),
        ]

    def __str__(self) -> str:
        r = self.result
        lines = [super().__str__()]
        if r.dispersion is not None:
            name = "theta (NB2 size)" if r.family.name == "negbinomial" else "shape"
            se = "" if r.dispersion_se is None else f" (SE of log: {r.dispersion_se:.4g})"
            lines += ["", f"Dispersion parameter {name}: {r.dispersion:.4g}{se}"]
        if r.zi_beta is not None:
            zi = r.zi_fixef()
            p = 2 * stats.norm.sf(np.abs(zi["z_value"].to_numpy()))
            rows = [
                [name, f"{e:.5f}", f"{s_:.5f}", f"{z:.3f}", _p_text(v)]
                for name, e, s_, z, v in zip(zi.index, zi.estimate, zi.std_error, zi.z_value, p)
            ]
            lines += ["", "Zero-inflation model (logit of P(structural zero)):"]
            lines.append(render_table(self.fixed_header, rows, "lrrrr"))
        return "\n".join(lines)

    __repr__ = __str__

    def _residual_lines(self) -> list[str]:
        from bayesmix.ml.rformat import format_column, zapsmall

        q = np.quantile(self.result.residuals("pearson"), [0, 0.25, 0.5, 0.75, 1.0])
        cells = format_column(zapsmall(q, digits=5), digits=4)
        return [
            "Scaled residuals:",
            render_table(["Min", "1Q", "Median", "3Q", "Max"], [cells], "rrrrr"),
        ]

    def fixed_table(self) -> list[list[str]]:
        from bayesmix.ml.rformat import decimals_needed, format_fixed

        fe = self.result.fixef()
        est, se, z = (fe[c].to_numpy() for c in ("estimate", "std_error", "z_value"))
        p = 2 * stats.norm.sf(np.abs(z))
        decimals = max([decimals_needed(v, 4) for v in se] + [1])
        cells = zip(
            format_fixed(est, decimals),
            format_fixed(se, decimals),
            format_fixed(z, 3),
            [_p_text(v) for v in p],
        )
        return [[name, *row] for name, row in zip(fe.index, cells)]


def _p_text(p: float) -> str:
    return f"{p:.4g}" if p >= 2e-16 else "< 2e-16"
