"""The collapsed Gaussian likelihood in the generic kernel (family ``COLLAPSED``).

The log-likelihood of :mod:`bayesmix.bayes.likelihoods.collapsed` with the
fixed effects and the collapsed blocks' effects integrated out: from the
residual ``r = y - eta`` of the sampled effects it forms ``Q = r'r`` and
``t = W'r`` and calls the same closed-form marginal and gradient
(:func:`bayesmix.bayes.likelihoods.collapsed_marginal.marginal`) as the PyMC op
does. The adjoint of ``eta`` is ``-(2 dl/dQ r + W dl/dt)``.

The program's residual arrays carry the constants (there is no residual
structure in a collapsed model), in this order:

* ints: ``p``, ``p_c``, ``n_f``, ``n_term_sd``, the position in x of the
  diagonal block's log SD (-1 without one), the positions of the dense block
  terms' log SDs, ``sd_term`` (``p_c - p``), ``B`` in CSR (``b_indptr``,
  ``b_cols``) and ``W`` in CSC (``w_indptr``, ``w_rows``);
* floats: the fixed effects' prior means and SDs, ``G`` (``p_c x p_c``),
  ``dzz``, ``b_vals``, ``w_vals``.

Notation as :mod:`bayesmix.bayes.likelihoods.collapsed`: ``W = [X_c, Z_f]``,
``p_c`` dense coefficients (``p`` of them fixed), ``n_f`` diagonal-block levels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.bayes.likelihoods.collapsed_marginal import marginal

#: family code of the collapsed likelihood (beside those of ``families``)
COLLAPSED = 20
HEADER = 5


@njit(cache=False, error_model="numpy")
def collapsed_gaussian(x, grad, y, eta, d, sigma_pos, res_i, res_f):
    """Log-likelihood at ``eta`` (the sampled effects); ``d`` receives its adjoint in eta."""
    p, p_c, n_f, n_ts, diag_pos = res_i[0], res_i[1], res_i[2], res_i[3], res_i[4]
    at = HEADER
    term_pos = res_i[at : at + n_ts]
    at += n_ts
    sd_term = res_i[at : at + p_c - p]
    at += p_c - p
    b_indptr = res_i[at : at + n_f + 1]
    at += n_f + 1
    nnz_b = b_indptr[n_f]
    b_cols = res_i[at : at + nnz_b]
    at += nnz_b
    n_t = p_c + n_f
    w_indptr = res_i[at : at + n_t + 1]
    at += n_t + 1
    w_rows = res_i[at : at + w_indptr[n_t]]
    at = 0
    fixed_mu = res_f[at : at + p]
    fixed_sd = res_f[at + p : at + 2 * p]
    at += 2 * p
    G = res_f[at : at + p_c * p_c].reshape((p_c, p_c))
    at += p_c * p_c
    dzz = res_f[at : at + n_f]
    at += n_f
    b_vals = res_f[at : at + nnz_b]
    at += nnz_b
    w_vals = res_f[at : at + w_indptr[n_t]]
    n = y.size
    q = 0.0
    for i in range(n):
        r = y[i] - eta[i]
        d[i] = r  # the residual, until the adjoint replaces it below
        q += r * r
    t = np.zeros(n_t)
    for j in range(n_t):
        acc = 0.0
        for k in range(w_indptr[j], w_indptr[j + 1]):
            acc += w_vals[k] * d[w_rows[k]]
        t[j] = acc
    s = math.exp(x[sigma_pos])
    term_sd = np.empty(n_ts)
    for k in range(n_ts):
        term_sd[k] = math.exp(x[term_pos[k]])
    tau_f = math.exp(x[diag_pos]) if diag_pos >= 0 else 1.0
    loglik, g_q, g_t, g_sigma, g_term, g_diag = marginal(
        q, t, s, term_sd, tau_f, fixed_mu, fixed_sd, float(n), sd_term, G, dzz,
        b_indptr, b_cols, b_vals,
    )  # fmt: skip
    grad[sigma_pos] += g_sigma * s  # x holds log sigma and log SDs
    for k in range(n_ts):
        grad[term_pos[k]] += g_term[k] * term_sd[k]
    if diag_pos >= 0:
        grad[diag_pos] += g_diag * tau_f
    for i in range(n):  # d(loglik)/d(eta_i) = -(2 g_q r_i + sum_j W_ij g_t_j)
        d[i] = -2.0 * g_q * d[i]
    for j in range(n_t):
        for k in range(w_indptr[j], w_indptr[j + 1]):
            d[w_rows[k]] -= w_vals[k] * g_t[j]
    return loglik
