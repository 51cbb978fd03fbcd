"""Within-group correlation structures: nlme's ``corAR1``, ``corCAR1``, ``corARMA``,
``corCompSymm``, ``corSymm``, ``corExp`` and ``corGaus``.

The user-facing objects are plain data; :meth:`CorrelationStructure.bind`
ties one to the rows of a fit (groups, times or coordinates, checked) and
returns a :class:`BoundCorrelation`, which maps unconstrained parameters ``u``
to the reported ones and whitens arrays (:mod:`.correlation_math`).

Without ``group``, a structure of :func:`~bayesmix.lmm` uses the innermost
random-effects grouping (nlme's default) and one of :func:`~bayesmix.gls`
treats all rows as one group. Without ``time``, the position of a row within
its group (data order) is its time, as in nlme.

Notation
--------
=========== ============================================= ===================== ===============
structure   cor(e_i, e_j) within a group                  reported              unconstrained u
=========== ============================================= ===================== ===============
corAR1      phi^|t_i - t_j|, integer t                    Phi                   atanh(Phi)
corCAR1     phi^|t_i - t_j|, real t, phi in (0, 1)        Phi                   logit(Phi)
corARMA     ARMA(p, q) autocorrelation at |t_i - t_j|     Phi1.., Theta1..      atanh(PACFs)
corCompSymm rho, on (-1 / (m - 1), 1)                     Rho                   logit, rescaled
corSymm     C[t_i, t_j], C unstructured                   cor(1,2), cor(1,3)..  atanh(CPCs)
corExp      (1 - nugget) exp(-d / range), d > 0           range[, nugget]       log, logit
corGaus     (1 - nugget) exp(-(d / range)^2), d > 0       range[, nugget]       log, logit
=========== ============================================= ===================== ===============

m is the largest group size; d the distance between coordinates (``metric``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayesmix.errors import ArgumentError
from bayesmix.spec.correlation_math import (
    DenseLayout,
    MarkovLayout,
    ar_to_pacf,
    arma_acf,
    correlation_to_cpc,
    cpc_to_correlation,
    logit,
    pacf_to_ar,
    sigmoid,
)
from bayesmix.spec.variance_functions import r_name

__all__ = [
    "BoundCorrelation",
    "CorAR1",
    "CorARMA",
    "CorCAR1",
    "CorCompSymm",
    "CorExp",
    "CorGaus",
    "CorSymm",
    "CorrelationStructure",
]

_METRICS = ("euclidean", "manhattan", "maximum")
#: Largest group the dense path factors (a single gls group of all rows included).
MAX_DENSE_GROUP = 5000


class CorrelationStructure:
    """Base of the correlation-structure specifications (plain, immutable data)."""

    kind: str = ""
    group: str | None = None

    def columns(self) -> tuple[str, ...]:
        cols = tuple(c for c in self._covariates() if c)
        return cols + ((self.group,) if self.group else ())

    def _covariates(self) -> tuple[str | None, ...]:
        return (getattr(self, "time", None),)

    def nlme(self) -> str:
        covs = [r_name(c) for c in self._covariates() if c]
        form = " + ".join(covs) if covs else "1"
        group = f" | {r_name(self.group)}" if self.group else ""
        extra = self._nlme_extra()
        return f"{self.kind}(form = ~{form}{group}{extra})"

    def _nlme_extra(self) -> str:
        return ""

    def __str__(self) -> str:
        return self.nlme()


def _check_optional_name(value: object, argument: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ArgumentError(f"{argument} must be a column name (a string) or None, got {value!r}.")


@dataclass(frozen=True)
class _TimeStructure(CorrelationStructure):
    time: str | None = None
    group: str | None = None
    start: float | None = None

    def __post_init__(self) -> None:
        _check_optional_name(self.time, f"{self.kind}(time=)")
        _check_optional_name(self.group, f"{self.kind}(group=)")


@dataclass(frozen=True)
class CorAR1(_TimeStructure):
    """AR(1) errors on an integer time (default: the position within the group)."""

    kind = "corAR1"


@dataclass(frozen=True)
class CorCAR1(_TimeStructure):
    """Continuous-time AR(1): ``phi`` is the correlation at one unit of ``time``."""

    kind = "corCAR1"


@dataclass(frozen=True)
class CorCompSymm(_TimeStructure):
    """Compound symmetry: one correlation between any two rows of a group."""

    kind = "corCompSymm"

    def _covariates(self) -> tuple[str | None, ...]:
        return ()


@dataclass(frozen=True)
class CorSymm(_TimeStructure):
    """A general (unstructured) correlation between the distinct times (positions)."""

    kind = "corSymm"


@dataclass(frozen=True)
class CorARMA(CorrelationStructure):
    """ARMA(p, q) errors on an integer time (default: the position within the group)."""

    p: int = 0
    q: int = 0
    time: str | None = None
    group: str | None = None
    start: tuple[float, ...] | None = None
    kind = "corARMA"

    def __post_init__(self) -> None:
        for name in ("p", "q"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
                raise ArgumentError(
                    f"corARMA({name}=) must be a non-negative integer, got {value!r}."
                )
        if self.p + self.q == 0:
            raise ArgumentError("corARMA needs p > 0 or q > 0 (p = q = 0 is independence).")
        _check_optional_name(self.time, "corARMA(time=)")
        _check_optional_name(self.group, "corARMA(group=)")

    def _nlme_extra(self) -> str:
        return f", p = {self.p}, q = {self.q}"


@dataclass(frozen=True)
class _SpatialStructure(CorrelationStructure):
    coords: tuple[str, ...] = ()
    group: str | None = None
    nugget: bool = False
    metric: str = "euclidean"
    start: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        coords = (self.coords,) if isinstance(self.coords, str) else tuple(self.coords)
        if not coords or not all(isinstance(c, str) and c for c in coords):
            raise ArgumentError(
                f"{self.kind}(coords=) needs one or more column names, got {self.coords!r}."
            )
        object.__setattr__(self, "coords", coords)
        _check_optional_name(self.group, f"{self.kind}(group=)")
        if self.metric not in _METRICS:
            raise ArgumentError(
                f"{self.kind}(metric=) must be one of {', '.join(_METRICS)}, got {self.metric!r}."
            )
        if not isinstance(self.nugget, bool | np.bool_):
            raise ArgumentError(f"{self.kind}(nugget=) must be True or False, got {self.nugget!r}.")

    def _covariates(self) -> tuple[str | None, ...]:
        return self.coords

    def _nlme_extra(self) -> str:
        out = ", nugget = TRUE" if self.nugget else ""
        return out + (f', metric = "{self.metric}"' if self.metric != "euclidean" else "")


@dataclass(frozen=True)
class CorExp(_SpatialStructure):
    """Exponential spatial correlation, ``exp(-d / range)``, optionally with a nugget."""

    kind = "corExp"


@dataclass(frozen=True)
class CorGaus(_SpatialStructure):
    """Gaussian spatial correlation, ``exp(-(d / range)^2)``, optionally with a nugget."""

    kind = "corGaus"


# ------------------------------------------------------------------ bound


@dataclass(frozen=True, eq=False)
class BoundCorrelation:
    """A correlation structure tied to the rows of a fit.

    Attributes
    ----------
    spec : CorrelationStructure
    names : tuple of str
        Reported parameter names (nlme's).
    start : ndarray
        Start of the unconstrained parameters.
    group_codes : ndarray of int
        Correlation group of each row.
    group_name : str or None
        The grouping column (``None``: all rows are one group).
    coords : ndarray, shape (n, d)
        Time, position index or spatial coordinates per row.
    markov : MarkovLayout or None
        Set for corAR1 and corCAR1.
    dense : DenseLayout or None
        Set for every other structure.
    max_size : int
        Largest group.
    n_times : int
        corSymm: the number of distinct times ``K``.
    """

    spec: CorrelationStructure
    names: tuple[str, ...]
    start: np.ndarray
    group_codes: np.ndarray
    group_name: str | None
    coords: np.ndarray
    markov: MarkovLayout | None
    dense: DenseLayout | None
    max_size: int
    n_times: int = 0

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def n_params(self) -> int:
        return int(self.start.size)

    @property
    def _rho_lower(self) -> float:
        return -1.0 / (self.max_size - 1)

    def natural(self, u: np.ndarray) -> np.ndarray:
        """Reported parameters from unconstrained ``u``."""
        u = np.asarray(u, dtype=float)
        kind = self.kind
        if kind == "corAR1":
            return np.tanh(u)
        if kind == "corCAR1":
            return sigmoid(u)
        if kind == "corARMA":
            p = self.spec.p
            return np.concatenate([pacf_to_ar(np.tanh(u[:p])), -pacf_to_ar(np.tanh(u[p:]))])
        if kind == "corCompSymm":
            lo = self._rho_lower
            return lo + (1.0 - lo) * sigmoid(u)
        if kind == "corSymm":
            C = cpc_to_correlation(np.tanh(u), self.n_times)
            return C[np.triu_indices(self.n_times, 1)]
        out = [np.exp(u[0])]  # spatial: range, nugget
        if self.spec.nugget:
            out.append(sigmoid(u[1]))
        return np.asarray(out)

    def unconstrained(self, natural: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`natural`."""
        nat = np.asarray(natural, dtype=float)
        kind = self.kind
        if kind == "corAR1":
            return np.arctanh(nat)
        if kind == "corCAR1":
            return logit(nat)
        if kind == "corARMA":
            p = self.spec.p
            return np.arctanh(np.concatenate([ar_to_pacf(nat[:p]), ar_to_pacf(-nat[p:])]))
        if kind == "corCompSymm":
            lo = self._rho_lower
            return logit((nat - lo) / (1.0 - lo))
        if kind == "corSymm":
            K = self.n_times
            C = np.eye(K)
            C[np.triu_indices(K, 1)] = nat
            C = np.triu(C, 1) + np.triu(C).T
            return np.arctanh(correlation_to_cpc(C))
        u = [np.log(nat[0])] + ([float(logit(nat[1]))] if self.spec.nugget else [])
        return np.asarray(u)

    def correlation(self, u: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Correlation matrices (U, s, s) of coordinate patterns (U, s, d), numpy."""
        kind = self.kind
        s = coords.shape[1]
        eye = np.eye(s)
        if kind in ("corAR1", "corCAR1", "corARMA"):
            lags = np.abs(coords[:, :, None, 0] - coords[:, None, :, 0])
            if kind == "corARMA":
                nat = self.natural(u)
                p = self.spec.p
                acf = arma_acf(nat[:p], nat[p:], int(lags.max()))
                return acf[lags.astype(np.int64)]
            return np.power(self.natural(u)[0], lags)
        if kind == "corCompSymm":
            rho = float(self.natural(u)[0])
            return np.broadcast_to(rho + (1.0 - rho) * eye, (coords.shape[0], s, s)).copy()
        if kind == "corSymm":
            C = cpc_to_correlation(np.tanh(u), self.n_times)
            idx = coords[:, :, 0].astype(np.int64)
            return C[idx[:, :, None], idx[:, None, :]]
        d = distances(coords, self.spec.metric)
        nat = self.natural(u)
        scaled = d / nat[0]
        cor = np.exp(-scaled) if kind == "corExp" else np.exp(-(scaled**2))
        if self.spec.nugget:
            cor = (1.0 - nat[1]) * cor
        return np.where(eye.astype(bool), 1.0, cor)

    def whiten(self, u: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, float]:
        """``L^-1 M`` (rows in the original order) and ``log|C|`` at ``u``."""
        if self.markov is not None:
            return self.markov.whiten(float(self.natural(u)[0]), M)
        return self.dense.whiten(lambda coords: self.correlation(u, coords), M)


def distances(coords: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise distances within each stacked group, (U, s, s)."""
    diff = coords[:, :, None, :] - coords[:, None, :, :]
    if metric == "manhattan":
        return np.abs(diff).sum(axis=-1)
    if metric == "maximum":
        return np.abs(diff).max(axis=-1)
    return np.sqrt((diff**2).sum(axis=-1))


# nlme's names, as the public API spells them (``bmx.corAR1(group="Mare")``)
corAR1 = CorAR1
corCAR1 = CorCAR1
corARMA = CorARMA
corCompSymm = CorCompSymm
corSymm = CorSymm
corExp = CorExp
corGaus = CorGaus
