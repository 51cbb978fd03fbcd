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

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from formulae.categorical import CategoricalBox, ContrastMatrix, Encoding

from bayesmix.errors import ArgumentError, DataWarning, FormulaError, warn

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


def coding_name(value: Any, where: str, error: type[Exception] = ArgumentError) -> str:
    """The canonical coding (``"sum"``...) for a name a user wrote."""
    if isinstance(value, str) and value in CODING_ALIASES:
        return CODING_ALIASES[value]
    raise error(
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


#: Wraps each column suffix in formulae's names, so that renaming never has to
#: parse brackets that factor levels may hold themselves.
_MARK = "\x1f"


def _marked(suffix: str) -> str:
    return f"{_MARK}{suffix}{_MARK}"


class RCoding(Encoding):
    """R's coding of one factor; suffixes become R's column names (see module)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding

    def code_with_intercept(self, levels):
        # A term that needs every level: R's indicator columns, whatever the coding.
        return ContrastMatrix(np.eye(len(levels)), [_marked(f"[{level}]") for level in levels])

    def code_without_intercept(self, levels):
        if self.coding == "treatment":
            matrix = np.vstack([np.zeros((1, len(levels) - 1)), np.eye(len(levels) - 1)])
            return ContrastMatrix(matrix, [_marked(f"[{level}]") for level in levels[1:]])
        matrix, suffixes = contrast_matrix(self.coding, len(levels))
        return ContrastMatrix(matrix, [_marked(suffix) for suffix in suffixes])


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


def factor_codings(
    data: pd.DataFrame,
    columns: list[str],
    contrasts: Mapping[str, str],
    warn_intervals: bool = True,
) -> dict[str, str]:
    """Coding of every factor column that is not plain treatment coding.

    ``contrasts`` (lme4's argument, for the fixed part) wins; otherwise an
    ordered categorical gets ``"poly"`` as in R.

    Raises
    ------
    ArgumentError
        Polynomial contrasts for more than 95 levels (R refuses them too: the
        orthogonal polynomials cannot be computed accurately).
    """
    out = {}
    for name in columns:
        column = data[name]
        if name in contrasts:
            if contrasts[name] != "treatment" or _is_ordered(column):
                out[name] = contrasts[name]
        elif _is_ordered(column):
            out[name] = "poly"
            if warn_intervals:
                _warn_interval_categories(name, column)
        if out.get(name) == "poly" and column.nunique() > MAX_POLY_LEVELS:
            raise ArgumentError(
                f"column {name!r} has {column.nunique()} levels, too many for polynomial "
                f"contrasts (R's contr.poly stops at {MAX_POLY_LEVELS}); use "
                f"contrasts={{{name!r}: 'treatment'}} (or make it unordered)."
            )
    return out


#: R's ``contr.poly`` refuses more levels than this.
MAX_POLY_LEVELS = 95


def _is_ordered(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.CategoricalDtype) and bool(column.dtype.ordered)


def _warn_interval_categories(name: str, column: pd.Series) -> None:
    """``pd.cut``/``pd.qcut`` give *ordered* categoricals, R's ``cut`` unordered factors."""
    if isinstance(column.dtype.categories.dtype, pd.IntervalDtype):
        warn(
            f"column {name!r} is an ordered categorical of intervals (pd.cut and pd.qcut make "
            "them ordered by default, where R's cut() does not), so it gets R's polynomial "
            f"contrasts ({name}.L, {name}.Q, ...). For one coefficient per interval use "
            f"contrasts={{{name!r}: 'treatment'}} or pd.cut(..., ordered=False).",
            DataWarning,
        )


def rewrite(tokens: list[Any], codings: Mapping[str, str], formula: str) -> tuple[str, dict]:
    """Rewrite one scanned expression for formulae; return it and the column renames.

    Factor variables that are terms (or parts of interactions) and have a
    coding in ``codings`` become ``bmx_code(f, bmx_contr_<coding>)``
    (formulae's ``C()`` with R's coding); so does a user's ``C(f, "sum")``
    (``C(f, contr.sum)``, ``C(f, contr = "sum")``; ``C(f)`` alone gives f's
    default coding). Arguments of other calls (``I(f == "a")``, the user's
    functions) are left as written. The renames map the name formulae gives
    each rewritten call to R's (``f`` or the user's ``C(...)`` text), for
    :func:`rename_columns`.

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
        if token.kind == "IDENTIFIER" and is_call:
            end = _closing(tokens, i + 1)
            if token.lexeme == "C":
                out.append(
                    _c_call(_split_arguments(tokens[i + 2 : end]), codings, formula, renames)
                )
            else:  # another function's arguments are its business
                out.append(" ".join(t.lexeme for t in tokens[i : end + 1]))
            i = end + 1
            continue
        name = _variable_name(token)
        if name is not None and name in codings:
            out.append(_coded(token, name, codings[name], name, renames))
        else:
            out.append(token.lexeme)
        i += 1
    return " ".join(out), renames


def _coded(token: Any, name: str, coding: str, r_name: str, renames: dict[str, str]) -> str:
    """``bmx_code(<token>, <encoding>)``, recording formulae's name for it."""
    encoding = ENCODING_NAMES[coding]
    renames[f"{CODE_FUNCTION}({name}, {encoding})"] = r_name  # formulae drops back quotes
    return f"{CODE_FUNCTION}({token.lexeme}, {encoding})"


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
    raise FormulaError("Unbalanced brackets in a function call.")  # the parser refuses first


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


_CONTRAST_KEYWORDS = ("contr", "contrast")


def _c_call(
    arguments: list[list[Any]], codings: Mapping[str, str], formula: str, renames: dict[str, str]
) -> str:
    """formulae's text for a user's ``C(f, contrast)``, recording its R name."""
    texts = [" ".join(t.lexeme for t in argument) for argument in arguments]
    shown = f"C({', '.join(texts)})"
    factor, rest = arguments[0], arguments[1:]
    if len(rest) > 1 or not factor:
        raise FormulaError(
            f"In {formula!r}: {shown} takes a factor and its contrasts only; set the level "
            "order in the DataFrame (a pandas Categorical)."
        )
    name = _variable_name(factor[0]) if len(factor) == 1 else None
    if name is None:
        raise FormulaError(
            f"In {formula!r}: the first argument of {shown} must be a column; compute "
            "the factor in the DataFrame first."
        )
    if not rest:  # C(f): the factor's own default coding, as in R
        return _coded(factor[0], name, codings.get(name, "treatment"), name, renames)
    contrast = rest[0]
    if (
        len(contrast) == 3
        and contrast[0].kind == "IDENTIFIER"
        and contrast[0].lexeme in _CONTRAST_KEYWORDS
        and contrast[1].kind == "EQUAL"
    ):
        contrast = contrast[2:]  # C(f, contr = "sum")
    if len(contrast) != 1 or contrast[0].kind not in ("STRING", "IDENTIFIER"):
        raise FormulaError(
            f"In {formula!r}: the contrasts of {shown} must be a name such as 'sum', "
            "'helmert', 'poly' or 'treatment'."
        )
    token = contrast[0]
    written = token.literal if token.kind == "STRING" else token.lexeme
    coding = coding_name(written, f"In {formula!r}, {shown}", FormulaError)
    return _coded(factor[0], name, coding, f"C({name}, {token.lexeme})", renames)


def rename_columns(names: list[str], renames: Mapping[str, str]) -> list[str]:
    """R's names for columns formulae named after a rewritten ``C()`` call.

    formulae names a column ``<call>[<label>]``; each label of
    :class:`RCoding` is R's suffix (``.L``, ``1``, ``[b]``) between two
    :data:`_MARK` characters, so the column becomes ``<R name><suffix>``
    whatever brackets the levels hold. In an interaction each factor's part is
    renamed.
    """
    if not renames:
        return list(names)
    pattern = re.compile(
        "("
        + "|".join(re.escape(call) for call in sorted(renames, key=len, reverse=True))
        + f")\\[{_MARK}(.*?){_MARK}\\]",
        re.DOTALL,
    )
    return [pattern.sub(lambda m: renames[m[1]] + m[2], name) for name in names]
