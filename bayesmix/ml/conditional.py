"""lme4's conditional variances of the random effects, from the PLS factor.

A companion of :class:`bayesmix.ml.deviance.ProfiledDeviance` (it reads the
kernel's factor and block layout), kept apart because only the final
estimates need it, never the optimiser.

Notation
--------
L11 (batch of k1 x k1 factors), L22 (dense), B : the blocked Cholesky factor of
:mod:`bayesmix.ml.deviance`; T_i : relative covariance factors; S = L22 L22'.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def conditional_variances(kernel: Any, theta: np.ndarray, sigma: float) -> tuple[np.ndarray, ...]:
    """``sigma^2 Lambda (L L')^-1 Lambda'`` per level of every block of ``kernel``.

    See :meth:`bayesmix.ml.deviance.ProfiledDeviance.conditional_variances`; the
    diagonal blocks of ``(L L')^-1`` come from the selected inverse of
    :meth:`bayesmix.ml.deviance_gradient.GradientPlan.selected_inverse`.
    """
    if not kernel.sizes:
        return ()
    f = kernel._factor(theta)
    parts = kernel.gradient_plan.selected_inverse(f)
    T, out = f["T"], [None] * len(kernel.sizes)
    out[kernel._order[0]] = parts["sigma11"]
    for pos, i in enumerate(kernel._order[1:]):
        sl = slice(kernel._offsets[pos], kernel._offsets[pos + 1])
        k, m = kernel.sizes[i], kernel.n_levels[i]
        sub = parts["S_inv"][sl, sl].reshape(m, k, m, k)
        out[i] = sub[np.arange(m), :, np.arange(m), :]
    return tuple(sigma**2 * (Ti[None] @ P @ Ti.T[None]) for P, Ti in zip(out, T))
