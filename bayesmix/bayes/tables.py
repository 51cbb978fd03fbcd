"""Helpers shared by the Bayesian result classes: draws, interval tables, printing.

Intervals are equal-tailed (quantiles ``(1 - ci_prob) / 2`` and
``(1 + ci_prob) / 2`` of the draws); tables carry ``attrs["ci_prob"]`` and
``attrs["ci_kind"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.bayes.validate import check_ci_prob

CI_KIND = "equal-tailed"


def flat_draws(da: xr.DataArray) -> np.ndarray:
    """Draws with chain and draw merged into one leading axis."""
    values = np.asarray(da.transpose("chain", "draw", ...).values)
    return values.reshape((-1,) + values.shape[2:])


def interval_table(draws: np.ndarray, index, ci_prob: float) -> pd.DataFrame:
    """mean, sd, lower, upper of (S, ...) draws, one row per trailing element.

    Raises
    ------
    ArgumentError
        When ``ci_prob`` is not a number strictly between 0 and 1 (checked here
        too, so that every table built from draws refuses it).
    """
    ci_prob = check_ci_prob(ci_prob)
    flat = draws.reshape(draws.shape[0], -1)
    tail = (1.0 - ci_prob) / 2.0
    lower, upper = np.quantile(flat, [tail, 1.0 - tail], axis=0)
    table = pd.DataFrame(
        {"mean": flat.mean(0), "sd": flat.std(0, ddof=1), "lower": lower, "upper": upper},
        index=index,
    )
    table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
    return table


def group_labels(data: pd.DataFrame, groupings: set[str]) -> dict[str, np.ndarray]:
    """Row labels of each grouping factor (``a:b`` joins columns) where computable."""
    out = {}
    for grouping in groupings:
        cols = grouping.split(":")
        if all(c in data.columns for c in cols):
            out[grouping] = data[cols].astype(str).agg(":".join, axis=1).to_numpy()
    return out


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


def formatters(table: pd.DataFrame) -> dict:
    """Column formats of a posterior table: ESS as whole draws (``11210``, not
    ``1.121e+04``), R-hat to 3 decimals, other numbers to 4 significant digits."""
    out = {}
    for column in table.columns:
        name = str(column).lower()
        if name.startswith("ess"):
            out[column] = lambda v: "" if pd.isna(v) else f"{v:.0f}"
        elif name.startswith("r_hat"):
            out[column] = lambda v: "" if pd.isna(v) else f"{v:.3f}"
        else:
            out[column] = _number
    return out


@dataclass(frozen=True)
class BayesSummary:
    """Printable lme4-like summary; ``str()`` gives text, notebooks show HTML."""

    header: str
    varcorr: pd.DataFrame
    fixef: pd.DataFrame
    footer: str

    def _varcorr_shown(self) -> pd.DataFrame:
        vc = self.varcorr.copy()
        for column in ("var1", "var2"):
            if column in vc:
                vc[column] = vc[column].fillna("")
        return vc

    def __str__(self) -> str:
        vc = self._varcorr_shown()
        return "\n".join(
            [
                self.header,
                "",
                "Random effects (SDs and correlations):",
                vc.to_string(index=False, formatters=formatters(vc)),
                "",
                "Fixed effects:",
                self.fixef.to_string(formatters=formatters(self.fixef)),
                "",
                self.footer,
            ]
        )

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "<br>".join(self.header.splitlines())
        vc = self._varcorr_shown()
        return (
            f"<p>{head}</p><h4>Random effects</h4>"
            f"{vc.to_html(index=False, formatters=formatters(vc), na_rep='')}"
            f"<h4>Fixed effects</h4>{self.fixef.to_html(formatters=formatters(self.fixef))}"
            f"<p>{self.footer}</p>"
        )


@dataclass(frozen=True)
class GLMMBayesSummary(BayesSummary):
    """A :class:`BayesSummary` with extra titled tables (zero inflation, dispersion)."""

    extra: tuple[tuple[str, pd.DataFrame], ...] = ()

    def __str__(self) -> str:
        text = super().__str__()
        body, footer = text[: -len(self.footer)], self.footer
        parts = [
            f"{title}\n{table.to_string(formatters=formatters(table))}\n"
            for title, table in self.extra
        ]
        return body + "\n".join(parts) + ("\n" if parts else "") + footer

    def _repr_html_(self) -> str:
        extra = "".join(
            f"<h4>{title}</h4>{table.to_html(formatters=formatters(table))}"
            for title, table in self.extra
        )
        html = super()._repr_html_()
        cut = html.rfind("<p>")
        return html[:cut] + extra + html[cut:]
