"""Tables of variance components and conditional modes, shared by the ML results.

:func:`varcorr_table` lays covariance matrices out as lme4's
``as.data.frame(VarCorr(fit))``; :func:`ranef_tables` the conditional modes
and their conditional SDs as lme4's ``ranef(fit, condVar = TRUE)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.spec.covariance import varcorr_group_labels

__all__ = ["ranef_tables", "varcorr_table"]


def varcorr_table(
    blocks: Sequence[Any], covariances: Sequence[np.ndarray], sigma: float | None
) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))``; no ``Residual`` row when ``sigma`` is None
    (a GLMM family without a dispersion parameter)."""
    rows: list[tuple] = []  # (grp, var1, var2, vcov, sdcor)
    labels = varcorr_group_labels(blocks)
    for block, cov, names in zip(blocks, covariances, labels):
        cov = np.asarray(cov, dtype=float)
        sd = np.sqrt(np.diag(cov))
        rows += [(names[j], t, None, cov[j, j], sd[j]) for j, t in enumerate(block.terms)]
        if block.covariance == "diagonal":
            continue
        for j in range(block.n_terms):  # lower triangle, column by column (lme4)
            for i in range(j + 1, block.n_terms):
                corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else math.nan
                rows.append((names[0], block.terms[j], block.terms[i], cov[i, j], corr))
    if sigma is not None:
        rows.append(("Residual", None, None, sigma**2, sigma))
    columns = ("grp", "var1", "var2", "vcov", "sdcor")
    grp, var1, var2, vcov, sdcor = zip(*rows) if rows else ((),) * 5
    # object dtype keeps None (not NaN) in var1/var2, as in the shared layout
    text = {"grp": grp, "var1": var1, "var2": var2}
    frame = {key: pd.Series(list(values), dtype=object) for key, values in text.items()}
    frame.update(vcov=np.array(vcov, dtype=float), sdcor=np.array(sdcor, dtype=float))
    return pd.DataFrame(frame, columns=list(columns))


def ranef_tables(
    blocks: Sequence[Any],
    modes_by_block: Sequence[np.ndarray],
    variances_by_block: Sequence[np.ndarray],
    wide: bool = False,
) -> dict[str, pd.DataFrame]:
    """Conditional modes (and SDs) per grouping factor; blocks on one factor are merged."""
    groups: dict[str, list[int]] = {}
    for i, block in enumerate(blocks):
        groups.setdefault(block.grouping, []).append(i)
    out = {}
    for grouping, indices in groups.items():
        levels = list(dict.fromkeys(lv for i in indices for lv in blocks[i].levels))
        modes: dict[str, pd.Series] = {}
        sds: dict[str, pd.Series] = {}
        for i in indices:
            block = blocks[i]
            b = np.asarray(modes_by_block[i], dtype=float)
            var = np.asarray(variances_by_block[i], dtype=float)
            se = np.sqrt(np.clip(np.diagonal(var, axis1=1, axis2=2), 0.0, None))
            for j, term in enumerate(block.terms):
                modes[term] = pd.Series(b[:, j], index=list(block.levels))
                sds[term] = pd.Series(se[:, j], index=list(block.levels))
        wide_modes = pd.DataFrame(modes).reindex(levels)
        wide_modes.index.name = grouping
        if wide:
            out[grouping] = wide_modes
            continue
        long_sd = pd.DataFrame(sds).reindex(levels).stack(future_stack=True)
        frame = pd.DataFrame(
            {"estimate": wide_modes.stack(future_stack=True), "std_error": long_sd}
        )
        frame.index.names = ["level", "term"]
        out[grouping] = frame
    return out
