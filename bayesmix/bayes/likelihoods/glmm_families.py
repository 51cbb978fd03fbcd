"""Log-likelihood graphs of the GLMM families, written for stability and numba.

Each family's log-likelihood is written out from the linear predictor rather
than taken from a PyMC distribution of the mean: with ``eta`` at hand, the
log-link families need no ``log(exp(eta))``, the binomial's ``log p`` and
``log(1 - p)`` have forms that stay finite for any ``eta`` under each link,
and the per-row zero-inflation mixture is one ``logaddexp`` (PyMC's
``ZeroInflated*`` build a general mixture graph). The values are the full
log-likelihoods of :meth:`bayesmix.spec.families.Family.loglik` (normalising
constants included, as constants of the graph), so the two can be compared.

Notation
--------
eta : linear predictor (offset included); mu : mean, ``g^{-1}(eta)``; y : response
(the proportion for the binomial); n : binomial trials; k : successes,
``round(y n)``; theta : NB2 size; shape : Gamma shape; pi : structural-zero
probability, ``expit(eta_zi)``.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from scipy import special

from bayesmix.spec.families import Family

__all__ = ["family_loglik", "zero_inflated_loglik"]

_SQRT2 = float(np.sqrt(2.0))


def binomial_log_probabilities(
    link: str, eta: pt.TensorVariable
) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """``log p`` and ``log(1 - p)`` under ``link``, finite where ``p`` rounds to 0 or 1."""
    if link == "logit":
        return -pt.softplus(-eta), -pt.softplus(eta)
    if link == "probit":  # Phi(eta) = erfc(-eta / sqrt 2) / 2 and 1 - Phi(eta) = Phi(-eta)
        return _log_half_erfc(-eta / _SQRT2), _log_half_erfc(eta / _SQRT2)
    if link == "cloglog":  # 1 - p = exp(-exp(eta))
        log_1mp = -pt.exp(eta)
        return pt.log1mexp(log_1mp), log_1mp
    raise ValueError(f"no binomial link {link!r}")


def _log_half_erfc(t: pt.TensorVariable) -> pt.TensorVariable:
    """``log(erfc(t) / 2)`` for any ``t``: ``erfc`` where it does not underflow (``t <= 0``),
    ``log erfcx(t) - t^2`` beyond. Each branch sees only its own half-line, so the
    branch not taken contributes no NaN to the gradient."""
    positive = t > 0
    t_pos = pt.switch(positive, t, 0.0)
    t_neg = pt.switch(positive, 0.0, t)
    tail = pt.log(0.5 * pt.erfcx(t_pos)) - t_pos * t_pos
    return pt.switch(positive, tail, pt.log(0.5 * pt.erfc(t_neg)))


def _log_mean(link: str, eta: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """``mu`` and ``log mu`` under a link of the count and Gamma families."""
    if link == "log":
        return pt.exp(eta), eta
    if link == "identity":
        return eta, pt.log(eta)
    if link == "sqrt":
        mu = eta * eta
        return mu, pt.log(mu)
    if link == "inverse":
        return 1.0 / eta, -pt.log(eta)
    raise ValueError(f"no link {link!r}")


def family_loglik(
    family: Family,
    eta: pt.TensorVariable,
    y: np.ndarray,
    trials: np.ndarray | None = None,
    dispersion: pt.TensorVariable | None = None,
) -> pt.TensorVariable:
    """Log-likelihood of every observation, a vector like ``y``.

    Parameters
    ----------
    family : Family
        Binomial, Poisson, negative binomial (NB2) or Gamma, with its link.
    eta : TensorVariable
        The linear predictor of every row (offset included).
    y : ndarray
        The response; for the binomial the proportion of successes.
    trials : ndarray, optional
        Binomial trials (1 when ``None``).
    dispersion : TensorVariable, optional
        ``theta`` (negative binomial) or ``shape`` (Gamma).
    """
    y = np.asarray(y, dtype=float)
    link = family.link.name
    if family.name == "binomial":
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        k = np.rint(y * n)
        log_p, log_1mp = binomial_log_probabilities(link, eta)
        log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        return _times(k, log_p) + _times(n - k, log_1mp) + log_choose
    log_factorial = special.gammaln(y + 1.0)
    if family.name == "poisson":
        mu, log_mu = _log_mean(link, eta)
        return y * log_mu - mu - log_factorial
    if family.name == "negbinomial":
        theta = dispersion
        _, log_mu = _log_mean(link, eta)
        log_theta = pt.log(theta)
        return (
            pt.gammaln(y + theta)
            - pt.gammaln(theta)
            - log_factorial
            + theta * log_theta
            + y * log_mu
            - (y + theta) * pt.logaddexp(log_theta, log_mu)
        )
    if family.name == "gamma":
        shape = dispersion
        mu, log_mu = _log_mean(link, eta)
        if link == "log":
            y_over_mu = y * pt.exp(-eta)
        elif link == "inverse":
            y_over_mu = y * eta
        else:
            y_over_mu = y / mu
        return (
            shape * (pt.log(shape) - log_mu - y_over_mu)
            + (shape - 1.0) * np.log(y)
            - pt.gammaln(shape)
        )
    raise ValueError(f"no Bayesian likelihood for the {family.name} family")


def _times(counts: np.ndarray, values: pt.TensorVariable) -> pt.TensorVariable:
    """``counts * values``, skipping the product when every count is 1."""
    return values if np.all(counts == 1.0) else counts * values


def zero_inflated_loglik(
    loglik: pt.TensorVariable, y: np.ndarray, eta_zi: pt.TensorVariable
) -> pt.TensorVariable:
    """Log-likelihood of every row under zero inflation with ``pi = expit(eta_zi)``.

    A zero has probability ``pi + (1 - pi) f(0)``, any other count
    ``(1 - pi) f(y)``; ``loglik`` holds ``log f(y)`` of every row.
    """
    log_pi = -pt.softplus(-eta_zi)
    log_1mpi = -pt.softplus(eta_zi)
    count = log_1mpi + loglik
    zero = np.asarray(y) == 0
    if not zero.any():
        return count
    return pt.switch(zero, pt.logaddexp(log_pi, count), count)
