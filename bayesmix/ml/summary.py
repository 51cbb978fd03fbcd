"""Printed summary of an ML/REML fit in lme4's layout (text and HTML)."""

from __future__ import annotations

import dataclasses
import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesmix.ml.rformat import (
    decimals_needed,
    format_column,
    format_fixed,
    format_pvalue,
    render_table,
    zapsmall,
)

if TYPE_CHECKING:
    from bayesmix.ml.results import MLResult


def convention_line(result: MLResult) -> str:
    """The header line that says whose conventions the numbers follow."""
    if result.conventions == "nlme":
        return (
            "Conventions: nlme's (BIC of a REML fit with log(n - p); SEs of an ML fit "
            "scaled by sqrt(n/(n - p)))"
        )
    return "Conventions: lme4's (BIC with log(n); SEs from vcov, unscaled)"


class MLSummary:
    """Text and HTML summary of an :class:`MLResult`, laid out like lme4's."""

    #: Column heads of the fixed-effects table (GLMMs: z value and Pr(>|z|)).
    fixed_header = ["", "Estimate", "Std. Error", "t value"]

    def __init__(self, result: MLResult, coefficients: pd.DataFrame | None = None):
        self.result = result
        # lmerTest's table (bayesmix.inference.tables.coef_table) when summary(ddf=) asked
        self.coefficients = coefficients
        if coefficients is not None:
            self.fixed_header = ["", "Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]

    def _header(self) -> list[str]:
        r = self.result
        kind = "REML" if r.method == "REML" else "maximum likelihood"
        if r.design.blocks:
            model = "Linear mixed model"
        elif getattr(r, "residual_structure", None) is not None:
            model = "Generalized least squares"
        else:
            model = "Linear model (no random effects)"
        lines = [f"{model} fit by {kind}", f"Formula: {r.design.formula}", convention_line(r)]
        if self.coefficients is not None:
            method = self.coefficients.attrs.get("ddf", "")
            lines.append(f"t-tests use {method}'s method for the degrees of freedom")
        lines.append("")
        if r.method == "REML" and r.conventions == "nlme":  # nlme prints all three for REML
            cells = [f"{v:.1f}" for v in (r.aic, r.bic, r.loglik)]
            lines.append(render_table(["AIC", "BIC", "logLik"], [cells], "rrr"))
        elif r.method == "REML":
            lines.append(f"REML criterion at convergence: {r.reml_criterion:.1f}")
        else:
            values = [r.aic, r.bic, r.loglik, r.deviance, float(r.df_resid)]
            cells = [f"{v:.1f}" for v in values[:4]] + [str(r.df_resid)]
            names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
            lines.append(render_table(names, [cells], "rrrrr"))
        return lines

    def _residual_lines(self) -> list[str]:
        q = np.quantile(self.result.residuals("pearson"), [0, 0.25, 0.5, 0.75, 1.0])
        cells = format_column(zapsmall(q, digits=5), digits=4)  # lme4's .prt.resids
        return [
            "Scaled residuals:",
            render_table(["Min", "1Q", "Median", "3Q", "Max"], [cells], "rrrrr"),
        ]

    def random_table(self) -> list[list[str]]:
        """Rows of lme4's random-effects table (Groups, Name, Variance, Std.Dev., Corr...)."""
        r = self.result
        vc = r.varcorr()
        sd_rows = vc[vc["var2"].isna()]
        variance = format_column(sd_rows["vcov"].to_numpy(), digits=4)
        stddev = format_column(sd_rows["sdcor"].to_numpy(), digits=4)
        max_k = max([b.n_terms for b in r.design.blocks if b.covariance == "unstructured"] + [1])
        rows, position, last_group = [], 0, None
        for grp, term in zip(sd_rows["grp"], sd_rows["var1"]):
            corr = [""] * (max_k - 1)
            if grp != "Residual":
                pairs = vc[(vc["grp"] == grp) & (vc["var2"] == term)]
                corr[: len(pairs)] = [f"{c:.2f}" for c in pairs["sdcor"]]
            shown = "" if grp == last_group else grp
            name = "" if pd.isna(term) else str(term)
            rows.append([shown, name, variance[position], stddev[position], *corr])
            last_group, position = grp, position + 1
        return rows

    def fixed_table(self) -> list[list[str]]:
        fe = self.result.fixef() if self.coefficients is None else self.coefficients
        se = fe["std_error"].to_numpy()
        decimals = max([decimals_needed(v, 4) for v in se] + [1])
        est = format_fixed(fe["estimate"].to_numpy(), decimals)
        ses = format_fixed(se, decimals)
        tvals = format_column(fe["t_value"].to_numpy(), digits=4)
        rows = [[name, e, s, t] for name, e, s, t in zip(fe.index, est, ses, tvals)]
        if self.coefficients is not None:
            dfs = format_column(fe["df"].to_numpy(), digits=4)
            pvalues = [format_pvalue(v) for v in fe["p_value"]]
            rows = [[r[0], r[1], r[2], d, r[3], pv] for r, d, pv in zip(rows, dfs, pvalues)]
        return rows

    def __str__(self) -> str:
        r = self.result
        lines = self._header() + [""] + self._residual_lines() + ["", "Random effects:"]
        random_rows = self.random_table()
        ncorr = len(random_rows[0]) - 4
        header = ["Groups", "Name", "Variance", "Std.Dev."] + (
            ["Corr"] + [""] * (ncorr - 1) if ncorr else []
        )
        table = render_table(header, random_rows, "llrr" + "r" * ncorr)
        lines += [" " + line for line in table.splitlines()]
        counts = [f"{g}, {n}" for g, n in self._group_counts().items()]
        lines.append(
            f"Number of obs: {r.nobs}" + (", groups:  " + "; ".join(counts) if counts else "")
        )
        lines += self.structure_lines()
        lines += ["", "Fixed effects:"]
        lines.append(
            render_table(
                self.fixed_header, self.fixed_table(), "l" + "r" * (len(self.fixed_header) - 1)
            )
        )
        if not r.converged:
            lines += ["", f"Optimiser did not converge: {r.estimates.message}"]
        if r.singular:
            lines += ["", self._singular_line()]
        return "\n".join(lines)

    def structure_lines(self) -> list[str]:
        """nlme's blocks for the correlation structure and the variance function."""
        structure = getattr(self.result, "residual_structure", None)
        if structure is None:
            return []
        table = self.result.residual_parameters()
        lines: list[str] = []
        for part, title in (
            (structure.correlation, "Correlation structure"),
            (structure.variance, "Variance function"),
        ):
            if part is None:
                continue
            text = part.spec.nlme()
            group = getattr(part, "group_name", None)
            if group and part.spec.group is None:  # show the grouping the default picked
                text = dataclasses.replace(part.spec, group=group).nlme()
            lines += ["", f"{title}: {text}"]
            rows = table[table["structure"] == part.spec.nlme()]
            if len(rows):
                cells = [format_column(rows["estimate"].to_numpy(), digits=5)]
                lines.append(render_table(list(rows["parameter"]), cells, "r" * len(rows)))
            else:
                lines.append(" (no parameters)")
        return lines

    def _singular_line(self) -> str:
        """Which variance is ~0 or which correlation is +-1 (generic if unknown)."""
        from bayesmix.ml.checks import singular_message

        design = self.result.design
        try:
            kinds = [block.covariance for block in design.blocks]
            message = singular_message(self.result.theta, design, kinds)
        except (ValueError, IndexError):  # a design without matching theta (hand-built)
            message = None
        if message is None:
            return (
                "boundary (singular) fit: a variance is estimated as zero or a correlation as +-1"
            )
        return message.split(". The fit is usable")[0]

    def _group_counts(self) -> dict[str, int]:
        counts = {b.grouping: b.n_levels for b in self.result.design.blocks}
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))  # lme4: most levels first

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """The text itself, in a monospace block: notebooks show everything the text shows
        (residual quantiles, group counts, singular-fit and convergence notes), rounded and
        aligned as R prints it."""
        return f"<pre>{html.escape(str(self))}</pre>"
