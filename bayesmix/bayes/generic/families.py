"""The response's log-likelihood for the generic kernel, one row loop per family.

Each function adds every row's log-likelihood given the linear predictor
``eta`` and writes its derivative to ``d``; the families and links are those
of :mod:`bayesmix.bayes.likelihoods.glmm_families` (normalising constants
included, from ``row_const``), written as scalar loops. One loop per family
keeps the branch on the family outside the rows.

Notation
--------
eta : linear predictor; d : d loglik / d eta per row; y : response (binomial:
successes); w : weights (Gaussian: prior weights; binomial: trials);
c : per-row constants; disp : NB2 theta or Gamma shape; eta_zi : zero-inflation
predictor, ``pi = expit(eta_zi)``.
"""

from __future__ import annotations

import math

from numba import njit

from bayesmix.bayes.generic.special import digamma, log_phi, logaddexp, sigmoid, softplus

# family codes (with their links)
GAUSSIAN, BINOMIAL_LOGIT, POISSON_LOG, NEGBIN_LOG, GAMMA_LOG = 0, 1, 2, 3, 4
GAMMA_INVERSE, BINOMIAL_CLOGLOG, BINOMIAL_PROBIT = 5, 6, 7
POISSON_IDENTITY, POISSON_SQRT, GAMMA_IDENTITY = 8, 9, 10


@njit(cache=False, error_model="numpy", inline="always")
def _mean(family, eta):
    """mu, log mu and their derivatives in eta under the family's link (Poisson, Gamma)."""
    if family == POISSON_LOG or family == GAMMA_LOG:
        mu = math.exp(eta)
        return mu, eta, mu, 1.0
    if family == POISSON_IDENTITY or family == GAMMA_IDENTITY:
        return eta, math.log(eta), 1.0, 1.0 / eta
    if family == POISSON_SQRT:
        mu = eta * eta
        return mu, math.log(mu), 2.0 * eta, 2.0 / eta
    return 1.0 / eta, -math.log(eta), -1.0 / (eta * eta), -1.0 / eta  # GAMMA_INVERSE


@njit(cache=False, error_model="numpy", fastmath={"reassoc", "contract"})
def gaussian(y, w, c, eta, d, sigma):
    """Normal(y | eta, sigma / sqrt(w)): the log-likelihood; ``d`` gets its eta derivative.

    Also returns the derivative with respect to log sigma."""
    n = y.size
    inv_var = 1.0 / (sigma * sigma)
    squares = 0.0
    constants = 0.0
    for i in range(n):
        weighted = w[i] * (y[i] - eta[i])
        squares += weighted * (y[i] - eta[i])
        d[i] = weighted * inv_var
        constants += c[i]
    logp = constants - n * math.log(sigma) - 0.5 * squares * inv_var
    return logp, -n + squares * inv_var


@njit(cache=False, error_model="numpy")
def counts(family, y, w, c, eta, d, disp, d_disp, rows):
    """Binomial, Poisson, NB2 and Gamma rows: each row's log-likelihood to ``rows``, its
    derivatives to ``d`` and ``d_disp``; returns the total."""
    n = y.size
    if family == BINOMIAL_LOGIT:
        for i in range(n):
            rows[i] = c[i] - y[i] * softplus(-eta[i]) - (w[i] - y[i]) * softplus(eta[i])
            d[i] = y[i] - w[i] * sigmoid(eta[i])
    elif family == BINOMIAL_CLOGLOG:  # log(1 - p) = -exp(eta)
        for i in range(n):
            rate = math.exp(eta[i])
            # log p = log(1 - exp(-rate)), by Maechler's two forms
            log_p = math.log(-math.expm1(-rate)) if rate < 0.6931 else math.log1p(-math.exp(-rate))
            rows[i] = c[i] + y[i] * log_p - (w[i] - y[i]) * rate
            d[i] = y[i] * rate / math.expm1(rate) - (w[i] - y[i]) * rate
    elif family == BINOMIAL_PROBIT:  # p = Phi(eta), 1 - p = Phi(-eta)
        for i in range(n):
            log_p, ratio_p = log_phi(eta[i])
            log_q, ratio_q = log_phi(-eta[i])
            rows[i] = c[i] + y[i] * log_p + (w[i] - y[i]) * log_q
            d[i] = y[i] * ratio_p - (w[i] - y[i]) * ratio_q
    elif family in (POISSON_LOG, POISSON_IDENTITY, POISSON_SQRT):
        for i in range(n):
            mu, log_mu, d_mu, d_log_mu = _mean(family, eta[i])
            rows[i] = c[i] + y[i] * log_mu - mu
            d[i] = y[i] * d_log_mu - d_mu
    elif family == NEGBIN_LOG:
        log_disp = math.log(disp)
        lgamma_disp, digamma_disp = math.lgamma(disp), digamma(disp)
        for i in range(n):
            total = logaddexp(log_disp, eta[i])
            yt = y[i] + disp
            rows[i] = c[i] + math.lgamma(yt) - lgamma_disp + disp * log_disp
            rows[i] += y[i] * eta[i] - yt * total
            d[i] = y[i] - yt * math.exp(eta[i] - total)
            d_disp[i] = digamma(yt) - digamma_disp + log_disp + 1.0 - total - yt * math.exp(-total)
    else:  # Gamma; c holds log y
        log_disp = math.log(disp)
        lgamma_disp, digamma_disp = math.lgamma(disp), digamma(disp)
        for i in range(n):
            mu, log_mu, d_mu, d_log_mu = _mean(family, eta[i])
            # y / mu as the model's graph writes it for each link
            if family == GAMMA_LOG:
                y_over_mu = y[i] * math.exp(-eta[i])
            elif family == GAMMA_INVERSE:
                y_over_mu = y[i] * eta[i]
            else:
                y_over_mu = y[i] / mu
            rows[i] = disp * (log_disp - log_mu - y_over_mu) + (disp - 1.0) * c[i] - lgamma_disp
            d[i] = disp * (y_over_mu * d_mu / mu - d_log_mu)
            d_disp[i] = log_disp + 1.0 - log_mu - y_over_mu + c[i] - digamma_disp
    total = 0.0
    for i in range(n):
        total += rows[i]
    return total


@njit(cache=False, error_model="numpy")
def zero_inflate(y, eta_zi, logp_rows, d, d_disp, d_zi):
    """Mix every row with a structural zero of probability ``expit(eta_zi)``.

    ``logp_rows`` holds each row's count log-likelihood; ``d`` and ``d_disp`` are
    rescaled in place and ``d_zi`` filled. Returns the total log-likelihood."""
    logp = 0.0
    for i in range(y.size):
        pi = sigmoid(eta_zi[i])
        count = logp_rows[i] - softplus(eta_zi[i])
        if y[i] == 0.0:
            log_pi = -softplus(-eta_zi[i])
            value = logaddexp(log_pi, count)
            w_zero = math.exp(log_pi - value)
            d_zi[i] = w_zero * (1.0 - pi) - (1.0 - w_zero) * pi
            d[i] *= 1.0 - w_zero
            d_disp[i] *= 1.0 - w_zero
        else:
            value = count
            d_zi[i] = -pi
        logp += value
    return logp
