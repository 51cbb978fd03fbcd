"""nlme's way of writing variance functions and correlation structures, read as data.

``"varIdent(form = ~1 | Sex)"``, ``"varComb(varIdent(form = ~1 | Diet), varPower())"``
and ``"corExp(form = ~ x + y | site, nugget = TRUE)"`` are parsed by a small
recursive-descent reader of exactly this grammar (calls of the known
constructors; numbers, ``TRUE``/``FALSE``, strings, ``c(...)`` of numbers and
one-sided formulas as arguments) into the objects of
:mod:`.variance_functions` and :mod:`.correlation_structures`. Nothing is ever
evaluated, so a string cannot run code. Written by hand because no parser of
R call syntax is a dependency, and Python's own parser reads ``~`` and ``|``
as operators with other precedence.
"""

from __future__ import annotations

import re
from typing import Any

from bayesmix.errors import FormulaError
from bayesmix.spec.correlation_structures import (
    CorAR1,
    CorARMA,
    CorCAR1,
    CorCompSymm,
    CorExp,
    CorGaus,
    CorrelationStructure,
    CorSymm,
)
from bayesmix.spec.variance_functions import (
    FITTED,
    VarComb,
    VarConstPower,
    VarExp,
    VarFixed,
    VarianceFunction,
    VarIdent,
    VarPower,
)

# positional parameters of nlme's constructors, in order
_SIGNATURES = {
    "varIdent": ("value", "form", "fixed"),
    "varPower": ("value", "form", "fixed"),
    "varExp": ("value", "form", "fixed"),
    "varConstPower": ("const", "power", "form", "fixed"),
    "varFixed": ("value",),
    "varComb": (),
    "corAR1": ("value", "form", "fixed"),
    "corCAR1": ("value", "form", "fixed"),
    "corARMA": ("value", "form", "p", "q", "fixed"),
    "corCompSymm": ("value", "form", "fixed"),
    "corSymm": ("value", "form", "fixed"),
    "corExp": ("value", "form", "nugget", "metric", "fixed"),
    "corGaus": ("value", "form", "nugget", "metric", "fixed"),
}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_COLUMN = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$|^`[^`]+`$")


class _Formula(str):
    """The text of a one-sided formula argument, ``~ ...``."""


class _Call(tuple):
    """A parsed call: ``(name, positional arguments, named arguments)``."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def error(self, message: str) -> FormulaError:
        return FormulaError(
            f"{message} in {self.text!r} at position {self.pos}; write nlme's syntax, e.g. "
            "'varIdent(form = ~1 | Sex)' or 'corAR1(form = ~ Time | Mare)'."
        )

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def name(self) -> str:
        self.skip()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.error("expected a name")
        self.pos = match.end()
        return match.group()

    def call(self) -> _Call:
        name = self.name()
        if name not in _SIGNATURES:
            known = ", ".join(_SIGNATURES)
            raise self.error(
                f"{name!r} is not a variance function or correlation structure ({known})"
            )
        self.expect("(")
        args: list = []
        kwargs: dict[str, Any] = {}
        while self.peek() != ")":
            if args or kwargs:
                self.expect(",")
            self.skip()
            match = re.compile(r"([A-Za-z][A-Za-z0-9_.]*)\s*=(?!=)").match(self.text, self.pos)
            if match:
                self.pos = match.end()
                key = match.group(1)
                if key in kwargs:
                    raise self.error(f"argument {key!r} given twice")
                kwargs[key] = self.value()
            else:
                if kwargs:
                    raise self.error("a positional argument after a named one")
                args.append(self.value())
        self.expect(")")
        return _Call((name, args, kwargs))

    def value(self) -> Any:
        char = self.peek()
        if char == "~":
            return self.formula()
        if char in "\"'":
            end = self.text.find(char, self.pos + 1)
            if end < 0:
                raise self.error("an unterminated string")
            out = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return out
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return float(match.group())
        start = self.pos
        name = self.name()
        if name in ("TRUE", "FALSE", "T", "F"):
            return name in ("TRUE", "T")
        if name == "c" and self.peek() == "(":
            self.expect("(")
            values = []
            while self.peek() != ")":
                if values:
                    self.expect(",")
                self.skip()
                match = _NUMBER.match(self.text, self.pos)
                if not match:
                    raise self.error("c(...) may hold numbers only")
                self.pos = match.end()
                values.append(float(match.group()))
            self.expect(")")
            return tuple(values)
        self.pos = start
        return self.call()

    def formula(self) -> _Formula:
        self.expect("~")
        depth, start = 0, self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        return _Formula(self.text[start : self.pos].strip())


def _form(text: _Formula | None, where: str) -> tuple[list[str], str | None]:
    """Covariates and grouping of ``~ a + b | g`` (``1`` means no covariate)."""
    if text is None:
        return [], None
    if not isinstance(text, _Formula):
        raise FormulaError(f"{where}: form must be a one-sided formula such as ~ Time | Mare.")
    parts = text.split("|")
    if len(parts) > 2:
        raise FormulaError(f"{where}: form ~{text} has more than one '|'.")
    group = parts[1].strip() if len(parts) == 2 else None
    covariates = []
    for term in (t.strip() for t in parts[0].split("+")):
        if term in ("", "1"):
            continue
        if re.fullmatch(r"fitted\s*\(\s*\.?\s*\)", term):
            covariates.append(FITTED)
        elif _COLUMN.match(term):
            covariates.append(term.strip("`"))
        else:
            raise FormulaError(
                f"{where}: {term!r} in form ~{text} is not a column name; compute it as a "
                "column of the data first (nothing in these strings is evaluated)."
            )
    if group is not None and ("/" in group or not _COLUMN.match(group)):
        raise FormulaError(
            f"{where}: the grouping {group!r} must be one column; for nested groups make a "
            "column of their combination."
        )
    return covariates, group.strip("`") if group else None


def _arguments(name: str, args: list, kwargs: dict) -> dict[str, Any]:
    signature = _SIGNATURES[name]
    if len(args) > len(signature):
        raise FormulaError(f"{name}() takes at most {len(signature)} positional arguments.")
    out = dict(zip(signature, args))
    for key, value in kwargs.items():
        if key not in signature:
            raise FormulaError(
                f"{name}() has no argument {key!r} (it takes {', '.join(signature)})."
            )
        if key in out:
            raise FormulaError(f"{name}(): argument {key!r} given twice.")
        out[key] = value
    if out.get("fixed") is not None:
        raise FormulaError(
            f"{name}(fixed = ...) is not supported: parameters are always estimated."
        )
    return out


def _build(parsed: _Call) -> VarianceFunction | CorrelationStructure:
    name, args, kwargs = parsed
    if name == "varComb":
        if kwargs:
            raise FormulaError("varComb() takes variance functions only.")
        parts = [_build(a) if isinstance(a, _Call) else a for a in args]
        if not all(isinstance(p, VarianceFunction) for p in parts):
            raise FormulaError(
                "varComb() takes variance functions only, e.g. "
                "varComb(varIdent(form = ~1 | g), varPower())."
            )
        return VarComb(*parts)
    a = _arguments(name, args, kwargs)
    if name == "varFixed":
        covariates, group = _form(a.get("value"), name)
        if len(covariates) != 1 or group or covariates[0] == FITTED:
            raise FormulaError("varFixed needs one covariate column: varFixed(~ v).")
        return VarFixed(covariates[0])
    covariates, group = _form(a.get("form"), name)
    value = a.get("value")
    if name == "varIdent":
        if covariates or group is None:
            raise FormulaError("varIdent needs form = ~1 | <column>.")
        if value is not None:
            raise FormulaError("varIdent(value = ...) is not supported; it starts at ratios of 1.")
        return VarIdent(group)
    if name in ("varPower", "varExp", "varConstPower"):
        if len(covariates) > 1:
            raise FormulaError(f"{name} takes one covariate in form, got {covariates}.")
        covariate = covariates[0] if covariates else FITTED
        cls = {"varPower": VarPower, "varExp": VarExp, "varConstPower": VarConstPower}[name]
        if name == "varConstPower":
            given = [a.get("const"), a.get("power")]
            start = None if given == [None, None] else (given[0] or 1.0, given[1] or 0.0)
        else:
            start = value
        return cls(covariate=covariate, strata=group, start=start)
    if name in ("corExp", "corGaus"):
        if not covariates or FITTED in covariates:
            raise FormulaError(f"{name} needs coordinate columns: form = ~ x + y (| group).")
        cls = CorExp if name == "corExp" else CorGaus
        return cls(
            coords=tuple(covariates),
            group=group,
            nugget=bool(a.get("nugget", False)),
            metric=a.get("metric", "euclidean"),
            start=value
            if value is None
            else tuple(value)
            if isinstance(value, tuple)
            else (value,),
        )
    if len(covariates) > 1 or FITTED in covariates:
        raise FormulaError(f"{name} takes at most one time column in form, got {covariates}.")
    time = covariates[0] if covariates else None
    if name == "corARMA":
        p, q = a.get("p", 0), a.get("q", 0)
        if p != int(p) or q != int(q):
            raise FormulaError("corARMA(p, q) need whole numbers.")
        start = None if value is None else tuple(value) if isinstance(value, tuple) else (value,)
        return CorARMA(p=int(p), q=int(q), time=time, group=group, start=start)
    if name == "corCompSymm":
        if time is not None:
            raise FormulaError("corCompSymm takes form = ~1 | group (no time).")
        return CorCompSymm(group=group, start=value)
    if name == "corSymm":
        if value is not None:
            raise FormulaError(
                "corSymm(value = ...) is not supported; it starts from independence."
            )
        return CorSymm(time=time, group=group)
    cls = CorAR1 if name == "corAR1" else CorCAR1
    return cls(time=time, group=group, start=value)


def parse_structure(text: str) -> VarianceFunction | CorrelationStructure:
    """Read one nlme constructor call (a variance function or correlation structure)."""
    reader = _Reader(text)
    parsed = reader.call()
    if reader.peek():
        raise reader.error("unexpected text after the call")
    return _build(parsed)


def looks_like_variance_function(text: str) -> bool:
    """A ``weights=`` string in nlme's syntax (not a column name of prior weights)."""
    return bool(re.match(r"\s*var[A-Z][A-Za-z]*\s*\(", text))
