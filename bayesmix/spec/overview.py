"""A model's overview as rows of (label, text), shown as an HTML table in notebooks.

The text ``repr`` of a model is one line; in a notebook the same facts read
better as a table: the formula, the observations, the fixed-effect columns,
each random block (grouping, levels, terms, covariance) and what the model
adds (family and link, zero inflation, residual structures).
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["design_rows", "html_table"]


def design_rows(design: Any) -> list[tuple[str, str]]:
    """Formula, observations, fixed effects and random blocks of ``design``."""
    rows = [
        ("Formula", design.formula),
        ("Observations", f"{design.n_obs:,}"),
        ("Fixed effects", f"{design.n_fixed}: " + ", ".join(design.fixed_terms)),
    ]
    for block in design.blocks:
        kind = "correlated" if block.covariance == "unstructured" and block.n_terms > 1 else ""
        kind = "uncorrelated" if block.covariance == "diagonal" and block.n_terms > 1 else kind
        terms = ", ".join(block.terms) + (f" ({kind})" if kind else "")
        rows.append((f"Random: {block.grouping}", f"{block.n_levels:,} levels; {terms}"))
    if not design.blocks:
        rows.append(("Random effects", "none"))
    return rows


def html_table(title: str, rows: list[tuple[str, str]]) -> str:
    """``rows`` as a two-column HTML table under ``title`` (all text escaped)."""
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
        f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
        for label, text in rows
    )
    return f"<div><strong>{html.escape(title)}</strong><table>{body}</table></div>"
