"""Statistical assertion helpers for posterior draws (their failure is tested in
tests/test_bayes_fit.py)."""

from __future__ import annotations

import numpy as np


def assert_within_k_sd(draws: np.ndarray, target: float, k: float = 2.0, label: str = "") -> None:
    """Assert that ``target`` lies within ``k`` posterior SDs of the posterior mean."""
    draws = np.asarray(draws, dtype=float).ravel()
    mean, sd = draws.mean(), draws.std(ddof=1)
    assert abs(mean - target) <= k * sd, (
        f"{label}: posterior mean {mean:.4g} is {abs(mean - target) / sd:.2f} SDs "
        f"from {target:.4g} (allowed {k})"
    )
