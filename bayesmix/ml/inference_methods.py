"""The inference methods of an ML/REML fit, deferring to :mod:`bayesmix.inference`.

:class:`InferenceMethods` is a mixin of :class:`~bayesmix.ml.results.MLResult`:
degrees of freedom and p-values (``coef_table``, ``anova``), ``confint``,
``simulate`` and the parametric ``bootstrap``. The work lives in
:mod:`bayesmix.inference`, imported when a method is called (an allowed upward
edge, as ``save`` is to :mod:`bayesmix.io`), so fitting never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd


class InferenceMethods:
    """lmerTest's tests, lme4's ``confint``, ``simulate`` and ``bootMer`` on a fit."""

    def coef_table(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """Fixed effects with denominator degrees of freedom and p-values (lmerTest).

        ``ddf``: ``"Satterthwaite"`` (lmerTest's default), ``"Kenward-Roger"``
        (pbkrtest; REML fits; with its adjusted SEs) or ``"residual"``
        (``n - p``, nlme's ``gls``). Columns ``estimate``, ``std_error``, ``df``,
        ``t_value``, ``p_value``.
        """
        from bayesmix.inference.tables import coef_table

        return coef_table(self, ddf)

    def anova(self, type: int | str = 3, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """F test of each fixed term (lmerTest's ``anova(fit, type=, ddf=)``).

        ``type=3`` tests each term's marginal hypothesis (SAS's type III: as if
        every factor were sum-coded), ``type=1`` the terms in sequence. Compare
        several fits by likelihood ratios with :func:`bayesmix.anova`.
        """
        from bayesmix.inference.tables import term_anova

        return term_anova(self, type, ddf)

    def drop1(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """lmerTest's ``drop1``: the type III F test of each term that can be dropped
        (contained in no interaction)."""
        from bayesmix.inference.tables import term_anova

        return term_anova(self, 3, ddf, marginal_only=True)

    def ranova(self) -> pd.DataFrame:
        """Likelihood-ratio test of each random-effect term (lmerTest's ``ranova``).

        Slopes are removed one term at a time, single-term bars whole; refits use
        this fit's method.
        """
        from bayesmix.inference.ranova import ranova

        return ranova(self)

    def confint(
        self,
        parm: str | list[str] | None = None,
        level: float = 0.95,
        method: str = "profile",
        **boot_options: Any,
    ) -> pd.DataFrame:
        """Confidence intervals of SDs, correlations, ``sigma`` and fixed effects (lme4's).

        ``method``: ``"profile"`` (likelihood profiles of the ML deviance, as
        lme4's, REML fits included), ``"Wald"`` (fixed effects only) or
        ``"boot"`` (parametric-bootstrap percentiles; ``nsim`` (500), ``seed``,
        ``client``, ``workers`` go to :meth:`bootstrap`). Rows use lme4's
        ``oldNames = FALSE`` names (``sd_(Intercept)|Subject``, ``sigma``).
        An end at a boundary (SD 0, correlation +-1) is the boundary, with a
        warning, and is listed in ``attrs["at_bound"]``.
        """
        from bayesmix.inference.confint import confint

        return confint(self, parm, level, method, **boot_options)

    def intervals(self, level: float = 0.95) -> Any:
        """nlme's ``intervals(fit, which = "all")``: fixed effects (t with nlme's degrees
        of freedom), random-effect SDs and correlations and ``sigma`` (Wald on the log /
        atanh scale). Works for ``lmm``, ``gls`` and ``nlmm`` fits."""
        from bayesmix.inference.nlme_intervals import nlme_intervals

        return nlme_intervals(self, level)

    def r2(self, approximation: str = "lognormal") -> pd.DataFrame:
        """Marginal and conditional R² (Nakagawa and Schielzeth; ``performance::r2_nakagawa``).

        Rows ``marginal`` (fixed effects) and ``conditional`` (fixed and random),
        column ``R2``; the variance components in ``attrs["variances"]``. For a
        log-link Poisson GLMM ``approximation`` chooses the distribution-specific
        variance (``"lognormal"``, ``"delta"``, ``"trigamma"``; see
        :mod:`bayesmix.ml.r_squared`).
        """
        from bayesmix.ml.r_squared import nakagawa_r2

        return nakagawa_r2(self, approximation)

    def simulate(self, nsim: int = 1, seed: int | None = None, use_u: bool = False) -> pd.DataFrame:
        """Responses simulated from the fit (lme4's ``simulate``), one column per draw.

        ``use_u=False`` draws new random effects; ``True`` keeps the conditional modes.
        """
        from bayesmix.inference.simulate import simulate

        return simulate(self, nsim, seed, use_u)

    def bootstrap(
        self,
        nsim: int = 1000,
        statistic: Callable[[Any], Any] | None = None,
        *,
        seed: int | np.random.SeedSequence | None = None,
        use_u: bool = False,
        client: Any = None,
        workers: int | None = None,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> Any:
        """Parametric bootstrap (lme4's ``bootMer``), refits run in batches on Dask.

        Parameters
        ----------
        nsim : int
            Replicates.
        statistic : callable, optional
            ``statistic(fit) -> array, Series or dict`` of a refitted MLResult;
            default the SDs, correlations, ``sigma`` and fixed effects.
        seed : int or SeedSequence, optional
            The same seed gives the same replicates on any number of workers.
        use_u : bool
            Simulate conditional on the fitted random effects (lme4's ``use.u``).
        client : distributed.Client or "sync", optional
            Your Dask cluster (left open); default an in-process ``LocalCluster``
            of ``workers`` processes (default: the usable cores), closed after;
            ``"sync"`` runs here without Dask.
        workers, batch_size, progress
            Local cluster size, replicates per task, progress bar.

        Returns
        -------
        BootstrapResult
            ``replicates``, ``t0``, ``std_error()``, ``intervals()``, ``failures``.
        """
        from bayesmix.inference.bootstrap import bootstrap

        return bootstrap(
            self,
            nsim,
            statistic,
            seed=seed,
            use_u=use_u,
            client=client,
            workers=workers,
            batch_size=batch_size,
            progress=progress,
        )
