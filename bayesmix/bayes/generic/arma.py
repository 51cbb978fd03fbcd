"""corARMA's autocorrelations and their derivatives, for the generic kernel.

The autocorrelations ``rho_0 .. rho_max_lag`` of a stationary ARMA(p, q) from its
partial autocorrelations, as :func:`bayesmix.spec.correlation_math.arma_acf` and
``pacf_to_ar``: Durbin-Levinson for the AR and MA coefficients, the first p + 1
Yule-Walker-type equations for ``gamma_0 .. gamma_p``, the recursion beyond.
Their derivatives in the unconstrained parameters come by the complex step
(``Im f(x + i h) / h`` with h = 1e-30: exact to rounding, since every step is
analytic), which spares a hand-written adjoint of the linear solve.

Notation
--------
r : partial autocorrelations; phi, theta : AR and MA coefficients (nlme's signs);
psi : MA(inf) weights; gamma : autocovariances; rho : autocorrelations.
"""

from __future__ import annotations

import cmath

import numpy as np
from numba import njit

#: The complex step.
STEP = 1e-30


@njit(cache=False, error_model="numpy")
def _pacf_to_ar(r, phi):
    """AR coefficients from partial autocorrelations (Durbin-Levinson), into ``phi``."""
    for k in range(r.size):
        previous = phi[:k].copy()
        for i in range(k):
            phi[i] = previous[i] - r[k] * previous[k - 1 - i]
        phi[k] = r[k]


@njit(cache=False, error_model="numpy")
def _solve(A, b, m):
    """``A^-1 b`` of an m x m system (row stride m) by elimination with partial pivoting
    on the real parts (the complex step's imaginary parts are negligible)."""
    for col in range(m):
        pivot = col
        for row in range(col + 1, m):
            if abs(A[row * m + col].real) > abs(A[pivot * m + col].real):
                pivot = row
        if pivot != col:
            for c in range(m):
                A[col * m + c], A[pivot * m + c] = A[pivot * m + c], A[col * m + c]
            b[col], b[pivot] = b[pivot], b[col]
        for row in range(col + 1, m):
            factor = A[row * m + col] / A[col * m + col]
            for c in range(col, m):
                A[row * m + c] -= factor * A[col * m + c]
            b[row] -= factor * b[col]
    for row in range(m - 1, -1, -1):
        value = b[row]
        for c in range(row + 1, m):
            value -= A[row * m + c] * b[c]
        b[row] = value / A[row * m + row]


@njit(cache=False, error_model="numpy")
def arma_rho(r_ar, r_ma, max_lag, rho):
    """``rho_0 .. rho_max_lag`` (complex arrays) of the ARMA with partial
    autocorrelations ``r_ar`` and ``r_ma``."""
    p, q = r_ar.size, r_ma.size
    phi = np.zeros(p, dtype=np.complex128)
    _pacf_to_ar(r_ar, phi)
    theta_ar = np.zeros(q, dtype=np.complex128)
    _pacf_to_ar(r_ma, theta_ar)
    theta = np.zeros(q + 1, dtype=np.complex128)
    theta[0] = 1.0
    for j in range(q):
        theta[j + 1] = -theta_ar[j]  # nlme's MA sign
    psi = np.zeros(q + 1, dtype=np.complex128)
    for j in range(q + 1):
        psi[j] = theta[j]
        for i in range(min(p, j)):
            psi[j] += phi[i] * psi[j - i - 1]
    n_total = max(max_lag, p) + 1
    ma = np.zeros(n_total, dtype=np.complex128)  # sum_m theta_(k+m) psi_m
    for k in range(min(q, n_total - 1) + 1):
        for m in range(q + 1 - k):
            ma[k] += theta[k + m] * psi[m]
    A = np.zeros((p + 1) * (p + 1), dtype=np.complex128)
    for k in range(p + 1):
        A[k * (p + 1) + k] = 1.0
        for i in range(p):
            A[k * (p + 1) + abs(k - i - 1)] -= phi[i]
    gamma = np.zeros(n_total, dtype=np.complex128)
    for k in range(p + 1):
        gamma[k] = ma[k]
    _solve(A, gamma[: p + 1], p + 1)
    for k in range(p + 1, n_total):
        gamma[k] = ma[k]
        for i in range(p):
            gamma[k] += phi[i] * gamma[k - 1 - i]
    for k in range(max_lag + 1):
        rho[k] = gamma[k] / gamma[0]


@njit(cache=False, error_model="numpy")
def _partials(x, first, size, lower, upper, perturbed):
    """Partial autocorrelations ``lower + (upper - lower) expit(x)``, one entry perturbed
    by the complex step (``perturbed``: its index, -1 for none)."""
    r = np.empty(size, dtype=np.complex128)
    for j in range(size):
        u = complex(x[first + j], STEP if j == perturbed else 0.0)
        r[j] = lower + (upper - lower) / (1.0 + cmath.exp(-u))
    return r


@njit(cache=False, error_model="numpy")
def arma_rho_and_jacobian(x, first_ar, p, first_ma, q, lower, upper, max_lag):
    """rho (real) and its Jacobian (max_lag + 1) x (p + q) in the unconstrained ``x``."""
    rho_c = np.empty(max_lag + 1, dtype=np.complex128)
    arma_rho(_partials(x, first_ar, p, lower, upper, -1),
             _partials(x, first_ma, q, lower, upper, -1), max_lag, rho_c)  # fmt: skip
    rho = rho_c.real.copy()
    jacobian = np.empty((max_lag + 1, p + q))
    for k in range(p + q):
        on_ar = k < p
        r_ar = _partials(x, first_ar, p, lower, upper, k if on_ar else -1)
        r_ma = _partials(x, first_ma, q, lower, upper, -1 if on_ar else k - p)
        arma_rho(r_ar, r_ma, max_lag, rho_c)
        for lag in range(max_lag + 1):
            jacobian[lag, k] = rho_c[lag].imag / STEP
    return rho, jacobian
