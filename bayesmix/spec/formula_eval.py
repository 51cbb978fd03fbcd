"""What a formula may evaluate: the data's columns and a fixed set of functions.

A formula string is data, not code. Its expressions (the response, each fixed
term, each bar's left-hand side, each grouping factor) are scanned with
formulae's own scanner and parsed with its parser before anything is evaluated,
and every name must be one of

* a column of the data (dotted names such as ``total.fruits``, non-ASCII names
  such as ``größe``, or back-quoted names with spaces such as ```my x```);
* a function of :data:`FORMULA_FUNCTIONS` (``log``, ``sqrt``, ``I``, ``C``,
  ``poly``, ``scale``, ``offset``...) or of the user's ``functions=`` mapping;
* the constant ``pi``, or a keyword argument name inside a call
  (``C(g, levels=["b", "a"])``).

Anything else, in particular an attribute chain such as ``np.f2py.os.system``
or a builtin such as ``open``, is a :class:`~bayesmix.errors.FormulaError`
naming it, before any of the formula runs. formulae then evaluates the formula
in an environment that holds only those functions (see :func:`environment`),
never the caller's namespace, so nothing else is reachable even by mistake.
``scale()``/``standardize()`` are formulae's: they divide by the standard
deviation with denominator n, where R's ``scale()`` uses n - 1 (the fit is the
same model; the coefficient of a scaled column differs by ``sqrt(n / (n - 1))``).
Every token must be used: ``y ~ x x2`` or ``y ~ x}}`` is an error, not a model
of ``y ~ x``. R's ``^`` is read as formulae's ``**`` (a power inside ``I()``,
crossing outside it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from bayesmix.errors import DataError, FormulaError

#: Functions every formula may call, besides formulae's own transforms below.
MATH_FUNCTIONS: dict[str, Callable] = {
    "log": np.log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
}
#: formulae's transforms that a formula may call (formulae supplies them itself).
FORMULAE_TRANSFORMS = ("I", "C", "center", "scale", "standardize", "poly", "offset", "bs")
#: Every function name a formula may call without ``functions=``.
FORMULA_FUNCTIONS = tuple(MATH_FUNCTIONS) + FORMULAE_TRANSFORMS
#: Named constants a formula may use.
FORMULA_CONSTANTS: dict[str, float] = {"pi": float(np.pi)}

_OPERAND_END = {"IDENTIFIER", "NUMBER", "STRING", "BQNAME", "PYTHON_LITERAL", "RIGHT_PAREN"}
_OPERAND_START = {"IDENTIFIER", "NUMBER", "STRING", "BQNAME", "PYTHON_LITERAL", "LEFT_PAREN"}


def check_functions(functions: Mapping[str, Callable] | None) -> dict[str, Callable]:
    """Validate the user's ``functions=`` mapping (names to callables)."""
    if functions is None:
        return {}
    if not isinstance(functions, Mapping):
        raise FormulaError(
            "functions must be a dict mapping names to callables, e.g. "
            f"functions={{'logit': my_logit}}; got {type(functions).__name__}."
        )
    out = {}
    for name, function in functions.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise FormulaError(f"functions: {name!r} is not a valid function name.")
        if not callable(function):
            raise FormulaError(f"functions[{name!r}] must be callable, got {function!r}.")
        out[name] = function
    return out


def environment(functions: Mapping[str, Callable] | None = None):
    """The only namespace formulae evaluates formulas in (no modules, no builtins)."""
    from formulae.environment import Environment

    return Environment([{**MATH_FUNCTIONS, **FORMULA_CONSTANTS, **(functions or {})}])


def translate(text: str) -> str:
    """R syntax that formulae spells differently: ``^`` becomes ``**``."""
    return text.replace("^", "**")


@dataclass(frozen=True)
class _Token:
    kind: str
    lexeme: str


def _tokens(text: str, formula: str) -> list[_Token]:
    from formulae.scanner import ScanError, Scanner

    if text.count("`") % 2:
        raise FormulaError(f"Unclosed back quote in {text!r} of {formula!r}.")
    try:
        scanned = Scanner(translate(text)).scan(add_intercept=False)
    except ScanError as error:
        raise FormulaError(f"Cannot read {text!r} in {formula!r}: {error}.") from None
    return [_Token(t.kind, t.lexeme) for t in scanned]


def _check_fully_parsed(tokens: list[_Token], text: str, formula: str) -> None:
    """Every token must belong to the parsed expression (formulae stops silently)."""
    for before, after in zip(tokens, tokens[1:]):
        if before.kind in _OPERAND_END and after.kind in _OPERAND_START:
            if before.kind == "IDENTIFIER" and after.kind == "LEFT_PAREN":
                continue  # a call
            raise FormulaError(
                f"In {formula!r}: {after.lexeme!r} follows {before.lexeme!r} with no operator "
                "between them; join terms with '+' (or ':' / '*' for interactions)."
            )
    from formulae.parser import ParseError, Parser
    from formulae.token import Token

    parser = Parser([Token(t.kind, t.lexeme) for t in tokens])
    try:
        parser.parse()
    except (ParseError, IndexError, AttributeError) as error:
        raise FormulaError(f"Cannot parse {text!r} in {formula!r}: {error}.") from None
    if not parser.at_end():
        left = parser.peek().lexeme
        raise FormulaError(
            f"In {formula!r}: unexpected {left!r} in {text!r}; check brackets and operators."
        )


def referenced_columns(
    text: str,
    formula: str,
    columns: Iterable[str],
    functions: Mapping[str, Callable] | None = None,
) -> list[str]:
    """Check one formula expression and return the data columns it uses.

    Parameters
    ----------
    text : str
        One expression: a response, a fixed part, a bar's left-hand side.
    formula : str
        The whole formula, for messages.
    columns : iterable of str
        The data's column names.
    functions : mapping, optional
        The user's extra functions (``functions=``).

    Raises
    ------
    FormulaError
        A name that is neither a column, an allowed function, nor ``pi``; an
        attribute chain; a token left over after parsing.
    DataError
        A plain name that looks like a misspelt column.
    """
    columns = list(columns)
    column_set = set(columns)
    allowed = set(FORMULA_FUNCTIONS) | set(functions or {})
    tokens = _tokens(text, formula)
    found: list[str] = []
    depth = 0
    for i, token in enumerate(tokens):
        following = tokens[i + 1].kind if i + 1 < len(tokens) else "EOF"
        if token.kind == "LEFT_PAREN":
            depth += 1
        elif token.kind == "RIGHT_PAREN":
            depth -= 1
        elif token.kind == "BQNAME":
            name = token.lexeme[1:-1]
            if name not in column_set:
                raise DataError(_unknown_column(name, columns))
            found.append(name)
        elif token.kind == "IDENTIFIER":
            name = token.lexeme
            if following == "LEFT_PAREN":
                if name not in allowed:
                    raise FormulaError(_unknown_function(name, formula, allowed))
            elif following == "EQUAL" and depth > 0:
                continue  # a keyword argument's name, e.g. levels=
            elif name in column_set:
                found.append(name)
            elif name in FORMULA_CONSTANTS:
                continue
            elif "." in name.strip("."):
                raise FormulaError(
                    f"{name!r} in {formula!r} is not a column of the data; formulas cannot "
                    "reach modules or attributes. Use a column name, or compute the value "
                    "in the DataFrame first."
                )
            else:
                raise DataError(_unknown_column(name, columns))
    _check_fully_parsed(tokens, text, formula)
    return list(dict.fromkeys(found))


def _unknown_column(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"The formula refers to {name!r}, which is not a column of the data.{hint} "
        f"Available columns: {', '.join(columns)}."
    )


def _unknown_function(name: str, formula: str, allowed: set[str]) -> str:
    if "." in name.strip("."):
        return (
            f"{name!r} in {formula!r} is not a function a formula may call: formulas cannot "
            "reach modules or attributes. Pass the function itself with "
            f"functions={{{name.rsplit('.', 1)[-1]!r}: ...}} and call it by that name."
        )
    return (
        f"{name!r} in {formula!r} is not a function a formula may call. Formulas may call "
        f"{', '.join(sorted(allowed))}; pass your own with functions={{{name!r}: ...}} "
        "(bayesmix never evaluates other names from a formula)."
    )
