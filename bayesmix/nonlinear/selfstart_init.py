"""Crude, closed-form starting values for the self-starting models.

Each ``start_<model>`` routine turns 1-D numpy arrays (covariates, then the
response) into rough parameter values by linearising the model, in the spirit
of R's ``selfStart`` initialisers: logit regressions for the logistic curves,
log-linear regressions and curve peeling for exponentials, and a grid search
over a rate constant with the linear parameters solved exactly (variable
projection) where no linearisation exists. ``bayesmix.nonlinear.selfstart`` refines these
values by pooled nonlinear least squares.

A routine that cannot produce values raises :class:`StartError` with the
reason; the caller turns it into a :class:`~bayesmix.errors.FitError` that
names the model and asks for ``start=``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "StartError",
    "start_asymp",
    "start_biexp",
    "start_fol",
    "start_fpl",
    "start_gompertz",
    "start_logis",
    "start_micmen",
    "start_weibull",
]


class StartError(ValueError):
    """Starting values cannot be derived from the data (message says why)."""


def _xy_means(x: np.ndarray, y: np.ndarray, n_min: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``x`` and the mean response at each (R's sortedXyData)."""
    ux, inverse = np.unique(x, return_inverse=True)
    if ux.size < n_min:
        raise StartError(f"too few distinct input values ({ux.size}; at least {n_min} are needed)")
    means = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux, means


def _line(x: np.ndarray, y: np.ndarray, what: str) -> tuple[float, float]:
    """Intercept and slope of the least-squares line of ``y`` on ``x``."""
    if x.size < 2 or np.ptp(x) == 0:
        raise StartError(f"not enough points for the {what} regression")
    slope, intercept = np.polyfit(x, y, 1)
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise StartError(f"the {what} regression gave non-finite values")
    return float(intercept), float(slope)


def _linear_ls(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients and residual sum of squares of ``y`` on the given columns."""
    basis = np.column_stack(columns)
    coef = np.linalg.lstsq(basis, y, rcond=None)[0]
    resid = y - basis @ coef
    return coef, float(resid @ resid)


def _rate_grid(x: np.ndarray, low: float = 1e-2, high: float = 1e2, n: int = 161) -> np.ndarray:
    """Log-spaced rate constants spanning the time scale of ``x``."""
    span = float(np.ptp(x))
    return np.geomspace(low / span, high / span, n)


def _best_rate(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Grid-search ``k`` in ``y ~ a + b * exp(-k x)``; return k and (a, b)."""
    best = (np.inf, 0.0, np.zeros(2))
    for k in _rate_grid(x):
        coef, rss = _linear_ls([np.ones_like(x), np.exp(-k * x)], y)
        if rss < best[0]:
            best = (rss, k, coef)
    return float(best[1]), best[2]


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def start_logis(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, xmid, scal: regress ``x`` on the logit of the scaled response."""
    x, y = _xy_means(x, y, 3)
    z = y - 1.05 * y.min() if y.min() <= 0 else y
    z = z / (1.05 * z.max())
    xmid, scal = _line(_logit(z), x, "logit")
    if scal == 0:
        raise StartError("the response does not change with the input")
    coef, _ = _linear_ls([1.0 / (1.0 + np.exp((xmid - x) / scal))], y)
    return {"Asym": float(coef[0]), "xmid": xmid, "scal": scal}


def start_fpl(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A, B, xmid, scal: logit regression of the response rescaled to (0, 1)."""
    x, y = _xy_means(x, y, 4)
    lo, rng = y.min(), np.ptp(y)
    if rng == 0:
        raise StartError("the response is constant")
    prop = (y - lo + 0.05 * rng) / (1.1 * rng)
    xmid, scal = _line(_logit(prop), x, "logit")
    if scal == 0:
        raise StartError("the response does not change with the input")
    curve = 1.0 / (1.0 + np.exp((xmid - x) / scal))
    (a, b_minus_a), _ = _linear_ls([np.ones_like(x), curve], y)
    return {"A": float(a), "B": float(a + b_minus_a), "xmid": xmid, "scal": scal}


def start_asymp(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, R0, lrc: best rate on a grid, Asym and R0 by linear regression."""
    x, y = _xy_means(x, y, 3)
    k, (asym, amplitude) = _best_rate(x, y)
    return {"Asym": float(asym), "R0": float(asym + amplitude), "lrc": float(np.log(k))}


def start_asymp_off(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, lrc, c0: the asymptotic regression's start, with R0 moved to the input
    ``c0`` where the curve crosses zero (``R0 = 0`` at ``input = c0``)."""
    start = start_asymp(x, y)
    asym, r0, lrc = start["Asym"], start["R0"], start["lrc"]
    if asym == 0 or (asym - r0) / asym <= 0:
        raise StartError("the fitted curve never crosses zero")
    return {"Asym": asym, "lrc": lrc, "c0": float(np.log((asym - r0) / asym) * np.exp(-lrc))}


def start_asymp_orig(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, lrc: best rate on a grid for ``y = Asym (1 - exp(-k x))``, Asym linear."""
    x, y = _xy_means(x, y, 2)
    best = (np.inf, 1.0, 0.0)
    for k in _rate_grid(x):
        coef, rss = _linear_ls([1.0 - np.exp(-k * x)], y)
        if rss < best[0]:
            best = (rss, k, float(coef[0]))
    return {"Asym": best[2], "lrc": float(np.log(best[1]))}


def start_micmen(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Vm, K: Hanes-Woolf regression ``x / y = K / Vm + x / Vm``."""
    x, y = _xy_means(x, y, 2)
    keep = (x > 0) & (y > 0)
    if keep.sum() < 2:
        raise StartError("fewer than two distinct positive inputs with positive response")
    intercept, slope = _line(x[keep], x[keep] / y[keep], "Hanes-Woolf")
    if slope <= 0:
        raise StartError("the response does not level off (Hanes-Woolf slope <= 0)")
    return {"Vm": 1.0 / slope, "K": intercept / slope}


def start_gompertz(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, b2, b3: log response is an asymptotic regression in ``x``."""
    x, y = _xy_means(x, y, 3)
    if np.any(y <= 0):
        raise StartError("the response must be positive to take logs")
    k, (log_asym, c) = _best_rate(x, np.log(y))
    return {"Asym": float(np.exp(log_asym)), "b2": float(-c), "b3": float(np.exp(-k))}


def start_weibull(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym, Drop, lrc, pwr: log(-log) regression on log ``x`` (R's approach)."""
    x, y = _xy_means(x, y, 4)
    if x.min() < 0:
        raise StartError("the input must be non-negative")
    sign = 1.0 if y[-1] >= y[0] else -1.0  # a decreasing curve has Drop < 0
    z = sign * y
    margin = np.ptp(z) / 8.0
    if margin == 0:
        raise StartError("the response is constant")
    right, left = z.max() + margin, z.min() - margin
    keep = x > 0
    u = np.log(-np.log((right - z[keep]) / (right - left)))
    lrc, pwr = _line(np.log(x[keep]), u, "log(-log)")
    basis = np.exp(-np.exp(lrc) * x**pwr)
    (asym, minus_drop), _ = _linear_ls([np.ones_like(x), basis], y)
    return {"Asym": float(asym), "Drop": float(-minus_drop), "lrc": lrc, "pwr": pwr}


def _terminal_phase(t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Log-linear fit to the later half of the points after the peak: (log A, k)."""
    after = t > t[np.argmax(y)]
    late = after & (t >= np.median(t[after])) & (y > 0) if after.any() else after
    if late.sum() < 2 or np.unique(t[late]).size < 2:
        raise StartError("too few positive points in the terminal phase")
    log_a, slope = _line(t[late], np.log(y[late]), "terminal-phase")
    if slope >= 0:
        raise StartError("the response does not decline in the terminal phase")
    return log_a, -slope


def _two_rates(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Grid search over rate pairs k1 > k2, amplitudes by linear regression."""
    rates = _rate_grid(x, n=50)
    pairs = [(k1, k2) for i, k2 in enumerate(rates) for k1 in rates[i + 1 :]]
    return min(pairs, key=lambda k: _biexp_fit(x, y, *k)[1])


def _biexp_fit(x: np.ndarray, y: np.ndarray, k1: float, k2: float) -> tuple[np.ndarray, float]:
    return _linear_ls([np.exp(-k1 * x), np.exp(-k2 * x)], y)


def start_biexp(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A1, lrc1, A2, lrc2: terminal phase and peeling, or a rate grid if that fits better."""
    x, y = _xy_means(x, y, 4)
    if np.all(np.diff(y) >= 0):
        raise StartError("the response does not decline")
    candidates = [_two_rates(x, y)]  # guards against a noisy terminal phase
    try:
        log_a2, k2 = _terminal_phase(x, y)
        resid = y - np.exp(log_a2 - k2 * x)
        keep = (x < x[len(x) // 2]) & (resid > 0)
        k1 = -_line(x[keep], np.log(resid[keep]), "peeling")[1]
        if k1 > k2:
            candidates.append((k1, k2))
    except StartError:
        pass
    k1, k2 = min(candidates, key=lambda k: _biexp_fit(x, y, *k)[1])
    a1, a2 = _biexp_fit(x, y, k1, k2)[0]
    return {"A1": float(a1), "lrc1": float(np.log(k1)), "A2": float(a2), "lrc2": float(np.log(k2))}


def start_fol(dose: np.ndarray, t: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """lKe, lKa, lCl: terminal phase for ke, ka on a grid, clearance by regression."""
    if np.any(dose <= 0):
        raise StartError("doses must be positive")
    _xy_means(t, y, 3)  # only checks the number of distinct times
    order = np.argsort(t, kind="stable")
    t, dose, y = t[order], dose[order], y[order]
    ke = _terminal_phase(t, y / dose)[1]
    best = (np.inf, np.nan, np.nan)
    for ka in ke * np.geomspace(1.05, 1e3, 160):
        shape = dose * ke * ka / (ka - ke) * (np.exp(-ke * t) - np.exp(-ka * t))
        scale = float(shape @ y) / float(shape @ shape)  # = 1 / Cl
        if scale > 0:
            rss = float(np.sum((y - scale * shape) ** 2))
            if rss < best[0]:
                best = (rss, ka, scale)
    if not np.isfinite(best[0]):
        raise StartError("no absorption rate gives a positive clearance")
    _, ka, scale = best
    return {"lKe": float(np.log(ke)), "lKa": float(np.log(ka)), "lCl": float(-np.log(scale))}
