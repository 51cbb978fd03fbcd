"""Result of a maximum-likelihood (ML) or REML fit: :class:`MLResult`.

The result is an immutable view of a :class:`~bayesmix.spec.design.Design` and the
numeric estimates produced by ``bayesmix.ml.fit``; every accessor returns a
fresh pandas object in the layout shared with the Bayesian results (see
``fixef``, ``ranef``, ``varcorr``). Nothing here runs an optimiser.

Two reporting conventions exist and both are available on every result
(:attr:`MLResult.conventions` says which the plain names follow):

* lme4's (``lmm``): ``BIC = -2 logLik + df log(n)``, ML and REML fits alike;
  fixed-effect SEs are ``sqrt(diag(vcov))``.
* nlme's (``gls`` and ``nlmm``): a REML fit's BIC uses ``log(n - p)``; an ML
  fit's fixed-effect SEs are scaled by ``sqrt(n / (n - p))`` (nlme's
  ``adjustSigma``), while ``vcov()`` stays unscaled as nlme's ``vcov`` is.

``bic_lme4``, ``bic_nlme`` and ``fixef(adjust_sigma=...)`` give either one.

Notation
--------
n : observations, p : fixed-effect columns, k : columns of one random block,
beta : fixed effects, b : conditional modes of the random effects,
sigma : residual standard deviation, theta : relative covariance parameters.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.ml.inference_methods import InferenceMethods
from bayesmix.ml.random_tables import ranef_tables, varcorr_table
from bayesmix.spec.design import Design

if TYPE_CHECKING:
    from bayesmix.ml.summary import MLSummary

ResidualKind = Literal["response", "pearson", "normalized"]


# --- the result object ------------------------------------------------------


@dataclass(frozen=True)
class MLResult(InferenceMethods):
    """A fitted linear mixed model (ML or REML), in lme4's vocabulary.

    Attributes
    ----------
    design : Design
        The model's numeric design.
    estimates : MLEstimates
        Numbers from ``bayesmix.ml.fit.fit_estimates``.
    model : object, optional
        The unfitted model, used by :meth:`update`.

    Notes
    -----
    ``aic`` is ``-2 logLik + 2 df`` (the REML log-likelihood for REML fits).
    ``bic`` and the SEs of ``fixef`` follow :attr:`conventions`: lme4's for
    :func:`~bayesmix.lmm`, nlme's for :func:`~bayesmix.gls` (see the module
    docstring); :attr:`bic_lme4`, :attr:`bic_nlme` and
    ``fixef(adjust_sigma=...)`` give the other.

    :meth:`save` writes one file that :func:`bayesmix.load` reads without
    running code from it. Results also pickle (for multiprocessing, joblib,
    ``copy.deepcopy``), but unpickling runs code: unpickle trusted files only.
    """

    design: Design
    estimates: Any
    model: Any = None

    # -- scalar statistics
    @property
    def method(self) -> str:
        """``"ML"`` or ``"REML"``."""
        return str(self.estimates.method)

    @property
    def formula(self) -> str:
        return self.design.formula

    @property
    def loglik(self) -> float:
        """Log-likelihood (restricted log-likelihood for REML fits)."""
        return float(self.estimates.loglik)

    @property
    def df(self) -> int:
        """Number of estimated parameters (R's ``attr(logLik, "df")``)."""
        return int(self.estimates.n_params)

    @property
    def nobs(self) -> int:
        return int(self.estimates.n_obs)

    @property
    def df_resid(self) -> int:
        """lme4's ``df.resid``: observations minus parameters."""
        return self.nobs - self.df

    @property
    def aic(self) -> float:
        """Akaike information criterion, ``-2 logLik + 2 df``."""
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def conventions(self) -> str:
        """``"lme4"`` or ``"nlme"``: whose BIC and SEs :attr:`bic` and :meth:`fixef` report."""
        return str(getattr(self.model, "conventions", "lme4"))

    @property
    def bic(self) -> float:
        """BIC in this result's :attr:`conventions` (:attr:`bic_lme4` or :attr:`bic_nlme`)."""
        return self.bic_nlme if self.conventions == "nlme" else self.bic_lme4

    @property
    def bic_lme4(self) -> float:
        """lme4's BIC, ``-2 logLik + df log(n)`` (ML and REML fits alike)."""
        return -2.0 * self.loglik + self.df * math.log(self.nobs)

    @property
    def bic_nlme(self) -> float:
        """nlme's BIC: ``log(n - p)`` replaces ``log(n)`` for REML fits."""
        n = self.nobs - (self.design.n_fixed if self.method == "REML" else 0)
        return -2.0 * self.loglik + self.df * math.log(n)

    @property
    def deviance(self) -> float:
        """``-2 logLik`` of an ML fit.

        Raises
        ------
        ValueError
            For REML fits: lme4's ``deviance()`` of a REML fit is not the REML
            criterion, so rather than guess, use :attr:`reml_criterion`.
        """
        if self.method != "ML":
            raise ArgumentError(
                "deviance is only defined here for ML fits; this is a REML fit. Use "
                "`reml_criterion` for the REML criterion, or refit with method='ML'."
            )
        return -2.0 * self.loglik

    @property
    def reml_criterion(self) -> float:
        """REML criterion at convergence (``-2`` times the REML log-likelihood)."""
        if self.method != "REML":
            raise ArgumentError(
                "reml_criterion is only available for REML fits; this is an ML fit "
                "(use `deviance`, or refit with method='REML')."
            )
        return float(self.estimates.criterion)

    @property
    def theta(self) -> np.ndarray:
        return np.asarray(self.estimates.theta, dtype=float)

    @property
    def sigma(self) -> float:
        return float(self.estimates.sigma)

    @property
    def converged(self) -> bool:
        return bool(self.estimates.converged)

    @property
    def singular(self) -> bool:
        return bool(self.estimates.singular)

    # -- residual variance function and correlation structure
    @property
    def residual_structure(self) -> Any:
        """The model's bound variance function and correlation structure, or ``None``."""
        return getattr(self.model, "residual", None)

    def residual_parameters(self) -> pd.DataFrame:
        """Estimated parameters of the variance function and correlation structure.

        Columns ``structure`` (nlme's syntax), ``parameter`` (nlme's names:
        the SD ratio of each non-reference level for varIdent, ``power``,
        ``Phi``, ``range``...) and ``estimate`` on nlme's reporting scale.
        Empty for a model with independent errors of equal variance.
        """
        structure = self.residual_structure
        if structure is None:
            return pd.DataFrame(columns=["structure", "parameter", "estimate"])
        return structure.parameter_table(np.asarray(self.estimates.residual_u, dtype=float))

    # -- fixed effects
    def fixef(self, adjust_sigma: bool | None = None) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``std_error`` and ``t_value`` per coefficient.

        Parameters
        ----------
        adjust_sigma : bool, optional
            Scale the SEs of an ML fit by ``sqrt(n / (n - p))``, as nlme's
            ``summary`` does (``adjustSigma = TRUE``); REML fits are never
            scaled. Default: ``True`` under nlme's :attr:`conventions`, ``False``
            under lme4's. (:meth:`vcov` follows the conventions only.)
        """
        if adjust_sigma is None:
            adjust_sigma = self.conventions == "nlme"
        if not isinstance(adjust_sigma, bool | np.bool_):
            raise ArgumentError(f"adjust_sigma must be True or False, got {adjust_sigma!r}.")
        beta = np.asarray(self.estimates.beta, dtype=float)
        se = np.sqrt(np.diag(np.asarray(self.estimates.vcov_beta, dtype=float)))
        if adjust_sigma and self.method == "ML" and self.nobs > len(beta):
            se = se * math.sqrt(self.nobs / (self.nobs - len(beta)))
        index = pd.Index(list(self.design.fixed_terms), name="term")
        return pd.DataFrame({"estimate": beta, "std_error": se, "t_value": beta / se}, index=index)

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects, named.

        lme4's and nlme's ``lme``/``nlme`` ``vcov``; under nlme's conventions a
        model without random effects (``gls``, ``nls``) fitted by ML has its
        ``vcov`` scaled by ``n / (n - p)``, as nlme's ``gls`` and R's ``nls``
        compute it (with ``RSS / (n - p)`` for ``sigma^2``).
        """
        names = list(self.design.fixed_terms)
        vcov = np.array(self.estimates.vcov_beta, dtype=float)
        n, p = self.nobs, len(names)
        if self.conventions == "nlme" and not self.design.blocks and self.method == "ML" and n > p:
            vcov = vcov * (n / (n - p))
        return pd.DataFrame(vcov, index=names, columns=names)

    # -- variance components and random effects (tables built in bayesmix.ml.random_tables)
    def varcorr(self) -> pd.DataFrame:
        """Variance components in lme4's ``as.data.frame(VarCorr(fit))`` layout.

        Columns ``grp``, ``var1``, ``var2``, ``vcov``, ``sdcor``. For each
        covariance matrix, SD rows (``var2`` None; ``vcov`` the variance) come
        first, then correlation rows (``vcov`` the covariance, ``sdcor`` the
        correlation) in lme4's order; the ``Residual`` row is last. As in lme4,
        a repeated grouping factor (``(1|g) + (0+x|g)``) or a ``||`` bar gives
        groups ``g``, ``g.1``, ...
        """
        return varcorr_table(self.design.blocks, self.estimates.covariances, self.sigma)

    def ranef(self, wide: bool = False) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects, one DataFrame per grouping factor.

        Parameters
        ----------
        wide : bool
            ``False`` (default): rows indexed by (level, term), columns
            ``estimate`` (conditional mode) and ``std_error`` (conditional SD,
            lme4's ``condVar``). ``True``: levels x terms of the modes, like
            lme4's ``ranef(fit)$g``.

        Blocks sharing a grouping factor are merged under one key.
        """
        return ranef_tables(self.design.blocks, self.estimates.b, self.estimates.b_cond_var, wide)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients, fixed plus random effects, like lme4's ``coef``.

        One DataFrame per grouping factor (levels x coefficients). Random terms
        without a matching fixed effect are prepended with a fixed value of 0.
        """
        fixed = pd.Series(
            np.asarray(self.estimates.beta, dtype=float), index=list(self.design.fixed_terms)
        )
        modes = self.ranef(wide=True)
        extra = [t for m in modes.values() for t in m.columns if t not in fixed.index]
        fixed = pd.concat([pd.Series(0.0, index=list(dict.fromkeys(extra))), fixed])
        out = {}
        for grouping, frame in modes.items():
            values = pd.DataFrame(
                np.tile(fixed.to_numpy(), (len(frame), 1)), index=frame.index, columns=fixed.index
            )
            out[grouping] = values.add(frame.fillna(0.0), fill_value=0.0)[list(fixed.index)]
        return out

    # -- fitted values, residuals, prediction
    def fitted(self) -> np.ndarray:
        """Fitted values ``offset + X beta + Z b`` (conditional on the random effects).

        On the response's scale; the offset, when the model has one, is included.
        """
        return np.array(self.estimates.fitted, dtype=float)

    def residuals(self, kind: ResidualKind = "response") -> np.ndarray:
        """Residuals at the innermost level (conditional on the random effects).

        Parameters
        ----------
        kind : {"response", "pearson", "normalized"}
            ``response``: ``y - fitted``. ``pearson``: response residuals divided
            by their SD, ``sqrt(w) (y - fitted) / sigma`` with prior weights
            ``w`` (lme4's; ``w = 1`` without weights); with a variance function,
            ``(y - fitted) / (sigma g)`` (nlme's). ``normalized``: nlme's
            normalised residuals, ``L^-1 (y - fitted) / sigma`` with ``L`` the
            Cholesky factor of the fitted residual covariance ``Lambda`` (variance
            function and within-group correlation): independent with unit
            variance if the model holds. Without a correlation structure they
            equal the Pearson residuals.
        """
        response = np.asarray(self.design.y, dtype=float) - self.fitted()
        if kind == "response":
            return response
        structure = self.residual_structure
        if structure is not None and kind in ("pearson", "normalized"):
            weights = getattr(self.design, "weights", None)
            if weights is not None:  # prior weights first, as the fit whitens
                response = np.sqrt(weights) * response
            u = np.asarray(self.estimates.residual_u, dtype=float)
            fitted = self.estimates.variance_fitted
            fitted = self.fitted() if fitted is None else np.asarray(fitted, dtype=float)
            if kind == "pearson":
                log_g = structure.log_sd(u, fitted)
                return (
                    response / self.sigma
                    if log_g is None
                    else response / (self.sigma * np.exp(log_g))
                )
            whitened, _ = structure.whiten(u, response, fitted)
            return whitened / self.sigma
        if kind in ("pearson", "normalized"):
            weights = getattr(self.design, "weights", None)
            scaled = response if weights is None else np.sqrt(weights) * response
            return scaled / self.sigma
        raise ArgumentError(f"kind must be 'response', 'pearson' or 'normalized', not {kind!r}.")

    def predict(
        self, newdata: pd.DataFrame | None = None, include_random: bool = True
    ) -> np.ndarray:
        """Predictions on the response scale.

        Parameters
        ----------
        newdata : DataFrame, optional
            New observations; ``None`` predicts for the fitting data.
        include_random : bool
            Add the conditional modes of the random effects (lme4's
            ``re.form = NULL``); ``False`` gives population predictions
            (``re.form = NA``). Levels not seen in fitting get a zero random
            effect, i.e. the population prediction, with a ``DataWarning``.

        The model's offset is part of every prediction (evaluated on
        ``newdata`` for new rows; lme4 drops an ``offset=`` argument there).
        """
        beta = np.asarray(self.estimates.beta, dtype=float)
        if newdata is None:
            if include_random:
                return self.fitted()
            return np.asarray(self.design.X, dtype=float) @ beta + self.design.offset_or_zero
        new = self.design.evaluate_new_data(newdata)
        eta = np.asarray(new.X, dtype=float) @ beta + new.offset_or_zero
        if not include_random:
            return eta
        unseen = []
        for block, (codes, Z), b in zip(self.design.blocks, new.blocks, self.estimates.b):
            codes = np.asarray(codes)
            known = codes >= 0
            if not known.all() and block.grouping not in unseen:
                unseen.append(block.grouping)
            b = np.asarray(b, dtype=float)
            eta[known] += np.sum(np.asarray(Z, dtype=float)[known] * b[codes[known]], axis=1)
        if unseen:
            warn(
                f"newdata has levels of {', '.join(unseen)} not seen in fitting; their random "
                "effects are set to zero (population prediction). Other rows are unaffected.",
                DataWarning,
            )
        return eta

    # -- presentation
    def summary(self, ddf: str | None = None) -> MLSummary:
        """lme4-style summary; ``str()`` gives the text, notebooks show HTML.

        ``ddf="Satterthwaite"`` or ``"Kenward-Roger"`` adds lmerTest's ``df`` and
        ``Pr(>|t|)`` columns (see :meth:`coef_table`).
        """
        from bayesmix.ml.summary import MLSummary

        return MLSummary(self, None if ddf is None else self.coef_table(ddf))

    def update(
        self, formula: str | None = None, method: str | None = None, *, random: str | None = None
    ) -> MLResult:
        """Refit with a changed formula, random part and/or method (R's ``update``).

        ``formula`` takes ``". ~ . + x"`` edits; ``random`` replaces the whole
        random part (``"nutrient | popu/gen"``); ``method`` defaults to this fit's.
        """
        if self.model is None:
            raise ArgumentError(
                "update() needs the unfitted model, but this result was built without one; "
                "fit the new model directly with bayesmix.lmm(formula, data).fit()."
            )
        changed = formula is not None or random is not None
        model = self.model.update(formula, random=random) if changed else self.model
        return model.fit(method=method or self.method)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return (
            f"<MLResult {self.method}: {self.design.formula}; n={self.nobs}, "
            f"logLik={self.loglik:.4f}, df={self.df}>"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the fit to one file that :func:`bayesmix.load` reads back.

        The file (a zip, see :mod:`bayesmix.io`) holds the model's formula,
        options and data and the estimates; loading runs no code from it and
        does not refit. User functions (``functions=``, ``mean=``) are stored by
        name only: pass them again to ``load``.
        """
        from bayesmix.io import save

        save(self, path)
