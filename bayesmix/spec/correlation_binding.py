"""Tying a correlation structure to the rows of a fit, with the checks nlme makes and more.

One job: from a :class:`~.correlation_structures.CorrelationStructure` and the
rows a fit uses, find each row's group and time (or coordinates), refuse what
cannot be estimated, and return the :class:`~.correlation_structures.BoundCorrelation`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError, DataError, DataWarning, warn
from bayesmix.spec.correlation_math import (
    MarkovLayout,
    ar_to_pacf,
    dense_layout,
    positions_in_groups,
)
from bayesmix.spec.correlation_structures import (
    MAX_DENSE_GROUP,
    BoundCorrelation,
    CorrelationStructure,
    distances,
)

_SPATIAL = ("corExp", "corGaus")
_INTEGER_TIME = ("corAR1", "corARMA")


def bind_correlation(
    spec: CorrelationStructure,
    data: pd.DataFrame,
    default_group: tuple[str, np.ndarray] | None,
) -> BoundCorrelation:
    """Bind ``spec`` to ``data`` (the rows a fit uses).

    Parameters
    ----------
    default_group : (name, codes), optional
        The grouping used when ``spec.group`` is None (the innermost
        random-effects grouping of an lmm); ``None`` puts all rows in one group.
    """
    kind = spec.kind
    n = len(data)
    if spec.group is not None:
        name = spec.group
        codes = pd.factorize(data[name], sort=True)[0].astype(np.int64)
    elif default_group is not None:
        name, codes = default_group[0], np.asarray(default_group[1], dtype=np.int64)
    else:
        name, codes = None, np.zeros(n, dtype=np.int64)
    n_groups = int(codes.max()) + 1 if n else 0
    sizes = np.bincount(codes, minlength=n_groups)
    label = spec.nlme()
    if sizes.max(initial=0) < 2:
        raise DataError(
            f"{label}: every group{f' of {name!r}' if name else ''} has a single row, so no "
            "within-group correlation can be estimated; choose a coarser group."
        )
    if kind in _SPATIAL:
        coords = _numeric_columns(data, spec.coords, label)
        _refuse_zero_distances(coords, codes, spec.coords, label)
    else:
        coords = _times(spec, data, codes, label)
    max_size = int(sizes.max())
    n_times = 0
    if kind == "corSymm":
        coords, n_times = _symm_positions(coords, codes, n_groups, label)
    if kind in ("corAR1", "corCAR1"):
        # groups in order of first appearance: data already grouped keep their order,
        # which lets the whitening skip its gathers (MarkovLayout's sorted path)
        first_seen = np.full(n_groups, len(codes))
        np.minimum.at(first_seen, codes, np.arange(len(codes)))
        rank = np.argsort(np.argsort(first_seen, kind="stable"), kind="stable")
        order = np.lexsort((coords[:, 0], rank[codes]))
        sorted_codes = codes[order]
        first = np.concatenate([[True], sorted_codes[1:] != sorted_codes[:-1]])
        gap = np.concatenate([[1.0], np.diff(coords[order, 0])])
        gap[first] = 1.0
        markov, dense = MarkovLayout(order, first, gap), None
    else:
        if max_size > MAX_DENSE_GROUP:
            raise DataError(
                f"{label}: the largest group has {max_size} rows, above the {MAX_DENSE_GROUP} "
                "that a dense correlation matrix is factored for; give a grouping (group=) "
                "that splits the rows, or use corAR1/corCAR1 (whose inverse is banded)."
            )
        markov, dense = None, dense_layout(codes, coords, n_groups, share=kind not in _SPATIAL)
    names, natural = _names_and_start(spec, max_size, n_times, dense)
    bound = BoundCorrelation(
        spec=spec,
        names=names,
        start=np.zeros(len(names)),
        group_codes=codes,
        group_name=name,
        coords=coords,
        markov=markov,
        dense=dense,
        max_size=max_size,
        n_times=n_times,
    )
    return replace(bound, start=bound.unconstrained(natural))


def _numeric_columns(data: pd.DataFrame, columns, label: str) -> np.ndarray:
    out = []
    for column in columns:
        values = data[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataError(
                f"{label}: column {column!r} must be numeric, but it is {values.dtype}."
            )
        out.append(values.to_numpy(dtype=float))
    return np.column_stack(out)


def _times(spec, data: pd.DataFrame, codes: np.ndarray, label: str) -> np.ndarray:
    """Each row's time: the ``time`` column, else its position in its group (data order)."""
    time = getattr(spec, "time", None)
    if time is None:  # position within the group, in data order
        return positions_in_groups(codes)[:, None]
    t = _numeric_columns(data, (time,), label)[:, 0]
    if spec.kind in _INTEGER_TIME and np.any(t != np.round(t)):
        raise DataError(
            f"{label}: {spec.kind} needs an integer time, but {time!r} has non-integer values "
            f"(e.g. {t[t != np.round(t)][0]:.4g}); use corCAR1(time={time!r}) for continuous time."
        )
    frame = pd.DataFrame({"g": codes, "t": t})
    duplicated = frame.duplicated()
    if duplicated.any():
        g, tt = frame.loc[duplicated].iloc[0]
        raise DataError(
            f"{label}: {int(duplicated.sum())} row(s) repeat a time within their group (e.g. "
            f"{time} = {tt:g} twice in one group); each time may occur once per group. Average "
            "the repeats or give a finer group."
        )
    unsorted = (frame.groupby("g")["t"].diff() < 0).any()
    if unsorted:
        warn(
            f"{label}: {time!r} is not increasing within every group; the rows are sorted by "
            f"{time!r} internally (results do not depend on the data's order).",
            DataWarning,
        )
    return t[:, None]


def _refuse_zero_distances(coords: np.ndarray, codes: np.ndarray, columns, label: str) -> None:
    frame = pd.DataFrame(coords).assign(g=codes)
    if frame.duplicated().any():
        raise DataError(
            f"{label}: {int(frame.duplicated().sum())} row(s) share their coordinates "
            f"({', '.join(columns)}) with another row of the same group; distances of zero "
            "make the correlation matrix singular. Jitter or merge the repeated locations."
        )


def _symm_positions(coords, codes, n_groups: int, label: str) -> tuple[np.ndarray, int]:
    """Distinct times as indices 0..K-1; refuse pairs of times never seen together."""
    values, index = np.unique(coords[:, 0], return_inverse=True)
    K = len(values)
    together = np.zeros((K, K), dtype=np.int64)
    for g in range(n_groups):
        present = np.unique(index[codes == g])
        together[np.ix_(present, present)] += 1
    never = np.argwhere(np.triu(together == 0, 1))
    if never.size:
        a, b = values[never[0]]
        raise DataError(
            f"{label}: the {K} distinct times give {K * (K - 1) // 2} correlations, but times "
            f"{a:g} and {b:g} (and {len(never) - 1} other pair(s)) never occur in the same "
            "group, so their correlation cannot be estimated; use a structured correlation "
            "(corAR1, corCAR1, corCompSymm) instead."
        )
    if n_groups < K:
        warn(
            f"{label}: {K * (K - 1) // 2} correlations between {K} times are estimated from "
            f"{n_groups} groups only; expect wide uncertainty, or use a structured correlation.",
            DataWarning,
        )
    return index.astype(float)[:, None], K


def _names_and_start(
    spec, max_size: int, n_times: int, dense
) -> tuple[tuple[str, ...], np.ndarray]:
    """The reported parameters' names and their start (nlme's defaults or ``start=``),
    checked to lie inside the structure's parameter space."""
    kind = spec.kind
    given = None if spec.start is None else np.atleast_1d(np.asarray(spec.start, dtype=float))

    def natural_start(default: np.ndarray) -> np.ndarray:
        if given is None:
            return default
        if given.shape != default.shape or not np.all(np.isfinite(given)):
            raise ArgumentError(
                f"{spec.nlme()}: start needs {default.size} finite value(s), got {spec.start!r}."
            )
        return given

    if kind in ("corAR1", "corCAR1"):
        phi = natural_start(np.zeros(1) if kind == "corAR1" else np.array([0.2]))  # nlme's
        _inside(phi, -1.0 if kind == "corAR1" else 0.0, 1.0, spec)
        return ("Phi",), phi
    if kind == "corARMA":
        p, q = spec.p, spec.q
        nat = natural_start(np.zeros(p + q))
        names = tuple(f"Phi{i + 1}" for i in range(p)) + tuple(f"Theta{j + 1}" for j in range(q))
        pac = np.concatenate([ar_to_pacf(nat[:p]), ar_to_pacf(-nat[p:])])
        _inside(pac, -1.0, 1.0, spec, "a stationary and invertible ARMA")
        return names, nat
    if kind == "corCompSymm":
        rho = natural_start(np.zeros(1))
        _inside(rho, -1.0 / (max_size - 1), 1.0, spec)
        return ("Rho",), rho
    if kind == "corSymm":
        if given is not None:
            raise ArgumentError("corSymm takes no start= here; it starts from independence.")
        pairs = [(i, j) for i in range(n_times) for j in range(i + 1, n_times)]
        return tuple(f"cor({i + 1},{j + 1})" for i, j in pairs), np.zeros(len(pairs))
    # spatial: range from the median within-group distance, nugget 0.1
    d = np.concatenate(
        [
            distances(c, spec.metric)[:, *np.triu_indices(c.shape[1], 1)].ravel()
            for _, c, _ in dense.classes
            if c.shape[1] > 1
        ]
    )
    default = [float(np.median(d[d > 0]))] + ([0.1] if spec.nugget else [])
    nat = natural_start(np.asarray(default))
    _inside(nat[:1], 0.0, np.inf, spec)
    if spec.nugget:
        _inside(nat[1:], 0.0, 1.0, spec)
    return ("range", "nugget") if spec.nugget else ("range",), nat


def _inside(values: np.ndarray, lo: float, hi: float, spec, what: str | None = None) -> None:
    if np.any(values <= lo) or np.any(values >= hi):
        bounds = what or f"inside ({lo:g}, {hi:g})"
        raise ArgumentError(f"{spec.nlme()}: start {values.tolist()} must be {bounds}.")
