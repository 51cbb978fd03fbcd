"""The Program of a GLMM's PyMC model (:func:`bayesmix.bayes.glmm_model.build_glmm_model`).

The parts shared with linear models (fixed effects, blocks, priors) come from
:mod:`bayesmix.bayes.generic.program`; here the family's per-row data (binomial
successes and trials, the constants of each row's log-likelihood), the
dispersion, the offset, the intercept's shear and zero inflation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import special

from bayesmix.bayes.generic import families as F
from bayesmix.bayes.generic.prior_rows import Unsupported
from bayesmix.bayes.generic.program import (
    Program,
    assemble,
    mean_part,
    vector_positions,
)
from bayesmix.bayes.priors import Prior
from bayesmix.spec.design import Design

#: (family, link) pairs the kernel computes, and their codes.
FAMILY_CODES = {
    ("binomial", "logit"): F.BINOMIAL_LOGIT,
    ("binomial", "cloglog"): F.BINOMIAL_CLOGLOG,
    ("binomial", "probit"): F.BINOMIAL_PROBIT,
    ("poisson", "identity"): F.POISSON_IDENTITY,
    ("poisson", "sqrt"): F.POISSON_SQRT,
    ("gamma", "identity"): F.GAMMA_IDENTITY,
    ("poisson", "log"): F.POISSON_LOG,
    ("negbinomial", "log"): F.NEGBIN_LOG,
    ("gamma", "log"): F.GAMMA_LOG,
    ("gamma", "inverse"): F.GAMMA_INVERSE,
}


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
        layout, table, fixed_pos, effects, j0 = mean_part(model, design, priors, shear=SHEAR)
        shear = any(block[4] >= 0 for block in effects[0])
        shift_row = -1
        if shear:  # the intercept's prior is evaluated at the reported intercept
            shift_row = next(i for i, row in enumerate(table.ints) if row[0] == fixed_pos[j0])
        disp_pos = -1
        names = dispersion_names(family)
        if names is not None:
            disp_pos = int(layout.positions(names[0], 1)[0])
            table.add(disp_pos, priors[DISPERSION_KEYS[family.name]], layout.transform[names[0]])
        zi = None
        if zi_X is not None:
            zi_X = np.asarray(zi_X, dtype=float)
            zi_j0 = zi_intercept_index(zi_X, zi_names)
            zi_priors = [priors[zi_key(n)] for n in zi_names]
            zi_pos = vector_positions(
                layout, table, "zi_beta" if zi_j0 is None else "zi_beta_c", zi_priors
            )
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
        offset = np.asarray(design.offset_or_zero, dtype=float)
        return assemble(
            layout,
            table,
            design,
            fixed_pos,
            effects,
            family=code,
            y=y,
            row_w=row_w,
            row_const=row_const,
            offset=offset,
            disp_pos=disp_pos,
            shift_row=shift_row,
            zi=zi,
        )
    except Unsupported:
        return None
