"""Gaussian likelihood with the fixed effects and some group effects integrated out.

For a Gaussian linear mixed model, any set of coefficients with a Gaussian
prior can be integrated out of the likelihood exactly. NUTS then samples the
other group effects and the variance parameters only, and the integrated-out
("collapsed") coefficients are drawn afterwards from their Gaussian
conditional posterior (:mod:`bayesmix.bayes.likelihoods.collapsed_draws`), which gives the
same joint posterior. bayesmix collapses the fixed effects (with their Normal
priors), the blocks with few coefficients, and one large one-term block; the
effects of the remaining one-term blocks are sampled centred where their data
are strong (:func:`centred_levels`). On InstEval (``(1 | s) + (1 | d) +
(1 | dept:service)``: ``beta``, ``dept:service`` and ``d`` collapsed, ``s``
sampled), the Intercept, the 28 ``dept:service`` effects and their SD stop
being the slowest-mixing parameters (their ESS went from about 550 to above
3,000 in 4,000 draws) and NUTS takes 15 leapfrog steps per draw instead of 30
(2026-12, 4 chains x 1000 draws, seeds 1 and 2).

Notation: ``r = y - Z_s e`` the data minus the sampled group effects ``e``;
``W = [X_c, Z_f]`` the collapsed columns: ``X_c`` (fixed-effect columns,
centred as in :mod:`bayesmix.bayes.model`, then the columns of the small
blocks' levels) and ``Z_f`` (the columns of the large one-term block's levels);
``gamma ~ N(m0, V0)`` their coefficients, ``V0`` diagonal (the fixed effects'
prior variances, each block term's ``sd^2``)::

    log p(y | e) = log N(r | W m0, sigma^2 I + W V0 W')
                 = -n log sigma - n/2 log 2 pi - Q / (2 sigma^2) - m0' V0^-1 m0 / 2
                   + h' A^-1 h / 2 - log|V0| / 2 - log|A| / 2,
    A = V0^-1 + W'W / sigma^2,   h = V0^-1 m0 + W'r / sigma^2,   Q = r'r.

The ``Z_f`` block of ``A`` is diagonal (``D``: each observation lies in one
level), so ``A`` is solved through the Schur complement ``S = A_cc - B' D^-1 B``
of that block (``B = Z_f' X_c / sigma^2``, sparse), a small dense matrix: a
log density evaluation is one pass over the data
(:class:`~bayesmix.bayes.likelihoods.collapsed_kernels.ResidualMoments`, returning ``Q`` and
``t = W'r``), a few sparse products and one small Cholesky factor
(:class:`~bayesmix.bayes.likelihoods.collapsed_marginal.CollapsedMarginal`). The gradient with
respect to ``e`` is ``-(M g_t + 2 g_Q Z_s'r)`` with ``M = Z_s'W`` a constant
sparse matrix, so it needs no second pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp

from bayesmix.bayes.likelihoods.collapsed_kernels import ResidualMoments, csr_arrays, sparse_product
from bayesmix.bayes.likelihoods.collapsed_marginal import CollapsedMarginal
from bayesmix.bayes.likelihoods.numba_kernels import pack_columns
from bayesmix.bayes.priors import Normal, Prior
from bayesmix.spec.design import Design, RandomBlock

#: A sampled level's effect is sampled centred when ``n_j tau^2 / sigma^2`` exceeds this.
CENTRE_THRESHOLD = 1.0
#: Most coefficients solved densely: the fixed effects plus the small blocks' effects.
DENSE_MAX = 64


@dataclass(frozen=True)
class CollapsePlan:
    """Which blocks the likelihood integrates out, by index into ``design.blocks``.

    ``dense``: small blocks collapsed with the fixed effects; ``diagonal``: the
    large one-term block collapsed through its diagonal precision (or None);
    every other block is sampled.
    """

    dense: tuple[int, ...]
    diagonal: int | None

    def sampled(self, design: Design) -> list[int]:
        out = set(self.dense) | ({self.diagonal} if self.diagonal is not None else set())
        return [i for i in range(len(design.blocks)) if i not in out]


def n_coefficients(block: RandomBlock) -> int:
    return len(block.levels) * block.n_terms


def collapse_plan(design: Design, priors: Mapping[str, Prior]) -> CollapsePlan | None:
    """The blocks to integrate out, or None when the fixed effects cannot be.

    Needs Normal priors on every fixed effect. Blocks whose effects are
    independent a priori (one term, or ``||``) are collapsed densely from the
    smallest while the dense part stays at most ``DENSE_MAX`` coefficients; of
    the remaining one-term blocks, the one with the most observations per level
    (the best identified, so the worst for non-centred sampling) is collapsed
    through its diagonal precision.
    """
    if not all(isinstance(priors[name], Normal) for name in design.fixed_terms):
        return None
    independent = [
        i
        for i, block in enumerate(design.blocks)
        if block.n_terms == 1 or block.covariance == "diagonal"
    ]
    size = design.n_fixed
    dense = []
    for i in sorted(independent, key=lambda i: n_coefficients(design.blocks[i])):
        if size + n_coefficients(design.blocks[i]) <= DENSE_MAX:
            dense.append(i)
            size += n_coefficients(design.blocks[i])
    large = [i for i in independent if i not in dense and design.blocks[i].n_terms == 1]
    diagonal = max(large, key=lambda i: design.n_obs / len(design.blocks[i].levels), default=None)
    return CollapsePlan(tuple(sorted(dense)), diagonal)


def centred_levels(block: RandomBlock, y: np.ndarray) -> np.ndarray:
    """Levels of a sampled one-term block whose effects NUTS samples centred.

    A level's effect is sampled centred when its data outweigh its prior,
    ``n_j tau^2 / sigma^2 > 1``, and non-centred otherwise (the usual rule for
    choosing between the two, e.g. Papaspiliopoulos, Roberts & Skold 2007).
    ``tau^2`` and ``sigma^2`` are rough moment estimates from the level means
    of ``y`` (between- and pooled within-level variances), which suffice for a
    threshold: on InstEval's students (median 22 ratings; 63% above the
    threshold), it raised the ESS of ``sd(1|s)`` from 925 to 1,601 in 4,000
    draws and cut the leapfrog steps per draw from 18 to 15 (seed 2).
    """
    codes = np.asarray(block.codes)
    y = np.asarray(y, dtype=float)
    n_levels = len(block.levels)
    counts = np.bincount(codes, minlength=n_levels).astype(float)
    z = np.asarray(block.Z[:, 0], dtype=float)
    seen = counts > 0
    level_means = np.bincount(codes, weights=y, minlength=n_levels) / np.maximum(counts, 1)
    means = level_means[seen]
    within = float(np.sum((y - level_means[codes]) ** 2)) / max(y.size - seen.sum(), 1)
    tau2 = max(float(np.var(means)) - float(np.mean(within / counts[seen])), 0.0)
    strength = np.bincount(codes, weights=z * z, minlength=n_levels)
    return strength * tau2 / max(within, 1e-300) > CENTRE_THRESHOLD


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class CollapsedColumns:
    """The constant arrays of the collapsed likelihood (see the module docstring).

    ``W`` (n x n_t, sparse) is ``[X_c, Z_f]``; its first ``p_c`` columns are
    dense (fixed effects, then each dense block term's levels). ``sd_term[j]``
    says which collapsed block term scales the prior of dense coefficient ``j``
    (an index into ``terms``, the (block, term) pairs of the dense blocks;
    ``-1`` for a fixed effect).
    """

    W: sp.csc_matrix
    p_c: int
    n_fixed: int
    sd_term: np.ndarray
    terms: tuple[tuple[int, int], ...]
    diagonal_codes: np.ndarray | None  # each row's level of the diagonal block
    diagonal_z: np.ndarray | None  # ... and the row's value of its column

    @property
    def n_t(self) -> int:
        return self.W.shape[1]

    @property
    def n_f(self) -> int:
        return self.n_t - self.p_c


def level_columns(block: RandomBlock, z: np.ndarray) -> sp.csc_matrix:
    """Sparse n x levels matrix of a column ``z`` of ``block``: ``z`` in each row's level."""
    z = np.asarray(z, dtype=float)
    return sp.csc_matrix((z, (np.arange(z.size), block.codes)), shape=(z.size, len(block.levels)))


def block_columns(block: RandomBlock, k: int) -> sp.csc_matrix:
    """Sparse n x levels matrix of term ``k`` of ``block``."""
    return level_columns(block, block.Z[:, k])


def collapsed_columns(design: Design, plan: CollapsePlan, xbar: np.ndarray) -> CollapsedColumns:
    """``W`` and the layout of the collapsed coefficients (fixed, dense terms, diagonal)."""
    parts = [sp.csc_matrix(np.asarray(design.X, dtype=float) - xbar[None, :])]
    sd_term = [-1] * design.n_fixed
    terms = []
    for i in plan.dense:
        for k in range(design.blocks[i].n_terms):
            parts.append(block_columns(design.blocks[i], k))
            sd_term += [len(terms)] * len(design.blocks[i].levels)
            terms.append((i, k))
    codes = z = None
    if plan.diagonal is not None:
        block = design.blocks[plan.diagonal]
        parts.append(block_columns(block, 0))
        codes, z = np.asarray(block.codes), np.asarray(block.Z[:, 0], dtype=float)
    W = sp.hstack(parts, format="csc")
    sd_term = np.array(sd_term, dtype=int)
    return CollapsedColumns(W, sd_term.size, design.n_fixed, sd_term, tuple(terms), codes, z)


@dataclass(frozen=True, eq=False)
class SampledTerm:
    """One sampled group-effect term: ``z * effects[block.codes]`` (``z`` centred as sampled)."""

    effects: pt.TensorVariable
    block: RandomBlock
    z: np.ndarray


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class SchurParts:
    """Constant pieces of ``A`` and ``h`` (unscaled by ``sigma``), see the module docstring.

    ``G = X_c'X_c``; ``dzz`` the diagonal of ``Z_f'Z_f``; ``B = Z_f'X_c`` in
    CSR form (``b_indptr``, ``b_cols``, ``b_vals``: each level's few nonzeros).
    """

    G: np.ndarray
    dzz: np.ndarray
    b_indptr: np.ndarray
    b_cols: np.ndarray
    b_vals: np.ndarray


def schur_parts(columns: CollapsedColumns) -> SchurParts:
    W, p_c = columns.W, columns.p_c
    Wc, Zf = W[:, :p_c], W[:, p_c:]
    B = (Zf.T @ Wc).tocsr()
    B.sort_indices()
    return SchurParts(
        G=np.ascontiguousarray((Wc.T @ Wc).toarray()),
        dzz=np.asarray(Zf.multiply(Zf).sum(axis=0)).ravel(),
        b_indptr=B.indptr.astype(np.int64),
        b_cols=B.indices.astype(np.int64),
        b_vals=B.data.astype(float),
    )


def _sampled_matrix(terms: Sequence[SampledTerm], n: int) -> sp.csc_matrix:
    """``Z_s`` (n x sampled effects), the sampled terms' columns as sampled (centred)."""
    if not terms:
        return sp.csc_matrix((n, 0))
    return sp.hstack([level_columns(term.block, term.z) for term in terms], format="csc")


def residual_moments(
    y: np.ndarray, terms: Sequence[SampledTerm], columns: CollapsedColumns
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """``Q = r'r`` and ``t = W'r`` of ``r = y - Z_s e``.

    The dense columns' part of ``t`` is ``W_c'y - (W_c'Z_s) e``, a sparse
    product with as many terms as distinct (sampled level, column) pairs, far
    fewer than the observations when the columns are few. The diagonal
    block's part (about as many pairs as observations) and ``Q`` come from one
    pass over the data (:class:`~bayesmix.bayes.likelihoods.collapsed_kernels.ResidualMoments`);
    without a diagonal block, ``Q = y'y - 2 e'Z_s'y + e'(Z_s'Z_s) e`` needs no pass.
    """
    y = np.asarray(y, dtype=float)
    n, W, p_c = len(y), columns.W, columns.p_c
    if not terms:
        return pt.as_tensor_variable(float(y @ y)), pt.as_tensor_variable(W.T @ y)
    effects = [term.effects for term in terms]
    effects = pt.concatenate(effects) if len(effects) > 1 else effects[0]
    Z_s = _sampled_matrix(terms, n)
    K = Z_s.T @ Z_s
    Wc = W[:, :p_c]
    t_c = Wc.T @ y - sparse_product(Wc.T @ Z_s, effects)
    if columns.n_f == 0:
        q = float(y @ y) - 2.0 * pt.dot(Z_s.T @ y, effects)
        return q + pt.dot(effects, sparse_product(K, effects)), t_c
    # the pass over the data: sampled terms, then the diagonal block's column
    starts = np.cumsum([0] + [len(term.block.levels) for term in terms])
    codes = np.column_stack(
        [term.block.codes.astype(np.int64) + s for term, s in zip(terms, starts)]
    ).astype(np.min_scalar_type(max(int(starts[-1]) - 1, 0)))
    Z, z_columns = pack_columns([term.z for term in terms], n)
    f_codes = columns.diagonal_codes
    f_Z, f_columns = pack_columns([columns.diagonal_z], n)
    op = ResidualMoments(z_columns, f_columns, columns.n_f)
    q, t_f = op(
        y,
        codes,
        Z,
        effects,
        f_codes.astype(np.min_scalar_type(max(columns.n_f - 1, 0)))[:, None],
        f_Z,
        *csr_arrays(Z_s.T @ W[:, p_c:]),
        *csr_arrays(K),
        Z_s.T @ y,
    )
    return q, pt.concatenate([t_c, t_f])


def collapsed_loglik(
    y: np.ndarray,
    terms: Sequence[SampledTerm],
    columns: CollapsedColumns,
    sigma: pt.TensorVariable,
    fixed_mu: pt.TensorVariable,
    fixed_sd: pt.TensorVariable,
    term_sd: pt.TensorVariable,
    diagonal_sd: pt.TensorVariable | None,
) -> pt.TensorVariable:
    """Log-likelihood with the collapsed coefficients integrated out (module docstring).

    ``fixed_mu``, ``fixed_sd``: the Normal priors of the fixed effects;
    ``term_sd``: the SD of each dense block term (``columns.terms`` order);
    ``diagonal_sd``: the SD of the diagonal block (None without one).
    """
    parts = schur_parts(columns)
    q, t = residual_moments(y, terms, columns)
    sd_term = columns.sd_term[columns.n_fixed :].astype(np.int64)
    op = CollapsedMarginal()
    return op(
        q,
        t,
        sigma,
        term_sd,
        pt.as_tensor_variable(1.0 if diagonal_sd is None else diagonal_sd, dtype="float64"),
        fixed_mu,
        fixed_sd,
        np.asarray(float(len(y))),
        sd_term,
        parts.G,
        parts.dzz,
        parts.b_indptr,
        parts.b_cols,
        parts.b_vals,
    )[0]
