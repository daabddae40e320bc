"""``running_when``: the small condition language that says when an asset is running.

    current > 3
    speed >= 100 and flow > 5
    "inlet pressure" > 0.2 or `pump.current` > 3
    (speed > 100 or current > 3) and flow > 5

A condition is comparisons ``<sensor> <op> <number>`` (``op`` one of ``> >= < <= == !=``) joined by
``and`` and ``or``; ``and`` binds tighter than ``or``, parentheses group. A sensor name is a bare
word (letters, digits, ``_ . - : /``, not starting with a digit, not ``and``/``or``) or is quoted
with double quotes or backticks (names with spaces, or any other name). Keywords are case-insensitive.

It is parsed, never evaluated as Python: :meth:`RunningRule.parse` turns the text into a tree of
comparisons once, when the config is made, and :meth:`RunningRule.compile` binds the sensor names to
columns once the sensors are known, giving a predicate over rows (True = running).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import NoReturn

import numpy as np

OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
KEYWORDS = ("and", "or")

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<op>>=|<=|==|!=|>|<)
    | (?P<paren>[()])
    | (?P<quoted>"[^"]*"|`[^`]*`)
    | (?P<word>[A-Za-z_][\w.:/-]*)
    )""",
    re.VERBOSE,
)

Predicate = Callable[[np.ndarray], np.ndarray]  # rows (n, d) -> running (n,) bool


@dataclass(frozen=True, slots=True)
class Comparison:
    sensor: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class AllOf:
    terms: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    terms: tuple[Node, ...]


Node = Comparison | AllOf | AnyOf


@dataclass(frozen=True, slots=True)
class RunningRule:
    """A parsed ``running_when`` condition (a value: equal texts give equal rules)."""

    text: str
    tree: Node

    @classmethod
    def parse(cls, text: str) -> RunningRule:
        """``ValueError`` saying what is wrong and at which column (the caller names the key)."""
        if not text.strip():
            raise ValueError("is empty; write a condition such as current > 3, or null for always running")
        return cls(text, _Parser(text).rule())

    @property
    def sensors(self) -> tuple[str, ...]:
        """The sensor names the rule reads, in order of first appearance."""
        return tuple(dict.fromkeys(_comparisons(self.tree)))

    def missing(self, names: Sequence[str]) -> tuple[str, ...]:
        """The sensors the rule reads that ``names`` lacks."""
        return tuple(name for name in self.sensors if name not in names)

    def compile(self, names: Sequence[str]) -> Predicate:
        """The predicate over rows whose columns are ``names`` (every sensor of the rule among them)."""
        index = {name: j for j, name in enumerate(names)}
        return _compile(self.tree, index)


def _comparisons(node: Node) -> list[str]:
    if isinstance(node, Comparison):
        return [node.sensor]
    return [name for term in node.terms for name in _comparisons(term)]


def _compile(node: Node, index: dict[str, int]) -> Predicate:
    if isinstance(node, Comparison):
        column, compare, value = index[node.sensor], OPERATORS[node.op], node.value
        return lambda X: np.asarray(compare(X[:, column], value))
    parts = [_compile(term, index) for term in node.terms]
    combine = np.logical_and if isinstance(node, AllOf) else np.logical_or
    return lambda X: np.asarray(reduce(combine, (part(X) for part in parts)))


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, op, paren, quoted, word, keyword, end
    text: str
    column: int  # 1-based, for messages

    def shown(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def _tokens(text: str) -> list[_Token]:
    tokens, at = [], 0
    while text[at:].strip():
        match = _TOKEN.match(text, at)
        if match is None or match.lastgroup is None:
            column = at + len(text[at:]) - len(text[at:].lstrip()) + 1
            hint = "operators are " + " ".join(OPERATORS) + '; quote other names: "name" or `name`'
            raise ValueError(f"cannot read {text[column - 1 :]!r} at column {column} ({hint})")
        kind = match.lastgroup
        word, column = match.group(kind), match.start(kind) + 1
        if kind == "word" and word.lower() in KEYWORDS:
            kind, word = "keyword", word.lower()
        tokens.append(_Token(kind, word, column))
        at = match.end()
    return [*tokens, _Token("end", "", len(text) + 1)]


class _Parser:
    """Recursive descent over the tokens: rule := any; any := all (or all)*; all := atom (and atom)*;
    atom := ( any ) | sensor op number."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def rule(self) -> Node:
        tree = self._any()
        if self._peek().kind != "end":
            self._fail("'and', 'or' or the end")
        return tree

    def _any(self) -> Node:
        terms = [self._all()]
        while self._accept("keyword", "or"):
            terms.append(self._all())
        return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))

    def _all(self) -> Node:
        terms = [self._atom()]
        while self._accept("keyword", "and"):
            terms.append(self._atom())
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def _atom(self) -> Node:
        if self._accept("paren", "("):
            tree = self._any()
            if not self._accept("paren", ")"):
                self._fail("')'")
            return tree
        return Comparison(self._sensor(), self._operator(), self._number())

    def _sensor(self) -> str:
        token = self._peek()
        if token.kind == "word":
            self.at += 1
            return token.text
        if token.kind == "quoted" and len(token.text) > 2:
            self.at += 1
            return token.text[1:-1]
        self._fail('a sensor name (quote a name with spaces or symbols: "name" or `name`)')

    def _operator(self) -> str:
        token = self._peek()
        if token.kind != "op":
            self._fail("one of " + " ".join(OPERATORS))
        self.at += 1
        return token.text

    def _number(self) -> float:
        token = self._peek()
        if token.kind != "number" or not math.isfinite(float(token.text)):
            self._fail("a finite number")
        self.at += 1
        return float(token.text)

    def _peek(self) -> _Token:
        return self.tokens[self.at]

    def _accept(self, kind: str, text: str) -> bool:
        token = self._peek()
        if token.kind == kind and token.text == text:
            self.at += 1
            return True
        return False

    def _fail(self, expected: str) -> NoReturn:
        token = self._peek()
        raise ValueError(f"expected {expected} at column {token.column}, found {token.shown()}")
