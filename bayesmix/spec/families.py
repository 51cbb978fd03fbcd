"""Response distributions of generalized linear mixed models: families and their links.

A :class:`Family` is plain data and numpy functions, shared by both engines:
the ML engine's PIRLS/Laplace needs the link, its derivative, the variance
function and the deviance; the Bayesian engine maps the family's name to a
PyMC distribution; both check the response with :meth:`Family.check_response`.

Families (R's parametrisations, so estimates compare with glmer and glmmTMB):

==============  ======================  =======================  ==================
name            links (first: default)   variance V(mu)            dispersion
==============  ======================  =======================  ==================
gaussian        identity, log, inverse   1                        sigma (SD)
binomial        logit, probit, cloglog   mu (1 - mu)              none
poisson         log, identity, sqrt      mu                       none
negbinomial     log                      mu + mu^2 / theta        theta (NB2)
gamma           inverse, identity, log   mu^2 / shape             shape
==============  ======================  =======================  ==================

The binomial response is a proportion ``y`` in [0, 1] with ``n`` trials given as
weights (a 0/1 response has ``n = 1``), as glmer reads ``cbind(s, f)`` and
``weights=``. Log-likelihoods are the full ones (with the normalising
constants, e.g. ``log C(n, n y)``), so Laplace and quadrature fits report one
scale; lme4 drops the saturated log-likelihood from its ``nAGQ > 1`` logLik.

Notation
--------
y : response; mu : mean; eta : linear predictor, ``eta = g(mu)``; n : binomial
trials (prior weights); theta : NB2 size; shape : Gamma shape; sigma : Gaussian SD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from bayesmix.errors import ArgumentError, DataError

__all__ = ["FAMILIES", "LINKS", "Family", "Link", "family"]

_TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)``, its inverse, ``dmu/deta`` and ``d2mu/deta2``."""

    name: str
    link: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]
    mu_eta2: Callable[[np.ndarray], np.ndarray]


# Named functions rather than lambdas, so that families (and results) pickle.
def _identity(x):
    return x


def _ones(eta):
    return np.ones_like(eta)


def _logit_mu_eta(eta):
    return special.expit(eta) * special.expit(-eta)


def _cloglog(mu):
    return np.log(-np.log1p(-mu))


def _cloglog_inverse(eta):
    return -np.expm1(-np.exp(eta))


def _cloglog_mu_eta(eta):
    return np.exp(eta - np.exp(eta))


def _reciprocal(x):
    return 1.0 / x


def _inverse_mu_eta(eta):
    return -1.0 / eta**2


def _twice(eta):
    return 2.0 * eta


def _zeros(eta):
    return np.zeros_like(eta)


def _logit_mu_eta2(eta):
    mu = special.expit(eta)
    return mu * (1.0 - mu) * (1.0 - 2.0 * mu)


def _probit_mu_eta2(eta):
    return -eta * stats.norm.pdf(eta)


def _cloglog_mu_eta2(eta):
    return np.exp(eta - np.exp(eta)) * -np.expm1(eta)


def _inverse_mu_eta2(eta):
    return 2.0 / eta**3


def _two(eta):
    return np.full_like(eta, 2.0)


LINKS: dict[str, Link] = {
    "identity": Link("identity", _identity, _identity, _ones, _zeros),
    "log": Link("log", np.log, np.exp, np.exp, np.exp),
    "logit": Link("logit", special.logit, special.expit, _logit_mu_eta, _logit_mu_eta2),
    "probit": Link("probit", special.ndtri, special.ndtr, stats.norm.pdf, _probit_mu_eta2),
    "cloglog": Link("cloglog", _cloglog, _cloglog_inverse, _cloglog_mu_eta, _cloglog_mu_eta2),
    "inverse": Link("inverse", _reciprocal, _reciprocal, _inverse_mu_eta, _inverse_mu_eta2),
    "sqrt": Link("sqrt", np.sqrt, np.square, _twice, _two),
}


@dataclass(frozen=True)
class Family:
    """A response distribution with its link.

    Attributes
    ----------
    name : str
        ``"gaussian"``, ``"binomial"``, ``"poisson"``, ``"negbinomial"`` or ``"gamma"``.
    link : Link
    dispersion : str or None
        Name of the dispersion parameter (``"sigma"``, ``"theta"``, ``"shape"``),
        ``None`` when the family has none.
    """

    name: str
    link: Link
    dispersion: str | None

    def variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """``Var(y) / (dispersion factor)``: R's ``family()$variance`` (NB2 includes theta)."""
        mu = np.asarray(mu, dtype=float)
        if self.name == "gaussian":
            return np.ones_like(mu)
        if self.name == "binomial":
            return mu * (1.0 - mu)
        if self.name == "poisson":
            return mu
        if self.name == "negbinomial":
            return mu + mu**2 / _required(dispersion, "theta")
        return mu**2  # gamma: divided by the shape in Var(y)

    def response_variance(self, mu: np.ndarray, dispersion: float | None = None) -> np.ndarray:
        """``Var(y)`` per unit of weight: :meth:`variance`, divided by the Gamma shape (the
        one family here whose dispersion scales ``V(mu)`` rather than entering it)."""
        variance = self.variance(mu, dispersion)
        return variance / _required(dispersion, "shape") if self.name == "gamma" else variance

    def draw(
        self,
        mu: np.ndarray,
        rng: np.random.Generator,
        trials: np.ndarray | None = None,
        dispersion: np.ndarray | float | None = None,
        zero_prob: np.ndarray | None = None,
    ) -> np.ndarray:
        """Responses drawn with means ``mu`` (any shape; parameters broadcast).

        Binomial draws are successes out of ``trials`` (default 1), NB2 and
        Gamma take ``theta``/``shape`` as ``dispersion`` (``sigma`` for the
        Gaussian), and ``zero_prob`` sets a structural zero with that probability.
        """
        mu = np.asarray(mu, dtype=float)
        if self.name == "binomial":
            n = np.ones(mu.shape[-1]) if trials is None else np.asarray(trials, dtype=float)
            y = rng.binomial(np.rint(n).astype(np.int64), np.clip(mu, 0.0, 1.0))
        elif self.name == "poisson":
            y = rng.poisson(mu)
        elif self.name == "negbinomial":
            theta = np.asarray(dispersion, dtype=float)
            y = rng.negative_binomial(theta, theta / (theta + mu))
        elif self.name == "gamma":
            shape = np.asarray(dispersion, dtype=float)
            y = rng.gamma(shape, mu / shape)
        else:
            y = mu + np.asarray(dispersion, dtype=float) * rng.standard_normal(mu.shape)
        if zero_prob is not None:
            y = np.where(rng.random(np.shape(zero_prob)) < zero_prob, 0, y)
        return y

    def loglik(
        self,
        y: np.ndarray,
        mu: np.ndarray,
        weights: np.ndarray | None = None,
        dispersion: float | None = None,
    ) -> np.ndarray:
        """Log-likelihood of each observation (the full one, normalising constants included).

        ``weights`` are the binomial trials; for the Gaussian family prior
        weights (variance ``sigma^2 / w``); the other families take none.
        """
        y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
        w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
        if self.name == "gaussian":
            sigma = _required(dispersion, "sigma")
            return stats.norm.logpdf(y, mu, sigma / np.sqrt(w))
        if self.name == "binomial":
            return stats.binom.logpmf(np.rint(y * w), w, mu)
        if self.name == "poisson":
            return stats.poisson.logpmf(y, mu)
        if self.name == "negbinomial":
            theta = _required(dispersion, "theta")
            return stats.nbinom.logpmf(y, theta, theta / (theta + mu))
        shape = _required(dispersion, "shape")
        return stats.gamma.logpdf(y, shape, scale=mu / shape)

    def saturated_loglik(
        self, y: np.ndarray, weights: np.ndarray | None = None, dispersion: float | None = None
    ) -> np.ndarray:
        """The log-likelihood at ``mu = y`` (what lme4's AGQ logLik leaves out)."""
        y = np.asarray(y, dtype=float)
        if self.name == "binomial":  # mu = y in (0, 1); at 0 or 1 the pmf is 1
            mu = np.clip(y, _TINY, 1.0 - np.finfo(float).eps)
            return np.where((y == 0) | (y == 1), 0.0, self.loglik(y, mu, weights, dispersion))
        if self.name in ("poisson", "negbinomial"):
            mu = np.maximum(y, _TINY)
            return np.where(y == 0, 0.0, self.loglik(y, mu, weights, dispersion))
        return self.loglik(y, y, weights, dispersion)

    def deviance_residuals(
        self,
        y: np.ndarray,
        mu: np.ndarray,
        weights: np.ndarray | None = None,
        dispersion: float | None = None,
    ) -> np.ndarray:
        """``sign(y - mu) sqrt(d_i)`` with ``d_i = 2 (loglik_saturated - loglik)``, R's unit
        deviance (for the Gaussian and Gamma families on the dispersion-free scale)."""
        y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
        w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
        if self.name == "gaussian":
            d = w * (y - mu) ** 2
        elif self.name == "gamma":
            d = 2.0 * ((y - mu) / mu - np.log(y / mu))
        else:
            d = 2.0 * (self.saturated_loglik(y, w, dispersion) - self.loglik(y, mu, w, dispersion))
        return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))

    def check_response(
        self, y: np.ndarray, weights: np.ndarray | None = None, *, allow_non_integer: bool = False
    ) -> None:
        """Refuse responses the family cannot describe, naming the problem and the fix.

        Raises
        ------
        DataError
            Negative or (unless ``allow_non_integer``) non-integer counts; a
            binomial proportion outside [0, 1], trials that are not positive
            integers, or successes that are not whole numbers of trials; a
            non-positive Gamma response.
        """
        y = np.asarray(y, dtype=float)
        if self.name in ("poisson", "negbinomial"):
            if np.any(y < 0):
                raise DataError(
                    f"The {self.name} family models counts, but {int(np.sum(y < 0))} response "
                    "value(s) are negative."
                )
            fractional = np.abs(y - np.rint(y)) > 1e-8
            if np.any(fractional) and not allow_non_integer:
                raise DataError(
                    f"The {self.name} family models counts, but {int(fractional.sum())} response "
                    "value(s) are not whole numbers; round them or use another family."
                )
        elif self.name == "binomial":
            if np.any((y < 0) | (y > 1)):
                raise DataError(
                    "The binomial response must be 0/1 or a proportion in [0, 1]; "
                    f"{int(np.sum((y < 0) | (y > 1)))} value(s) are outside. For counts of "
                    "successes use cbind(successes, failures) ~ ... or successes/trials with "
                    "weights=trials."
                )
            if weights is not None:
                w = np.asarray(weights, dtype=float)
                if np.any(w <= 0) or np.any(np.abs(w - np.rint(w)) > 1e-8):
                    raise DataError(
                        "binomial trials (weights=) must be positive whole numbers; "
                        f"{int(np.sum((w <= 0) | (np.abs(w - np.rint(w)) > 1e-8)))} are not."
                    )
                successes = y * w
                if np.any(np.abs(successes - np.rint(successes)) > 1e-6):
                    raise DataError(
                        "binomial proportions times trials (weights=) must be whole numbers of "
                        "successes; check that weights= holds the number of trials."
                    )
        elif self.name == "gamma" and np.any(y <= 0):
            raise DataError(
                f"The Gamma family needs a positive response; {int(np.sum(y <= 0))} value(s) "
                "are zero or negative."
            )


#: Each family's allowed links, the default first.
FAMILIES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "gaussian": (("identity", "log", "inverse"), "sigma"),
    "binomial": (("logit", "probit", "cloglog"), None),
    "poisson": (("log", "identity", "sqrt"), None),
    "negbinomial": (("log",), "theta"),
    "gamma": (("inverse", "identity", "log"), "shape"),  # R's Gamma(): inverse first
}
_ALIASES = {"nbinom2": "negbinomial", "negative_binomial": "negbinomial", "Gamma": "gamma"}


def family(name: str | Family, link: str | None = None) -> Family:
    """The :class:`Family` called ``name`` with ``link`` (its default link when ``None``).

    Raises
    ------
    ArgumentError
        An unknown family, or a link the family does not support (the message
        lists the valid ones).
    """
    if isinstance(name, Family):
        return name if link is None or link == name.link.name else family(name.name, link)
    if not isinstance(name, str):
        raise ArgumentError(f"family must be a name such as 'poisson', got {name!r}.")
    key = _ALIASES.get(name, name.lower())
    if key not in FAMILIES:
        raise ArgumentError(
            f"unknown family {name!r}; use one of {', '.join(FAMILIES)} (nbinom2 is negbinomial)."
        )
    links, dispersion = FAMILIES[key]
    chosen = links[0] if link is None else link
    if chosen not in links:
        raise ArgumentError(
            f"the {key} family takes the link {' or '.join(map(repr, links))}, not {link!r}."
        )
    return Family(key, LINKS[chosen], dispersion)


def _required(value: float | None, name: str) -> float:
    if value is None:
        raise ArgumentError(f"this family needs its dispersion parameter {name}.")
    return float(value)
