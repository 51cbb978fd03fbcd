"""The pieces of a PyMC mixed model that every likelihood form shares.

:func:`bayesmix.bayes.model.build_pymc_model` assembles them into the graph
likelihood or the fused one; :mod:`bayesmix.bayes.likelihoods.collapsed_model`
into the collapsed one. Their parametrisation (centred fixed effects, centred
columns of correlated blocks, non-centred group effects, products written for
numba's compile time) is described in :mod:`bayesmix.bayes.model`.

Notation
--------
X : (n, p) fixed-effects matrix; beta_c : coefficients of its centred columns.
Z, codes : a block's columns and level indices; r : its group effects.
sigma : residual SD; hyper : the vector of prior parameters and centring offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.bayes.graph_inputs import PYMC_DIST, HyperData, model_data, vector_rv
from bayesmix.bayes.lkj import correlation_cholesky_entries, lower_triangular
from bayesmix.bayes.priors import Prior, block_keys, intercept_index
from bayesmix.spec.design import Design, RandomBlock

#: Above this many entries in X, ``X @ beta`` uses BLAS ``Dot``: its extra compile time
#: is then small next to sampling, which it speeds up (InstEval: 0.45 vs 0.61 ms a gradient).
DOT_MIN_SIZE = 50_000
#: Up to this many fixed-effect columns, ``X @ beta`` is a sum of column-times-scalar
#: products (columns of ones skipped), which numba compiles and runs fastest.
COLUMNWISE_MAX_COLUMNS = 8


def fixed_predictor(X: pt.TensorVariable, beta: pt.TensorVariable, x_values) -> pt.TensorVariable:
    """``X @ beta``, written the way that compiles and runs fastest for this X."""
    x_values = np.asarray(x_values)
    n, p = x_values.shape
    if p == 0:
        return pt.zeros(n)
    if p <= COLUMNWISE_MAX_COLUMNS:
        terms = [beta[j] if np.all(x_values[:, j] == 1.0) else X[:, j] * beta[j] for j in range(p)]
        total = sum(terms[1:], terms[0])
        return total if total.ndim else total + pt.zeros(n)  # only columns of ones: broadcast
    return pt.dot(X, beta) if x_values.size > DOT_MIN_SIZE else matmul(X, beta)


def matmul(a: pt.TensorVariable, b: pt.TensorVariable) -> pt.TensorVariable:
    """``a @ b`` (matrix or vector ``b``) as a broadcast product and sum.

    Numba needs ~20 s more to compile a graph holding PyTensor's BLAS ``Dot`` (and
    its gradient) than the same product written elementwise; the products here are
    thin (few columns), where the elementwise form is as fast to run.
    """
    if b.ndim == 1:
        return (a * b[None, :]).sum(axis=-1) if a.ndim == 2 else (a * b).sum()
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)


@dataclass(frozen=True)
class BlockInfo:
    """Names the model uses for one random block."""

    tag: str
    level_dim: str
    term_dim: str
    sd_keys: tuple[str, ...]
    cor_key: str | None

    @property
    def r_name(self) -> str:
        return f"r_{self.tag}"

    @property
    def sd_name(self) -> str:
        return f"sd_{self.tag}"

    @property
    def cor_name(self) -> str:
        return f"cor_{self.tag}"


def block_infos(design: Design) -> list[BlockInfo]:
    """Variable and dimension names of every block, in design order."""
    counts: dict[str, int] = {}
    infos = []
    for block, (sd_keys, cor_key) in zip(design.blocks, block_keys(design), strict=True):
        counts[block.grouping] = counts.get(block.grouping, 0) + 1
        n = counts[block.grouping]
        tag = block.grouping if n == 1 else f"{block.grouping}__{n}"
        infos.append(BlockInfo(tag, tag, f"{tag}_term", tuple(sd_keys), cor_key))
    return infos


def centring_offsets(design: Design) -> np.ndarray:
    """Column means subtracted from ``X`` when sampling (zeros without an intercept)."""
    j0 = intercept_index(design)
    xbar = np.zeros(design.n_fixed)
    if j0 is not None:
        xbar = np.asarray(design.X, dtype=float).mean(axis=0)
        xbar[j0] = 0.0
    return xbar


def block_centring(block: RandomBlock, mode: str = "auto") -> np.ndarray:
    """Column means subtracted from a block's Z when sampling (see module docstring).

    Non-zero only for unstructured blocks with an intercept column and other
    columns (diagonal blocks are never centred: that would correlate them).
    ``mode="auto"`` centres a column only when 0 lies outside its observed
    range, i.e. when the block's intercept is an extrapolation.
    """
    zbar = np.zeros(block.n_terms)
    ones = [k for k in range(block.n_terms) if np.allclose(block.Z[:, k], 1.0)]
    if mode == "never" or not (
        block.covariance == "unstructured" and block.n_terms > 1 and len(ones) == 1
    ):
        return zbar
    Z = np.asarray(block.Z, dtype=float)
    for k in range(block.n_terms):
        outside = Z[:, k].min() > 0 or Z[:, k].max() < 0
        if k != ones[0] and (mode == "always" or outside):
            zbar[k] = Z[:, k].mean()
    return zbar


def block_effects(
    block: RandomBlock,
    info: BlockInfo,
    priors: Mapping[str, Prior],
    zbar: np.ndarray,
    hyper: HyperData,
    centred: np.ndarray | None = None,
) -> list[pt.TensorVariable]:
    """Group effects of one block on centred columns, non-centred, one vector per term.

    ``centred`` (one-term blocks only; a boolean per level) samples those
    levels' effects centred instead: ``z0_<tag>`` holds the effect itself,
    ``Normal(0, sd)``, where the other levels hold ``effect / sd``.

    Returns the columns (one ``(levels,)`` vector per term) of the effects of
    the centred columns; the deterministics ``r_<tag>``, ``sd_<tag>`` and
    ``cor_<tag>`` are those of the original columns. The log density sees
    only scalar-times-vector products (``r_i = sum_j sd_i L_ij z_j``): numba
    compiles these faster than matrix products and their broadcasts.
    """
    sd_priors = [priors[key] for key in info.sd_keys]
    dims = (info.level_dim, info.term_dim)
    if block.n_terms == 1:  # a vector: no column to slice out (or gradient to scatter back)
        sd = vector_rv(info.sd_name, sd_priors, info.term_dim, hyper, f"sd:{info.tag}")
        if centred is not None and np.any(centred):
            # a standard-normal prior corrected to Normal(0, sd) on the centred levels:
            # a masked sum of squares, where a vector of per-level prior SDs would
            # cost a logarithm per level (InstEval: 0.41 -> 0.31 ms a gradient)
            mask = np.asarray(centred, dtype=float)
            z = pm.Normal(f"z0_{info.tag}", 0.0, 1.0, dims=info.level_dim)
            correction = -0.5 * (1.0 / sd[0] ** 2 - 1.0) * pt.sum(mask * z**2)
            pm.Potential(f"centred_{info.tag}", correction - mask.sum() * pt.log(sd[0]))
            column = z * (sd[0] + mask * (1.0 - sd[0]))
        else:
            column = pm.Normal(f"z0_{info.tag}", 0.0, 1.0, dims=info.level_dim) * sd[0]
        pm.Deterministic(info.r_name, column[:, None], dims=dims)
        return [column]
    # one standard-normal vector per term: no column slicing in the log density,
    # and no gradient scattered back into (and reshaped out of) a matrix
    z_columns = [
        pm.Normal(f"z{j}_{info.tag}", 0.0, 1.0, dims=info.level_dim) for j in range(block.n_terms)
    ]
    z = pt.stack(z_columns, axis=1)
    if info.cor_key is None:
        sd = vector_rv(info.sd_name, sd_priors, info.term_dim, hyper, f"sd:{info.tag}")
        columns = [z_columns[j] * sd[j] for j in range(block.n_terms)]
        pm.Deterministic(info.r_name, z * sd[None, :], dims=dims)
        return columns
    sd_name = info.sd_name if not np.any(zbar) else f"sdc_{info.tag}"
    sd = vector_rv(sd_name, sd_priors, info.term_dim, hyper, f"sd:{info.tag}")
    L = correlation_cholesky_entries(f"corr_{info.tag}", block.n_terms, hyper[f"eta:{info.tag}"])
    columns = [
        sd[i] * sum((L[i][j] * z_columns[j] for j in range(1, i + 1)), L[i][0] * z_columns[0])
        for i in range(block.n_terms)
    ]
    r = pt.stack(columns, axis=1)
    corr_chol = lower_triangular(L)
    if not np.any(zbar):
        corr = matmul(corr_chol, corr_chol.T)
        pm.Deterministic(info.cor_name, corr, dims=(info.term_dim, f"{info.term_dim}2"))
        pm.Deterministic(info.r_name, r, dims=dims)
        return columns
    # back to the original columns: intercept_orig = intercept_c - zbar @ slopes
    chol = sd[:, None] * corr_chol
    j0 = next(k for k in range(block.n_terms) if np.allclose(block.Z[:, k], 1.0))
    shift = pt.set_subtensor(pt.eye(block.n_terms)[j0], -hyper[f"zbar:{info.tag}"])
    shift = pt.set_subtensor(shift[j0, j0], 1.0)
    cov = matmul(matmul(shift, matmul(chol, chol.T)), shift.T)
    sd = pt.sqrt(pt.diag(cov))
    pm.Deterministic(info.sd_name, sd, dims=info.term_dim)
    pm.Deterministic(
        info.cor_name, cov / (sd[:, None] * sd[None, :]), dims=(info.term_dim, f"{info.term_dim}2")
    )
    pm.Deterministic(info.r_name, matmul(r, shift.T), dims=dims)
    return columns


def effect_terms(
    codes_values,
    z_values,
    info: BlockInfo,
    columns: Sequence[pt.TensorVariable],
    zbar: np.ndarray,
    hyper: HyperData,
) -> list[pt.TensorVariable]:
    """Each term's part of the linear predictor, ``Z[:, j] * r_j[codes]`` (one per term).

    Group effects enter by integer indexing, never a dense Z; the product is
    skipped for columns of ones, and ``Z`` is centred like the block's effects.
    """
    z_values = np.asarray(z_values, dtype=float)
    codes = model_data(f"codes_{info.tag}", codes_values, dims="obs", dtype="int64")
    Z = model_data(f"Z_{info.tag}", z_values, dims=("obs", info.term_dim))
    if np.any(zbar):
        Z = Z - hyper[f"zbar:{info.tag}"][None, :]
    terms = []
    for k, column in enumerate(columns):
        term = column[codes]
        terms.append(term if np.allclose(z_values[:, k], 1.0) else Z[:, k] * term)
    return terms


def fixed_part(
    name: str,
    x_values,
    priors: Sequence[Prior],
    hyper: HyperData,
    j0: int | None,
    *,
    dim: str = "fixed",
    xbar_key: str = "xbar",
    intercept_offset: pt.TensorVariable | None = None,
) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable | None]:
    """Coefficients ``name`` of the columns ``x_values`` and their part of the predictor.

    With an intercept (column ``j0``) the coefficients are sampled on centred
    columns (``<name>_c``, the centring offsets ``hyper[xbar_key]``) and
    ``name`` is a deterministic of the original columns; their prior
    parameters are ``hyper``'s under the prefix ``name``. ``intercept_offset``
    (with an intercept) is subtracted from the reported intercept only: the
    sampled one then absorbs the mean group intercepts (see
    :mod:`bayesmix.bayes.glmm_model`).

    Returns
    -------
    beta_c, predictor, shift
        The sampled coefficients, ``X @ beta_c - shift`` and ``shift = xbar @
        beta_c`` (``None`` without an intercept, where ``beta_c`` is ``name``).
    """
    X = model_data("X" if name == "beta" else f"X_{name}", x_values, dims=("obs", dim))
    if j0 is None:
        beta_c = vector_rv(name, priors, dim, hyper, name)
        return beta_c, fixed_predictor(X, beta_c, x_values), None
    beta_c = vector_rv(f"{name}_c", priors, dim, hyper, name)
    shift = matmul(hyper[xbar_key], beta_c)
    intercept = beta_c[j0] - shift
    if intercept_offset is not None:
        intercept = intercept - intercept_offset
    pm.Deterministic(name, pt.set_subtensor(beta_c[j0], intercept), dims=dim)
    return beta_c, fixed_predictor(X, beta_c, x_values) - shift, shift


def random_part(
    design: Design,
    infos: Sequence[BlockInfo],
    zbars: Sequence[np.ndarray],
    priors: Mapping[str, Prior],
    hyper: HyperData,
) -> list[pt.TensorVariable]:
    """Every block's terms of the linear predictor (:func:`block_effects`, :func:`effect_terms`)."""
    terms: list[pt.TensorVariable] = []
    for block, info, zbar in zip(design.blocks, infos, zbars, strict=True):
        r = block_effects(block, info, priors, zbar, hyper)
        terms += effect_terms(block.codes, block.Z, info, r, zbar, hyper)
    return terms


def scalar_rv(name: str, prior: Prior, hyper: HyperData, prefix: str) -> pt.TensorVariable:
    """A scalar RV with the prior ``prior``, its parameters ``hyper``'s under ``prefix``."""
    return PYMC_DIST[type(prior)](name, **hyper.params(prefix, type(prior), prior))


def residual_sd(sigma_prior: Prior, hyper: HyperData) -> pt.TensorVariable:
    """The residual SD ``sigma``."""
    return scalar_rv("sigma", sigma_prior, hyper, "sigma")


def normal_likelihood(
    mu: pt.TensorVariable, y_values, sigma_prior: Prior, hyper: HyperData, weights=None
) -> None:
    """The residual SD ``sigma`` and the observed ``y_obs ~ Normal(mu, sigma / sqrt(w))``."""
    sigma = residual_sd(sigma_prior, hyper)
    y = model_data("y", y_values, dims="obs")
    if weights is not None:  # prior weights: row i has residual variance sigma^2 / w_i
        sigma = sigma / model_data("sqrt_w", np.sqrt(weights), dims="obs")
    pm.Normal("y_obs", mu=mu, sigma=sigma, observed=y, dims="obs")


def model_coords(
    n_obs: int, fixed_terms: Sequence[str], blocks: Sequence, infos: Sequence[BlockInfo]
) -> dict[str, Sequence]:
    """PyMC coordinates: observations, fixed terms, and each block's levels and terms."""
    coords: dict[str, Sequence] = {"obs": np.arange(n_obs), "fixed": list(fixed_terms)}
    for block, info in zip(blocks, infos, strict=True):
        coords[info.level_dim] = [str(level) for level in block.levels]
        coords[info.term_dim] = list(block.terms)
        if info.cor_key is not None:
            coords[f"{info.term_dim}2"] = list(block.terms)
    return coords
