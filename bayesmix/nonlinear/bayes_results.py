"""Posterior summaries of a sampled nonlinear mixed model: :class:`NLBayesResult`.

A :class:`~bayesmix.bayes.results.BayesResult` whose ``design`` is the
linear view of the model (stacked fixed effects, joint random-effects blocks),
so ``fixef``, ``ranef``, ``varcorr``, ``diagnostics`` and ``loo`` are
inherited unchanged; everything that needs the mean response goes through the
nonlinear mean function, evaluated with numpy on the stored draws (nothing is
recompiled or resampled). Adds :meth:`NLBayesResult.coef` (per-level
parameters, the Bayesian analogue of nlme's ``coef``) and
:meth:`NLBayesResult.phi` (per-row parameter values).

"Population" predictions (``include_random=False``) are the curves of a
typical individual (all random effects zero, nlme's level 0), not the mean
over the population, which differs for a nonlinear mean.

Notation: S draws, m rows, ``r`` group effects (S, levels, terms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bayesmix.bayes.results import BayesResult
from bayesmix.bayes.tables import CI_KIND, BayesSummary, flat_draws, group_labels, interval_table
from bayesmix.bayes.validate import check_ci_prob
from bayesmix.errors import DataWarning, warn
from bayesmix.nonlinear.design import NonlinearDesign

__all__ = ["NLBayesResult"]


@dataclass(frozen=True)
class _Rows:
    """Rows to evaluate: per-parameter X, covariates, per-block (codes, Z) and new effects.

    ``offset`` (added to the mean) and ``sqrt_w`` (predictive noise ``sigma /
    sqrt(w)``) are per row; ``None`` means 0 and 1.
    """

    X: tuple[np.ndarray, ...]
    covariates: Mapping[str, np.ndarray]
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...]
    # per block: (row -> unique unseen label index, effects (S, U, k)) or None
    new_effects: tuple[Any, ...] = ()
    offset: np.ndarray | None = None
    sqrt_w: np.ndarray | None = None

    def __getitem__(self, rows: slice) -> _Rows:
        return _Rows(
            tuple(X[rows] for X in self.X),
            {k: np.asarray(v)[rows] for k, v in self.covariates.items()},
            tuple((codes[rows], Z[rows]) for codes, Z in self.blocks),
            tuple(None if e is None else (e[0][rows], e[1]) for e in self.new_effects),
            None if self.offset is None else self.offset[rows],
            None if self.sqrt_w is None else self.sqrt_w[rows],
        )

    @property
    def n_rows(self) -> int:
        return int(self.blocks[0][0].shape[0] if self.blocks else self.X[0].shape[0])


@dataclass(frozen=True)
class NLBayesResult(BayesResult):
    """Posterior draws of a nonlinear mixed model and their summaries.

    Attributes
    ----------
    design : Design
        Linear view of the model (``NonlinearDesign.linear_design()``): fixed
        effects named ``"lKa"`` / ``"lCl:Wt"``, one block per grouping factor.
    idata, priors, sampler, timing
        As in :class:`~bayesmix.bayes.results.BayesResult`.
    nonlinear_design : NonlinearDesign
        The model's design; predictions use its mean function.
    """

    nonlinear_design: NonlinearDesign | None = None

    def __repr__(self) -> str:
        post = self._posterior()
        return (
            f"<NLBayesResult {self.nonlinear_design.formula}: n={self.design.n_obs}, "
            f"{post.sizes['chain']} chains x {post.sizes['draw']} draws ({self.sampler})>"
        )

    # ---------------------------------------------------------------- draws
    def _arrays(self, new=None) -> tuple[_Rows, None]:
        """Fitted rows, or encoded new data (``NonlinearNewData``), as a :class:`_Rows`."""
        nl = self.nonlinear_design
        if new is None:
            rows = _Rows(
                tuple(p.X for p in nl.parameters),
                nl.covariates,
                tuple((b.codes, b.Z) for b in nl.blocks),
                offset=nl.offset,
                sqrt_w=None if nl.weights is None else nl.sqrt_weights,
            )
        else:  # prior weights are known for the fitted rows only: new rows get weight 1
            rows = _Rows(tuple(new.X), new.covariates, tuple(new.blocks), offset=new.offset)
        return rows, None

    def _phi_draws(
        self, rows: _Rows, *, include_random: bool = True, draw_slice: slice = slice(None)
    ) -> dict[str, np.ndarray]:
        """Per-row parameter draws ``{param: (S, m)}``."""
        nl, post = self.nonlinear_design, self._posterior()
        beta = flat_draws(post["beta"])[draw_slice] if nl.n_fixed else None
        n_draws = flat_draws(post["sigma"])[draw_slice].shape[0]
        phi, start = {}, 0
        for par, X in zip(nl.parameters, rows.X, strict=True):
            width = par.X.shape[1]
            phi[par.name] = (
                beta[:, start : start + width] @ np.asarray(X, dtype=float).T
                if width
                else np.zeros((n_draws, rows.n_rows))
            )
            start += width
        if not include_random:
            return phi
        infos = self._infos()
        new_effects = rows.new_effects or (None,) * len(nl.blocks)
        for (codes, Z), block, info, new in zip(
            rows.blocks, nl.blocks, infos, new_effects, strict=True
        ):
            codes = np.asarray(codes)
            seen = codes >= 0
            r = flat_draws(post[info.r_name])[draw_slice]
            effects = np.zeros((n_draws, codes.size, block.n_terms))
            effects[:, seen] = r[:, codes[seen]]
            if not seen.all():
                if new is None:  # pragma: no cover - predict() prepares them
                    raise ValueError("effects of unseen levels were not drawn")
                effects[:, ~seen] = new[1][draw_slice][:, new[0][~seen]]
            for t, name in enumerate(block.params):
                phi[name] = phi[name] + effects[:, :, t] * np.asarray(Z, dtype=float)[:, t]
        return phi

    def _mu_draws(
        self,
        rows: _Rows,
        _unused: Any = None,
        *,
        include_random: bool = True,
        draw_slice: slice = slice(None),
        **_: Any,
    ) -> np.ndarray:
        """Mean-function draws (S, m), offset excluded (``pointwise_loglik`` subtracts it
        from ``y``); the signature follows ``BayesResult._mu_draws``."""
        phi = self._phi_draws(rows, include_random=include_random, draw_slice=draw_slice)
        shape = next(iter(phi.values())).shape
        with np.errstate(all="ignore"):
            mu = self.nonlinear_design.mean(np, phi, rows.covariates)
        return np.broadcast_to(np.asarray(mu, dtype=float), shape).copy()

    def _epred(self, draw_slice: slice, include_random: bool) -> np.ndarray:
        rows = self._arrays()[0]
        mu = self._mu_draws(rows, include_random=include_random, draw_slice=draw_slice)
        return mu + self.nonlinear_design.offset_or_zero

    def _response_sd(self, draw_slice: slice) -> np.ndarray:
        sigma = flat_draws(self._posterior()["sigma"])[draw_slice][:, None]
        nl = self.nonlinear_design
        return sigma if nl.weights is None else sigma / np.asarray(nl.sqrt_weights)[None, :]

    def _infos(self):
        from bayesmix.bayes.graph_parts import block_infos

        return block_infos(self.design)

    def _with_new_effects(self, rows: _Rows, labels: Mapping[str, np.ndarray], rng) -> _Rows:
        """Draw one effect per unseen level (per draw) from the population distribution."""
        new = []
        for (codes, _), block, info in zip(
            rows.blocks, self.nonlinear_design.blocks, self._infos(), strict=True
        ):
            unseen = np.asarray(codes) < 0
            if not unseen.any():
                new.append(None)
                continue
            row_labels = labels.get(block.grouping, np.arange(unseen.size)).astype(str)
            uniq, inverse = np.unique(row_labels, return_inverse=True)
            effects = self._new_level_effects(info, slice(None), rng, uniq)
            new.append((inverse, effects))
        return dataclasses.replace(rows, new_effects=tuple(new))

    def _new_rows(self, newdata: pd.DataFrame | None, include_random: bool, rng) -> _Rows:
        if newdata is None:
            return self._arrays()[0]
        new = self.nonlinear_design.evaluate_new_data(newdata)
        rows = self._arrays(new)[0]
        if include_random and new.new_levels:
            warn(
                f"New levels of {', '.join(new.new_levels)}: their random effects are drawn "
                "from the estimated population distribution (predictions stay valid, with "
                "wider intervals).",
                DataWarning,
            )
        if include_random:
            groupings = {b.grouping for b in self.nonlinear_design.blocks}
            rows = self._with_new_effects(rows, group_labels(newdata, groupings), rng)
        return rows

    # ----------------------------------------------------------------- tables
    def coef(self, ci_prob: float = 0.95) -> dict[str, pd.DataFrame]:
        """Per-level coefficients (fixed plus random effects) with posterior intervals.

        The Bayesian analogue of nlme's ``coef``: for each grouping factor, rows
        ``(level, coefficient)`` for every fixed effect (random terms without a
        fixed effect are added, fixed part 0) with columns mean, sd, lower,
        upper. For Theoph: each subject's lKe, lKa and lCl.
        """
        check_ci_prob(ci_prob)
        post = self._posterior()
        fixed = list(self.design.fixed_terms)
        beta = flat_draws(post["beta"]) if fixed else np.zeros((flat_draws(post["sigma"]).size, 0))
        out = {}
        for block, info in zip(self.nonlinear_design.blocks, self._infos(), strict=True):
            names = [t for t in block.terms if t not in fixed] + fixed
            r = flat_draws(post[info.r_name])  # (S, L, k)
            values = np.zeros(r.shape[:2] + (len(names),))
            for c, name in enumerate(names):
                if name in fixed:
                    values[:, :, c] = beta[:, fixed.index(name), None]
                if name in block.terms:
                    values[:, :, c] += r[:, :, block.terms.index(name)]
            index = pd.MultiIndex.from_product(
                [[str(level) for level in block.levels], names], names=["level", "coefficient"]
            )
            out[block.grouping] = interval_table(values, index, ci_prob)
        return out

    def phi(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        include_random: bool = True,
        ci_prob: float = 0.95,
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Per-row parameter values: rows ``(row, parameter)``; mean, sd, lower, upper.

        ``newdata`` defaults to the fitted rows; unseen levels get effects drawn
        from the population distribution.
        """
        check_ci_prob(ci_prob, random_seed=random_seed)
        rng = np.random.default_rng(random_seed)
        rows = self._new_rows(newdata, include_random, rng)
        phi = self._phi_draws(rows, include_random=include_random)
        index = self.design.data.index if newdata is None else newdata.index
        params = list(phi)
        draws = np.stack([np.broadcast_to(phi[p], phi[params[0]].shape) for p in params], axis=-1)
        rows_index = pd.MultiIndex.from_product([list(index), params], names=["row", "parameter"])
        return interval_table(draws, rows_index, ci_prob)

    def summary(self, ci_prob: float = 0.95) -> BayesSummary:
        """lme4-like summary: posterior means, SDs and intervals (see ``BayesResult.summary``)."""
        base = super().summary(ci_prob)
        nl = self.nonlinear_design
        lines = base.header.splitlines()
        header = [
            f"Bayesian nonlinear mixed model (NUTS, {self.sampler})",
            f"Model: {nl.formula}",
            *(f"  {p.name} ~ {p.formula}" for p in nl.parameters),
            *lines[2:],
        ]
        return dataclasses.replace(base, header="\n".join(header))

    # ------------------------------------------------------------- prediction
    def fitted(self) -> np.ndarray:
        """Posterior mean of the mean response at the fitted rows (random effects, offset)."""
        rows = self._arrays()[0]
        n_draws = flat_draws(self._posterior()["sigma"]).size
        total = np.zeros(rows.n_rows)
        for start in range(0, n_draws, 200):
            total += self._mu_draws(rows, draw_slice=slice(start, start + 200)).sum(axis=0)
        return total / n_draws + self.nonlinear_design.offset_or_zero

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
        """Posterior predictions of individual or typical-individual curves.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict (mean-function covariates, parameter covariates and
            grouping columns), e.g. a time grid for one subject; default the
            fitted rows. Unseen levels get random effects drawn from the
            population distribution of each posterior draw (a ``DataWarning``
            says so); rows sharing a level share the draw.
        include_random : bool
            ``True``: each level's own curve. ``False``: the curve of a typical
            individual (random effects zero).
        kind : {"mean", "posterior_predictive"}
            The mean response (offset included), or new observations (plus
            Normal(0, sigma / sqrt(w)) noise; new rows have weight 1).
        ci_prob : float
            Probability of the equal-tailed interval.
        draws : bool
            Return the (S, m) array of draws instead of the summary table.
        random_seed : int, optional
            Seed for new-level effects and predictive noise.

        Returns
        -------
        DataFrame or ndarray
            mean, sd, lower, upper per row (index of ``newdata``).
        """
        check_ci_prob(ci_prob, random_seed=random_seed)
        if kind not in ("mean", "posterior_predictive"):
            raise ValueError(f"kind must be 'mean' or 'posterior_predictive', not {kind!r}.")
        rng = np.random.default_rng(random_seed)
        rows = self._new_rows(newdata, include_random, rng)
        index = self.design.data.index if newdata is None else newdata.index
        sigma = flat_draws(self._posterior()["sigma"])

        def rows_draws(part: _Rows) -> np.ndarray:
            mu = self._mu_draws(part, include_random=include_random)
            if part.offset is not None:
                mu += part.offset
            if kind == "posterior_predictive":
                scale = sigma[:, None] if part.sqrt_w is None else sigma[:, None] / part.sqrt_w
                mu += scale * rng.standard_normal(mu.shape)
            return mu

        if draws:
            return rows_draws(rows)
        chunk = max(1, int(4_000_000 // sigma.size))
        tables = [
            interval_table(rows_draws(rows[a : a + chunk]), index[a : a + chunk], ci_prob)
            for a in range(0, rows.n_rows, chunk)
        ]
        table = pd.concat(tables) if len(tables) > 1 else tables[0]
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND, kind=kind)
        return table
