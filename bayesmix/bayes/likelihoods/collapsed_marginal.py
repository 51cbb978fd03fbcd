"""The marginal log-likelihood of the collapsed model from the data's moments.

:class:`CollapsedMarginal` turns ``(Q, t)`` (from
:mod:`bayesmix.bayes.likelihoods.collapsed_kernels`) and the variance parameters into the
log-likelihood of :mod:`bayesmix.bayes.likelihoods.collapsed`, with its gradient in
closed form, so that PyTensor differentiates no Cholesky factor: its autodiff
graph of the small dense algebra cost ~0.2 ms a gradient on InstEval, the
closed form ~0.05 ms. The small Cholesky factor and inverse are plain loops,
which numba compiles faster than its LAPACK bindings.

Gradient of the marginal log-likelihood ``l`` (notation of
:mod:`bayesmix.bayes.likelihoods.collapsed`; ``mu = A^-1 h`` the conditional posterior
mean of ``gamma``, ``a = diag(A^-1)``, ``v0 = diag(V0)``)::

    dl/dQ = -1 / (2 sigma^2),   dl/dt = mu / sigma^2,
    dl/dtau_J = -|J| / tau + sum_J (a_j + mu_j^2) / tau^3      (a block SD, zero prior mean)
    dl/dsigma = -n / sigma + (RSS + T) / sigma^3,
    RSS = Q - 2 mu't + sigma^2 (mu'h - mu'V0^-1 mu),   T = sigma^2 (n_t - sum_j a_j / v0_j),

where ``RSS + T`` is the expected residual sum of squares ``E||r - W gamma||^2``
given the data. ``a`` comes from the Schur complement: ``S^-1`` on the dense
part; only its trace is needed on the diagonal block,
``tr(D^-1) + tr(S^-1 B'D^-2 B) / sigma^4``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesmix.bayes.likelihoods.numba_kernels import register_kernel, source_salt

LOG_2PI = float(np.log(2 * np.pi))


def collapsed_marginal(
    q,
    t,
    sigma,
    term_sd,
    diag_sd,
    fixed_mu,
    fixed_sd,
    n_obs,
    sd_term,
    G,
    dzz,
    b_indptr,
    b_cols,
    b_vals,
):
    """Marginal log-likelihood and its gradients (module docstring); numba-compilable.

    The op's form of :func:`marginal`: scalars as 0-d arrays, results as arrays.
    Returns ``(loglik, dl/dQ, dl/dt, dl/dsigma, dl/dterm_sd, dl/ddiag_sd)``.
    """
    loglik, g_q, g_t, g_sigma, g_term, g_diag = marginal(
        q[()],
        t,
        sigma[()],
        term_sd,
        diag_sd[()],
        fixed_mu,
        fixed_sd,
        n_obs[()],
        sd_term,
        G,
        dzz,
        b_indptr,
        b_cols,
        b_vals,
    )
    return (
        np.asarray(loglik),
        np.asarray(g_q),
        g_t,
        np.asarray(g_sigma),
        g_term,
        np.asarray(g_diag),
    )


@njit(cache=True)
def marginal(
    q, t, s, term_sd, tau_f, fixed_mu, fixed_sd, n, sd_term, G, dzz, b_indptr, b_cols, b_vals
):
    """:func:`collapsed_marginal` with scalars as floats (also for the generic kernel).

    Returns ``(loglik, dl/dQ, dl/dt, dl/dsigma, dl/dterm_sd, dl/dtau_f)``.
    """
    s2 = s * s
    p = fixed_mu.shape[0]
    p_c = G.shape[0]
    n_f = dzz.shape[0]
    n_t = p_c + n_f
    vc = np.empty(p_c)
    m0 = np.zeros(p_c)
    for j in range(p):
        vc[j] = fixed_sd[j] * fixed_sd[j]
        m0[j] = fixed_mu[j]
    for j in range(p, p_c):
        vc[j] = term_sd[sd_term[j - p]] ** 2
    D = dzz / s2 + 1.0 / (tau_f * tau_f)
    h = np.empty(n_t)
    for j in range(p_c):
        h[j] = m0[j] / vc[j] + t[j] / s2
    for j in range(n_f):
        h[p_c + j] = t[p_c + j] / s2
    # Schur complement S of the diagonal block, and e = h_c - B' D^-1 h_f / sigma^2
    S = G / s2
    for j in range(p_c):
        S[j, j] += 1.0 / vc[j]
    inv_d = 1.0 / D  # divisions hoisted out of the loops over nonzeros below
    # S -= B'D^-1 B / sigma^4, level by level (each has a few nonzeros in B), upper
    # triangle only; e -= B'D^-1 h_f / sigma^2
    e = h[:p_c].copy()
    C = np.zeros((p_c, p_c))  # B'D^-1 B / sigma^4
    C2 = np.zeros((p_c, p_c))  # B'D^-2 B / sigma^4, for tr(A^-1) over the diagonal block
    for j in range(n_f):
        w = inv_d[j] / (s2 * s2)
        w2 = w * inv_d[j]
        hw = h[p_c + j] * inv_d[j] / s2
        for k in range(b_indptr[j], b_indptr[j + 1]):
            ck, vk = b_cols[k], b_vals[k]
            e[ck] -= vk * hw
            for m in range(k, b_indptr[j + 1]):
                vv = vk * b_vals[m]
                C[ck, b_cols[m]] += vv * w
                C2[ck, b_cols[m]] += vv * w2
    for i in range(p_c):  # symmetrise: only the upper triangle was accumulated
        for m in range(i + 1, p_c):
            C[m, i] = C[i, m]
            C2[m, i] = C2[i, m]
    S -= C
    # S = L L' and S^-1 = L^-T L^-1 by plain loops: p_c is small, and numba compiles
    # these in a fraction of the time its LAPACK bindings take (a cold InstEval fit)
    L = np.zeros((p_c, p_c))
    for j in range(p_c):
        d = S[j, j]
        for k in range(j):
            d -= L[j, k] * L[j, k]
        L[j, j] = np.sqrt(d) if d > 0.0 else np.nan  # not positive definite: NaN density
        for i in range(j + 1, p_c):
            acc = S[i, j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            L[i, j] = acc / L[j, j]
    L_inv = np.zeros((p_c, p_c))
    for j in range(p_c):
        L_inv[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, p_c):
            acc = 0.0
            for k in range(j, i):
                acc -= L[i, k] * L_inv[k, j]
            L_inv[i, j] = acc / L[i, i]
    S_inv = np.zeros((p_c, p_c))
    for i in range(p_c):
        for j in range(i + 1):
            acc = 0.0
            for k in range(i, p_c):
                acc += L_inv[k, i] * L_inv[k, j]
            S_inv[i, j] = acc
            S_inv[j, i] = acc
    mu = np.empty(n_t)
    for i in range(p_c):
        acc = 0.0
        for j in range(p_c):
            acc += S_inv[i, j] * e[j]
        mu[i] = acc
    for j in range(n_f):
        acc = h[p_c + j]
        for k in range(b_indptr[j], b_indptr[j + 1]):
            acc -= b_vals[k] * mu[b_cols[k]] / s2
        mu[p_c + j] = acc * inv_d[j]
    quad = e @ mu[:p_c]
    log_det = 0.0
    for j in range(p_c):
        log_det += 2.0 * np.log(L[j, j])
    for j in range(n_f):
        quad += h[p_c + j] * h[p_c + j] * inv_d[j]
        log_det += np.log(D[j])
    log_v0 = np.sum(np.log(vc)) + 2.0 * n_f * np.log(tau_f)
    loglik = (
        -n * np.log(s)
        - 0.5 * n * LOG_2PI
        - 0.5 * q / s2
        - 0.5 * np.sum(m0 * m0 / vc)
        - 0.5 * log_v0
        + 0.5 * quad
        - 0.5 * log_det
    )
    # diag(A^-1) on the dense part; its trace on the diagonal block:
    # tr(D^-1) + tr(S^-1 B'D^-2 B) / sigma^4
    a = np.empty(p_c)
    for j in range(p_c):
        a[j] = S_inv[j, j]
    trace_f = np.sum(inv_d) + np.sum(S_inv * C2)
    g_t = mu / s2
    g_term = np.zeros(term_sd.shape[0])
    count = np.zeros(term_sd.shape[0])
    for j in range(p, p_c):
        g_term[sd_term[j - p]] += a[j] + mu[j] * mu[j]
        count[sd_term[j - p]] += 1.0
    for k in range(term_sd.shape[0]):
        tau = term_sd[k]
        g_term[k] = -count[k] / tau + g_term[k] / tau**3
    g_diag = -n_f / tau_f + (trace_f + np.sum(mu[p_c:] ** 2)) / tau_f**3
    mu_v0_mu = np.sum(mu[:p_c] ** 2 / vc) + np.sum(mu[p_c:] ** 2) / (tau_f * tau_f)
    rss = q - 2.0 * (mu @ t) + s2 * (mu @ h - mu_v0_mu)
    trace = s2 * (n_t - np.sum(a / vc) - trace_f / (tau_f * tau_f))
    g_sigma = -n / s + (rss + trace) / s**3
    return loglik, -0.5 / s2, g_t, g_sigma, g_term, g_diag


class CollapsedMarginal(Op):
    """The marginal log-likelihood from the data moments (see :func:`collapsed_marginal`).

    Inputs: ``q``, ``t``, ``sigma``, ``term_sd``, ``diag_sd`` (differentiable),
    then ``fixed_mu``, ``fixed_sd`` (prior data), ``n_obs`` and the constants of
    :class:`bayesmix.bayes.likelihoods.collapsed.SchurParts`. Outputs: the
    log-likelihood and its gradients with respect to the first five inputs.
    """

    __props__ = ()

    def make_node(self, *inputs):
        inputs = [pt.as_tensor_variable(v) for v in inputs]
        outputs = [pt.dscalar()] + [
            pt.tensor(dtype="float64", shape=inputs[i].type.shape) for i in range(5)
        ]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        values = _marginal_jit()(*inputs)
        for storage, value in zip(output_storage, values, strict=True):
            storage[0] = np.asarray(value, dtype="float64")

    def pullback(self, inputs, outputs, cotangents):
        if any(not isinstance(g.type, DisconnectedType) for g in cotangents[1:]):
            raise NotImplementedError("CollapsedMarginal has no second derivatives")
        scale = cotangents[0]
        return [
            outputs[i + 1] * scale if i < 5 else grad_undefined(self, i, var)
            for i, var in enumerate(inputs)
        ]


_MARGINAL_JIT = []


def _marginal_jit():
    """``collapsed_marginal`` compiled by numba (for ``perform``; once per process)."""
    if not _MARGINAL_JIT:
        import numba

        _MARGINAL_JIT.append(numba.njit(cache=True)(collapsed_marginal))
    return _MARGINAL_JIT[0]


register_kernel(
    CollapsedMarginal,
    lambda op: (
        collapsed_marginal,
        source_salt(inspect.getsource(collapsed_marginal), inspect.getsource(marginal.py_func)),
    ),
)
