"""A variance function bound to the rows of a fit: ``u`` to ``log g`` for both engines.

:class:`BoundVariance` is what :meth:`~bayesmix.spec.variance_functions.VarianceFunction.bind`
returns: the strata codes and covariate of each row, the parameter names and start,
and the maps from the unconstrained parameters ``u`` to ``log g`` and to the
reported values (see the table in :mod:`bayesmix.spec.variance_functions`).

Notation
--------
g : SD multiplier per row (``Var(e_i) = sigma^2 g_i^2``); u : unconstrained
parameters; s : stratum of a row; v : the variance covariate (or fitted values).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from bayesmix.errors import ArgumentError

if TYPE_CHECKING:
    from bayesmix.spec.variance_functions import VarianceFunction

__all__ = ["BoundVariance"]


@dataclass(frozen=True, eq=False)
class BoundVariance:
    """A variance function tied to the rows of a fit.

    Attributes
    ----------
    spec : VarianceFunction
    names : tuple of str
        Names of the reported parameters (nlme's ``coef`` names).
    start : ndarray
        Starting value of the unconstrained parameters ``u``.
    strata_codes : ndarray of int, optional
        Stratum of each row (0 without strata).
    strata_levels : tuple of str
    covariate : ndarray, optional
        The covariate ``v`` per row (``None`` when it is the fitted values).
    parts : tuple of BoundVariance
        The components of a varComb (empty otherwise).
    """

    spec: VarianceFunction
    names: tuple[str, ...]
    start: np.ndarray
    strata_codes: np.ndarray | None = None
    strata_levels: tuple[str, ...] = ()
    covariate: np.ndarray | None = None
    parts: tuple[BoundVariance, ...] = ()
    held: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    def held_at(self, fitted: np.ndarray) -> BoundVariance:
        """This function with its fitted values held at ``fitted`` (a covariate then).

        nlme holds ``fitted(.)`` for one step of an alternating fit; the held
        function no longer :attr:`uses_fitted`.
        """
        if not self.uses_fitted:
            return self
        held = np.array(fitted, dtype=float)
        held.setflags(write=False)
        return replace(self, held=held)

    @property
    def n_params(self) -> int:
        return int(self.start.size)

    @property
    def uses_fitted(self) -> bool:
        """The function reads the model's fitted values (and they are not held)."""
        return bool(getattr(self.spec, "uses_fitted", False)) and self.held is None

    def _split(self, u: np.ndarray) -> list[np.ndarray]:
        edges = np.cumsum([p.n_params for p in self.parts])[:-1]
        return np.split(np.asarray(u, dtype=float), edges)

    def _v(self, fitted: np.ndarray | None) -> np.ndarray:
        if self.covariate is not None:
            return self.covariate
        if fitted is None:
            raise ArgumentError(f"{self.spec.nlme()} needs the fitted values.")
        return np.asarray(fitted, dtype=float)

    def log_sd(self, u: np.ndarray, fitted: np.ndarray | None = None) -> np.ndarray:
        """``log g`` per row at unconstrained ``u`` (and the fitted values, if used)."""
        u = np.asarray(u, dtype=float)
        if self.held is not None:
            fitted = self.held
        kind = self.kind
        if kind == "varComb":
            return sum(p.log_sd(ui, fitted) for p, ui in zip(self.parts, self._split(u)))
        if kind == "varFixed":
            return 0.5 * np.log(self.covariate)
        if kind == "varIdent":
            return np.concatenate([[0.0], u])[self.strata_codes]
        s = self.strata_codes
        v = self._v(fitted)
        if kind == "varExp":
            return u[s] * v
        with np.errstate(divide="ignore"):
            log_abs = np.log(np.abs(v))
        if kind == "varPower":
            return u[s] * log_abs
        m = len(self.strata_levels)  # varConstPower: (log const per stratum, power per stratum)
        return np.logaddexp(u[:m][s], u[m:][s] * log_abs)

    def natural(self, u: np.ndarray) -> np.ndarray:
        """The reported parameters (ratios, powers, constants) from ``u``."""
        u = np.asarray(u, dtype=float)
        if self.kind == "varComb":
            return np.concatenate([p.natural(ui) for p, ui in zip(self.parts, self._split(u))])
        if self.kind == "varIdent":
            return np.exp(u)
        if self.kind == "varConstPower":
            m = len(self.strata_levels)
            return np.concatenate([np.exp(u[:m]), u[m:]])
        return u.copy()

    def unconstrained(self, natural: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`natural`."""
        natural = np.asarray(natural, dtype=float)
        if self.kind == "varComb":
            edges = np.cumsum([p.n_params for p in self.parts])[:-1]
            pieces = np.split(natural, edges)
            return np.concatenate([p.unconstrained(v) for p, v in zip(self.parts, pieces)])
        if self.kind == "varIdent":
            return np.log(natural)
        if self.kind == "varConstPower":
            m = len(self.strata_levels)
            return np.concatenate([np.log(natural[:m]), natural[m:]])
        return natural.copy()
