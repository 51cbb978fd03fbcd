"""Compiled inner loops of PIRLS (numba): the response's log-likelihood and derivatives,
and ``Z Lambda`` products, each in one pass (the weighted blocked system is in
:mod:`bayesmix.ml.pirls_blocks`).

A GLMM fit evaluates the Laplace objective hundreds of times, each a few PIRLS
iterations; in numpy each iteration was some forty small array operations whose call
overhead set the time. These kernels do the arithmetic of
:class:`~bayesmix.spec.response_likelihood.ResponseLikelihood` and
:class:`~bayesmix.ml.glmm_blocked.ZLambda` (the numpy reference, which serves the rare
calls) in one pass each; ``tests/test_glmm_kernel.py`` checks that both agree.

Notation
--------
As in :mod:`bayesmix.ml.glmm_blocked`; ``IDX``/``VAL`` (n x K) hold each row's
positions in ``u`` and its coefficients of ``Z Lambda`` over all blocks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["FAMILY_CODES", "LINK_CODES", "evaluate", "z_times", "zt_times"]

FAMILY_CODES = {"binomial": 0, "poisson": 1, "negbinomial": 2, "gamma": 3}
LINK_CODES = {
    "identity": 0,
    "log": 1,
    "logit": 2,
    "probit": 3,
    "cloglog": 4,
    "inverse": 5,
    "sqrt": 6,
}
_EPS = np.finfo(float).eps
_CLIP = 1e-15
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@njit(cache=True, error_model="numpy")
def _inverse_link(link: int, eta: float):
    """``mu``, ``dmu/deta`` and ``d2mu/deta2``."""
    if link == 0:
        return eta, 1.0, 0.0
    if link == 1:
        mu = math.exp(eta)
        return mu, mu, mu
    if link == 2:
        if eta >= 0:
            mu = 1.0 / (1.0 + math.exp(-eta))
        else:
            e = math.exp(eta)
            mu = e / (1.0 + e)
        m1 = mu * (1.0 - mu)
        return mu, m1, m1 * (1.0 - 2.0 * mu)
    if link == 3:
        mu = 0.5 * math.erfc(-eta / math.sqrt(2.0))
        m1 = math.exp(-0.5 * eta * eta) / _SQRT_2PI
        return mu, m1, -eta * m1
    if link == 4:
        mu = -math.expm1(-math.exp(eta))
        m1 = math.exp(eta - math.exp(eta))
        return mu, m1, m1 * -math.expm1(eta)
    if link == 5:
        return 1.0 / eta, -1.0 / (eta * eta), 2.0 / (eta * eta * eta)
    return eta * eta, 2.0 * eta, 2.0


@njit(cache=True, error_model="numpy")
def _count(family: int, y, n, s, const, mu, disp):
    """``l``, ``l_mu``, ``l_mumu`` of one row without zero inflation."""
    if family == 0:
        ll = const + s * math.log(mu) + (n - s) * math.log1p(-mu)
        return ll, s / mu - (n - s) / (1.0 - mu), -s / mu**2 - (n - s) / (1.0 - mu) ** 2
    if family == 1:
        if mu < 0.0:
            return -math.inf, 0.0, 0.0
        ll = const - mu + (y * math.log(mu) if y > 0 else 0.0)
        return ll, y / mu - 1.0, -y / mu**2
    if family == 2:
        if mu < 0.0:
            return -math.inf, 0.0, 0.0
        t = disp
        ll = (
            const
            + math.lgamma(y + t)
            - math.lgamma(t)
            + t * math.log(t)
            + (y * math.log(mu) if y > 0 else 0.0)
            - (y + t) * math.log(t + mu)
        )
        return ll, y / mu - (y + t) / (t + mu), -y / mu**2 + (y + t) / (t + mu) ** 2
    nu = disp
    if mu <= 0.0:
        return -math.inf, 0.0, 0.0
    ll = const + nu * math.log(nu) - math.lgamma(nu)
    ll += nu * (math.log(y) - math.log(mu)) - nu * y / mu
    return ll, nu * (y - mu) / mu**2, nu / mu**2 - 2.0 * nu * y / mu**3


@njit(cache=True, error_model="numpy")
def _variance(family: int, mu: float, disp: float) -> float:
    if family == 0:
        return mu * (1.0 - mu)
    if family == 1:
        return mu
    if family == 2:
        return mu + mu * mu / disp
    return mu * mu / disp


@njit(cache=True, error_model="numpy")
def evaluate(family, link, y, n, s, const, eta, disp, zi_eta, derivatives, mu, d1, d2, fisher):
    """Sum of the rows' log-likelihoods at ``eta``; with ``derivatives`` also fills
    ``mu``, ``dl/deta`` (``d1``), ``d2l/deta2`` (``d2``) and the expected information
    (``fisher``, floored at eps as lme4 floors its weights). ``zi_eta`` has length 0
    without zero inflation."""
    total = 0.0
    inflated = zi_eta.shape[0] > 0
    logit = family == 0 and link == 2 and not inflated
    for i in range(eta.shape[0]):
        if logit and abs(eta[i]) < 34.0:  # canonical binomial: two transcendental calls
            e = math.exp(-abs(eta[i]))
            soft = math.log1p(e)  # log(1 + exp(-|eta|))
            if eta[i] >= 0:
                m, log_m, log_not_m = 1.0 / (1.0 + e), -soft, -eta[i] - soft
            else:
                m, log_m, log_not_m = e / (1.0 + e), eta[i] - soft, -soft
            total += const[i] + s[i] * log_m + (n[i] - s[i]) * log_not_m
            if derivatives:
                v = m * (1.0 - m)
                mu[i], d1[i], d2[i] = m, s[i] - n[i] * m, -n[i] * v
                fisher[i] = n[i] * max(v, _EPS)  # n mu'^2 / V with mu' = V = mu (1 - mu)
            continue
        m, m1, m2 = _inverse_link(link, eta[i])
        if family == 0:
            m = min(max(m, _CLIP), 1.0 - _CLIP)
        ll, l_mu, l_mumu = _count(family, y[i], n[i], s[i], const[i], m, disp)
        g1 = l_mu * m1
        g2 = l_mumu * m1 * m1 + l_mu * m2
        if inflated:
            z = zi_eta[i]
            log_pi = -math.log1p(math.exp(-z)) if z > -30 else z
            log_not = -math.log1p(math.exp(z)) if z < 30 else -z
            if y[i] == 0:
                a, b = log_pi, log_not + ll
                top = max(a, b)
                zero = top
                if top > -math.inf:
                    zero = top + math.log(math.exp(a - top) + math.exp(b - top))
                r = math.exp(b - zero) if zero > -math.inf else 0.0
                g2 = r * g2 + r * (1.0 - r) * g1 * g1
                g1 = r * g1
                ll = zero
            else:
                ll = log_not + ll
        total += ll
        if derivatives:
            mu[i] = m
            d1[i] = g1
            d2[i] = g2
            m1f = m1 if abs(m1) >= _EPS else math.copysign(_EPS, m1)
            fisher[i] = n[i] * m1f * m1f / max(_variance(family, m, disp), _EPS)
    return total


@njit(cache=True, error_model="numpy")
def z_times(IDX, VAL, u, out):
    """``out += Z Lambda u``."""
    for i in range(IDX.shape[0]):
        acc = 0.0
        for j in range(IDX.shape[1]):
            acc += VAL[i, j] * u[IDX[i, j]]
        out[i] += acc


@njit(cache=True, error_model="numpy")
def zt_times(IDX, VAL, d, q):
    """``Lambda' Z' d``."""
    out = np.zeros(q)
    for i in range(IDX.shape[0]):
        for j in range(IDX.shape[1]):
            out[IDX[i, j]] += VAL[i, j] * d[i]
    return out
