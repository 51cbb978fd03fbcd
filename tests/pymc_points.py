"""A PyMC model's value point from natural parameter values, for tests that evaluate
a model's log density where they choose."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt


def value_point(model, values: dict) -> dict:
    """Values of the model's value variables (transformed where the RV is)."""
    point = model.initial_point()
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        if rv.name in values:
            transform = model.rvs_to_transforms.get(rv)
            v = np.asarray(values[rv.name], dtype=float)
            if transform is not None:
                v = transform.forward(pt.as_tensor_variable(v), *rv.owner.inputs).eval()
            point[value_var.name] = v
    return point
