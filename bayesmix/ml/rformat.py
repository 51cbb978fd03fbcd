"""R-like number formatting and plain-text tables for printed summaries.

Shared by the ML summary, anova tables and the Bayesian summary, so that
numbers print with the digits R users are used to comparing against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def decimals_needed(value: float, digits: int) -> int:
    """Decimals needed to show ``value`` with ``digits`` significant digits."""
    if not math.isfinite(value) or value == 0.0:
        return 0
    mantissa, exponent = f"{abs(value):.{digits - 1}e}".split("e")
    fraction = mantissa.partition(".")[2].rstrip("0")
    return max(0, len(fraction) - int(exponent))


def format_column(values: Sequence[float], digits: int = 7, na: str = "") -> list[str]:
    """Format like R's ``format(x, digits=)``: one shared number of decimals,
    enough for the smallest non-zero entry to show ``digits`` significant digits."""
    floats = [math.nan if v is None else float(v) for v in values]
    decimals = max([decimals_needed(v, digits) for v in floats] + [0])
    return format_fixed(floats, decimals, na)


def format_fixed(values: Sequence[float], decimals: int, na: str = "") -> list[str]:
    """Format numbers with ``decimals`` decimals, right-justified; NaN -> ``na``."""
    cells = [
        f"{float(v):.{decimals}f}" if v is not None and math.isfinite(v) else na for v in values
    ]
    width = max([len(c) for c in cells] + [0])
    return [c.rjust(width) for c in cells]


def zapsmall(values: Sequence[float], digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    if largest > 0:
        return np.round(x, max(0, digits - math.ceil(math.log10(largest))))
    return np.round(x, digits)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """Lay out string cells in columns; ``align`` holds ``l`` or ``r`` per column."""
    widths = [max(len(line[j]) for line in [header, *rows]) for j in range(len(header))]
    lines = []
    for line in [header, *rows]:
        cells = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(line, widths, align)]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)


def format_pvalue(value: float) -> str:
    """R's ``format.pval`` at 3 significant digits (``<2e-16`` at machine precision)."""
    if not np.isfinite(value):
        return ""
    if value < 2.2e-16:
        return "<2e-16"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.2e}"
