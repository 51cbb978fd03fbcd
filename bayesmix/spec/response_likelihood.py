"""A GLMM response's log-likelihood as a function of the linear predictor, with derivatives.

:class:`ResponseLikelihood` holds one response vector, its family and the
family's dispersion (NB2 ``theta``, Gamma ``shape``), and optionally the
zero-inflation log-odds of each row. For the conditional modes (PIRLS) and the
Laplace approximation it returns, per observation, the log-likelihood ``l_i``
and its first two derivatives in ``eta_i``:

    dl/deta = l_mu mu',   d2l/deta2 = l_mumu mu'^2 + l_mu mu''

(``mu' = dmu/deta``, ``mu'' = d2mu/deta2`` from the link). With zero inflation
(structural-zero probability ``pi``, count pmf ``f``), a zero has
``ll = log(pi + (1 - pi) f(0))``; writing ``c = log f(0)`` and
``r = (1 - pi) f(0) / (pi + (1 - pi) f(0))`` (the posterior probability that
the zero is a count zero), ``dl/deta = r c'`` and
``d2l/deta2 = r c'' + r (1 - r) c'^2``. The constant parts (``log C(n, s)``,
``-log y!``) are computed once, so an evaluation is a few vector operations
(scipy's ``logpmf`` checks its arguments at every call, which dominated PIRLS).

Notation
--------
y response (binomial: proportion), n binomial trials, s = n y successes, mu mean,
eta linear predictor, theta NB2 size, nu Gamma shape, pi structural-zero probability.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from bayesmix.spec.families import Family

__all__ = ["ResponseLikelihood"]

_BINOMIAL_CLIP = 1e-15
_EPS = np.finfo(float).eps


class ResponseLikelihood:
    """Per-observation log-likelihood of ``y`` in ``eta`` and its derivatives.

    Parameters
    ----------
    family : Family
    y : ndarray
        Response (a proportion for the binomial family).
    weights : ndarray, optional
        Binomial trials (1 when ``None``).

    Attributes
    ----------
    dispersion : float or None
        NB2 ``theta`` or Gamma ``shape``; set by the caller before evaluating.
    zi_eta : ndarray or None
        Log-odds of a structural zero per row (zero inflation), or ``None``.
    s, constant : ndarray
        Binomial successes ``n y`` (0 for other families) and the part of each row's
        log-likelihood free of ``mu`` (``log C(n, s)``, ``-log y!``, ``-log y``).
    """

    def __init__(self, family: Family, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.family = family
        self.y = np.asarray(y, dtype=float)
        self.n = np.ones_like(self.y) if weights is None else np.asarray(weights, dtype=float)
        self.dispersion: float | None = None
        self.zi_eta: np.ndarray | None = None
        self.zero = self.y == 0
        self.s = np.zeros_like(self.y)  # binomial successes
        name = family.name
        if name == "binomial":
            self.s = np.rint(self.y * self.n)
            self.constant = (
                special.gammaln(self.n + 1)
                - special.gammaln(self.s + 1)
                - special.gammaln(self.n - self.s + 1)
            )
        elif name in ("poisson", "negbinomial"):
            self.constant = -special.gammaln(self.y + 1)
        elif name == "gamma":
            self._log_y = np.log(self.y)
            self.constant = -self._log_y
        else:
            raise ValueError(f"no GLMM likelihood for the {name} family")

    def mean(self, eta: np.ndarray) -> np.ndarray:
        mu = self.family.link.inverse(eta)
        if self.family.name == "binomial":
            mu = np.clip(mu, _BINOMIAL_CLIP, 1 - _BINOMIAL_CLIP)
        return mu

    def _count(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``ll``, ``l_mu`` and ``l_mumu`` of the family without zero inflation."""
        y, name = self.y, self.family.name
        if name == "binomial":
            s, n = self.s, self.n
            ll = self.constant + s * np.log(mu) + (n - s) * np.log1p(-mu)
            return ll, s / mu - (n - s) / (1 - mu), -s / mu**2 - (n - s) / (1 - mu) ** 2
        if name == "poisson":  # a negative mean (identity link) has no likelihood
            ll = np.where(mu < 0, -np.inf, self.constant + special.xlogy(y, mu) - mu)
            return ll, y / mu - 1.0, -y / mu**2
        if name == "negbinomial":
            theta = float(self.dispersion)
            ll = np.where(mu < 0, -np.inf, 0.0) + (
                self.constant
                + special.gammaln(y + theta)
                - special.gammaln(theta)
                + theta * np.log(theta)
                + special.xlogy(y, mu)
                - (y + theta) * np.log(theta + mu)
            )
            l_mu = y / mu - (y + theta) / (theta + mu)
            return ll, l_mu, -y / mu**2 + (y + theta) / (theta + mu) ** 2
        nu = float(self.dispersion)  # gamma
        ll = (
            self.constant
            + nu * np.log(nu)
            - special.gammaln(nu)
            + nu * (self._log_y - np.log(mu))
            - nu * y / mu
        )
        return ll, nu * (y - mu) / mu**2, nu / mu**2 - 2.0 * nu * y / mu**3

    def loglik(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, ll)``: the count mean and each row's log-likelihood."""
        mu = self.mean(eta)
        ll = self._count(mu)[0]
        if self.zi_eta is not None:
            ll = self._inflate(ll)[0]
        return mu, ll

    def derivatives(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mu, ll, dl/deta, d2l/deta2)`` per row."""
        mu = self.mean(eta)
        ll, l_mu, l_mumu = self._count(mu)
        m1, m2 = self.family.link.mu_eta(eta), self.family.link.mu_eta2(eta)
        d1 = l_mu * m1
        d2 = l_mumu * m1**2 + l_mu * m2
        if self.zi_eta is not None:
            ll, r = self._inflate(ll)
            d2 = np.where(self.zero, r * d2 + r * (1 - r) * d1**2, d2)
            d1 = np.where(self.zero, r * d1, d1)
        return mu, ll, d1, d2

    def _inflate(self, count_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The zero-inflated log-likelihood and ``r`` (1 where y > 0)."""
        log_pi = -np.logaddexp(0.0, -self.zi_eta)  # log expit
        log_not_pi = -np.logaddexp(0.0, self.zi_eta)
        zero_l = np.logaddexp(log_pi, log_not_pi + count_l)
        ll = np.where(self.zero, zero_l, log_not_pi + count_l)
        r = np.where(self.zero, np.exp(log_not_pi + count_l - zero_l), 1.0)
        return ll, r

    def fisher_weights(self, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """The expected information ``n mu'^2 / Var(y_i)`` per row (lme4's PIRLS weights)."""
        m1 = self.family.link.mu_eta(eta)
        m1 = np.where(np.abs(m1) < _EPS, np.copysign(_EPS, m1), m1)  # as lme4, away from 0
        variance = np.maximum(self.family.response_variance(mu, self.dispersion), _EPS)
        return self.n * m1**2 / variance
