"""The generic kernel's Gaussian likelihood with residual variance functions and correlations.

The density of :func:`bayesmix.bayes.residual_model.structured_potential` for
the structures it covers: the variance functions varIdent, varPower, varExp,
varConstPower (of a covariate or of the fitted values), varFixed and their
combinations (varComb), and the correlation structures corAR1, corCAR1 and
corCompSymm (nlme's ``weights=`` and ``correlation=``), written whitened as there,

    log p(y) = -1/2 e' C^-1 e - sum log s_i - 1/2 log|C| - n/2 log(2 pi),

with ``log s_i = log sigma_c + log g_i - mean(log g) - 1/2 log w_i`` and
``e_i = (y_i - eta_i) / s_i``. For corAR1/corCAR1, along each group's rows in
time order, ``e' C^-1 e = sum W_k^2`` with ``W_k = (e_k - rho_k e_(k-1)) /
sqrt(1 - rho_k^2)`` (``rho = 0`` at a group's first row, ``phi^gap``); for
corCompSymm a group of m rows has ``e' C^-1 e = (S2 - r S1^2) / (1 - rho)`` with
``S1 = sum e``, ``S2 = sum e^2``, ``r = rho / (1 + (m - 1) rho)`` and
``log|C| = (m - 1) log(1 - rho) + log(1 + (m - 1) rho)``. The gradient is written out
in reverse mode.

Notation
--------
eta : linear predictor; e : scaled residuals; u : a variance function's
parameters (log delta, power, exponent, log const); phi, rho : the correlation
parameter; s : each row's residual SD; v : a variance covariate (or fitted value).

Layout
------
``res_i``: number of variance parts, correlation kind, position of phi (or rho)
in x, position of log sigma (or log sigma_c), number of correlation groups; per
part its kind, whether it uses the fitted values, and the positions in x of its
first and second parameter vectors (-1 if none); then per part each row's
stratum; then each row's time order, first-of-group flag (by order) and
correlation group. ``res_f``: the correlation parameter's interval (lower,
upper); per part each row's covariate term (log|v| for powers, v for exponents,
1/2 log v for varFixed, the offset when the part uses the fitted values); then
the gap (by order) and log w of each row.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.bayes.generic.dense_correlation import dense_groups
from bayesmix.bayes.generic.special import logaddexp

# variance part kinds
VAR_IDENT, VAR_POWER, VAR_EXP, VAR_CONST_POWER, VAR_FIXED = 1, 2, 3, 4, 5
# correlation kinds; the last three factor each group's dense matrix
NO_CORRELATION, COR_AR1, COR_CAR1, COR_COMP_SYMM = 0, 1, 2, 3
COR_EXP, COR_GAUS, COR_SYMM, COR_ARMA = 4, 5, 6, 7
HEADER, PART_WIDTH = 8, 4
LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=False, error_model="numpy")
def _part_log_g(kind, stratum, term, eta_i, fitted, x, first_a, first_b):
    """One variance part's log g at a row, its derivative in v (for fitted values), and
    the derivatives in its parameters a, b (varConstPower: log const, power)."""
    if kind == VAR_FIXED:
        return term, 0.0, 0.0, 0.0
    if kind == VAR_IDENT:
        if stratum == 0:
            return 0.0, 0.0, 0.0, 0.0
        return x[first_a + stratum - 1], 0.0, 1.0, 0.0
    v = eta_i + term if fitted == 1 else 0.0
    if kind == VAR_EXP:
        covariate = v if fitted == 1 else term
        a = x[first_a + stratum]
        return a * covariate, a if fitted == 1 else 0.0, covariate, 0.0
    log_abs = math.log(abs(v)) if fitted == 1 else term
    if kind == VAR_POWER:
        a = x[first_a + stratum]
        return a * log_abs, a / v if fitted == 1 else 0.0, log_abs, 0.0
    # VAR_CONST_POWER: log(const + |v|^power)
    log_const, power = x[first_a + stratum], x[first_b + stratum]
    log_g = logaddexp(log_const, power * log_abs)
    w_const = math.exp(log_const - log_g)
    w_power = 1.0 - w_const
    d_v = w_power * power / v if fitted == 1 else 0.0
    return log_g, d_v, w_const, w_power * log_abs


@njit(cache=False, error_model="numpy")
def _rho(kind, phi, gap):
    """rho at a row and d rho / d phi (corAR1, corCAR1)."""
    if kind == COR_AR1:
        if gap == 1.0:
            return phi, 1.0
        return phi**gap, gap * phi ** (gap - 1.0)
    rho = math.exp(gap * math.log(phi))
    return rho, gap * rho / phi


@njit(cache=False, error_model="numpy")
def _markov(e, adj_e, order, first, gap, kind, phi):
    """e' C^-1 e and log|C| of AR(1) rows; adj_e gets -1/2 d(e' C^-1 e)/de; and
    d/d phi of -1/2 (e' C^-1 e + log|C|)."""
    squares, log_det, adj_phi = 0.0, 0.0, 0.0
    for k in range(e.size):
        r = order[k]
        if kind == NO_CORRELATION or first[k] == 1:
            squares += e[r] * e[r]
            adj_e[r] -= e[r]
            continue
        previous = order[k - 1]
        rho, d_rho = _rho(kind, phi, gap[k])
        c2 = 1.0 / (1.0 - rho * rho)
        c = math.sqrt(c2)
        w = (e[r] - rho * e[previous]) * c
        squares += w * w
        log_det -= math.log(c2)
        adj_e[r] -= w * c
        adj_e[previous] += w * rho * c
        adj_phi += (w * e[previous] * c - w * w * rho * c2 + rho * c2) * d_rho
    return squares, log_det, adj_phi


@njit(cache=False, error_model="numpy")
def _compound_symmetry(e, adj_e, groups, n_groups, rho):
    """As ``_markov``, for groups with equal correlation ``rho`` between any two rows."""
    sums = np.zeros(3 * n_groups)  # S1, S2 and size of each group
    for i in range(e.size):
        g = groups[i]
        sums[3 * g] += e[i]
        sums[3 * g + 1] += e[i] * e[i]
        sums[3 * g + 2] += 1.0
    quad, log_det, adj_rho = 0.0, 0.0, 0.0
    for g in range(n_groups):
        s1, s2, m = sums[3 * g], sums[3 * g + 1], sums[3 * g + 2]
        big = 1.0 + (m - 1.0) * rho
        r = rho / big
        q = (s2 - r * s1 * s1) / (1.0 - rho)
        quad += q
        log_det += (m - 1.0) * math.log(1.0 - rho) + math.log(big)
        d_q = -s1 * s1 / (big * big * (1.0 - rho)) + q / (1.0 - rho)
        d_log_det = -(m - 1.0) / (1.0 - rho) + (m - 1.0) / big
        adj_rho -= 0.5 * (d_q + d_log_det)
        sums[3 * g] = r * s1  # reused below: r S1 of the group
    for i in range(e.size):
        adj_e[i] -= (e[i] - sums[3 * groups[i]]) / (1.0 - rho)
    return quad, log_det, adj_rho


@njit(cache=False, error_model="numpy")
def structured_gaussian(x, grad, y, eta, d, res_i, res_f):
    """Log-likelihood; ``d`` gets d/d eta, ``grad`` the structure's and sigma's parts."""
    n = y.size
    n_parts, cor_kind, phi_pos, sigma_pos = res_i[0], res_i[1], res_i[2], res_i[3]
    n_groups = res_i[4]
    parts = res_i[HEADER : HEADER + PART_WIDTH * n_parts]
    at = HEADER + PART_WIDTH * n_parts
    strata = res_i[at : at + n_parts * n]
    at += n_parts * n
    order, first, groups = (
        res_i[at : at + n],
        res_i[at + n : at + 2 * n],
        res_i[at + 2 * n : at + 3 * n],
    )
    starts = res_i[at + 3 * n : at + 4 * n + 1]
    terms = res_f[2 : 2 + n_parts * n]
    at = 2 + n_parts * n
    gap, log_w, distance = res_f[at : at + n], res_f[at + n : at + 2 * n], res_f[at + 2 * n :]
    # work: log s, e, adjoints, exp(-log s), and each part's derivatives per row
    work = np.empty(4 * n + 3 * n_parts * n)
    log_s, e, adj_e, scale = work[:n], work[n : 2 * n], work[2 * n : 3 * n], work[3 * n : 4 * n]
    derivatives = work[4 * n :]
    centre = 0.0
    for i in range(n):
        total = 0.0
        for p in range(n_parts):
            o = p * PART_WIDTH
            log_g, d_v, d_a, d_b = _part_log_g(parts[o], strata[p * n + i], terms[p * n + i],
                                               eta[i], parts[o + 1], x, parts[o + 2],
                                               parts[o + 3])  # fmt: skip
            total += log_g
            k = 3 * (p * n + i)
            derivatives[k], derivatives[k + 1], derivatives[k + 2] = d_v, d_a, d_b
        log_s[i] = total
        centre += total
    centre /= n
    total_log_s = 0.0
    for i in range(n):
        log_s[i] += x[sigma_pos] - centre - 0.5 * log_w[i]
        scale[i] = math.exp(-log_s[i])
        e[i] = (y[i] - eta[i]) * scale[i]
        total_log_s += log_s[i]
        adj_e[i] = 0.0
    param, adj_param = 0.0, 0.0
    if cor_kind != NO_CORRELATION and cor_kind < COR_EXP:
        param = res_f[0] + (res_f[1] - res_f[0]) / (1.0 + math.exp(-x[phi_pos]))
    extra = 0.0
    if cor_kind >= COR_EXP:  # adds its parameters' gradient itself
        quad, log_det, extra = dense_groups(x, grad, e, adj_e, order, starts[: n_groups + 1],
                                     groups, distance, cor_kind, phi_pos, res_i[5],
                                     res_i[6], res_i[7], res_f[0], res_f[1])  # fmt: skip
    elif cor_kind == COR_COMP_SYMM:
        quad, log_det, adj_param = _compound_symmetry(e, adj_e, groups, n_groups, param)
    else:
        quad, log_det, adj_param = _markov(e, adj_e, order, first, gap, cor_kind, param)
    logp = extra - 0.5 * quad - total_log_s - 0.5 * log_det - 0.5 * n * LOG_2PI
    # back to eta, log sigma and the variance parameters; adj_e becomes d/d log s
    mean_adj = 0.0
    for i in range(n):
        d[i] = -adj_e[i] * scale[i]
        adj_e[i] = -adj_e[i] * e[i] - 1.0
        grad[sigma_pos] += adj_e[i]
        mean_adj += adj_e[i]
    mean_adj /= n
    for i in range(n):
        adj_g = adj_e[i] - mean_adj  # log g enters less its mean
        for p in range(n_parts):
            o = p * PART_WIDTH
            kind, first_a, first_b = parts[o], parts[o + 2], parts[o + 3]
            stratum = strata[p * n + i]
            k = 3 * (p * n + i)
            if kind == VAR_IDENT:
                if stratum > 0:
                    grad[first_a + stratum - 1] += adj_g
            elif kind != VAR_FIXED:
                grad[first_a + stratum] += adj_g * derivatives[k + 1]
                if kind == VAR_CONST_POWER:
                    grad[first_b + stratum] += adj_g * derivatives[k + 2]
            d[i] += adj_g * derivatives[k]
    if cor_kind != NO_CORRELATION and cor_kind < COR_EXP:
        s = 1.0 / (1.0 + math.exp(-x[phi_pos]))
        grad[phi_pos] += adj_param * (res_f[1] - res_f[0]) * s * (1.0 - s)
    return logp
