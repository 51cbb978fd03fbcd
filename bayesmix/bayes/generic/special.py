"""Scalar functions the generic kernels need and numba's ``math`` lacks.

Hand-written because numba compiles neither ``scipy.special`` nor PyTensor's
scalar ops: the digamma function (NB2 and Gamma dispersions) and the stable
``softplus``/``logaddexp`` the GLMM likelihoods use, and the normal CDF's
logarithm (probit link) through a scaled complementary error function. Each is tested against
scipy to 1e-13 relative (``tests/test_generic_kernel.py``).
"""

from __future__ import annotations

import math

from numba import njit

#: Below this, digamma's argument is raised by its recurrence before the series.
_DIGAMMA_SERIES_FROM = 10.0


@njit(cache=False, error_model="numpy", inline="always")
def digamma(x: float) -> float:
    """psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to 10, then
    the asymptotic series to the x^-14 term (truncation error below 1e-16 from 10 on)."""
    shift = 0.0
    while x < _DIGAMMA_SERIES_FROM:
        shift -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (
        -1.0 / 12.0
        + f
        * (
            1.0 / 120.0
            + f
            * (
                -1.0 / 252.0
                + f * (1.0 / 240.0 + f * (-1.0 / 132.0 + f * (691.0 / 32760.0 + f * (-1.0 / 12.0))))
            )
        )
    )
    return shift + math.log(x) - 0.5 / x + series


@njit(cache=False, error_model="numpy", inline="always")
def softplus(x: float) -> float:
    """log(1 + exp(x)) without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=False, error_model="numpy", inline="always")
def sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)) without overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=False, error_model="numpy", inline="always")
def logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


#: From here on ``erfcx`` is its asymptotic series (14 terms: relative error < 1e-15).
_ERFCX_SERIES_FROM = 10.0


@njit(cache=False, error_model="numpy")
def erfcx(t: float) -> float:
    """exp(t^2) erfc(t), without overflow or underflow for large t."""
    if t < _ERFCX_SERIES_FROM:
        return math.exp(t * t) * math.erfc(t)
    # erfcx(t) ~ 1 / (t sqrt(pi)) * sum_k (-1)^k (2k - 1)!! / (2 t^2)^k
    term, total, inv = 1.0, 1.0, 1.0 / (2.0 * t * t)
    for k in range(1, 14):
        term *= -(2.0 * k - 1.0) * inv
        total += term
    return total / (t * math.sqrt(math.pi))


@njit(cache=False, error_model="numpy")
def log_phi(eta: float):
    """log Phi(eta) and its derivative phi(eta) / Phi(eta), stable in both tails.

    ``Phi(eta) = erfc(t) / 2`` with ``t = -eta / sqrt(2)``: for t > 0 (eta < 0)
    ``log Phi = log(erfcx(t) / 2) - t^2`` and ``phi / Phi = sqrt(2 / pi) / erfcx(t)``.
    """
    t = -eta / math.sqrt(2.0)
    if t > 0.0:
        scaled = erfcx(t)
        return math.log(0.5 * scaled) - t * t, math.sqrt(2.0 / math.pi) / scaled
    cdf = 0.5 * math.erfc(t)
    density = math.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi)
    return math.log(cdf), density / cdf
