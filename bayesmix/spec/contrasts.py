"""R's contrasts for factors: treatment, sum, Helmert and orthogonal polynomials.

R codes an unordered factor with ``contr.treatment`` and an *ordered* factor
with ``contr.poly`` (``options("contrasts")``); ``C(f, "sum")`` in a formula or
``contrasts={"f": "sum"}`` (lme4's argument) choose another coding. formulae
knows treatment coding only for plain variables, so before formulae sees a
formula every factor that needs another coding is rewritten as a call of
formulae's ``C()`` with one of the encodings below, and the columns formulae
produces are renamed the way R names them:

============  ==========================  =====================================
coding        R function                  column names (factor ``f``)
============  ==========================  =====================================
treatment     ``contr.treatment``         ``f[b]``, ``f[c]`` (bayesmix's usual)
sum           ``contr.sum``               ``f1``, ``f2`` (last level omitted)
helmert       ``contr.helmert``           ``f1``, ``f2``
poly          ``contr.poly``              ``f.L``, ``f.Q``, ``f.C``, ``f^4``...
============  ==========================  =====================================

Where a term needs a factor's full indicator coding (a model without an
intercept, or ``x:f`` without ``f``), R ignores the contrasts and so does
bayesmix: the columns are ``f[a]``, ``f[b]``, ...

The contrast matrices are computed here (a few lines each, from their
definitions in R's documentation) because formulae 0.9 has only treatment and
sum codings, and its sum coding names columns by level rather than R's way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from formulae.categorical import CategoricalBox, ContrastMatrix, Encoding

from bayesmix.errors import ArgumentError, FormulaError

#: The codings a user may ask for, by every name R and formulae users write.
CODING_ALIASES: dict[str, str] = {
    "treatment": "treatment",
    "contr.treatment": "treatment",
    "Treatment": "treatment",
    "T": "treatment",
    "sum": "sum",
    "contr.sum": "sum",
    "Sum": "sum",
    "S": "sum",
    "helmert": "helmert",
    "contr.helmert": "helmert",
    "poly": "poly",
    "contr.poly": "poly",
}
CODINGS = ("treatment", "sum", "helmert", "poly")


def coding_name(value: Any, where: str) -> str:
    """The canonical coding (``"sum"``...) for a name a user wrote."""
    if isinstance(value, str) and value in CODING_ALIASES:
        return CODING_ALIASES[value]
    raise ArgumentError(
        f"{where}: unknown contrasts {value!r}; use one of 'treatment', 'sum', 'helmert', "
        "'poly' (R's contr.treatment, contr.sum, contr.helmert, contr.poly)."
    )


def poly_contrast(n_levels: int) -> np.ndarray:
    """R's ``contr.poly(n)``: orthonormal polynomials in the scores 1..n, degree >= 1.

    Column j is the part of ``(score - mean)^j`` orthogonal to the lower
    degrees, scaled to unit length, with the sign that makes its leading
    coefficient positive (``Q[:, j] * R[j, j]`` of the QR decomposition).
    """
    scores = np.arange(1.0, n_levels + 1.0)
    centred = scores - scores.mean()
    powers = centred[:, None] ** np.arange(n_levels)[None, :]
    q, r = np.linalg.qr(powers)
    raw = q * np.diag(r)[None, :]
    raw /= np.sqrt(np.sum(raw**2, axis=0))[None, :]
    return raw[:, 1:]


def poly_labels(n_columns: int) -> list[str]:
    """R's names of polynomial contrasts: ``.L``, ``.Q``, ``.C``, ``^4``, ..."""
    return [(".L", ".Q", ".C")[j] if j < 3 else f"^{j + 1}" for j in range(n_columns)]


def contrast_matrix(coding: str, n_levels: int) -> tuple[np.ndarray, list[str]]:
    """The (n_levels, n_levels - 1) contrast matrix of a coding and its column suffixes."""
    k = n_levels - 1
    if coding == "sum":
        return np.vstack([np.eye(k), -np.ones((1, k))]), [str(j + 1) for j in range(k)]
    if coding == "helmert":
        matrix = np.zeros((n_levels, k))
        for j in range(k):
            matrix[: j + 1, j] = -1.0
            matrix[j + 1, j] = j + 1.0
        return matrix, [str(j + 1) for j in range(k)]
    if coding == "poly":
        return poly_contrast(n_levels), poly_labels(k)
    raise ValueError(f"no contrast matrix for coding {coding!r}")


# Module-level classes (not closures) so that designs, and the results that hold
# them, pickle.


class RCoding(Encoding):
    """R's coding of one factor; suffixes become R's column names (see module)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding

    def code_with_intercept(self, levels):
        # A term that needs every level: R's indicator columns, whatever the coding.
        return ContrastMatrix(np.eye(len(levels)), [f"[{level}]" for level in levels])

    def code_without_intercept(self, levels):
        if self.coding == "treatment":
            matrix = np.vstack([np.zeros((1, len(levels) - 1)), np.eye(len(levels) - 1)])
            return ContrastMatrix(matrix, [f"[{level}]" for level in levels[1:]])
        matrix, suffixes = contrast_matrix(self.coding, len(levels))
        return ContrastMatrix(matrix, suffixes)


class LevelsBox(CategoricalBox):
    """formulae's box of a categorical, except that new data may lack some levels.

    formulae's own box insists that the data hold every level, which new rows
    for a prediction seldom do; its codes come from the fitted levels anyway.
    """

    @property
    def levels(self):
        return self._levels

    @levels.setter
    def levels(self, value):
        if value is not None and not set(self.data) <= set(value):
            raise ValueError("the data hold levels the factor does not have")
        self._levels = value


def bmx_code(data: Any, contrast: Encoding) -> LevelsBox:
    """``bmx_code(f, encoding)`` in a rewritten formula: formulae's ``C()`` for R's codings."""
    return LevelsBox(data, contrast, None)


ENCODING_NAMES = {coding: f"bmx_contr_{coding}" for coding in CODINGS}
CODE_FUNCTION = "bmx_code"


def encoding_namespace() -> dict[str, Any]:
    """Entries that the rewritten formulas need in formulae's environment."""
    encodings = {name: RCoding(coding) for coding, name in ENCODING_NAMES.items()}
    return {**encodings, CODE_FUNCTION: bmx_code}


def check_contrasts(contrasts: Any, data: pd.DataFrame) -> dict[str, str]:
    """Validate lme4's ``contrasts=`` argument: a dict of factor column -> coding."""
    if contrasts is None:
        return {}
    if not isinstance(contrasts, Mapping):
        raise ArgumentError(
            "contrasts must be a dict mapping factor columns to codings, e.g. "
            f"contrasts={{'Sex': 'sum'}}; got {type(contrasts).__name__}."
        )
    out = {}
    for column, value in contrasts.items():
        if column not in data.columns:
            raise ArgumentError(f"contrasts: {column!r} is not a column of the data.")
        if is_numeric_column(data[column]):
            raise ArgumentError(
                f"contrasts: column {column!r} is numeric, so it has no contrasts; make it a "
                f"factor first (data[{column!r}] = data[{column!r}].astype('category'))."
            )
        out[column] = coding_name(value, f"contrasts[{column!r}]")
    return out


def is_numeric_column(column: pd.Series) -> bool:
    """Whether formulae treats the column as a number (not a factor)."""
    return pd.api.types.is_numeric_dtype(column.dtype) and not isinstance(
        column.dtype, pd.CategoricalDtype
    )


def factor_codings(data: pd.DataFrame, columns: list[str], contrasts: dict[str, str]) -> dict:
    """Coding of every factor column that is not plain treatment coding.

    ``contrasts=`` wins; otherwise an ordered categorical gets ``"poly"`` as in R.
    """
    out = {}
    for name in columns:
        column = data[name]
        if name in contrasts:
            if contrasts[name] != "treatment" or _is_ordered(column):
                out[name] = contrasts[name]
        elif _is_ordered(column):
            out[name] = "poly"
    return out


def _is_ordered(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.CategoricalDtype) and bool(column.dtype.ordered)


def rewrite(tokens: list[Any], codings: Mapping[str, str], formula: str) -> tuple[str, dict]:
    """Rewrite one scanned expression for formulae; return it and the column renames.

    Plain factor variables with a coding in ``codings`` become
    ``bmx_code(f, bmx_contr_<coding>)`` (formulae's ``C()`` with R's coding),
    and so does a user's ``C(f, "sum")`` (or ``C(f, contr.sum)``).
    The renames map formulae's names of those calls to R's (``f`` or the user's
    ``C(...)`` text), for :func:`rename_columns`.

    Parameters
    ----------
    tokens : list of formulae tokens
        The expression scanned by formulae's scanner.
    codings : mapping
        Column -> coding, from :func:`factor_codings`.
    formula : str
        The whole formula, for messages.
    """
    out: list[str] = []
    renames: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        is_call = i + 1 < len(tokens) and tokens[i + 1].kind == "LEFT_PAREN"
        if token.kind == "IDENTIFIER" and token.lexeme == "C" and is_call:
            end = _closing(tokens, i + 1)
            arguments = _split_arguments(tokens[i + 2 : end])
            text = _c_call(arguments, formula, renames)
            out.append(text)
            i = end + 1
            continue
        name = _variable_name(token)
        if name is not None and not is_call and name in codings:
            call = f"{CODE_FUNCTION}({token.lexeme}, {ENCODING_NAMES[codings[name]]})"
            renames[call] = token.lexeme
            out.append(call)
        else:
            out.append(token.lexeme)
        i += 1
    return " ".join(out), renames


def _variable_name(token: Any) -> str | None:
    if token.kind == "IDENTIFIER":
        return token.lexeme
    if token.kind == "BQNAME":
        return token.lexeme[1:-1]
    return None


def _closing(tokens: list[Any], open_index: int) -> int:
    depth = 0
    for j in range(open_index, len(tokens)):
        depth += tokens[j].kind == "LEFT_PAREN"
        depth -= tokens[j].kind == "RIGHT_PAREN"
        if depth == 0:
            return j
    raise FormulaError("Unbalanced brackets in a C() call.")  # the parser refuses first


def _split_arguments(tokens: list[Any]) -> list[list[Any]]:
    arguments, current, depth = [], [], 0
    for token in tokens:
        if token.kind == "COMMA" and depth == 0:
            arguments.append(current)
            current = []
            continue
        depth += token.kind in ("LEFT_PAREN", "LEFT_BRACKET")
        depth -= token.kind in ("RIGHT_PAREN", "RIGHT_BRACKET")
        current.append(token)
    arguments.append(current)
    return arguments


def _c_call(arguments: list[list[Any]], formula: str, renames: dict[str, str]) -> str:
    """formulae's text for a user's ``C(f, contrast)``, recording its R name."""
    texts = [" ".join(t.lexeme for t in argument) for argument in arguments]
    if len(arguments) < 2 or any(t.kind == "EQUAL" for t in arguments[1]):
        return f"C({', '.join(texts)})"  # no positional contrast: formulae's treatment
    contrast = arguments[1]
    if len(contrast) != 1 or contrast[0].kind not in ("STRING", "IDENTIFIER"):
        raise FormulaError(
            f"In {formula!r}: the contrasts of C({texts[0]}, {texts[1]}) must be a name such "
            "as 'sum', 'helmert', 'poly' or 'treatment'."
        )
    token = contrast[0]
    written = token.literal if token.kind == "STRING" else token.lexeme
    coding = coding_name(written, f"In {formula!r}, C({texts[0]}, {texts[1]})")
    if len(arguments) > 2:
        raise FormulaError(
            f"In {formula!r}: C({', '.join(texts)}) takes a factor and its contrasts only; "
            "set the level order in the DataFrame (a pandas Categorical)."
        )
    call = f"{CODE_FUNCTION}({texts[0]}, {ENCODING_NAMES[coding]})"
    renames[call] = f"C({texts[0]}, {token.lexeme})"
    return call


def rename_columns(names: list[str], renames: Mapping[str, str]) -> list[str]:
    """R's names for columns formulae named after a rewritten ``C()`` call.

    formulae names a column ``<call>[<suffix>]``; the suffix is already R's
    (``.L``, ``1``, ``[b]``), so the column becomes ``<R name><suffix>``. In an
    interaction each factor's part is renamed.
    """
    if not renames:
        return list(names)
    out = []
    for name in names:
        for call, r_name in renames.items():
            name = _replace_call(name, call, r_name)
        out.append(name)
    return out


def _replace_call(name: str, call: str, r_name: str) -> str:
    start = name.find(call + "[")
    while start >= 0:
        # The suffix runs to the bracket that closes '<call>[' (suffixes like '[b]' nest).
        j, depth = start + len(call), 0
        while j < len(name):
            depth += name[j] == "["
            depth -= name[j] == "]"
            if depth == 0:
                break
            j += 1
        suffix = name[start + len(call) + 1 : j]
        name = name[:start] + r_name + suffix + name[j + 1 :]
        start = name.find(call + "[", start + len(r_name) + len(suffix))
    return name
