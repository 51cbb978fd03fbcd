"""What the model classes share for the workflow around them: the prior predictive and
their HTML overview in notebooks (a mixin of the linear and generalized linear models)."""

from __future__ import annotations

from typing import Any


class ModelWorkflow:
    """``sample_prior_predictive`` and ``_repr_html_`` of a model with a ``design``."""

    #: the heading of the HTML overview
    overview_title = "Mixed model"

    def overview_rows(self) -> list[tuple[str, str]]:
        """The overview as (label, text) rows: formula, data, fixed and random parts."""
        from bayesmix.spec.overview import design_rows

        return design_rows(self.design)

    def _repr_html_(self) -> str:
        from bayesmix.spec.overview import html_table

        return html_table(self.overview_title, self.overview_rows())

    def sample_prior_predictive(
        self, draws: int = 500, *, priors: dict | None = None, random_seed: int | None = None
    ) -> Any:
        """Parameters drawn from the priors and replicates of the rows from them.

        Returns an ``xarray.DataTree`` with the groups ``prior``,
        ``prior_predictive`` (``y``), ``observed_data`` and ``constant_data``, for
        ``bmx.plot_ppc`` (see
        :func:`bayesmix.bayes.prior_predictive.sample_prior_predictive`).
        """
        from bayesmix.bayes.prior_predictive import sample_prior_predictive

        return sample_prior_predictive(self, draws, priors, random_seed)
