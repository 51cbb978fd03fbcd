"""The posterior workflow around a fitted Bayesian model (a mixin of ``BayesResult``).

* :meth:`BayesWorkflow.sample_posterior_predictive`: replicates of the data
  as an ArviZ ``posterior_predictive`` group (for ``bmx.plot_ppc``);
* :meth:`BayesWorkflow.coef`: fixed plus group effects per level (lme4's ``coef``);
* :meth:`BayesWorkflow.r2`: Bayesian R² (Gelman, Goodrich, Gabry and Vehtari
  2019), conditional and marginal;
* :meth:`BayesWorkflow.hypothesis`: posterior probabilities of linear
  statements about parameters (:mod:`bayesmix.bayes.hypothesis`);
* :meth:`BayesWorkflow.residual_draws`: the realized residuals ``e_s`` of
  each draw (Gelman, Meng and Stern 1996), raw or divided by the draw's SD of y.

Notation
--------
S draws; n fitted rows; ``ypred_s`` the expected response under draw s
(``posterior_epred`` in brms), ``e_s = y - ypred_s``; ``sd_s`` the SD of each
row's y under draw s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesmix.bayes.tables import CI_KIND, flat_draws, interval_table
from bayesmix.bayes.validate import check_ci_prob

__all__ = ["BayesWorkflow"]

# draws per chunk when a computation runs over all draws and rows
_CHUNK_VALUES = 4_000_000


class BayesWorkflow:
    """Posterior predictive replicates, ``coef``, R² and hypotheses of a posterior."""

    def sample_posterior_predictive(self, random_seed: int | None = None) -> Any:
        """Replicates of the fitted rows from every posterior draw.

        Returns
        -------
        xarray.DataTree
            A copy of ``idata`` with the groups ``posterior_predictive`` (``y``,
            dims ``chain, draw, obs``) and ``observed_data``, ready for ArviZ's
            ``plot_ppc_*`` functions and ``bmx.plot_ppc``. Binomial responses
            with trials are proportions, as ``design.y``.
        """
        from bayesmix.bayes.predictive import posterior_predictive_tree
        from bayesmix.bayes.validate import check_seed

        check_seed(random_seed)
        return posterior_predictive_tree(self, random_seed)

    # ------------------------------------------------------------------ coef
    def coef(self, ci_prob: float = 0.95) -> dict[str, pd.DataFrame]:
        """Per-level coefficients, fixed plus group effects, like lme4's ``coef``.

        One table per grouping factor, rows ``(level, coefficient)`` for every
        fixed-effect coefficient (a random term without a fixed counterpart is
        added with a fixed part of 0), columns mean, sd, lower, upper of the
        draws of ``beta + b_level``.
        """
        check_ci_prob(ci_prob)
        post = self.idata["posterior"]
        beta = flat_draws(post["beta"])  # (S, p)
        fixed = list(self.design.fixed_terms)
        from bayesmix.bayes.graph_parts import block_infos

        by_grouping: dict[str, list] = {}
        for block, info in zip(self.design.blocks, block_infos(self.design), strict=True):
            by_grouping.setdefault(block.grouping, []).append((block, info))
        out = {}
        for grouping, parts in by_grouping.items():
            extra = [t for block, _ in parts for t in block.terms if t not in fixed]
            names = list(dict.fromkeys(extra)) + fixed
            levels = [str(level) for level in parts[0][0].levels]
            total = np.zeros((beta.shape[0], len(levels), len(names)))
            for j, name in enumerate(fixed):
                total[:, :, names.index(name)] += beta[:, j][:, None]
            for block, info in parts:
                r = flat_draws(post[info.r_name])  # (S, levels, k)
                for k, term in enumerate(block.terms):
                    total[:, :, names.index(term)] += r[:, :, k]
            index = pd.MultiIndex.from_product([levels, names], names=["level", "coefficient"])
            table = interval_table(total.reshape(total.shape[0], -1), index, ci_prob)
            table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
            out[grouping] = table
        return out

    # ------------------------------------------------------------------ R²
    def _epred(self, draw_slice: slice, include_random: bool) -> np.ndarray:
        """Expected responses ``ypred_s`` of the fitted rows, (S, n), on y's scale."""
        X, blocks = self._arrays()
        mu = self._mu_draws(X, blocks, include_random=include_random, draw_slice=draw_slice)
        return mu + self.design.offset_or_zero

    def _r2_scale(self) -> np.ndarray | None:
        """Row multipliers putting y and ypred on the data's count scale (binomial trials)."""
        return None

    def r2(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Bayesian R² (Gelman et al. 2019), brms's ``bayes_R2``.

        For each draw, ``R²_s = var(ypred_s) / (var(ypred_s) + var(y - ypred_s))``
        with ``ypred_s`` the expected response of each fitted row: with the group
        effects (``conditional``) and without them (``marginal``, brms's
        ``re_formula = NA``). Binomial responses with trials are counts, as
        brms's. Returns rows ``conditional`` and ``marginal``, columns mean,
        sd, lower, upper.
        """
        check_ci_prob(ci_prob)
        y = np.asarray(self.design.y, dtype=float)
        scale = self._r2_scale()
        if scale is not None:
            y = y * scale
        post = self.idata["posterior"]
        n_draws = int(post.sizes["chain"] * post.sizes["draw"])
        chunk = max(1, _CHUNK_VALUES // max(y.size, 1))
        rows = {}
        for label, include_random in (("conditional", True), ("marginal", False)):
            values = []
            for start in range(0, n_draws, chunk):
                ypred = self._epred(slice(start, start + chunk), include_random)
                if scale is not None:
                    ypred = ypred * scale
                fit_var = ypred.var(axis=1, ddof=1)
                res_var = (y[None, :] - ypred).var(axis=1, ddof=1)
                values.append(fit_var / (fit_var + res_var))
            rows[label] = np.concatenate(values)
        table = interval_table(np.stack(list(rows.values()), axis=1), list(rows), ci_prob)
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
        return table

    # ------------------------------------------------------------------ residuals
    def _response_sd(self, draw_slice: slice) -> np.ndarray:
        """``sd_s`` of the fitted rows, (S, n) or (S, 1): sigma over the root prior weight."""
        sigma = flat_draws(self.idata["posterior"]["sigma"])[draw_slice][:, None]
        weights = self.design.weights
        return sigma if weights is None else sigma / np.sqrt(np.asarray(weights))[None, :]

    def residual_draws(self, kind: str = "response", draws: int | None = None) -> np.ndarray:
        """Realized residuals of the fitted rows under each posterior draw.

        ``residuals()`` gives one vector, at the posterior mean; these are its
        uncertainty: ``e_s = y - ypred_s`` for every draw s (``"response"``), or
        ``e_s / sd_s`` with ``sd_s`` each row's SD of y under that draw
        (``"pearson"``: sigma and the residual structure; a GLMM's family
        variance, dispersion and zero inflation).

        Parameters
        ----------
        kind : {"response", "pearson"}
        draws : int, optional
            Use about this many draws, evenly spaced over the chains (all by
            default; the array holds draws x rows values).

        Returns
        -------
        ndarray, shape (draws, n)
        """
        from bayesmix.bayes.validate import check_choice, check_count

        check_choice(kind, "kind", ("response", "pearson"))
        post = self.idata["posterior"]
        n_draws = int(post.sizes["chain"] * post.sizes["draw"])
        step = 1 if draws is None else max(1, n_draws // check_count(draws, "draws", 1))
        chosen = slice(0, n_draws, step) if draws is None else slice(0, step * draws, step)
        y = np.asarray(self.design.y, dtype=float)
        out = y[None, :] - self._epred(chosen, True)
        if kind == "pearson":
            out /= self._response_sd(chosen)
        return out

    # ------------------------------------------------------------------ hypotheses
    def hypothesis(self, statements: str | list[str], ci_prob: float = 0.95) -> pd.DataFrame:
        """Posterior probabilities of linear statements about the parameters (brms's).

        Parameters
        ----------
        statements : str or list of str
            Such as ``"Days > 5"``, ``"Intercept + 10 * Days < 400"``,
            ``"sd(Days|Subject) > 5"`` or ``"Sex[Female] = 0"``: parameter names
            as ``summary()`` prints them (back-quotes allowed), numbers,
            ``+ - * /``, parentheses and one of ``<``, ``>``, ``=``
            (see :mod:`bayesmix.bayes.hypothesis`).
        ci_prob : float
            Probability of the equal-tailed interval of ``lhs - rhs``.

        Returns
        -------
        DataFrame
            Indexed by the statement: ``estimate`` (posterior mean of
            ``lhs - rhs``), ``est_error`` (its SD), ``lower``, ``upper``,
            ``post_prob`` (the statement's posterior probability; directed
            statements), ``evid_ratio`` (``post_prob / (1 - post_prob)``) and
            ``star`` (``"*"`` when the interval excludes 0).
        """
        from bayesmix.bayes.hypothesis import hypothesis_table
        from bayesmix.errors import ArgumentError

        check_ci_prob(ci_prob)
        listed = [statements] if isinstance(statements, str) else statements
        if not isinstance(listed, list | tuple) or not listed:
            raise ArgumentError(
                "statements must be a hypothesis string such as 'Days > 5' or a list of them, "
                f"not {statements!r}."
            )
        draws = {name: np.ravel(v) for name, v in self._parameter_draws().items()}
        return hypothesis_table(list(listed), draws, ci_prob)
