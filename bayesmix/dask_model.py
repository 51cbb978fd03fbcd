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
part alone exceeds ``max_driver_memory``. The kernel's working arrays come on top
(about 16 numbers per stored entry of ``B`` and three copies of the dense part:
a peak of 3.4 GiB for 1.1e7 pairs with ``q_r = 10^3``, 5.8 GiB with ``q_r = 10^4``,
``bench/bench_dask.py``).
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
            The user's cluster (used and left open); ``None`` uses the client
            already active in this process (as Dask itself would), else starts a
            local cluster of this machine's cores and closes it afterwards;
            ``"sync"`` reads the partitions one by one in this process.
        progress : bool, optional
            Dask's progress bars of both passes; by default as the sampler's
            (``BAYESMIX_PROGRESS``, else on when run interactively).
        max_driver_memory : float
            Bytes the summed products may take in this process (the fit's peak is
            larger: see the module's docstring).

        Returns
        -------
        DaskMLResult
        """
        import dask

        method = _check_method(method)
        from bayesmix.bayes.sampler_defaults import resolve_progress  # numpy only

        show = resolve_progress(progress)
        if isinstance(client, str) and client == "sync":
            with dask.config.set(scheduler="sync"):
                return self._fit(method, "sync", show, max_driver_memory)
        if client is None:
            client = _active_client()
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
        from bayesmix.ml.products_fit import centred_back, fit_products
        from bayesmix.scale.accumulate import accumulate, products_nbytes
        from bayesmix.scale.results import DaskMLResult, data_fingerprint, rowless_design
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
        rows = self._partition_rows(found)
        surveyed = time.perf_counter()
        products, log_weights = accumulate(self.data, rows, client, progress)
        summed = time.perf_counter()
        _warn_constant_slopes(products, rows)
        products, fitted_rows = _fitted_columns(products, rows)
        estimates = fit_products(products, fitted_rows.template, method, log_weights=log_weights)
        if rows.intercept is not None:
            names = fitted_rows.template.fixed_terms
            kept = [rows.template.fixed_terms.index(name) for name in names]
            estimates = centred_back(
                estimates, names.index("Intercept"), rows.x_shift[kept], rows.y_shift
            )
        timing = {
            "survey_s": surveyed - start,
            "products_s": summed - surveyed,
            "optimise_s": time.perf_counter() - summed,
        }
        p = fitted_rows.template.n_fixed
        from dask.base import tokenize

        return DaskMLResult(
            design=rowless_design(fitted_rows.template, products.n_obs),
            estimates=estimates,
            model=self,
            data=self.data,
            survey=found,
            rows=fitted_rows,
            fingerprint=data_fingerprint(tokenize(self.data), products.n_obs),
            fixed_gram=np.array(products.XyXy[:p, :p]),
            timing=timing,
        )

    def _partition_rows(self, found: Any) -> Any:
        """How the second pass encodes a partition: the template, the predictors new data
        need, and the centring (on the template's means) when there is an intercept."""
        from bayesmix.scale.accumulate import PartitionRows
        from bayesmix.spec.data_prep import used_columns
        from bayesmix.spec.formula import parse_formula

        template = found.template
        response = parse_formula(f"{found.spec.response} ~ 1")
        in_response = set(used_columns(response, self.data._meta, self.functions))
        predictors = tuple(c for c in found.columns if c not in in_response and c != self.weights)
        names = template.fixed_terms
        intercept, x_shift, y_shift = None, None, 0.0
        if "Intercept" in names and np.all(template.X[:, names.index("Intercept")] == 1.0):
            intercept = names.index("Intercept")
            x_shift = np.asarray(template.X, dtype=float).mean(axis=0)
            x_shift[intercept] = 0.0
            y_shift = float(np.mean(template.y - template.offset_or_zero))
        return PartitionRows(
            template,
            tuple(found.columns),
            found.spec.response,
            self.weights,
            self.functions,
            predictors,
            intercept,
            x_shift,
            y_shift,
        )

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise ArgumentError(
            "Bayesian fits need the data in memory; call ddf.compute() and fit "
            "bmx.lmm(formula, data).sample(), or fit this model by ML/REML with .fit()."
        )


def _warn_constant_slopes(products: Any, rows: Any) -> None:
    """The in-memory warning (:func:`bayesmix.spec.design_columns.warn_constant_slopes`) from
    the summed products: a slope whose (weighted) variance within every level is zero."""
    from bayesmix.errors import DataWarning, warn
    from bayesmix.ml.cross_products import level_grams
    from bayesmix.spec.design_columns import constant_slope_message

    order, layout = rows.ordering
    for i, gram in zip(order, level_grams(products, layout), strict=True):
        block = rows.template.blocks[i]
        if "Intercept" not in block.terms:
            continue
        c = block.terms.index("Intercept")
        count = gram[:, c, c]
        seen = count > 0
        for j, term in enumerate(block.terms):
            if j == c:
                continue
            mean = gram[seen, c, j] / count[seen]
            square = gram[seen, j, j] / count[seen]
            mean_square = gram[:, j, j].sum() / count.sum()
            overall = mean_square - (gram[:, c, j].sum() / count.sum()) ** 2
            within = square - mean**2
            if overall > 1e-10 * mean_square and np.all(within <= 1e-10 * square):
                warn(constant_slope_message(term, block), DataWarning)


def _fitted_columns(products: Any, rows: Any) -> tuple[Any, Any]:
    """The products and partition encoding of the fixed-effects columns that are not
    aliased in the whole data's ``X'X`` (R's rule, with the in-memory warning); the
    encoding, for the result's lazy rows, is uncentred."""
    import dataclasses

    from bayesmix.ml.products_fit import independent_gram_columns, select_fixed

    template = rows.template
    p = template.n_fixed
    if rows.intercept is not None and not products.XyXy[p, p] > 0.0:
        raise FitError(
            f"the response {template.response!r} (less any offset) is constant "
            f"({rows.y_shift:.6g} in every row), so there is no variation to model"
        )
    gram = products.XyXy[:p, :p]
    norms_sq = np.diag(gram)
    if rows.intercept is not None:  # R's rule measures the columns as given, not centred
        i, mu = rows.intercept, rows.x_shift
        norms_sq = norms_sq + 2.0 * mu * gram[i] + mu**2 * gram[i, i]
    keep = independent_gram_columns(gram, template.fixed_terms, norms_sq)
    if len(keep) < p:
        products = select_fixed(products, keep)
        encoder = dataclasses.replace(
            template.encoder, keep=[template.encoder.keep[j] for j in keep]
        )
        template = dataclasses.replace(
            template,
            X=template.X[:, keep],
            fixed_terms=tuple(template.fixed_terms[j] for j in keep),
            encoder=encoder,
        )
    uncentred = dataclasses.replace(
        rows, template=template, intercept=None, x_shift=None, y_shift=0.0
    )
    return products, uncentred


def _active_client() -> Any:
    """The ``distributed.Client`` active in this process, if any (data persisted on it
    can only be read through it)."""
    import sys

    if "distributed" not in sys.modules:
        return None
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        return None


def _check_method(method: Any) -> str:
    upper = method.upper() if isinstance(method, str) else None
    if upper not in ("REML", "ML"):
        raise ArgumentError(f"method must be 'REML' or 'ML', got {method!r}.")
    return upper
