"""Posterior probabilities of linear statements about parameters (brms's ``hypothesis``).

A statement compares two linear expressions of the model's named parameters:
``"Days > 5"``, ``"Intercept + 10 * Days < 400"``, ``"sd(Days|Subject) > 5"``,
``"Sex[Female] = 0"``. Names are the rows of ``fixef()`` and ``varcorr()``'s
parameters as ``summary()`` prints them; a name may be written as it is (the
longest known name at each position is taken, so ``sd(Days|Subject)`` needs no
quoting) or in back-quotes. Operators: ``+ - * /``, parentheses, numbers; one
comparison ``<``, ``>`` (``<=``, ``>=`` read the same: the draws are
continuous) or ``=``/``==``.

The statement is read by a small recursive-descent parser written here: it
builds a linear combination and never evaluates text (Python's parser would
need the names rewritten and its evaluator must not see user strings).

For ``d = lhs - rhs`` the table gives its posterior mean, SD and equal-tailed
interval; a directed statement (``<``, ``>``) its posterior probability and the
evidence ratio ``p / (1 - p)``; a point statement (``=``) only the interval (a
Bayes factor needs the prior's density at the point). ``star`` marks an
interval that excludes 0. Unlike brms, which gives a directed statement a one-sided
interval, every interval here is the equal-tailed one of ``ci_prob``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bayesmix.errors import ArgumentError

__all__ = ["Statement", "hypothesis_table", "parse_statement"]

_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_COMPARISONS = ("<=", ">=", "==", "<", ">", "=")


class Statement:
    """``sum_k c_k theta_k + c_0  <op>  0`` read from a hypothesis string."""

    def __init__(self, text: str, weights: dict[str, float], constant: float, op: str) -> None:
        self.text = text
        self.weights = weights
        self.constant = constant
        self.op = op

    def difference(self, draws: Mapping[str, np.ndarray]) -> np.ndarray:
        """Draws of ``lhs - rhs``."""
        total = np.full(np.asarray(next(iter(draws.values()))).size, self.constant)
        for name, weight in self.weights.items():
            total = total + weight * np.asarray(draws[name], dtype=float).ravel()
        return total


def _tokens(text: str, names: Sequence[str]) -> list[tuple[str, object]]:
    by_length = sorted(names, key=len, reverse=True)
    out: list[tuple[str, object]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise ArgumentError(f"hypothesis {text!r}: a back-quote is not closed.")
            out.append(("name", _known(text[i + 1 : end], names, text)))
            i = end + 1
            continue
        name = next((n for n in by_length if text.startswith(n, i)), None)
        if name is not None:
            out.append(("name", name))
            i += len(name)
            continue
        number = _NUMBER.match(text, i)
        if number:
            value = float(number.group())
            if not np.isfinite(value):
                raise ArgumentError(
                    f"hypothesis {text!r}: {number.group()} is not a finite number."
                )
            out.append(("number", value))
            i = number.end()
            continue
        op = next((c for c in _COMPARISONS if text.startswith(c, i)), None)
        if op is not None:
            out.append(("cmp", {"<=": "<", ">=": ">", "==": "="}.get(op, op)))
            i += len(op)
            continue
        if ch in "+-*/()":
            out.append((ch, ch))
            i += 1
            continue
        word = re.match(r"[^\s+\-*/()<>=]+", text[i:])
        shown = word.group() if word else ch
        raise ArgumentError(
            f"hypothesis {text!r}: {shown!r} is not a parameter name. Known names: "
            f"{', '.join(names)} (write a name in back-quotes to be explicit)."
        )
    return out


def _known(name: str, names: Sequence[str], text: str) -> str:
    if name not in names:
        raise ArgumentError(
            f"hypothesis {text!r}: `{name}` is not a parameter. Known names: {', '.join(names)}."
        )
    return name


class _Parser:
    """Linear expressions: ``expr := term (+|- term)*``, ``term := factor (*|/ factor)*``.

    A value is ``(weights, constant)``; products need one side constant.
    """

    def __init__(self, tokens: list[tuple[str, object]], text: str) -> None:
        self.tokens, self.pos, self.text = tokens, 0, text

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, object]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, why: str) -> ArgumentError:
        return ArgumentError(f"hypothesis {self.text!r}: {why}.")

    def expr(self) -> tuple[dict[str, float], float]:
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = 1.0 if self.take()[0] == "+" else -1.0
            value = _add(value, _scale(self.term(), sign))
        return value

    def term(self) -> tuple[dict[str, float], float]:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()[0]
            other = self.factor()
            if op == "*":
                if value[0] and other[0]:
                    raise self.fail("a product of two parameters is not linear")
                value = _scale(other, value[1]) if not value[0] else _scale(value, other[1])
            else:
                if other[0]:
                    raise self.fail("dividing by a parameter is not linear")
                if other[1] == 0:
                    raise self.fail("division by zero")
                value = _scale(value, 1.0 / other[1])
        return value

    def factor(self) -> tuple[dict[str, float], float]:
        kind = self.peek()
        if kind is None:
            raise self.fail("an expression ends too early")
        if kind in ("+", "-"):
            sign = 1.0 if self.take()[0] == "+" else -1.0
            return _scale(self.factor(), sign)
        if kind == "(":
            self.take()
            value = self.expr()
            if self.peek() != ")":
                raise self.fail("a parenthesis is not closed")
            self.take()
            return value
        token = self.take()
        if kind == "number":
            return {}, float(token[1])
        if kind == "name":
            return {str(token[1]): 1.0}, 0.0
        raise self.fail(f"unexpected {token[1]!r}")


def _add(a, b):
    weights = dict(a[0])
    for name, w in b[0].items():
        weights[name] = weights.get(name, 0.0) + w
    return weights, a[1] + b[1]


def _scale(a, factor: float):
    return {name: w * factor for name, w in a[0].items()}, a[1] * factor


def parse_statement(text: str, names: Sequence[str]) -> Statement:
    """Read ``text`` into a :class:`Statement` over the parameters ``names``."""
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError(f"a hypothesis is a non-empty string such as 'Days > 5', not {text!r}.")
    tokens = _tokens(text, names)
    compare = [i for i, (kind, _) in enumerate(tokens) if kind == "cmp"]
    if len(compare) != 1:
        raise ArgumentError(
            f"hypothesis {text!r} needs exactly one comparison (<, > or =), found {len(compare)}."
        )
    at = compare[0]
    sides = []
    for part in (tokens[:at], tokens[at + 1 :]):
        parser = _Parser(part, text)
        value = parser.expr()
        if parser.pos != len(part):
            raise parser.fail(f"unexpected {part[parser.pos][1]!r}")
        sides.append(value)
    weights, constant = _add(sides[0], _scale(sides[1], -1.0))
    weights = {name: w for name, w in weights.items() if w != 0.0}
    if not weights:
        raise ArgumentError(f"hypothesis {text!r} names no parameter.")
    return Statement(text.strip(), weights, constant, str(tokens[at][1]))


def hypothesis_table(
    statements: Sequence[str], draws: Mapping[str, np.ndarray], ci_prob: float
) -> pd.DataFrame:
    """One row per statement: estimate, est_error, lower, upper, evid_ratio, post_prob, star."""
    names = list(draws)
    rows = []
    tail = (1.0 - ci_prob) / 2.0
    for text in statements:
        statement = parse_statement(text, names)
        d = statement.difference(draws)
        lower, upper = np.quantile(d, [tail, 1.0 - tail])
        prob = ratio = np.nan
        if statement.op != "=":
            prob = float(np.mean(d > 0) if statement.op == ">" else np.mean(d < 0))
            ratio = np.inf if prob == 1.0 else prob / (1.0 - prob)
        rows.append(
            {
                "hypothesis": statement.text,
                "estimate": float(d.mean()),
                "est_error": float(d.std(ddof=1)),
                "lower": float(lower),
                "upper": float(upper),
                "evid_ratio": ratio,
                "post_prob": prob,
                "star": "*" if lower > 0 or upper < 0 else "",
            }
        )
    table = pd.DataFrame(rows).set_index("hypothesis")
    table.attrs.update(ci_prob=ci_prob, ci_kind="equal-tailed")
    return table
