"""Penalised least-squares kernel of a linear mixed model (Bates et al., 2015).

For a covariance parameter ``theta`` the model ``y = X beta + Z Lambda u + e``
with ``u ~ N(0, sigma^2 I)`` and ``e ~ N(0, sigma^2 I)`` is reduced to one
penalised least-squares problem, solved through the blocked Cholesky factor

    [L    0 ] [L'  RZX]   [Lambda'Z'Z Lambda + I   Lambda'Z'X]
    [RZX' RX'] [0   RX ] = [X'Z Lambda             X'X       ]

which yields lme4's profiled deviance (ML) or REML criterion. The kernel reads
the data only through summed cross-products (:mod:`bayesmix.ml.cross_products`),
from rows in memory or added up partition by partition. As in
MixedModels.jl the block with the most random effects comes first: its part
of ``Lambda'Z'Z Lambda + I`` is block diagonal (one ``k x k`` matrix per
level), so its factor is a batch of tiny Cholesky factorisations. All other
blocks form one dense part ``L22``; the off-diagonal part is kept as the
sparse (or, when cheaper, dense) matrix ``B = Z2'Z1 Lambda1 L11^-T`` so that
``L21 = Lambda2' B``. Cross-products are computed once from the integer codes;
no dense n x q ``Z`` is ever formed. This module sees numeric arrays only.

Notation
--------
n, p : observations, fixed-effect columns; ``Xy = [X, y]`` (n, p + 1).
m_i, k_i, q_i = m_i k_i : levels, columns and random effects of block i.
T_i : (k_i, k_i) relative covariance factor; ``Lambda_i = I_{m_i} (x) T_i``.
Block "1" is the first (largest) block, "r" the rest stacked (q_r rows).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from bayesmix.errors import FitError
from bayesmix.ml.cross_products import CrossProducts, block_layout, cross_products
from bayesmix.ml.pls_solution import PLSSolution, fitted_values
from bayesmix.ml.small_algebra import level_factors, lower_cholesky, lower_solve, small_matmul
from bayesmix.spec.covariance import (
    factors_from_theta,
    n_theta,
    stacked_initial_theta,
    stacked_lower_bounds,
)

# Dense B B' (BLAS) is preferred while its flop count is below this multiple of
# the sparse product's, and while dense B stays below _DENSE_B_MAX entries.
_DENSE_SPEEDUP = 30.0
_DENSE_B_MAX = 60_000_000
# Below this many entries B is dense whatever the flops: building a scipy sparse
# matrix costs ~175 microseconds a call, more than small dense products.
_DENSE_B_ALWAYS = 100_000
# The non-first blocks are factored as one dense matrix of this order at most.
_MAX_DENSE_REST = 20_000


class ProfiledDeviance:
    """lme4's profiled deviance / REML criterion as a function of ``theta``.

    Parameters
    ----------
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
        Full-rank fixed-effects matrix (p may be 0).
    blocks : sequence of (codes, Z, n_levels, kind)
        ``codes`` (n,) ints in ``[0, n_levels)``, ``Z`` (n, k) columns and the
        covariance kind (``"unstructured"`` or ``"diagonal"``) of each block.
        ``theta`` is ordered as these blocks.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, blocks: Sequence[tuple]) -> None:
        y = np.asarray(y, dtype=float)
        X = np.asarray(X, dtype=float).reshape(y.shape[0], -1)
        self._blocks = [
            (
                np.asarray(c, dtype=np.int64),
                np.asarray(z, dtype=float).reshape(len(y), -1),
                int(m),
                str(kind),
            )
            for c, z, m, kind in blocks
        ]
        self._X = X
        self._set_layout(
            X.shape[1],
            [b[3] for b in self._blocks],
            [b[1].shape[1] for b in self._blocks],
            [b[2] for b in self._blocks],
        )
        ordered = [(self._blocks[i][0], self._blocks[i][1]) for i in self._order]
        self._setup(self.layout_products(y, X, ordered))

    @classmethod
    def from_products(
        cls,
        products: CrossProducts,
        kinds: Sequence[str],
        sizes: Sequence[int],
        n_levels: Sequence[int],
    ) -> ProfiledDeviance:
        """The kernel of rows known only by their summed products (no row is kept).

        ``kinds``, ``sizes`` and ``n_levels`` describe the blocks in ``theta``'s
        order; ``products`` are in the kernel's order (:meth:`layout_products`).
        Such a kernel has no :meth:`fitted`.
        """
        self = cls.__new__(cls)
        self._blocks, self._X = None, None
        self._set_layout(products.XyXy.shape[0] - 1, kinds, sizes, n_levels)
        self._setup(products)
        return self

    def _set_layout(self, n_fixed: int, kinds, sizes, n_levels) -> None:
        self.n_fixed = int(n_fixed)
        self.kinds = [str(k) for k in kinds]
        self.sizes = [int(k) for k in sizes]
        self.n_levels = [int(m) for m in n_levels]
        self.n_theta = sum(n_theta(kd, k) for kd, k in zip(self.kinds, self.sizes))
        self._last = None  # (theta, factor) of the last evaluation
        self._order, self._layout = block_layout(self.sizes, self.n_levels)
        q_r = self._layout.q_rest if self.sizes else 0
        if q_r > _MAX_DENSE_REST:
            raise FitError(
                f"the random-effects blocks after the largest one have {q_r} effects in all; "
                f"the ML engine factors them densely and supports at most {_MAX_DENSE_REST}. "
                "Simplify the model or fit it with the Bayesian engine."
            )

    def layout_products(
        self, y: np.ndarray, X: np.ndarray, blocks: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> CrossProducts:
        """The :class:`CrossProducts` of some rows: ``blocks`` (codes, Z) in the kernel's order."""
        return cross_products(y, X, blocks, self._layout)

    # ------------------------------------------------------------------ setup
    def _setup(self, products: CrossProducts) -> None:
        self.n_obs = int(products.n_obs)
        self._XyXy = products.XyXy
        if not self.sizes:
            return
        self._D, self._ZXy1 = products.D, products.ZXy1
        self._m1, self._k1 = self._layout.n_levels[0], self._layout.sizes[0]
        self._offsets = np.asarray(self._layout.offsets)
        self._q_r = self._layout.q_rest
        if self._q_r:
            self._setup_rest(products)

    def _setup_rest(self, products: CrossProducts) -> None:
        m1, k1, q_r = self._m1, self._k1, self._q_r
        q1 = m1 * k1
        self._A_rr, self._ZXy_r = products.A_rr.toarray(), products.ZXy_r
        levels = [np.divmod(keys, m1) for keys, _ in products.pairs]  # (rest level, j)
        # Choose how B B' is formed: flops of the sparse product vs dense SYRK.
        per_level = sum(
            k_b * np.bincount(j, minlength=m1)
            for k_b, (_, j) in zip(self._layout.sizes[1:], levels, strict=True)
        )
        col_counts = np.repeat(per_level, k1).astype(float)
        sparse_cost = float(col_counts @ col_counts)
        dense_cost = float(q_r) * q_r * q1 / 2
        self._dense_B = q_r * q1 <= _DENSE_B_ALWAYS or (
            q_r * q1 <= _DENSE_B_MAX and dense_cost <= _DENSE_SPEEDUP * sparse_cost
        )
        self._pairs = []  # per rest block: first-block level j, values (npairs, k_b, k1)
        rows, cols = [], []
        for pos, ((lb, j), (_, vals)) in enumerate(zip(levels, products.pairs, strict=True)):
            k_b, off_b = self._layout.sizes[pos + 1], int(self._offsets[pos])
            if not self._dense_B:
                # pairs in the order of B's compressed columns (level j, then rest level):
                # B is then written and read as streams (10^6 levels and 1.1e7 pairs: 0.57
                # s an evaluation in scattered writes before)
                by_j = np.argsort(j, kind="stable")
                lb, j, vals = lb[by_j], j[by_j], vals[by_j]
            self._pairs.append((j.astype(np.int64), np.ascontiguousarray(vals, dtype=float)))
            shape = (len(j), k_b, k1)  # B's row and column of each pair's entries
            row = (off_b + lb * k_b)[:, None, None] + np.arange(k_b)[:, None]
            rows.append(np.broadcast_to(row, shape).ravel())
            cols.append(np.broadcast_to((j * k1)[:, None, None] + np.arange(k1), shape).ravel())
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        if self._dense_B:
            dest = rows * q1 + cols
        else:
            # compressed sparse columns with sorted rows, for subtract_gram
            pattern = sp.csc_matrix(
                (np.arange(len(rows), dtype=float) + 1, (rows, cols)), shape=(q_r, q1)
            )
            pattern.sort_indices()
            perm = pattern.data.astype(np.int64) - 1  # CSC position -> pair entry
            self._B_indices, self._B_indptr = pattern.indices, pattern.indptr
            dest = np.empty_like(perm)
            dest[perm] = np.arange(len(perm))
        # where each pair's entries of B go (dense B's flat index, or the CSC position),
        # whole and split by rest block (views)
        self._B_dest = dest
        sizes = np.cumsum([0] + [vals.size for _, vals in self._pairs])
        self._pair_dest = [dest[a:b] for a, b in zip(sizes[:-1], sizes[1:])]

    # ------------------------------------------------------------ properties
    @property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of ``theta`` (0 on diagonals of the factors)."""
        return stacked_lower_bounds(self.kinds, self.sizes)

    @property
    def initial_theta(self) -> np.ndarray:
        """lme4's start: 1 on diagonals, 0 off the diagonals."""
        return stacked_initial_theta(self.kinds, self.sizes)

    @property
    def dense_order(self) -> int:
        """Order of the dense factor ``L22`` (0 with fewer than two blocks)."""
        return self._q_r if self.sizes else 0

    # ---------------------------------------------------------- factorising
    def _lam_t_rows(self, M: np.ndarray, T: list, transpose: bool = True) -> np.ndarray:
        """Multiply the stacked rest rows of ``M`` by ``Lambda_r'`` (or ``Lambda_r``)."""
        out = np.empty_like(M)
        for pos, i in enumerate(self._order[1:]):
            k, m = self.sizes[i], self.n_levels[i]
            sl = slice(int(self._offsets[pos]), int(self._offsets[pos + 1]))
            Ti = T[i].T if transpose else T[i]
            if k == 1:
                out[sl] = Ti[0, 0] * M[sl]
            else:
                sub = M[sl].reshape(m, k, *M.shape[1:])
                out[sl] = np.tensordot(Ti, sub, axes=([1], [1])).swapaxes(0, 1).reshape(M[sl].shape)
        return out

    def _lambda_r_diagonal(self, T: list) -> np.ndarray | None:
        """Diagonal of ``Lambda_r`` when every rest factor is diagonal, else ``None``."""
        rest = self._order[1:]
        if any(np.count_nonzero(T[i] - np.diag(np.diag(T[i]))) for i in rest):
            return None
        return np.concatenate([np.tile(np.diag(T[i]), self.n_levels[i]) for i in rest])

    def _B(self, V: np.ndarray):
        """``B = Z_r'Z_1 V`` with ``V_j = T1 L_j^-T`` (so ``L21 = Lambda_r' B``)."""
        from bayesmix.ml.first_block import pair_products  # numba: multi-block models only

        q1 = self._m1 * self._k1
        if self._dense_B:
            B = np.zeros((self._q_r, q1))
            out = B.reshape(-1)  # a view: pair_products fills B
        else:
            out = np.empty(self._B_indices.size)
        for (j, a), dest in zip(self._pairs, self._pair_dest):
            pair_products(a, j, V, dest, out)
        if self._dense_B:
            return B
        return sp.csc_matrix((out, self._B_indices, self._B_indptr), shape=(self._q_r, q1))

    def _factor(self, theta: np.ndarray) -> dict:
        theta = np.asarray(theta, dtype=float)
        # the last factor is kept: the estimates at the optimum ask for it twice
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1]
        self._last = (theta.copy(), self._factor_anew(theta))
        return self._last[1]

    def _factor_anew(self, theta: np.ndarray) -> dict:
        T = factors_from_theta(theta, self.kinds, self.sizes)
        p = self.n_fixed
        f = {"T": T, "ldL2": 0.0}
        M = self._XyXy.copy()
        if self.sizes:
            T1 = T[self._order[0]]
            L1inv, ldL1 = level_factors(T1, self._D)
            V = small_matmul(T1[None], L1inv.transpose(0, 2, 1))
            R1 = small_matmul(V.transpose(0, 2, 1), self._ZXy1)
            R1f = R1.reshape(-1, p + 1)
            M -= R1f.T @ R1f
            f.update(L1inv=L1inv, R1=R1, ldL2=ldL1)
            if self._q_r:
                B = self._B(V)
                if self._dense_B:
                    G = B @ B.T
                    np.subtract(self._A_rr, G, out=G)
                else:
                    from bayesmix.ml.sparse_gram import subtract_gram  # numba: sparse fits only

                    G = subtract_gram(self._A_rr, B.data, B.indices, B.indptr, self._k1)
                lam_diag = self._lambda_r_diagonal(T)
                if lam_diag is None:
                    S = self._lam_t_rows(self._lam_t_rows(G, T).T, T)
                else:  # Lambda_r diagonal: scale rows and columns in place
                    S = G
                    S *= lam_diag[:, None]
                    S *= lam_diag[None, :]
                S.flat[:: self._q_r + 1] += 1.0
                L22 = lower_cholesky(S, overwrite=True)
                if L22 is None:  # pragma: no cover - needs S not PD
                    raise FitError(
                        f"random-effects system is not positive definite at theta={theta}"
                    )
                rhs = self._lam_t_rows(self._ZXy_r - B @ R1f, T)
                R2 = lower_solve(L22, rhs)
                M -= R2.T @ R2
                f.update(B=B, L22=L22, R2=R2)
                f["ldL2"] += 2.0 * np.log(np.diag(L22)).sum()
        if p:
            LXX = lower_cholesky(M[:p, :p])
            if LXX is None:
                raise FitError("the fixed-effects matrix X is rank deficient; drop redundant terms")
            rxy = lower_solve(LXX, M[:p, p])
        else:
            LXX, rxy = np.zeros((0, 0)), np.zeros(0)
        f.update(
            LXX=LXX,
            rxy=rxy,
            pwrss=max(float(M[p, p] - rxy @ rxy), 1e-300),
            ldRX2=2.0 * float(np.log(np.diag(LXX)).sum()),
        )
        return f

    def _criterion(self, f: dict, reml: bool) -> float:
        n, p = self.n_obs, self.n_fixed
        if reml:
            dof = n - p
            return f["ldL2"] + f["ldRX2"] + dof * (1.0 + np.log(2.0 * np.pi * f["pwrss"] / dof))
        return f["ldL2"] + n * (1.0 + np.log(2.0 * np.pi * f["pwrss"] / n))

    # ----------------------------------------------------------------- public
    def __call__(self, theta: np.ndarray, reml: bool = True) -> float:
        """Profiled deviance (``reml=False``) or REML criterion at ``theta``."""
        return float(self._criterion(self._factor(theta), reml))

    @functools.cached_property
    def gradient_plan(self):
        """The :class:`~bayesmix.ml.deviance_gradient.GradientPlan` of this kernel."""
        from bayesmix.ml.deviance_gradient import GradientPlan  # numba, on first use

        return GradientPlan(self)

    def value_and_gradient(self, theta: np.ndarray, reml: bool = True) -> tuple[float, np.ndarray]:
        """The criterion and its exact gradient (:mod:`bayesmix.ml.deviance_gradient`)."""
        return self.gradient_plan.value_and_gradient(theta, reml)

    def solve(self, theta: np.ndarray, reml: bool = True) -> PLSSolution:
        """Criterion, ``beta``, ``u``, ``b = Lambda u``, ``sigma`` and factors at ``theta``."""
        f = self._factor(theta)
        n, p, T = self.n_obs, self.n_fixed, f["T"]
        beta = (
            sla.solve_triangular(f["LXX"].T, f["rxy"], lower=False, check_finite=False)
            if p
            else np.zeros(0)
        )
        u = [None] * len(self.sizes)
        if self.sizes:
            first = self._order[0]
            R1 = f["R1"]
            r1 = R1[..., p] - R1[..., :p] @ beta
            if self._q_r:
                r2 = f["R2"][:, p] - f["R2"][:, :p] @ beta
                u2 = sla.solve_triangular(f["L22"].T, r2, lower=False, check_finite=False)
                r1 = r1 - (f["B"].T @ self._lam_t_rows(u2, T, transpose=False)).reshape(r1.shape)
                for pos, i in enumerate(self._order[1:]):
                    u[i] = u2[self._offsets[pos] : self._offsets[pos + 1]].reshape(
                        self.n_levels[i], -1
                    )
            u[first] = small_matmul(f["L1inv"].transpose(0, 2, 1), r1[..., None])[..., 0]
        b = tuple(ui @ Ti.T for ui, Ti in zip(u, T))
        sigma = float(np.sqrt(f["pwrss"] / (n - p if reml else n)))
        return PLSSolution(
            theta=np.asarray(theta, dtype=float).copy(),
            reml=reml,
            criterion=float(self._criterion(f, reml)),
            beta=beta,
            u=tuple(u),
            b=b,
            sigma=sigma,
            pwrss=f["pwrss"],
            ldL2=float(f["ldL2"]),
            ldRX2=f["ldRX2"],
            RX=f["LXX"].T.copy(),
        )

    def conditional_variances(self, theta: np.ndarray, sigma: float) -> tuple[np.ndarray, ...]:
        """lme4's ``condVar``: ``sigma^2 Lambda (L L')^-1 Lambda'``, one ``(m, k, k)`` per block.

        With ``S = L22 L22'`` the diagonal blocks of ``(L L')^-1`` are those of
        ``S^-1`` for the rest blocks and ``L_j^-T L_j^-1 + W_j' S^-1 W_j`` for the
        first, ``W = L21 L11^-1`` on ``B``'s pattern (:mod:`bayesmix.ml.conditional`).
        """
        from bayesmix.ml.conditional import conditional_variances

        return conditional_variances(self, theta, sigma)

    def fitted(self, beta: np.ndarray, b: Sequence[np.ndarray]) -> np.ndarray:
        """Conditional fitted values ``X beta + sum_i rowsum(Z_i * b_i[codes_i])``."""
        if self._X is None:
            raise ValueError(
                "this kernel was built from summed products and holds no rows: "
                "compute fitted values where the rows are (by partition)."
            )
        return fitted_values(self._X, self._blocks, beta, b)
