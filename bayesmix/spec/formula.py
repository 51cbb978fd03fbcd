"""Parse lme4-style formulas into a :class:`FormulaSpec`.

formulae (the formula engine used for building columns) splits a bar such as
``(1 + x | g)`` into single-column terms and rejects ``||``. bayesmix needs the
bars as units (one covariance block each), so the random part is parsed here
and only the fixed part and each bar's left-hand side are handed to formulae.

Supported random-effects syntax: ``(1 | g)``, ``(x | g)``, ``(0 + x | g)``,
``(x || g)`` (uncorrelated), ``(1 | a/b)`` (nested: ``a`` and ``a:b``),
``(1 | a:b)``, ``(1 | a*b)`` (``a``, ``b`` and ``a:b``), several bars per formula.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bayesmix.errors import FormulaError


@dataclass(frozen=True)
class Bar:
    """One random-effects bar after expanding nested/crossed grouping.

    Attributes
    ----------
    lhs : str
        Left-hand side (``"1 + Days"``), evaluated by formulae.
    factors : tuple of str
        Columns whose interaction forms the grouping factor (``("popu", "gen")``).
    covariance : {"unstructured", "diagonal"}
        ``"diagonal"`` for ``||``.
    """

    lhs: str
    factors: tuple[str, ...]
    covariance: str = "unstructured"

    @property
    def grouping(self) -> str:
        return ":".join(self.factors)

    def __str__(self) -> str:
        bar = "||" if self.covariance == "diagonal" else "|"
        return f"({self.lhs} {bar} {self.grouping})"


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed mixed-model formula.

    Attributes
    ----------
    formula : str
        The original formula.
    response : str
        Response expression (``"log(1 + total.fruits)"``).
    fixed : str
        Right-hand side of the fixed part, formulae syntax (``"1"`` if empty).
    bars : tuple of Bar
        Random-effects bars, nesting and crossing expanded, in formula order.
    offsets : tuple of str
        The expressions of the fixed part's ``offset(...)`` terms (``"10 * Days"``).
    """

    formula: str
    response: str
    fixed: str
    bars: tuple[Bar, ...]
    offsets: tuple[str, ...] = ()

    @property
    def rhs(self) -> str:
        """The full right-hand side, fixed part and bars, as text."""
        parts = [] if self.fixed == "1" and self.bars else [self.fixed]
        offsets = [f"offset({o})" for o in self.offsets]
        return " + ".join(parts + offsets + [str(b) for b in self.bars])


def split_top_level(text: str, separators: str = "+-") -> list[tuple[str, str]]:
    """Split ``text`` at top-level ``+``/``-`` signs, outside parentheses.

    Returns ``(sign, term)`` pairs; the first term gets sign ``"+"``.
    """
    parts: list[tuple[str, str]] = []
    depth, start, sign = 0, 0, "+"
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"Unbalanced ')' at position {i} in {text!r}.")
        elif depth == 0 and char in separators and not _is_exponent_sign(text, i):
            parts.append((sign, text[start:i].strip()))
            sign, start = char, i + 1
    if depth != 0:
        raise FormulaError(f"Unbalanced '(' in {text!r}: a parenthesis is not closed.")
    parts.append((sign, text[start:].strip()))
    # A leading sign leaves an empty first chunk ("-1 + x"); keep the sign with the term.
    return [(s, t) for s, t in parts if t]


def _is_exponent_sign(text: str, i: int) -> bool:
    """True for the sign in a float literal such as ``1e-3``."""
    return i >= 2 and text[i - 1] in "eE" and text[i - 2].isdigit()


def _strip_outer_parens(term: str) -> str | None:
    """Return the inside of ``( ... )`` if the parentheses enclose the whole term."""
    if not (term.startswith("(") and term.endswith(")")):
        return None
    depth = 0
    for i, char in enumerate(term):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and i < len(term) - 1:
            return None
    return term[1:-1].strip()


def _top_level_bar(inner: str) -> tuple[str, str, str] | None:
    """Split ``lhs | rhs`` or ``lhs || rhs`` at depth 0; None when there is no bar."""
    depth = 0
    for i, char in enumerate(inner):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and char == "|":
            double = inner[i + 1 : i + 2] == "|"
            rhs_start = i + 2 if double else i + 1
            return inner[:i].strip(), inner[rhs_start:].strip(), "||" if double else "|"
    return None


# A grouping factor: a column name (letters of any script, digits, '_' and '.')
# or a back-quoted name that may hold anything but a back quote.
_NAME = re.compile(r"^(`[^`]+`|[^\W\d][\w.]*|\.[^\W\d][\w.]*)$")
_GROUPING_TOKEN = re.compile(r"`[^`]*`|[/*:]|[^/*:\s`]+|\S")


def expand_grouping(rhs: str, formula: str) -> list[tuple[str, ...]]:
    """Expand a bar's grouping expression into interaction tuples.

    ``g`` -> [(g,)], ``a/b/c`` -> [(a,), (a, b), (a, b, c)], ``a:b`` -> [(a, b)],
    ``a*b`` -> [(a,), (b,), (a, b)]. Back quotes are removed from the names.
    """
    tokens = _GROUPING_TOKEN.findall(rhs)
    if not tokens:
        raise FormulaError(f"A random-effects bar has no grouping factor in {formula!r}.")
    operators = {t for t in tokens if t in "/*" and len(t) == 1}
    if len(operators) > 1:
        raise FormulaError(
            f"The grouping {rhs!r} in {formula!r} mixes '/' and '*'; write the bars separately, "
            "e.g. '(1 | a) + (1 | a:b)'."
        )
    names: list[list[str]] = [[]]
    for token in tokens:
        if token in ("/", "*"):
            names.append([])
        elif token != ":":
            names[-1].append(token)
    for factors in names:
        if not factors:
            raise FormulaError(f"The grouping {rhs!r} in {formula!r} has an empty factor name.")
        for name in factors:
            if not _NAME.match(name):
                raise FormulaError(
                    f"Grouping factor {name!r} in {formula!r} must be a column name "
                    "(expressions are not allowed to the right of '|')."
                )
    groups = [tuple(name.strip("`") for name in factors) for factors in names]
    if "/" in operators:
        out, prefix = [], ()
        for factors in groups:
            prefix = prefix + factors
            out.append(prefix)
        return out
    if "*" in operators:
        return [factors for factors in groups] + [tuple(f for g in groups for f in g)]
    return groups


def parse_formula(formula: str) -> FormulaSpec:
    """Parse an lme4-style formula.

    Parameters
    ----------
    formula : str
        E.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    FormulaSpec

    Raises
    ------
    FormulaError
        If there is no ``~``, no response, unbalanced parentheses, or an empty bar.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"The formula must be a string, got {type(formula).__name__}.")
    if formula.count("~") != 1:
        raise FormulaError(
            f"The formula {formula!r} must contain exactly one '~' separating the "
            "response from the predictors, e.g. 'y ~ x + (1 | g)'."
        )
    response, rhs = (part.strip() for part in formula.split("~"))
    if not response:
        raise FormulaError(f"The formula {formula!r} has no response left of '~'.")
    if not rhs:
        raise FormulaError(f"The formula {formula!r} has nothing right of '~'; use '~ 1'.")

    fixed_terms: list[str] = []
    offsets: list[str] = []
    bars: list[Bar] = []
    for sign, term in split_top_level(rhs):
        inner = _strip_outer_parens(term)
        split = _top_level_bar(inner) if inner is not None else None
        if split is None:
            if "|" in term:
                raise FormulaError(
                    f"Random-effects term {term!r} in {formula!r} must be wrapped in "
                    "parentheses, e.g. '(1 | g)'."
                )
            offset = _call_argument(term, "offset")
            if offset is not None:
                if sign == "-":
                    raise FormulaError(
                        f"Cannot subtract {term!r} in {formula!r}; write offset(-({offset}))."
                    )
                offsets.append(offset)
                continue
            fixed_terms.append(term if sign == "+" else f"- {term}")
            continue
        if sign == "-":
            raise FormulaError(f"Cannot subtract the random-effects term {term!r}.")
        lhs, group_rhs, bar = split
        if not lhs:
            raise FormulaError(f"The bar {term!r} has no terms left of '{bar}'; use '(1 {bar} g)'.")
        if re.sub(r"[\s+]+", "+", lhs).strip("+") in ("0", "-1", "0+0", "0-1"):
            raise FormulaError(
                f"The bar {term!r} in {formula!r} has no random effect (0 removes the intercept "
                f"and nothing else is left); remove the bar, or use '(1 {bar} g)'."
            )
        covariance = "diagonal" if bar == "||" else "unstructured"
        for factors in expand_grouping(group_rhs, formula):
            bars.append(Bar(lhs=lhs, factors=factors, covariance=covariance))

    fixed = _join_terms(fixed_terms) or "1"
    if fixed.strip() in ("0", "-1", "- 1") and not bars and not offsets:
        raise FormulaError(f"The formula {formula!r} has no terms: nothing to estimate.")
    return FormulaSpec(
        formula=formula, response=response, fixed=fixed, bars=tuple(bars), offsets=tuple(offsets)
    )


def _call_argument(term: str, function: str) -> str | None:
    """The argument text of ``function(...)`` when the call is the whole term."""
    term = term.strip()
    if not term.startswith(f"{function}("):
        return None
    inner = _strip_outer_parens(term[len(function) :])
    return inner if inner else None


def binomial_counts(response: str) -> tuple[str, str] | None:
    """``(successes, failures)`` of a ``cbind(successes, failures)`` response, else ``None``.

    Raises
    ------
    FormulaError
        ``cbind`` with other than two arguments.
    """
    inner = _call_argument(response, "cbind")
    if inner is None:
        return None
    parts = [part for _, part in split_top_level(inner, ",")]
    if len(parts) != 2:
        raise FormulaError(
            f"cbind() in the response {response!r} takes two columns or expressions: "
            "successes and failures, e.g. cbind(incidence, size - incidence)."
        )
    return parts[0], parts[1]


def _join_terms(terms: list[str]) -> str:
    text = " + ".join(terms)
    return text.replace("+ - ", "- ")


def update_formula(old: str, new: str) -> str:
    """Apply an R ``update()``-style edit to a formula.

    ``.`` on the left stands for the old response and on the right for the old
    right-hand side; ``- term`` removes a term (a fixed term or a whole bar).

    Examples
    --------
    >>> update_formula("y ~ a + (1 | g)", ". ~ . + a:b")
    'y ~ a + a:b + (1 | g)'
    >>> update_formula("y ~ a + (1 | g)", ". ~ . - (1 | g) + (a | g)")
    'y ~ a + (a | g)'
    """
    old_spec = parse_formula(old)
    if new.count("~") != 1:
        raise FormulaError(f"The update {new!r} must contain one '~', e.g. '. ~ . + x'.")
    lhs, rhs = (part.strip() for part in new.split("~"))
    response = old_spec.response if lhs in ("", ".") else lhs
    old_terms = split_top_level(_rhs_text(old))
    kept: list[tuple[str, str]] = []
    for sign, term in split_top_level(rhs):
        if term == ".":
            kept.extend(old_terms)
        elif sign == "-" and term not in ("0", "1"):
            key = _normalise(term)
            remaining = [t for t in kept if _normalise(t[1]) != key or t[0] == "-"]
            if len(remaining) == len(kept):
                raise FormulaError(f"Cannot remove {term!r}: it is not a term of {old!r}.")
            kept = remaining
        else:
            kept.append((sign, term))
    # Fixed terms first, then the bars as the user wrote them (``a/b`` stays unexpanded).
    is_bar = [_strip_outer_parens(t) is not None and "|" in t for _, t in kept]
    ordered = [t for t, bar in zip(kept, is_bar) if not bar] + [
        t for t, bar in zip(kept, is_bar) if bar
    ]
    text = " + ".join(t if s == "+" else f"- {t}" for s, t in ordered).replace("+ - ", "- ")
    formula = f"{response} ~ {text or '1'}"
    parse_formula(formula)  # validate
    return formula


def _rhs_text(formula: str) -> str:
    return formula.split("~", 1)[1].strip()


def _normalise(term: str) -> str:
    return re.sub(r"\s+", "", term)


def edit_formula(formula: str, edit: str | None, random: str | None) -> str:
    """``formula`` after R's ``update`` edit (``". ~ . + x"``) and/or with its whole
    random part replaced by ``random`` (``"nutrient | popu/gen"``; ``""`` removes it).

    Raises
    ------
    FormulaError
        ``edit`` or ``random`` is not a string.
    """
    if edit is not None and not isinstance(edit, str):
        raise FormulaError(f"update() takes a formula string such as '. ~ . + x', got {edit!r}.")
    if random is not None and not isinstance(random, str):
        raise FormulaError(f"random must be a string such as 'x | g', got {random!r}.")
    new_formula = formula if edit is None else update_formula(formula, edit)
    if random is None:
        return new_formula
    spec = parse_formula(new_formula)
    random = random.strip().removeprefix("~").strip()
    if random and not random.startswith("("):
        random = f"({random})"
    offsets = "".join(f" + offset({text})" for text in spec.offsets)
    return f"{spec.response} ~ {spec.fixed}{offsets}" + (f" + {random}" if random else "")
