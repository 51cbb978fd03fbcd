"""The generic kernel's Gaussian likelihood with a residual variance function and AR(1) errors.

The density of :func:`bayesmix.bayes.residual_model.structured_potential` for
the structures it covers: the variance functions varIdent, varPower and varExp
of a covariate, and varFixed, and the correlation structures corAR1 and corCAR1
(nlme's ``weights=`` and ``correlation=``), written whitened as there,

    log p(y) = -1/2 sum W^2 - sum log s_i - 1/2 sum log(1 - rho_k^2) - n/2 log(2 pi),

with ``log s_i = log sigma_c + log g_i - mean(log g) - 1/2 log w_i``,
``e_i = (y_i - eta_i) / s_i`` and, along each group's rows in time order,
``W_k = (e_k - rho_k e_(k-1)) / sqrt(1 - rho_k^2)`` (``rho = 0`` at a group's first
row, ``phi^gap`` for corAR1, ``phi^gap`` with real gaps for corCAR1). The
gradient is written out in reverse mode.

Notation
--------
eta : linear predictor; e : scaled residuals; W : whitened residuals; u : the
variance function's parameters (log delta, power or exponent); phi : the
correlation parameter; s : each row's residual SD.

Layout
------
``res_i``: variance kind, number of u, correlation kind, position of phi in x,
position of log sigma (or log sigma_c) in x, then the positions of u, then per
row the stratum, the time order and the first-of-group flag (by order).
``res_f``: phi's interval (lower, upper), then per row the covariate term (log|v|
for varPower, v for varExp, 1/2 log v for varFixed), the gap (by order) and log w.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# variance kinds: none, varIdent, a power or exponent of a covariate, varFixed
NO_VARIANCE, VAR_IDENT, VAR_LINEAR, VAR_FIXED = 0, 1, 2, 3
# correlation kinds
NO_CORRELATION, COR_AR1, COR_CAR1 = 0, 1, 2
HEADER = 5
LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=False)
def _rho(kind, phi, gap):
    """rho at a row and d rho / d phi."""
    if kind == COR_AR1:
        if gap == 1.0:
            return phi, 1.0
        return phi**gap, gap * phi ** (gap - 1.0)
    rho = math.exp(gap * math.log(phi))
    return rho, gap * rho / phi


@njit(cache=False)
def structured_gaussian(x, grad, y, eta, d, res_i, res_f):
    """Log-likelihood; ``d`` gets d/d eta, ``grad`` the structure's and sigma's parts."""
    n = y.size
    var_kind, n_u, cor_kind, phi_pos, sigma_pos = res_i[0], res_i[1], res_i[2], res_i[3], res_i[4]
    u_pos = res_i[HEADER : HEADER + n_u]
    strata = res_i[HEADER + n_u : HEADER + n_u + n]
    order = res_i[HEADER + n_u + n : HEADER + n_u + 2 * n]
    first = res_i[HEADER + n_u + 2 * n : HEADER + n_u + 3 * n]
    covariate, gap, log_w = res_f[2 : 2 + n], res_f[2 + n : 2 + 2 * n], res_f[2 + 2 * n : 2 + 3 * n]
    work = np.empty(3 * n + n_u)
    log_s, e, adj_e = work[:n], work[n : 2 * n], work[2 * n : 3 * n]
    adj_u = work[3 * n :]
    for m in range(n_u):
        adj_u[m] = 0.0
    # each row's log SD: sigma, the variance function (centred), the prior weights
    centre = 0.0
    for i in range(n):
        if var_kind == VAR_IDENT:
            log_g = 0.0 if strata[i] == 0 else x[u_pos[strata[i] - 1]]
        elif var_kind == VAR_LINEAR:
            log_g = x[u_pos[strata[i]]] * covariate[i]
        elif var_kind == VAR_FIXED:
            log_g = covariate[i]
        else:
            log_g = 0.0
        log_s[i] = log_g
        centre += log_g
    centre /= n
    total_log_s = 0.0
    for i in range(n):
        log_s[i] += x[sigma_pos] - centre - 0.5 * log_w[i]
        e[i] = (y[i] - eta[i]) * math.exp(-log_s[i])
        total_log_s += log_s[i]
        adj_e[i] = 0.0
    # whitening along each group's rows in time order
    squares, log_det, adj_phi = 0.0, 0.0, 0.0
    phi = 0.0
    if cor_kind != NO_CORRELATION:
        s = 1.0 / (1.0 + math.exp(-x[phi_pos]))
        phi = res_f[0] + (res_f[1] - res_f[0]) * s
    for k in range(n):
        r = order[k]
        if cor_kind == NO_CORRELATION or first[k] == 1:
            squares += e[r] * e[r]
            adj_e[r] -= e[r]
            continue
        previous = order[k - 1]
        rho, d_rho = _rho(cor_kind, phi, gap[k])
        one_minus = 1.0 - rho * rho
        c = 1.0 / math.sqrt(one_minus)
        w = (e[r] - rho * e[previous]) * c
        squares += w * w
        log_det += math.log(one_minus)
        adj_e[r] -= w * c
        adj_e[previous] += w * rho * c
        adj_phi += (w * e[previous] * c - w * w * rho * c * c + rho * c * c) * d_rho
    logp = -0.5 * squares - total_log_s - 0.5 * log_det - 0.5 * n * LOG_2PI
    # back to eta, log sigma and the variance function's parameters
    mean_adj = 0.0
    for i in range(n):
        scale = math.exp(-log_s[i])
        d[i] = -adj_e[i] * scale
        adj_log_s = -adj_e[i] * e[i] - 1.0
        grad[sigma_pos] += adj_log_s
        adj_e[i] = adj_log_s  # reused: d/d log s_i
        mean_adj += adj_log_s
    mean_adj /= n
    if var_kind == VAR_IDENT or var_kind == VAR_LINEAR:
        for i in range(n):
            adj_g = adj_e[i] - mean_adj  # log g enters less its mean
            if var_kind == VAR_IDENT:
                if strata[i] > 0:
                    adj_u[strata[i] - 1] += adj_g
            else:
                adj_u[strata[i]] += adj_g * covariate[i]
        for m in range(n_u):
            grad[u_pos[m]] += adj_u[m]
    if cor_kind != NO_CORRELATION:
        s = 1.0 / (1.0 + math.exp(-x[phi_pos]))
        grad[phi_pos] += adj_phi * (res_f[1] - res_f[0]) * s * (1.0 - s)
    return logp
