"""Nonlinear mixed models: :func:`nlmm` and :class:`NonlinearMixedModel`.

>>> import bayesmix as bmx
>>> theoph = bmx.load_dataset("Theoph")
>>> model = bmx.nlmm(
...     "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", theoph,
...     params={"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"},
...     cov={"Subject": "diagonal"})
>>> fit = model.fit(method="ML")        # nlme's Lindstrom-Bates algorithm
>>> round(fit.loglik, 2)
-177.02
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bayesmix.model_overview import ModelWorkflow
from bayesmix.nonlinear.build import NonlinearDesign, build_nonlinear_design
from bayesmix.spec.correlation_structures import CorrelationStructure
from bayesmix.spec.residual_structure import (
    ResidualStructure,
    bind_residual,
    correlation_argument,
    structure_columns,
    variance_argument,
)
from bayesmix.spec.variance_functions import VarianceFunction

if TYPE_CHECKING:
    from bayesmix.bayes.priors import Prior, PriorTable
    from bayesmix.nonlinear.bayes_results import NLBayesResult
    from bayesmix.nonlinear.ml_fit import NLMResult

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]

__all__ = ["NonlinearMixedModel", "nlmm"]


class NonlinearMixedModel(ModelWorkflow):
    """A nonlinear mixed model: a mean function plus one linear formula per parameter.

    Build it with :func:`nlmm`. Fitting never changes the model; :meth:`update`
    returns a new one.

    Attributes
    ----------
    formula : str
    data : DataFrame
    params : dict
        Parameter formulas as given.
    cov : dict or str or None
        Covariance kind per grouping factor.
    start : mapping or None
        Starting fixed effects used by :meth:`fit` unless it is given others.
    mean : callable or None
        Python mean function, when the formula holds only the response.
    offset, weights, correlation : as given to :func:`nlmm`
        ``weights`` is lme4's prior weights (a column or an array) or nlme's
        variance function (an object or its nlme syntax).
    design : NonlinearDesign
        Numeric arrays shared by the engines.
    residual : ResidualStructure or None
        The variance function and correlation structure bound to the design's
        rows (``None`` for independent errors of equal variance).
    """

    overview_title = "Nonlinear mixed model"

    def overview_rows(self) -> list[tuple[str, str]]:
        rows = super().overview_rows()
        for name, formula in (self.params or {}).items():
            rows.insert(-len(self.design.blocks) or len(rows), (f"Parameter {name}", formula))
        return rows

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        params: Mapping[str, str],
        *,
        start: Mapping[str, Any] | None = None,
        cov: Mapping[str, str] | str | None = None,
        mean: Callable[..., Any] | None = None,
        offset: str | np.ndarray | None = None,
        weights: str | np.ndarray | VarianceFunction | None = None,
        correlation: str | CorrelationStructure | None = None,
    ) -> None:
        self.formula = formula
        self.data = data
        self.params = dict(params) if isinstance(params, Mapping) else params
        self.cov = dict(cov) if isinstance(cov, Mapping) else cov
        self.start = start
        self.mean = mean
        self.offset = offset
        self.weights = weights
        self.correlation = correlation
        variance = variance_argument(weights)
        structure = correlation_argument(correlation)
        self.design: NonlinearDesign = build_nonlinear_design(
            formula,
            data,
            self.params,
            mean=mean,
            cov=self.cov,
            offset=offset,
            weights=None if variance is not None else weights,
            extra_columns=structure_columns(variance, structure, data),
        )
        self.residual: ResidualStructure | None = bind_residual(
            variance, structure, self.design.linear_design()
        )

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model with ``NonlinearMixedModel``."""
        return {
            "start": self.start,
            "cov": self.cov,
            "mean": self.mean,
            "offset": self.offset,
            "weights": self.weights,
            "correlation": self.correlation,
        }

    def __repr__(self) -> str:
        d = self.design
        blocks = ", ".join(b.label for b in d.blocks) or "none"
        params = "; ".join(f"{p.name} ~ {p.formula}" for p in d.parameters)
        residual = ""
        if self.residual is not None:
            residual = "; residuals: " + " and ".join(p.spec.nlme() for p in self.residual.parts)
        return (
            f"<NonlinearMixedModel {d.formula!r} [{d.mean_function.kind}]: {d.n_obs} "
            f"observations; {params}; random effects: {blocks}{residual}>"
        )

    def fit(
        self,
        method: Literal["ML", "REML"] = "ML",
        *,
        start: Mapping[str, Any] | None = None,
        max_iterations: int = 50,
        tolerance: float = 1e-6,
        reml: Literal["nlme", "linearised"] = "nlme",
        restarts: bool = True,
    ) -> NLMResult:
        """Maximum-likelihood (default, as nlme) or REML fit by Lindstrom-Bates.

        Parameters
        ----------
        method : {"ML", "REML"}
        start : mapping, optional
            Starting fixed effects, e.g. ``{"Asym": 190, "xmid": 700, "scal": 350}``;
            defaults to the model's ``start``, then to self-starting values.
        max_iterations, tolerance
            Limits of the alternating algorithm (see
            :func:`bayesmix.nonlinear.ml_fit.fit_nonlinear`).
        reml : {"nlme", "linearised"}
            REML variant; ``"nlme"`` reproduces nlme's numbers.
        restarts : bool
            The alternation can stop at a worse fixed point than nlme's; by
            default it is continued from two cheap restarts and the best fixed
            point is kept (``fit.starts_table()`` shows every run, the summary
            how many agree; see :mod:`bayesmix.nonlinear.restarts`). ``False``
            runs it once.

        Returns
        -------
        NLMResult
            logLik/AIC/BIC of the linearised model as nlme reports them
            (``bic`` is nlme's, ``bic_lme4`` lme4's), ``fixef()`` (SEs of an ML fit
            scaled as nlme's summary scales them), ``ranef()``,
            ``varcorr()``, ``predict()``...
        """
        from bayesmix.nonlinear.ml_fit import fit_nonlinear

        return fit_nonlinear(
            self.design,
            method,
            start=self.start if start is None else start,
            max_iterations=max_iterations,
            tolerance=tolerance,
            reml=reml,
            model=self,
            restarts=restarts,
            residual=self.residual,
        )

    # ----------------------------------------------------------------- Bayesian
    def default_priors(self) -> PriorTable:
        """Default priors centred on start values.

        See :func:`bayesmix.nonlinear.bayes_model.default_priors`.

        Nonlinear parameters have no data-derived scale, so each fixed effect
        gets ``Normal(start, 2.5 * max(|start|, 1))`` around the self-start
        values (or the model's ``start``); random-effect SDs
        ``HalfStudentT(3, max(|start|, 1))``, correlations ``LKJ(2)``, sigma
        ``HalfStudentT(3, sd(y))``; a residual structure's parameters as in
        :mod:`bayesmix.bayes.residual_priors` (``power``, ``Phi``...).
        """
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        from bayesmix.nonlinear.bayes_model import resolve_nonlinear_priors

        return resolve_nonlinear_priors(self.design, self.residual, None, self.start)[0]

    def forward_model(self, priors: dict | None = None) -> tuple[Any, Any]:
        """The PyMC model built for drawing from the priors and how to wrap its draws
        (for :meth:`sample_prior_predictive`; see ``nonlinear.prior_forward``)."""
        from bayesmix.nonlinear.prior_forward import forward_model

        return forward_model(self, priors)

    def pymc_model(self, priors: dict[str, Prior] | None = None) -> Any:
        """The PyMC model that :meth:`sample` draws from, for inspection or extension."""
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        from bayesmix.nonlinear.bayes_model import (
            build_nonlinear_pymc_model,
            resolve_nonlinear_priors,
        )

        table, params = resolve_nonlinear_priors(self.design, self.residual, priors, self.start)
        return build_nonlinear_pymc_model(self.design, table, self.residual, params)

    def sample(
        self,
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        sampler: Sampler = "nutpie",
        target_accept: float | None = None,
        priors: dict[str, Prior] | None = None,
        random_seed: int | None = None,
        progressbar: bool | None = None,
    ) -> NLBayesResult:
        """Draw from the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, warm-up iterations per chain, number of chains.
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
            NUTS implementation; nutpie (default) is the fastest here.
        target_accept : float, optional
            Target acceptance rate of NUTS: 0.95 for models with at most 1,000
            parameters, 0.8 above. Raise it (towards 0.99) if divergences are
            reported.
        priors : dict, optional
            Overrides of :meth:`default_priors`, keyed by the same names
            (``"lKa"``, ``"sd(lKa|Subject)"``, ``"cor(Subject)"``, ``"sigma"``).
        random_seed : int, optional
            Seed for reproducible draws.
        progressbar : bool, optional
            Show a line while the model compiles and the sampler's progress bar;
            default: on in a notebook, IPython or at the Python prompt, off in
            scripts and tests.

        Returns
        -------
        NLBayesResult
            ``fixef()``, ``coef()`` (per-level parameters), ``phi()``,
            ``ranef()``, ``varcorr()``, ``summary()``, ``predict()``, ``loo()``,
            ``diagnostics()``; with ``weights=``/``correlation=`` a
            ``StructuredNLBayesResult`` with ``residual_parameters()``.
        """
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        from bayesmix.nonlinear.bayes_model import sample_nonlinear

        options: dict[str, Any] = {}
        if target_accept is not None:
            options["target_accept"] = target_accept
        result = sample_nonlinear(
            self.design,
            priors=priors,
            start=self.start,
            draws=draws,
            tune=tune,
            chains=chains,
            sampler=sampler,
            random_seed=random_seed,
            progressbar=progressbar,
            residual=self.residual,
            **options,
        )
        # the model travels with the result so that save() can store its arguments; set
        # on the new result itself so that the diagnostics cached while sampling are kept
        object.__setattr__(result, "model", self)
        return result

    def update(
        self,
        formula: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        cov: Mapping[str, str] | str | None = None,
        start: Mapping[str, Any] | None = None,
        data: pd.DataFrame | None = None,
    ) -> NonlinearMixedModel:
        """A new model with some parts replaced (R's ``update``).

        ``formula`` replaces the model formula; ``params`` entries replace the
        formulas of the parameters they name (others are kept); ``cov``,
        ``start`` and ``data`` replace the old values when given. ``offset``,
        ``weights`` and ``correlation`` are kept: an array of offsets or weights
        no longer fits new data, so pass column names to keep them.
        """
        new_params = dict(self.params)
        new_params.update(params or {})
        options = self.options
        if start is not None:
            options["start"] = start
        if cov is not None:
            options["cov"] = cov
        return NonlinearMixedModel(
            self.formula if formula is None else formula,
            self.data if data is None else data,
            new_params,
            **options,
        )


def nlmm(
    formula: str,
    data: pd.DataFrame,
    params: Mapping[str, str],
    *,
    start: Mapping[str, Any] | None = None,
    cov: Mapping[str, str] | str | None = None,
    mean: Callable[..., Any] | None = None,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | VarianceFunction | None = None,
    correlation: str | CorrelationStructure | None = None,
) -> NonlinearMixedModel:
    """A nonlinear mixed model, nlme style.

    Parameters
    ----------
    formula : str
        ``"response ~ mean function"``: a self-starting model call
        (``"conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"``, see
        :data:`bayesmix.nonlinear.selfstart.SELF_START`) or an explicit expression of data
        columns and parameters (``"circumference ~ Asym / (1 + exp((xmid - age) / scal))"``;
        operators ``+ - * / ^ **``, functions exp, log, sqrt, abs, sin, cos, tan,
        tanh, expm1, log1p, log10, the constant pi). With ``mean=`` give only the response.
    data : DataFrame
    params : dict
        One lme4-style formula per parameter of the mean function, e.g.
        ``{"lKe": "1", "lKa": "1 + (1 | Subject)", "lCl": "1 + Wt + (1 | Subject)"}``.
        Random effects of several parameters on the same grouping factor form one
        block with one covariance matrix.
    start : dict, optional
        Starting fixed effects ``{param: value}`` (the intercept of a parameter
        with covariates) or by fixed-effect name; needed unless the mean is a
        self-starting model.
    cov : dict or str, optional
        Covariance of each grouping factor's block: ``"unstructured"`` (default,
        nlme's pdSymm) or ``"diagonal"`` (pdDiag); a string applies to all.
    mean : callable, optional
        A Python mean function ``mean(xp, <columns and parameters by name>)``
        written with ``xp`` functions (``xp.exp``...), so it runs on numpy (ML)
        and pytensor (Bayesian). Arguments named in ``params`` are parameters,
        the others data columns.
    offset : str or array, optional
        Column name or array (one value per row) added to the mean function's
        output: ``mu_i = offset_i + f(phi_i, x_i)``. Predictions for new rows
        read a named column there; an array offset cannot predict new rows.
    weights : str, array or variance function, optional
        Two meanings, told apart by what is passed (as in :func:`bayesmix.lmm`):

        * a column name or an array: prior weights, positive; row i has
          residual variance ``sigma^2 / w_i`` (lme4's meaning; nlme's
          ``weights = varFixed(~ 1/w)``);
        * a variance function, an object (``bmx.varPower()``) or nlme's syntax
          (``"varPower()"``, ``"varIdent(form = ~1 | Sex)"``): nlme's
          ``weights=``, row i has residual SD ``sigma g_i`` with ``g``
          estimated. ``varPower()`` (nlme's default ``form = ~fitted(.)``) uses
          the fitted values ``offset + f``, random effects included, held at
          the point of linearisation in each iteration as ``nlme()`` does.
    correlation : str or correlation structure, optional
        nlme's ``correlation=``: within-group correlation of the residuals, an
        object (``bmx.corAR1()``, ``bmx.corCAR1(time="Time")``) or nlme's syntax
        (``"corAR1()"``, ``"corCAR1(form = ~Time | Subject)"``). Without a group
        it acts within the grouping factor with the most levels; its groups must
        be nested in every random-effects grouping. The ML/REML fit with either
        is nlme's (:mod:`bayesmix.nonlinear.residual_steps`); ``sample`` models them
        jointly (:mod:`bayesmix.nonlinear.residual_bayes`).

    Returns
    -------
    NonlinearMixedModel
        Unfitted; call ``.fit(method="ML")``.

    Raises
    ------
    FormulaError
        A parameter of the mean function without a formula in ``params`` (or
        the reverse), a disallowed expression, a bad ``cov``.
    DataError
        Unknown or non-numeric columns; an ``offset``/``weights`` that is not a
        column or an array of one number per row; weights <= 0; a variance
        function or correlation structure that cannot be bound to the rows (an
        unknown column, a variance covariate of 0 for ``varPower``, correlation
        groups not nested in the random-effects grouping).
    """
    return NonlinearMixedModel(
        formula,
        data,
        params,
        start=start,
        cov=cov,
        mean=mean,
        offset=offset,
        weights=weights,
        correlation=correlation,
    )
