"""The arithmetic of within-group correlation: parameter maps and whitening.

Everything here works on numpy arrays and is shared by the ML engine and the
checks of the Bayesian one. Two ways of whitening a group's residuals by the
inverse Cholesky factor of its correlation matrix ``C``:

* **Markov** (AR(1) and CAR(1)): ``cor(t_i, t_j) = phi^|t_i - t_j|``. Sorted by
  time, each residual given its predecessor has correlation ``rho_i =
  phi^(t_i - t_(i-1))``, so ``L^-1 e`` is ``(e_i - rho_i e_(i-1)) /
  sqrt(1 - rho_i^2)`` (``e_1`` unchanged) and ``log|C| = sum log(1 - rho_i^2)``:
  O(n), the banded inverse the issue asks for.
* **Dense**: groups of equal size are stacked, their ``C`` formed and factored
  as one batch; groups with identical positions share one factor.

Notation
--------
phi : AR coefficients (or the AR(1)/CAR(1) correlation at unit distance);
theta_ma : MA coefficients; ``x_t = sum phi_i x_(t-i) + e_t + sum theta_j e_(t-j)``
(nlme's signs). u : unconstrained parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from bayesmix.errors import FitError


def sigmoid(u: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, dtype=float)))


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def positions_in_groups(codes: np.ndarray) -> np.ndarray:
    """Each row's 0-based position within its group, in data order."""
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    position = np.empty(len(codes))
    position[order] = np.arange(len(codes)) - starts[codes[order]]
    return position


# ------------------------------------------------------------------ ARMA


def pacf_to_ar(r: np.ndarray) -> np.ndarray:
    """AR coefficients from partial autocorrelations in (-1, 1) (Durbin-Levinson).

    Every ``r`` in the open cube gives a stationary AR polynomial (Barndorff-Nielsen
    & Schou, 1973), so ``r = tanh(u)`` parametrises the stationary region.
    """
    phi = np.zeros(0)
    for k, rk in enumerate(np.asarray(r, dtype=float)):
        phi = np.concatenate([phi - rk * phi[::-1], [rk]]) if k else np.array([rk])
    return phi


def ar_to_pacf(phi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pacf_to_ar` (step-down recursion)."""
    phi = np.asarray(phi, dtype=float).copy()
    p = phi.size
    r = np.zeros(p)
    for k in range(p - 1, -1, -1):
        r[k] = phi[k]
        if k:
            phi = (phi[:k] + r[k] * phi[:k][::-1]) / (1.0 - r[k] ** 2)
    return r


def arma_acf(phi: np.ndarray, theta: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelations ``rho_0 .. rho_max_lag`` of a stationary ARMA(p, q).

    The autocovariances ``gamma_0..gamma_p`` solve the first ``p + 1``
    Yule-Walker-type equations ``gamma_k - sum phi_i gamma_|k-i| =
    sum_{j>=k} theta_j psi_(j-k)`` (``theta_0 = 1``, ``psi`` the MA(inf)
    weights); higher lags follow the recursion with the MA tail added.
    """
    phi = np.asarray(phi, dtype=float)
    theta = np.concatenate([[1.0], np.asarray(theta, dtype=float)])
    p, q = phi.size, theta.size - 1
    psi = np.zeros(q + 1)
    for j in range(q + 1):
        psi[j] = theta[j] + sum(phi[i] * psi[j - i - 1] for i in range(min(p, j)))
    rhs = np.array([theta[k:] @ psi[: q + 1 - k] if k <= q else 0.0 for k in range(p + 1)])
    A = np.eye(p + 1)
    for k in range(p + 1):
        for i in range(p):
            A[k, abs(k - i - 1)] -= phi[i]
    gamma = np.zeros(max(max_lag, p) + 1)
    gamma[: p + 1] = np.linalg.solve(A, rhs)
    for k in range(p + 1, gamma.size):
        ma = theta[k:] @ psi[: q + 1 - k] if k <= q else 0.0
        gamma[k] = phi @ gamma[k - 1 : k - p - 1 : -1] + ma  # indices k-1 .. k-p
    return gamma[: max_lag + 1] / gamma[0]


# --------------------------------------------------------------- corSymm


def cpc_to_correlation(z: np.ndarray, K: int) -> np.ndarray:
    """A ``K x K`` correlation matrix from canonical partial correlations ``z``.

    ``z`` (``K (K - 1) / 2`` values in (-1, 1), column by column of the lower
    triangle) fill the Cholesky factor row by row as in the LKJ construction,
    so every ``z`` gives a positive-definite matrix and every such matrix has one ``z``.
    """
    L = np.zeros((K, K))
    L[0, 0] = 1.0
    rows, cols = np.tril_indices(K, -1)
    Z = np.zeros((K, K))
    Z[rows, cols] = z
    for i in range(1, K):
        remaining = 1.0
        for j in range(i):
            L[i, j] = Z[i, j] * np.sqrt(remaining)
            remaining -= L[i, j] ** 2
        L[i, i] = np.sqrt(max(remaining, 0.0))
    return L @ L.T


def correlation_to_cpc(C: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cpc_to_correlation`."""
    L = np.linalg.cholesky(C)
    K = C.shape[0]
    z = np.zeros((K, K))
    for i in range(1, K):
        remaining = 1.0
        for j in range(i):
            z[i, j] = L[i, j] / np.sqrt(remaining)
            remaining -= L[i, j] ** 2
    rows, cols = np.tril_indices(K, -1)
    return z[rows, cols]


# ------------------------------------------------------------- whitening


@dataclass(frozen=True, eq=False)
class MarkovLayout:
    """Rows sorted by group and time, with each row's predecessor.

    Attributes
    ----------
    order : ndarray of int
        Row indices sorted by group, then time.
    first : ndarray of bool
        Row (in ``order``) is the first of its group.
    gap : ndarray
        ``t_i - t_(i-1)`` (1 for first rows; unused there).
    """

    order: np.ndarray
    first: np.ndarray
    gap: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.order)
        object.__setattr__(self, "_sorted", bool(np.array_equal(self.order, np.arange(n))))
        object.__setattr__(self, "_unit_gaps", bool(np.all(self.gap[~self.first] == 1.0)))
        prev = np.arange(n) - 1
        prev[self.first] = np.flatnonzero(self.first)  # any row: rho is 0 there
        object.__setattr__(self, "_prev", prev)
        object.__setattr__(self, "_first_rows", np.flatnonzero(self.first))
        object.__setattr__(self, "_n_rest", int(n - self.first.sum()))

    def rho(self, phi: float) -> np.ndarray:
        """Correlation of each sorted row with its predecessor (0 for first rows)."""
        if self._unit_gaps:
            return np.where(self.first, 0.0, phi)
        return np.where(self.first, 0.0, np.power(phi, self.gap))

    def whiten(self, phi: float, M: np.ndarray) -> tuple[np.ndarray, float]:
        """``L^-1 M`` in the original row order, and ``log|C|``."""
        if self._sorted and self._unit_gaps:  # the common case, in four array operations
            one_minus = 1.0 - phi * phi
            if one_minus <= 0:
                raise FitError(f"an AR(1)/CAR(1) correlation of {phi} is not inside (-1, 1)")
            W = np.empty_like(M, dtype=float)
            W[1:] = (M[1:] - phi * M[:-1]) / math.sqrt(one_minus)
            W[self._first_rows] = M[self._first_rows]
            return W, self._n_rest * math.log(one_minus)
        rho = self.rho(phi)
        one_minus = 1.0 - rho * rho
        if np.any(one_minus <= 0):
            raise FitError(f"an AR(1)/CAR(1) correlation of {phi} is not inside (-1, 1)")
        scale = 1.0 / np.sqrt(one_minus)
        Ms = M if self._sorted else M[self.order]
        if M.ndim > 1:
            rho, scale = rho[:, None], scale[:, None]
        W = (Ms - rho * Ms[self._prev]) * scale
        if not self._sorted:
            out = np.empty_like(W)
            out[self.order] = W
            W = out
        return W, float(np.sum(np.log(one_minus)))


@dataclass(frozen=True, eq=False)
class DenseLayout:
    """Groups stacked by size for batched factorisation.

    Attributes
    ----------
    classes : tuple of (rows, coords, inverse)
        Per group size ``s``: ``rows`` (G, s) row indices; ``coords`` the
        distinct coordinate patterns (U, s, d); ``inverse`` (G,) the pattern of
        each group. Position-based structures share patterns; spatial ones rarely do.
    """

    classes: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    prefix: np.ndarray | None = None

    def whiten(self, correlation, M: np.ndarray) -> tuple[np.ndarray, float]:
        """``L^-1 M`` and ``log|C|``; ``correlation(coords)`` gives (U, s, s) matrices."""
        if self.prefix is not None:
            return self._whiten_prefix(correlation, M)
        out = np.empty_like(M, dtype=float)
        log_det = 0.0
        for rows, coords, inverse in self.classes:
            C = correlation(coords)
            try:
                L = np.linalg.cholesky(C)
            except np.linalg.LinAlgError as err:
                raise FitError(
                    "a within-group correlation matrix is not positive definite"
                ) from err
            d = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
            log_det += 2.0 * float(np.bincount(inverse, minlength=len(coords)) @ d)
            s = rows.shape[1]
            Linv = np.linalg.solve(L, np.broadcast_to(np.eye(s), L.shape))
            block = M[rows]  # (G, s, ...) in stacked order
            flat = block.reshape(block.shape[0], s, -1)
            W = np.matmul(Linv[inverse], flat)
            out[rows] = W.reshape(block.shape)
        return out, log_det

    def _whiten_prefix(self, correlation, M: np.ndarray) -> tuple[np.ndarray, float]:
        """Every group's coordinates start the longest group's (positions 1..n_i, or
        complete series with drop-outs): one factor serves all, as the Cholesky
        factor of a leading block of ``C`` is the leading block of ``C``'s."""
        C = correlation(self.prefix[None])[0]
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError as err:
            raise FitError("a within-group correlation matrix is not positive definite") from err
        # LAPACK's triangular inverse: solve_triangular with a matrix right-hand side
        # is a threaded BLAS call that took milliseconds on a busy machine
        Linv, info = sla.lapack.dtrtri(L, lower=1)
        if info:  # pragma: no cover - L comes from a successful factorisation
            raise FitError(f"inverting a correlation factor failed (LAPACK info {info})")
        half_log_det = np.cumsum(np.log(np.diag(L)))
        out = np.empty_like(M, dtype=float)
        log_det = 0.0
        for rows, _, _ in self.classes:
            G, s = rows.shape
            block = M[rows]
            flat = block.reshape(G, s, -1)
            out[rows] = np.matmul(Linv[:s, :s], flat).reshape(block.shape)
            log_det += 2.0 * G * float(half_log_det[s - 1])
        return out, log_det


def dense_layout(
    group_codes: np.ndarray, coords: np.ndarray, n_groups: int, share: bool
) -> DenseLayout:
    """Stack groups by size; ``share`` merges groups with identical ``coords``."""
    order = np.lexsort((np.arange(len(group_codes)), group_codes))
    sizes = np.bincount(group_codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    classes = []
    for s in np.unique(sizes[sizes > 0]):
        groups = np.flatnonzero(sizes == s)
        rows = order[starts[groups][:, None] + np.arange(s)[None, :]]
        c = coords[rows]  # (G, s, d)
        if share:
            flat = c.reshape(len(groups), -1)
            uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
            patterns = uniq.reshape(-1, s, c.shape[2])
        else:
            patterns, inverse = c, np.arange(len(groups))
        classes.append((rows, patterns, np.asarray(inverse).ravel()))
    return DenseLayout(tuple(classes), _common_prefix(classes) if share else None)


def _common_prefix(classes: list) -> np.ndarray | None:
    """The longest group's coordinates when every group's are a leading part of them."""
    longest = classes[-1][1]  # sizes ascend
    if len(longest) != 1:
        return None
    prefix = longest[0]
    for _, patterns, _ in classes:
        s = patterns.shape[1]
        if not np.array_equal(patterns, np.broadcast_to(prefix[:s], patterns.shape)):
            return None
    return prefix
