"""Gaussian likelihood with the fixed effects and some group effects integrated out.

For a Gaussian linear mixed model, any set of coefficients with a Gaussian
prior can be integrated out of the likelihood exactly. NUTS then samples the
other group effects and the variance parameters only, and the integrated-out
("collapsed") coefficients are drawn afterwards from their Gaussian
conditional posterior (:mod:`bayesmix.collapsed_draws`), which gives the
same joint posterior. bayesmix collapses the fixed effects (with their Normal
priors), the blocks with few coefficients, and one large one-term block: on
InstEval (``(1 | s) + (1 | d) + (1 | dept:service)``, collapsing ``beta``,
``dept:service`` and ``d``), the Intercept, the 28 ``dept:service`` effects and
their SD stop being the slowest-mixing parameters (their ESS went from about
550 to above 3,000 in 4,000 draws) and NUTS needs 18 leapfrog steps per draw
instead of 30.

Notation: ``r = y - Z_s e`` the data minus the sampled group effects ``e``;
``W = [X_c, Z_f]`` the collapsed columns: ``X_c`` (fixed-effect columns,
centred as in :mod:`bayesmix.bayes_model`, then the columns of the small
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
log density evaluation is one pass over the data (:class:`ResidualMoments`,
returning ``Q`` and ``t = W'r``), a few sparse products and one small Cholesky
factor. The gradient with respect to ``e`` is ``-(M g_t + 2 g_Q Z_s'r)`` with
``M = Z_s'W`` a constant sparse matrix, so it needs no second pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesmix.design import Design, RandomBlock
from bayesmix.priors import Normal, Prior

LOG_2PI = float(np.log(2 * np.pi))
#: Most coefficients solved densely: the fixed effects plus the small blocks' effects.
DENSE_MAX = 64
#: Salt of the kernels' disk-cache keys: bumped whenever their source changes.
KERNEL_VERSION = 1


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
    term_codes: tuple[np.ndarray, ...]  # each collapsed block term: its index into t per row
    term_z: tuple[np.ndarray, ...]  # ... and its value per row

    @property
    def n_t(self) -> int:
        return self.W.shape[1]

    @property
    def n_f(self) -> int:
        return self.n_t - self.p_c


def block_columns(block: RandomBlock, k: int, z: np.ndarray | None = None) -> sp.csc_matrix:
    """Sparse n x levels matrix of term ``k`` of ``block`` (``z`` overrides its column)."""
    z = np.asarray(block.Z[:, k] if z is None else z, dtype=float)
    n = z.shape[0]
    return sp.csc_matrix((z, (np.arange(n), block.codes)), shape=(n, len(block.levels)))


def collapsed_columns(design: Design, plan: CollapsePlan, xbar: np.ndarray) -> CollapsedColumns:
    """``W`` and the layout of the collapsed coefficients (fixed, dense terms, diagonal)."""
    parts = [sp.csc_matrix(np.asarray(design.X, dtype=float) - xbar[None, :])]
    sd_term = [-1] * design.n_fixed
    terms, term_codes, term_z = [], [], []
    blocks = [(i, k) for i in plan.dense for k in range(design.blocks[i].n_terms)]
    if plan.diagonal is not None:
        blocks.append((plan.diagonal, 0))
    for i, k in blocks:
        block = design.blocks[i]
        term_codes.append(block.codes.astype(np.int64) + len(sd_term))
        term_z.append(np.asarray(block.Z[:, k], dtype=float))
        parts.append(block_columns(block, k))
        if i != plan.diagonal:
            sd_term += [len(terms)] * len(block.levels)
            terms.append((i, k))
    p_c = len(sd_term)
    W = sp.hstack(parts, format="csc")
    return CollapsedColumns(
        W, p_c, design.n_fixed, np.array(sd_term, dtype=int), tuple(terms),
        tuple(term_codes), tuple(term_z),
    )


class SampledTerm:
    """One sampled group-effect term: ``z * effects[codes]`` (``z`` centred as sampled)."""

    def __init__(self, effects: pt.TensorVariable, block: RandomBlock, z: np.ndarray):
        self.effects = effects
        self.block = block
        self.z = np.asarray(z, dtype=float)


class ResidualMoments(Op):
    """``Q = r'r``, ``t = W'r`` and ``Z_s'r`` for ``r = y - sum_k z_k * effects[codes_k]``.

    Inputs: ``y`` (n), ``codes`` (n x K, offsets into ``effects`` added), ``Z``
    (n x K_z, the sampled terms' columns that are not all ones), ``effects``,
    ``X`` (n x p_x, the non-constant dense-fixed columns of ``W``), ``ccodes``
    (n x K_c, indices into ``t`` of the collapsed block columns), ``cZ`` (their
    values, those not all ones), and the sparse ``M = Z_s'W`` as CSR arrays
    (used by the gradient only).

    Parameters
    ----------
    z_columns, x_columns, c_columns : tuple of int
        For each sampled term, each fixed column, each collapsed block term:
        its column in ``Z``, ``X`` or ``cZ``, or -1 when it is all ones.
    n_t : int
        Length of ``t``.
    """

    __props__ = ("z_columns", "x_columns", "c_columns", "n_t")

    def __init__(self, z_columns, x_columns, c_columns, n_t: int):
        self.z_columns = tuple(int(k) for k in z_columns)
        self.x_columns = tuple(int(k) for k in x_columns)
        self.c_columns = tuple(int(k) for k in c_columns)
        self.n_t = int(n_t)

    def make_node(self, y, codes, Z, effects, X, ccodes, cZ, indptr, indices, data):
        inputs = [pt.as_tensor_variable(v) for v in (y, codes, Z, effects, X, ccodes, cZ)]
        inputs += [pt.as_tensor_variable(v) for v in (indptr, indices, data)]
        effects = inputs[3]
        outputs = [
            pt.dscalar(),
            pt.tensor(dtype="float64", shape=(self.n_t,)),
            pt.tensor(dtype="float64", shape=effects.type.shape),
        ]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        y, codes, Z, effects, X, ccodes, cZ = inputs[:7]
        r = np.array(y, dtype=float)
        z_values = [1.0 if k < 0 else Z[:, k] for k in self.z_columns]
        for k, z in enumerate(z_values):
            r = r - z * effects[codes[:, k]]
        t = np.zeros(self.n_t)
        for j, k in enumerate(self.x_columns):
            t[j] = r.sum() if k < 0 else X[:, k] @ r
        for j, k in enumerate(self.c_columns):
            weights = r if k < 0 else cZ[:, k] * r
            t += np.bincount(ccodes[:, j], weights=weights, minlength=self.n_t)
        zr = np.zeros(effects.shape[0])
        for k, z in enumerate(z_values):
            zr += np.bincount(codes[:, k], weights=z * r, minlength=effects.shape[0])
        for storage, value in zip(output_storage, (r @ r, t, zr), strict=True):
            storage[0] = np.asarray(value, dtype="float64")

    def pullback(self, inputs, outputs, cotangents):
        g_q, g_t, g_zr = cotangents
        if not isinstance(g_zr.type, DisconnectedType):
            raise NotImplementedError("the Z_s'r output of ResidualMoments has no gradient")
        effects = inputs[3]
        g_effects = pt.zeros_like(effects)
        if not isinstance(g_t.type, DisconnectedType):
            g_effects = g_effects - CsrMatvec()(*inputs[7:10], g_t)
        if not isinstance(g_q.type, DisconnectedType):
            g_effects = g_effects - 2.0 * g_q * outputs[2]
        return [
            g_effects if i == 3 else grad_undefined(self, i, var) for i, var in enumerate(inputs)
        ]

    def kernel_source(self) -> str:
        """Source of the numba kernel: one loop over observations, unrolled over columns."""
        lines = [
            "def residual_moments(y, codes, Z, effects, X, ccodes, cZ, indptr, indices, data):",
            "    n = y.shape[0]",
            f"    t = np.zeros({self.n_t})",
            "    zr = np.zeros(effects.shape[0])",
            "    q = 0.0",
            *[f"    tx{j} = 0.0" for j in range(len(self.x_columns))],
            "    for i in range(n):",
        ]
        body, eta = [], []
        for k, col in enumerate(self.z_columns):
            body.append(f"c{k} = codes[i, {k}]")
            if col >= 0:
                body.append(f"z{k} = Z[i, {col}]")
            eta.append(f"z{k} * effects[c{k}]" if col >= 0 else f"effects[c{k}]")
        body.append(f"r = y[i] - ({' + '.join(eta)})" if eta else "r = y[i]")
        body.append("q += r * r")
        body += [
            f"zr[c{k}] += {f'z{k} * ' if col >= 0 else ''}r" for k, col in enumerate(self.z_columns)
        ]
        body += [
            f"tx{j} += {f'X[i, {col}] * ' if col >= 0 else ''}r"
            for j, col in enumerate(self.x_columns)
        ]
        body += [
            f"t[ccodes[i, {j}]] += {f'cZ[i, {col}] * ' if col >= 0 else ''}r"
            for j, col in enumerate(self.c_columns)
        ]
        lines += ["        " + line for line in body]
        lines += [f"    t[{j}] += tx{j}" for j in range(len(self.x_columns))]
        lines.append("    return np.asarray(q), t, zr")
        return "\n".join(lines) + "\n"


class CsrMatvec(Op):
    """``M @ x`` for a constant sparse ``M`` given as CSR arrays (indptr, indices, data)."""

    __props__ = ()

    def make_node(self, indptr, indices, data, x):
        inputs = [pt.as_tensor_variable(v) for v in (indptr, indices, data, x)]
        n_rows = inputs[0].type.shape[0]
        shape = (None if n_rows is None else n_rows - 1,)
        return Apply(self, inputs, [pt.tensor(dtype="float64", shape=shape)])

    def perform(self, node, inputs, output_storage):
        indptr, indices, data, x = inputs
        m = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, len(x)))
        output_storage[0][0] = np.asarray(m @ x, dtype="float64")

    @staticmethod
    def kernel(indptr, indices, data, x):
        out = np.empty(indptr.shape[0] - 1)
        for row in range(out.shape[0]):
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * x[indices[k]]
            out[row] = acc
        return out


def _register_numba() -> None:
    """Give PyTensor's numba backend the kernels (cached on disk by the Ops' props)."""
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # numba not installed: the Ops still run through ``perform``
        return

    @register_funcify_default_op_cache_key(ResidualMoments)
    def numba_funcify_residual_moments(op, node=None, **kwargs):
        namespace = {"np": np}
        exec(compile(op.kernel_source(), "<bayesmix.collapsed_likelihood>", "exec"), namespace)
        return numba_njit(namespace["residual_moments"]), KERNEL_VERSION

    @register_funcify_default_op_cache_key(CsrMatvec)
    def numba_funcify_csr_matvec(op, node=None, **kwargs):
        return numba_njit(CsrMatvec.kernel), KERNEL_VERSION


_register_numba()


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class SchurParts:
    """Constant pieces of ``A`` and ``h`` (unscaled by ``sigma``), see the module docstring.

    ``G = X_c'X_c``; ``dzz`` the diagonal of ``Z_f'Z_f``; ``B = Z_f'X_c`` as
    (rows, cols, vals); ``B'diag(w)B`` as a scatter of ``pair_val * w[pair_row]``
    into the flat entries ``pair_entry`` of a p_c x p_c matrix.
    """

    G: np.ndarray
    dzz: np.ndarray
    b_rows: np.ndarray
    b_cols: np.ndarray
    b_vals: np.ndarray
    pair_row: np.ndarray
    pair_entry: np.ndarray
    pair_val: np.ndarray


def schur_parts(columns: CollapsedColumns) -> SchurParts:
    W, p_c = columns.W, columns.p_c
    Wc, Zf = W[:, :p_c], W[:, p_c:]
    B = (Zf.T @ Wc).tocsr()
    B.sort_indices()
    rows = np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))
    pair_row, pair_entry, pair_val = [], [], []
    for j in range(B.shape[0]):  # each level's nonzeros: a few fixed and dense columns
        cols = B.indices[B.indptr[j] : B.indptr[j + 1]]
        vals = B.data[B.indptr[j] : B.indptr[j + 1]]
        pair_row.append(np.full(cols.size**2, j))
        pair_entry.append((cols[:, None] * p_c + cols[None, :]).ravel())
        pair_val.append(np.outer(vals, vals).ravel())
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
    return SchurParts(
        G=np.asarray((Wc.T @ Wc).todense()),
        dzz=np.asarray(Zf.multiply(Zf).sum(axis=0)).ravel(),
        b_rows=rows.astype(np.int64),
        b_cols=B.indices.astype(np.int64),
        b_vals=B.data.astype(float),
        pair_row=cat(pair_row, np.int64),
        pair_entry=cat(pair_entry, np.int64),
        pair_val=cat(pair_val, float),
    )


def sampled_operator(terms: Sequence[SampledTerm], W: sp.csc_matrix) -> sp.csr_matrix:
    """``Z_s'W`` (sampled effects x collapsed coefficients), CSR."""
    Z_s = sp.hstack(
        [sp.csc_matrix((term.z, (np.arange(term.z.size), term.block.codes)),
                       shape=(term.z.size, len(term.block.levels))) for term in terms],
        format="csc",
    )
    M = (Z_s.T @ W).tocsr()
    M.sort_indices()
    return M


def residual_moments(
    y: np.ndarray, terms: Sequence[SampledTerm], columns: CollapsedColumns
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """``Q = r'r`` and ``t = W'r`` (one :class:`ResidualMoments` pass over the data)."""
    n = len(y)
    W, p_c = columns.W, columns.p_c
    # fixed columns of W: dense; ones are recognised and skipped in the kernel
    Xc = np.asarray(W[:, : columns.n_fixed].todense())
    x_ones = [bool(np.all(Xc[:, j] == 1.0)) for j in range(columns.n_fixed)]
    X = np.ascontiguousarray(Xc[:, [j for j in range(columns.n_fixed) if not x_ones[j]]])
    x_columns = np.cumsum([not o for o in x_ones]) - 1
    x_columns = [-1 if o else int(c) for o, c in zip(x_ones, x_columns, strict=True)]
    # collapsed block columns of W (one entry per row in each): index into t, value
    ccodes, cvalues = columns.term_codes, columns.term_z
    c_ones = [bool(np.all(v == 1.0)) for v in cvalues]
    cZ = np.column_stack([v for v, o in zip(cvalues, c_ones, strict=True) if not o] or [np.zeros(n)])
    c_columns = np.cumsum([not o for o in c_ones]) - 1
    c_columns = [-1 if o else int(c) for o, c in zip(c_ones, c_columns, strict=True)]
    # sampled terms
    starts = np.cumsum([0] + [len(term.block.levels) for term in terms])
    codes = np.column_stack(
        [term.block.codes.astype(np.int64) + s for term, s in zip(terms, starts)] or [np.zeros(n)]
    ).astype(np.int64)
    z_ones = [bool(np.all(term.z == 1.0)) for term in terms]
    Z = np.column_stack([t.z for t, o in zip(terms, z_ones, strict=True) if not o] or [np.zeros(n)])
    z_columns = np.cumsum([not o for o in z_ones]) - 1
    z_columns = [-1 if o else int(c) for o, c in zip(z_ones, z_columns, strict=True)]
    effects = pt.concatenate([term.effects for term in terms]) if terms else pt.zeros(0)
    M = sampled_operator(terms, W) if terms else sp.csr_matrix((0, columns.n_t))
    op = ResidualMoments(z_columns, x_columns, c_columns, columns.n_t)
    q, t, _ = op(
        np.asarray(y, dtype=float), codes, Z, effects, X, np.column_stack(ccodes) if ccodes
        else np.zeros((n, 0), dtype=np.int64), cZ,
        M.indptr.astype(np.int64), M.indices.astype(np.int64), M.data.astype(float),
    )
    return q, t


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
    n, p_c, n_f = len(y), columns.p_c, columns.n_f
    parts = schur_parts(columns)
    q, t = residual_moments(y, terms, columns)
    s2 = sigma**2
    sd_term = columns.sd_term[columns.n_fixed :]
    vc = pt.concatenate([fixed_sd**2, term_sd[sd_term] ** 2]) if sd_term.size else fixed_sd**2
    m0 = pt.concatenate([fixed_mu, pt.zeros(p_c - columns.n_fixed)])
    t_c = t[:p_c]
    A = pt.diag(1.0 / vc) + parts.G / s2
    e = m0 / vc + t_c / s2
    loglik = -n * pt.log(sigma) - 0.5 * n * LOG_2PI - 0.5 * q / s2
    loglik = loglik - 0.5 * pt.sum(m0**2 / vc) - 0.5 * pt.sum(pt.log(vc))
    if n_f:
        D = parts.dzz / s2 + 1.0 / diagonal_sd**2
        h_f = t[p_c:] / s2
        inv_d = 1.0 / D
        correction = pt.inc_subtensor(
            pt.zeros(p_c * p_c)[parts.pair_entry], parts.pair_val * inv_d[parts.pair_row]
        )
        A = A - correction.reshape((p_c, p_c)) / s2**2
        pushed = pt.inc_subtensor(
            pt.zeros(p_c)[parts.b_cols], parts.b_vals * (h_f * inv_d)[parts.b_rows]
        )
        e = e - pushed / s2
        loglik = loglik + 0.5 * pt.sum(h_f**2 * inv_d) - 0.5 * pt.sum(pt.log(D))
        loglik = loglik - n_f * pt.log(diagonal_sd)
    L = pt.linalg.cholesky(A)
    w = pt.linalg.solve_triangular(L, e, lower=True)
    return loglik + 0.5 * pt.sum(w**2) - pt.sum(pt.log(pt.diag(L)))
