"""The penalised least-squares solution at one ``theta``, as both ML kernels give it.

:class:`~bayesmix.ml.deviance.ProfiledDeviance` (blocked) and
:class:`~bayesmix.ml.dense_solution.DenseKernel` (small models) return it from
``solve``; :func:`bayesmix.ml.fit.fit_estimates` maps it to the estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PLSSolution"]


@dataclass(frozen=True)
class PLSSolution:
    """Penalised least-squares solution at one ``theta``.

    ``b`` and ``u`` hold one ``(n_levels, k)`` array per block, in input order;
    ``RX`` is lme4's upper-triangular fixed-effects factor.
    """

    theta: np.ndarray
    reml: bool
    criterion: float
    beta: np.ndarray
    u: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    sigma: float
    pwrss: float
    ldL2: float
    ldRX2: float
    RX: np.ndarray
