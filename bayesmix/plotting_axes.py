"""Axes and value helpers shared by the plotting modules (matplotlib imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes

__all__ = ["finite_values", "single_axes"]


def finite_values(values: Any, what: str) -> np.ndarray:
    """The finite entries of ``values``, flattened; at least two, else ValueError."""
    array = np.asarray(values, dtype=float).ravel()
    array = array[np.isfinite(array)]
    if array.size < 2:
        raise ValueError(f"need at least two finite {what} to plot")
    return array


def single_axes(ax: Axes | None, height: float = 4.0) -> Axes:
    """``ax``, or the Axes of a new figure readable at a notebook's default size."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new_ax = plt.subplots(figsize=(5.5, height), layout="constrained")
    return new_ax
