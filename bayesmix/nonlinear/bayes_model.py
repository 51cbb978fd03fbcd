"""Bayesian engine for nonlinear mixed models: default priors, PyMC model, sampling.

The model is the one of :mod:`bayesmix.nonlinear.build`::

    phi_k = X_k beta_k + sum over blocks of Z[:, t] * b[codes, t]   (terms t of parameter k)
    y ~ Normal(offset + f(covariates, phi), sigma / sqrt(w))

built from the same :class:`~bayesmix.nonlinear.build.NonlinearDesign` as the ML
fit, with the mean function evaluated by pytensor (``design.mean(pt, ...)``).
The machinery of the linear engine is reused: the random effects of all
parameters on one grouping factor form one block (LKJ Cholesky covariance
when unstructured, independent SDs when diagonal), non-centred
(``b = z @ L.T``), entering by integer indexing; every prior parameter is a
slot of one ``hyper`` data vector, so a refit with other prior values reuses
the compiled model; sampling, compilation routes, caching and diagnostics are
those of :mod:`bayesmix.bayes.fit`.

Fixed effects of a parameter with an intercept and other columns are sampled
on centred columns (the free intercept is the parameter's value at the mean
covariates), as in :mod:`bayesmix.bayes.model`; ``beta`` reports the
coefficients of the uncentred columns. Random-effect columns are never
centred (a block mixes terms of several parameters). Chains start at the
start values with random-effect SDs at a tenth of their prior scale.

Notation
--------
n : observations; beta : fixed effects stacked parameter by parameter;
phi : per-row parameter values; b / r : group effects ``(levels, terms)`` of a block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.bayes.priors import (
    LKJ,
    HalfStudentT,
    Normal,
    Prior,
    PriorTable,
    apply_overrides,
    block_keys,
)
from bayesmix.bayes.validate import check_sampling_args
from bayesmix.errors import PriorError
from bayesmix.nonlinear.design import NonlinearDesign
from bayesmix.nonlinear.prior_centres import intercept_columns, parameter_scales, start_centres

if TYPE_CHECKING:
    from bayesmix.bayes.compile.nutpie import CompileRoute
    from bayesmix.bayes.residual_priors import StructureParameter
    from bayesmix.bayes.run import Sampler
    from bayesmix.nonlinear.bayes_results import NLBayesResult
    from bayesmix.spec.residual_structure import ResidualStructure

__all__ = [
    "build_nonlinear_pymc_model",
    "default_priors",
    "resolve_nonlinear_priors",
    "resolve_priors",
    "sample_nonlinear",
]

FIXED_SCALE = 2.5  # prior SD of a parameter: 2.5 * max(|start|, 1)


def default_priors(
    design: NonlinearDesign,
    start: Any = None,
    overrides: Mapping[str, Prior] | None = None,
) -> PriorTable:
    """Default priors of a nonlinear mixed model, centred on start values.

    Unlike a linear model, the scale of a nonlinear parameter cannot be read
    off the data, so the defaults are centred on the **start values** (the
    self-starting model's pooled least-squares estimates, or the user's
    ``start``) with wide scales. With ``s0_k`` the start value of parameter
    ``k``'s intercept and ``s_k = max(|s0_k|, 1)``:

    * the intercept-like fixed effect of a parameter (``"lKa"``,
      ``"lCl:Intercept"``, or each indicator column of a parameter without
      intercept): ``Normal(start, 2.5 s_k)``; with other columns present the
      prior is on the parameter at the mean of those columns (the sampler
      centres them);
    * other fixed effects (covariate slopes, e.g. ``"lCl:Wt"``):
      ``Normal(start, 2.5 s_k / sd(x))`` (start is 0 unless given);
    * random-effect SDs ``"sd(<term>|<grouping>)"``: ``HalfStudentT(3, s_k)``
      (``s_k / sd(z)`` for a non-constant column ``z``);
    * correlations ``"cor(<grouping>)"`` (unstructured blocks): ``LKJ(eta=2)``;
    * residual ``"sigma"``: ``HalfStudentT(3, sd(y - offset))``.

    Log-scale parameters (``lKe``, ``lrc``...) thus get a prior SD of at
    least 2.5 on the log scale, i.e. multiplicative factors of about e^5
    either way at two prior SDs. Override any entry with
    ``model.sample(priors={key: prior})``.

    Parameters
    ----------
    design : NonlinearDesign
    start : mapping or array, optional
        Start values as for ``nlmm(start=...)``; default the self-start values.
    overrides : mapping, optional
        User priors; if no start values can be found, Normal/StudentT priors
        for every fixed effect stand in for them.

    Raises
    ------
    PriorError
        When the mean function is not self-starting, no ``start`` is given and
        ``overrides`` does not give every fixed effect a prior.
    """
    centres = start_centres(design, start, overrides)
    scales = parameter_scales(design, centres)
    intercepts = intercept_columns(design)
    priors = PriorTable()
    position = 0
    for par in design.parameters:
        s_k = scales[par.name]
        for j, term in enumerate(par.fixed_terms):
            column = par.X[:, j]
            indicator = intercepts[par.name] is None and set(np.unique(column)) <= {0.0, 1.0}
            if position + j == intercepts[par.name] or indicator:
                priors[term] = Normal(float(centres[position + j]), FIXED_SCALE * s_k)
            else:
                s_x = float(np.std(column)) or 1.0
                priors[term] = Normal(float(centres[position + j]), FIXED_SCALE * s_k / s_x)
        position += par.X.shape[1]
    linear = design.linear_design()
    for block, (sd_keys, cor_key) in zip(design.blocks, block_keys(linear), strict=True):
        for t, key in enumerate(sd_keys):
            s_z = float(np.std(block.Z[:, t])) or 1.0
            priors[key] = HalfStudentT(3.0, scales[block.params[t]] / s_z)
        if cor_key is not None:
            priors[cor_key] = LKJ(2.0)
    priors["sigma"] = HalfStudentT(3.0, float(np.std(design.y_less_offset)) or 1.0)
    return priors


def resolve_priors(
    design: NonlinearDesign, overrides: Mapping[str, Prior] | None = None, start: Any = None
) -> PriorTable:
    """Default priors updated with the user's ``overrides`` (same keys).

    Raises
    ------
    PriorError
        For a key that is not a parameter of the model (the message lists close
        matches and all valid keys) or a prior of the wrong kind (an unbounded
        prior on an SD, a non-LKJ prior on a correlation...).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise PriorError(f"priors must be a dict of key -> prior, got {type(overrides).__name__}.")
    return apply_overrides(default_priors(design, start, overrides), overrides)


def resolve_nonlinear_priors(
    design: NonlinearDesign,
    residual: ResidualStructure | None,
    overrides: Mapping[str, Prior] | None = None,
    start: Any = None,
) -> tuple[PriorTable, list[StructureParameter]]:
    """Every prior (as :func:`resolve_priors`) and a residual structure's parameters
    (none without one; their priors by the keys of :mod:`bayesmix.bayes.residual_priors`)."""
    if residual is None:
        return resolve_priors(design, overrides, start), []
    from bayesmix.nonlinear.residual_bayes import structure_priors

    given = overrides if isinstance(overrides, Mapping) else None  # others refused there
    return structure_priors(design, residual, default_priors(design, start, given), overrides)


#: Chains start with random-effect SDs at this fraction of their prior scale.
START_SD_FRACTION = 0.1


def _start_small(model: Any, info: Any, sd_priors: list[Prior], hyper: Any) -> None:
    """Start a block's SDs at ``START_SD_FRACTION`` of their prior scale.

    PyMC would start a half-t SD at its wide scale, where individual curves
    scatter so far that warm-up can land in another mode (SSfol's flip-flop,
    lKa <-> lKe, was seen). The start is symbolic in ``hyper``, so a compiled
    model reused with other priors starts from the new ones.
    """

    cls = type(sd_priors[0])
    if any(type(p) is not cls for p in sd_priors):
        return  # mixed families: keep PyMC's default start
    params = hyper.params(f"sd:{info.tag}", cls, sd_priors[0])
    scale = 1.0 / params["lam"] if "lam" in params else params["sigma"]
    start = START_SD_FRACTION * scale
    # correlated blocks sampled on centred columns keep their free SDs as sdc_<tag>
    free = {v.name for v in model.free_RVs}
    name = info.sd_name if info.sd_name in free else f"sdc_{info.tag}"
    model.set_initval(model[name], start)


def build_nonlinear_pymc_model(
    design: NonlinearDesign,
    priors: Mapping[str, Prior],
    residual: ResidualStructure | None = None,
    structure: Sequence[StructureParameter] = (),
) -> Any:
    """Build the PyMC model of a nonlinear mixed model.

    Parameters
    ----------
    design : NonlinearDesign
    priors : mapping
        A complete prior table (see :func:`resolve_priors`, or
        :func:`~bayesmix.nonlinear.residual_bayes.resolve_nonlinear_priors` with a structure).
    residual : ResidualStructure, optional
        A variance function and/or correlation structure bound to the rows: the
        likelihood is then the whitened potential ``loglik_y`` with the structure's
        parameters and ``sigma_c`` (:mod:`bayesmix.nonlinear.residual_bayes`).
    structure : sequence of StructureParameter
        The structure's parameters, as ``resolve_nonlinear_priors`` returns them.

    Returns
    -------
    pymc.Model
        Variables ``beta`` (dims ``fixed``), ``sigma``, ``sd_<g>``, ``cor_<g>``
        (unstructured blocks with several terms) and ``r_<g>`` (dims ``<g>``,
        ``<g>_term``) as in :mod:`bayesmix.bayes.model`; data ``X``,
        ``codes_<g>``, ``Z_<g>``, ``x_<column>`` (mean-function covariates),
        ``y`` (less any offset), ``sqrt_w`` (with prior weights) and ``hyper``.
        With a structure, no ``y``/``sqrt_w``: the potential ``loglik_y`` instead.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from bayesmix.bayes.graph_inputs import HyperData, model_data, vector_rv
    from bayesmix.bayes.graph_parts import (
        block_effects,
        block_infos,
        effect_terms,
        matmul,
        model_coords,
        normal_likelihood,
    )

    linear = design.linear_design()
    infos = block_infos(linear)
    coords = model_coords(design.n_obs, design.fixed_terms, design.blocks, infos)
    intercepts = intercept_columns(design)
    # centre the non-intercept columns of parameters that have an intercept
    xbar, position = np.zeros(design.n_fixed), 0
    for par in design.parameters:
        width = par.X.shape[1]
        if intercepts[par.name] is not None and width > 1:
            xbar[position : position + width] = par.X.mean(axis=0)
            xbar[intercepts[par.name]] = 0.0
        position += width
    centred = bool(np.any(xbar))
    fixed_priors = [priors[t] for t in design.fixed_terms]
    hyper = HyperData()
    if fixed_priors:
        hyper.add_priors("beta", fixed_priors)
    if centred:
        hyper.add("xbar", xbar)
    for info in infos:
        hyper.add_priors(f"sd:{info.tag}", [priors[key] for key in info.sd_keys])
        if info.cor_key is not None:
            hyper.add(f"eta:{info.tag}", priors[info.cor_key].eta)
    hyper.add_priors("sigma", [priors["sigma"]], scalar=True)
    if residual is not None:
        from bayesmix.nonlinear.residual_bayes import add_structure, structured_likelihood

        add_structure(coords, hyper, residual, structure, priors)

    with pm.Model(coords=coords, check_bounds=False) as model:
        hyper.finalize()
        phi: dict[str, Any] = {}
        if fixed_priors:
            X = model_data("X", design.X, dims=("obs", "fixed"))
            beta_c = vector_rv(
                "beta_c" if centred else "beta", fixed_priors, "fixed", hyper, "beta"
            )
            beta = beta_c
        position = 0
        for par in design.parameters:
            width = par.X.shape[1]
            cols = slice(position, position + width)
            j0 = intercepts[par.name]
            if width == 0:
                phi[par.name] = pt.zeros(())
            elif width == 1 and j0 is not None:
                phi[par.name] = beta_c[position]  # a scalar, broadcast by the mean function
            else:
                phi[par.name] = matmul(X[:, cols], beta_c[cols])
            if centred and j0 is not None and width > 1:
                shift = matmul(hyper["xbar"][cols], beta_c[cols])
                phi[par.name] = phi[par.name] - shift
                beta = pt.set_subtensor(beta[j0], beta_c[j0] - shift)
            position += width
        if centred:
            pm.Deterministic("beta", beta, dims="fixed")
        for block, info in zip(design.blocks, infos, strict=True):
            zbar = np.zeros(block.n_terms)
            r = block_effects(block.random_block(), info, priors, zbar, hyper)
            _start_small(model, info, [priors[key] for key in info.sd_keys], hyper)
            terms = effect_terms(
                block.codes, np.asarray(block.Z, dtype=float), info, r, zbar, hyper
            )
            for name, term in zip(block.params, terms, strict=True):
                phi[name] = phi[name] + term
        covariates = {c: model_data(f"x_{c}", v, dims="obs") for c, v in design.covariates.items()}
        # y - offset ~ Normal(f, sigma / sqrt(w)) is y ~ Normal(offset + f, ...): as in the
        # linear engine the offset moves into the data, so the graph (and its compiled
        # code) is the same with or without one; results add it back
        mean = design.mean(pt, phi, covariates)
        if residual is not None:
            structured_likelihood(mean, design, residual, structure, priors, hyper)
        else:
            normal_likelihood(mean, design.y_less_offset, priors["sigma"], hyper, design.weights)
    return model


def sample_nonlinear(
    design: NonlinearDesign,
    *,
    priors: Mapping[str, Prior] | None = None,
    start: Any = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: Sampler = "nutpie",
    target_accept: float | None = None,
    random_seed: int | np.random.Generator | None = None,
    progressbar: bool | None = None,
    log_likelihood: bool | None = None,
    compile: CompileRoute = "auto",
    residual: ResidualStructure | None = None,
) -> NLBayesResult:
    """Draw from the posterior of a nonlinear mixed model with NUTS.

    Parameters
    ----------
    design : NonlinearDesign
    priors : mapping, optional
        Overrides of :func:`default_priors`, by the same keys.
    start : mapping or array, optional
        Start values the default priors are centred on (default: self-start).
    draws, tune, chains, sampler, target_accept, random_seed, progressbar, log_likelihood, compile
        As in :func:`bayesmix.bayes.fit.sample_model`.
    residual : ResidualStructure, optional
        nlme's variance function / correlation structure bound to the rows
        (``NonlinearMixedModel.residual``); its priors are overridden by the
        same ``priors`` dict (keys of :mod:`bayesmix.bayes.residual_priors`).

    Returns
    -------
    NLBayesResult
        A :class:`~bayesmix.nonlinear.residual_bayes.StructuredNLBayesResult`
        with a structure (``residual_parameters()``).

    Raises
    ------
    ArgumentError
        For a bad sampling option (checked before the model is built).
    PriorError
        For an unknown prior key or a prior of the wrong kind.

    Warns
    -----
    SamplingWarning
        On divergences, R-hat > 1.01 or bulk ESS < 400.
    """
    from bayesmix.bayes.residual_results import structured_pointwise_loglik
    from bayesmix.bayes.run import run_sampler
    from bayesmix.nonlinear.residual_bayes import check_rows, nonlinear_result

    options = check_sampling_args(  # before the model is built: bad options fail at once
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        random_seed=random_seed,
        compile=compile,
    )
    if residual is not None:
        check_rows(residual, design)
    all_priors, structure = resolve_nonlinear_priors(design, residual, priors, start)
    model = build_nonlinear_pymc_model(design, all_priors, residual, structure)

    def wrap(idata, timing):
        return nonlinear_result(design, idata, all_priors, sampler, timing, residual, structure)

    return run_sampler(
        model,
        design,
        wrap,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        loglik=None if residual is None else structured_pointwise_loglik,
        **options,
    )
