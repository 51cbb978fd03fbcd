"""Generalized linear mixed models: :func:`glmm` and :class:`GeneralizedLinearMixedModel`.

>>> import bayesmix as bmx
>>> cbpp = bmx.load_dataset("cbpp")
>>> model = bmx.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
...                  family="binomial")
>>> round(model.fit().loglik, 4)       # Laplace approximation, as glmer
-92.0263
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, DataWarning, warn
from bayesmix.model_overview import ModelWorkflow
from bayesmix.spec import zero_inflation
from bayesmix.spec.design import Design, build_design
from bayesmix.spec.families import Family
from bayesmix.spec.families import family as resolve_family
from bayesmix.spec.formula import edit_formula, parse_formula
from bayesmix.spec.response_checks import binary_response, warn_separation

if TYPE_CHECKING:
    from bayesmix.bayes.glmm_results import GLMMBayesResult
    from bayesmix.ml.glmm_results import GLMMResult

__all__ = ["GeneralizedLinearMixedModel", "glmm"]


class GeneralizedLinearMixedModel(ModelWorkflow):
    """A GLMM: an lme4-style formula, a response family and its link.

    Build it with :func:`glmm`; :meth:`fit` returns a new result and never
    changes the model.

    Attributes
    ----------
    formula : str
    data : DataFrame
    family : Family
    design : Design
        The numeric design; ``design.weights`` holds the binomial trials.
    """

    overview_title = "Generalized linear mixed model"

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        family: str | Family,
        *,
        link: str | None = None,
        weights: str | np.ndarray | None = None,
        offset: str | np.ndarray | None = None,
        functions: Mapping[str, Callable] | None = None,
        contrasts: Mapping[str, str] | None = None,
        ziformula: str | None = None,
        allow_non_integer: bool = False,
    ) -> None:
        self.family = resolve_family(family, link)
        if self.family.name == "gaussian":
            raise ArgumentError(
                "family='gaussian' is bmx.lmm (a linear mixed model); glmm takes binomial, "
                "poisson, negbinomial or gamma."
            )
        if weights is not None and self.family.name != "binomial":
            raise ArgumentError(
                "weights= are the binomial trials; count families take none (for an "
                "exposure use offset=np.log(exposure) or offset(log(exposure)) in the formula)."
            )
        self.formula, self.data = formula, data
        self.weights, self.offset = weights, offset
        self.allow_non_integer = bool(allow_non_integer)
        self.functions, self.contrasts = dict(functions or {}), dict(contrasts or {})
        if self.family.name == "binomial":  # glmer: a factor's first level is failure
            data = binary_response(data, parse_formula(formula).response)
        self.ziformula = zero_inflation.check_ziformula(ziformula, self.family)
        if self.ziformula is not None:  # rows the zero-inflation part cannot use go first
            keep = zero_inflation.usable_rows(self.ziformula, data, functions)
            if not keep.all():  # arrays given for the user's rows follow the rows kept
                data = data.loc[keep]
                offset, weights = (
                    np.asarray(v)[keep] if isinstance(v, np.ndarray | list | pd.Series) else v
                    for v in (offset, weights)
                )
        self.design: Design = build_design(
            formula,
            data,
            offset=offset,
            weights=weights,
            functions=functions,
            contrasts=contrasts,
            binomial=self.family.name == "binomial",
        )
        self.family.check_response(
            self.design.y, self.design.weights, allow_non_integer=allow_non_integer
        )
        if self.family.name == "binomial":
            warn_separation(
                self.design.X, self.design.fixed_terms, self.design.y, self.design.weights
            )
        #: the zero-inflation design (rows as ``design``) and its column names; ``None``
        #: without zero inflation. P(structural zero) = expit(zi_X @ zi_beta).
        self.zi_design: Design | None = None
        self.zi_X: np.ndarray | None = None
        self.zi_names: tuple[str, ...] = ()
        if self.ziformula is not None:
            self.zi_design = zero_inflation.zi_design(
                self.ziformula, self.design, functions, self.contrasts
            )
            self.zi_X = np.asarray(self.zi_design.X, dtype=float)
            self.zi_names = tuple(self.zi_design.fixed_terms)
        y = np.asarray(self.design.y)
        no_trials = self.design.weights is None
        if self.family.name == "binomial" and no_trials and np.any((y > 0) & (y < 1)):
            warn(
                "the binomial response holds proportions but no weights= give the number of "
                "trials, so each row counts as one trial (glmer warns the same); pass "
                "weights='<trials column>'.",
                DataWarning,
            )

    def __repr__(self) -> str:
        blocks = ", ".join(b.label for b in self.design.blocks) or "none"
        return (
            f"<GeneralizedLinearMixedModel {self.formula!r}, {self.family.name} "
            f"({self.family.link.name}): {self.design.n_obs} observations, random effects: "
            f"{blocks}>"
        )

    def overview_rows(self) -> list[tuple[str, str]]:
        rows = super().overview_rows()
        rows.insert(1, ("Family", f"{self.family.name} ({self.family.link.name} link)"))
        if self.ziformula is not None:
            rows.append(("Zero inflation", f"~ {self.ziformula}"))
        return rows

    def fit(self, nagq: int = 1, information: str | None = None) -> GLMMResult:
        """Maximum-likelihood fit: ``nagq=1`` Laplace (glmer's default), ``0`` lme4's fast
        fit, ``2..25`` adaptive Gauss-Hermite quadrature (one scalar random effect).

        Parameters
        ----------
        nagq : int
            Quadrature points, as lme4's ``nAGQ``.
        information : {"fisher", "observed"}, optional
            The Laplace convention: ``"fisher"`` (lme4's ``glmer``, the expected
            information in the log-determinant) is the default for binomial,
            Poisson and negative binomial models; ``"observed"`` (glmmTMB's exact
            Laplace approximation) for Gamma and zero-inflated ones, which lme4
            does not fit. The two agree for the canonical links (logit, log
            Poisson) and differ by about 0.01-0.05 in logLik otherwise.

        Returns
        -------
        GLMMResult
            logLik/AIC/BIC (the full log-likelihood, also for ``nagq > 1``, where
            lme4 leaves out the saturated log-likelihood), ``fixef()`` with Wald z
            statistics in ``summary()``, ``varcorr()``, ``ranef()``,
            ``predict(type="response"|"link")``, ``residuals("deviance")``; the
            dispersion and zero-inflation coefficients where the model has them.
        """
        from bayesmix.ml.glmm_fit import fit_glmm
        from bayesmix.ml.glmm_results import GLMMResult

        if not self.design.blocks:
            raise ArgumentError(
                "glmm needs at least one random-effects term such as (1 | g); a GLM without "
                "random effects is statsmodels' GLM."
            )
        if information not in (None, "fisher", "observed"):
            raise ArgumentError(
                f"information must be 'fisher' (lme4) or 'observed' (glmmTMB), got {information!r}."
            )
        if information == "fisher" and self.zi_X is not None:
            raise ArgumentError(
                "zero-inflated models use the observed information (glmmTMB's Laplace "
                "approximation); leave information unset."
            )
        fit = fit_glmm(self.design, self.family, nagq=nagq, zi_X=self.zi_X, information=information)
        return GLMMResult(
            design=self.design,
            estimates=fit.estimates,
            model=self,
            family=self.family,
            nagq=nagq,
            dispersion=fit.dispersion,
            dispersion_se=fit.dispersion_se,
            zi_beta=fit.zi_beta,
            zi_vcov=fit.zi_vcov,
            information=fit.information,
        )

    @property
    def options(self) -> dict[str, Any]:
        """The constructor's keyword arguments (to rebuild the model on edits)."""
        return {
            "link": self.family.link.name,
            "weights": self.weights,
            "offset": self.offset,
            "functions": self.functions or None,
            "contrasts": self.contrasts or None,
            "ziformula": None if self.ziformula is None else f"~ {self.ziformula}",
            "allow_non_integer": self.allow_non_integer,
        }

    def update(
        self,
        formula: str | None = None,
        *,
        random: str | None = None,
        data: pd.DataFrame | None = None,
    ) -> GeneralizedLinearMixedModel:
        """A new model with an edited formula or other data (R's ``update``), the same
        family, link, offset, trials and zero inflation.

        Parameters
        ----------
        formula : str, optional
            An edit such as ``". ~ . + nutrient:amd"`` or a complete new formula.
        random : str, optional
            Replacement for the whole random part, e.g. ``"(1 | popu/gen)"``.
        data : DataFrame, optional
            New data; defaults to this model's data. An ``offset``/``weights``
            array belongs to the old rows: pass column names instead.
        """
        arrays = [k for k in ("offset", "weights") if isinstance(getattr(self, k), np.ndarray)]
        if data is not None and arrays:
            raise DataError(
                f"This model's {' and '.join(arrays)} was given as an array, which belongs to "
                "the old data's rows; pass column names to refit on new data."
            )
        return GeneralizedLinearMixedModel(
            edit_formula(self.formula, formula, random),
            self.data if data is None else data,
            self.family,
            **self.options,
        )

    # ----------------------------------------------------------------- Bayesian
    def default_priors(self) -> Mapping[str, object]:
        """Default priors on the link scale, scaled to the data.

        Fixed effects ``Normal`` (the intercept centred on the link of the mean
        response), group SDs ``HalfStudentT(3, 2.5)`` on the link scale,
        ``LKJ(2)`` correlations, ``HalfNormal(1)`` on ``1/sqrt(theta)`` (negative
        binomial) or ``1/sqrt(shape)`` (Gamma), ``Normal(0, 1.5)`` on the
        zero-inflation intercept; the choices and their reasons are in
        :func:`bayesmix.bayes.glmm_priors.default_glmm_priors`. Override any of
        them by key with ``sample(priors={...})``.
        """
        from bayesmix.bayes.glmm_priors import default_glmm_priors

        return default_glmm_priors(self.design, self.family, self.zi_X, self.zi_names)

    def sample(
        self,
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        sampler: str = "nutpie",
        target_accept: float | None = None,
        priors: Mapping[str, object] | None = None,
        random_seed: int | None = None,
        progressbar: bool | None = None,
    ) -> GLMMBayesResult:
        """Draw from the posterior with NUTS (nutpie by default), as ``lmm(...).sample()``.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, warm-up iterations per chain, number of chains.
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
            NUTS implementation.
        target_accept : float, optional
            0.95 for models with at most 1,000 parameters, 0.8 above; raise it
            towards 0.99 if divergences are reported.
        priors : dict, optional
            Overrides of :meth:`default_priors`, keyed by the same names.
        random_seed : int, optional
            Seed for reproducible draws.
        progressbar : bool, optional
            Show a line while the model compiles and the sampler's progress bar;
            default: on in a notebook, IPython or at the Python prompt, off in
            scripts and tests.

        Returns
        -------
        GLMMBayesResult
            ``fixef()`` (``component="zi"`` / ``"dispersion"`` / ``"all"``),
            ``ranef()``, ``varcorr()``, ``summary()``, ``diagnostics()``,
            ``predict(newdata, type="response"|"link")``,
            ``posterior_predictive()``, ``loo()``.

        Raises
        ------
        ArgumentError
            Bad sampling options, or a model without random effects.
        PriorError
            Unknown prior keys or priors of the wrong kind.
        FitError
            When the sampler fails.
        """
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        from bayesmix.bayes.glmm_fit import sample_glmm

        return sample_glmm(
            self.design,
            self.family,
            zi_X=self.zi_X,
            zi_names=self.zi_names,
            zi_formula=self.ziformula,
            priors=priors,
            draws=draws,
            tune=tune,
            chains=chains,
            sampler=sampler,
            target_accept=target_accept,
            random_seed=random_seed,
            progressbar=progressbar,
            model=self,
        )


def glmm(
    formula: str,
    data: pd.DataFrame,
    family: str | Family,
    *,
    link: str | None = None,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
    ziformula: str | None = None,
    allow_non_integer: bool = False,
) -> GeneralizedLinearMixedModel:
    """A generalized linear mixed model (lme4's ``glmer``), fitted by ML with ``.fit()``.

    Parameters
    ----------
    formula : str
        As for :func:`~bayesmix.lmm`. A binomial response is 0/1,
        ``cbind(successes, failures)`` (glmer's), or a proportion
        ``I(successes / trials)`` with ``weights="trials"``.
    data : DataFrame
    family : str or Family
        ``"binomial"``, ``"poisson"``, ``"negbinomial"`` (NB2, ``theta``
        estimated, as ``glmer.nb`` and glmmTMB's ``nbinom2``) or ``"gamma"``
        (``shape`` estimated); see :mod:`bayesmix.spec.families`.
    link : str, optional
        The family's default unless given, as R's: binomial ``"logit"``
        (``"probit"``, ``"cloglog"``); Poisson ``"log"`` (``"identity"``,
        ``"sqrt"``); negative binomial ``"log"``; Gamma ``"inverse"`` (R's
        ``Gamma()`` default; ``"log"`` is usually the better-behaved choice,
        ``"identity"``).
    weights : str or array, optional
        Binomial trials.
    offset : str or array, optional
        Added to the linear predictor, e.g. ``np.log(exposure)``; ``offset(...)``
        terms in the formula work too.
    functions, contrasts : dict, optional
        As for :func:`~bayesmix.lmm`.
    ziformula : str, optional
        Zero inflation for count families, glmmTMB's ``ziformula``: ``"~1"`` a
        constant probability of a structural zero, ``"~ x"`` one that depends
        on predictors (logit scale; fixed effects only); see
        :mod:`bayesmix.spec.zero_inflation`.
    allow_non_integer : bool
        Accept non-integer counts for the Poisson and negative binomial families
        (an error otherwise, since such a response is seldom a count).

    Returns
    -------
    GeneralizedLinearMixedModel

    Raises
    ------
    ArgumentError
        An unknown family or a link it does not take (the valid ones are listed).
    DataError
        A response the family cannot describe (negative or fractional counts,
        proportions outside [0, 1], successes that are not whole numbers).
    """
    return GeneralizedLinearMixedModel(
        formula,
        data,
        family,
        link=link,
        weights=weights,
        offset=offset,
        functions=functions,
        contrasts=contrasts,
        ziformula=ziformula,
        allow_non_integer=allow_non_integer,
    )
