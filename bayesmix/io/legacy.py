"""Reading files of earlier format versions as the model they were saved with.

Format 1 (bayesmix before R's contrasts) differs from format 2 in two ways,
both undone here so that an old file loads with the numbers it was saved with:

* ordered categoricals had treatment coding; format 2 codes them with R's
  polynomial contrasts unless told otherwise, so a format-1 model is rebuilt
  with ``contrasts`` set to treatment for every ordered factor of its data;
* some columns had formulae's names (``I(x ** 2)``, ``poly(x, 2)[0]``), now
  R's (``I(x^2)``, ``poly(x, 2)1``): the stored check compares with the
  names respelt, and the loaded result carries R's spelling.

Models saved in format 1 report lme4's conventions, as they did then.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from bayesmix.spec.formula_eval import r_column_names

__all__ = ["upgrade"]


def upgrade(meta: dict[str, Any], version: int, data: pd.DataFrame) -> dict[str, Any]:
    """The metadata of a format-``version`` file as format 2 would have written it."""
    if version >= 2:
        return meta
    meta = copy.deepcopy(meta)
    model = meta.get("model")
    if isinstance(model, dict) and model.get("class") == "LinearMixedModel":
        ordered = [
            str(name)
            for name, column in data.items()
            if isinstance(column.dtype, pd.CategoricalDtype) and column.dtype.ordered
        ]
        model.setdefault("contrasts", {name: "treatment" for name in ordered})
        model.setdefault("conventions", "lme4")
    structure = (meta.get("check") or {}).get("structure")
    if isinstance(structure, dict):
        if isinstance(structure.get("fixed_terms"), list):
            structure["fixed_terms"] = r_column_names(structure["fixed_terms"], {})
        for block in structure.get("blocks") or []:
            if isinstance(block, dict) and isinstance(block.get("terms"), list):
                block["terms"] = r_column_names(block["terms"], {})
    return meta
