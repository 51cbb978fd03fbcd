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
from bayesmix.spec.data_prep import numeric_argument
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
    """New rows encoded as in fitting: per-parameter ``X``, per-block ``(codes, Z)``.

    ``offset`` is the model's offset on the new rows (``None`` without one).
    """

    X: tuple[np.ndarray, ...]
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    covariates: Mapping[str, np.ndarray]
    new_levels: tuple[str, ...]
    offset: np.ndarray | None = None

    @property
    def offset_or_zero(self) -> np.ndarray:
        """The offset, or zeros when the model has none."""
        n = self.blocks[0][0].shape[0] if self.blocks else self.X[0].shape[0]
        return np.zeros(n) if self.offset is None else self.offset


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
    offset : ndarray, shape (n,), optional
        Known term added to the mean function's output (``mu = offset + f``);
        ``None`` when absent.
    weights : ndarray, shape (n,), optional
        Prior weights (lme4's meaning: row i has residual variance
        ``sigma^2 / w_i``); ``None`` when all are 1.
    offset_column : str, optional
        The data column ``offset=`` named, read again from new rows in
        predictions; ``None`` when the offset was an array (or absent).
    weights_column : str, optional
        The data column ``weights=`` named (``None`` for an array).
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
    offset: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    offset_column: str | None = field(default=None, repr=False)
    weights_column: str | None = field(default=None, repr=False)

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def offset_or_zero(self) -> np.ndarray:
        """The offset, or zeros when the model has none."""
        return np.zeros(self.n_obs) if self.offset is None else self.offset

    @property
    def y_less_offset(self) -> np.ndarray:
        """``y - offset``: what the mean function itself models (``y`` without an offset)."""
        return self.y if self.offset is None else _readonly(self.y - self.offset)

    @property
    def sqrt_weights(self) -> np.ndarray:
        """``sqrt(w)``, ones without prior weights: ``sqrt(w) (y - mu)`` has unit weights."""
        return np.ones(self.n_obs) if self.weights is None else np.sqrt(self.weights)

    @property
    def log_weight_term(self) -> float:
        """``0.5 * sum(log w)``: what prior weights add to the Gaussian log-likelihood."""
        return 0.0 if self.weights is None else 0.5 * float(np.sum(np.log(self.weights)))

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
            offset=self.offset,
            weights=self.weights,
        )

    def evaluate_new_data(self, newdata: pd.DataFrame) -> NonlinearNewData:
        """Encode new rows exactly as the fitting data were encoded (offset included)."""
        offset = self._new_offset(newdata)  # first: an array offset refuses any new rows
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
        return NonlinearNewData(
            Xs,
            tuple(blocks),
            MappingProxyType(covariates),
            tuple(new_levels),
            offset,
        )

    def _new_offset(self, newdata: pd.DataFrame) -> np.ndarray | None:
        """The offset of new rows: read from its column; unknown when it was an array."""
        if self.offset is None:
            return None
        if self.offset_column is None:
            raise DataError(
                "This model's offset was given as an array, so it is unknown for new rows; "
                "refit with offset='<column>' to predict for new data."
            )
        if self.offset_column not in newdata.columns:
            raise DataError(
                f"newdata lacks the offset column {self.offset_column!r} (offset= of the model)."
            )
        what = f"newdata's offset column {self.offset_column!r}"
        values = numeric_argument(newdata[self.offset_column], what)
        if not np.all(np.isfinite(values)):
            raise DataError("The offset is missing or not finite in some rows of newdata.")
        return _readonly(values)

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
