"""Priors of the residual structure's parameters, as plain data (no PyMC).

The keys are the names the parameters have in the posterior; pass overrides
through the same ``priors=`` dict as the other priors (:mod:`bayesmix.bayes.priors`).

============ ============================================= =====================================
key          parameter                                     default prior
============ ============================================= =====================================
``delta``    varIdent SD ratio of each non-reference level ``LogNormal(0, 1)``: ratios 0.14-7
``power``    varPower / varConstPower power (per stratum)  ``Normal(0, 1)``
``expon``    varExp exponent (per stratum)                 ``Normal(0, 1 / sd(v))``
``const``    varConstPower constant (per stratum)          ``LogNormal(0, 2)``
``Phi``      corAR1 (on (-1, 1)), corCAR1 (on (0, 1))      ``Uniform`` on its interval
``pacf_ar``  corARMA: partial autocorrelations of the AR    ``Uniform(-1, 1)`` each (every value
``pacf_ma``  and (sign-flipped) MA polynomials             is a stationary, invertible ARMA)
``Rho``      corCompSymm correlation, on (-1/(m-1), 1)     ``Uniform`` on that interval
``corSymm``  corSymm correlation matrix                    ``LKJ(eta=2)``
``range``    corExp / corGaus range                        ``LogNormal(log(d_med / 2), 1.5)``
``nugget``   corExp / corGaus nugget                       ``Beta(1, 2)``
============ ============================================= =====================================

``v`` is the variance covariate (the response standing in for the fitted
values), ``d_med`` the median within-group distance and ``m`` the largest
group. The range's prior is centred below ``d_med``, where a Gaussian
correlation matrix is still well conditioned (at ``d_med``, BodyWeight's
``corGaus`` would start the sampler at a log density of -1e11), and is wide:
its 95% interval runs from ``d_med / 38`` to ``9.5 d_med``.

Inside ``varComb`` the keys of part ``A``, ``B``... are prefixed ``A_``,
``B_`` (``A_delta``, ``B_power``). A key that a fixed-effect column
already uses gets the structure's name in front (``varPower:power``).

With a variance function, the ``"sigma"`` prior applies to the residual SD
at the geometric mean of the SD multipliers (sampled as ``sigma_c``); the
reported ``sigma`` is nlme's (the SD where the multiplier is 1).

Interval parameters take ``Uniform(lower, upper)`` inside their interval or
``Beta(alpha, beta)`` rescaled to it; positive ones ``LogNormal``,
``HalfNormal``, ``HalfStudentT`` or ``Exponential``; real ones ``Normal`` or
``StudentT``; the corSymm matrix ``LKJ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from bayesmix.bayes.priors import (
    LKJ,
    POSITIVE_PRIORS,
    REAL_PRIORS,
    Normal,
    Prior,
    PriorTable,
    _check_params,
    _fmt,
    apply_overrides,
    default_priors,
)
from bayesmix.errors import PriorError
from bayesmix.spec.correlation_structures import BoundCorrelation, distances
from bayesmix.spec.design_types import Design
from bayesmix.spec.residual_structure import ResidualStructure
from bayesmix.spec.variance_functions import BoundVariance

__all__ = [
    "Beta",
    "LogNormal",
    "StructureParameter",
    "Uniform",
    "resolve_structured_priors",
    "split_overrides",
    "structure_parameters",
]


@dataclass(frozen=True)
class Uniform:
    """Uniform(lower, upper)."""

    lower: float = -1.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, real=("lower", "upper"))
        if self.upper <= self.lower:
            raise PriorError(f"Uniform: upper ({self.upper}) must exceed lower ({self.lower}).")

    def __str__(self) -> str:
        return f"Uniform(lower={_fmt(self.lower)}, upper={_fmt(self.upper)})"


@dataclass(frozen=True)
class Beta:
    """Beta(alpha, beta) on (0, 1), rescaled to a parameter's interval."""

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, positive=("alpha", "beta"))

    def __str__(self) -> str:
        return f"Beta(alpha={_fmt(self.alpha)}, beta={_fmt(self.beta)})"


@dataclass(frozen=True)
class LogNormal:
    """LogNormal(mu, sigma): ``log x ~ Normal(mu, sigma)``."""

    mu: float = 0.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self, real=("mu",), positive=("sigma",))

    def __str__(self) -> str:
        return f"LogNormal(mu={_fmt(self.mu)}, sigma={_fmt(self.sigma)})"


StructurePrior = Prior | Uniform | Beta | LogNormal


@dataclass(frozen=True)
class StructureParameter:
    """One sampled parameter (scalar or vector) of a residual structure.

    Attributes
    ----------
    key : str
        Prior key and posterior name.
    kind : str
        The structure it belongs to (``varIdent``, ``corAR1``...).
    role : str
        What it is: ``delta``, ``power``, ``expon``, ``const``, ``Phi``,
        ``pacf_ar``, ``pacf_ma``, ``Rho``, ``corSymm``, ``range``, ``nugget``.
    support : {"real", "positive", "interval", "lkj"}
    labels : tuple of str
        Element labels (levels, strata, lags); empty for a scalar.
    bounds : (float, float)
        The interval of an ``"interval"`` parameter.
    default : prior
    """

    key: str
    kind: str
    role: str
    support: str
    labels: tuple[str, ...]
    bounds: tuple[float, float]
    default: StructurePrior

    @property
    def size(self) -> int:
        return max(1, len(self.labels))

    def unconstrained(self, values: np.ndarray) -> np.ndarray:
        """The spec's ``u`` from posterior values (last axis: the elements)."""
        values = np.asarray(values, dtype=float)
        if self.role in ("delta", "const", "range"):
            return np.log(values)
        if self.role in ("power", "expon", "corSymm"):  # corSymm: its raw values are u
            return values
        if self.role in ("Phi", "pacf_ar", "pacf_ma") and self.bounds[0] < 0:
            return np.arctanh(values)
        lo, hi = self.bounds  # CAR1 Phi, Rho, nugget: logit on (lo, hi)
        unit = (values - lo) / (hi - lo)
        return np.log(unit) - np.log1p(-unit)

    def check(self, prior: object) -> None:
        """Refuse a prior that does not fit the parameter (naming the key)."""
        allowed: tuple[type, ...] = {
            "real": REAL_PRIORS,
            "positive": (LogNormal, *POSITIVE_PRIORS),
            "interval": (Uniform, Beta),
            "lkj": (LKJ,),
        }[self.support]
        if not isinstance(prior, allowed):
            names = ", ".join(cls.__name__ for cls in allowed)
            raise PriorError(f"Prior for {self.key!r} must be one of {names}; got {prior!r}.")
        if isinstance(prior, Uniform):
            lo, hi = self.bounds
            if prior.lower < lo or prior.upper > hi:
                raise PriorError(
                    f"Prior for {self.key!r}: Uniform({prior.lower:g}, {prior.upper:g}) must lie "
                    f"inside the parameter's interval ({lo:g}, {hi:g})."
                )


def _variance_parameters(bound: BoundVariance, y: np.ndarray, prefix: str = "") -> list:
    kind = bound.kind
    if kind == "varComb":
        out = []
        for i, part in enumerate(bound.parts):
            out += _variance_parameters(part, y, f"{chr(ord('A') + i)}_")
        return out
    if kind == "varFixed":
        return []
    if kind == "varIdent":
        labels = tuple(bound.strata_levels[1:])
        return [
            StructureParameter(
                f"{prefix}delta",
                kind,
                "delta",
                "positive",
                labels,
                (0, np.inf),
                LogNormal(0.0, 1.0),
            )
        ]
    labels = tuple(bound.strata_levels) if len(bound.strata_levels) > 1 else ()
    v = y if bound.covariate is None else np.asarray(bound.covariate, dtype=float)
    power = StructureParameter(
        f"{prefix}power", kind, "power", "real", labels, (-np.inf, np.inf), Normal(0.0, 1.0)
    )
    if kind == "varPower":
        return [power]
    if kind == "varExp":
        sd_v = float(np.std(v)) or 1.0
        return [
            StructureParameter(
                f"{prefix}expon",
                kind,
                "expon",
                "real",
                labels,
                (-np.inf, np.inf),
                Normal(0.0, 1.0 / sd_v),
            )
        ]
    const = StructureParameter(
        f"{prefix}const", kind, "const", "positive", labels, (0, np.inf), LogNormal(0.0, 2.0)
    )
    return [const, power]


def _correlation_parameters(bound: BoundCorrelation) -> list:
    kind = bound.kind
    if kind == "corAR1":
        return [
            StructureParameter("Phi", kind, "Phi", "interval", (), (-1.0, 1.0), Uniform(-1.0, 1.0))
        ]
    if kind == "corCAR1":
        return [
            StructureParameter("Phi", kind, "Phi", "interval", (), (0.0, 1.0), Uniform(0.0, 1.0))
        ]
    if kind == "corARMA":
        p, q = bound.spec.p, bound.spec.q
        out = []
        for key, n, letter in (("pacf_ar", p, "Phi"), ("pacf_ma", q, "Theta")):
            if n:
                labels = tuple(f"{letter}{i + 1}" for i in range(n))
                out.append(
                    StructureParameter(
                        key, kind, key, "interval", labels, (-1.0, 1.0), Uniform(-1.0, 1.0)
                    )
                )
        return out
    if kind == "corCompSymm":
        lo = -1.0 / (bound.max_size - 1)
        return [StructureParameter("Rho", kind, "Rho", "interval", (), (lo, 1.0), Uniform(lo, 1.0))]
    if kind == "corSymm":
        return [StructureParameter("corSymm", kind, "corSymm", "lkj", (), (-1.0, 1.0), LKJ(2.0))]
    d_med = float(np.median(within_distances(bound)))
    out = [
        StructureParameter(
            "range",
            kind,
            "range",
            "positive",
            (),
            (0, np.inf),
            LogNormal(float(np.log(d_med / 2.0)), 1.5),
        )
    ]
    if bound.spec.nugget:
        out.append(
            StructureParameter("nugget", kind, "nugget", "interval", (), (0.0, 1.0), Beta(1.0, 2.0))
        )
    return out


def within_distances(bound: BoundCorrelation) -> np.ndarray:
    """The positive distances between rows of one group (corExp, corGaus)."""
    d = np.concatenate(
        [
            distances(c, bound.spec.metric)[:, *np.triu_indices(c.shape[1], 1)].ravel()
            for _, c, _ in bound.dense.classes
            if c.shape[1] > 1
        ]
    )
    return d[d > 0]


def structure_parameters(
    residual: ResidualStructure, y: np.ndarray, taken: set[str] = frozenset()
) -> list[StructureParameter]:
    """The sampled parameters of ``residual``, variance function first.

    ``y`` (the response) stands in for the fitted values when a default prior
    scale needs the variance covariate; ``taken`` lists prior keys the model
    already uses (fixed-effect names), which a structure key then avoids.
    """
    params = []
    if residual.variance is not None:
        params += _variance_parameters(residual.variance, np.asarray(y, dtype=float))
    if residual.correlation is not None:
        params += _correlation_parameters(residual.correlation)
    out = []
    for param in params:
        if param.key in taken:
            param = replace(param, key=f"{param.kind}:{param.key}")
        out.append(param)
    return out


def split_overrides(
    overrides: Mapping[str, object] | None,
    params: list[StructureParameter],
    standard_keys: list[str],
) -> tuple[dict[str, object] | None, PriorTable]:
    """``(the other overrides, the structure's priors)``, each checked.

    Raises
    ------
    PriorError
        For a key that is neither a structure key nor a standard one (listing
        every valid key), or a prior that does not fit its parameter.
    """
    table = PriorTable({p.key: p.default for p in params})
    if overrides is None:
        return None, table
    if not isinstance(overrides, Mapping):
        raise PriorError(f"priors must be a dict of key -> prior, got {type(overrides).__name__}.")
    by_key = {p.key: p for p in params}
    unknown = [k for k in overrides if k not in by_key and k not in standard_keys]
    if unknown:
        import difflib

        valid = [*standard_keys, *by_key]
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            parts.append(f"{key!r}{hint}")
        raise PriorError(
            f"Unknown prior key(s): {'; '.join(parts)}. Valid keys: {', '.join(valid)}."
        )
    rest = {}
    for key, prior in overrides.items():
        if key in by_key:
            by_key[key].check(prior)
            table[key] = prior
        else:
            rest[key] = prior
    return rest, table


def resolve_structured_priors(
    design: Design,
    residual: ResidualStructure,
    overrides: Mapping[str, object] | None = None,
) -> tuple[PriorTable, list[StructureParameter]]:
    """Every prior of the model (defaults updated with ``overrides``) and the
    structure's parameters.

    ``design`` is the offset-absorbed design the model samples.

    Raises
    ------
    PriorError
        For an unknown key (the message lists every valid one) or a prior that
        does not fit its parameter.
    """
    standard = default_priors(design)
    params = structure_parameters(residual, design.y, taken=set(standard))
    rest, structure = split_overrides(overrides, params, list(standard))
    table = apply_overrides(standard, rest)
    table.update(structure)
    return table, params
