"""Mean functions of nonlinear mixed models, written once for any array namespace.

A :class:`MeanFunction` maps data columns and per-row parameter values to the
expected response. It comes from one of three sources:

* a self-starting model call, ``SSfol(Dose, Time, lKe, lKa, lCl)``
  (see :mod:`bayesmix.nonlinear.selfstart`);
* an explicit expression, ``Asym / (1 + exp((xmid - age) / scal))``, compiled
  after an :mod:`ast` check that allows only names, numbers, arithmetic
  (``+ - * / **``; R's ``^`` is read as ``**``) and calls of
  :data:`FUNCTIONS`;
* a Python callable ``mean(xp, *, <columns and parameters by name>)``.

Every mean function is evaluated as ``function(xp, values)`` where ``xp`` is
``numpy`` (ML engine) or ``pytensor.tensor`` (Bayesian engine) and ``values``
maps column and parameter names to arrays. With ``numpy`` the functions are
complex-safe (``abs`` included) so that complex-step derivatives are exact.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bayesmix.errors import FormulaError
from bayesmix.nonlinear.expression import (
    CONSTANTS,
    FUNCTIONS,
    ExpressionEvaluator,
    expression_names,
    parse_expression,
)
from bayesmix.nonlinear.selfstart import SelfStartCall, parse_selfstart_call

__all__ = ["FUNCTIONS", "MeanFunction", "parse_mean"]


@dataclass(frozen=True)
class MeanFunction:
    """The nonlinear mean of a model.

    Attributes
    ----------
    kind : {"selfstart", "expression", "callable"}
    text : str
        The right-hand side as written (or the callable's name).
    covariates : tuple of str
        Data columns the function reads.
    params : tuple of str
        Nonlinear parameters, in the function's order.
    selfstart : SelfStartCall or None
        The parsed self-starting call (its ``initial`` gives start values).
    """

    kind: str
    text: str
    covariates: tuple[str, ...]
    params: tuple[str, ...]
    selfstart: SelfStartCall | None
    _evaluate: Callable[[Any, Mapping[str, Any]], Any]

    def __call__(self, xp: Any, values: Mapping[str, Any]) -> Any:
        """Evaluate with namespace ``xp``; ``values`` maps names to arrays."""
        return self._evaluate(xp, values)


# The evaluators below are classes, not closures, so that a MeanFunction (and
# with it every nonlinear design and result) can be pickled and deep-copied.


class _CallableEvaluator:
    """Calls the user's ``mean(xp, **named values)``; pickles when the function does."""

    def __init__(self, function: Callable[..., Any], names: tuple[str, ...]) -> None:
        self.function = function
        self.names = names

    def __call__(self, xp: Any, values: Mapping[str, Any]) -> Any:
        return self.function(xp, **{n: values[n] for n in self.names})


class _SelfStartEvaluator:
    """Calls a self-starting model's mean with its data arguments, then parameters.

    Data arguments are expressions of columns (``Time`` or ``log(conc)``).
    """

    def __init__(self, model: Any, inputs: tuple[Any, ...], params: tuple[str, ...]) -> None:
        self.model = model
        self.inputs = inputs
        self.params = params

    def __call__(self, xp: Any, values: Mapping[str, Any]) -> Any:
        arguments = (*(e(xp, values) for e in self.inputs), *(values[p] for p in self.params))
        return self.model.mean(xp, *arguments)


def _expression_mean(text: str, params: Mapping[str, Any], columns: set[str]) -> MeanFunction:
    names = expression_names(parse_expression(text, "the mean function"))
    param_names = tuple(n for n in names if n in params)
    covariates = tuple(n for n in names if n not in params and n in columns)
    unknown = [n for n in names if n not in params and n not in columns and n not in CONSTANTS]
    if unknown:
        raise FormulaError(
            f"{', '.join(repr(n) for n in unknown)} in the mean function {text!r} "
            f"{'is' if len(unknown) == 1 else 'are'} neither a column of the data nor a "
            "parameter given in params; add a formula for each parameter to params "
            "(e.g. params={" + ", ".join(f"{n!r}: '1'" for n in unknown) + "})."
        )
    evaluate = ExpressionEvaluator(text, (*covariates, *param_names))
    return MeanFunction("expression", text, covariates, param_names, None, evaluate)


def _callable_mean(function: Callable[..., Any], params: Mapping[str, Any]) -> MeanFunction:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as err:
        raise FormulaError(f"cannot read the arguments of the mean function: {err}") from err
    arguments = list(signature.parameters.values())
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if not arguments or any(a.kind in kinds for a in arguments):
        raise FormulaError(
            "a mean function must be written as mean(xp, <column>, ..., <parameter>, ...) with "
            "named arguments (no *args/**kwargs): xp is the array namespace, the other "
            "arguments are data columns or parameters, matched by name."
        )
    names = tuple(a.name for a in arguments[1:])
    param_names = tuple(n for n in names if n in params)
    covariates = tuple(n for n in names if n not in params)
    name = getattr(function, "__name__", "mean")
    evaluate = _CallableEvaluator(function, names)
    return MeanFunction(
        "callable", f"{name}({', '.join(names)})", covariates, param_names, None, evaluate
    )


def _selfstart_mean(call: SelfStartCall) -> MeanFunction:
    evaluate = _SelfStartEvaluator(call.model, call.inputs, tuple(call.params))
    text = f"{call.model.name}({', '.join(call.covariates + call.params)})"
    columns = tuple(dict.fromkeys(c for e in call.inputs for c in e.names))
    return MeanFunction("selfstart", text, columns, tuple(call.params), call, evaluate)


def parse_mean(
    rhs: str | None,
    params: Mapping[str, Any],
    columns: set[str],
    function: Callable[..., Any] | None = None,
) -> MeanFunction:
    """Build the mean function and check its parameters against ``params``.

    Parameters
    ----------
    rhs : str or None
        Right-hand side of the model formula (``None`` with ``function``).
    params : mapping
        The user's parameter formulas, keyed by parameter name.
    columns : set of str
        Column names of the data.
    function : callable, optional
        A Python mean function, used instead of ``rhs``.

    Raises
    ------
    FormulaError
        For a disallowed expression, a parameter of the mean function missing
        from ``params``, an entry of ``params`` the mean function does not use,
        or a name that is both a column and a parameter.
    """
    if function is not None:
        mean = _callable_mean(function, params)
    else:
        call = parse_selfstart_call(rhs)
        mean = _selfstart_mean(call) if call else _expression_mean(rhs, params, columns)
    missing = [p for p in mean.params if p not in params]
    if mean.kind == "callable":
        missing = [c for c in mean.covariates if c not in columns]
    if missing:
        extra = " (and are not data columns)" if mean.kind == "callable" else ""
        raise FormulaError(
            f"parameter(s) {', '.join(missing)} of the mean function {mean.text!r} have no "
            f"formula in params{extra}; add e.g. "
            + ", ".join(f"{p!r}: '1'" for p in missing)
            + " to params."
        )
    unused = [p for p in params if p not in mean.params]
    if unused:
        raise FormulaError(
            f"params gives formula(s) for {', '.join(unused)}, which the mean function "
            f"{mean.text!r} does not use; its parameters are {', '.join(mean.params) or 'none'}."
        )
    clash = [p for p in mean.params if p in columns and mean.kind != "selfstart"]
    if clash:
        raise FormulaError(
            f"{', '.join(clash)} is both a data column and a parameter of the mean function; "
            "rename the parameter."
        )
    if not mean.params:
        raise FormulaError(f"the mean function {mean.text!r} has no parameters to estimate.")
    return mean
