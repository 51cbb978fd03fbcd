"""Posterior summaries of a model with a residual structure: :class:`StructuredBayesResult`.

A :class:`~bayesmix.bayes.results.BayesResult` (``fixef``, ``ranef``,
``varcorr``, ``fitted``...) that also reports the variance function's and
correlation structure's parameters on nlme's scale (:meth:`residual_parameters`,
a table in :meth:`summary`, R-hat and ESS in :meth:`diagnostics`), and whose
residual SDs, predictive draws and log-likelihood follow the structure.

The pointwise log-likelihood of a correlated model does not factorise over
rows; it is stored as the leave-one-out predictive densities
``p(y_i | y_-i, theta)`` of the multivariate normal (Bürkner, Gabry & Vehtari,
2021, *Computational Statistics* 36, 1243-1261), which is what PSIS-LOO needs:
with ``Q = Lambda^-1 / sigma^2`` and ``r = y - mu``, ``y_i | y_-i`` is normal with
mean ``y_i - (Q r)_i / Q_ii`` and variance ``1 / Q_ii``.

Notation
--------
S draws (chains x draws flattened); u : the structure's unconstrained
parameters per draw, (S, k); s : residual SD per row, ``sigma g_i / sqrt(w_i)``;
C : a group's correlation matrix, ``C = L L'``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.bayes.results import BayesResult
from bayesmix.bayes.tables import CI_KIND, GLMMBayesSummary, flat_draws, interval_table
from bayesmix.bayes.validate import check_ci_prob
from bayesmix.errors import ArgumentError
from bayesmix.spec.correlation_structures import BoundCorrelation
from bayesmix.spec.residual_structure import ResidualStructure

__all__ = ["StructuredBayesResult", "structured_pointwise_loglik"]


@dataclass(frozen=True)
class StructuredBayesResult(BayesResult):
    """Posterior draws of a linear mixed model (or gls) with a residual structure.

    Attributes
    ----------
    residual : ResidualStructure
        The variance function and correlation structure, bound to the rows.
    structure : tuple of StructureParameter
        The sampled structure parameters (:mod:`bayesmix.bayes.residual_priors`).
    """

    residual: ResidualStructure | None = field(default=None, repr=False)
    structure: tuple = field(default=(), repr=False)

    # ------------------------------------------------------------ draws
    def _n_draws(self) -> int:
        post = self._posterior()
        return post.sizes["chain"] * post.sizes["draw"]

    def structure_u_draws(self) -> np.ndarray:
        """The spec's unconstrained ``u`` of every draw, (S, k)."""
        post = self._posterior()
        n = self._n_draws()
        parts = []
        for param in self.structure:
            name = f"{param.key}_raw" if param.support == "lkj" else param.key
            parts.append(param.unconstrained(flat_draws(post[name]).reshape(n, -1)))
        return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))

    def _natural_draws(self) -> tuple[list[tuple[str, str, str]], np.ndarray]:
        """``(structure, kind, parameter)`` rows and their draws (S, k), nlme's scale."""
        cached = self.__dict__.get("_natural_cache")
        if cached is None:
            U = self.structure_u_draws()
            rows, columns, start = [], [], 0
            for part in self.residual.parts:
                k = part.n_params
                if k:
                    columns.append(np.stack([part.natural(u) for u in U[:, start : start + k]]))
                    rows += [(part.spec.nlme(), part.kind, name) for name in part.names]
                start += k
            draws = np.concatenate(columns, axis=1) if columns else np.zeros((U.shape[0], 0))
            cached = (rows, draws)
            object.__setattr__(self, "_natural_cache", cached)  # frozen: not a field
        return cached

    def _parameter_draws(self) -> dict[str, np.ndarray]:
        """As :class:`BayesResult`, plus the structure's parameters as ``<kind>:<name>``."""
        out = super()._parameter_draws()
        post = self._posterior()
        shape = (post.sizes["chain"], post.sizes["draw"])
        rows, draws = self._natural_draws()
        for j, (_, kind, name) in enumerate(rows):
            out[f"{kind}:{name}"] = draws[:, j].reshape(shape)
        return out

    def _log_sd_draws(self, draw_slice: slice, mu: np.ndarray | None = None) -> np.ndarray:
        """``log s`` (S', n) of the draws in ``draw_slice``; ``mu`` their linear predictors."""
        design = self.design
        sigma = flat_draws(self._posterior()["sigma"])[draw_slice]
        log_s = np.log(sigma)[:, None] * np.ones((1, design.n_obs))
        if self.residual.variance is not None:
            U = self.structure_u_draws()[draw_slice]
            if self.residual.uses_fitted and mu is None:
                mu = self._mu_draws(*self._arrays(), draw_slice=draw_slice)
            offset = design.offset_or_zero
            for i, u in enumerate(U):
                fitted = mu[i] + offset if self.residual.uses_fitted else None
                log_s[i] += self.residual.log_sd(u, fitted)
        if design.weights is not None:
            log_s -= 0.5 * np.log(design.weights)[None, :]
        return log_s

    def _cor_u(self, U: np.ndarray) -> np.ndarray:
        k = self.residual.variance.n_params if self.residual.variance is not None else 0
        return U[:, k:]

    # ------------------------------------------------------------ tables
    def residual_parameters(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """The variance function's and correlation structure's parameters.

        Columns ``structure`` (nlme's syntax), ``parameter`` (nlme's names: the
        SD ratio of each non-reference level for varIdent, ``power``, ``Phi``,
        ``range``...), the posterior ``mean``, ``sd``, equal-tailed ``lower`` and
        ``upper``, ``r_hat`` and ``ess_bulk``; nlme's reporting scale, as
        ``MLResult.residual_parameters``.
        """
        check_ci_prob(ci_prob)
        rows, draws = self._natural_draws()
        columns = ["structure", "parameter", "mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]
        if not rows:
            return pd.DataFrame(columns=columns)
        stats = interval_table(draws, None, ci_prob).reset_index(drop=True)
        diag = self.diagnostics()["table"]
        keys = [f"{kind}:{name}" for _, kind, name in rows]
        stats["r_hat"] = diag.loc[keys, "r_hat"].to_numpy()
        stats["ess_bulk"] = diag.loc[keys, "ess_bulk"].to_numpy()
        names = pd.DataFrame(
            [(structure, name) for structure, _, name in rows], columns=["structure", "parameter"]
        )
        table = pd.concat([names, stats], axis=1)[columns]
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND)
        return table

    def summary(self, ci_prob: float = 0.95) -> GLMMBayesSummary:
        """As :meth:`BayesResult.summary`, with the residual structure's table."""
        base = super().summary(ci_prob)
        parts = " and ".join(p.spec.nlme() for p in self.residual.parts)
        header = base.header.replace("\nFormula:", f"\nResiduals: {parts}\nFormula:", 1)
        pct = f"{100 * ci_prob:g}%"
        table = self.residual_parameters(ci_prob).rename(
            columns={"lower": f"lower {pct}", "upper": f"upper {pct}"}
        )
        extra = (("Residual structure (nlme's parameters):", table.set_index("parameter")),)
        return GLMMBayesSummary(header, base.varcorr, base.fixef, base.footer, extra)

    # ------------------------------------------------------------ predictions
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
        """As :meth:`BayesResult.predict`; predictive draws carry the structure's
        heteroscedastic, correlated noise (fitted rows only)."""
        if kind != "posterior_predictive":
            return super().predict(
                newdata,
                include_random=include_random,
                kind=kind,
                ci_prob=ci_prob,
                draws=draws,
                random_seed=random_seed,
            )
        check_ci_prob(ci_prob, random_seed=random_seed)
        if newdata is not None:
            raise ArgumentError(
                "kind='posterior_predictive' with newdata= is not available for a model with a "
                "residual structure: new rows' noise depends on their correlation with the "
                "observed rows and on their variance covariates. Use kind='mean' for new rows, "
                "or newdata=None for replicates of the fitted rows."
            )
        rng = np.random.default_rng(random_seed)
        mean = super().predict(include_random=include_random, kind="mean", draws=True)
        out = mean + self._noise_draws(rng)
        if draws:
            return out
        table = interval_table(out, self.design.data.index, ci_prob)
        table.attrs.update(ci_prob=ci_prob, ci_kind=CI_KIND, kind=kind)
        return table

    def _noise_draws(self, rng: np.random.Generator) -> np.ndarray:
        """Residual draws ``s * (L_C z)``, (S, n)."""
        S, n = self._n_draws(), self.design.n_obs
        log_s = self._log_sd_draws(slice(None))
        z = rng.standard_normal((S, n))
        if self.residual.correlation is not None:
            z = correlated_normal(
                self.residual.correlation, self._cor_u(self.structure_u_draws()), z
            )
        return np.exp(log_s) * z

    def _response_sd(self, draw_slice: slice) -> np.ndarray:
        return np.exp(self._log_sd_draws(draw_slice))

    def residuals(self, kind: Literal["response", "pearson"] = "response") -> np.ndarray:
        """``y - fitted()``; ``"pearson"`` divides by the posterior mean of each row's
        residual SD ``sigma g_i`` (nlme's Pearson residuals)."""
        if kind not in ("response", "pearson"):
            raise ArgumentError(f"kind must be 'response' or 'pearson', not {kind!r}.")
        res = np.asarray(self.design.y, dtype=float) - self.fitted()
        if kind == "response":
            return res
        total, n = np.zeros(self.design.n_obs), self._n_draws()
        for start in range(0, n, 200):
            total += np.exp(self._log_sd_draws(slice(start, start + 200))).sum(axis=0)
        return res / (total / n)

    # ------------------------------------------------------------ model checks
    def pointwise_loglik(self, chunk: int = 200) -> xr.DataArray:
        """Leave-one-out predictive log densities ``log p(y_i | y_-i, theta)``,
        dims (chain, draw, obs)."""
        return structured_pointwise_loglik(self, chunk)

    def loo(self):
        """PSIS-LOO cross-validation (``arviz.loo``) of the non-factorised model."""
        import arviz as az

        if "log_likelihood" in self.idata.children:
            return az.loo(self.idata, var_name="y")
        tree = self.idata.copy()
        tree["log_likelihood"] = xr.Dataset({"y": self.pointwise_loglik()})
        return az.loo(tree, var_name="y")


# ------------------------------------------------------------ numpy helpers


def precision_terms(bound: BoundCorrelation, u: np.ndarray, e: np.ndarray):
    """``(C^-1 e, diag(C^-1))`` of the block-diagonal correlation at ``u``."""
    if bound.markov is not None:
        layout = bound.markov
        rho = layout.rho(float(bound.natural(u)[0]))
        s = 1.0 / np.sqrt(1.0 - rho**2)
        es = e[layout.order]
        w = (es - rho * np.concatenate([es[:1], es[:-1]])) * s
        rs_next = np.concatenate([(rho * s)[1:], [0.0]])  # 0 across groups: rho = 0 at firsts
        a_sorted = s * w - rs_next * np.concatenate([w[1:], [0.0]])
        a, q = np.empty_like(e), np.empty_like(e)
        a[layout.order] = a_sorted
        q[layout.order] = s**2 + rs_next**2
        return a, q
    a, q = np.empty_like(e), np.empty_like(e)
    for rows, patterns, inverse in bound.dense.classes:
        C = bound.correlation(u, patterns)
        try:
            L = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            a[rows], q[rows] = np.nan, np.nan
            continue
        Li = np.linalg.solve(L, np.broadcast_to(np.eye(rows.shape[1]), L.shape))[inverse]
        w = np.einsum("gij,gj->gi", Li, e[rows])
        a[rows] = np.einsum("gij,gi->gj", Li, w)
        q[rows] = (Li**2).sum(axis=1)
    return a, q


def correlated_normal(bound: BoundCorrelation, U: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``L_C z`` for each draw: standard normals (S, n) made correlated as ``C(u_s)``."""
    out = np.empty_like(z)
    if bound.markov is not None:
        layout = bound.markov
        phi = np.array([bound.natural(u)[0] for u in U])
        later = ~np.asarray(layout.first, dtype=bool)
        rho = np.where(later[None, :], np.power(phi[:, None], layout.gap[None, :]), 0.0)
        zs = z[:, layout.order]
        xs = np.empty_like(zs)
        xs[:, 0] = zs[:, 0]
        for i in range(1, zs.shape[1]):  # rows in order, all draws at once
            xs[:, i] = rho[:, i] * xs[:, i - 1] + np.sqrt(1.0 - rho[:, i] ** 2) * zs[:, i]
        out[:, layout.order] = xs
        return out
    for s, u in enumerate(U):
        for rows, patterns, inverse in bound.dense.classes:
            L = np.linalg.cholesky(bound.correlation(u, patterns))
            out[s][rows] = np.einsum("gij,gj->gi", L[inverse], z[s][rows])
    return out


def structured_pointwise_loglik(result: StructuredBayesResult, chunk: int = 200) -> xr.DataArray:
    """``log p(y_i | y_-i, theta)`` of every row under every draw, (chain, draw, obs).

    Without a correlation structure these are the rows' own normal densities.
    """
    post = result.idata["posterior"]
    design = result.design
    y = np.asarray(design.y, dtype=float) - design.offset_or_zero
    n_draws = result._n_draws()
    bound = result.residual.correlation
    U_cor = result._cor_u(result.structure_u_draws()) if bound is not None else None
    out = np.empty((n_draws, y.size))
    for start in range(0, n_draws, chunk):
        sl = slice(start, start + chunk)
        mu = result._mu_draws(*result._arrays(), draw_slice=sl)
        log_s = result._log_sd_draws(sl, mu)
        e = (y - mu) * np.exp(-log_s)
        for i in range(e.shape[0]):
            if bound is None:
                a, q = e[i], np.ones_like(y)
            else:
                a, q = precision_terms(bound, U_cor[start + i], e[i])
            out[start + i] = 0.5 * np.log(q) - log_s[i] - 0.5 * (np.log(2 * np.pi) + a**2 / q)
    shape = (post.sizes["chain"], post.sizes["draw"], y.size)
    return xr.DataArray(out.reshape(shape), dims=("chain", "draw", "obs"))
