"""The Gaussian log-likelihood of a linear mixed model and its gradient in one pass.

Written as a PyTensor ``Op`` with a numba kernel because the log density graph
of a model with many observations is bound by passes over the data: PyTensor
computes the residuals in one fused loop, then scatters them into each group
effect's gradient in one more loop per term (four passes for InstEval's three
factors). The kernel here makes a single pass, reading each observation once,
and returns the log-likelihood with its gradient with respect to the fixed
effects, the group effects and sigma: InstEval's whole log density and gradient
take ~0.17 ms with it, ~0.46 ms with PyTensor's graph (one thread, 2026-12).
Its loop is generated for the model's structure (which X and Z columns are
ones, how many terms), so numba sees straight-line arithmetic, and PyTensor
caches it on disk under a key made of that structure.

Notation: ``y`` (n), ``X`` (n x p_x, the columns of the fixed-effects matrix
that are not all ones), ``beta`` (p), ``codes`` (n x K, each term's group index
into ``effects``, offsets added), ``Z`` (n x K_z, the columns of terms that are
not all ones, centred by ``zbar``), ``effects`` (all terms' group effects, one
vector), ``sigma`` (residual SD)::

    eta_i = offset + sum_j X_ij beta_j + sum_k (Z_ik - zbar_k) effects[codes_ik]
    loglik = -n log(sigma) - n/2 log(2 pi) - sum_i (y_i - eta_i)^2 / (2 sigma^2)

The Op's outputs are the log-likelihood and its gradients; its ``pullback`` hands
the gradients on, so the log density and its gradient share one kernel call.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesmix.bayes.likelihoods.numba_kernels import (
    compile_source,
    pack_columns,
    register_kernel,
    source_salt,
    summed,
    unrolled_loop,
)

LOG_2PI = float(np.log(2 * np.pi))
#: Observations per iteration of the kernel's loop (see ``kernel_source``).
UNROLL = 4


class MixedNormalLoglik(Op):
    """Gaussian log-likelihood of ``y`` given the linear predictor, with its gradients.

    Parameters
    ----------
    ones_beta : tuple of int
        Indices of the coefficients whose X column is all ones.
    x_beta : tuple of int
        Coefficient of each column of the ``X`` input.
    z_columns : tuple of int
        For each term, its column in the ``Z`` input, or -1 when it is all ones.
    """

    __props__ = ("ones_beta", "x_beta", "z_columns")

    def __init__(self, ones_beta: Sequence[int], x_beta: Sequence[int], z_columns: Sequence[int]):
        self.ones_beta = tuple(int(j) for j in ones_beta)
        self.x_beta = tuple(int(j) for j in x_beta)
        self.z_columns = tuple(int(k) for k in z_columns)

    def make_node(self, y, X, beta, offset, codes, Z, zbar, effects, sigma):
        inputs = [pt.as_tensor_variable(v) for v in (y, X, beta, offset, codes, Z, zbar)]
        inputs += [pt.as_tensor_variable(effects), pt.as_tensor_variable(sigma)]
        ndims = (1, 2, 1, 0, 2, 2, 1, 1, 0)
        if tuple(v.ndim for v in inputs) != ndims:
            raise TypeError(f"MixedNormalLoglik expects inputs of ranks {ndims}")
        beta, effects = inputs[2], inputs[7]
        outputs = [
            pt.dscalar(),
            pt.tensor(dtype="float64", shape=beta.type.shape),
            pt.dscalar(),
            pt.tensor(dtype="float64", shape=effects.type.shape),
            pt.dscalar(),
        ]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        y, X, beta, offset, codes, Z, zbar, effects, sigma = inputs
        n = y.shape[0]
        eta = offset + beta[list(self.ones_beta)].sum() + X @ beta[list(self.x_beta)]
        z_values = [1.0 if k < 0 else Z[:, k] - zbar[k] for k in self.z_columns]
        for k, z in enumerate(z_values):
            eta = eta + z * effects[codes[:, k]]
        residual = y - eta
        ss = float(residual @ residual)
        w = residual / sigma**2
        g_beta = np.zeros(beta.shape[0])
        g_beta[list(self.ones_beta)] = w.sum()
        g_beta[list(self.x_beta)] = X.T @ w
        g_effects = np.zeros(effects.shape[0])
        for k, z in enumerate(z_values):
            g_effects += np.bincount(codes[:, k], weights=z * w, minlength=effects.shape[0])
        values = (
            -n * np.log(sigma) - 0.5 * n * LOG_2PI - 0.5 * ss / sigma**2,
            g_beta,
            w.sum(),
            g_effects,
            -n / sigma + ss / sigma**3,
        )
        for storage, value in zip(output_storage, values, strict=True):
            storage[0] = np.asarray(value, dtype="float64")

    def pullback(self, inputs, outputs, cotangents):
        if any(not isinstance(g.type, DisconnectedType) for g in cotangents[1:]):
            raise NotImplementedError("MixedNormalLoglik has no second derivatives")
        scale = cotangents[0]
        _, g_beta, g_offset, g_effects, g_sigma = outputs
        grads = {2: g_beta, 3: g_offset, 7: g_effects, 8: g_sigma}
        return [
            grads[i] * scale if i in grads else grad_undefined(self, i, var)
            for i, var in enumerate(inputs)
        ]

    def kernel_source(self) -> str:
        """Source of the numba kernel: one loop over observations, unrolled over columns.

        The loop is also unrolled ``UNROLL`` times, each copy adding into its own
        gradient array and sums: consecutive observations often share a group
        (InstEval is sorted by student), and a single array would make each
        ``g[c] += w`` wait for the previous one to be stored (InstEval's log
        density and gradient: ~0.25 -> ~0.17 ms).
        """
        n_x = len(self.x_beta)
        lines = [
            "def mixed_normal_loglik(y, X, beta, offset, codes, Z, zbar, effects, sigma):",
            "    n = y.shape[0]",
            "    s = sigma[()]",
            "    inv = 1.0 / (s * s)",
            "    base = offset[()]" + "".join(f" + beta[{j}]" for j in self.ones_beta),
            *[f"    b{jx} = beta[{j}]" for jx, j in enumerate(self.x_beta)],
            *[f"    zbar{k} = zbar[{k}]" for k in self.z_columns if k >= 0],
        ]
        for u in range(UNROLL):
            lines += [
                f"    g_effects{u} = np.zeros(effects.shape[0])",
                f"    ss{u} = 0.0",
                f"    g_w{u} = 0.0",
                *[f"    g_x{jx}_{u} = 0.0" for jx in range(n_x)],
            ]
        lines += unrolled_loop(self._observation_lines, UNROLL)
        total = functools.partial(summed, unroll=UNROLL)

        lines += [
            f"    ss = {total('ss{u}')}",
            f"    g_w = {total('g_w{u}')}",
            f"    g_effects = {total('g_effects{u}')}",
            "    g_beta = np.zeros(beta.shape[0])",
            *[f"    g_beta[{j}] = g_w" for j in self.ones_beta],
            *[f"    g_beta[{j}] = {total(f'g_x{jx}_{{u}}')}" for jx, j in enumerate(self.x_beta)],
            f"    loglik = -n * np.log(s) - {0.5 * LOG_2PI!r} * n - 0.5 * ss * inv",
            "    g_sigma = -n / s + ss * inv / s",
            "    return (np.asarray(loglik), g_beta, np.asarray(g_w), g_effects,"
            " np.asarray(g_sigma))",
        ]
        return "\n".join(lines) + "\n"

    def _observation_lines(self, i: str, u: int, indent: str) -> list[str]:
        """Kernel lines for observation ``i``, adding into accumulator set ``u``."""
        eta = ["base"] + [f"X[{i}, {jx}] * b{jx}" for jx in range(len(self.x_beta))]
        lines = []
        for t, k in enumerate(self.z_columns):
            lines.append(f"c{t}_{u} = codes[{i}, {t}]")
            if k >= 0:
                lines.append(f"z{t}_{u} = Z[{i}, {k}] - zbar{k}")
                eta.append(f"z{t}_{u} * effects[c{t}_{u}]")
            else:
                eta.append(f"effects[c{t}_{u}]")
        lines += [
            f"r_{u} = y[{i}] - ({' + '.join(eta)})",
            f"ss{u} += r_{u} * r_{u}",
            f"w_{u} = r_{u} * inv",
            f"g_w{u} += w_{u}",
            *[f"g_x{jx}_{u} += X[{i}, {jx}] * w_{u}" for jx in range(len(self.x_beta))],
            *[
                f"g_effects{u}[c{t}_{u}] += {f'z{t}_{u} * ' if k >= 0 else ''}w_{u}"
                for t, k in enumerate(self.z_columns)
            ],
        ]
        return [indent + line for line in lines]


register_kernel(
    MixedNormalLoglik,
    lambda op: (
        compile_source(
            op.kernel_source(), "mixed_normal_loglik", "bayesmix.bayes.likelihoods.fused"
        ),
        source_salt(op.kernel_source()),
    ),
)


class LikelihoodTerm(NamedTuple):
    """One group-effect term of the linear predictor: ``(z - zbar) * effects[codes]``."""

    effects: pt.TensorVariable  # (n_levels,)
    n_levels: int
    codes: np.ndarray  # (n,) integer group index
    z: np.ndarray  # (n,) the term's column of Z
    zbar: pt.TensorVariable | float = 0.0  # centring offset of the column


def mixed_normal_loglik(
    y: np.ndarray,
    X: np.ndarray,
    beta: pt.TensorVariable,
    offset: pt.TensorVariable | float,
    terms: Sequence[LikelihoodTerm],
    sigma: pt.TensorVariable,
) -> pt.TensorVariable:
    """Log-likelihood of ``y ~ Normal(offset + X beta + sum of terms, sigma)``, one tensor.

    ``X`` is the full fixed-effects matrix; its columns of ones, and the terms
    whose ``z`` is all ones, are recognised here and skipped in the kernel.
    """
    X = np.asarray(X, dtype=float)
    ones = [j for j in range(X.shape[1]) if np.all(X[:, j] == 1.0)]
    x_beta = [j for j in range(X.shape[1]) if j not in ones]
    z_matrix, z_columns = pack_columns([term.z for term in terms], len(y))
    z_used = [k for k, place in enumerate(z_columns) if place >= 0]  # terms with a z column
    starts = np.cumsum([0] + [term.n_levels for term in terms])
    code_dtype = np.min_scalar_type(max(int(starts[-1]) - 1, 0))
    codes = np.column_stack(
        [np.asarray(term.codes, dtype=np.int64) + start for term, start in zip(terms, starts)]
    ).astype(code_dtype)
    zbar = [pt.as_tensor_variable(terms[k].zbar, dtype="float64") for k in z_used]
    effects = [term.effects for term in terms]
    op = MixedNormalLoglik(ones, x_beta, z_columns)
    return op(
        np.asarray(y, dtype=float),
        np.ascontiguousarray(X[:, x_beta]),
        beta,
        pt.as_tensor_variable(offset, dtype="float64"),
        codes,
        z_matrix,
        pt.stack(zbar) if zbar else np.zeros(0),
        pt.concatenate(effects) if len(effects) > 1 else effects[0],
        sigma,
    )[0]
