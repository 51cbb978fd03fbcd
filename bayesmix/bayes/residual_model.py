"""The PyMC model of a linear mixed model (or gls) with a residual structure, and its sampler.

``y ~ N(X beta + Z b, sigma^2 Lambda(u))`` with ``Lambda = G C G`` (nlme's
``weights=`` and ``correlation=``, :mod:`bayesmix.spec.residual_structure`).
The fixed effects, group effects and their priors are those of
:mod:`bayesmix.bayes.model` (centred fixed-effect columns, non-centred group
effects, :mod:`bayesmix.bayes.graph_parts`); the likelihood is written whitened,

    log p(y) = -1/2 |L_C^-1 e|^2 - sum log s_i - 1/2 log|C| - n/2 log(2 pi),

with ``s_i = sigma g_i / sqrt(w_i)`` the rows' residual SDs and ``e = (y - mu) / s``
(:mod:`bayesmix.bayes.residual_structures`: an O(n) recursion for corAR1 and
corCAR1, batched Cholesky factors otherwise), in one potential ``loglik_y``.

Parametrisation
---------------
* A variance function is sampled with ``sigma_c``, the residual SD at the
  geometric mean of the multipliers: ``s_i = sigma_c g_i / exp(mean log g)``.
  The ``"sigma"`` prior applies to ``sigma_c``; nlme's ``sigma`` (the SD where
  ``g = 1``) is the deterministic ``sigma = sigma_c exp(-mean log g)``. This keeps
  ``sigma`` and the variance parameters from trading off along a ridge (a
  power of the fitted values moves the SD scale by orders of magnitude).
* Functions of ``fitted(.)`` use the linear predictor with the group effects
  (and the offset), the same ``mu`` as the mean: one joint posterior, not nlme's
  alternation between fitted values and variance parameters.
* Structure parameters are sampled on their natural scale with the priors of
  :mod:`bayesmix.bayes.residual_priors` (named as there: ``delta``, ``power``,
  ``expon``, ``const``, ``Phi``, ``pacf_ar``/``pacf_ma`` with the
  deterministics ``Phi``/``Theta``, ``Rho``, ``corSymm_raw`` with the
  deterministic matrix ``corSymm``, ``range``, ``nugget``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.compile.nutpie import CompileRoute
from bayesmix.bayes.correlation_graphs import pacf_to_ar
from bayesmix.bayes.graph_inputs import PYMC_DIST, HyperData
from bayesmix.bayes.graph_parts import (
    block_centring,
    block_infos,
    centring_offsets,
    fixed_part,
    matmul,
    model_coords,
    random_part,
    residual_sd,
    scalar_rv,
)
from bayesmix.bayes.lkj import correlation_cholesky_entries, lower_triangular
from bayesmix.bayes.priors import Prior, intercept_index
from bayesmix.bayes.residual_priors import (
    Beta,
    LogNormal,
    StructureParameter,
    Uniform,
    resolve_structured_priors,
    within_distances,
)
from bayesmix.bayes.residual_structures import correlation_whiten, variance_log_sd
from bayesmix.bayes.run import Sampler, run_sampler
from bayesmix.bayes.validate import check_sampling_args
from bayesmix.errors import ArgumentError
from bayesmix.spec.design import Design
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = [
    "add_structure_hyper",
    "build_structured_model",
    "resolve_structured_priors",
    "sample_structured",
    "structure_coords",
    "structured_potential",
]

_DISTRIBUTIONS = {**PYMC_DIST, LogNormal: pm.LogNormal, Uniform: pm.Uniform}


def _dims(param: StructureParameter) -> str | None:
    return f"{param.key}_dim" if param.labels else None


def _structure_rv(param: StructureParameter, prior, hyper: HyperData) -> pt.TensorVariable:
    """The parameter's RV (or the deterministic of a rescaled Beta) on its natural scale."""
    dims = _dims(param)
    values = hyper.params(f"s:{param.key}", type(prior), prior)
    if isinstance(prior, Beta):
        lo, hi = param.bounds
        unit = pm.Beta(f"{param.key}_unit", **values, dims=dims)
        return pm.Deterministic(param.key, lo + (hi - lo) * unit, dims=dims)
    return _DISTRIBUTIONS[type(prior)](param.key, **values, dims=dims)


def add_structure_hyper(
    hyper: HyperData, params: Sequence[StructureParameter], priors: Mapping
) -> None:
    for param in params:
        prior = priors[param.key]
        if param.support == "lkj":
            hyper.add(f"eta:{param.key}", prior.eta)
        else:
            hyper.add_priors(f"s:{param.key}", [prior], scalar=True)


def structure_coords(residual: ResidualStructure, params: Sequence[StructureParameter]) -> dict:
    coords: dict[str, list[str]] = {}
    for param in params:
        if param.labels:
            coords[f"{param.key}_dim"] = list(param.labels)
        if param.role in ("pacf_ar", "pacf_ma"):
            letter = "Phi" if param.role == "pacf_ar" else "Theta"
            coords[f"{letter}_dim"] = list(param.labels)
        if param.role == "corSymm":
            times = [str(i + 1) for i in range(residual.correlation.n_times)]
            coords["corSymm_time"] = coords["corSymm_time2"] = times
    return coords


def _structure_values(
    residual: ResidualStructure,
    params: Sequence[StructureParameter],
    priors: Mapping,
    hyper: HyperData,
) -> tuple[pt.TensorVariable | None, tuple]:
    """The variance function's ``u`` and the correlation's natural parameters."""
    bound = residual.correlation
    u_parts: list[pt.TensorVariable] = []
    cor: dict[str, pt.TensorVariable] = {}
    for param in params:
        if param.support == "lkj":  # corSymm: the LKJ construction, raw values = the spec's u
            K = residual.correlation.n_times
            rows = correlation_cholesky_entries(param.key, K, hyper[f"eta:{param.key}"])
            L = lower_triangular(rows)
            pm.Deterministic(param.key, matmul(L, L.T), dims=("corSymm_time", "corSymm_time2"))
            cor["corSymm"] = L
            continue
        value = _structure_rv(param, priors[param.key], hyper)
        if param.role == "range" and not isinstance(priors[param.key], Beta):
            # start near independence: at the prior's centre a Gaussian correlation
            # can be numerically singular (BodyWeight: 2 of 4 chains stuck at log
            # density -1e13), and the sampler moves out from the well-conditioned side
            pm.modelcontext(None).set_initval(value, float(np.min(within_distances(bound))))
        if param.role in ("delta", "const"):
            u_parts.append(pt.log(value).reshape((-1,)))
        elif param.role in ("power", "expon"):
            u_parts.append(value.reshape((-1,)))
        else:
            cor[param.role] = value
    u_var = pt.concatenate(u_parts) if u_parts else None
    if bound is None:
        return u_var, ()
    kind = bound.kind
    if kind in ("corAR1", "corCAR1"):
        return u_var, (cor["Phi"],)
    if kind == "corARMA":
        p, q = bound.spec.p, bound.spec.q
        phi = pacf_to_ar(cor["pacf_ar"], p) if p else pt.zeros(0)
        theta = -pacf_to_ar(cor["pacf_ma"], q) if q else pt.zeros(0)
        if p:
            phi = pm.Deterministic("Phi", phi, dims="Phi_dim")
        if q:
            theta = pm.Deterministic("Theta", theta, dims="Theta_dim")
        return u_var, (phi, theta)
    if kind == "corCompSymm":
        return u_var, (cor["Rho"],)
    if kind == "corSymm":
        return u_var, (cor["corSymm"],)
    return u_var, (cor["range"], cor.get("nugget"))


def build_structured_model(
    design: Design,
    residual: ResidualStructure,
    priors: Mapping[str, object],
    params: Sequence[StructureParameter],
) -> pm.Model:
    """The PyMC model of ``design`` with the residual structure ``residual``.

    Parameters
    ----------
    design : Design
        The model's design (its offset is absorbed here).
    residual : ResidualStructure
        The structure bound to the design's rows.
    priors : mapping
        Every prior by key, as :func:`resolve_structured_priors` returns them.
    params : sequence of StructureParameter
        The structure's parameters, as :func:`resolve_structured_priors` returns them.

    Returns
    -------
    pymc.Model
        The variables of :func:`bayesmix.bayes.model.build_pymc_model` (``beta``,
        ``sigma``, ``sd_<tag>``, ``r_<tag>``...), the structure's parameters and
        the potential ``loglik_y``.
    """
    offset = np.asarray(design.offset_or_zero, dtype=float)
    design = design.offset_absorbed()
    infos = block_infos(design)
    coords = model_coords(design.n_obs, design.fixed_terms, design.blocks, infos)
    coords.update(structure_coords(residual, params))
    j0 = intercept_index(design)
    zbars = [block_centring(block) for block in design.blocks]
    fixed_priors = [priors[name] for name in design.fixed_terms]
    hyper = HyperData()
    hyper.add_priors("beta", fixed_priors)
    hyper.add("xbar", centring_offsets(design))
    for info, zbar in zip(infos, zbars, strict=True):
        hyper.add_priors(f"sd:{info.tag}", [priors[key] for key in info.sd_keys])
        if info.cor_key is not None:
            hyper.add(f"eta:{info.tag}", priors[info.cor_key].eta)
        if np.any(zbar):
            hyper.add(f"zbar:{info.tag}", zbar)
    hyper.add_priors("sigma", [priors["sigma"]], scalar=True)
    add_structure_hyper(hyper, params, priors)

    with pm.Model(coords=coords, check_bounds=False) as model:
        hyper.finalize()
        _, mu, _ = fixed_part("beta", design.X, fixed_priors, hyper, j0)
        for term in random_part(design, infos, zbars, priors, hyper):
            mu = mu + term
        structured_potential(residual, params, priors, hyper, mu, design.y, offset, design.weights)
        if residual.uses_fitted:
            _start_with_small_effects(model, design, infos, priors)
    return model


def structured_potential(
    residual: ResidualStructure,
    params: Sequence[StructureParameter],
    priors: Mapping[str, object],
    hyper: HyperData,
    mu: pt.TensorVariable,
    y: np.ndarray,
    offset: np.ndarray,
    weights: np.ndarray | None = None,
) -> None:
    """The structure's parameters and the whitened likelihood, the potential ``loglik_y``.

    ``mu`` is the mean less the offset (random effects included), ``y`` the response
    less the offset; ``mu + offset`` are the fitted values of a variance function of
    ``fitted(.)``; ``weights`` prior weights (row SD ``sigma g_i / sqrt(w_i)``). The
    priors' values are in ``hyper`` (:func:`add_structure_hyper`). Also used by the
    nonlinear model (:mod:`bayesmix.nonlinear.residual_bayes`).
    """
    u_var, cor_params = _structure_values(residual, params, priors, hyper)
    n = len(y)
    if residual.variance is not None:
        fitted = mu + offset if residual.uses_fitted else None
        u_var = pt.zeros(0) if u_var is None else u_var  # varFixed: no parameters
        log_g = variance_log_sd(residual.variance, u_var, fitted)
        centre = pt.mean(log_g)
        sigma_c = scalar_rv("sigma_c", priors["sigma"], hyper, "sigma")
        pm.Deterministic("sigma", sigma_c * pt.exp(-centre))
        log_s = pt.log(sigma_c) + (log_g - centre)
    else:
        log_s = pt.log(residual_sd(priors["sigma"], hyper)) * pt.ones(n)
    if weights is not None:  # prior weights: SD sigma g / sqrt(w)
        log_s = log_s - 0.5 * np.log(np.asarray(weights, dtype=float))
    e = (pt.as_tensor_variable(np.asarray(y, dtype=float)) - mu) * pt.exp(-log_s)
    log_det = pt.zeros(())
    if residual.correlation is not None:
        e, log_det = correlation_whiten(residual.correlation, cor_params, e, keep_order=False)
    loglik = -0.5 * pt.sum(e**2) - pt.sum(log_s) - 0.5 * log_det
    pm.Potential("loglik_y", loglik - 0.5 * n * np.log(2.0 * np.pi))


#: With a variance function of the fitted values, chains start with group SDs of this
#: fraction of the response's SD (per unit of the effect's column; see below).
FITTED_START_SD = 0.05


def _start_with_small_effects(model: pm.Model, design: Design, infos, priors: Mapping) -> None:
    """Start the group SDs small when the variance depends on the fitted values.

    The default start (the SD priors' central values, jittered) gives group
    effects as large as the response's spread, so some groups start with
    fitted values near 0 or of the wrong sign. ``|mu|^power`` there turns
    into a trap: BodyWeight's ``varPower()`` stuck 3 of 4 chains at power -0.8,
    a local mode 40-540 log-density units below the posterior's. Group SDs
    of ``FITTED_START_SD * sd(y) / sd(z)`` keep every start's fitted values
    near the fixed-effects fit; the sampler moves them within its warm-up.
    """
    y = np.asarray(design.y, dtype=float)
    s_y = float(np.std(y)) or 1.0
    by_name = {rv.name: rv for rv in model.free_RVs}
    for block, info in zip(design.blocks, infos, strict=True):
        values = []
        for k in range(block.n_terms):
            s_z = float(np.std(np.asarray(block.Z[:, k], dtype=float)))
            values.append(FITTED_START_SD * s_y / (s_z if s_z > 1e-12 else 1.0))
        values = np.asarray(values)
        types = [type(priors[key]) for key in info.sd_keys]
        for base in (info.sd_name, f"sdc_{info.tag}"):
            if base in by_name:
                model.set_initval(by_name[base], values)
            for cls in dict.fromkeys(types):  # a vector split by prior family
                name = f"{base}_{cls.__name__}"
                if name in by_name:
                    idx = [i for i, t in enumerate(types) if t is cls]
                    model.set_initval(by_name[name], values[idx])


def sample_structured(
    design: Design,
    residual: ResidualStructure,
    *,
    priors: Mapping[str, Prior] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: Sampler = "nutpie",
    random_seed: int | np.random.Generator | None = None,
    progressbar: bool | None = None,
    target_accept: float | None = None,
    log_likelihood: bool | None = None,
    compile: CompileRoute = "auto",
):
    """Draw from the posterior of a model with a residual variance function and/or
    correlation structure.

    Parameters
    ----------
    design : Design
        The model's design.
    residual : ResidualStructure
        Its structure bound to the design's rows (``LinearMixedModel.residual``).
    priors : mapping, optional
        Overrides by key: those of :mod:`bayesmix.bayes.priors` and the
        structure's (:mod:`bayesmix.bayes.residual_priors`).
    draws, tune, chains, sampler, random_seed, progressbar, target_accept
        As :func:`bayesmix.bayes.fit.sample_model`.
    log_likelihood : bool, optional
        Store the pointwise log-likelihood (the leave-one-out predictive
        densities ``p(y_i | y_-i)`` of the correlated model, see
        :func:`bayesmix.bayes.residual_results.structured_pointwise_loglik`).
        Default: when draws x observations <= 25 million.
    compile : {"auto", "generic", "python", "cfunc"}
        How nutpie gets the log density (:mod:`bayesmix.bayes.compile.nutpie`);
        "auto" runs the generic kernel for the structures it covers
        (:mod:`bayesmix.bayes.generic.residual_program`).

    Returns
    -------
    StructuredBayesResult
        A :class:`~bayesmix.bayes.results.BayesResult` (``fixef``, ``ranef``,
        ``varcorr``, ``summary``...) with :meth:`residual_parameters`.

    Raises
    ------
    ArgumentError
        For a bad sampling option or a missing structure (checked before building).
    PriorError
        For an unknown prior key or a prior of the wrong kind.
    """
    from bayesmix.bayes.residual_results import (
        StructuredBayesResult,
        structured_pointwise_loglik,
    )

    options = check_sampling_args(
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        random_seed=random_seed,
        compile=compile,
    )
    if not isinstance(residual, ResidualStructure):
        raise ArgumentError(
            "residual must be the model's bound ResidualStructure (model.residual), "
            f"got {type(residual).__name__}; models without one sample with sample_model()."
        )
    n_bound = _bound_rows(residual, design.n_obs)
    if n_bound != design.n_obs:
        raise ArgumentError(
            f"residual is bound to {n_bound} rows, but the design has {design.n_obs}; "
            "bind the structure to this design's rows (bind_residual)."
        )
    model_design = design.offset_absorbed()
    all_priors, params = resolve_structured_priors(model_design, residual, priors)
    model = build_structured_model(design, residual, all_priors, params)
    program = None
    if options["sampler"] == "nutpie":
        from bayesmix.bayes.generic.residual_program import structured_program

        program = structured_program(
            model, design, residual, all_priors, params, route=options["compile"]
        )

    def wrap(idata, timing):
        return StructuredBayesResult(
            design=design,
            idata=idata,
            priors=all_priors,
            sampler=sampler,
            timing=timing,
            residual=residual,
            structure=tuple(params),
        )

    return run_sampler(
        model,
        model_design,
        wrap,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        loglik=structured_pointwise_loglik,
        program=program,
        **options,
    )


def _bound_rows(residual: ResidualStructure, n: int) -> int:
    """The number of rows the structure is bound to."""
    if residual.correlation is not None:
        return len(residual.correlation.group_codes)
    return len(residual.log_sd(residual.start, np.ones(n)))
