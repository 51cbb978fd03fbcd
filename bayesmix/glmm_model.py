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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.spec.design import Design, build_design
from bayesmix.spec.families import Family
from bayesmix.spec.families import family as resolve_family

if TYPE_CHECKING:
    from bayesmix.ml.glmm_results import GLMMResult

__all__ = ["GeneralizedLinearMixedModel", "glmm"]


class GeneralizedLinearMixedModel:
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
    ) -> None:
        self.family = resolve_family(family, link)
        if self.family.name not in ("binomial", "poisson", "negbinomial"):
            raise ArgumentError(
                f"glmm fits the binomial, Poisson and negative binomial families so far; "
                f"{self.family.name!r} (and zero inflation) is being built."
            )
        if weights is not None and self.family.name != "binomial":
            raise ArgumentError(
                "weights= are the binomial trials; count families take none (for an "
                "exposure use offset=np.log(exposure) or offset(log(exposure)) in the formula)."
            )
        self.formula, self.data = formula, data
        self.weights, self.offset = weights, offset
        self.functions, self.contrasts = dict(functions or {}), dict(contrasts or {})
        self.design: Design = build_design(
            formula,
            data,
            offset=offset,
            weights=weights,
            functions=functions,
            contrasts=contrasts,
            binomial=self.family.name == "binomial",
        )
        self.family.check_response(self.design.y, self.design.weights)
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

    def fit(self, nagq: int = 1) -> GLMMResult:
        """Maximum-likelihood fit: ``nagq=1`` Laplace (glmer's default), ``0`` lme4's fast fit.

        Returns
        -------
        GLMMResult
            logLik/AIC/BIC (the full log-likelihood), ``fixef()`` with Wald z
            statistics in ``summary()``, ``varcorr()``, ``ranef()``,
            ``predict(type="response"|"link")``, ``residuals("deviance")``.
        """
        from bayesmix.ml.glmm_fit import fit_glmm
        from bayesmix.ml.glmm_results import GLMMResult

        if not self.design.blocks:
            raise ArgumentError(
                "glmm needs at least one random-effects term such as (1 | g); a GLM without "
                "random effects is statsmodels' GLM."
            )
        estimates, dispersion = fit_glmm(self.design, self.family, nagq=nagq)
        return GLMMResult(
            design=self.design,
            estimates=estimates,
            model=self,
            family=self.family,
            nagq=nagq,
            dispersion=dispersion,
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
        ``"binomial"``, ``"poisson"`` or ``"negbinomial"`` (NB2, ``theta``
        estimated, as ``glmer.nb``; Gamma and zero inflation are being built);
        see :mod:`bayesmix.spec.families`.
    link : str, optional
        The family's default (logit, log) unless given: binomial takes
        ``"logit"``, ``"probit"``, ``"cloglog"``; Poisson ``"log"``,
        ``"identity"``, ``"sqrt"``.
    weights : str or array, optional
        Binomial trials.
    offset : str or array, optional
        Added to the linear predictor, e.g. ``np.log(exposure)``; ``offset(...)``
        terms in the formula work too.
    functions, contrasts : dict, optional
        As for :func:`~bayesmix.lmm`.

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
    )
