"""Prior distributions as plain data, and defaults scaled to the design.

Priors are frozen dataclasses with no dependency on PyMC: ``bayes_model``
turns them into PyMC distributions. Keys name the model's parameters:

* fixed coefficients by column name: ``"Intercept"``, ``"Days"``, ``"Sex[Female]"``;
* residual standard deviation: ``"sigma"``;
* group-level standard deviations: ``"sd(<term>|<grouping>)"``, e.g.
  ``"sd(Days|Subject)"``;
* correlation matrix of an unstructured block with more than one term:
  ``"cor(<grouping>)"``, or ``"cor(<term>+<term>|<grouping>)"`` when several
  such blocks share a grouping factor.

If the same term appears in two blocks of one grouping factor, the SD key of
the later block gets a ``"#2"`` (``"#3"``...) suffix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from bayesmix.bayes.validate import describe, finite_float
from bayesmix.errors import PriorError

if TYPE_CHECKING:
    from bayesmix.spec.design import Design, RandomBlock


def _check_params(
    prior: object, real: tuple[str, ...] = (), positive: tuple[str, ...] = ()
) -> None:
    """Refuse non-numeric, NaN or infinite parameters; ``positive`` ones must be > 0.

    Checked at construction so that ``Normal("a", 1)`` fails where it is
    written, not when the model is built or the prior printed. Valid values
    are stored as Python floats (numpy scalars included).
    """
    for name in (*real, *positive):
        value = getattr(prior, name)
        number = finite_float(value)
        if number is None or (name in positive and number <= 0):
            kind = "a positive finite number" if name in positive else "a finite number"
            raise PriorError(
                f"{type(prior).__name__}: {name} must be {kind}, got {describe(value)}."
            )
        object.__setattr__(prior, name, number)  # frozen dataclass: normalised once, here


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class Normal:
    """Normal(mu, sigma) on the real line."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, real=("mu",), positive=("sigma",))

    def __str__(self) -> str:
        return f"Normal(mu={_fmt(self.mu)}, sigma={_fmt(self.sigma)})"


@dataclass(frozen=True)
class StudentT:
    """Student-t(nu, mu, sigma) on the real line."""

    nu: float = 3.0
    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, real=("mu",), positive=("nu", "sigma"))

    def __str__(self) -> str:
        return f"StudentT(nu={_fmt(self.nu)}, mu={_fmt(self.mu)}, sigma={_fmt(self.sigma)})"


@dataclass(frozen=True)
class HalfNormal:
    """Half-normal(sigma) on the positive half-line."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, positive=("sigma",))

    def __str__(self) -> str:
        return f"HalfNormal(sigma={_fmt(self.sigma)})"


@dataclass(frozen=True)
class HalfStudentT:
    """Half-Student-t(nu, sigma) on the positive half-line."""

    nu: float = 3.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, positive=("nu", "sigma"))

    def __str__(self) -> str:
        return f"HalfStudentT(nu={_fmt(self.nu)}, sigma={_fmt(self.sigma)})"


@dataclass(frozen=True)
class Exponential:
    """Exponential(lam) (rate ``lam``, mean ``1/lam``) on the positive half-line."""

    lam: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, positive=("lam",))

    def __str__(self) -> str:
        return f"Exponential(lam={_fmt(self.lam)})"


@dataclass(frozen=True)
class LKJ:
    """LKJ(eta) prior on a correlation matrix; density proportional to det(R)^(eta-1)."""

    eta: float = 2.0

    def __post_init__(self) -> None:
        _check_params(self, positive=("eta",))

    def __str__(self) -> str:
        return f"LKJ(eta={_fmt(self.eta)})"


Prior = Normal | StudentT | HalfNormal | HalfStudentT | Exponential | LKJ
REAL_PRIORS = (Normal, StudentT)
POSITIVE_PRIORS = (HalfNormal, HalfStudentT, Exponential)


def prior_params(prior: Prior) -> dict[str, float]:
    """The parameters of a prior as a plain dict (field name -> value)."""
    return {f.name: float(getattr(prior, f.name)) for f in fields(prior)}


class PriorTable(dict):
    """A ``dict`` of priors (key -> prior) that prints as an aligned table."""

    def __str__(self) -> str:
        if not self:
            return "(no priors)"
        width = max(len(k) for k in self)
        lines = [f"{'parameter':<{width}}  prior", f"{'-' * width}  {'-' * 5}"]
        lines += [f"{key:<{width}}  {prior}" for key, prior in self.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in self.items())
        return f"<table><tr><th>parameter</th><th>prior</th></tr>{rows}</table>"


# --------------------------------------------------------------------------- keys


def intercept_index(design: Design) -> int | None:
    """Index of the fixed-effect column named ``"Intercept"`` that is constant one, if any."""
    for j, name in enumerate(design.fixed_terms):
        if name == "Intercept" and np.allclose(design.X[:, j], 1.0):
            return j
    return None


def block_keys(design: Design) -> list[tuple[list[str], str | None]]:
    """Prior keys of every random block: (SD keys per term, correlation key or None)."""
    seen: dict[str, int] = {}
    result: list[tuple[list[str], str | None]] = []
    n_corr_blocks: dict[str, int] = {}
    for block in design.blocks:
        if _has_correlation(block):
            n_corr_blocks[block.grouping] = n_corr_blocks.get(block.grouping, 0) + 1
    for block in design.blocks:
        sd_keys = []
        for term in block.terms:
            base = f"sd({term}|{block.grouping})"
            seen[base] = seen.get(base, 0) + 1
            sd_keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        cor_key = None
        if _has_correlation(block):
            if n_corr_blocks[block.grouping] == 1:
                cor_key = f"cor({block.grouping})"
            else:
                cor_key = f"cor({'+'.join(block.terms)}|{block.grouping})"
        result.append((sd_keys, cor_key))
    return result


def _has_correlation(block: RandomBlock) -> bool:
    return block.covariance == "unstructured" and block.n_terms > 1


# ----------------------------------------------------------------------- defaults


def _scale(values: np.ndarray) -> float:
    """Standard deviation, falling back to 1 for (near) constant columns."""
    sd = float(np.std(values))
    return sd if sd > 1e-12 * max(1.0, float(np.abs(values).max(initial=0.0))) else 0.0


def default_priors(design: Design) -> PriorTable:
    """Weakly informative priors scaled to the data, in the spirit of rstanarm/brms.

    With ``s_y = sd(y)`` and ``s_x = sd(x)`` for a column ``x``:

    * ``Intercept`` (when the model has one): ``Normal(mean(y), 2.5 s_y)``. The
      prior is placed on the intercept **of the centred predictors** (the
      expected response at the mean of every other fixed-effect column), as
      brms and rstanarm do; the sampler also works on that scale, and the
      reported ``Intercept`` is transformed back to the uncentred columns.
    * other fixed coefficients: ``Normal(0, 2.5 s_y / s_x)``. In a model without
      an intercept the columns are not centred, so the coefficients carry the
      level of ``y``: the scale becomes ``2.5 rms(y) / rms(x)``.
    * group SDs ``sd(term|g)``: ``HalfStudentT(3, 2.5 s_y / s_z)`` for a
      non-constant column ``z`` of the block, ``HalfStudentT(3, 2.5 s_y)`` for an
      intercept (constant) column.
      When a correlated block is sampled on centred columns (a column whose
      range excludes 0, see :mod:`bayesmix.bayes.model`), the SD and LKJ
      priors describe the covariance of the centred columns, i.e. the
      intercept SD is that of the group deviations at the mean of the slope
      variables; reported SDs and correlations are for the original columns.
    * residual ``sigma``: ``HalfStudentT(3, s_y)``.
    * correlations ``cor(g)``: ``LKJ(eta=2)``. eta = 2 (rather than the uniform
      eta = 1 of brms) puts zero density on perfectly correlated effects
      (density proportional to det(R)), a boundary-avoiding prior: with few
      groups the likelihood is often flat up to |r| = 1 (lme4 then reports a
      singular fit) and the sampler struggles there. With informative data the
      difference from eta = 1 is negligible.

    Every scale is proportional to ``s_y``, so multiplying ``y`` by ``c``
    multiplies every location and scale by ``c`` (apart from the LKJ).
    """
    y = np.asarray(design.y, dtype=float)
    s_y = _scale(y) or 1.0
    rms_y = float(np.sqrt(np.mean(y**2))) or 1.0
    has_intercept = intercept_index(design) is not None
    priors = PriorTable()
    for j, name in enumerate(design.fixed_terms):
        x = np.asarray(design.X[:, j], dtype=float)
        if has_intercept and j == intercept_index(design):
            priors[name] = Normal(float(np.mean(y)), 2.5 * s_y)
        elif has_intercept:
            s_x = _scale(x) or 1.0
            priors[name] = Normal(0.0, 2.5 * s_y / s_x)
        else:
            rms_x = float(np.sqrt(np.mean(x**2))) or 1.0
            priors[name] = Normal(0.0, 2.5 * rms_y / rms_x)
    for block, (sd_keys, cor_key) in zip(design.blocks, block_keys(design), strict=True):
        for k, key in enumerate(sd_keys):
            s_z = _scale(np.asarray(block.Z[:, k], dtype=float))
            priors[key] = HalfStudentT(3.0, 2.5 * s_y / s_z if s_z else 2.5 * s_y)
        if cor_key is not None:
            priors[cor_key] = LKJ(2.0)
    priors["sigma"] = HalfStudentT(3.0, s_y)
    return priors


def resolve_priors(design: Design, overrides: Mapping[str, Prior] | None = None) -> PriorTable:
    """Default priors updated with the user's ``overrides``.

    Raises
    ------
    PriorError
        If a key is not a parameter of the model (the message lists close
        matches and every valid key), or if a prior does not fit its parameter
        (an unbounded prior on an SD, a non-LKJ prior on a correlation...).
    """
    return apply_overrides(default_priors(design), overrides)


def apply_overrides(
    priors: PriorTable,
    overrides: Mapping[str, Prior] | None,
    positive: tuple[str, ...] = ("sigma",),
) -> PriorTable:
    """``priors`` updated with ``overrides``, each checked against its parameter.

    Shared by the linear, nonlinear and GLMM engines, whose keys follow one
    scheme; ``positive`` names the keys besides ``sd(...)`` that take a prior
    on the positive half-line.
    """
    if overrides is None:
        return priors
    if not isinstance(overrides, Mapping):
        raise PriorError(f"priors must be a dict of key -> prior, got {type(overrides).__name__}.")
    valid = list(priors)
    unknown = [key for key in overrides if key not in priors]
    if unknown:
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            parts.append(f"{key!r}{hint}")
        raise PriorError(
            f"Unknown prior key(s): {'; '.join(parts)}. Valid keys: {', '.join(valid)}."
        )
    for key, prior in overrides.items():
        if key.startswith("cor("):
            allowed: tuple[type, ...] = (LKJ,)
        elif key in positive or key.startswith("sd("):
            allowed = POSITIVE_PRIORS
        else:
            allowed = REAL_PRIORS
        if not isinstance(prior, allowed):
            names = ", ".join(cls.__name__ for cls in allowed)
            raise PriorError(f"Prior for {key!r} must be one of {names}; got {prior!r}.")
        priors[key] = prior
    return priors
