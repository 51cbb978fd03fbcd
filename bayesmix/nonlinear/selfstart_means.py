"""Mean functions of R's self-starting models, in R's parametrisations.

Each is written once against an array namespace ``xp`` (``numpy`` for the ML
engine, ``pytensor.tensor`` for the Bayesian one); the first line of each
docstring is the formula, shown by :class:`bayesmix.nonlinear.selfstart.SelfStartModel`.
"""

from __future__ import annotations


def fol(xp, Dose, input, lKe, lKa, lCl):
    """Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * input) - exp(-exp(lKa) * input)) / (exp(lKa) - exp(lKe))

    First-order compartment model: oral dose, first-order absorption (rate
    Ka) and elimination (rate Ke), clearance Cl; all on the natural log scale.
    """
    ke, ka = xp.exp(lKe), xp.exp(lKa)
    decay = xp.exp(-ke * input) - xp.exp(-ka * input)
    return Dose * xp.exp(lKe + lKa - lCl) * decay / (ka - ke)


def logis(xp, input, Asym, xmid, scal):
    """Asym / (1 + exp((xmid - input) / scal))

    Logistic curve: asymptote Asym, inflection point xmid, scale scal.
    """
    return Asym / (1 + xp.exp((xmid - input) / scal))


def asymp(xp, input, Asym, R0, lrc):
    """Asym + (R0 - Asym) * exp(-exp(lrc) * input)

    Asymptotic regression: asymptote Asym, response R0 at input 0, log rate lrc.
    """
    return Asym + (R0 - Asym) * xp.exp(-xp.exp(lrc) * input)


def asymp_off(xp, input, Asym, lrc, c0):
    """Asym * (1 - exp(-exp(lrc) * (input - c0)))

    Asymptotic regression with an offset: asymptote Asym, log rate lrc, and
    the input c0 at which the response is zero.
    """
    return Asym * (1 - xp.exp(-xp.exp(lrc) * (input - c0)))


def asymp_orig(xp, input, Asym, lrc):
    """Asym * (1 - exp(-exp(lrc) * input))

    Asymptotic regression through the origin: asymptote Asym, log rate lrc.
    """
    return Asym * (1 - xp.exp(-xp.exp(lrc) * input))


def micmen(xp, input, Vm, K):
    """Vm * input / (K + input)

    Michaelis-Menten: maximum rate Vm, half-saturation concentration K.
    """
    return Vm * input / (K + input)


def gompertz(xp, x, Asym, b2, b3):
    """Asym * exp(-b2 * b3^x)

    Gompertz growth curve: asymptote Asym, shape b2 and b3 (0 < b3 < 1 for growth).
    """
    return Asym * xp.exp(-b2 * b3**x)


def fpl(xp, input, A, B, xmid, scal):
    """A + (B - A) / (1 + exp((xmid - input) / scal))

    Four-parameter logistic: left asymptote A, right asymptote B, midpoint
    xmid, scale scal.
    """
    return A + (B - A) / (1 + xp.exp((xmid - input) / scal))


def biexp(xp, input, A1, lrc1, A2, lrc2):
    """A1 * exp(-exp(lrc1) * input) + A2 * exp(-exp(lrc2) * input)

    Biexponential: amplitudes A1, A2 and log rates lrc1 > lrc2 (fast, slow phase).
    """
    return A1 * xp.exp(-xp.exp(lrc1) * input) + A2 * xp.exp(-xp.exp(lrc2) * input)


def weibull(xp, x, Asym, Drop, lrc, pwr):
    """Asym - Drop * exp(-exp(lrc) * x^pwr)

    Weibull growth curve: asymptote Asym, drop Drop from it at x = 0, log rate
    lrc, power pwr.
    """
    return Asym - Drop * xp.exp(-xp.exp(lrc) * x**pwr)
