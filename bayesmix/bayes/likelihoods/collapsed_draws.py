"""Draws of the coefficients that the collapsed likelihood integrated out.

With the likelihood of :mod:`bayesmix.bayes.likelihoods.collapsed`, NUTS samples the
sampled blocks' effects ``e``, the SDs and ``sigma``; given those, the
collapsed coefficients ``gamma = (beta_c, u_dense, u_f)`` are Gaussian,
``N(A^-1 h, A^-1)``. One exact draw of ``gamma`` per posterior draw completes
a draw from the joint posterior. The dense part comes from its marginal
``N(S^-1 e_c, S^-1)`` (``S`` the Schur complement), then
``u_f | c ~ N(D^-1 (h_f - B c / sigma^2), D^-1)``, all vectorised over draws.

``t = W'r`` for every draw is ``W'y - (W'Z_s) e``: a sparse product with the
draws of the sampled blocks' effects (``r_<tag>`` on the original columns),
no pass over the observations per draw.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import xarray as xr

from bayesmix.bayes.graph_parts import block_infos, centring_offsets
from bayesmix.bayes.likelihoods.collapsed import (
    CollapsePlan,
    block_columns,
    collapsed_columns,
    schur_parts,
)
from bayesmix.bayes.priors import Prior, intercept_index
from bayesmix.spec.design import Design

#: Posterior draws handled at once (bounds the memory of the batched solves).
CHUNK = 500


def _flat(values: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])


def add_collapsed_draws(
    idata, design: Design, priors: Mapping[str, Prior], plan: CollapsePlan, seed: int | None
) -> None:
    """Add ``beta`` and the collapsed blocks' ``r_<tag>`` to ``idata``'s posterior."""
    post = idata["posterior"].to_dataset()
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    infos = block_infos(design)
    xbar = centring_offsets(design)
    columns = collapsed_columns(design, plan, xbar)
    parts = schur_parts(columns)
    p, p_c, n_f = design.n_fixed, columns.p_c, columns.n_f
    y = np.asarray(design.y, dtype=float)
    # t = W'y - (W'Z_s) e, with e the sampled blocks' effects on their original columns
    Wt = columns.W.T.tocsr()
    Wty = Wt @ y
    sampled = plan.sampled(design)
    e_parts, z_parts = [], []
    for i in sampled:
        r = _flat(post[infos[i].r_name].transpose("chain", "draw", ...).values)
        for k in range(design.blocks[i].n_terms):
            e_parts.append(r[:, :, k])
            z_parts.append(block_columns(design.blocks[i], k))
    WtZ = (Wt @ sp.hstack(z_parts, format="csc")).tocsr() if z_parts else None
    E = np.concatenate(e_parts, axis=1) if e_parts else None
    sigma = _flat(post["sigma"].values)
    term_sd = (
        np.stack([_flat(post[infos[i].sd_name].values)[:, k] for i, k in columns.terms], axis=1)
        if columns.terms
        else np.zeros((sigma.size, 0))
    )
    fixed = [priors[name] for name in design.fixed_terms]
    m0 = np.concatenate([[prior.mu for prior in fixed], np.zeros(p_c - p)])
    fixed_var = np.array([prior.sigma**2 for prior in fixed])
    sd_index = columns.sd_term[p:]
    diag_sd = None if plan.diagonal is None else _flat(post[infos[plan.diagonal].sd_name].values)
    B = sp.csr_matrix((parts.b_vals, parts.b_cols, parts.b_indptr), shape=(n_f, p_c))
    pairs = _outer_products(B)
    Bt = B.T.tocsr()
    rng = np.random.default_rng(None if seed is None else [seed, 7])
    gamma = np.empty((sigma.size, columns.n_t))
    for start in range(0, sigma.size, CHUNK):
        sl = slice(start, start + CHUNK)
        s2 = sigma[sl, None] ** 2
        t = Wty[None, :] - (WtZ @ E[sl].T).T if E is not None else np.tile(Wty, (s2.size, 1))
        vc = np.concatenate(
            [np.broadcast_to(fixed_var, (s2.size, p)), term_sd[sl][:, sd_index] ** 2], axis=1
        )
        A = _diag(1.0 / vc) + parts.G[None] / s2[:, :, None]
        e = m0 / vc + t[:, :p_c] / s2
        if n_f:
            D = parts.dzz[None, :] / s2 + 1.0 / diag_sd[sl, 0, None] ** 2
            h_f = t[:, p_c:] / s2
            C = (pairs @ (1.0 / D).T).T.reshape(-1, p_c, p_c)  # B'D^-1 B for each draw
            A = A - C / s2[:, :, None] ** 2
            e = e - (Bt @ (h_f / D).T).T / s2
        L = np.linalg.cholesky(A)
        noise = rng.standard_normal((s2.size, p_c, 1))
        c = np.linalg.solve(A, e[:, :, None]) + np.linalg.solve(np.swapaxes(L, 1, 2), noise)
        c = c[:, :, 0]
        gamma[sl, :p_c] = c
        if n_f:
            mean_f = (h_f - (Bt.T @ c.T).T / s2) / D
            gamma[sl, p_c:] = mean_f + rng.standard_normal(D.shape) / np.sqrt(D)
    new = {"beta": _beta(design, gamma[:, :p], xbar)}
    layout = _collapsed_layout(design, plan, columns)
    for i, slots in layout.items():
        info = infos[i]
        r = np.stack([gamma[:, s] for s in slots], axis=-1)  # (draws, levels, terms)
        new[info.r_name] = r
    dataset = {}
    for name, values in new.items():
        # C order, as a saved and reloaded (or pickled) posterior has: summaries sum the
        # draws in memory order, and must not change in the last bit on a round trip
        values = np.ascontiguousarray(values.reshape(n_chain, n_draw, *values.shape[1:]))
        if name == "beta":
            dims = ("chain", "draw", "fixed")
            coords = {"fixed": list(design.fixed_terms)}
        else:
            info = next(info for info in infos if info.r_name == name)
            block = design.blocks[infos.index(info)]
            dims = ("chain", "draw", info.level_dim, info.term_dim)
            coords = {
                info.level_dim: [str(level) for level in block.levels],
                info.term_dim: list(block.terms),
            }
        dataset[name] = xr.DataArray(values, dims=dims, coords=coords)
    idata["posterior"] = post.assign(dataset)


def _outer_products(B: sp.csr_matrix) -> sp.csr_matrix:
    """(p_c^2 x n_f) sparse matrix whose column j is the flattened ``b_j b_j'``."""
    p_c = B.shape[1]
    rows, entries, values = [], [], []
    for j in range(B.shape[0]):
        cols = B.indices[B.indptr[j] : B.indptr[j + 1]]
        vals = B.data[B.indptr[j] : B.indptr[j + 1]]
        rows.append(np.full(cols.size**2, j))
        entries.append((cols[:, None] * p_c + cols[None, :]).ravel())
        values.append(np.outer(vals, vals).ravel())
    if not rows:
        return sp.csr_matrix((p_c * p_c, 0))
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(entries), np.concatenate(rows))),
        shape=(p_c * p_c, B.shape[0]),
    )


def _diag(values: np.ndarray) -> np.ndarray:
    """Batch of diagonal matrices from rows of ``values``."""
    out = np.zeros((*values.shape, values.shape[-1]))
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out


def _beta(design: Design, beta_c: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """Coefficients of the uncentred columns from those of the centred ones."""
    beta = beta_c.copy()
    j0 = intercept_index(design)
    if j0 is not None:
        beta[:, j0] = beta_c[:, j0] - beta_c @ xbar
    return beta


def _collapsed_layout(design: Design, plan: CollapsePlan, columns) -> dict[int, list[np.ndarray]]:
    """For each collapsed block, the positions in ``gamma`` of each term's levels."""
    layout: dict[int, list[np.ndarray]] = {}
    start = design.n_fixed
    for i, _ in columns.terms:
        n_levels = len(design.blocks[i].levels)
        layout.setdefault(i, []).append(np.arange(start, start + n_levels))
        start += n_levels
    if plan.diagonal is not None:
        layout[plan.diagonal] = [np.arange(columns.p_c, columns.n_t)]
    return layout
