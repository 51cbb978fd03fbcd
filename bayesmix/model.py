"""Model constructors: the one place where the ML and Bayesian engines meet.

``lmm`` and ``gls`` return an unfitted :class:`LinearMixedModel`; ``.fit()``
gives an :class:`~bayesmix.ml.results.MLResult` (ML/REML) and ``.sample()`` a
:class:`~bayesmix.bayes.results.BayesResult` (NUTS). PyMC is imported only
when ``.sample()`` or ``.pymc_model()`` is called, so ML work stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bayesmix.scale.survey import is_dask_frame
from bayesmix.spec.correlation_structures import CorrelationStructure
from bayesmix.spec.design import Design, build_design
from bayesmix.spec.formula import edit_formula, parse_formula
from bayesmix.spec.residual_structure import (
    ResidualStructure,
    bind_residual,
    correlation_argument,
    structure_columns,
    variance_argument,
)
from bayesmix.spec.response_checks import note_counts_for_gaussian
from bayesmix.spec.variance_functions import VarianceFunction

from .errors import ArgumentError, DataError, FormulaError
from .model_overview import ModelWorkflow

if TYPE_CHECKING:
    from bayesmix.bayes.priors import Prior
    from bayesmix.bayes.results import BayesResult
    from bayesmix.ml.results import MLResult

Sampler = Literal["nutpie", "pymc", "numpyro", "blackjax"]


class LinearMixedModel(ModelWorkflow):
    """A linear mixed model defined by an lme4-style formula and a DataFrame.

    Build it with :func:`lmm` or :func:`gls`. The model is never changed by
    fitting: :meth:`fit` and :meth:`sample` return new result objects, and
    :meth:`update` returns a new model.

    Attributes
    ----------
    formula : str
    data : DataFrame
        The data as given (rows with missing values are dropped in ``design``).
    offset, weights, correlation : as given to :func:`lmm`
        ``weights`` is lme4's prior weights (a column or an array) or nlme's
        variance function (an object or its nlme syntax).
    functions : dict
        Extra functions the formula may call (``functions=``).
    contrasts : dict
        Coding of factor columns (``contrasts=``), e.g. ``{"Sex": "sum"}``.
    conventions : {"lme4", "nlme"}
        Whose reporting conventions the ML/REML results follow by default:
        ``"lme4"`` for :func:`lmm`, ``"nlme"`` for :func:`gls` (BIC of a REML
        fit with ``log(n - p)``; fixed-effect SEs of an ML fit scaled by
        ``sqrt(n / (n - p))``). Both are always available on the result.
    design : Design
        Numeric arrays shared by both engines.
    residual : ResidualStructure or None
        The variance function and correlation structure bound to the design's
        rows (``None`` for independent errors of equal variance).
    """

    overview_title = "Linear mixed model"

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        offset: str | np.ndarray | None = None,
        weights: str | np.ndarray | VarianceFunction | None = None,
        functions: Mapping[str, Callable] | None = None,
        contrasts: Mapping[str, str] | None = None,
        conventions: Literal["lme4", "nlme"] = "lme4",
        correlation: str | CorrelationStructure | None = None,
    ) -> None:
        if conventions not in ("lme4", "nlme"):
            raise ArgumentError(f"conventions must be 'lme4' or 'nlme', not {conventions!r}.")
        self.formula = formula
        self.data = data
        self.offset = offset
        self.weights = weights
        self.correlation = correlation
        self.functions = dict(functions or {})
        self.conventions = conventions
        variance = variance_argument(weights)
        structure = correlation_argument(correlation)
        columns = structure_columns(variance, structure, data)
        self.design: Design = build_design(
            formula,
            data,
            offset=offset,
            weights=None if variance is not None else weights,
            functions=functions,
            contrasts=contrasts,
            extra_columns=columns,
        )
        self.contrasts = dict(self.design.contrasts)
        self.residual: ResidualStructure | None = bind_residual(variance, structure, self.design)
        note_counts_for_gaussian(self.design.y, self.design.response)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model with ``LinearMixedModel``."""
        return {
            "offset": self.offset,
            "weights": self.weights,
            "functions": self.functions,
            "contrasts": self.contrasts,
            "conventions": self.conventions,
            "correlation": self.correlation,
        }

    def __repr__(self) -> str:
        blocks = ", ".join(b.label for b in self.design.blocks) or "none"
        residual = ""
        if self.residual is not None:
            residual = ", residuals: " + " and ".join(p.spec.nlme() for p in self.residual.parts)
        return (
            f"<LinearMixedModel {self.formula!r}: {self.design.n_obs} observations, "
            f"{self.design.n_fixed} fixed effects, random effects: {blocks}{residual}>"
        )

    def overview_rows(self) -> list[tuple[str, str]]:
        rows = super().overview_rows()
        if self.residual is not None:
            rows.append(("Residuals", " and ".join(p.spec.nlme() for p in self.residual.parts)))
        return rows

    def fit(self, method: Literal["REML", "ML"] = "REML") -> MLResult:
        """Maximum-likelihood (``"ML"``) or restricted ML (``"REML"``) fit.

        Returns
        -------
        MLResult
            Estimates, logLik/AIC/BIC, ``fixef()``, ``ranef()``, ``varcorr()``...
        """
        method = _check_method(method)
        from bayesmix.ml.results import MLResult

        if self.residual is not None:
            from bayesmix.ml.residual_fit import fit_structured

            estimates = fit_structured(self.design, self.residual, method=method)
        else:
            from bayesmix.ml.fit import fit_estimates

            estimates = fit_estimates(self.design, method=method)
        return MLResult(design=self.design, estimates=estimates, model=self)

    # ----------------------------------------------------------------- Bayesian
    def default_priors(self) -> dict[str, Prior]:
        """Default priors, scaled to the data (see :mod:`bayesmix.bayes.priors`)."""
        if self.residual is not None:  # the structure's priors too (no PyMC import)
            from bayesmix.bayes.residual_priors import resolve_structured_priors

            return dict(resolve_structured_priors(self.design.offset_absorbed(), self.residual)[0])
        from bayesmix.bayes.priors import default_priors

        return default_priors(self.design.offset_absorbed())

    def pymc_model(self, priors: dict[str, Prior] | None = None) -> Any:
        """The PyMC model that :meth:`sample` draws from, for inspection or extension."""
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        if self.residual is not None:
            from bayesmix.bayes.residual_model import build_structured_model
            from bayesmix.bayes.residual_priors import resolve_structured_priors

            table, params = resolve_structured_priors(
                self.design.offset_absorbed(), self.residual, priors
            )
            return build_structured_model(self.design, self.residual, table, params)
        from bayesmix.bayes.model import build_pymc_model
        from bayesmix.bayes.priors import resolve_priors

        design = self.design.offset_absorbed()
        return build_pymc_model(design, resolve_priors(design, priors))

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
    ) -> BayesResult:
        """Draw from the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, warm-up iterations per chain, number of chains.
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
            NUTS implementation; nutpie (default) is the fastest here.
        target_accept : float, optional
            Target acceptance rate of NUTS: 0.95 for models with at most 1,000
            parameters (few groups make the geometry harder), 0.8 above. Raise
            it (towards 0.99) if divergences are reported.
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
        BayesResult
        """
        from bayesmix.bayes.compile.cache import configure_pytensor

        configure_pytensor()  # before PyTensor is first imported (see bayesmix.bayes.compile.cache)
        from bayesmix.bayes.fit import sample_model

        options: dict[str, Any] = {}
        if target_accept is not None:
            options["target_accept"] = target_accept
        if self.residual is not None:  # variance function / correlation structure
            from bayesmix.bayes.residual_model import sample_structured

            result = sample_structured(
                self.design,
                self.residual,
                priors=priors,
                draws=draws,
                tune=tune,
                chains=chains,
                sampler=sampler,
                random_seed=random_seed,
                progressbar=progressbar,
                target_accept=target_accept,
            )
        else:
            result = sample_model(
                self.design,
                priors=priors,
                draws=draws,
                tune=tune,
                chains=chains,
                sampler=sampler,
                random_seed=random_seed,
                progressbar=progressbar,
                **options,
            )
        # save() records the constructor; set on the new result itself (nobody else holds
        # it yet) so that the diagnostics it cached while sampling are kept
        object.__setattr__(result, "model", self)
        return result

    # ------------------------------------------------------------------ update
    def update(
        self,
        formula: str | None = None,
        *,
        random: str | None = None,
        data: pd.DataFrame | None = None,
    ) -> LinearMixedModel:
        """A new model with an edited formula or other data (R's ``update``).

        Parameters
        ----------
        formula : str, optional
            An edit such as ``". ~ . + nutrient:amd"`` (``.`` keeps the old
            response or right-hand side; ``- term`` removes a term or a bar), or
            a complete new formula.
        random : str, optional
            Replacement for the whole random part, e.g. ``"(nutrient | popu/gen)"``
            (nlme's ``update(random = ~nutrient | popu/gen)``); ``""`` removes it.
        data : DataFrame, optional
            New data; defaults to this model's data. An ``offset``/``weights``
            array no longer fits new data: pass column names to keep them.
        """
        new_formula = edit_formula(self.formula, formula, random)
        arrays = [k for k in ("offset", "weights") if isinstance(getattr(self, k), np.ndarray)]
        if data is not None and arrays:
            raise DataError(
                f"This model's {' and '.join(arrays)} {'was' if len(arrays) == 1 else 'were'} "
                "given as an array, which belongs to the old data's rows; pass column names "
                "(offset='<column>', weights='<column>') to refit on new data."
            )
        return LinearMixedModel(new_formula, self.data if data is None else data, **self.options)


def lmm(
    formula: str,
    data: pd.DataFrame,
    *,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | VarianceFunction | None = None,
    correlation: str | CorrelationStructure | None = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
) -> LinearMixedModel:
    """A linear mixed model from an lme4-style formula.

    Parameters
    ----------
    formula : str
        E.g. ``"Reaction ~ Days + (Days | Subject)"``. Random-effects bars:
        ``(1 | g)``, ``(x | g)`` (correlated), ``(x || g)`` (uncorrelated),
        ``(1 | a/b)`` (nested), ``(1 | a) + (1 | b)`` (crossed), ``(1 | a:b)``.
        ``offset(expr)`` adds a known term. A formula evaluates only the data's
        columns and the functions listed in :mod:`bayesmix.spec.formula_eval`
        (``log``, ``sqrt``, ``I``, ``C``, ``poly``, ``scale``...), never code.
    data : DataFrame or dask.dataframe.DataFrame
        One row per observation. A Dask DataFrame (data larger than memory) gives
        a :class:`~bayesmix.dask_model.DaskLinearMixedModel`, fitted by ML/REML
        from cross-products summed partition by partition.
    offset : str or array, optional
        Column name or array (one value per row) added to the linear predictor.
    weights : str, array or variance function, optional
        Two meanings, told apart by what is passed (as R's lme4 and nlme differ):

        * a column name or an array: lme4's prior weights, positive; row i has
          residual variance ``sigma^2 / w_i``;
        * a variance function, an object (``bmx.varIdent("Sex")``,
          ``bmx.varPower()``) or nlme's syntax (``"varIdent(form = ~1 | Sex)"``,
          ``"varComb(varIdent(form = ~1 | Diet), varPower())"``): nlme's
          ``weights=``, row i has residual SD ``sigma g_i`` with ``g`` estimated
          (see :mod:`bayesmix.spec.variance_functions`).
    correlation : str or correlation structure, optional
        nlme's ``correlation=``: within-group correlation of the residuals, an
        object (``bmx.corAR1(group="Mare")``, ``bmx.corCAR1(time="Time")``) or
        nlme's syntax (``"corAR1(form = ~1 | Mare)"``, ``"corARMA(p = 1, q = 1)"``,
        ``"corExp(form = ~ x + y, nugget = TRUE)"``). Without a group it acts
        within the innermost random-effects grouping; see
        :mod:`bayesmix.spec.correlation_structures`.
    functions : dict, optional
        Extra functions the formula may call, e.g. ``{"logit": my_logit}``.
    contrasts : dict, optional
        Coding of factor columns, as lme4's ``contrasts=``: ``{"Sex": "sum"}``
        with ``"treatment"``, ``"sum"``, ``"helmert"`` or ``"poly"`` (or R's
        ``"contr.sum"``...). As in R, unordered factors default to treatment
        coding and ordered categoricals to ``"poly"``; ``C(f, "sum")`` in the
        formula codes one term. Columns get R's names (``Sex1``, ``temp.L``).

    Returns
    -------
    LinearMixedModel
        Unfitted; call ``.fit()`` (ML/REML) or ``.sample()`` (Bayesian). Its
        results report lme4's conventions (``bic`` with ``log(n)``, unscaled SEs).

    Examples
    --------
    >>> import bayesmix as bmx
    >>> sleep = bmx.load_dataset("sleepstudy")
    >>> fit = bmx.lmm("Reaction ~ Days + (Days | Subject)", sleep).fit()
    >>> round(fit.loglik, 3)
    -871.814
    """
    return _model(
        formula,
        data,
        "lme4",
        offset=offset,
        weights=weights,
        functions=functions,
        contrasts=contrasts,
        correlation=correlation,
    )


def gls(
    formula: str,
    data: pd.DataFrame,
    *,
    offset: str | np.ndarray | None = None,
    weights: str | np.ndarray | VarianceFunction | None = None,
    correlation: str | CorrelationStructure | None = None,
    functions: Mapping[str, Callable] | None = None,
    contrasts: Mapping[str, str] | None = None,
) -> LinearMixedModel:
    """A model without random effects (nlme's ``gls``).

    Its ML/REML fit can head an :func:`~bayesmix.anova` table as the null model.
    ``offset``, ``weights``, ``correlation``, ``functions`` and ``contrasts`` are
    as in :func:`lmm`; prior weights give nlme's ``weights = varFixed(~ 1/w)``.
    A correlation structure without a group treats all rows as one group. Its results report
    nlme's conventions: ``bic`` of a REML fit uses ``log(n - p)``, and
    fixed-effect SEs of an ML fit are scaled by ``sqrt(n / (n - p))``
    (``bic_lme4`` and ``fixef(adjust_sigma=False)`` give lme4's).
    """
    if parse_formula(formula).bars:
        raise FormulaError(
            f"gls() takes no random-effects terms, but {formula!r} has some; use lmm()."
        )
    return _model(
        formula,
        data,
        "nlme",
        offset=offset,
        weights=weights,
        functions=functions,
        contrasts=contrasts,
        correlation=correlation,
    )


def _model(formula: str, data: Any, conventions: str, **options: Any) -> LinearMixedModel:
    """The model of ``data``: in memory, or a Dask DataFrame (two passes, no rows here)."""
    if is_dask_frame(data):
        from bayesmix.dask_model import DaskLinearMixedModel

        return DaskLinearMixedModel(formula, data, conventions=conventions, **options)  # type: ignore[return-value]
    return LinearMixedModel(formula, data, conventions=conventions, **options)


def _check_method(method: str) -> Literal["REML", "ML"]:
    upper = method.upper() if isinstance(method, str) else None
    if upper not in ("REML", "ML"):
        raise ArgumentError(f"method must be 'REML' or 'ML', got {method!r}.")
    return upper  # type: ignore[return-value]
