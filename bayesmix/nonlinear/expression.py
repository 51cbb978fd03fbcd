"""Expressions of data columns and parameters, checked and then evaluated on any ``xp``.

Mean functions written as text (``Asym / (1 + exp((xmid - age) / scal))``) and
the data arguments of self-starting models (``SSfpl(log(conc), ...)``) are
parsed with :mod:`ast` and checked by :func:`check_node` before anything runs:
only names, numbers, arithmetic (``+ - * / **``; R's ``^`` is read as ``**``)
and calls of :data:`FUNCTIONS` are allowed. They are evaluated with ``xp``
``numpy`` (ML engine; complex-safe, so complex-step derivatives are exact) or
``pytensor.tensor`` (Bayesian engine).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bayesmix.errors import FormulaError

__all__ = ["CONSTANTS", "FUNCTIONS", "ExpressionEvaluator", "check_node", "expression_names"]

#: Functions an explicit mean expression may call (mapped to ``xp.<name>``).
FUNCTIONS = ("exp", "log", "sqrt", "abs", "sin", "cos", "tan", "tanh", "expm1", "log1p", "log10")
CONSTANTS = {"pi": float(np.pi)}
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def _numpy_abs(x: Any) -> Any:
    # np.abs drops the imaginary part of a complex step; reflecting keeps it.
    return np.where(np.real(x) < 0, -x, x)


def _function_table(xp: Any) -> dict[str, Callable[..., Any]]:
    table = {name: getattr(xp, name) for name in FUNCTIONS if name != "abs"}
    table["abs"] = _numpy_abs if xp is np else xp.abs
    return table


class ExpressionEvaluator:
    """Evaluates an explicit mean expression; ``names`` are its columns and parameters.

    Only the expression text is pickled: the code is parsed, checked by
    :func:`check_node` and compiled again on unpickling (code objects cannot
    be pickled, and a recompiled expression passes the same check).
    """

    def __init__(self, text: str, names: tuple[str, ...]) -> None:
        self.text = text
        self.names = names
        tree = ast.parse(text.replace("^", "**"), mode="eval")
        check_node(tree, text)
        self._code = compile(tree, "<mean function>", "eval")

    def __getstate__(self) -> dict[str, Any]:
        return {"text": self.text, "names": self.names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["text"], tuple(state["names"]))

    def __call__(self, xp: Any, values: Mapping[str, Any]) -> Any:
        namespace = {**CONSTANTS, **_function_table(xp)}
        namespace.update((n, values[n]) for n in self.names)
        # ast-checked: names, numbers, arithmetic and whitelisted calls only
        return eval(self._code, {"__builtins__": {}}, namespace)


def check_node(node: ast.AST, text: str) -> None:
    """Refuse anything but names, numbers, arithmetic and whitelisted calls."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Expression | ast.Load | ast.BinOp | ast.UnaryOp | ast.Name):
            continue
        if isinstance(sub, _OPERATORS):
            continue
        if isinstance(sub, ast.Constant) and isinstance(sub.value, int | float):
            continue
        if isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name) or sub.func.id not in FUNCTIONS:
                shown = ast.unparse(sub.func)
                raise FormulaError(
                    f"the mean function {text!r} calls {shown!r}; allowed functions are "
                    f"{', '.join(FUNCTIONS)} (or pass a Python function as mean=)."
                )
            if sub.keywords or len(sub.args) != 1:
                raise FormulaError(
                    f"{sub.func.id}() in {text!r} takes exactly one positional argument."
                )
            continue
        raise FormulaError(
            f"the mean function {text!r} contains {ast.unparse(sub)!r}, which is not allowed: "
            "use names, numbers, + - * / ^ and the functions " + ", ".join(FUNCTIONS) + "."
        )


def parse_expression(text: str, what: str) -> ast.Expression:
    """The checked syntax tree of ``text`` (R's ``^`` read as ``**``)."""
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as err:
        raise FormulaError(f"cannot parse {what} {text!r}: {err.msg}") from err
    check_node(tree, text)
    return tree


def expression_names(tree: ast.AST) -> list[str]:
    """Names an expression reads (not the functions it calls), in reading order."""
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in called]
    return list(dict.fromkeys(n.id for n in sorted(nodes, key=lambda n: n.col_offset)))
