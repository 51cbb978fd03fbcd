"""Helpers shared by the Bayesian result classes: draws, interval tables, printing.

Intervals are equal-tailed (quantiles ``(1 - ci_prob) / 2`` and
``(1 + ci_prob) / 2`` of the draws); tables carry ``attrs["ci_prob"]`` and
``attrs["ci_kind"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class BayesSummary:
    """Printable lme4-like summary; ``str()`` gives text, notebooks show HTML."""

    header: str
    varcorr: pd.DataFrame
    fixef: pd.DataFrame
    footer: str

    def __str__(self) -> str:
        vc = self.varcorr.copy()
        vc["var2"] = vc["var2"].fillna("")
        vc["var1"] = vc["var1"].fillna("")
        return "\n".join(
            [
                self.header,
                "",
                "Random effects (SDs and correlations):",
                vc.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
                "",
                "Fixed effects:",
                self.fixef.to_string(float_format=lambda v: f"{v:.4g}"),
                "",
                self.footer,
            ]
        )

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "<br>".join(self.header.splitlines())
        return (
            f"<p>{head}</p><h4>Random effects</h4>{self.varcorr.to_html(index=False)}"
            f"<h4>Fixed effects</h4>{self.fixef.to_html()}<p>{self.footer}</p>"
        )


@dataclass(frozen=True)
class GLMMBayesSummary(BayesSummary):
    """A :class:`BayesSummary` with extra titled tables (zero inflation, dispersion)."""

    extra: tuple[tuple[str, pd.DataFrame], ...] = ()

    def __str__(self) -> str:
        text = super().__str__()
        body, footer = text[: -len(self.footer)], self.footer
        parts = [
            f"{title}\n{table.to_string(float_format=lambda v: f'{v:.4g}')}\n"
            for title, table in self.extra
        ]
        return body + "\n".join(parts) + ("\n" if parts else "") + footer

    def _repr_html_(self) -> str:
        extra = "".join(f"<h4>{title}</h4>{table.to_html()}" for title, table in self.extra)
        html = super()._repr_html_()
        cut = html.rfind("<p>")
        return html[:cut] + extra + html[cut:]
