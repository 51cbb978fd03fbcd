"""Numeric containers of nonlinear mixed models (see :mod:`bayesmix.nonlinear.build`).

:class:`NonlinearDesign` holds everything both engines need: the response,
the mean function, one :class:`ParameterDesign` per nonlinear parameter and
the joint random-effects blocks (:class:`NonlinearBlock`). ``phi`` and
``mean`` take an array namespace ``xp`` (numpy or pytensor.tensor), so a
Bayesian engine can build its graph from the same object.

Notation
--------
n : observations; beta : all fixed effects stacked parameter by parameter;
b : one ``(n_levels, k)`` array per joint block; phi : per-row parameter values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import DataError
from bayesmix.nonlinear.mean import MeanFunction
from bayesmix.spec.design import Design, RandomBlock

__all__ = ["NonlinearBlock", "NonlinearDesign", "NonlinearNewData", "ParameterDesign"]


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=float)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ParameterDesign:
    """The linear model of one nonlinear parameter.

    Attributes
    ----------
    name : str
        Parameter name (``"lCl"``).
    formula : str
        Its formula as given (``"1 + Wt + (1 | Subject)"``).
    X : ndarray, shape (n, p_k)
        Fixed-effects columns (``p_k = 0`` for ``"0 + (1 | g)"``).
    fixed_terms : tuple of str
        Names of the columns of ``X`` (see the module's Naming section).
    design : Design
        The design built from ``"<response> ~ <formula>"``; used to encode new data.
    """

    name: str
    formula: str
    X: np.ndarray
    fixed_terms: tuple[str, ...]
    design: Design = field(repr=False)


@dataclass(frozen=True, eq=False)
class NonlinearBlock:
    """Random effects of one grouping factor across parameters (one covariance matrix).

    Attributes
    ----------
    grouping, levels, codes, covariance
        As in :class:`~bayesmix.spec.design.RandomBlock`.
    terms : tuple of str
        Term names (``"lKa"``, ``"lCl:Wt"``).
    params : tuple of str
        The parameter each term belongs to.
    Z : ndarray, shape (n, k)
        Per-row multiplier of each term (1 for intercepts).
    sources : tuple of (int, int, int)
        For each term: parameter index, block index in that parameter's design,
        column in that block (to encode new data).
    """

    grouping: str
    levels: tuple[str, ...]
    codes: np.ndarray
    terms: tuple[str, ...]
    params: tuple[str, ...]
    Z: np.ndarray
    covariance: str
    sources: tuple[tuple[int, int, int], ...] = field(repr=False, default=())

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def label(self) -> str:
        """nlme-like label, e.g. ``"pdDiag(lKa + lCl | Subject)"``."""
        kind = "pdDiag" if self.covariance == "diagonal" else "pdSymm"
        return f"{kind}({' + '.join(self.terms)} | {self.grouping})"

    def random_block(self, Z: np.ndarray | None = None) -> RandomBlock:
        """This block as a linear :class:`RandomBlock`, optionally with other ``Z``."""
        return RandomBlock(
            self.grouping,
            self.levels,
            self.codes,
            self.terms,
            self.Z if Z is None else Z,
            self.covariance,
        )  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class NonlinearNewData:
    """New rows encoded as in fitting: per-parameter ``X``, per-block ``(codes, Z)``."""

    X: tuple[np.ndarray, ...]
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    covariates: Mapping[str, np.ndarray]
    new_levels: tuple[str, ...]


def _phi(xp: Any, Xs, blocks, params, beta, b) -> dict[str, Any]:
    """Per-row parameters from fixed matrices and ``(codes, Z, term params)`` blocks."""
    beta = beta if xp is not np else np.asarray(beta)
    out: dict[str, Any] = {}
    start = 0
    for name, X in zip(params, Xs, strict=True):
        width = X.shape[1]
        out[name] = xp.dot(X, beta[start : start + width]) if width else np.zeros(X.shape[0])
        start += width
    for (codes, Z, term_params), values in zip(blocks, b, strict=True):
        known = codes >= 0  # unseen levels (new data) get a zero random effect
        safe = np.where(known, codes, 0)
        for t, name in enumerate(term_params):
            out[name] = out[name] + (Z[:, t] * known) * values[safe, t]
    return out


@dataclass(frozen=True, eq=False)
class NonlinearDesign:
    """Numeric arrays of a nonlinear mixed model, shared by the ML and Bayesian engines.

    Attributes
    ----------
    formula : str
        Model formula (``"conc ~ SSfol(Dose, Time, lKe, lKa, lCl)"``) or the response
        name when the mean is a Python function.
    response : str
    y : ndarray, shape (n,)
    mean_function : MeanFunction
    parameters : tuple of ParameterDesign
        One per nonlinear parameter, in the mean function's order.
    blocks : tuple of NonlinearBlock
        One per grouping factor.
    covariates : mapping of str to ndarray
        Data columns the mean function reads.
    data : DataFrame
        Rows used (original index).
    n_dropped : int
        Rows dropped for missing values.
    """

    formula: str
    response: str
    y: np.ndarray
    mean_function: MeanFunction
    parameters: tuple[ParameterDesign, ...]
    blocks: tuple[NonlinearBlock, ...]
    covariates: Mapping[str, np.ndarray] = field(repr=False)
    data: pd.DataFrame = field(repr=False)
    n_dropped: int = 0

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    # Nonlinear models take no offset or prior weights (yet): the shared result
    # code reads these as for a linear design.
    offset = None
    weights = None

    @property
    def offset_or_zero(self) -> np.ndarray:
        return np.zeros(self.n_obs)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_fixed(self) -> int:
        return sum(p.X.shape[1] for p in self.parameters)

    @property
    def fixed_terms(self) -> tuple[str, ...]:
        return tuple(t for p in self.parameters for t in p.fixed_terms)

    @property
    def X(self) -> np.ndarray:
        """All parameters' fixed-effects columns side by side, ``(n, n_fixed)``."""
        return (
            np.column_stack([p.X for p in self.parameters])
            if self.n_fixed
            else np.zeros((self.n_obs, 0))
        )

    @property
    def fixed_params(self) -> tuple[str, ...]:
        """The parameter of each fixed effect."""
        return tuple(p.name for p in self.parameters for _ in p.fixed_terms)

    @property
    def description(self) -> str:
        """One-line description: formula, parameter formulas and covariance kinds."""
        parts = [f"{p.name} ~ {p.formula}" for p in self.parameters]
        kinds = [f"{b.grouping}: {b.covariance}" for b in self.blocks]
        return (
            f"{self.formula}; " + ", ".join(parts) + (f"; cov {', '.join(kinds)}" if kinds else "")
        )

    def phi(self, beta: Any, b: Any = None, xp: Any = np) -> dict[str, Any]:
        """Per-row parameter values ``{param: (n,) array}``; ``b=None`` means zero."""
        if b is None:
            b = [np.zeros((blk.n_levels, blk.n_terms)) for blk in self.blocks]
        blocks = [(blk.codes, blk.Z, blk.params) for blk in self.blocks]
        return _phi(xp, [p.X for p in self.parameters], blocks, self.params, beta, b)

    def mean(self, xp: Any, phi: Mapping[str, Any], covariates: Mapping | None = None) -> Any:
        """The mean function at per-row parameters ``phi`` (numpy or pytensor ``xp``)."""
        values = dict(self.covariates if covariates is None else covariates)
        values.update(phi)
        return self.mean_function(xp, values)

    def linear_design(self) -> Design:
        """A :class:`Design` view (y, stacked X, joint blocks) used by results and anova."""
        return Design(
            formula=self.description,
            response=self.response,
            y=self.y,
            X=_readonly(self.X),
            fixed_terms=self.fixed_terms,
            blocks=tuple(blk.random_block() for blk in self.blocks),
            data=self.data,
            n_dropped=self.n_dropped,
        )

    def evaluate_new_data(self, newdata: pd.DataFrame) -> NonlinearNewData:
        """Encode new rows exactly as the fitting data were encoded."""
        missing = [c for c in self.covariates if c not in newdata.columns]
        if missing:
            raise DataError(f"newdata lacks column(s) {', '.join(missing)} of the mean function.")
        encoded = [p.design.evaluate_new_data(newdata) for p in self.parameters]
        Xs = tuple(
            np.asarray(enc.X, dtype=float)[:, : p.X.shape[1]]
            if p.X.shape[1]
            else np.zeros((len(newdata), 0))
            for enc, p in zip(encoded, self.parameters)
        )
        blocks, new_levels = [], []
        for blk in self.blocks:
            k, j, _ = blk.sources[0]
            codes = np.asarray(encoded[k].blocks[j][0])
            Z = np.column_stack(
                [np.asarray(encoded[k].blocks[j][1])[:, t] for k, j, t in blk.sources]
            )
            blocks.append((codes, Z))
            if (codes < 0).any():
                new_levels.append(blk.grouping)
        covariates = {c: _numeric(newdata, c) for c in self.covariates}
        return NonlinearNewData(Xs, tuple(blocks), MappingProxyType(covariates), tuple(new_levels))

    def phi_new(self, new: NonlinearNewData, beta: np.ndarray, b: Any = None) -> dict[str, Any]:
        """Per-row parameters for encoded new data (zero effects for unseen levels)."""
        if b is None:
            b = [np.zeros((blk.n_levels, blk.n_terms)) for blk in self.blocks]
        blocks = [(codes, Z, blk.params) for (codes, Z), blk in zip(new.blocks, self.blocks)]
        return _phi(np, new.X, blocks, self.params, beta, b)

    # A mappingproxy cannot be pickled or deep-copied: travel as a dict.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "covariates": dict(self.covariates)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = {**state, "covariates": MappingProxyType(dict(state["covariates"]))}
        self.__dict__.update(state)  # frozen: bypass __setattr__, as unpickling does


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise DataError(
            f"column {column!r} is used in the mean function, so it must be numeric "
            f"(it has dtype {values.dtype}); use it in a parameter formula instead."
        )
    return _readonly(values.to_numpy(dtype=float))
