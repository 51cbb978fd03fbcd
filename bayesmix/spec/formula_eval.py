"""What a formula may evaluate: the data's columns and a fixed set of functions.

A formula string is data, not code. Its expressions (the response, each fixed
term, each bar's left-hand side, each grouping factor) are scanned with
formulae's own scanner and parsed with its parser before anything is evaluated,
and every name must be one of

* a column of the data (dotted names such as ``total.fruits``, non-ASCII names
  such as ``größe``, or back-quoted names with spaces such as ```my x```);
* a function of :data:`FORMULA_FUNCTIONS` (``log``, ``sqrt``, ``I``, ``C``,
  ``poly``, ``scale``...) or of the user's ``functions=`` mapping (whose names
  may not shadow formulae's transforms, which formulae would call instead);
* the constant ``pi``, or a keyword argument name inside a call
  (``poly(x, degree=2)``).

``offset(expr)`` is a term of the fixed part only (taken out by the formula
parser); anywhere else it is refused rather than estimated as a coefficient.

Anything else, in particular an attribute chain such as ``np.f2py.os.system``
or a builtin such as ``open``, is a :class:`~bayesmix.errors.FormulaError`
naming it, before any of the formula runs. formulae then evaluates the formula
in an environment that holds only those functions (see :func:`environment`),
never the caller's namespace, so nothing else is reachable even by mistake.
``scale(x)`` is R's (:class:`RScale`: centred, divided by the standard deviation
with denominator n - 1, and remembered for new data); formulae's ``standardize()``
divides by the one with denominator n.
Every token must be used: ``y ~ x x2`` or ``y ~ x}}`` is an error, not a model
of ``y ~ x``. R's ``^`` is read as formulae's ``**`` (a power inside ``I()``,
crossing outside it).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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
FORMULAE_TRANSFORMS = ("I", "C", "center", "scale", "standardize", "poly", "bs")
#: Every function name a formula may call without ``functions=``.
FORMULA_FUNCTIONS = tuple(MATH_FUNCTIONS) + FORMULAE_TRANSFORMS
#: What ``scale(`` is rewritten to (formulae's own ``scale`` would win over the namespace).
R_SCALE = "bmx_scale"
_SCALE_CALL = re.compile(r"(?<![\w.`])scale(\s*\()")


def uses_scale(formula: str) -> bool:
    """Whether ``formula`` calls ``scale()``."""
    return _SCALE_CALL.search(formula) is not None


class RScale:
    """R's ``scale(x, center = TRUE, scale = TRUE)`` as a formulae stateful transform.

    The mean and the standard deviation (denominator n - 1, as R's ``sd``) are
    taken from the rows fitted and reused for new data, so predictions use the
    fitting data's scale. R evaluates ``scale()`` before dropping rows with
    missing values; :func:`~bayesmix.spec.design.build_design` warns when rows were
    dropped from a formula that scales. formulae's ``scale`` divides by the SD with
    denominator n, which changes a scaled column's coefficient by
    ``sqrt(n / (n - 1))`` (grouseticks' ``scale(HEIGHT)``: 1.2e-3).
    """

    __stateful_transform__ = True

    def __init__(self) -> None:
        self.params_set = False
        self.mean = 0.0
        self.sd = 1.0

    def __call__(self, x, center: bool = True, scale: bool = True):
        x = np.asarray(x, dtype=float)
        if not self.params_set:
            self.mean = float(np.mean(x)) if center else 0.0
            if scale:  # R: root mean square when not centred, the SD when centred
                deviations = x - self.mean
                self.sd = float(np.sqrt(np.sum(deviations**2) / max(len(x) - 1, 1)))
            self.params_set = True
        return (x - self.mean) / self.sd


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
        reserved = name.startswith("bmx_") or name == "offset" or "__" in name
        if name in _shadowed_names() or reserved:
            raise FormulaError(
                f"functions: {name!r} is a name formulae reserves for its own transforms (it "
                "would never call yours); give your function another name."
            )
        out[name] = function
    return out


def _shadowed_names() -> set[str]:
    """Names formulae resolves to its own transforms before any user function."""
    from formulae.categorical import ENCODINGS
    from formulae.transforms import TRANSFORMS

    return set(TRANSFORMS) | set(ENCODINGS)


def environment(functions: Mapping[str, Callable] | None = None):
    """The only namespace formulae evaluates formulas in (no modules, no builtins)."""
    from formulae.environment import Environment

    from bayesmix.spec.contrasts import encoding_namespace

    names = {**MATH_FUNCTIONS, **FORMULA_CONSTANTS, **encoding_namespace(), R_SCALE: RScale}
    return Environment([{**names, **(functions or {})}])


def translate(text: str) -> str:
    """R syntax that formulae spells differently: ``^`` is ``**``, ``%in%`` is ``:``,
    ``scale(`` is R's (:class:`RScale`).

    R's ``a %in% b`` in a formula is the interaction ``a:b`` (``b/a`` written
    the other way round).
    """
    text = text.replace("^", "**").replace("%in%", ":")
    return _SCALE_CALL.sub(rf"{R_SCALE}\1", text)


def formulae_text(
    text: str, formula: str, codings: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The text formulae evaluates for one expression, and R's names of its columns.

    Factors with a coding other than treatment (``contrasts=``, ordered factors,
    ``C(f, "sum")``) are rewritten as formulae ``C()`` calls; see
    :mod:`bayesmix.spec.contrasts`.
    """
    from formulae.scanner import ScanError, Scanner

    from bayesmix.spec.contrasts import rewrite

    try:
        tokens = Scanner(translate(text)).scan(add_intercept=False)
    except ScanError as error:
        raise FormulaError(f"Cannot read {text!r} in {formula!r}: {error}.") from None
    return rewrite(tokens, codings or {}, formula)


def r_column_names(names: Iterable[str], renames: Mapping[str, str]) -> list[str]:
    """R's spelling of formulae's column names.

    ``I(x ** 2)`` is ``I(x^2)``, ``poly(x, 2)[0]`` is ``poly(x, 2)1`` (R counts
    from 1), and factors with non-treatment contrasts get R's suffixes
    (``f.L``, ``f1``; see :func:`bayesmix.spec.contrasts.rename_columns`).
    """
    from bayesmix.spec.contrasts import rename_columns

    out = []
    for name in rename_columns(list(names), renames):
        name = _MULTI_COLUMN.sub(lambda m: f"{m[1]}{int(m[2]) + 1}", name)
        out.append(name.replace(" ** ", "^").replace(f"{R_SCALE}(", "scale("))
    return out


# A column of a multi-column numeric transform, e.g. "poly(x, 2)[0]" or "bs(x, df=3)[2]".
_MULTI_COLUMN = re.compile(r"((?:^|(?<=:))(?:poly|bs)\([^\[\]]*\))\[(\d+)\]")


@functools.lru_cache(maxsize=512)
def _parse(text: str, formula: str) -> Any:
    """formulae's syntax tree of one expression; every token must be part of it.

    Cached: a model build reads each expression several times, and the walk of
    :func:`referenced_columns` only reads the tree.
    """
    from formulae.parser import ParseError, Parser
    from formulae.scanner import ScanError, Scanner

    if text.count("`") % 2:
        raise FormulaError(f"Unclosed back quote in {text!r} of {formula!r}.")
    try:
        tokens = Scanner(translate(text)).scan(add_intercept=False)
    except ScanError as error:
        raise FormulaError(f"Cannot read {text!r} in {formula!r}: {error}.") from None
    for before, after in zip(tokens, tokens[1:]):
        if before.kind in _OPERAND_END and after.kind in _OPERAND_START:
            if before.kind == "IDENTIFIER" and after.kind == "LEFT_PAREN":
                continue  # a call; what is called is checked on the tree
            raise FormulaError(
                f"In {formula!r}: {after.lexeme!r} follows {before.lexeme!r} with no operator "
                "between them; join terms with '+' (or ':' / '*' for interactions)."
            )
    parser = Parser(tokens)
    try:
        tree = parser.parse()
    except (ParseError, IndexError, AttributeError) as error:
        raise FormulaError(f"Cannot parse {text!r} in {formula!r}: {error}.") from None
    if not parser.at_end():
        left = parser.peek().lexeme
        raise FormulaError(
            f"In {formula!r}: unexpected {left!r} in {text!r}; check brackets and operators."
        )
    return tree


def referenced_columns(
    text: str,
    formula: str,
    columns: Iterable[str],
    functions: Mapping[str, Callable] | None = None,
) -> list[str]:
    """Check one formula expression and return the data columns it uses.

    The expression is parsed with formulae's own parser and its tree is walked:
    every call must name an allowed function directly (no attribute chain, no
    ``name[level](...)``, nothing called on the result of a call), every name
    must be a column or ``pi``, and formulae's subset syntax ``x[level]`` is
    refused. Only then does formulae evaluate the formula.

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
    from formulae.expr import Assign, Binary, Call, Grouping, Literal, QuotedName, Unary, Variable

    columns = list(columns)
    column_set = set(columns)
    allowed = set(FORMULA_FUNCTIONS) | set(functions or {}) | {R_SCALE}
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, Call):
            callee = node.callee
            name = callee.name.lexeme if isinstance(callee, Variable) else None
            if name is None or callee.level is not None or name not in allowed:
                shown = name if name is not None else str(callee)
                raise FormulaError(_unknown_function(shown, formula, allowed))
            for position, argument in enumerate(node.args):
                if name == "C" and position == 1 and _is_coding_name(argument):
                    continue  # C(f, contr.sum): a contrast name, not a column
                visit(argument.value if isinstance(argument, Assign) else argument)
        elif isinstance(node, Variable):
            name = node.name.lexeme
            if node.level is not None:
                raise FormulaError(
                    f"{name}[...] in {formula!r}: subset notation is not supported; compute "
                    "the indicator in the DataFrame first."
                )
            if name in column_set:
                found.append(name)
            elif name in FORMULA_CONSTANTS:
                pass
            elif "." in name.strip(".") or "__" in name:
                raise FormulaError(
                    f"{name!r} in {formula!r} is not a column of the data; formulas cannot "
                    "reach modules or attributes. Use a column name, or compute the value "
                    "in the DataFrame first."
                )
            else:
                raise DataError(unknown_column(name, columns))
        elif isinstance(node, QuotedName):
            name = node.expression.lexeme[1:-1]
            if name not in column_set:
                raise DataError(unknown_column(name, columns))
            found.append(name)
        elif isinstance(node, Binary):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, Unary):
            visit(node.right)
        elif isinstance(node, Grouping):
            visit(node.expression)
        elif not isinstance(node, Literal):
            raise FormulaError(f"In {formula!r}: {text!r} holds {node}, which is not allowed.")

    visit(_parse(text, formula))
    return list(dict.fromkeys(found))


def _is_coding_name(node: Any) -> bool:
    """Whether the second argument of ``C()`` names contrasts (unknown names are refused).

    A contrast name (``sum``, ``contr.sum``...) is one even if a column has that name.
    """
    from formulae.expr import Assign, Variable

    from bayesmix.spec.contrasts import coding_name

    if isinstance(node, Assign):  # C(f, contr = sum)
        node = node.value
    if not isinstance(node, Variable) or node.level is not None:
        return False
    coding_name(node.name.lexeme, f"C(..., {node.name.lexeme})", FormulaError)
    return True


def unknown_column(name: str, columns: list[str], subject: str | None = None) -> str:
    """Message for a name that is not a column, with close matches."""
    close = difflib.get_close_matches(name, columns, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    subject = subject or f"The formula refers to {name!r}, which"
    return f"{subject} is not a column of the data.{hint} Available columns: {', '.join(columns)}."


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
