"""A tiny, safe condition language for rules, evaluated with three-valued logic.

Why: every clinical rule must be data (YAML, with a citation), readable by a clinician,
and must never treat a missing input as "far away" or "normal". Python's ``eval`` is
unsafe and two-valued; this evaluator is neither.

Grammar (case-sensitive keywords)::

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | cmp
    cmp     := value (OP value)?          OP: < <= > >= == != in
    value   := NUMBER | STRING | true | false | '[' values ']' | path | '(' expr ')'
             | 'any' '(' path ',' expr ')' | 'count' '(' path ',' expr ')'
    path    := NAME ('.' NAME)*            e.g. lesion.max_diameter_mm, patient.molecular.ras

``any(list, cond)`` evaluates ``cond`` for each element (element fields are bare names,
e.g. ``any(lesion.vessels, calibre_mm >= 3 and distance_mm < 10)``); ``count(list, cond)``
counts the elements for which it is true (unknown if any is unknown).

Evaluation returns :class:`Truth` (``TRUE``/``FALSE``/``UNKNOWN``) plus the names of the
inputs that were missing. Kleene logic: ``False and Unknown`` is False, ``True or
Unknown`` is True, any comparison with an unknown value is Unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from latplan.errors import KnowledgeError


class Truth(StrEnum):
    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Unknown:
    """A value that is not known; ``missing`` names the input(s) that would decide it."""

    missing: tuple[str, ...]


@dataclass(frozen=True)
class AtLeast:
    """A value known only from below (e.g. an unsegmented organ outside the liver is at least as far
    from a liver lesion as the liver surface is). Comparisons decide when the bound suffices, else
    they are unknown and name ``missing``."""

    low: float
    missing: tuple[str, ...]


@dataclass
class Result:
    truth: Truth
    missing: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:  # pragma: no cover - guard against misuse
        raise TypeError("use result.truth, a Result is three-valued")


_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>\"[^\"]*\"|'[^']*')|(?P<op><=|>=|==|!=|<|>)"
    r"|(?P<punct>[(),\[\]])|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*))"
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "any", "count", "null"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise KnowledgeError(f"condition {text!r}: cannot read at character {pos} ({text[pos:pos + 12]!r}).")
        kind = m.lastgroup or ""
        val = m.group(kind)
        if kind == "name" and val in _KEYWORDS:
            kind = "kw"
        out.append((kind, val))
        pos = m.end()
    return out


# --- AST ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    kind: str                       # const, path, list, cmp, and, or, not, any, count
    value: Any = None
    children: tuple[Node, ...] = ()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            want = value or kind or "a token"
            raise KnowledgeError(f"condition {self.text!r}: expected {want!r}, found {tok[1] if tok else 'end'!r}.")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        if self.peek() is not None:
            raise KnowledgeError(f"condition {self.text!r}: unexpected {self.peek()[1]!r}.")  # type: ignore[index]
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek() == ("kw", "or"):
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else Node("or", children=tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.peek() == ("kw", "and"):
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else Node("and", children=tuple(items))

    def not_(self) -> Node:
        if self.peek() == ("kw", "not"):
            self.take()
            return Node("not", children=(self.not_(),))
        return self.cmp()

    def cmp(self) -> Node:
        left = self.value()
        tok = self.peek()
        if tok and (tok[0] == "op" or tok == ("kw", "in")):
            self.take()
            right = self.value()
            return Node("cmp", tok[1], (left, right))
        return left

    def value(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise KnowledgeError(f"condition {self.text!r}: ends too early.")
        kind, val = tok
        if kind == "num":
            self.take()
            return Node("const", float(val))
        if kind == "str":
            self.take()
            return Node("const", val[1:-1])
        if kind == "kw" and val in ("true", "false", "null"):
            self.take()
            return Node("const", {"true": True, "false": False, "null": None}[val])
        if kind == "kw" and val in ("any", "count"):
            self.take()
            self.take("punct", "(")
            path = self.take("name")[1]
            self.take("punct", ",")
            inner = self.or_()
            self.take("punct", ")")
            return Node(val, path, (inner,))
        if kind == "punct" and val == "(":
            self.take()
            node = self.or_()
            self.take("punct", ")")
            return node
        if kind == "punct" and val == "[":
            self.take()
            items: list[Node] = []
            while self.peek() != ("punct", "]"):
                items.append(self.value())
                if self.peek() == ("punct", ","):
                    self.take()
            self.take("punct", "]")
            return Node("list", children=tuple(items))
        if kind == "name":
            self.take()
            return Node("path", val)
        raise KnowledgeError(f"condition {self.text!r}: unexpected {val!r}.")


def parse(text: str) -> Node:
    """Parse a condition; raises :class:`KnowledgeError` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise KnowledgeError(f"a condition must be a non-empty string, found {text!r}.")
    return _Parser(text).parse()


def paths(node: Node, prefix_list: str | None = None) -> list[tuple[str, str | None]]:
    """All field paths used, as (path, enclosing list path or None)."""
    out: list[tuple[str, str | None]] = []
    if node.kind == "path":
        out.append((node.value, prefix_list))
    elif node.kind in ("any", "count"):
        out.append((node.value, prefix_list))
        for c in node.children:
            out.extend(paths(c, node.value))
    else:
        for c in node.children:
            out.extend(paths(c, prefix_list))
    return out


# --- evaluation -----------------------------------------------------------------------------
_MISSING = object()


def _lookup(ctx: Mapping[str, Any], path: str) -> Any:
    """Value of a dotted path; ``Unknown`` when any part is None or absent."""
    cur: Any = ctx
    for part in path.split("."):
        if isinstance(cur, (Unknown, AtLeast)):
            return cur
        if cur is None:
            return Unknown((path,))
        if isinstance(cur, Mapping):
            cur = cur.get(part, _MISSING)
        else:
            cur = getattr(cur, part, _MISSING)
        if cur is _MISSING or cur is None:
            return Unknown((path,))
    return cur


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op == "in":
        return a in b
    if op in ("==", "!="):
        if isinstance(a, Enum):
            a = a.value
        if isinstance(b, Enum):
            b = b.value
        return (a == b) if op == "==" else (a != b)
    try:
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]
    except TypeError:
        raise KnowledgeError(f"cannot compare {a!r} {op} {b!r}: a rule compares values of different types.") from None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _cmp_bound(op: str, a: Any, b: Any) -> Any:
    """Compare a lower bound with a number: decided when the bound suffices, else Unknown."""
    if isinstance(b, AtLeast) and not isinstance(a, AtLeast):
        a, b, op = b, a, _FLIP.get(op, op)
    if isinstance(b, AtLeast) or isinstance(b, Unknown) or not isinstance(b, (int, float)):
        return Unknown(a.missing + (getattr(b, "missing", ()) or ()))
    lo = a.low
    if op in ("<", "<=", "==") and (lo > b or (op == "<" and lo >= b)):
        return Truth.FALSE
    if op in (">", ">=", "!=") and (lo > b or (op == ">=" and lo >= b)):
        return Truth.TRUE
    return Unknown(a.missing)


def _to_truth(v: Any, where: str) -> Any:
    if isinstance(v, Unknown):
        return v
    if isinstance(v, bool):
        return Truth.TRUE if v else Truth.FALSE
    if isinstance(v, Truth):
        return v
    raise KnowledgeError(f"{where}: value {v!r} is not true/false; compare it with something.")


def _eval(node: Node, ctx: Mapping[str, Any]) -> Any:
    """Returns a python value, a Truth, or an Unknown."""
    k = node.kind
    if k == "const":
        return node.value
    if k == "path":
        v = _lookup(ctx, node.value)
        if isinstance(v, AtLeast):
            return AtLeast(v.low, (node.value,))
        return v
    if k == "list":
        vals = [_eval(c, ctx) for c in node.children]
        unk = [v for v in vals if isinstance(v, Unknown)]
        if unk:
            return Unknown(tuple(m for u in unk for m in u.missing))
        return [v.value if isinstance(v, Enum) else v for v in vals]
    if k == "cmp":
        a, b = (_eval(c, ctx) for c in node.children)
        if isinstance(a, AtLeast) or isinstance(b, AtLeast):
            return _cmp_bound(node.value, a, b)
        unk = [v for v in (a, b) if isinstance(v, Unknown)]
        if unk:
            return Unknown(tuple(m for u in unk for m in u.missing))
        if isinstance(a, Truth):
            a = a == Truth.TRUE
        if isinstance(b, Truth):
            b = b == Truth.TRUE
        return Truth.TRUE if _cmp(node.value, a, b) else Truth.FALSE
    if k == "not":
        v = _to_truth(_eval(node.children[0], ctx), "not")
        if isinstance(v, Unknown):
            return v
        return Truth.FALSE if v == Truth.TRUE else Truth.TRUE
    if k in ("and", "or"):
        decisive = Truth.FALSE if k == "and" else Truth.TRUE
        missing: list[str] = []
        for c in node.children:
            v = _to_truth(_eval(c, ctx), k)
            if isinstance(v, Unknown):
                missing.extend(v.missing)
            elif v == decisive:
                return decisive
        if missing:
            return Unknown(tuple(missing))
        return Truth.TRUE if k == "and" else Truth.FALSE
    if k in ("any", "count"):
        seq = _lookup(ctx, node.value)
        if isinstance(seq, Unknown):
            return seq
        if not isinstance(seq, Sequence) or isinstance(seq, str):
            raise KnowledgeError(f"{k}({node.value}, ...): {node.value} is not a list.")
        n_true, missing = 0, []
        for i, item in enumerate(seq):
            sub = dict(ctx)
            if isinstance(item, Mapping):
                sub.update(item)
            v = _to_truth(_eval(node.children[0], sub), k)
            if isinstance(v, Unknown):
                label = item.get("name", i) if isinstance(item, Mapping) else i
                missing.extend(f"{node.value}[{label}].{m}" for m in v.missing)
            elif v == Truth.TRUE:
                n_true += 1
                if k == "any":
                    return Truth.TRUE
        if missing:
            return Unknown(tuple(missing))
        return Truth.FALSE if k == "any" else n_true
    raise KnowledgeError(f"unknown node {k!r}")  # pragma: no cover


@dataclass(frozen=True)
class Condition:
    """A parsed condition with its source text."""

    text: str
    node: Node

    @classmethod
    def compile(cls, text: str, validate_path: Callable[[str, str | None], str | None] | None = None) -> Condition:
        """Parse ``text``; ``validate_path(path, list_path)`` returns an error message or None."""
        node = parse(text)
        if validate_path is not None:
            for p, lst in paths(node):
                problem = validate_path(p, lst)
                if problem:
                    raise KnowledgeError(f"condition {text!r}: {problem}")
        return cls(text, node)

    def evaluate(self, ctx: Mapping[str, Any]) -> Result:
        v = _eval(self.node, ctx)
        if isinstance(v, Unknown):
            # keep order, drop duplicates
            return Result(Truth.UNKNOWN, list(dict.fromkeys(v.missing)))
        v = _to_truth(v, f"condition {self.text!r}")
        return Result(v, [])
