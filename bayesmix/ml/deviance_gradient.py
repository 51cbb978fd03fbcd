"""Exact gradient of the blocked kernel's criterion (:mod:`bayesmix.ml.deviance`).

The formulas are those of :mod:`bayesmix.ml.dense_kernel` (``d log|M| = 2 tr(M^-1 H'E_i)``,
``d r^2 = -2 e'Z E_i u``, ``d log|R_X'R_X| = -2 tr((R_X'R_X)^-1 Q'E_i P)``, with
``H = G Lambda``); what differs is how ``M^-1`` is reached without forming it.
``tr(M^-1 H'E_i)`` needs ``M^-1`` only where ``H`` (``G = Z'Z``'s pattern) has
entries, and the blocked factor gives exactly those (a selected inverse):

* rest x rest: ``S^-1`` (``S = L22 L22'``; LAPACK's ``dpotri``),
* rest x first, on ``B``'s pattern: ``-S^-1 W`` with ``W = L21 L11^-1``,
  summed over each column's own rows only (as many products as ``B B'``),
* first x first, the level's diagonal block: ``L_j^-T L_j^-1 + W_j'S^-1 W_j``.

So a gradient costs about one more factorisation of ``L22`` and one more pass
of ``B B'``'s size: roughly twice an evaluation, where the gradient search needs
a fifth of BOBYQA's evaluations or fewer. ``tests/test_ml_gradient.py`` checks
it against central differences.

Notation
--------
As :mod:`bayesmix.ml.deviance`; "pos" indexes the stored entries of ``B``'s
pattern in compressed sparse columns (rows sorted; column ``(j, s)`` for level
``j`` of the first block and its column ``s``), ``C = Z_r'Z_1`` on that pattern.
Effects are numbered first block first (``j k1 + s``), then the rest (``q1 +``
rest offset).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from numba import njit

from bayesmix.errors import FitError
from bayesmix.ml.small_algebra import small_matmul
from bayesmix.ml.sparse_gram import mirror_lower
from bayesmix.spec.covariance import theta_positions

__all__ = ["GradientPlan"]


@njit(cache=True)
def _lambda_r_t(data, rows, r_block, r_column, T_r):
    """``Lambda_r' X`` on the pattern, ``X`` given by its stored entries ``data``.

    A rest level's rows are adjacent in every column, so row ``base + t'`` of the
    entry at ``pos`` (row ``base + t``) is at ``pos - t + t'``.
    """
    out = np.zeros(data.size)
    k = T_r.shape[1]
    if k == 1:  # scalar rest blocks: a scaling by the entry's block
        for pos in range(data.size):
            out[pos] = T_r[r_block[rows[pos]], 0, 0] * data[pos]
        return out
    for pos in range(data.size):
        a = rows[pos]
        b, t = r_block[a], r_column[a]
        acc = 0.0
        for t2 in range(t, k):
            w = T_r[b, t2, t]
            if w != 0.0:
                acc += w * data[pos - t + t2]
        out[pos] = acc
    return out


@njit(cache=True)
def _mix_columns(data, indptr, k1, F):
    """``X F_j`` per first-block level (columns ``(j, 0..k1-1)`` share their rows)."""
    out = np.zeros(data.size)
    m1 = (indptr.size - 1) // k1
    for j in range(m1):
        for s in range(k1):
            start = indptr[j * k1 + s]
            for i in range(indptr[j * k1 + s + 1] - start):
                acc = 0.0
                for s2 in range(k1):
                    acc += data[indptr[j * k1 + s2] + i] * F[j, s2, s]
                out[start + i] = acc
    return out


@njit(cache=True)
def _selected(S_inv, W, H, rows, indptr, k1):
    """``Y = -S^-1 W`` on ``W``'s pattern (each column's rows only), with two sums of it.

    Returns ``Y``, the levels' ``W_j'S^-1 W_j`` (``(m1, k1, k1)``) and
    ``sum_j Y_j'H_j`` (``(k1, k1)``) for ``H`` on the same pattern. A level's
    ``k1`` columns share their rows, and ``S^-1`` is symmetric: one pass over
    the level's row pairs ``b <= a`` (only ``S^-1``'s lower triangle is read).
    """
    out = np.zeros(W.size)
    n_levels = (indptr.size - 1) // k1
    wsw = np.zeros((n_levels, k1, k1))
    cross = np.zeros((k1, k1))
    widest = 0
    for j in range(n_levels):
        widest = max(widest, indptr[j * k1 + 1] - indptr[j * k1])
    w_level = np.empty((widest, k1))
    y_level = np.empty((widest, k1))
    for j in range(n_levels):
        start = indptr[j * k1]
        count = indptr[j * k1 + 1] - start
        for s in range(k1):
            col = indptr[j * k1 + s]
            for i in range(count):
                w_level[i, s] = W[col + i]
                y_level[i, s] = 0.0
        for ia in range(count):
            a = rows[start + ia]
            w = S_inv[a, a]
            for s in range(k1):
                y_level[ia, s] += w * w_level[ia, s]
            for ib in range(ia):
                w = S_inv[a, rows[start + ib]]
                for s in range(k1):
                    y_level[ia, s] += w * w_level[ib, s]
                    y_level[ib, s] += w * w_level[ia, s]
        for s in range(k1):
            col = indptr[j * k1 + s]
            for i in range(count):
                out[col + i] = -y_level[i, s]
            for s2 in range(k1):
                col2 = indptr[j * k1 + s2]
                acc_wsw = 0.0
                acc_cross = 0.0
                for i in range(count):
                    acc_wsw += w_level[i, s] * y_level[i, s2]
                    acc_cross -= y_level[i, s] * H[col2 + i]
                wsw[j, s, s2] = acc_wsw
                cross[s, s2] += acc_cross
    return out, wsw, cross


class GradientPlan:
    """Index arrays of a :class:`~bayesmix.ml.deviance.ProfiledDeviance` for its gradient.

    Built once per kernel (:meth:`ProfiledDeviance.value_and_gradient`).
    """

    def __init__(self, kernel: Any) -> None:
        K = self._kernel = kernel
        rest = K._order[1:]
        k1, m1, q_r = K._k1, K._m1, K._q_r
        q1 = m1 * k1
        self.q1 = q1
        # theta entries: (input block, row t, column s)
        self.theta_map = []
        for i, (kind, k) in enumerate(zip(K.kinds, K.sizes)):
            rows, cols = theta_positions(kind, k)
            self.theta_map += [(i, int(r), int(c)) for r, c in zip(rows, cols)]
        self.rest_position = {i: pos for pos, i in enumerate(rest)}
        self.r_block = np.zeros(q_r, dtype=np.int64)
        self.r_column = np.zeros(q_r, dtype=np.int64)
        for pos, i in enumerate(rest):
            off, k, m = int(K._offsets[pos]), K.sizes[i], K.n_levels[i]
            self.r_block[off : off + m * k] = pos
            self.r_column[off : off + m * k] = np.tile(np.arange(k), m)
        self.k_rest = max([K.sizes[i] for i in rest], default=1)
        if not q_r:
            return
        pair_values = np.concatenate([vals.ravel() for _, vals in K._pairs])
        if K._dense_B:
            flat = K._B_dest
            rows, cols = np.divmod(flat, q1)
            order = np.lexsort((rows, cols))
            self.dense_index = flat[order]
            self.rows = rows[order]
            self.indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=q1))])
            c_data = pair_values[order]
        else:
            self.dense_index = None
            self.rows, self.indptr = K._B_indices, K._B_indptr
            c_data = np.empty_like(pair_values)
            c_data[K._B_dest] = pair_values  # into B's compressed-column order
        self.c_data = c_data
        self.C = sp.csc_matrix((c_data, self.rows, self.indptr), shape=(q_r, q1))
        # per rest theta (block, s): the entries in rows (l, s), found on first use
        self._rows_of = {}

    def _effects(self, block: int, t: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Effects ``(l, t)`` and ``(l, s)`` of every level ``l`` of ``block`` (global order)."""
        K = self._kernel
        k, m = K.sizes[block], K.n_levels[block]
        base = np.arange(m) * k
        if block == K._order[0]:
            return base + t, base + s
        pos = self.rest_position[block]
        base = base + self.q1 + int(K._offsets[pos])
        return base + t, base + s

    def value_and_gradient(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at ``theta``."""
        K = self._kernel
        f = K._factor(theta)
        value = float(K._criterion(f, reml))
        T, L1inv, R1 = f["T"], f["L1inv"], f["R1"]
        first = K._order[0]
        T1, k1, m1, q_r, p = T[first], K._k1, K._m1, K._q_r, K.n_fixed
        c = p + 1
        # U = M^-1 Lambda'Z'[X, y] by back substitution through the blocked factor
        if q_r:
            U_r, info = sla.lapack.dtrtrs(f["L22"], f["R2"], lower=1, trans=1)
            if info:  # pragma: no cover - L22 is a valid factor
                raise FitError(f"a triangular solve failed (LAPACK info {info})")
            LU_r = K._lam_t_rows(U_r, T, transpose=False)
            back = np.asarray(f["B"].T @ LU_r).reshape(m1, k1, c)
        else:
            back = 0.0
        U_1 = small_matmul(L1inv.transpose(0, 2, 1), R1 - back)
        LU_1 = small_matmul(T1[None], U_1)
        # G Lambda U, and W = Z'[X, y] - G Lambda U
        GLU_1 = small_matmul(K._D, LU_1)
        W_1 = K._ZXy1 - GLU_1
        if q_r:
            W_1 = W_1 - np.asarray(self.C.T @ LU_r).reshape(m1, k1, c)
            W_r = K._ZXy_r - self.C @ LU_1.reshape(-1, c) - K._A_rr @ LU_r
            U = np.concatenate([U_1.reshape(-1, c), U_r])
            W = np.concatenate([W_1.reshape(-1, c), W_r])
        else:
            U, W = U_1.reshape(-1, c), W_1.reshape(-1, c)
        LXX, rxy = f["LXX"], f["rxy"]
        beta = sla.solve_triangular(LXX.T, rxy, lower=False) if p else np.zeros(0)
        u = U[:, p] - U[:, :p] @ beta
        Ze = W[:, p] - W[:, :p] @ beta
        if reml and p:
            CX = sla.cho_solve((LXX, True), U[:, :p].T).T  # P (R_X'R_X)^-1
        logdet_parts = self._logdet_terms(f)
        n, pwrss = K.n_obs, f["pwrss"]
        dof = n - p if reml else n
        grad = np.empty(len(self.theta_map))
        for index, (block, t, s) in enumerate(self.theta_map):
            e_t, e_s = self._effects(block, t, s)
            g = 2.0 * logdet_parts[index] - 2.0 * dof * float(Ze[e_t] @ u[e_s]) / pwrss
            if reml and p:
                g -= 2.0 * float(np.sum(W[e_t, :p] * CX[e_s]))
            grad[index] = g
        return value, grad

    def selected_inverse(self, f: dict, with_cross: bool = False) -> dict:
        """``M^-1`` where the gradient (and lme4's ``condVar``) needs it.

        Returns ``sigma11`` (the first block's ``(m1, k1, k1)`` diagonal blocks),
        and with rest blocks ``S_inv`` (``S^-1``, both triangles), ``Y``
        (``(M^-1)_r1`` on ``B``'s pattern), ``T_r`` (the rest factors, padded)
        and, with ``with_cross``, ``cross[s, t] = sum_j ((M^-1)_1r (Lambda_r'C))``.
        """
        K = self._kernel
        T = f["T"]
        L1inv = f["L1inv"]
        out = {"sigma11": small_matmul(L1inv.transpose(0, 2, 1), L1inv)}  # (L_j L_j')^-1
        if not K._q_r:
            return out
        S_inv, info = sla.lapack.dpotri(f["L22"], lower=1)
        if info:  # pragma: no cover - L22 is a valid factor
            raise FitError(f"inverting the random-effects factor failed (LAPACK info {info})")
        mirror_lower(S_inv)
        B = f["B"]
        b_data = B.ravel()[self.dense_index] if self.dense_index is not None else B.data
        T_r = np.zeros((max(len(K._order) - 1, 1), self.k_rest, self.k_rest))
        for pos, i in enumerate(K._order[1:]):
            T_r[pos, : K.sizes[i], : K.sizes[i]] = T[i]
        lam_b = _lambda_r_t(b_data, self.rows, self.r_block, self.r_column, T_r)
        W = _mix_columns(lam_b, self.indptr, K._k1, L1inv)  # L21 L11^-1
        H = (
            _lambda_r_t(self.c_data, self.rows, self.r_block, self.r_column, T_r)
            if with_cross
            else W
        )
        # dpotri's result is Fortran-ordered: its transpose (the same symmetric
        # matrix) is the C-ordered view whose rows the level loop reads contiguously
        Y, wsw, cross = _selected(S_inv.T, W, H, self.rows, self.indptr, K._k1)
        out["sigma11"] += wsw
        out.update(S_inv=S_inv, Y=Y, T_r=T_r, cross=cross)
        return out

    def _logdet_terms(self, f: dict) -> np.ndarray:
        """``tr(M^-1 H'E_i)`` for every ``theta`` entry."""
        K = self._kernel
        first, T = K._order[0], f["T"]
        T1 = T[first]
        DT = small_matmul(K._D, T1[None])  # first block of H = G Lambda
        parts = self.selected_inverse(f, with_cross=True)
        sigma11 = parts["sigma11"]
        if K._q_r:
            S_inv, Y, cross = parts["S_inv"], parts["Y"], parts["cross"]
            C_lam_1 = _mix_columns(
                self.c_data, self.indptr, K._k1, np.broadcast_to(T1, (K._m1,) + T1.shape)
            )
            lam_diag = K._lambda_r_diagonal(T)
            # rows of A_rr Lambda_r = (Lambda_r' A_rr)'; for diagonal Lambda_r, A_rr's rows
            # (A_rr is symmetric) with the scaling applied in the sum below
            H_rows = K._A_rr if lam_diag is not None else K._lam_t_rows(K._A_rr, T).T
            S_rows = S_inv.T  # C-ordered rows of the (Fortran-ordered) symmetric S^-1
        out = np.zeros(len(self.theta_map))
        for index, (block, t, s) in enumerate(self.theta_map):
            if block == first:
                value = float(np.sum(sigma11[:, s, :] * DT[:, t, :]))
                if K._q_r:
                    value += cross[s, t]
            else:
                pos = self.rest_position[block]
                sel = self._rows_of.get((pos, s))
                if sel is None:
                    rows = self.rows
                    sel = np.flatnonzero((self.r_block[rows] == pos) & (self.r_column[rows] == s))
                    if sel.size == rows.size:  # one scalar rest block: every entry, no gather
                        sel = slice(None)
                    self._rows_of[pos, s] = sel
                if isinstance(sel, slice):  # then s = t = 0
                    value = float(Y @ C_lam_1)
                else:
                    value = float(Y[sel] @ C_lam_1[sel - s + t])
                # columns (l, s) of S^-1 and (l, t) of A_rr Lambda_r, every level, as rows
                # of the transposes (S^-1 is symmetric, so S_rows[j] is its column j)
                start, k = int(K._offsets[pos]), K.sizes[block]
                stop = int(K._offsets[pos + 1])
                rows_s, rows_t = S_rows[start + s : stop : k], H_rows[start + t : stop : k]
                if lam_diag is None:
                    value += float(np.einsum("ji,ji->", rows_s, rows_t))
                else:
                    value += float(np.einsum("ji,ji->i", rows_s, rows_t) @ lam_diag)
            out[index] = value
        return out
