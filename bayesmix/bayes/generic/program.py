"""A model as arrays for the generic kernel: the design, codes, block layout and priors.

:func:`lmm_program` and :func:`glmm_program` describe the PyMC models of
:func:`bayesmix.bayes.model.build_pymc_model` (graph likelihood) and
:func:`bayesmix.bayes.glmm_model.build_glmm_model` to
:mod:`bayesmix.bayes.generic.kernel`: where each parameter sits in the
unconstrained vector (PyMC's order, read from the built model), each scalar
prior's family and parameters, each block's levels, terms, LKJ parameters and
shear, and the centred columns. They return ``None`` for a model the kernel
does not cover (another link, a variable it does not know), which then gets
its own compiled log density.

Notation
--------
x : unconstrained parameters; Xc, Zc : centred fixed and random columns (term-major);
zbar : a block's column centring; xbar : the fixed columns' centring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bayesmix.bayes.generic import families as F
from bayesmix.bayes.generic import kernel as K
from bayesmix.bayes.generic.prior_rows import TRANSFORM_CODES, PriorRows, Unsupported
from bayesmix.bayes.graph_parts import block_centring, block_infos, centring_offsets
from bayesmix.bayes.priors import (
    Prior,
    intercept_index,
)
from bayesmix.spec.design import Design


@dataclass(frozen=True)
class Program:
    """The arrays :func:`bayesmix.bayes.generic.kernel.logp_grad` reads, and the layout of x.

    Attributes
    ----------
    ints, floats : tuple of ndarray
        The kernel's integer and float arrays, in its order.
    transforms : ndarray
        Per entry of ``x``: 0 the variable itself, 1 its logarithm, 2 the logit of
        its place in an interval (the kernel's ``IDENTITY``, ``LOG``, ``INTERVAL``).
    bounds : ndarray
        (lower, upper) per entry of ``x``, for interval-transformed ones.
    names, shapes : tuple
        What the sampler stores, as nutpie stores a PyMC model's free variables:
        ``x`` by value variable (``sd_g_log__``), then the transformed ones on
        their own scale (``sd_g``); and their shapes.
    support : ndarray
        PyMC's initial point before jitter: prior locations, on x's scale.
    reparameterized : tuple of str
        The value variables of transformed variables (``sd_g_log__``).
    """

    ints: tuple[np.ndarray, ...]
    floats: tuple[np.ndarray, ...]
    transforms: np.ndarray
    bounds: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    support: np.ndarray
    reparameterized: tuple[str, ...]

    @property
    def n_dim(self) -> int:
        return int(self.transforms.size)

    @property
    def structured(self) -> bool:
        """Whether the residual arrays hold a residual structure (the kernel with them);
        the collapsed likelihood keeps its constants there too."""
        return bool(self.ints[7].size) and int(self.ints[0][K.FAMILY]) != K.COLLAPSED

    @property
    def n_expanded(self) -> int:
        return int(self.transforms.size + np.count_nonzero(self.transforms))


class VariableLayout:
    """Where each of a PyMC model's free variables sits in the unconstrained vector."""

    def __init__(self, model) -> None:
        self.start: dict[str, int] = {}
        self.size: dict[str, int] = {}
        self.transform: dict[str, int] = {}
        self.initial: dict[str, np.ndarray] = {}
        self.names, self.shapes, self.value_names = [], [], []
        position = 0
        for rv in model.free_RVs:  # nutpie's order
            dims = model.named_vars_to_dims.get(rv.name)
            if dims:
                shape = tuple(len(model.coords[d]) for d in dims)
            elif all(s is not None for s in rv.type.shape):
                shape = tuple(int(s) for s in rv.type.shape)
            else:
                raise Unsupported(f"no static shape for {rv.name}")
            transform = model.rvs_to_transforms.get(rv)
            name = None if transform is None else type(transform).__name__
            if name not in TRANSFORM_CODES:
                raise Unsupported(f"transform {transform} of {rv.name}")
            self.start[rv.name], self.size[rv.name] = position, int(np.prod(shape))
            self.transform[rv.name] = TRANSFORM_CODES[name]
            start_value = model.rvs_to_initial_values.get(rv)
            if start_value is not None:  # set_initval: a start on the variable's own scale
                if isinstance(start_value, str) or hasattr(start_value, "owner"):
                    raise Unsupported(f"initial value strategy of {rv.name}")
                self.initial[rv.name] = np.broadcast_to(
                    np.asarray(start_value, dtype=float), shape
                ).ravel()
            self.names.append(rv.name)
            self.value_names.append(model.rvs_to_values[rv].name)
            self.shapes.append(shape)
            position += self.size[rv.name]
        self.n_dim = position
        self.covered = np.zeros(position, dtype=bool)

    def positions(self, name: str, count: int | None = None) -> np.ndarray:
        if name not in self.start or (count is not None and self.size[name] != count):
            raise Unsupported(f"no variable {name} of size {count}")
        start = self.start[name]
        idx = np.arange(start, start + self.size[name])
        if self.covered[idx].any():
            raise Unsupported(f"{name} covered twice")
        self.covered[idx] = True
        return idx


def vector_positions(
    layout: VariableLayout, table: PriorRows, name: str, priors: Sequence[Prior]
) -> np.ndarray:
    """Positions of a vector RV made by ``graph_inputs.vector_rv`` (split by prior family)."""
    groups: dict[type, list[int]] = {}
    for i, prior in enumerate(priors):
        groups.setdefault(type(prior), []).append(i)
    positions = np.empty(len(priors), dtype=np.int64)
    for cls, idx in groups.items():
        rv = name if len(groups) == 1 else f"{name}_{cls.__name__}"
        where = layout.positions(rv, len(idx))
        for i, position in zip(idx, where, strict=True):
            table.add(position, priors[i], layout.transform[rv])
            positions[i] = position
    return positions


def _is_ones(column: np.ndarray) -> bool:
    return bool(np.allclose(column, 1.0))


def effect_tables(
    layout: VariableLayout, table: PriorRows, design: Design, priors, zbars, shear: bool
):
    """Block and term tables, gather indices, centred Zc and LKJ parameters of every block."""
    blocks, terms, gather, Zc, etas = [], [], [], [], []
    r_offset = l_offset = 0
    for b, (block, info, zbar) in enumerate(zip(design.blocks, block_infos(design), zbars)):
        k, levels = block.n_terms, len(block.levels)
        Z = np.asarray(block.Z, dtype=float)
        correlated = info.cor_key is not None and k > 1
        sd_name = f"sdc_{info.tag}" if correlated and np.any(zbar) else info.sd_name
        sd_pos = vector_positions(layout, table, sd_name, [priors[key] for key in info.sd_keys])
        lkj = -1
        if correlated:
            lkj = int(layout.positions(f"corr_{info.tag}_raw", k * (k - 1) // 2)[0])
        etas.append(priors[info.cor_key].eta if correlated else 0.0)
        ones = [j for j in range(k) if _is_ones(Z[:, j])]
        k_shear = ones[0] if shear and ones else -1
        blocks.append((levels, k, len(terms), lkj, k_shear, r_offset, l_offset))
        block_codes = np.asarray(block.codes, dtype=np.int64)
        for j in range(k):
            z0 = int(layout.positions(f"z{j}_{info.tag}", levels)[0])
            ones = _is_ones(Z[:, j])
            terms.append((z0, int(sd_pos[j]), b, j, int(ones)))
            Zc.append(Z[:, j] if ones else Z[:, j] - zbar[j])
            gather.append(r_offset + block_codes * k + j)  # where each row's effect sits in R
        r_offset += levels * k
        l_offset += k * k
    return blocks, terms, gather, Zc, etas, r_offset, l_offset


def mean_part(model, design: Design, priors, shear: bool = False):
    """What every model's Program starts from: the variables' layout, the prior rows, the
    fixed effects' positions (``beta_c`` with an intercept) and the blocks' tables.

    Returns ``(layout, table, fixed_pos, effects, j0)``; raises ``Unsupported``.
    ``shear`` (GLMMs with an intercept) lets each block's intercept effects enter
    less their mean.
    """
    layout, table = VariableLayout(model), PriorRows()
    j0 = intercept_index(design)
    name = "beta" if j0 is None else "beta_c"
    fixed_pos = vector_positions(layout, table, name, [priors[t] for t in design.fixed_terms])
    zbars = [block_centring(block) for block in design.blocks]
    effects = effect_tables(layout, table, design, priors, zbars, shear=shear and j0 is not None)
    return layout, table, fixed_pos, effects, j0


def _columns_table(positions, columns: np.ndarray) -> np.ndarray:
    """(position in x, column is all ones) of each coefficient, flattened."""
    ones = [int(_is_ones(columns[:, j])) for j in range(columns.shape[1])]
    return np.asarray(list(zip(positions, ones, strict=True)), dtype=np.int64).reshape(-1)


def assemble(
    layout: VariableLayout,
    table: PriorRows,
    design: Design,
    fixed_pos: np.ndarray,
    effects: tuple,
    *,
    family: int,
    y: np.ndarray,
    row_w: np.ndarray,
    row_const: np.ndarray,
    offset: np.ndarray | None = None,
    sigma_pos: int = -1,
    disp_pos: int = -1,
    shift_row: int = -1,
    zi: tuple | None = None,
    residual: tuple | None = None,
) -> Program:
    """The Program, once every variable is placed (else ``Unsupported``).

    ``zi``: the zero-inflation coefficients' positions and centred columns;
    ``residual``: the arrays of :mod:`bayesmix.bayes.generic.residual`.
    """
    blocks, terms, gather, Zc, etas, n_effects, n_chol = effects
    if not layout.covered.all():
        missing = [n for n in layout.names if not layout.covered[layout.start[n]]]
        raise Unsupported(f"variables the kernel does not know: {missing}")
    n = design.n_obs
    X = np.asarray(design.X, dtype=float)
    xbar = centring_offsets(design)
    zi_pos, zi_Xc = zi if zi is not None else (np.zeros(0, np.int64), np.zeros((n, 0)))
    Xc = X - xbar
    layout_vector = np.zeros(K.LAYOUT_SIZE, dtype=np.int64)
    layout_vector[K.N_ROWS], layout_vector[K.N_FIXED] = n, X.shape[1]
    layout_vector[K.N_BLOCKS], layout_vector[K.N_TERMS] = len(blocks), len(terms)
    layout_vector[K.N_PRIORS], layout_vector[K.SIGMA_POS] = len(table.ints), sigma_pos
    layout_vector[K.FAMILY], layout_vector[K.DISP_POS] = family, disp_pos
    layout_vector[K.N_ZI], layout_vector[K.SHIFT_ROW] = zi_Xc.shape[1], shift_row
    layout_vector[K.N_EFFECTS], layout_vector[K.N_CHOL] = n_effects, n_chol
    layout_vector[K.N_DIM] = layout.n_dim
    ints = (
        layout_vector,
        _columns_table(fixed_pos, Xc),
        np.concatenate(gather) if gather else np.zeros(0, np.int64),
        np.asarray(blocks, dtype=np.int64).ravel(),
        np.asarray(terms, dtype=np.int64).ravel(),
        np.asarray(table.ints, dtype=np.int64).ravel(),
        _columns_table(zi_pos, zi_Xc),
        np.zeros(0, np.int64) if residual is None else np.asarray(residual[0], np.int64),
    )
    floats = (
        np.ascontiguousarray(Xc.T).ravel(),
        np.ascontiguousarray(np.asarray(Zc, dtype=float)).ravel(),
        np.asarray(y, dtype=float),
        np.asarray(row_w, dtype=float),
        np.zeros(n) if offset is None else np.asarray(offset, dtype=float),
        np.asarray(row_const, dtype=float),
        np.asarray(table.floats, dtype=float).ravel(),
        np.asarray(etas, dtype=float),
        np.ascontiguousarray(np.asarray(zi_Xc, dtype=float).T).ravel(),
        np.zeros(0) if residual is None else np.asarray(residual[1], dtype=float),
    )
    transforms = np.zeros(layout.n_dim, dtype=np.int64)
    for name in layout.names:
        transforms[layout.start[name] : layout.start[name] + layout.size[name]] = layout.transform[
            name
        ]
    bounds = np.zeros((layout.n_dim, 2))
    for position, interval in table.bounds.items():
        bounds[position] = interval
    support = np.zeros(layout.n_dim)
    for position, value in table.support.items():
        support[position] = value
    for name, value in layout.initial.items():  # starts the model sets (PyMC's initval)
        where = slice(layout.start[name], layout.start[name] + layout.size[name])
        if layout.transform[name] == K.LOG:
            value = np.log(value)
        elif layout.transform[name] == K.INTERVAL:
            lower, upper = bounds[where, 0], bounds[where, 1]
            value = np.log(value - lower) - np.log(upper - value)
        support[where] = value
    logged = [
        (n, s) for n, s in zip(layout.names, layout.shapes, strict=True) if layout.transform[n]
    ]
    names = (*layout.value_names, *[n for n, _ in logged])
    shapes = (*layout.shapes, *[s for _, s in logged])
    logged_values = zip(layout.value_names, layout.names, strict=True)
    reparameterized = tuple(v for v, n in logged_values if layout.transform[n])
    return Program(
        ints, floats, transforms, bounds.ravel(), names, shapes, support, reparameterized
    )


def lmm_program(model, design: Design, priors: Mapping[str, Prior]) -> Program | None:
    """The Program of a Gaussian LMM's PyMC model (graph likelihood), or ``None``.

    ``design`` is the offset-absorbed design the model was built from.
    """
    try:
        layout, table, fixed_pos, effects, _ = mean_part(model, design, priors)
        (sigma_pos,) = vector_positions(layout, table, "sigma", [priors["sigma"]])
        n = design.n_obs
        weights = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
        row_const = -0.5 * np.log(2.0 * np.pi) + 0.5 * np.log(weights)
        return assemble(
            layout,
            table,
            design,
            fixed_pos,
            effects,
            family=F.GAUSSIAN,
            y=design.y,
            row_w=weights,
            row_const=row_const,
            sigma_pos=int(sigma_pos),
        )
    except Unsupported:
        return None
