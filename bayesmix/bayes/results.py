"""Posterior summaries of a sampled linear mixed model.

Intervals are equal-tailed (quantiles ``(1 - ci_prob) / 2`` and
``(1 + ci_prob) / 2`` of the draws); tables carry ``attrs["ci_prob"]`` and
``attrs["ci_kind"] = "equal-tailed"``. Everything here is numpy on the stored
draws: nothing is recompiled or resampled.

Notation: S draws (chains x draws flattened), m rows to predict, ``r`` group
effects of shape (S, levels, terms).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.bayes.diagnostics import posterior_diagnostics
from bayesmix.bayes.tables import (
    CI_KIND,
    BayesSummary,
    flat_draws,
    group_labels,
    interval_table,
)
from bayesmix.bayes.validate import check_ci_prob, refuse_ddf
from bayesmix.bayes.workflow import BayesWorkflow
from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.spec.design import Design


def _infos(design: Design):
    from bayesmix.bayes.graph_parts import block_infos

    return block_infos(design)


@dataclass(frozen=True)
class BayesResult(BayesWorkflow):
    """Posterior draws of a Gaussian linear mixed model and their summaries.

    Attributes
    ----------
    design : Design
    idata : xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data`` and (usually)
        ``log_likelihood`` groups.
    priors : mapping
        The priors used (defaults merged with overrides).
    sampler : str
    timing : dict
        ``compile_s`` and ``sample_s`` wall times (NaN where not separable)
        and the ``target_accept`` used.
    model : object, optional
        The unfitted model, when the sampler was given it; :meth:`save`
        stores its constructor arguments (else they are read off ``design``).

    Notes
    -----
    :meth:`save` writes one file that :func:`bayesmix.load` reads without
    running code from it. Results also pickle (for multiprocessing, joblib,
    ``copy.deepcopy``), but unpickling runs code: unpickle trusted files only.
    """

    design: Design
    idata: Any = field(repr=False)
    priors: Mapping = field(repr=False)
    sampler: str = "nutpie"
    timing: Mapping[str, float] = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ tables
    def _posterior(self):
        return self.idata["posterior"]

    def _parameter_draws(self) -> dict[str, np.ndarray]:
        """Named scalar parameters as (chain, draw) arrays (fixef, SDs, cors, sigma)."""
        post = self._posterior()
        out: dict[str, np.ndarray] = {}
        beta = np.asarray(post["beta"].transpose("chain", "draw", ...).values)
        for j, name in enumerate(self.design.fixed_terms):
            out[name] = beta[..., j]
        for block, info in zip(self.design.blocks, _infos(self.design), strict=True):
            sd = np.asarray(post[info.sd_name].transpose("chain", "draw", ...).values)
            for k, key in enumerate(info.sd_keys):
                out[key] = sd[..., k]
            if info.cor_key is not None:
                cor = np.asarray(post[info.cor_name].transpose("chain", "draw", ...).values)
                for i in range(block.n_terms):
                    for j in range(i + 1, block.n_terms):
                        term_i, term_j = block.terms[i], block.terms[j]
                        out[f"cor({term_i},{term_j}|{info.tag})"] = cor[..., j, i]
        if "sigma" in post:  # GLMMs have none
            out["sigma"] = np.asarray(post["sigma"].transpose("chain", "draw").values)
        return out

    def diagnostics(self) -> dict[str, Any]:
        """Divergences, max R-hat and min bulk ESS (over all parameters incl. group effects).

        Returns a dict with ``divergences``, ``max_r_hat``, ``min_ess_bulk``,
        ``min_ess_parameter`` and ``table`` (r_hat, ess_bulk per parameter).

        Computed once per result and kept (seconds each time on InstEval's 4,134
        parameters; the draws never change). The cache lives in the instance
        ``__dict__``, not in a field: it travels with pickles and copies, while
        :meth:`save` stores only the draws. Each call returns its own table copy.
        """
        cached = self.__dict__.get("_diagnostics_cache")
        if cached is None:
            cached = self._compute_diagnostics()
            # frozen dataclass: the cache is not a field (not compared, not saved)
            object.__setattr__(self, "_diagnostics_cache", cached)
        return {**cached, "table": cached["table"].copy()}

    def _compute_diagnostics(self) -> dict[str, Any]:
        post = self._posterior()
        effects = [
            (info.tag, post[info.r_name], info.level_dim, info.term_dim)
            for info in _infos(self.design)
        ]
        diverging = np.asarray(self.idata["sample_stats"]["diverging"].values)
        return posterior_diagnostics(self._parameter_draws(), effects, diverging)

    def fixef(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Fixed effects: mean, sd, lower, upper, r_hat, ess_bulk per coefficient."""
        check_ci_prob(ci_prob)
        beta = np.asarray(self._posterior()["beta"].transpose("chain", "draw", ...).values)
        table = interval_table(
            beta.reshape(-1, beta.shape[-1]), list(self.design.fixed_terms), ci_prob
        )
        diag = self.diagnostics()["table"]
        table["r_hat"] = diag.loc[table.index, "r_hat"].to_numpy()
        table["ess_bulk"] = diag.loc[table.index, "ess_bulk"].to_numpy()
        return table

    def ranef(self, ci_prob: float = 0.95) -> dict[str, pd.DataFrame]:
        """Group effects by grouping factor, rows (level, term): mean, sd, lower, upper."""
        check_ci_prob(ci_prob)
        parts: dict[str, list[pd.DataFrame]] = {}
        post = self._posterior()
        for block, info in zip(self.design.blocks, _infos(self.design), strict=True):
            draws = flat_draws(post[info.r_name])
            index = pd.MultiIndex.from_product(
                [[str(level) for level in block.levels], list(block.terms)], names=["level", "term"]
            )
            parts.setdefault(block.grouping, []).append(interval_table(draws, index, ci_prob))
        out = {}
        for grouping, tables in parts.items():
            table = pd.concat(tables) if len(tables) > 1 else tables[0]
            table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
            out[grouping] = table
        return out

    def varcorr(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """SDs and correlations in lme4's ``as.data.frame(VarCorr)`` long layout."""
        check_ci_prob(ci_prob)
        params = self._parameter_draws()
        rows, draws = [], []
        seen: dict[str, int] = {}
        for block, info in zip(self.design.blocks, _infos(self.design), strict=True):
            seen[block.grouping] = seen.get(block.grouping, 0) + 1
            grp = (
                block.grouping
                if seen[block.grouping] == 1
                else f"{block.grouping}.{seen[block.grouping] - 1}"
            )
            for term, key in zip(block.terms, info.sd_keys, strict=True):
                rows.append((grp, term, None))
                draws.append(params[key].ravel())
            if info.cor_key is not None:
                for i in range(block.n_terms):
                    for j in range(i + 1, block.n_terms):
                        rows.append((grp, block.terms[i], block.terms[j]))
                        draws.append(
                            params[f"cor({block.terms[i]},{block.terms[j]}|{info.tag})"].ravel()
                        )
        if "sigma" in params:
            rows.append(("Residual", None, None))
            draws.append(params["sigma"].ravel())
        stats = interval_table(np.stack(draws, axis=1), None, ci_prob)
        table = pd.DataFrame(rows, columns=["grp", "var1", "var2"], dtype=object)  # None stays None
        table = pd.concat([table, stats.reset_index(drop=True)], axis=1)
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
        return table

    def summary(self, ci_prob: float = 0.95, ddf: Any = None) -> BayesSummary:
        """lme4-like summary with posterior means, SDs and intervals (``ddf``: refused)."""
        refuse_ddf(ddf)
        check_ci_prob(ci_prob)
        post = self._posterior()
        diag = self.diagnostics()
        pct = f"{100 * ci_prob:g}%"
        header = "\n".join(
            [
                f"Bayesian linear mixed model (NUTS, {self.sampler})",
                f"Formula: {self.design.formula}",
                f"Draws: {post.sizes['chain']} chains x {post.sizes['draw']}; "
                f"posterior mean, sd and {pct} equal-tailed interval",
            ]
        )
        groups = ", ".join(f"{b.grouping}, {b.n_levels}" for b in self.design.blocks)
        footer = (
            f"Number of obs: {self.design.n_obs}, groups: {groups}\n"
            f"Diagnostics: {diag['divergences']} divergences, max R-hat "
            f"{diag['max_r_hat']:.3f}, min bulk ESS {diag['min_ess_bulk']:.0f}"
        )
        vc = self.varcorr(ci_prob).rename(
            columns={"lower": f"lower {pct}", "upper": f"upper {pct}"}
        )
        fe = self.fixef(ci_prob).rename(columns={"lower": f"lower {pct}", "upper": f"upper {pct}"})
        return BayesSummary(header, vc, fe, footer)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    # -------------------------------------------------------------- prediction
    def _arrays(self, new=None) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """X and per-block (codes, Z) of the fitted rows or of encoded new data."""
        if new is None:
            return self.design.X, [(b.codes, b.Z) for b in self.design.blocks]
        return np.asarray(new.X), [(np.asarray(c), np.asarray(z)) for c, z in new.blocks]

    def _mu_draws(
        self,
        X: np.ndarray,
        blocks: list[tuple[np.ndarray, np.ndarray]],
        *,
        include_random: bool = True,
        draw_slice: slice = slice(None),
        rng: np.random.Generator | None = None,
        labels: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Linear predictor draws (S, m) for rows given by X and block arrays."""
        post = self._posterior()
        mu = flat_draws(post["beta"])[draw_slice] @ np.asarray(X, dtype=float).T
        if not include_random:
            return mu
        for (codes, Z), block, info in zip(
            blocks, self.design.blocks, _infos(self.design), strict=True
        ):
            codes = np.asarray(codes)
            r = flat_draws(post[info.r_name])[draw_slice]  # (S, levels, k)
            seen = codes >= 0
            effects = np.zeros((r.shape[0], codes.shape[0], r.shape[2]))
            effects[:, seen] = r[:, codes[seen]]
            if not seen.all():
                row_labels = (labels or {}).get(block.grouping)
                row_labels = np.arange(codes.size) if row_labels is None else row_labels
                effects[:, ~seen] = self._new_level_effects(
                    info, draw_slice, rng or np.random.default_rng(), row_labels[~seen]
                )
            mu += np.einsum("snk,nk->sn", effects, np.asarray(Z, dtype=float))
        return mu

    def _new_level_effects(self, info, draw_slice, rng, row_labels) -> np.ndarray:
        """Effects of unseen levels drawn from each draw's population distribution.

        Rows sharing a label share one effect per draw.
        """
        post = self._posterior()
        sd = flat_draws(post[info.sd_name])[draw_slice]  # (S, k)
        if info.cor_key is not None:
            cor = flat_draws(post[info.cor_name])[draw_slice]
            cov = cor * sd[:, :, None] * sd[:, None, :]
            chol = np.linalg.cholesky(cov + 1e-12 * np.eye(cov.shape[-1]))
        else:
            chol = np.einsum("sk,kj->skj", sd, np.eye(sd.shape[1]))
        uniq, inverse = np.unique(np.asarray(row_labels).astype(str), return_inverse=True)
        z = rng.standard_normal((sd.shape[0], uniq.size, sd.shape[1]))
        return np.einsum("skj,suj->suk", chol, z)[:, inverse]

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        kind: Literal["mean", "posterior_predictive"] = "mean",
        ci_prob: float = 0.95,
        draws: bool = False,
        random_seed: int | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Posterior predictions of the mean response or of new observations.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; default the fitted rows. Levels not seen in fitting
            get group effects drawn from the population distribution implied by
            each posterior draw (a ``DataWarning`` says so).
        include_random : bool
            Add the group effects (``False``: population-level predictions).
        kind : {"mean", "posterior_predictive"}
            ``"mean"``: the linear predictor mu. ``"posterior_predictive"``: mu
            plus Normal(0, sigma) noise.
        ci_prob : float
            Probability of the equal-tailed interval.
        draws : bool
            Return the raw (S, m) array of draws instead of the summary table.
        random_seed : int, optional
            Seed for new-level effects and predictive noise.
        """
        check_ci_prob(ci_prob, random_seed=random_seed)
        if kind not in ("mean", "posterior_predictive"):
            raise ArgumentError(f"kind must be 'mean' or 'posterior_predictive', not {kind!r}.")
        rng = np.random.default_rng(random_seed)
        new, labels, index = None, {}, self.design.data.index
        if newdata is not None:
            new = self.design.evaluate_new_data(newdata)
            index = newdata.index
            unseen = [
                b.grouping
                for b, (codes, _) in zip(self.design.blocks, new.blocks, strict=True)
                if np.any(np.asarray(codes) < 0)
            ]
            if include_random and unseen:
                warn(
                    f"New levels of {', '.join(sorted(set(unseen)))}: their group effects are "
                    "drawn from the estimated population distribution (predictions stay valid, "
                    "with wider intervals).",
                    DataWarning,
                )
            labels = group_labels(newdata, {b.grouping for b in self.design.blocks})
        X, blocks = self._arrays(new)
        sigma = flat_draws(self._posterior()["sigma"])
        offset = self.design.offset_or_zero if new is None else new.offset_or_zero
        # prior weights are known for the fitted rows only; new rows get weight 1
        has_w = new is None and self.design.weights is not None
        sqrt_w = np.sqrt(self.design.weights) if has_w else np.ones(X.shape[0])

        def rows_draws(rows: slice) -> np.ndarray:
            mu = offset[rows] + self._mu_draws(
                X[rows],
                [(codes[rows], Z[rows]) for codes, Z in blocks],
                include_random=include_random,
                rng=rng,
                labels={g: v[rows] for g, v in labels.items()},
            )
            if kind == "posterior_predictive":
                mu += sigma[:, None] / sqrt_w[rows] * rng.standard_normal(mu.shape)
            return mu

        if draws:
            return rows_draws(slice(None))
        # summaries row-chunk by row-chunk: S x m draws may not fit in memory
        chunk = max(1, int(4_000_000 // sigma.size))
        tables = [
            interval_table(rows_draws(slice(a, a + chunk)), index[a : a + chunk], ci_prob)
            for a in range(0, X.shape[0], chunk)
        ]
        table = pd.concat(tables) if len(tables) > 1 else tables[0]
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND, kind=kind)
        return table

    def fitted(self) -> np.ndarray:
        """Posterior mean of mu (fixed plus group effects) for every fitted row."""
        X, blocks = self._arrays()
        n_draws = flat_draws(self._posterior()["sigma"]).size
        total = np.zeros(X.shape[0])
        for start in range(0, n_draws, 200):
            total += self._mu_draws(X, blocks, draw_slice=slice(start, start + 200)).sum(axis=0)
        return total / n_draws + self.design.offset_or_zero

    def residuals(self, kind: Literal["response", "pearson"] = "response") -> np.ndarray:
        """``y - fitted()``; ``"pearson"`` divides by the posterior mean of sigma."""
        res = np.asarray(self.design.y, dtype=float) - self.fitted()
        if kind == "pearson":
            if self.design.weights is not None:
                res = res * np.sqrt(self.design.weights)
            return res / float(self._posterior()["sigma"].mean())
        if kind != "response":
            raise ArgumentError(f"kind must be 'response' or 'pearson', not {kind!r}.")
        return res

    def loo(self):
        """PSIS-LOO cross-validation (``arviz.loo``) on the pointwise log-likelihood."""
        import arviz as az

        if "log_likelihood" in self.idata.children:
            return az.loo(self.idata, var_name="y")
        tree = self.idata.copy()
        from bayesmix.bayes.loglik import pointwise_loglik

        tree["log_likelihood"] = xr.Dataset({"y": pointwise_loglik(self)})
        return az.loo(tree, var_name="y")

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to one file that :func:`bayesmix.load` reads back.

        The file (a zip, see :mod:`bayesmix.io`) holds the model's formula,
        options and data, the priors and the posterior (netCDF); loading runs no
        code from it and does not resample. User functions (``functions=``,
        ``mean=``) are stored by name only: pass them again to ``load``.
        """
        from bayesmix.io import save

        save(self, path)
