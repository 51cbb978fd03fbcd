"""The numeric design both engines read: :class:`Design` and its :class:`RandomBlock` bars.

Notation
--------
n : number of observations, p : number of fixed-effect columns,
X : (n, p) fixed-effects matrix, y : (n,) response.
Each random-effects bar becomes one :class:`RandomBlock` with k columns
(``Z``, shape (n, k)) and integer ``codes`` (shape (n,)) into its ``levels``:
the contribution of the block to the linear predictor is
``rowsum(Z * b[codes])`` with ``b`` of shape (n_levels, k). No dense
(n, n_levels * k) matrix is ever formed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from bayesmix.spec.design_columns import NewData, readonly

__all__ = ["CovarianceKind", "Design", "RandomBlock"]


CovarianceKind = Literal["unstructured", "diagonal"]


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class RandomBlock:
    """One random-effects bar, e.g. ``(1 + Days | Subject)``.

    Attributes
    ----------
    grouping : str
        Name of the grouping factor (``"Subject"``, ``"popu:gen"``).
    levels : tuple of str
        Levels that occur in the data, in model order.
    codes : ndarray of int, shape (n,)
        Index into ``levels`` for every observation.
    terms : tuple of str
        Names of the bar's columns (``("Intercept", "Days")``).
    Z : ndarray of float, shape (n, k)
        Values of the bar's columns for every observation.
    covariance : {"unstructured", "diagonal"}
        ``"unstructured"`` for ``|`` (correlated), ``"diagonal"`` for ``||``.
    """

    grouping: str
    levels: tuple[str, ...]
    codes: np.ndarray
    terms: tuple[str, ...]
    Z: np.ndarray
    covariance: CovarianceKind = "unstructured"

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def label(self) -> str:
        """lme4-like label of the block, e.g. ``"(1 + Days | Subject)"``."""
        bar = "||" if self.covariance == "diagonal" else "|"
        terms = ["1" if t == "Intercept" else t for t in self.terms]
        if "1" not in terms:
            terms.insert(0, "0")
        return f"({' + '.join(terms)} {bar} {self.grouping})"


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class Design:
    """Numeric arrays of a mixed model, shared by the ML and Bayesian engines.

    Attributes
    ----------
    formula : str
        The formula as the user wrote it.
    response : str
        Name (expression) of the response, e.g. ``"log(1 + total.fruits)"``.
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
    fixed_terms : tuple of str
        Column names of ``X`` (formulae naming: ``"Intercept"``, ``"Sex[Female]"``).
    blocks : tuple of RandomBlock
        One per bar after expanding ``a/b`` and ``||``, in formula order.
    data : DataFrame
        The rows actually used (after dropping missing values), original index.
    n_dropped : int
        Number of rows of the user's data dropped for missing values.
    offset : ndarray, shape (n,), optional
        Known part of the linear predictor (``offset()`` terms plus the
        ``offset=`` argument), added to ``X beta + Z b``; ``None`` when absent.
    weights : ndarray, shape (n,), optional
        Prior weights (lme4's meaning: the residual variance of row i is
        ``sigma^2 / w_i``); ``None`` when all are 1.
    contrasts : dict
        The ``contrasts=`` argument, checked (column -> coding name).
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_terms: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    data: pd.DataFrame = field(repr=False)
    n_dropped: int = 0
    encoder: Any = field(default=None, repr=False, compare=False)
    offset: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    contrasts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_fixed(self) -> int:
        return int(self.X.shape[1])

    @property
    def offset_or_zero(self) -> np.ndarray:
        """The offset, or zeros when the model has none."""
        return np.zeros(self.n_obs) if self.offset is None else self.offset

    @property
    def log_weight_term(self) -> float:
        """``0.5 * sum(log w)``: what prior weights add to the Gaussian log-likelihood."""
        return 0.0 if self.weights is None else 0.5 * float(np.sum(np.log(self.weights)))

    def offset_absorbed(self) -> Design:
        """The same model with the offset moved into the response (``y - offset``).

        A Gaussian likelihood of ``y`` with mean ``offset + mu`` is the likelihood
        of ``y - offset`` with mean ``mu``, so every Bayesian likelihood form
        samples this design unchanged; results add the offset back to predictions.
        """
        if self.offset is None:
            return self
        return replace(self, y=readonly(self.y - self.offset), offset=None)

    def whitened(self) -> Design:
        """The equivalent unit-weight, offset-free design.

        With ``s = sqrt(w)``, the model ``y ~ N(offset + X beta + Z b, sigma^2 / w)``
        is the model ``s (y - offset) ~ N(s X beta + s Z b, sigma^2)``; its
        log-likelihood differs by :attr:`log_weight_term` only. The engines fit
        this design and add that term, so neither needs its own weights code.
        """
        if self.offset is None and self.weights is None:
            return self
        s = np.ones(self.n_obs) if self.weights is None else np.sqrt(self.weights)
        blocks = tuple(replace(block, Z=readonly(block.Z * s[:, None])) for block in self.blocks)
        return replace(
            self,
            y=readonly(s * (self.y - self.offset_or_zero)),
            X=readonly(self.X * s[:, None]),
            blocks=blocks,
            offset=None,
            weights=None,
        )

    def evaluate_new_data(self, newdata: pd.DataFrame) -> NewData:
        """Encode new rows exactly as the fitting data were encoded.

        Parameters
        ----------
        newdata : DataFrame
            Must hold every predictor and grouping column of the formula (the
            response is not needed).

        Returns
        -------
        NewData
        """
        if self.encoder is None:
            raise RuntimeError("This design was built by hand and cannot encode new data.")
        return self.encoder.encode(newdata)
