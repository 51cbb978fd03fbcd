"""The second pass: each partition's cross-products, summed by a tree reduction.

Every partition is encoded by the template's encoder (:mod:`bayesmix.scale.survey`),
whitened by its prior weights and offset, and reduced to its
:class:`~bayesmix.ml.cross_products.CrossProducts`; pairs of products are then added
on the workers until one remains, which alone travels to this process. No row-level
array reaches the driver: its memory is bounded by the products' size,
:func:`products_nbytes`.

Where the work runs: ``client=None`` starts a local cluster of this machine's cores
(closed afterwards), a ``distributed.Client`` uses the user's cluster, and
``"sync"`` computes partition after partition in this process. A partition that
fails (to read, or to encode) is named in the error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.errors import DataError, FitError
from bayesmix.ml.cross_products import (
    BlockLayout,
    CrossProducts,
    add_products,
    block_layout,
    cross_products,
)
from bayesmix.spec.design import Design, build_design

__all__ = [
    "PartitionRows",
    "accumulate",
    "complete_rows",
    "encode_partition",
    "products_nbytes",
]


@dataclass(frozen=True)
class PartitionRows:
    """How a partition's rows become the kernel's whitened arrays (picklable for workers).

    ``columns`` are every column the model uses, ``predictors`` those new data need.
    With an ``intercept`` column, the rows are centred before they are summed:
    ``X - x_shift`` (0 at the intercept) and ``y - offset - y_shift``, which the
    intercept absorbs (:func:`bayesmix.ml.products_fit.centred_back`).
    """

    template: Design
    columns: tuple[str, ...]
    response: str
    weights: str | None
    functions: Mapping[str, Callable] | None = None
    predictors: tuple[str, ...] = ()
    intercept: int | None = None
    x_shift: np.ndarray | None = None
    y_shift: float = 0.0

    @functools.cached_property
    def ordering(self) -> tuple[list[int], BlockLayout]:
        """The kernel's order of the template's blocks and their layout in it."""
        blocks = self.template.blocks
        return block_layout([b.n_terms for b in blocks], [b.n_levels for b in blocks])


def complete_rows(rows: PartitionRows, part: pd.DataFrame, response: bool = True) -> pd.DataFrame:
    """The rows of ``part`` with no missing value in the model's columns (``response``
    False: in the predictors only, as new data for prediction need)."""
    return part[list(rows.columns if response else rows.predictors)].dropna()


def encode_partition(rows: PartitionRows, part: pd.DataFrame, *, response: bool = True):
    """``(y, X, blocks, offset, weights)`` of a partition's complete rows (``y`` and
    ``weights`` None when ``response`` is False); blocks in the template's (formula)
    order. ``None`` for a partition without complete rows."""
    part = complete_rows(rows, part, response)
    if len(part) == 0:
        return None
    new = rows.template.evaluate_new_data(part)
    unseen = [
        b.grouping for b, (codes, _) in zip(rows.template.blocks, new.blocks) if (codes < 0).any()
    ]
    if unseen:  # pragma: no cover - the survey saw every level
        raise FitError(f"levels of {', '.join(unseen)} missing from the survey of the data")
    y = None
    if response:
        y = build_design(f"{rows.response} ~ 1", part, functions=rows.functions).y
    weights = None
    if rows.weights is not None and response:
        weights = pd.to_numeric(part[rows.weights], errors="coerce").to_numpy(dtype=float)
        if not np.all(weights > 0):
            raise DataError(
                f"weights must be positive; {int(np.sum(~(weights > 0)))} row(s) of column "
                f"{rows.weights!r} are not (drop them instead of giving them zero weight)."
            )
    return y, new.X, new.blocks, new.offset_or_zero, weights


def partition_products(rows: PartitionRows, part: pd.DataFrame) -> tuple[CrossProducts, float]:
    """The products of one partition's whitened rows and its ``sum(log w)``."""
    encoded = encode_partition(rows, part)
    order, layout = rows.ordering
    if encoded is None:
        p = rows.template.n_fixed
        empty = [(np.zeros(0, np.int64), np.zeros((0, k))) for k in layout.sizes]
        return cross_products(np.zeros(0), np.zeros((0, p)), empty, layout), 0.0
    y, X, blocks, offset, weights = encoded
    r = y - offset
    if rows.intercept is not None:
        X, r = X - rows.x_shift[None, :], r - rows.y_shift
    s = np.ones(len(y)) if weights is None else np.sqrt(weights)
    ordered = [(blocks[i][0], blocks[i][1] * s[:, None]) for i in order]
    products = cross_products(s * r, X * s[:, None], ordered, layout)
    return products, (0.0 if weights is None else float(np.sum(np.log(weights))))


def _add(a: tuple[CrossProducts, float], b: tuple[CrossProducts, float]):
    return add_products(a[0], b[0]), a[1] + b[1]


def products_nbytes(template: Design) -> int:
    """Bytes of the dense products on the driver (the pairs come on top: 8 (k_b k1 + 1)
    bytes per distinct pair of levels seen together).

    With ``c = p + 1``, ``q1 = m1 k1`` and ``q_r`` the rest blocks' effects:
    ``8 (c^2 + q1 (k1 + c) + q_r^2 + q_r c)``.
    """
    blocks = template.blocks
    _, layout = block_layout([b.n_terms for b in blocks], [b.n_levels for b in blocks])
    c = template.n_fixed + 1
    if not layout.sizes:
        return 8 * c * c
    q1 = layout.sizes[0] * layout.n_levels[0]
    q_r = layout.q_rest
    return 8 * (c * c + q1 * (layout.sizes[0] + c) + q_r * q_r + q_r * c)


def accumulate(
    ddf: Any, rows: PartitionRows, client: Any, progress: bool
) -> tuple[CrossProducts, float]:
    """Sum the products of every partition of ``ddf`` (see the module docstring)."""
    parts = ddf.to_delayed()
    if isinstance(client, str) and client == "sync":
        return _accumulate_sync(parts, rows, progress)
    from bayesmix.inference.distributed import local_client, usable_cores

    if client is not None:
        return _accumulate_on(client, parts, rows, progress)
    with local_client(min(usable_cores(), max(len(parts), 1))) as local:
        return _accumulate_on(local, parts, rows, progress)


def _failed(index: int, error: BaseException) -> DataError:
    return DataError(f"partition {index} of the data failed: {type(error).__name__}: {error}")


def _accumulate_sync(parts: list, rows: PartitionRows, progress: bool):
    from tqdm.auto import tqdm

    total = None
    for index, part in enumerate(tqdm(parts, desc="partitions", disable=not progress)):
        try:  # reading and encoding alike: the error names the partition
            out = partition_products(rows, part.compute(scheduler="sync"))
        except Exception as error:
            raise _failed(index, error) from error
        total = out if total is None else _add(total, out)
    return total


def _accumulate_on(client: Any, parts: list, rows: PartitionRows, progress: bool):
    from distributed import progress as show_progress
    from distributed import wait

    [shared] = client.scatter([rows], broadcast=True, hash=False)
    leaves = [client.compute(part) for part in parts]
    products = [client.submit(partition_products, shared, leaf) for leaf in leaves]
    level = list(products)
    while len(level) > 1:  # the tree: pairs added on the workers
        pairs = [client.submit(_add, a, b) for a, b in zip(level[::2], level[1::2])]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    if progress:
        show_progress(level[0])
    wait(products)
    for index, future in enumerate(products):
        if future.status == "error":
            pending = {f.key: f for f in [*leaves, *products, *level] if not f.done()}
            client.cancel(list(pending.values()))
            raise _failed(index, future.exception())
    # the futures are released when these names go (this function returning)
    return level[0].result()
