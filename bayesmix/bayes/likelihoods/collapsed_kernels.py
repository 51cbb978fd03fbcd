"""The numba kernels of the collapsed likelihood (:mod:`bayesmix.bayes.likelihoods.collapsed`).

PyTensor ops with numba implementations, cached on disk by PyTensor
under their props and a hash of their source:

* :class:`ResidualMoments`: one pass over the data, ``r = y - Z_s e`` and its
  moments ``Q = r'r`` and ``Z_f'r``; its gradient is a sparse product, no
  second pass;
* :class:`CsrMatvec`: a constant sparse matrix times a vector, differentiable
  (``W_c'r = W_c'y - (W_c'Z_s) e`` for the dense columns, whose distinct
  (sampled level, column) pairs are few: InstEval's fixed effects and
  dept:service cells have ~13,000 against 73,421 observations);
* :class:`~bayesmix.bayes.likelihoods.collapsed_marginal.CollapsedMarginal` (its own module):
  the marginal log-likelihood from ``(Q, t)``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesmix.bayes.likelihoods.numba_kernels import (
    compile_source,
    register_kernel,
    source_salt,
    summed,
    unrolled_loop,
)

#: Observations per iteration of the data kernel's loop (see ``ResidualMoments.kernel_source``).
UNROLL = 4


class ResidualMoments(Op):
    """``Q = r'r`` and ``t = Z_f'r`` for ``r = y - sum_k z_k * effects[codes_k]``.

    Inputs: ``y`` (n), ``codes`` (n x K, offsets into ``effects`` added), ``Z``
    (n x K_z, the sampled terms' columns that are not all ones), ``effects``,
    ``ccodes`` (n x K_c, each row's level in the collapsed terms, offsets
    added), ``cZ`` (their values, those not all ones); then, for the gradient
    only, ``M = Z_s'Z_f`` and ``K = Z_s'Z_s`` (each as CSR arrays, the matrix
    then its transpose) and ``Z_s'y``.

    The gradient with respect to ``effects`` is ``-(M g_t + 2 g_Q Z_s'r)`` with
    ``Z_s'r = Z_s'y - K effects``: sparse products, no second pass over the data.

    Parameters
    ----------
    z_columns, c_columns : tuple of int
        For each sampled term and each collapsed term: its column in ``Z`` or
        ``cZ``, or -1 when it is all ones.
    n_t : int
        Length of ``t``.
    """

    __props__ = ("z_columns", "c_columns", "n_t")

    def __init__(self, z_columns, c_columns, n_t: int):
        self.z_columns = tuple(int(k) for k in z_columns)
        self.c_columns = tuple(int(k) for k in c_columns)
        self.n_t = int(n_t)

    def make_node(self, *inputs):
        if len(inputs) != 19:
            raise TypeError("ResidualMoments expects 19 inputs")
        inputs = [pt.as_tensor_variable(v) for v in inputs]
        outputs = [pt.dscalar(), pt.tensor(dtype="float64", shape=(self.n_t,))]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        y, codes, Z, effects, ccodes, cZ = inputs[:6]
        r = np.array(y, dtype=float)
        for k, col in enumerate(self.z_columns):
            r = r - (1.0 if col < 0 else Z[:, col]) * effects[codes[:, k]]
        t = np.zeros(self.n_t)
        for j, col in enumerate(self.c_columns):
            weights = r if col < 0 else cZ[:, col] * r
            t += np.bincount(ccodes[:, j], weights=weights, minlength=self.n_t)
        output_storage[0][0] = np.asarray(r @ r, dtype="float64")
        output_storage[1][0] = t

    def pullback(self, inputs, outputs, cotangents):
        g_q, g_t = cotangents
        effects = inputs[3]
        g_effects = pt.zeros_like(effects)
        if not isinstance(g_t.type, DisconnectedType):
            g_effects = g_effects - CsrMatvec()(*inputs[6:12], g_t)
        if not isinstance(g_q.type, DisconnectedType):
            zr = inputs[18] - CsrMatvec()(*inputs[12:18], effects)
            g_effects = g_effects - 2.0 * g_q * zr
        return [
            g_effects if i == 3 else grad_undefined(self, i, var) for i, var in enumerate(inputs)
        ]

    def kernel_source(self) -> str:
        """Source of the numba kernel: one loop over observations, unrolled over columns.

        Like :meth:`bayesmix.bayes.likelihoods.fused.MixedNormalLoglik.kernel_source`,
        the loop is unrolled ``UNROLL`` times with separate accumulators, so that
        consecutive observations of one group (sorted data) do not wait on each
        other's stores.
        """
        lines = [
            "def residual_moments(y, codes, Z, effects, ccodes, cZ, m0, m1, m2, m3, m4, m5,"
            " k0, k1, k2, k3, k4, k5, zsy):",
            "    n = y.shape[0]",
        ]
        for u in range(UNROLL):
            lines += [f"    t{u} = np.zeros({self.n_t})", f"    q{u} = 0.0"]
        lines += unrolled_loop(self._observation_lines, UNROLL)
        q, t = summed("q{u}", UNROLL), summed("t{u}", UNROLL)
        lines.append(f"    return np.asarray({q}), {t}")
        return "\n".join(lines) + "\n"

    def _observation_lines(self, i: str, u: int, indent: str) -> list[str]:
        """Kernel lines for observation ``i``, adding into accumulator set ``u``."""
        body, eta = [], []
        for k, col in enumerate(self.z_columns):
            body.append(f"c{k}_{u} = codes[{i}, {k}]")
            if col >= 0:
                body.append(f"z{k}_{u} = Z[{i}, {col}]")
            eta.append(f"z{k}_{u} * effects[c{k}_{u}]" if col >= 0 else f"effects[c{k}_{u}]")
        body.append(f"r_{u} = y[{i}] - ({' + '.join(eta)})" if eta else f"r_{u} = y[{i}]")
        body.append(f"q{u} += r_{u} * r_{u}")
        body += [
            f"t{u}[ccodes[{i}, {j}]] += {f'cZ[{i}, {col}] * ' if col >= 0 else ''}r_{u}"
            for j, col in enumerate(self.c_columns)
        ]
        return [indent + line for line in body]


class CsrMatvec(Op):
    """``M @ x`` for a constant sparse ``M``, given in CSR form with its transpose.

    Inputs: ``M`` (indptr, indices, data), ``M'`` (the same), ``x``; the
    gradient is ``M' @ g``, the same Op with the two matrices swapped.
    """

    __props__ = ()

    def make_node(self, indptr, indices, data, t_indptr, t_indices, t_data, x):
        inputs = [
            pt.as_tensor_variable(v)
            for v in (indptr, indices, data, t_indptr, t_indices, t_data, x)
        ]
        n_rows = inputs[0].type.shape[0]
        shape = (None if n_rows is None else n_rows - 1,)
        return Apply(self, inputs, [pt.tensor(dtype="float64", shape=shape)])

    def perform(self, node, inputs, output_storage):
        indptr, indices, data, _, _, _, x = inputs
        m = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, len(x)))
        output_storage[0][0] = np.asarray(m @ x, dtype="float64")

    def pullback(self, inputs, outputs, cotangents):
        (g,) = cotangents
        transposed = CsrMatvec()(*inputs[3:6], *inputs[0:3], g)
        return [grad_undefined(self, i, var) for i, var in enumerate(inputs[:6])] + [transposed]

    @staticmethod
    def kernel(indptr, indices, data, t_indptr, t_indices, t_data, x):
        out = np.empty(indptr.shape[0] - 1)
        for row in range(out.shape[0]):
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * x[indices[k]]
            out[row] = acc
        return out


def csr_arrays(matrix: sp.spmatrix) -> list[np.ndarray]:
    """CSR arrays of ``matrix`` then of its transpose, as :class:`CsrMatvec` takes them."""
    arrays = []
    for m in (sp.csr_matrix(matrix), sp.csr_matrix(matrix.T)):
        m.sort_indices()
        index_dtype = np.min_scalar_type(max(m.shape[1] - 1, 0))
        arrays += [m.indptr.astype(np.int64), m.indices.astype(index_dtype), m.data.astype(float)]
    return arrays


def sparse_product(matrix: sp.spmatrix, x: pt.TensorVariable) -> pt.TensorVariable:
    """``matrix @ x`` for a constant scipy sparse ``matrix`` (differentiable in ``x``)."""
    return CsrMatvec()(*csr_arrays(matrix), x)


register_kernel(
    ResidualMoments,
    lambda op: (
        compile_source(
            op.kernel_source(), "residual_moments", "bayesmix.bayes.likelihoods.collapsed_kernels"
        ),
        source_salt(op.kernel_source()),
    ),
)
register_kernel(
    CsrMatvec, lambda op: (CsrMatvec.kernel, source_salt(inspect.getsource(CsrMatvec.kernel)))
)
