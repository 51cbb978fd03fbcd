"""Residual variance functions: nlme's ``varIdent``, ``varPower``, ``varExp``,
``varConstPower``, ``varFixed`` and ``varComb``.

A variance function gives each observation a standard-deviation multiplier
``g_i`` so that ``Var(e_i) = sigma^2 g_i^2`` (Pinheiro & Bates, 2000, ch. 5).
The user-facing objects here are plain data (what to model); :meth:`bind`
ties one to the rows of a fit and returns a :class:`BoundVariance`, which maps
an unconstrained parameter vector ``u`` to ``log g`` for both engines.

Notation
--------
g : SD multiplier per row; v : variance covariate (a column or the fitted
values); s : stratum of a row (``| strata``); delta : varIdent ratios.

=============== ============================ ========================== =========================
function        g                            parameters (reported)      unconstrained ``u``
=============== ============================ ========================== =========================
varIdent        delta_s, delta_ref = 1       delta_s, s != ref          log delta_s
varPower        abs(v)^power_s               power_s                    power_s
varExp          exp(expon_s v)               expon_s                    expon_s
varConstPower   const_s + abs(v)^power_s     const_s, power_s           log const_s, power_s
varFixed        sqrt(v)                      none                       none
varComb         product of its parts         the parts', prefixed A., B.
=============== ============================ ========================== =========================

``v = "fitted"`` (the default of varPower, varExp and varConstPower, nlme's
``~ fitted(.)``) uses the fitted values of the model, random effects included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, DataWarning, warn
from bayesmix.spec.variance_bound import BoundVariance

__all__ = [
    "BoundVariance",
    "VarComb",
    "VarConstPower",
    "VarExp",
    "VarFixed",
    "VarIdent",
    "VarPower",
    "VarianceFunction",
]

FITTED = "fitted"


def r_name(name: str) -> str:
    """``name`` as R writes it in a formula: backquoted unless a plain identifier."""
    return name if re.fullmatch(r"[A-Za-z.][A-Za-z0-9_.]*", name) else f"`{name}`"


def _check_name(value: object, argument: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"{argument} must be a column name (a string), got {value!r}.")


class VarianceFunction:
    """Base of the variance-function specifications (plain, immutable data)."""

    kind: str = ""

    def columns(self) -> tuple[str, ...]:
        """Data columns the function reads."""
        raise NotImplementedError

    def nlme(self) -> str:
        """The function in nlme's syntax, e.g. ``varIdent(form = ~1 | Sex)``."""
        raise NotImplementedError

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        """Tie the function to the rows of ``data`` (the rows a fit uses)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.nlme()


@dataclass(frozen=True)
class VarIdent(VarianceFunction):
    """A residual SD per level of ``strata`` (nlme's ``varIdent(form = ~1 | strata)``).

    The first level (the categorical order, else sorted values) is the reference
    with ratio 1; the others are estimated as ratios to it.
    """

    strata: str
    kind = "varIdent"

    def __post_init__(self) -> None:
        _check_name(self.strata, "varIdent(strata=)")

    def columns(self) -> tuple[str, ...]:
        return (self.strata,)

    def nlme(self) -> str:
        return f"varIdent(form = ~1 | {r_name(self.strata)})"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        codes, levels = _strata(data, self.strata)
        counts = np.bincount(codes, minlength=len(levels))
        if len(levels) < 2:
            raise DataError(
                f"varIdent(~1 | {self.strata}) needs at least two levels of {self.strata!r}, "
                f"but the data have one ({levels[0]!r}); drop weights= or choose another column."
            )
        single = [lv for lv, c in zip(levels, counts) if c < 2]
        if single:
            warn(
                f"varIdent(~1 | {self.strata}): level(s) {', '.join(map(repr, single))} have "
                "a single observation, so their SD ratio is barely determined by the data; "
                "merge rare levels or check the estimate's interval.",
                DataWarning,
            )
        return BoundVariance(
            spec=self,
            names=tuple(levels[1:]),
            start=np.zeros(len(levels) - 1),
            strata_codes=codes,
            strata_levels=levels,
        )


@dataclass(frozen=True)
class _CovariateFunction(VarianceFunction):
    """varPower/varExp/varConstPower: a function of a covariate, optionally per stratum."""

    covariate: str = FITTED
    strata: str | None = None
    start: tuple[float, ...] | float | None = None

    def __post_init__(self) -> None:
        _check_name(self.covariate, f"{self.kind}(covariate=)")
        _check_name(self.strata, f"{self.kind}(strata=)", allow_none=True)

    @property
    def uses_fitted(self) -> bool:
        return self.covariate == FITTED

    def columns(self) -> tuple[str, ...]:
        cols = () if self.uses_fitted else (self.covariate,)
        return cols + ((self.strata,) if self.strata else ())

    def nlme(self) -> str:
        v = "fitted(.)" if self.uses_fitted else r_name(self.covariate)
        strata = f" | {r_name(self.strata)}" if self.strata else ""
        return f"{self.kind}(form = ~{v}{strata})"

    def _bind(self, data: pd.DataFrame, per_stratum: tuple[str, ...], default: np.ndarray):
        if self.strata:
            codes, levels = _strata(data, self.strata)
        else:
            codes, levels = np.zeros(len(data), dtype=np.int64), ("",)
        covariate = None
        if not self.uses_fitted:
            covariate = _numeric(data, self.covariate, self.kind)
        names = tuple(
            name if not self.strata else f"{name}.{level}"
            for name in per_stratum
            for level in levels
        )
        natural = np.repeat(np.asarray(default, dtype=float), len(levels))
        if self.start is not None:
            given = np.atleast_1d(np.asarray(self.start, dtype=float))
            if given.size not in (1, natural.size) or not np.all(np.isfinite(given)):
                raise ArgumentError(
                    f"{self.kind}: start needs 1 or {natural.size} finite values, got "
                    f"{self.start!r}."
                )
            natural = np.broadcast_to(given, natural.shape).copy()
        bound = BoundVariance(
            spec=self,
            names=names,
            start=np.zeros(natural.size),
            strata_codes=codes,
            strata_levels=levels,
            covariate=covariate,
        )
        return replace(bound, start=bound.unconstrained(natural))


@dataclass(frozen=True)
class VarPower(_CovariateFunction):
    """SD proportional to ``|v|^power`` (nlme's ``varPower``); ``v``: the fitted values
    unless a covariate is given."""

    kind = "varPower"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        bound = self._bind(data, ("power",), np.zeros(1))
        _check_positive_covariate(bound, self.covariate, "varPower", allow_negative=True)
        return bound


@dataclass(frozen=True)
class VarExp(_CovariateFunction):
    """SD proportional to ``exp(expon * v)`` (nlme's ``varExp``)."""

    kind = "varExp"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        return self._bind(data, ("expon",), np.zeros(1))


@dataclass(frozen=True)
class VarConstPower(_CovariateFunction):
    """SD proportional to ``const + |v|^power`` (nlme's ``varConstPower``)."""

    kind = "varConstPower"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        if self.start is not None:  # (const..., power...): the constants must be positive
            given = np.atleast_1d(np.asarray(self.start, dtype=float))
            if np.any(given[: max(1, given.size // 2)] <= 0):
                raise ArgumentError("varConstPower: the start's const values must be positive.")
        # nlme's start: const = 1, power = 0
        bound = self._bind(data, ("const", "power"), np.array([1.0, 0.0]))
        _check_positive_covariate(bound, self.covariate, "varConstPower", allow_negative=True)
        return bound


@dataclass(frozen=True)
class VarFixed(VarianceFunction):
    """Variance proportional to a positive covariate (nlme's ``varFixed(~ v)``); no parameters."""

    covariate: str
    kind = "varFixed"

    def __post_init__(self) -> None:
        _check_name(self.covariate, "varFixed(covariate=)")

    def columns(self) -> tuple[str, ...]:
        return (self.covariate,)

    def nlme(self) -> str:
        return f"varFixed(~{r_name(self.covariate)})"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        v = _numeric(data, self.covariate, "varFixed")
        if np.any(v <= 0):
            raise DataError(
                f"varFixed(~{self.covariate}): the variance covariate must be positive, but "
                f"{int(np.sum(v <= 0))} row(s) have {self.covariate} <= 0 (minimum {v.min():.4g})."
            )
        return BoundVariance(spec=self, names=(), start=np.zeros(0), covariate=v)


@dataclass(frozen=True)
class VarComb(VarianceFunction):
    """The product of variance functions (nlme's ``varComb``): SD multipliers multiply."""

    parts: tuple[VarianceFunction, ...] = field(default=())
    kind = "varComb"

    def __init__(self, *parts: VarianceFunction) -> None:
        if len(parts) == 1 and isinstance(parts[0], list | tuple):
            parts = tuple(parts[0])
        if len(parts) < 2 or not all(isinstance(p, VarianceFunction) for p in parts):
            raise ArgumentError(
                "varComb needs two or more variance functions, e.g. "
                "varComb(varIdent('Diet'), varPower())."
            )
        if any(isinstance(p, VarComb) for p in parts):
            raise ArgumentError("varComb cannot contain another varComb; list its parts instead.")
        object.__setattr__(self, "parts", tuple(parts))

    @property
    def uses_fitted(self) -> bool:
        return any(getattr(p, "uses_fitted", False) for p in self.parts)

    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for p in self.parts for c in p.columns()))

    def nlme(self) -> str:
        return f"varComb({', '.join(p.nlme() for p in self.parts)})"

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        bound = [p.bind(data) for p in self.parts]
        names = tuple(
            f"{chr(ord('A') + i)}.{name}" for i, b in enumerate(bound) for name in b.names
        )
        start = np.concatenate([b.start for b in bound])
        return BoundVariance(spec=self, names=names, start=start, parts=tuple(bound))


# --------------------------------------------------------------- helpers


def _strata(data: pd.DataFrame, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and level names of a stratum column (categorical order, else sorted)."""
    values = data[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values).remove_unused_categories()
    else:
        cat = pd.Categorical(values)
    return np.asarray(cat.codes, dtype=np.int64), tuple(str(c) for c in cat.categories)


def _numeric(data: pd.DataFrame, column: str, what: str) -> np.ndarray:
    values = data[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(
            f"{what}: the variance covariate {column!r} must be numeric, but it is {values.dtype}."
        )
    return values.to_numpy(dtype=float)


def _check_positive_covariate(
    bound: BoundVariance, column: str, what: str, allow_negative: bool
) -> None:
    v = bound.covariate
    if v is None:
        return
    if np.any(v == 0):
        raise DataError(
            f"{what}(~{column}): {int(np.sum(v == 0))} row(s) have {column} = 0, where "
            f"|{column}|^power is 0 or infinite and the likelihood is undefined; shift the "
            "covariate, drop those rows, or use varExp."
        )
    if np.any(v < 0):
        warn(
            f"{what}(~{column}): {int(np.sum(v < 0))} row(s) have {column} < 0; as in nlme the "
            f"function uses |{column}|, so equal magnitudes of either sign get equal variances.",
            DataWarning,
        )


# nlme's names, as the public API spells them (``bmx.varIdent("Sex")``)
varIdent = VarIdent
varPower = VarPower
varExp = VarExp
varConstPower = VarConstPower
varFixed = VarFixed
varComb = VarComb
