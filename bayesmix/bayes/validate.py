"""Checks of user arguments, raising :class:`~bayesmix.errors.ArgumentError`.

Bad values passed on to numpy, pandas, PyMC or nutpie fail deep inside them
(an ``OverflowError`` from Rust for a negative seed, a panic of nutpie's
worker thread for ``tune=0``, a numpy or pandas error after sampling for
``draws < 8``).
These checkers run first, so the error names the argument, says what is
accepted and costs nothing: no model is built or compiled before them.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

import numpy as np

from bayesmix.errors import ArgumentError

#: Seeds must lie below this: nutpie takes unsigned 64-bit seeds, but PyMC hands
#: a one-chain seed to ``jax.random.PRNGKey``, which overflows from 2**63.
SEED_LIMIT = 2**63

#: Fewest draws per chain: the split R-hat and bulk ESS computed after every
#: fit need 4 draws in each half of a chain (ArviZ returns NaN below that and
#: the diagnostics table cannot be built).
MIN_DRAWS = 8

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
COMPILE_ROUTES = ("auto", "generic", "python", "cfunc")


def describe(value: Any) -> str:
    """``repr`` of a bad value with its type, kept short for long inputs."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def finite_float(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number, else None.

    Bools and numpy bools are refused although Python counts them as
    integers (``target_accept=True`` is a mistake, not 1.0), as are strings
    and arrays. Integers too large for a float count as infinite.
    """
    if not isinstance(value, Real) or isinstance(value, bool | np.bool_):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_probability(value: Any, name: str, hint: str = "") -> float:
    """``value`` as a float strictly between 0 and 1.

    Parameters
    ----------
    value : Any
        The argument as the user gave it.
    name : str
        The argument's name, quoted in the error.
    hint : str
        Typical values, appended to the error (e.g. ``"e.g. 0.8-0.95"``).

    Raises
    ------
    ArgumentError
        For a non-number (string, bool, array), NaN or a value outside (0, 1).
    """
    number = finite_float(value)
    if number is None or not 0.0 < number < 1.0:
        suffix = f" ({hint})" if hint else ""
        raise ArgumentError(
            f"{name} must lie strictly between 0 and 1{suffix}, got {describe(value)}."
        )
    return number


def check_count(value: Any, name: str, least: int) -> int:
    """``value`` as a Python int ``>= least``; bools and floats such as ``2.0`` are refused.

    Raises
    ------
    ArgumentError
        Naming ``name`` when ``value`` is not an integer or is below ``least``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ArgumentError(f"{name} must be an integer >= {least}, got {describe(value)}.")
    return int(value)


def check_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else an error listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"Unknown {name} {value!r}; use one of {listed}.")
    return value


def check_seed(value: Any, name: str = "random_seed") -> int | np.random.Generator | None:
    """Check a seed: None, an integer in ``[0, 2**63)`` or a ``numpy.random.Generator``.

    Returns the value unchanged (an integer as a Python int).

    Raises
    ------
    ArgumentError
        For negative or too large integers, floats, strings and other objects.
    """
    if value is None or isinstance(value, np.random.Generator):
        return value
    if isinstance(value, Integral) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT:
        return int(value)
    raise ArgumentError(
        f"{name} must be None, an integer from 0 to 2**63 - 1 or a numpy.random.Generator, "
        f"got {describe(value)}."
    )


def seed_to_int(value: int | np.random.Generator | None) -> int | None:
    """An integer seed from a checked ``random_seed``: a Generator gives one draw of it."""
    if isinstance(value, np.random.Generator):
        return int(value.integers(SEED_LIMIT))
    return value


def check_ci_prob(ci_prob: Any, *, random_seed: Any = None) -> float:
    """Check the arguments of a posterior summary: ``ci_prob`` (and ``random_seed``).

    Called first by the result methods, so that ``fixef(ci_prob=95)`` says
    what is wrong instead of failing inside ``numpy.quantile``.

    Raises
    ------
    ArgumentError
        ``ci_prob`` outside (0, 1) or not a number; ``random_seed`` invalid
        (see :func:`check_seed`).
    """
    check_seed(random_seed)
    return check_probability(ci_prob, "ci_prob", "the interval's probability, e.g. 0.95")


def check_sampling_args(
    *,
    draws: Any,
    tune: Any,
    chains: Any,
    sampler: Any,
    target_accept: Any,
    random_seed: Any,
    compile: Any = "auto",
) -> dict[str, Any]:
    """Check the options of ``model.sample`` before anything is built or compiled.

    Returns
    -------
    dict
        The options normalised (Python ints and floats); ``target_accept`` may
        stay None (its default depends on the model's size).

    Raises
    ------
    ArgumentError
        Naming the first bad option.
    """
    sampler = check_choice(sampler, "sampler", SAMPLERS)
    draws = check_count(draws, "draws", 1)
    if draws < MIN_DRAWS:
        raise ArgumentError(
            f"draws={draws} is too few: R-hat and bulk ESS need at least {MIN_DRAWS} draws "
            f"per chain. Use draws >= {MIN_DRAWS} (a few hundred or more for inference)."
        )
    tune = check_count(tune, "tune", 0)
    if tune == 0 and sampler == "nutpie":
        # nutpie's adaptation asserts a non-empty warm-up window and panics otherwise
        raise ArgumentError(
            "tune=0 is not supported by nutpie, which adapts its step size during "
            "warm-up: use tune >= 1, or sampler='pymc' to sample without warm-up."
        )
    chains = check_count(chains, "chains", 1)
    if target_accept is not None:
        target_accept = check_probability(target_accept, "target_accept", "e.g. 0.8-0.95")
    return {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "sampler": sampler,
        "target_accept": target_accept,
        "random_seed": check_seed(random_seed),
        "compile": check_choice(compile, "compile", COMPILE_ROUTES),
    }


def refuse_ddf(ddf: Any) -> None:
    """Refuse ``summary(ddf=...)`` on a posterior, saying where its uncertainty is."""
    if ddf is not None:
        raise ArgumentError(
            "ddf= (Satterthwaite/Kenward-Roger p-values) applies to ML/REML fits. A Bayesian "
            "fit's uncertainty is its posterior: read the intervals of post.summary() or "
            "post.fixef(), or fit the model with model.fit() for lmerTest's tests."
        )
