"""Exceptions and warnings raised by bayesmix.

Every error subclasses a builtin (``ValueError`` or ``RuntimeError``) so that
generic ``except ValueError`` code keeps working; every warning subclasses
``BayesmixWarning`` so users can filter all of them at once.
"""

from __future__ import annotations

import os
import warnings


class FormulaError(ValueError):
    """A model formula could not be parsed or refers to something invalid."""


class DataError(ValueError):
    """The data cannot be used with the model (unknown column, bad values...)."""


class PriorError(ValueError):
    """A prior specification is invalid or names a term the model lacks."""


class ArgumentError(ValueError, TypeError):
    """An argument of a bayesmix function has a bad value or type."""


class FitError(RuntimeError):
    """A model could not be fitted at all."""


class ComparisonError(ValueError):
    """Fits cannot be compared (different data, response or REML fixed effects)."""


class BayesmixWarning(UserWarning):
    """Base class of all bayesmix warnings."""


class DataWarning(BayesmixWarning):
    """Rows were dropped or the data look suspicious; the fit is still valid."""


class ConvergenceWarning(BayesmixWarning):
    """An optimiser or sampler did not converge; treat the result with care."""


class SingularFitWarning(BayesmixWarning):
    """A variance is (near) zero or a correlation is (near) +-1."""


class SamplingWarning(ConvergenceWarning):
    """MCMC diagnostics (divergences, R-hat, ESS) indicate an unreliable posterior."""


class CacheWarning(BayesmixWarning):
    """The on-disk compile cache cannot be used as configured; fits still work."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first caller outside bayesmix.

    Frames inside the package are skipped, so the warning points at the user's
    line however deep the call that raised it (``model.fit`` or ``fit.update``).
    """
    warnings.warn(message, category, skip_file_prefixes=(_PACKAGE_DIR,))
