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
from scipy import special

from bayesmix.bayes.generic import families as F
from bayesmix.bayes.generic import kernel as K
from bayesmix.bayes.graph_parts import block_centring, block_infos, centring_offsets
from bayesmix.bayes.priors import (
    Exponential,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    StudentT,
    intercept_index,
    prior_params,
)
from bayesmix.spec.design import Design

PRIOR_CODES = {
    Normal: K.NORMAL,
    StudentT: K.STUDENT_T,
    HalfNormal: K.HALF_NORMAL,
    HalfStudentT: K.HALF_STUDENT_T,
    Exponential: K.EXPONENTIAL,
}
#: Priors on a positive scale: PyMC samples their logarithm.
POSITIVE = (HalfNormal, HalfStudentT, Exponential)
#: (family, link) pairs the kernel computes, and their codes.
FAMILY_CODES = {
    ("binomial", "logit"): F.BINOMIAL_LOGIT,
    ("binomial", "cloglog"): F.BINOMIAL_CLOGLOG,
    ("poisson", "log"): F.POISSON_LOG,
    ("negbinomial", "log"): F.NEGBIN_LOG,
    ("gamma", "log"): F.GAMMA_LOG,
    ("gamma", "inverse"): F.GAMMA_INVERSE,
}


def prior_constant(prior: Prior) -> float:
    """The normalising term of a prior's log density (what the kernel adds as is)."""
    half_log_2pi = 0.5 * np.log(2.0 * np.pi)
    if isinstance(prior, Normal):
        return float(-np.log(prior.sigma) - half_log_2pi)
    if isinstance(prior, HalfNormal):
        return float(0.5 * np.log(2.0 / np.pi) - np.log(prior.sigma))
    if isinstance(prior, Exponential):
        return float(np.log(prior.lam))
    nu = prior.nu
    t_constant = special.gammaln(0.5 * (nu + 1.0)) - special.gammaln(0.5 * nu)
    t_constant -= 0.5 * np.log(nu * np.pi) + np.log(prior.sigma)
    return float(t_constant + (np.log(2.0) if isinstance(prior, HalfStudentT) else 0.0))


class Unsupported(Exception):
    """The model has a part the generic kernel does not compute."""


@dataclass(frozen=True)
class Program:
    """The arrays :func:`bayesmix.bayes.generic.kernel.logp_grad` reads, and the layout of x.

    Attributes
    ----------
    ints, floats : tuple of ndarray
        The kernel's integer and float arrays, in its order.
    log_flags : ndarray
        1 where ``x`` holds a logarithm (the sampled variable is its exp).
    names, shapes : tuple
        What the sampler stores, as nutpie stores a PyMC model's free variables:
        ``x`` by value variable (``sd_g_log__``), then the log-transformed ones on
        their own scale (``sd_g``); and their shapes.
    support : ndarray
        PyMC's initial point before jitter: prior locations, on x's scale.
    reparameterized : tuple of str
        The value variables of log-transformed variables (``sd_g_log__``).
    """

    ints: tuple[np.ndarray, ...]
    floats: tuple[np.ndarray, ...]
    log_flags: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    support: np.ndarray
    reparameterized: tuple[str, ...]

    @property
    def n_dim(self) -> int:
        return int(self.log_flags.size)

    @property
    def n_expanded(self) -> int:
        return int(self.log_flags.size + self.log_flags.sum())


class _Layout:
    """Where each of a PyMC model's free variables sits in the unconstrained vector."""

    def __init__(self, model) -> None:
        self.start: dict[str, int] = {}
        self.size: dict[str, int] = {}
        self.log: dict[str, bool] = {}
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
            if transform is not None and type(transform).__name__ != "LogTransform":
                raise Unsupported(f"transform {transform} of {rv.name}")
            self.start[rv.name], self.size[rv.name] = position, int(np.prod(shape))
            self.log[rv.name] = transform is not None
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


class _Priors:
    """Rows of scalar priors: position in x, family code, log flag; and parameters."""

    def __init__(self) -> None:
        self.ints: list[tuple[int, int, int]] = []
        self.floats: list[list[float]] = []
        self.support: dict[int, float] = {}

    def add(self, position: int, prior: Prior, log: bool) -> int:
        if type(prior) not in PRIOR_CODES or log != isinstance(prior, POSITIVE):
            raise Unsupported(f"prior {prior} with log={log}")
        params = list(prior_params(prior).values())
        self.ints.append((int(position), PRIOR_CODES[type(prior)], int(log)))
        self.floats.append(params + [0.0] * (3 - len(params)) + [prior_constant(prior)])
        location = {Normal: "mu", StudentT: "mu", HalfNormal: "sigma", HalfStudentT: "sigma"}
        if isinstance(prior, Exponential):
            centre = 1.0 / prior.lam
        else:
            centre = float(getattr(prior, location[type(prior)]))
        self.support[int(position)] = np.log(centre) if log else centre
        return len(self.ints) - 1


def _vector(layout: _Layout, table: _Priors, name: str, priors: Sequence[Prior]) -> np.ndarray:
    """Positions of a vector RV made by ``graph_inputs.vector_rv`` (split by prior family)."""
    groups: dict[type, list[int]] = {}
    for i, prior in enumerate(priors):
        groups.setdefault(type(prior), []).append(i)
    positions = np.empty(len(priors), dtype=np.int64)
    for cls, idx in groups.items():
        rv = name if len(groups) == 1 else f"{name}_{cls.__name__}"
        where = layout.positions(rv, len(idx))
        for i, position in zip(idx, where, strict=True):
            table.add(position, priors[i], layout.log[rv])
            positions[i] = position
    return positions


def _is_ones(column: np.ndarray) -> bool:
    return bool(np.allclose(column, 1.0))


def _effects(layout: _Layout, table: _Priors, design: Design, priors, zbars, shear: bool):
    """Block and term tables, gather indices, centred Zc and LKJ parameters of every block."""
    blocks, terms, gather, Zc, etas = [], [], [], [], []
    r_offset = l_offset = 0
    for b, (block, info, zbar) in enumerate(zip(design.blocks, block_infos(design), zbars)):
        k, levels = block.n_terms, len(block.levels)
        Z = np.asarray(block.Z, dtype=float)
        correlated = info.cor_key is not None and k > 1
        sd_name = f"sdc_{info.tag}" if correlated and np.any(zbar) else info.sd_name
        sd_pos = _vector(layout, table, sd_name, [priors[key] for key in info.sd_keys])
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


def _columns_table(positions, columns: np.ndarray) -> np.ndarray:
    """(position in x, column is all ones) of each coefficient, flattened."""
    ones = [int(_is_ones(columns[:, j])) for j in range(columns.shape[1])]
    return np.asarray(list(zip(positions, ones, strict=True)), dtype=np.int64).reshape(-1)


def _assemble(layout, table, design, fixed_pos, effects, family_code, sigma_pos, disp_pos,
              shift_row, y, row_w, offset, row_const, zi=None) -> Program:  # fmt: skip
    """The Program, once every variable is placed (else ``Unsupported``)."""
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
    layout_vector[K.FAMILY], layout_vector[K.DISP_POS] = family_code, disp_pos
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
    )
    floats = (
        np.ascontiguousarray(Xc.T).ravel(),
        np.ascontiguousarray(np.asarray(Zc, dtype=float)).ravel(),
        np.asarray(y, dtype=float),
        np.asarray(row_w, dtype=float),
        np.asarray(offset, dtype=float),
        np.asarray(row_const, dtype=float),
        np.asarray(table.floats, dtype=float).ravel(),
        np.asarray(etas, dtype=float),
        np.ascontiguousarray(np.asarray(zi_Xc, dtype=float).T).ravel(),
    )
    log_flags = np.zeros(layout.n_dim, dtype=np.int64)
    for name in layout.names:
        if layout.log[name]:
            log_flags[layout.start[name] : layout.start[name] + layout.size[name]] = 1
    support = np.zeros(layout.n_dim)
    for position, value in table.support.items():
        support[position] = value
    logged = [(n, s) for n, s in zip(layout.names, layout.shapes, strict=True) if layout.log[n]]
    names = (*layout.value_names, *[n for n, _ in logged])
    shapes = (*layout.shapes, *[s for _, s in logged])
    logged_values = zip(layout.value_names, layout.names, strict=True)
    reparameterized = tuple(v for v, n in logged_values if layout.log[n])
    return Program(ints, floats, log_flags, names, shapes, support, reparameterized)


def lmm_program(model, design: Design, priors: Mapping[str, Prior]) -> Program | None:
    """The Program of a Gaussian LMM's PyMC model (graph likelihood), or ``None``.

    ``design`` is the offset-absorbed design the model was built from.
    """
    try:
        layout, table = _Layout(model), _Priors()
        j0 = intercept_index(design)
        name = "beta" if j0 is None else "beta_c"
        fixed_pos = _vector(layout, table, name, [priors[t] for t in design.fixed_terms])
        zbars = [block_centring(block) for block in design.blocks]
        effects = _effects(layout, table, design, priors, zbars, shear=False)
        sigma_pos = int(layout.positions("sigma", 1)[0])
        table.add(sigma_pos, priors["sigma"], layout.log["sigma"])
        n = design.n_obs
        weights = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
        row_const = -0.5 * np.log(2.0 * np.pi) + 0.5 * np.log(weights)
        return _assemble(layout, table, design, fixed_pos, effects, F.GAUSSIAN, sigma_pos, -1,
                         -1, design.y, weights, np.zeros(n), row_const)  # fmt: skip
    except Unsupported:
        return None


def glmm_program(
    model,
    design: Design,
    family,
    priors: Mapping[str, Prior],
    zi_X: np.ndarray | None = None,
    zi_names: Sequence[str] = (),
) -> Program | None:
    """The Program of a GLMM's PyMC model, or ``None`` (links other than the defaults)."""
    from bayesmix.bayes.glmm_model import SHEAR, zi_intercept_index
    from bayesmix.bayes.glmm_priors import DISPERSION_KEYS, dispersion_names, zi_key

    code = FAMILY_CODES.get((family.name, family.link.name))
    if code is None:
        return None
    try:
        layout, table = _Layout(model), _Priors()
        j0 = intercept_index(design)
        fixed_priors = [priors[t] for t in design.fixed_terms]
        name = "beta" if j0 is None else "beta_c"
        fixed_pos = _vector(layout, table, name, fixed_priors)
        zbars = [block_centring(block) for block in design.blocks]
        effects = _effects(layout, table, design, priors, zbars, shear=j0 is not None and SHEAR)
        shear = any(block[4] >= 0 for block in effects[0])
        shift_row = -1
        if shear:  # the intercept's prior is evaluated at the reported intercept
            shift_row = next(i for i, row in enumerate(table.ints) if row[0] == fixed_pos[j0])
        disp_pos = -1
        names = dispersion_names(family)
        if names is not None:
            disp_pos = int(layout.positions(names[0], 1)[0])
            table.add(disp_pos, priors[DISPERSION_KEYS[family.name]], layout.log[names[0]])
        zi = None
        if zi_X is not None:
            zi_X = np.asarray(zi_X, dtype=float)
            zi_j0 = zi_intercept_index(zi_X, zi_names)
            zi_priors = [priors[zi_key(n)] for n in zi_names]
            zi_pos = _vector(layout, table, "zi_beta" if zi_j0 is None else "zi_beta_c", zi_priors)
            zi_xbar = np.zeros(zi_X.shape[1])
            if zi_j0 is not None:
                zi_xbar = zi_X.mean(axis=0)
                zi_xbar[zi_j0] = 0.0
            zi = (zi_pos, zi_X - zi_xbar)
        y = np.asarray(design.y, dtype=float)
        n = design.n_obs
        row_w = np.ones(n)
        if family.name == "binomial":
            trials = np.ones(n) if design.weights is None else np.asarray(design.weights, float)
            successes = np.rint(y * trials)
            log_choose = (
                special.gammaln(trials + 1)
                - special.gammaln(successes + 1)
                - special.gammaln(trials - successes + 1)
            )
            y, row_w, row_const = successes, trials, log_choose
        elif family.name == "gamma":
            row_const = np.log(y)
        else:
            row_const = -special.gammaln(y + 1.0)
        offset = np.zeros(n) if design.offset is None else np.asarray(design.offset, float)
        return _assemble(layout, table, design, fixed_pos, effects, code, -1, disp_pos,
                         shift_row, y, row_w, offset, row_const, zi)  # fmt: skip
    except Unsupported:
        return None
