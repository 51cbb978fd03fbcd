"""One log density and gradient for every linear and generalized linear mixed model.

The model is not compiled in: its design, level codes, block layout and prior
parameters arrive as arrays (a :class:`~bayesmix.bayes.generic.program.Program`),
so numba compiles this module once per machine and every later model reuses
it from the disk cache (:mod:`bayesmix.bayes.generic.nutpie_model`). The
density is exactly that of the PyMC models of :mod:`bayesmix.bayes.model`
(graph likelihood) and :mod:`bayesmix.bayes.glmm_model`, on the same
unconstrained vector ``x`` in PyMC's order, constants included; the gradient is
written out in reverse mode. Hand-written, because the point is to avoid
generating and compiling code per model. Every function of this subpackage
compiles with numba's ``error_model="numpy"``: a division by zero gives inf or
NaN, which the C callback reports to nutpie as a rejected point, instead of an
exception raised inside a C callback, where it cannot propagate.

Notation
--------
x : unconstrained parameters; n, p, K : rows, fixed-effect columns, random terms.
Xc, Zc : fixed and random columns, centred as sampled (term-major, n per term).
beta : sampled fixed effects; R : every block's group effects, levels x terms;
L : a block's correlation Cholesky factor (identity when uncorrelated).
eta : linear predictor; sigma : residual SD; disp : NB2 theta or Gamma shape.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bayesmix.bayes.generic.collapsed_kernel import COLLAPSED, collapsed_gaussian
from bayesmix.bayes.generic.families import GAUSSIAN, counts, gaussian, zero_inflate
from bayesmix.bayes.generic.lkj_kernel import lkj_backward, lkj_forward
from bayesmix.bayes.generic.residual import structured_gaussian

LOG_2PI = math.log(2.0 * math.pi)
#: LLVM may reorder sums (vectorised row loops); no other fast-math assumption, so
#: non-finite values still propagate to nutpie's checks.
REASSOCIATE = {"reassoc", "contract"}

# fields of the ``layout`` vector
N_ROWS, N_FIXED, N_BLOCKS, N_TERMS, N_PRIORS = 0, 1, 2, 3, 4
SIGMA_POS, FAMILY, DISP_POS, N_ZI, SHIFT_ROW, N_EFFECTS, N_CHOL, N_DIM = 5, 6, 7, 8, 9, 10, 11, 12
LAYOUT_SIZE = 13
# block table (per block) and term table (per term) widths and fields
BLOCK_WIDTH = 7  # levels, terms, first term, LKJ start, shear term, R offset, L offset
TERM_WIDTH = 5  # z start, sd position, block, place in block, column of ones
# prior family codes (parameters in the prior classes' field order)
NORMAL, STUDENT_T, HALF_NORMAL, HALF_STUDENT_T, EXPONENTIAL = 0, 1, 2, 3, 4
LOG_NORMAL, UNIFORM, BETA = 5, 6, 7
# how x maps to a prior's variable: itself, exp(x), lower + (upper - lower) expit(x)
IDENTITY, LOG, INTERVAL = 0, 1, 2


@njit(cache=False, error_model="numpy")
def prior_logp(family, v, a, b, c, constant):
    """Log density of a scalar prior at ``v`` and its derivative.

    ``a, b, c`` are the prior's parameters in its class's field order and
    ``constant`` its normalising term (:func:`bayesmix.bayes.generic.program.prior_constant`).
    """
    if family == NORMAL:  # (mu, sigma)
        z = (v - a) / b
        return constant - 0.5 * z * z, -z / b
    if family == STUDENT_T:  # (nu, mu, sigma)
        t = (v - b) / c
        u = t * t / a
        return constant - 0.5 * (a + 1.0) * math.log1p(u), -(a + 1.0) * t / (a * c * (1.0 + u))
    if family == HALF_NORMAL:  # (sigma,)
        z = v / a
        return constant - 0.5 * z * z, -z / a
    if family == HALF_STUDENT_T:  # (nu, sigma)
        u = v * v / (a * b * b)
        return constant - 0.5 * (a + 1.0) * math.log1p(u), -(a + 1.0) * v / (a * b * b * (1.0 + u))
    if family == LOG_NORMAL:  # (mu, sigma)
        log_v = math.log(v)
        z = (log_v - a) / b
        return constant - log_v - 0.5 * z * z, -(1.0 + z / b) / v
    if family == UNIFORM:  # (lower, upper): the transform keeps v inside
        return constant, 0.0
    if family == BETA:  # (alpha, beta) on (0, 1)
        value = constant + (a - 1.0) * math.log(v) + (b - 1.0) * math.log1p(-v)
        return value, (a - 1.0) / v - (b - 1.0) / (1.0 - v)
    # EXPONENTIAL (lam,)
    return constant - a * v, -a


@njit(cache=False, error_model="numpy", fastmath=REASSOCIATE)
def effects_forward(x, blocks, terms, lkj_eta, R, L):
    """Every block's effects ``R`` (levels x terms, ``r_i = sd_i sum_j L_ij z_j``) and
    the standard-normal and LKJ log densities; returns the log density."""
    logp = 0.0
    for b in range(lkj_eta.size):
        o = b * BLOCK_WIDTH
        levels, k, t0 = blocks[o], blocks[o + 1], blocks[o + 2]
        lkj, r_off, l_off = blocks[o + 3], blocks[o + 5], blocks[o + 6]
        squares = 0.0
        for t in range(t0, t0 + k):
            z0 = terms[t * TERM_WIDTH]
            for level in range(levels):
                squares += x[z0 + level] * x[z0 + level]
        logp -= 0.5 * squares + 0.5 * LOG_2PI * levels * k
        if lkj >= 0:
            logp += lkj_forward(x, lkj, k, lkj_eta[b], L, l_off)
        else:
            for i in range(k * k):
                L[l_off + i] = 0.0
            for i in range(k):
                L[l_off + i * k + i] = 1.0
        for i in range(k):
            sd = math.exp(x[terms[(t0 + i) * TERM_WIDTH + 1]])
            for level in range(levels):
                R[r_off + level * k + i] = 0.0
            for j in range(0 if lkj >= 0 else i, i + 1):  # L is the identity without LKJ
                z0 = terms[(t0 + j) * TERM_WIDTH]
                scale = sd * L[l_off + i * k + j]
                for level in range(levels):
                    R[r_off + level * k + i] += scale * x[z0 + level]
    return logp


@njit(cache=False, error_model="numpy", fastmath=REASSOCIATE)
def effects_backward(x, blocks, terms, lkj_eta, R, L, adj_R, adj_L, grad):
    """Carry ``adj_R`` back to the z's, the log SDs and the LKJ parameters (``adj_L``:
    zeros, the factor's adjoint), and add the standard-normal log density's gradient."""
    for b in range(lkj_eta.size):
        o = b * BLOCK_WIDTH
        levels, k, t0 = blocks[o], blocks[o + 1], blocks[o + 2]
        lkj, r_off, l_off = blocks[o + 3], blocks[o + 5], blocks[o + 6]
        for t in range(t0, t0 + k):
            z0 = terms[t * TERM_WIDTH]
            for level in range(levels):
                grad[z0 + level] -= x[z0 + level]
        for i in range(k):
            sd_pos = terms[(t0 + i) * TERM_WIDTH + 1]
            sd = math.exp(x[sd_pos])
            # d/d log sd of sum_level adj * r: r is linear in sd
            total = 0.0
            for level in range(levels):
                total += adj_R[r_off + level * k + i] * R[r_off + level * k + i]
            grad[sd_pos] += total
            for j in range(0 if lkj >= 0 else i, i + 1):
                z0 = terms[(t0 + j) * TERM_WIDTH]
                scale = sd * L[l_off + i * k + j]
                total = 0.0
                for level in range(levels):
                    a = adj_R[r_off + level * k + i]
                    grad[z0 + level] += a * scale
                    total += a * x[z0 + level]
                adj_L[l_off + i * k + j] += sd * total
        if lkj >= 0:
            lkj_backward(x, lkj, k, lkj_eta[b], adj_L, l_off, grad)


@njit(cache=False, error_model="numpy", fastmath=REASSOCIATE)
def predictor(Xc, fixed, beta, Zc, gather, terms, R, offset, eta):
    """``eta = offset + Xc beta + sum_t Zc[t] * R[gather[t]]`` (columns of ones not multiplied)."""
    n = eta.size
    for i in range(n):
        eta[i] = offset[i] if offset.size else 0.0
    for j in range(beta.size):
        b = beta[j]
        if fixed[2 * j + 1] == 1:
            for i in range(n):
                eta[i] += b
        else:
            for i in range(n):
                eta[i] += Xc[j * n + i] * b
    for t in range(terms.size // TERM_WIDTH):
        index = gather[t * n : (t + 1) * n]
        if terms[t * TERM_WIDTH + 4] == 1:
            for i in range(n):
                eta[i] += R[index[i]]
        else:
            for i in range(n):
                eta[i] += Zc[t * n + i] * R[index[i]]


@njit(cache=False, error_model="numpy", fastmath=REASSOCIATE)
def predictor_backward(Xc, fixed, d, Zc, gather, terms, adj_beta, adj_R):
    """The adjoints of ``predictor``'s beta and R given ``d = dlogp/deta``."""
    n = d.size
    for j in range(adj_beta.size):
        total = 0.0
        if fixed[2 * j + 1] == 1:
            for i in range(n):
                total += d[i]
        else:
            for i in range(n):
                total += d[i] * Xc[j * n + i]
        adj_beta[j] = total
    # rows of one group are usually adjacent: sum each run in a register, so that
    # consecutive additions do not wait on the same memory location
    for t in range(terms.size // TERM_WIDTH):
        if n == 0:
            break
        index = gather[t * n : (t + 1) * n]
        ones = terms[t * TERM_WIDTH + 4] == 1
        current, run = index[0], 0.0
        for i in range(n):
            if index[i] != current:
                adj_R[current] += run
                current, run = index[i], 0.0
            run += d[i] if ones else d[i] * Zc[t * n + i]
        adj_R[current] += run


@njit(cache=False, error_model="numpy")
def scalar_priors(x, grad, prior_i, prior_f, skip):
    """Every scalar prior (with the log transform's Jacobian) except row ``skip``."""
    logp = 0.0
    for row in range(prior_i.size // 3):
        if row == skip:
            continue
        pos = prior_i[3 * row]
        u = x[pos]
        f = prior_f[4 * row : 4 * row + 4]
        transform = prior_i[3 * row + 2]
        if transform == LOG:
            v = math.exp(u)
            value, d = prior_logp(prior_i[3 * row + 1], v, f[0], f[1], f[2], f[3])
            logp += value + u
            grad[pos] += d * v + 1.0
        elif transform == INTERVAL:  # Uniform: its own bounds; Beta: (0, 1)
            family = prior_i[3 * row + 1]
            lower, upper = (0.0, 1.0) if family == BETA else (f[0], f[1])
            s = 1.0 / (1.0 + math.exp(-u))
            width = upper - lower
            value, d = prior_logp(family, lower + width * s, f[0], f[1], f[2], f[3])
            # log Jacobian: log(width) + log s + log(1 - s)
            logp += value + math.log(width) + math.log(s) + math.log1p(-s)
            grad[pos] += d * width * s * (1.0 - s) + 1.0 - 2.0 * s
        else:
            value, d = prior_logp(prior_i[3 * row + 1], u, f[0], f[1], f[2], f[3])
            logp += value
            grad[pos] += d
    return logp


def _kernel(structured: bool):
    """The log density function, with the residual structures' likelihood or without.

    ``structured`` is a closure constant: numba drops the branch not taken, so the
    kernel without residual structures never compiles their code.
    """

    def logp_grad(x, grad, ints, floats):
        """Log density at ``x``; its gradient goes to ``grad``.

        ``ints`` and ``floats`` are the program's arrays (see
        :class:`bayesmix.bayes.generic.program.Program`), in that order.
        """
        layout, fixed, gather, blocks, terms, prior_i, zi_pos, res_i = ints
        Xc, Zc, y, row_w, offset, row_const, prior_f, lkj_eta, zi_Xc, res_f = floats
        n, p, n_blocks, q = layout[N_ROWS], layout[N_FIXED], layout[N_BLOCKS], layout[N_ZI]
        n_effects, n_chol, family = layout[N_EFFECTS], layout[N_CHOL], layout[FAMILY]
        # one allocation for every work array (chains call this concurrently); only the
        # accumulated ones are zeroed. Row arrays: eta, d (all), rows, d_disp (GLMMs),
        # eta_zi, d_zi (zero inflation).
        n_row_arrays = 2 if family == GAUSSIAN or family == COLLAPSED else (4 if q == 0 else 6)
        size = 2 * n_effects + 2 * n_chol + n_blocks + 2 * p + 2 * q + n_row_arrays * n
        work = np.empty(size)
        accumulated = 2 * n_effects + 2 * n_chol + n_blocks
        for i in range(n_effects, accumulated):
            work[i] = 0.0
        R, adj_R = work[:n_effects], work[n_effects : 2 * n_effects]
        at = 2 * n_effects
        L, adj_L = work[at : at + n_chol], work[at + n_chol : at + 2 * n_chol]
        means = work[at + 2 * n_chol : accumulated]
        at = accumulated
        beta, adj_beta = work[at : at + p], work[at + p : at + 2 * p]
        at += 2 * p
        zi_beta, adj_zi = work[at : at + q], work[at + q : at + 2 * q]
        at += 2 * q
        eta, d = work[at : at + n], work[at + n : at + 2 * n]
        rows, d_disp = work[at + 2 * n : at + 3 * n], work[at + 3 * n : at + 4 * n]
        eta_zi, d_zi = work[at + 4 * n : at + 5 * n], work[at + 5 * n : at + 6 * n]
        for i in range(grad.size):
            grad[i] = 0.0
        shift_row = layout[SHIFT_ROW]
        logp = scalar_priors(x, grad, prior_i, prior_f, shift_row)
        logp += effects_forward(x, blocks, terms, lkj_eta, R, L)
        # GLMM shear: a block's intercept effects enter less their mean (see glmm_model);
        # those columns are ones, so every row's predictor moves by the sum of the means
        level = 0.0
        for b in range(n_blocks):
            o = b * BLOCK_WIDTH
            if blocks[o + 4] >= 0:
                for lv in range(blocks[o]):
                    means[b] += R[blocks[o + 5] + lv * blocks[o + 1] + blocks[o + 4]]
                means[b] /= blocks[o]
                level += means[b]
        adj_level = 0.0
        if shift_row >= 0:  # the intercept's prior sits at the reported intercept
            pos = prior_i[3 * shift_row]
            f = prior_f[4 * shift_row : 4 * shift_row + 4]
            value, dv = prior_logp(
                prior_i[3 * shift_row + 1], x[pos] - level, f[0], f[1], f[2], f[3]
            )
            logp += value
            grad[pos] += dv
            adj_level = -dv
        for j in range(p):
            beta[j] = x[fixed[2 * j]]
        predictor(Xc, fixed, beta, Zc, gather, terms, R, offset, eta)
        if level != 0.0:
            for i in range(n):
                eta[i] -= level
        if structured:  # a residual variance function or correlation structure
            logp += structured_gaussian(x, grad, y, eta, d, res_i, res_f)
        elif family == COLLAPSED:  # fixed effects and small blocks integrated out
            logp += collapsed_gaussian(x, grad, y, eta, d, layout[SIGMA_POS], res_i, res_f)
        elif family == GAUSSIAN:
            sigma_pos = layout[SIGMA_POS]
            value, d_log_sigma = gaussian(y, row_w, row_const, eta, d, math.exp(x[sigma_pos]))
            logp += value
            grad[sigma_pos] += d_log_sigma
        else:
            disp = 0.0
            if layout[DISP_POS] >= 0:
                inv_sqrt = math.exp(x[layout[DISP_POS]])
                disp = 1.0 / (inv_sqrt * inv_sqrt)
            if q == 0:
                logp += counts(family, y, row_w, row_const, eta, d, disp, d_disp, rows)
            else:
                counts(family, y, row_w, row_const, eta, d, disp, d_disp, rows)
                for j in range(q):
                    zi_beta[j] = x[zi_pos[2 * j]]
                predictor(zi_Xc, zi_pos, zi_beta, Zc, gather, terms[:0], R, y[:0], eta_zi)
                logp += zero_inflate(y, eta_zi, rows, d, d_disp, d_zi)
                predictor_backward(zi_Xc, zi_pos, d_zi, Zc, gather, terms[:0], adj_zi, adj_R)
                for j in range(q):
                    grad[zi_pos[2 * j]] += adj_zi[j]
            if layout[DISP_POS] >= 0:
                total = 0.0
                for i in range(n):
                    total += d_disp[i]
                grad[layout[DISP_POS]] += total * (-2.0 * disp)  # disp = exp(-2 x)
        predictor_backward(Xc, fixed, d, Zc, gather, terms, adj_beta, adj_R)
        for j in range(p):
            grad[fixed[2 * j]] += adj_beta[j]
        if level != 0.0 or shift_row >= 0:
            total = adj_level
            for i in range(n):
                total -= d[i]
            for b in range(n_blocks):
                o = b * BLOCK_WIDTH
                if blocks[o + 4] >= 0:
                    share = total / blocks[o]
                    for lv in range(blocks[o]):
                        adj_R[blocks[o + 5] + lv * blocks[o + 1] + blocks[o + 4]] += share
        effects_backward(x, blocks, terms, lkj_eta, R, L, adj_R, adj_L, grad)
        return logp

    return njit(cache=False, error_model="numpy")(logp_grad)


#: The log density and gradient: of models without a residual structure, and with one
#: (:mod:`bayesmix.bayes.generic.residual`), compiled separately.
logp_grad = _kernel(False)
logp_grad_structured = _kernel(True)


@njit(cache=False, error_model="numpy")
def expand(x, transforms, bounds, out):
    """What the sampler stores: ``x``, then its transformed entries on their own scale."""
    m = x.size
    for i in range(x.size):
        out[i] = x[i]
        if transforms[i] == LOG:
            out[m] = math.exp(x[i])
            m += 1
        elif transforms[i] == INTERVAL:
            lower, upper = bounds[2 * i], bounds[2 * i + 1]
            out[m] = lower + (upper - lower) / (1.0 + math.exp(-x[i]))
            m += 1
