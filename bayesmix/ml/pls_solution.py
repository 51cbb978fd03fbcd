"""The penalised least-squares solution at one ``theta``, as both ML kernels give it,
and the fitted values it implies.

:class:`~bayesmix.ml.deviance.ProfiledDeviance` (blocked) and
:class:`~bayesmix.ml.dense_solution.DenseKernel` (small models) return it from
``solve``; :func:`bayesmix.ml.fit.fit_estimates` maps it to the estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PLSSolution", "fitted_values"]


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


def fitted_values(
    X: np.ndarray, blocks: Sequence[tuple], beta: np.ndarray, b: Sequence[np.ndarray]
) -> np.ndarray:
    """Conditional fitted values ``X beta + sum_i rowsum(Z_i * b_i[codes_i])``.

    ``blocks`` holds ``(codes, Z, ...)`` per block: the kernels' ``(codes, Z, n_levels,
    kind)`` or encoded new rows' ``(codes, Z)``; an empty ``b`` gives ``X beta``.
    """
    eta = X @ beta
    for block, bi in zip(blocks, b):
        codes, Z = block[0], block[1]
        eta = eta + np.einsum("nk,nk->n", Z.reshape(len(eta), -1), bi[codes])
    return eta
