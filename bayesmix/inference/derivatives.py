"""Central differences with Richardson extrapolation: Jacobians and Hessians of smooth maps.

Satterthwaite's and the profile's quantities need the Hessian of the deviance in
the variance parameters and the Jacobian of ``V_beta``. The criterion has no
closed-form second derivative here, so they are taken numerically, the way
lmerTest takes them with ``numDeriv`` (Richardson's method): central differences
at steps ``h, h/2, h/4, h/8`` (``h`` 1% of the coordinate) combined so that the
``h^2``, ``h^4`` and ``h^6`` error terms cancel. ``scipy.differentiate`` does the
same adaptively but starts from absolute steps of 0.5, which would step a
standard deviation below zero; the relative steps below keep every point inside
the parameter space. Written
by hand for that reason (about 40 lines).

Notation
--------
x : point (k,); h : step per coordinate; D_j : difference quotient at step
``h / 2^j``; r : number of steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["hessian", "jacobian", "steps"]

#: Relative step, and the absolute step for coordinates near zero. numDeriv starts at
#: 1e-4; the criterion's rounding noise (about 3e-13 on Machines) divided by the squared
#: smallest step then costs 2e-4 in lmerTest's degrees of freedom, while with 1e-2
#: the noise costs ~1e-8 and four Richardson levels leave a truncation error of O(h^8).
RELATIVE_STEP = 1e-2
ZERO_STEP = 1e-2
#: Number of halvings combined by Richardson extrapolation.
LEVELS = 4


def steps(x: np.ndarray) -> np.ndarray:
    """Initial step per coordinate: ``1e-2 |x|``, or ``1e-2`` where ``x`` is near zero."""
    x = np.asarray(x, dtype=float)
    return np.where(np.abs(x) > 1e-6, RELATIVE_STEP * np.abs(x), ZERO_STEP)


def _extrapolate(quotients: list[np.ndarray]) -> np.ndarray:
    """Richardson: combine quotients at halving steps, error in even powers of h."""
    table = list(quotients)
    for m in range(1, len(table)):
        factor = 4.0**m
        table = [(factor * table[j + 1] - table[j]) / (factor - 1.0) for j in range(len(table) - 1)]
    return table[0]


def jacobian(F: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Jacobian of ``F`` at ``x``: ``out[i]`` is ``dF/dx_i`` (shape ``(k,) + F(x).shape``)."""
    x = np.asarray(x, dtype=float)
    h0 = steps(x)
    columns = []
    for i in range(x.size):
        quotients = []
        for j in range(LEVELS):
            h = h0[i] / 2.0**j
            up, down = x.copy(), x.copy()
            up[i] += h
            down[i] -= h
            quotients.append((np.asarray(F(up)) - np.asarray(F(down))) / (2.0 * h))
        columns.append(_extrapolate(quotients))
    return np.array(columns)


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Hessian of the scalar ``f`` at ``x`` (symmetric ``(k, k)``)."""
    x = np.asarray(x, dtype=float)
    k = x.size
    h0 = steps(x)
    f0 = float(f(x))

    def at(shift: dict[int, float]) -> float:
        point = x.copy()
        for i, h in shift.items():
            point[i] += h
        return float(f(point))

    H = np.empty((k, k))
    for i in range(k):
        quotients = []
        for j in range(LEVELS):
            h = h0[i] / 2.0**j
            quotients.append(np.array((at({i: h}) - 2.0 * f0 + at({i: -h})) / h**2))
        H[i, i] = _extrapolate(quotients)
        for c in range(i):
            quotients = []
            for j in range(LEVELS):
                hi, hc = h0[i] / 2.0**j, h0[c] / 2.0**j
                value = (
                    at({i: hi, c: hc})
                    - at({i: hi, c: -hc})
                    - at({i: -hi, c: hc})
                    + at({i: -hi, c: -hc})
                ) / (4.0 * hi * hc)
                quotients.append(np.array(value))
            H[i, c] = H[c, i] = _extrapolate(quotients)
    return H
