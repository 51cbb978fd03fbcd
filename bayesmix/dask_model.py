"""Linear mixed models of data in a Dask DataFrame: ``bmx.lmm(formula, ddf).fit()``.

:func:`bayesmix.lmm` and :func:`bayesmix.gls` return a :class:`DaskLinearMixedModel`
when the data are a Dask DataFrame. Its ML/REML fit reads the data twice and never
brings a row to this process (:mod:`bayesmix.scale`):

1. the survey: missing values counted and dropped, column types checked, every
   level of every factor found (:mod:`bayesmix.scale.survey`);
2. each partition's cross-products, added up on the workers
   (:mod:`bayesmix.scale.accumulate`);

then the ML engine's kernel and optimiser run here on the summed products
(:mod:`bayesmix.ml.products_fit`). This process holds the products:
``8 (c^2 + q1 (k1 + c) + q_r^2 + q_r c)`` bytes with ``c`` the fixed effects plus
one, ``q1 = m1 k1`` the largest block's effects and ``q_r`` the other blocks',
plus ``8 (k_b k1 + 1)`` bytes per pair of levels of another block b and the
largest one seen in the same row; the fit is refused beforehand when the dense
part alone exceeds ``max_driver_memory``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from bayesmix.errors import ArgumentError, FitError

__all__ = ["DaskLinearMixedModel"]


class DaskLinearMixedModel:
    """A linear mixed model whose data are a Dask DataFrame (see the module docstring).

    Built by :func:`bayesmix.lmm` / :func:`bayesmix.gls`; ``fit()`` gives a
    :class:`~bayesmix.scale.results.DaskMLResult`. The formula, columns and their
    types are checked at once against the frame's schema; the data themselves
    are read by the first ``fit()`` (the survey is kept for later fits).
    """

    def __init__(
        self,
        formula: str,
        data: Any,
        *,
        offset: str | None = None,
        weights: str | None = None,
        functions: Mapping[str, Callable] | None = None,
        contrasts: Mapping[str, str] | None = None,
        conventions: Literal["lme4", "nlme"] = "lme4",
        correlation: Any = None,
    ) -> None:
        from bayesmix.spec.data_prep import check_column_types, used_columns
        from bayesmix.spec.formula import parse_formula
        from bayesmix.spec.variance_functions import VarianceFunction

        if (
            correlation is not None
            or isinstance(weights, VarianceFunction)
            or (isinstance(weights, str) and "(" in weights)
        ):
            raise ArgumentError(
                "Residual variance functions and correlation structures are not available "
                "for data in a Dask DataFrame; fit them on data in memory (ddf.compute())."
            )
        spec = parse_formula(formula)
        meta = data._meta
        columns = used_columns(spec, meta, functions)
        check_column_types(meta, columns, {f for bar in spec.bars for f in bar.factors})
        self.formula = formula
        self.data = data
        self.offset, self.weights = offset, weights
        self.functions = dict(functions or {})
        self.contrasts = dict(contrasts or {})
        self.conventions = conventions
        self._survey = None

    def __repr__(self) -> str:
        return (
            f"<DaskLinearMixedModel {self.formula!r}: Dask DataFrame of "
            f"{self.data.npartitions} partitions>"
        )

    def fit(
        self,
        method: Literal["REML", "ML"] = "REML",
        *,
        client: Any = None,
        progress: bool | None = None,
        max_driver_memory: float = 4 * 2**30,
    ) -> Any:
        """ML or REML fit by two passes over the data (see the module docstring).

        Parameters
        ----------
        method : {"REML", "ML"}
        client : distributed.Client, "sync" or None
            The user's cluster (used and left open); ``None`` starts a local
            cluster of this machine's cores and closes it afterwards; ``"sync"``
            reads the partitions one by one in this process.
        progress : bool, optional
            Dask's progress bars of both passes; by default on when run
            interactively (a notebook, the Python prompt), off in scripts.
        max_driver_memory : float
            Bytes the summed products may take in this process.

        Returns
        -------
        DaskMLResult
        """
        import dask

        method = _check_method(method)
        show = _interactive() if progress is None else bool(progress)
        if isinstance(client, str) and client == "sync":
            with dask.config.set(scheduler="sync"):
                return self._fit(method, "sync", show, max_driver_memory)
        if client is not None:
            if not hasattr(client, "submit"):
                raise ArgumentError(
                    f"client must be a distributed.Client, 'sync' or None, not {client!r}"
                )
            with client.as_current():
                return self._fit(method, client, show, max_driver_memory)
        from bayesmix.inference.distributed import local_client, usable_cores

        with local_client(usable_cores()) as local:
            return self._fit(method, local, show, max_driver_memory)

    def _fit(self, method: str, client: Any, progress: bool, max_bytes: float) -> Any:
        from bayesmix.ml.products_fit import fit_products
        from bayesmix.scale.accumulate import PartitionRows, accumulate, products_nbytes
        from bayesmix.scale.results import DaskMLResult, data_fingerprint
        from bayesmix.scale.survey import survey

        start = time.perf_counter()
        if self._survey is None:
            self._survey = survey(
                self.data,
                self.formula,
                offset=self.offset,
                weights=self.weights,
                functions=self.functions,
                contrasts=self.contrasts,
                progress=progress,
            )
        found = self._survey
        template = found.template
        needed = products_nbytes(template)
        if needed > max_bytes:
            sizes = ", ".join(f"{b.grouping}: {b.n_levels} levels" for b in template.blocks)
            raise FitError(
                f"the summed cross-products of this model need {needed / 2**30:.1f} GiB in "
                f"this process ({sizes}), more than max_driver_memory="
                f"{max_bytes / 2**30:.1f} GiB; the blocks after the largest are held densely: "
                "simplify them, or raise max_driver_memory if this machine has the memory."
            )
        rows = PartitionRows(
            template, tuple(found.columns), found.spec.response, self.weights, self.functions
        )
        surveyed = time.perf_counter()
        products, log_weights = accumulate(self.data, rows, client, progress)
        summed = time.perf_counter()
        estimates = fit_products(products, template, method, log_weights=log_weights)
        timing = {
            "survey_s": surveyed - start,
            "products_s": summed - surveyed,
            "optimise_s": time.perf_counter() - summed,
        }
        p = template.n_fixed
        from dask.base import tokenize

        return DaskMLResult(
            design=template,
            estimates=estimates,
            model=self,
            data=self.data,
            survey=found,
            rows=rows,
            fingerprint=data_fingerprint(tokenize(self.data), products.n_obs, products.XyXy),
            fixed_gram=np.array(products.XyXy[:p, :p]),
            timing=timing,
        )

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise ArgumentError(
            "Bayesian fits need the data in memory; call ddf.compute() and fit "
            "bmx.lmm(formula, data).sample(), or fit this model by ML/REML with .fit()."
        )


def _check_method(method: Any) -> str:
    upper = method.upper() if isinstance(method, str) else None
    if upper not in ("REML", "ML"):
        raise ArgumentError(f"method must be 'REML' or 'ML', got {method!r}.")
    return upper


def _interactive() -> bool:
    import os
    import sys

    setting = os.environ.get("BAYESMIX_PROGRESS")
    if setting is not None:
        return setting not in ("", "0", "false", "False")
    return hasattr(sys, "ps1") or "ipykernel" in sys.modules
