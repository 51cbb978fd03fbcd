"""Compiled inner loops of PIRLS (numba): the response's log-likelihood and derivatives,
``Z Lambda`` products, and the weighted blocked system, each in one pass.

A GLMM fit evaluates the Laplace objective hundreds of times, each a few PIRLS
iterations; in numpy each iteration was some forty small array operations whose call
overhead set the time. These kernels do the arithmetic of
:class:`~bayesmix.spec.response_likelihood.ResponseLikelihood` and
:class:`~bayesmix.ml.glmm_blocked.ZLambda` (the numpy reference, which serves the rare
calls) in one pass each; ``tests/test_glmm_kernel.py`` checks that both agree.

The blocked system is that of :mod:`bayesmix.ml.glmm_blocked`: block 1 (the largest)
level by level, the rest (other blocks, then the fixed effects when bordered) as a
dense Schur complement; each level's column of ``A21`` touches only the rest's
coefficients that share a row with it, so the Schur update runs over those.

Notation
--------
As in :mod:`bayesmix.ml.glmm_blocked`; ``IDX``/``VAL`` (n x K) hold each row's
positions in ``u`` and its coefficients of ``Z Lambda`` over all blocks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["FAMILY_CODES", "LINK_CODES", "evaluate", "schur_solve", "z_times", "zt_times"]

FAMILY_CODES = {"binomial": 0, "poisson": 1, "negbinomial": 2, "gamma": 3}
LINK_CODES = {
    "identity": 0,
    "log": 1,
    "logit": 2,
    "probit": 3,
    "cloglog": 4,
    "inverse": 5,
    "sqrt": 6,
}
_EPS = np.finfo(float).eps
_CLIP = 1e-15
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@njit(cache=True, error_model="numpy")
def _inverse_link(link: int, eta: float):
    """``mu``, ``dmu/deta`` and ``d2mu/deta2``."""
    if link == 0:
        return eta, 1.0, 0.0
    if link == 1:
        mu = math.exp(eta)
        return mu, mu, mu
    if link == 2:
        if eta >= 0:
            mu = 1.0 / (1.0 + math.exp(-eta))
        else:
            e = math.exp(eta)
            mu = e / (1.0 + e)
        m1 = mu * (1.0 - mu)
        return mu, m1, m1 * (1.0 - 2.0 * mu)
    if link == 3:
        mu = 0.5 * math.erfc(-eta / math.sqrt(2.0))
        m1 = math.exp(-0.5 * eta * eta) / _SQRT_2PI
        return mu, m1, -eta * m1
    if link == 4:
        mu = -math.expm1(-math.exp(eta))
        m1 = math.exp(eta - math.exp(eta))
        return mu, m1, m1 * -math.expm1(eta)
    if link == 5:
        return 1.0 / eta, -1.0 / (eta * eta), 2.0 / (eta * eta * eta)
    return eta * eta, 2.0 * eta, 2.0


@njit(cache=True, error_model="numpy")
def _count(family: int, y, n, s, const, mu, disp):
    """``l``, ``l_mu``, ``l_mumu`` of one row without zero inflation."""
    if family == 0:
        ll = const + s * math.log(mu) + (n - s) * math.log1p(-mu)
        return ll, s / mu - (n - s) / (1.0 - mu), -s / mu**2 - (n - s) / (1.0 - mu) ** 2
    if family == 1:
        if mu < 0.0:
            return -math.inf, 0.0, 0.0
        ll = const - mu + (y * math.log(mu) if y > 0 else 0.0)
        return ll, y / mu - 1.0, -y / mu**2
    if family == 2:
        if mu < 0.0:
            return -math.inf, 0.0, 0.0
        t = disp
        ll = (
            const
            + math.lgamma(y + t)
            - math.lgamma(t)
            + t * math.log(t)
            + (y * math.log(mu) if y > 0 else 0.0)
            - (y + t) * math.log(t + mu)
        )
        return ll, y / mu - (y + t) / (t + mu), -y / mu**2 + (y + t) / (t + mu) ** 2
    nu = disp
    if mu <= 0.0:
        return -math.inf, 0.0, 0.0
    ll = const + nu * math.log(nu) - math.lgamma(nu)
    ll += nu * (math.log(y) - math.log(mu)) - nu * y / mu
    return ll, nu * (y - mu) / mu**2, nu / mu**2 - 2.0 * nu * y / mu**3


@njit(cache=True, error_model="numpy")
def _variance(family: int, mu: float, disp: float) -> float:
    if family == 0:
        return mu * (1.0 - mu)
    if family == 1:
        return mu
    if family == 2:
        return mu + mu * mu / disp
    return mu * mu / disp


@njit(cache=True, error_model="numpy")
def evaluate(family, link, y, n, s, const, eta, disp, zi_eta, derivatives, mu, d1, d2, fisher):
    """Sum of the rows' log-likelihoods at ``eta``; with ``derivatives`` also fills
    ``mu``, ``dl/deta`` (``d1``), ``d2l/deta2`` (``d2``) and the expected information
    (``fisher``, floored at eps as lme4 floors its weights). ``zi_eta`` has length 0
    without zero inflation."""
    total = 0.0
    inflated = zi_eta.shape[0] > 0
    for i in range(eta.shape[0]):
        m, m1, m2 = _inverse_link(link, eta[i])
        if family == 0:
            m = min(max(m, _CLIP), 1.0 - _CLIP)
        ll, l_mu, l_mumu = _count(family, y[i], n[i], s[i], const[i], m, disp)
        g1 = l_mu * m1
        g2 = l_mumu * m1 * m1 + l_mu * m2
        if inflated:
            z = zi_eta[i]
            log_pi = -math.log1p(math.exp(-z)) if z > -30 else z
            log_not = -math.log1p(math.exp(z)) if z < 30 else -z
            if y[i] == 0:
                a, b = log_pi, log_not + ll
                top = max(a, b)
                zero = top
                if top > -math.inf:
                    zero = top + math.log(math.exp(a - top) + math.exp(b - top))
                r = math.exp(b - zero) if zero > -math.inf else 0.0
                g2 = r * g2 + r * (1.0 - r) * g1 * g1
                g1 = r * g1
                ll = zero
            else:
                ll = log_not + ll
        total += ll
        if derivatives:
            mu[i] = m
            d1[i] = g1
            d2[i] = g2
            m1f = m1 if abs(m1) >= _EPS else math.copysign(_EPS, m1)
            fisher[i] = n[i] * m1f * m1f / max(_variance(family, m, disp), _EPS)
    return total


@njit(cache=True, error_model="numpy")
def z_times(IDX, VAL, u, out):
    """``out += Z Lambda u``."""
    for i in range(IDX.shape[0]):
        acc = 0.0
        for j in range(IDX.shape[1]):
            acc += VAL[i, j] * u[IDX[i, j]]
        out[i] += acc


@njit(cache=True, error_model="numpy")
def zt_times(IDX, VAL, d, q):
    """``Lambda' Z' d``."""
    out = np.zeros(q)
    for i in range(IDX.shape[0]):
        for j in range(IDX.shape[1]):
            out[IDX[i, j]] += VAL[i, j] * d[i]
    return out


@njit(cache=True, error_model="numpy")
def _assemble(W, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p):
    """``A11`` (m1, k1, k1), ``A21`` (d, q1) and ``A22`` (d, d), d = q_r + p."""
    d = q_r + p
    q1 = m1 * k1
    A11 = np.zeros((m1, k1, k1))
    A21 = np.zeros((d, q1))
    A22 = np.zeros((d, d))
    Kr = idx_r.shape[1]
    for i in range(W.shape[0]):
        w = W[i]
        lev = level[i]
        for a in range(k1):
            wa = w * val1[i, a]
            for b in range(k1):
                A11[lev, a, b] += wa * val1[i, b]
            col = idx1[i, a]
            for r in range(Kr):
                A21[idx_r[i, r], col] += val_r[i, r] * wa
            for c in range(p):
                A21[q_r + c, col] += X[i, c] * wa
        for r in range(Kr):
            wr = w * val_r[i, r]
            row = idx_r[i, r]
            for c in range(Kr):
                A22[row, idx_r[i, c]] += wr * val_r[i, c]
            for c in range(p):
                A22[row, q_r + c] += wr * X[i, c]
                A22[q_r + c, row] += wr * X[i, c]
        for a in range(p):
            wa = w * X[i, a]
            for b in range(p):
                A22[q_r + a, q_r + b] += wa * X[i, b]
    for lev in range(m1):
        for a in range(k1):
            A11[lev, a, a] += 1.0
    for r in range(q_r):
        A22[r, r] += 1.0
    return A11, A21, A22


@njit(cache=True, error_model="numpy")
def _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows):
    """The rows of ``A21`` that level ``lev``'s columns can touch: the rest's
    coefficients sharing a row of the data with it (precomputed), then every fixed
    effect when bordered. Returns their count (written into ``rows``)."""
    count = 0
    for t in range(lvl_ptr[lev], lvl_ptr[lev + 1]):
        rows[count] = lvl_rows[t]
        count += 1
    for c in range(p):
        rows[count] = q_r + c
        count += 1
    return count


@njit(cache=True, error_model="numpy")
def _schur(A11, A21, A22, lvl_ptr, lvl_rows, q_r, p):
    """``A11^-1`` per level and ``S = A22 - A21 A11^-1 A21'``, each level's update over
    the rows of ``A21`` its columns touch; and ``log det A11``."""
    m1, k1 = A11.shape[0], A11.shape[1]
    d = A22.shape[0]
    inverse = np.empty_like(A11)
    log_det = 0.0
    ok = True
    S = A22.copy()
    rows = np.empty(d, dtype=np.int64)
    for lev in range(m1):
        block = A11[lev]
        if k1 == 1:
            if not block[0, 0] > 0.0:
                ok = False
                block[0, 0] = 1.0
            inverse[lev, 0, 0] = 1.0 / block[0, 0]
            log_det += math.log(block[0, 0])
        else:
            try:
                L = np.linalg.cholesky(block)
            except Exception:  # not positive definite
                ok = False
                L = np.eye(k1)
                block = np.eye(k1)
            for a in range(k1):
                log_det += 2.0 * math.log(L[a, a])
            inverse[lev] = np.linalg.inv(block)
        count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
        for x in range(count):
            rx = rows[x]
            for a in range(k1):
                c = 0.0
                for b in range(k1):
                    c += A21[rx, lev * k1 + b] * inverse[lev, b, a]
                if c == 0.0:
                    continue
                for y in range(count):
                    ry = rows[y]
                    S[rx, ry] -= c * A21[ry, lev * k1 + a]
    return inverse, S, log_det, ok


@njit(cache=True, error_model="numpy")
def _cholesky(S):
    """Lower Cholesky factor of ``S`` and whether ``S`` is positive definite.

    Mostly-zero ``S`` (nested factors: after block 1 is eliminated, grouseticks'
    broods touch only their own location) is factored column by column over the
    nonzero rows only, so a 181 x 181 ``S`` whose brood part is diagonal costs
    little more than its 63 locations; denser ones go to LAPACK."""
    d = S.shape[0]
    nonzero = 0
    for i in range(d):
        for j in range(i):
            if S[i, j] != 0.0:
                nonzero += 1
    if 2 * nonzero > d * (d - 1) // 2:  # more than half the lower triangle: LAPACK
        for j in range(d):
            if not S[j, j] > 0.0:
                return S, False
        try:
            return np.linalg.cholesky(S), True
        except Exception:  # not positive definite
            return S, False
    L = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1):
            L[i, j] = S[i, j]
    rows = np.empty(d, dtype=np.int64)
    for j in range(d):
        pivot = L[j, j]
        if not pivot > 0.0:
            return L, False
        root = math.sqrt(pivot)
        L[j, j] = root
        count = 0
        for i in range(j + 1, d):
            if L[i, j] != 0.0:
                L[i, j] /= root
                rows[count] = i
                count += 1
        for a in range(count):
            ia = rows[a]
            value = L[ia, j]
            for b in range(a + 1):
                L[ia, rows[b]] -= value * L[rows[b], j]
    return L, True


@njit(cache=True, error_model="numpy")
def schur_solve(
    W, g, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p, index1, index_r, q, lvl_ptr, lvl_rows
):
    """Solve ``A x = g`` (``g`` ordered as ``[u, beta]``; ``A`` bordered by ``X`` when
    ``p > 0``) and return ``x``, ``log det A`` (the Laplace term when ``p = 0``) and
    whether ``A`` is positive definite."""
    A11, A21, A22 = _assemble(W, level, k1, m1, idx1, val1, idx_r, val_r, q_r, X, p)
    inverse, S, log_det, ok = _schur(A11, A21, A22, lvl_ptr, lvl_rows, q_r, p)
    d = S.shape[0]
    q1 = m1 * k1
    g1 = np.empty(q1)
    for j in range(q1):
        g1[j] = g[index1[j]]
    h1 = np.empty(q1)
    for lev in range(m1):
        for a in range(k1):
            acc = 0.0
            for b in range(k1):
                acc += inverse[lev, a, b] * g1[lev * k1 + b]
            h1[lev * k1 + a] = acc
    x = np.empty(g.shape[0])
    if d > 0:
        gr = np.empty(d)
        for j in range(q_r):
            gr[j] = g[index_r[j]]
        for j in range(p):
            gr[q_r + j] = g[q + j]
        rows = np.empty(d, dtype=np.int64)
        for lev in range(m1):  # gr -= A21 h1, over each level's touched rows
            count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
            for t in range(count):
                r = rows[t]
                for a in range(k1):
                    gr[r] -= A21[r, lev * k1 + a] * h1[lev * k1 + a]
        L, positive = _cholesky(S)
        if not positive:
            return x, log_det, False
        for j in range(d):
            log_det += 2.0 * math.log(L[j, j])
        # L L' xr = gr
        z = np.empty(d)
        for j in range(d):
            acc = gr[j]
            for t in range(j):
                acc -= L[j, t] * z[t]
            z[j] = acc / L[j, j]
        xr = np.empty(d)
        for j in range(d - 1, -1, -1):
            acc = z[j]
            for t in range(j + 1, d):
                acc -= L[t, j] * xr[t]
            xr[j] = acc / L[j, j]
        # x1 = h1 - A11^-1 A21' xr
        back = np.zeros(q1)
        for lev in range(m1):
            count = _touched(lev, lvl_ptr, lvl_rows, q_r, p, rows)
            for t in range(count):
                r = rows[t]
                for a in range(k1):
                    back[lev * k1 + a] += A21[r, lev * k1 + a] * xr[r]
        for lev in range(m1):
            for a in range(k1):
                acc = 0.0
                for b in range(k1):
                    acc += inverse[lev, a, b] * back[lev * k1 + b]
                h1[lev * k1 + a] -= acc
        for j in range(q_r):
            x[index_r[j]] = xr[j]
        for j in range(p):
            x[q + j] = xr[q_r + j]
    for j in range(q1):
        x[index1[j]] = h1[j]
    return x, log_det, ok
