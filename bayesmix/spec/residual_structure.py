"""The residual covariance ``sigma^2 Lambda`` of a model: a variance function and a
correlation structure, bound to the rows of a fit, and the whitening both engines use.

With ``G = diag(g)`` (:mod:`.variance_functions`) and ``C`` block diagonal by
correlation group (:mod:`.correlation_structures`), ``Lambda = G C G``. For
``Lambda = L L'`` with ``L = G L_C`` the model ``y = X beta + Z b + e``,
``e ~ N(0, sigma^2 Lambda)`` is the model ``L^-1 y = L^-1 X beta + L^-1 Z b + e*``
with independent errors, and the log-likelihoods differ by ``-log|Lambda| / 2``
where ``log|Lambda| = 2 sum log g + log|C|`` (Pinheiro & Bates, 2000, sec. 5.1).
Correlation groups are nested in every random-effects grouping, so ``L^-1 Z``
keeps each row's random-effect levels and the linear-mixed-model kernel is reused as it is.

Notation
--------
u : the structure's unconstrained parameters (variance function first, then
correlation); Lambda : residual correlation-and-variance matrix; L its Cholesky factor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, FormulaError
from bayesmix.spec.correlation_binding import bind_correlation
from bayesmix.spec.correlation_structures import BoundCorrelation, CorrelationStructure
from bayesmix.spec.design_columns import readonly
from bayesmix.spec.design_types import Design, RandomBlock
from bayesmix.spec.formula_eval import unknown_column
from bayesmix.spec.nlme_syntax import looks_like_variance_function, parse_structure
from bayesmix.spec.variance_functions import BoundVariance, VarianceFunction

__all__ = [
    "ResidualStructure",
    "bind_residual",
    "correlation_argument",
    "structure_columns",
    "variance_argument",
]


def variance_argument(weights: object) -> VarianceFunction | None:
    """The variance function ``weights=`` gives, or ``None`` when it gives prior weights."""
    if isinstance(weights, VarianceFunction):
        return weights
    if isinstance(weights, str) and re.match(r"\s*cor[A-Z][A-Za-z0-9]*\s*\(", weights):
        raise FormulaError(
            f"weights={weights!r} is a correlation structure; pass it as correlation=."
        )
    if isinstance(weights, str) and looks_like_variance_function(weights):
        parsed = parse_structure(weights)
        if not isinstance(parsed, VarianceFunction):
            raise FormulaError(
                f"weights={weights!r} is a correlation structure; pass it as correlation=."
            )
        return parsed
    return None


def correlation_argument(correlation: object) -> CorrelationStructure | None:
    """The correlation structure of ``correlation=`` (an object or nlme's syntax)."""
    if correlation is None or isinstance(correlation, CorrelationStructure):
        return correlation
    if isinstance(correlation, str):
        parsed = parse_structure(correlation)
        if not isinstance(parsed, CorrelationStructure):
            raise FormulaError(
                f"correlation={correlation!r} is a variance function; pass it as weights=."
            )
        return parsed
    raise ArgumentError(
        "correlation= takes a correlation structure such as bmx.corAR1(group='Mare') or "
        f"nlme's syntax 'corAR1(form = ~1 | Mare)', got {type(correlation).__name__}."
    )


def structure_columns(
    variance: VarianceFunction | None,
    correlation: CorrelationStructure | None,
    data: pd.DataFrame,
) -> tuple[str, ...]:
    """Columns the residual structures read; unknown ones named with close matches."""
    columns: list[str] = []
    for part, argument in ((variance, "weights"), (correlation, "correlation")):
        if part is None:
            continue
        for name in part.columns():
            if isinstance(data, pd.DataFrame) and name not in data.columns:
                known = [str(c) for c in data.columns]
                raise DataError(
                    unknown_column(name, known, f"{argument}={part.nlme()!r}: column {name!r}")
                )
            columns.append(name)
    return tuple(dict.fromkeys(columns))


@dataclass(frozen=True, eq=False)
class ResidualStructure:
    """A variance function and/or a correlation structure bound to the rows of a fit.

    Attributes
    ----------
    variance : BoundVariance or None
    correlation : BoundCorrelation or None
    """

    variance: BoundVariance | None
    correlation: BoundCorrelation | None

    @property
    def parts(self) -> tuple:
        return tuple(p for p in (self.variance, self.correlation) if p is not None)

    @property
    def n_params(self) -> int:
        return sum(p.n_params for p in self.parts)

    @property
    def start(self) -> np.ndarray:
        return np.concatenate([p.start for p in self.parts]) if self.parts else np.zeros(0)

    @property
    def uses_fitted(self) -> bool:
        return self.variance is not None and self.variance.uses_fitted

    def held_at(self, fitted: np.ndarray | None) -> ResidualStructure:
        """The structure with a variance function of the fitted values held at ``fitted``."""
        if not self.uses_fitted:
            return self
        if fitted is None:
            raise ArgumentError(
                f"{self.variance.spec.nlme()} reads the fitted values; give them to hold."
            )
        return replace(self, variance=self.variance.held_at(fitted))

    def split(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(u_variance, u_correlation)``."""
        u = np.asarray(u, dtype=float)
        k = self.variance.n_params if self.variance is not None else 0
        return u[:k], u[k:]

    def log_sd(self, u: np.ndarray, fitted: np.ndarray | None = None) -> np.ndarray | None:
        """``log g`` per row, or ``None`` without a variance function."""
        if self.variance is None:
            return None
        return self.variance.log_sd(self.split(u)[0], fitted)

    def mean_log_sd(self, u: np.ndarray, fitted: np.ndarray | None = None) -> float:
        """``mean(log g)``: the part of the variance function that ``sigma`` can absorb."""
        log_g = self.log_sd(u, fitted)
        return 0.0 if log_g is None else float(np.mean(log_g))

    def whiten(
        self,
        u: np.ndarray,
        M: np.ndarray,
        fitted: np.ndarray | None = None,
        centre: bool = False,
    ) -> tuple[np.ndarray, float]:
        """``L^-1 M`` (rows in the original order) and ``log|Lambda|``.

        ``centre=True`` uses ``g / exp(mean(log g))``: the same model with
        ``sigma`` (and the random effects' relative factor) rescaled by
        ``exp(mean(log g))``, which keeps the optimiser's coordinates apart.
        """
        u_var, u_cor = self.split(u)
        M = np.asarray(M, dtype=float)
        log_det = 0.0
        if self.variance is not None:
            log_g = self.variance.log_sd(u_var, fitted)
            if not np.all(np.isfinite(log_g)):
                raise DataError(
                    f"{self.variance.spec.nlme()}: the SD multiplier is 0 or infinite in "
                    f"{int(np.sum(~np.isfinite(log_g)))} row(s) (a variance covariate of 0?)."
                )
            if centre:
                log_g = log_g - np.mean(log_g)
            M = M * np.exp(-log_g).reshape((-1,) + (1,) * (M.ndim - 1))
            log_det += 2.0 * float(np.sum(log_g))
        if self.correlation is not None:
            M, log_det_C = self.correlation.whiten(u_cor, M)
            log_det += log_det_C
        return M, log_det

    def whiten_design(
        self, design: Design, u: np.ndarray, fitted: np.ndarray | None = None
    ) -> tuple[Design, float]:
        """The design with independent unit-variance errors, and ``log|Lambda|``.

        Prior weights and the offset are absorbed first (:meth:`Design.whitened`).
        """
        white = design.whitened()
        widths = [1, white.n_fixed] + [b.n_terms for b in white.blocks]
        M = np.column_stack([white.y, white.X] + [b.Z for b in white.blocks])
        W, log_det = self.whiten(u, M, fitted)
        parts = np.split(W, np.cumsum(widths)[:-1], axis=1)
        blocks = tuple(
            replace(b, Z=readonly(np.ascontiguousarray(z))) for b, z in zip(white.blocks, parts[2:])
        )
        out = replace(
            white,
            y=readonly(np.ascontiguousarray(parts[0][:, 0])),
            X=readonly(np.ascontiguousarray(parts[1])),
            blocks=blocks,
        )
        return out, log_det

    def unconstrained(self, natural: np.ndarray) -> np.ndarray:
        """``u`` from the reported parameters (variance function's, then correlation's)."""
        natural = np.asarray(natural, dtype=float)
        k = self.variance.n_params if self.variance is not None else 0
        parts = [(self.variance, natural[:k]), (self.correlation, natural[k:])]
        pieces = [part.unconstrained(v) for part, v in parts if part is not None]
        return np.concatenate(pieces) if pieces else np.zeros(0)

    def parameter_table(self, u: np.ndarray) -> pd.DataFrame:
        """Reported parameters: ``structure``, ``parameter``, ``estimate`` (nlme's scale)."""
        rows = []
        for part, ui in zip((self.variance, self.correlation), self.split(u)):
            if part is None:
                continue
            for name, value in zip(part.names, part.natural(ui)):
                rows.append((part.spec.nlme(), name, float(value)))
        return pd.DataFrame(rows, columns=["structure", "parameter", "estimate"])


def innermost_grouping(blocks: tuple[RandomBlock, ...]) -> tuple[str, np.ndarray] | None:
    """The random-effects grouping with the most levels (nlme's innermost level)."""
    if not blocks:
        return None
    block = max(blocks, key=lambda b: b.n_levels)
    return block.grouping, np.asarray(block.codes)


def bind_residual(
    variance: VarianceFunction | None,
    correlation: CorrelationStructure | None,
    design: Design,
) -> ResidualStructure | None:
    """Bind the structures to the design's rows; refuse correlation groups that
    are not nested in every random-effects grouping (nlme refuses them too)."""
    if variance is None and correlation is None:
        return None
    data = design.data
    bound_var = variance.bind(data) if variance is not None else None
    bound_cor = None
    if correlation is not None:
        bound_cor = bind_correlation(correlation, data, innermost_grouping(design.blocks))
        _check_nested(bound_cor, design.blocks)
    return ResidualStructure(bound_var, bound_cor)


def _check_nested(cor: BoundCorrelation, blocks: tuple[RandomBlock, ...]) -> None:
    codes = np.asarray(cor.group_codes, dtype=np.int64)
    for block in blocks:
        pairs = np.unique(codes * block.n_levels + np.asarray(block.codes, dtype=np.int64))
        spread = np.bincount(pairs // block.n_levels)
        if (spread > 1).any():
            raise DataError(
                f"{cor.spec.nlme()}: the correlation groups ({cor.group_name or 'all rows'}) are "
                f"not nested in the random-effects grouping {block.grouping!r}: "
                f"{int((spread > 1).sum())} group(s) span several of its levels. Group the "
                f"correlation by {block.grouping!r} or a finer column."
            )
