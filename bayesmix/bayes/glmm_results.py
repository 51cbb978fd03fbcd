"""Posterior summaries of a sampled GLMM: :class:`GLMMBayesResult`.

A :class:`~bayesmix.bayes.results.BayesResult` (so ``ranef``, ``varcorr``,
``diagnostics`` and the conditional model's ``fixef`` are inherited) with the
response family on top: predictions on the link or response scale, draws of
new observations from the family, the family's pointwise log-likelihood for
``loo``, and tables of the dispersion (``theta``, ``shape``) and of the
zero-inflation coefficients. Everything is numpy on the stored draws: nothing
is recompiled or resampled.

Notation: S draws, m rows; eta : linear predictor; mu : conditional mean
``g^{-1}(eta)``; pi : structural-zero probability ``expit(eta_zi)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from bayesmix.bayes.glmm_priors import dispersion_names, zi_key
from bayesmix.bayes.results import BayesResult, _infos
from bayesmix.bayes.tables import CI_KIND, GLMMBayesSummary, flat_draws, interval_table
from bayesmix.bayes.validate import check_choice, check_ci_prob, check_seed
from bayesmix.errors import ArgumentError, DataWarning, warn
from bayesmix.spec.families import Family

__all__ = ["GLMMBayesResult"]

PREDICT_TYPES = ("response", "link", "conditional", "zprob")
COMPONENTS = ("cond", "zi", "dispersion", "all")


@dataclass(frozen=True)
class _Rows:
    """Arrays of the rows to predict: fixed, per-block (codes, Z), offset, zero inflation."""

    X: np.ndarray
    blocks: list[tuple[np.ndarray, np.ndarray]]
    offset: np.ndarray
    zi_X: np.ndarray | None

    def __getitem__(self, rows: slice) -> _Rows:
        zi = None if self.zi_X is None else self.zi_X[rows]
        blocks = [(codes[rows], Z[rows]) for codes, Z in self.blocks]
        return _Rows(self.X[rows], blocks, self.offset[rows], zi)


@dataclass(frozen=True)
class GLMMBayesResult(BayesResult):
    """Posterior draws of a generalized linear mixed model and their summaries.

    Attributes
    ----------
    family : Family
        Response distribution and link.
    zi_X : ndarray, optional
        Zero-inflation design of the fitted rows (``None`` without zero inflation).
    zi_names : tuple of str
        Its column names.
    zi_formula : str, optional
        Right-hand side of the zero-inflation formula (to encode new rows).

    Notes
    -----
    ``fixef()`` gives the conditional model's coefficients (link scale);
    ``fixef(component="zi")`` the zero-inflation coefficients (logit of the
    structural-zero probability), ``fixef(component="dispersion")`` the
    family's ``theta`` or ``shape``, ``"all"`` the three stacked.
    """

    family: Family | None = None
    zi_X: np.ndarray | None = field(default=None, repr=False)
    zi_names: tuple[str, ...] = ()
    zi_formula: str | None = None

    # ------------------------------------------------------------------ tables
    @property
    def _dispersion_name(self) -> str | None:
        names = dispersion_names(self.family)
        return None if names is None else names[1]

    def _parameter_draws(self) -> dict[str, np.ndarray]:
        """As :class:`BayesResult`, plus the dispersion and the ``zi(<term>)`` coefficients."""
        out = super()._parameter_draws()
        post = self._posterior()
        if self._dispersion_name is not None:
            out[self._dispersion_name] = np.asarray(
                post[self._dispersion_name].transpose("chain", "draw").values
            )
        if self.zi_X is not None:
            zi = np.asarray(post["zi_beta"].transpose("chain", "draw", ...).values)
            for j, name in enumerate(self.zi_names):
                out[zi_key(name)] = zi[..., j]
        return out

    def fixef(
        self,
        ci_prob: float = 0.95,
        component: Literal["cond", "zi", "dispersion", "all"] = "cond",
    ) -> pd.DataFrame:
        """Coefficients: mean, sd, lower, upper, r_hat, ess_bulk per row.

        Parameters
        ----------
        ci_prob : float
            Probability of the equal-tailed interval.
        component : {"cond", "zi", "dispersion", "all"}
            ``"cond"``: the conditional model (link scale, as ``fit().fixef()``);
            ``"zi"``: the zero-inflation model (logit of the structural-zero
            probability); ``"dispersion"``: ``theta`` (negative binomial) or
            ``shape`` (Gamma); ``"all"``: the three stacked, indexed by
            (component, term).
        """
        check_ci_prob(ci_prob)
        check_choice(component, "component", COMPONENTS)
        if component == "cond":
            return super().fixef(ci_prob)
        if component == "all":
            parts = {"cond": super().fixef(ci_prob)}
            if self.zi_X is not None:
                parts["zi"] = self.fixef(ci_prob, "zi")
            if self._dispersion_name is not None:
                parts["dispersion"] = self.fixef(ci_prob, "dispersion")
            table = pd.concat(parts, names=["component", "term"])
            table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
            return table
        if component == "zi":
            if self.zi_X is None:
                raise ArgumentError("this model has no zero inflation (no ziformula=).")
            keys, labels = [zi_key(n) for n in self.zi_names], list(self.zi_names)
        else:
            if self._dispersion_name is None:
                raise ArgumentError(f"the {self.family.name} family has no dispersion parameter.")
            keys = labels = [self._dispersion_name]
        params = self._parameter_draws()
        table = interval_table(np.stack([params[k].ravel() for k in keys], axis=1), labels, ci_prob)
        diag = self.diagnostics()["table"]
        table["r_hat"] = diag.loc[keys, "r_hat"].to_numpy()
        table["ess_bulk"] = diag.loc[keys, "ess_bulk"].to_numpy()
        return table

    def summary(self, ci_prob: float = 0.95) -> GLMMBayesSummary:
        """glmer-like summary: posterior means, SDs and equal-tailed intervals, with the
        zero-inflation and dispersion tables below the fixed effects."""
        base = super().summary(ci_prob)
        family = f"{self.family.name} ({self.family.link.name})"
        zi = f"; zero inflation ~ {self.zi_formula}" if self.zi_X is not None else ""
        header = base.header.replace("linear mixed model", "generalized linear mixed model")
        header = header.replace("\nFormula:", f"\nFamily: {family}{zi}\nFormula:", 1)
        pct = f"{100 * ci_prob:g}%"
        names = {"lower": f"lower {pct}", "upper": f"upper {pct}"}
        extra = []
        if self.zi_X is not None:
            table = self.fixef(ci_prob, "zi").rename(columns=names)
            extra.append(("Zero-inflation model (logit of P(structural zero)):", table))
        if self._dispersion_name is not None:
            table = self.fixef(ci_prob, "dispersion").rename(columns=names)
            extra.append((f"Dispersion ({self.family.name}):", table))
        return GLMMBayesSummary(header, base.varcorr, base.fixef, base.footer, tuple(extra))

    # -------------------------------------------------------------- draws
    def _rows(self, newdata: pd.DataFrame | None, include_random: bool) -> _Rows:
        design = self.design
        if newdata is None:
            blocks = [(b.codes, b.Z) for b in design.blocks]
            return _Rows(design.X, blocks, design.offset_or_zero, self.zi_X)
        new = design.evaluate_new_data(newdata)
        blocks = [(np.asarray(c), np.asarray(z, dtype=float)) for c, z in new.blocks]
        unseen = sorted({b.grouping for b, (c, _) in zip(design.blocks, blocks) if np.any(c < 0)})
        if include_random and unseen:
            warn(
                f"New levels of {', '.join(unseen)}: predicted at the population level "
                "(group effects of zero).",
                DataWarning,
            )
        zi_X = None
        if self.zi_X is not None:  # encoded as the model's zero-inflation rows were
            from bayesmix.spec.zero_inflation import zi_new_data

            zi_X = zi_new_data(self.model.zi_design, newdata)
        return _Rows(np.asarray(new.X, dtype=float), blocks, new.offset_or_zero, zi_X)

    def _eta_draws(
        self, rows: _Rows, include_random: bool = True, draws: slice = slice(None)
    ) -> np.ndarray:
        """Linear predictor draws (S, m); unseen levels (code -1) get zero effects."""
        post = self._posterior()
        eta = flat_draws(post["beta"])[draws] @ np.asarray(rows.X, dtype=float).T + rows.offset
        if include_random:
            for (codes, Z), info in zip(rows.blocks, _infos(self.design), strict=True):
                r = flat_draws(post[info.r_name])[draws]  # (S, levels, k)
                codes = np.asarray(codes)
                effects = np.zeros((r.shape[0], codes.size, r.shape[2]))
                effects[:, codes >= 0] = r[:, codes[codes >= 0]]
                eta += np.einsum("snk,nk->sn", effects, np.asarray(Z, dtype=float))
        return eta

    def _zi_eta(self, rows: _Rows, draws: slice = slice(None)) -> np.ndarray | None:
        """Draws (S, m) of the logit of pi, ``None`` without zero inflation."""
        if rows.zi_X is None:
            return None
        return flat_draws(self._posterior()["zi_beta"])[draws] @ rows.zi_X.T

    def _zi_prob(self, rows: _Rows, draws: slice = slice(None)) -> np.ndarray | None:
        """Structural-zero probability draws (S, m), ``None`` without zero inflation."""
        eta_zi = self._zi_eta(rows, draws)
        return None if eta_zi is None else special.expit(eta_zi)

    def _dispersion(self, draws: slice = slice(None)) -> np.ndarray | None:
        if self._dispersion_name is None:
            return None
        return flat_draws(self._posterior()[self._dispersion_name])[draws]

    def _epred(self, draw_slice: slice, include_random: bool) -> np.ndarray:
        rows = self._rows(None, True)
        return self._scale_draws(rows, "response", include_random, draw_slice)

    def _r2_scale(self) -> np.ndarray | None:
        # brms's binomial R² is on the counts' scale: successes and their expectations
        binomial = self.family.name == "binomial" and self.design.weights is not None
        return np.asarray(self.design.weights, dtype=float) if binomial else None

    def _n_draws(self) -> int:
        post = self._posterior()
        return int(post.sizes["chain"] * post.sizes["draw"])

    def _scale_draws(
        self, rows: _Rows, type: str, include_random: bool, draws: slice = slice(None)
    ) -> np.ndarray:
        """Draws (S, m) of the quantity ``type`` names (see :meth:`predict`)."""
        if type == "zprob":
            if rows.zi_X is None:
                raise ArgumentError("type='zprob' needs a zero-inflated model (ziformula=).")
            return self._zi_prob(rows, draws)
        eta = self._eta_draws(rows, include_random, draws)
        if type == "link":
            return eta
        mu = self.family.link.inverse(eta)
        pi = self._zi_prob(rows, draws)
        return mu if type == "conditional" or pi is None else (1.0 - pi) * mu

    # -------------------------------------------------------------- prediction
    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        type: Literal["response", "link", "conditional", "zprob"] = "response",
        include_random: bool = True,
        ci_prob: float = 0.95,
        draws: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Posterior of the mean response (or linear predictor) of each row.

        Parameters
        ----------
        newdata : DataFrame, optional
            Rows to predict; default the fitted rows. Levels not seen in fitting
            are predicted at the population level (zero group effects; a
            ``DataWarning`` says so). Binomial rows need no trials.
        type : {"response", "link", "conditional", "zprob"}
            ``"response"``: the mean of ``y`` (a probability for the binomial,
            ``(1 - pi) mu`` with zero inflation); ``"link"``: the linear
            predictor (offset included); ``"conditional"``: ``mu``, the mean of the
            count part; ``"zprob"``: the structural-zero probability ``pi``.
        include_random : bool
            Add the group effects (``False``: population-level predictions).
        ci_prob : float
            Probability of the equal-tailed interval.
        draws : bool
            Return the raw (S, m) array of draws instead of the summary table.
        """
        check_ci_prob(ci_prob)
        check_choice(type, "type", PREDICT_TYPES)
        rows = self._rows(newdata, include_random)
        if draws:
            return self._scale_draws(rows, type, include_random)
        index = self.design.data.index if newdata is None else newdata.index
        chunk = max(1, int(4_000_000 // self._n_draws()))
        tables = [
            interval_table(
                self._scale_draws(rows[a : a + chunk], type, include_random),
                index[a : a + chunk],
                ci_prob,
            )
            for a in range(0, rows.X.shape[0], chunk)
        ]
        table = pd.concat(tables) if len(tables) > 1 else tables[0]
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND, type=type)
        return table

    def fitted(self) -> np.ndarray:
        """Posterior mean of the mean response (``type="response"``) of every fitted row."""
        rows, n = self._rows(None, True), self._n_draws()
        total = np.zeros(self.design.n_obs)
        for start in range(0, n, 200):
            sl = slice(start, start + 200)
            total += self._scale_draws(rows, "response", True, sl).sum(axis=0)
        return total / n

    def _response_sd(self, draw_slice: slice) -> np.ndarray:
        """Each draw's SD of y (a proportion for the binomial with trials), (S, n)."""
        rows = self._rows(None, True)
        mu = self.family.link.inverse(self._eta_draws(rows, True, draw_slice))
        disp = self._dispersion(draw_slice)
        variance = self.family.response_variance(mu, None if disp is None else disp[:, None])
        if self.design.weights is not None:
            variance = variance / np.asarray(self.design.weights)[None, :]
        pi = self._zi_prob(rows, draw_slice)
        if pi is not None:
            variance = (1.0 - pi) * (variance + pi * mu**2)
        return np.sqrt(variance)

    def residuals(self, kind: Literal["response", "pearson"] = "response") -> np.ndarray:
        """``y - fitted()``; ``"pearson"`` divides by the SD of ``y`` at the posterior means.

        The binomial's response (and its residuals) are proportions; the Pearson
        SD is ``sqrt(V(mu) / n)`` there, ``sqrt((1 - pi) (V(mu) + pi mu^2))`` with zero
        inflation.
        """
        check_choice(kind, "kind", ("response", "pearson"))
        y = np.asarray(self.design.y, dtype=float)
        res = y - self.fitted()
        if kind == "response":
            return res
        rows = self._rows(None, True)
        mu = self.family.link.inverse(self._eta_draws(rows)).mean(axis=0)
        disp = self._dispersion()
        variance = self.family.response_variance(mu, None if disp is None else float(disp.mean()))
        if self.design.weights is not None:
            variance = variance / self.design.weights
        pi = self._zi_prob(rows)
        if pi is not None:
            pi = pi.mean(axis=0)
            variance = (1.0 - pi) * (variance + pi * mu**2)
        return res / np.sqrt(variance)

    def posterior_predictive(
        self,
        *,
        random_seed: int | None = None,
        binomial: Literal["successes", "proportion"] = "successes",
    ) -> xr.DataArray:
        """Draws of new observations of the fitted rows, dims (chain, draw, obs).

        Counts (Poisson, negative binomial, binomial successes) are integers;
        ``binomial="proportion"`` divides the binomial successes by the trials
        (the scale of ``design.y``). Gamma draws are positive reals. Structural
        zeros are drawn with probability ``pi`` under zero inflation.
        """
        check_seed(random_seed)
        check_choice(binomial, "binomial", ("successes", "proportion"))
        rng = np.random.default_rng(random_seed)
        rows = self._rows(None, True)
        mu = self.family.link.inverse(self._eta_draws(rows))
        dispersion = self._dispersion()
        trials = self.design.weights if self.family.name == "binomial" else None
        y = self.family.draw(
            mu,
            rng,
            trials=trials,
            dispersion=None if dispersion is None else dispersion[:, None],
            zero_prob=self._zi_prob(rows),
        )
        if binomial == "proportion" and trials is not None:
            y = y / trials
        post = self._posterior()
        shape = (post.sizes["chain"], post.sizes["draw"], mu.shape[1])
        return xr.DataArray(np.reshape(y, shape), dims=("chain", "draw", "obs"), name="y")

    # -------------------------------------------------------------- model checks
    def pointwise_loglik(self, chunk: int = 200) -> xr.DataArray:
        """Log-likelihood of every observation under every draw, dims (chain, draw, obs)."""
        from bayesmix.bayes.loglik import glmm_pointwise_loglik

        return glmm_pointwise_loglik(self, chunk)

    def loo(self):
        """PSIS-LOO cross-validation (``arviz.loo``) on the pointwise log-likelihood."""
        import arviz as az

        if "log_likelihood" in self.idata.children:
            return az.loo(self.idata, var_name="y")
        tree = self.idata.copy()
        tree["log_likelihood"] = xr.Dataset({"y": self.pointwise_loglik()})
        return az.loo(tree, var_name="y")
