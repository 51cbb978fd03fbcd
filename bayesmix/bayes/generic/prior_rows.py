"""Rows of scalar priors for the generic kernel: family, transform, parameters, start.

Each row places one scalar prior at an entry of the unconstrained vector ``x``:
its family code and parameters (:func:`bayesmix.bayes.generic.kernel.prior_logp`),
the transform PyMC samples it on (log, or the logit of an interval), its
normalising constant, and PyMC's starting point for it.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from bayesmix.bayes.generic import kernel as K
from bayesmix.bayes.priors import (
    Exponential,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    StudentT,
    prior_params,
)
from bayesmix.bayes.residual_priors import Beta, LogNormal, Uniform


class Unsupported(Exception):
    """The model has a part the generic kernel does not compute."""


PRIOR_CODES = {
    Normal: K.NORMAL,
    StudentT: K.STUDENT_T,
    HalfNormal: K.HALF_NORMAL,
    HalfStudentT: K.HALF_STUDENT_T,
    Exponential: K.EXPONENTIAL,
    LogNormal: K.LOG_NORMAL,
    Uniform: K.UNIFORM,
    Beta: K.BETA,
}
#: How PyMC samples each prior's variable: its logarithm, a logit of its interval, itself.
TRANSFORM_OF = {
    HalfNormal: K.LOG,
    HalfStudentT: K.LOG,
    Exponential: K.LOG,
    LogNormal: K.LOG,
    Uniform: K.INTERVAL,
    Beta: K.INTERVAL,  # on (0, 1)
}
#: PyMC's transform classes, by the kernel's codes.
TRANSFORM_CODES = {
    None: K.IDENTITY,
    "LogTransform": K.LOG,
    "Interval": K.INTERVAL,
    "LogOddsTransform": K.INTERVAL,
}


def prior_constant(prior: Prior) -> float:
    """The normalising term of a prior's log density (what the kernel adds as is)."""
    half_log_2pi = 0.5 * np.log(2.0 * np.pi)
    if isinstance(prior, Normal):
        return float(-np.log(prior.sigma) - half_log_2pi)
    if isinstance(prior, HalfNormal):
        return float(0.5 * np.log(2.0 / np.pi) - np.log(prior.sigma))
    if isinstance(prior, Exponential):
        return float(np.log(prior.lam))
    if isinstance(prior, LogNormal):  # less log v, added by the kernel
        return float(-np.log(prior.sigma) - half_log_2pi)
    if isinstance(prior, Uniform):
        return float(-np.log(prior.upper - prior.lower))
    if isinstance(prior, Beta):
        return float(-special.betaln(prior.alpha, prior.beta))
    nu = prior.nu
    t_constant = special.gammaln(0.5 * (nu + 1.0)) - special.gammaln(0.5 * nu)
    t_constant -= 0.5 * np.log(nu * np.pi) + np.log(prior.sigma)
    return float(t_constant + (np.log(2.0) if isinstance(prior, HalfStudentT) else 0.0))


class PriorRows:
    """Rows of scalar priors: position in x, family code, log flag; and parameters."""

    def __init__(self) -> None:
        self.ints: list[tuple[int, int, int]] = []
        self.floats: list[list[float]] = []
        self.support: dict[int, float] = {}
        self.bounds: dict[int, tuple[float, float]] = {}

    def add(self, position: int, prior: Prior, transform: int) -> int:
        if type(prior) not in PRIOR_CODES or transform != TRANSFORM_OF.get(type(prior), K.IDENTITY):
            raise Unsupported(f"prior {prior} with transform {transform}")
        params = list(prior_params(prior).values())
        self.ints.append((int(position), PRIOR_CODES[type(prior)], int(transform)))
        self.floats.append(params + [0.0] * (3 - len(params)) + [prior_constant(prior)])
        # PyMC's support point (the start before jitter), on x's scale
        if isinstance(prior, Uniform):
            self.bounds[int(position)] = (prior.lower, prior.upper)
            self.support[int(position)] = 0.0  # the interval's midpoint
            return len(self.ints) - 1
        if isinstance(prior, Beta):  # its mean, on the log-odds scale
            self.bounds[int(position)] = (0.0, 1.0)
            self.support[int(position)] = float(np.log(prior.alpha / prior.beta))
            return len(self.ints) - 1
        if isinstance(prior, Exponential):
            centre = 1.0 / prior.lam
        elif isinstance(prior, LogNormal):
            centre = float(np.exp(prior.mu + 0.5 * prior.sigma**2))  # its mean
        elif isinstance(prior, (Normal, StudentT)):
            centre = prior.mu
        else:
            centre = prior.sigma
        self.support[int(position)] = np.log(centre) if transform == K.LOG else centre
        return len(self.ints) - 1
