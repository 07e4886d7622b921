"""The expression language of derived fields: parse, type-check, evaluate.

An expression is text such as ``current_price - prev.current_price`` or
``if(type == "energy_buy", amount, -amount)``. It is parsed here by a small
recursive-descent parser into a tree of frozen nodes; nothing is ever handed to Python's
``eval``. Grammar, loosest binding first::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER | STRING | "true" | "false" | NAME | "prev" "." NAME
             | FUNCTION "(" expr ("," expr)* ")" | "(" expr ")"

Functions: ``min``, ``max`` (two or more arguments), ``abs``, ``round(x)`` /
``round(x, digits)``, ``clamp(x, lo, hi)``, ``if(condition, then, else)``.

Values have one of four types (:class:`VType`): integers, floats, booleans and strings.
:func:`check` gives an expression's type from the types of the names it reads, or says
what is wrong and where (the column in the text). :func:`vectorised` compiles a tree to
a function over numpy columns (one evaluation per chunk of messages) and :func:`scalar`
to a function over single values (for running totals, one message after the other). A
division or remainder by zero gives 0: a feed never carries NaN or infinity.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np

__all__ = [
    "Binary",
    "Call",
    "Expr",
    "ExprError",
    "Literal",
    "Ref",
    "Unary",
    "VType",
    "check",
    "parse",
    "refs",
    "scalar",
    "vectorised",
]

MAX_LENGTH: Final = 2_000
MAX_DEPTH: Final = 64


class VType(enum.Enum):
    INT = "integer"
    FLOAT = "number"
    BOOL = "boolean"
    STR = "string"

    @property
    def numeric(self) -> bool:
        return self in (VType.INT, VType.FLOAT)

    @property
    def article(self) -> str:
        """``an integer``, ``a string``: for messages."""
        return f"an {self.value}" if self is VType.INT else f"a {self.value}"


class ExprError(Exception):
    """What is wrong with an expression, and at which column (1-based) of its text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"at column {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Literal:
    value: float | int | bool | str
    at: int


@dataclass(frozen=True, slots=True)
class Ref:
    """A field of this message, or with ``prev`` of the stream's previous message."""

    name: str
    prev: bool
    at: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    at: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Expr
    right: Expr
    at: int


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Expr, ...]
    at: int


Expr: TypeAlias = Literal | Ref | Unary | Binary | Call

FUNCTIONS: Final = ("abs", "clamp", "if", "max", "min", "round")
_ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "abs": (1, 1),
    "clamp": (3, 3),
    "if": (3, 3),
    "max": (2, None),
    "min": (2, None),
    "round": (1, 2),
}
_COMPARE: Final = ("<", "<=", ">", ">=", "==", "!=")
KEYWORDS: Final = ("and", "or", "not", "true", "false", "prev")

# ----------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'[^']*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><=|>=|==|!=|[-+*/%<>(),.])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, op, end
    text: str
    at: int  # 1-based column


def _tokens(text: str) -> Iterator[_Token]:
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            yield _Token("end", "", pos + 1)
            return
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            raise ExprError(f"unexpected character {text[pos]!r}", pos + 1)
        kind = m.lastgroup
        yield _Token(kind, m.group(kind), m.start(kind) + 1)
        pos = m.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(_tokens(text))
        self._i = 0
        self._depth = 0

    @property
    def _next(self) -> _Token:
        return self._tokens[self._i]

    def _take(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _accept(self, *texts: str) -> _Token | None:
        token = self._next
        if token.kind in ("op", "name") and token.text in texts:
            self._i += 1
            return token
        return None

    def _expect(self, text: str, what: str) -> _Token:
        token = self._accept(text)
        if token is None:
            raise ExprError(f"expected {what}, found {_describe(self._next)}", self._next.at)
        return token

    def whole(self) -> Expr:
        tree = self._or()
        if self._next.kind != "end":
            raise ExprError(
                f"expected an operator or the end, found {_describe(self._next)}", self._next.at
            )
        return tree

    def _or(self) -> Expr:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExprError(f"nested more than {MAX_DEPTH} deep", self._next.at)
        left = self._and()
        while op := self._accept("or"):
            left = Binary("or", left, self._and(), op.at)
        self._depth -= 1
        return left

    def _and(self) -> Expr:
        left = self._not()
        while op := self._accept("and"):
            left = Binary("and", left, self._not(), op.at)
        return left

    def _not(self) -> Expr:
        if op := self._accept("not"):
            return Unary("not", self._not(), op.at)
        return self._compare()

    def _compare(self) -> Expr:
        left = self._sum()
        if op := self._accept(*_COMPARE):
            left = Binary(op.text, left, self._sum(), op.at)
            if self._accept(*_COMPARE):
                raise ExprError("comparisons do not chain: write a < b and b < c", op.at)
        return left

    def _sum(self) -> Expr:
        left = self._product()
        while op := self._accept("+", "-"):
            left = Binary(op.text, left, self._product(), op.at)
        return left

    def _product(self) -> Expr:
        left = self._unary()
        while op := self._accept("*", "/", "%"):
            left = Binary(op.text, left, self._unary(), op.at)
        return left

    def _unary(self) -> Expr:
        if op := self._accept("-"):
            return Unary("-", self._unary(), op.at)
        if self._accept("+"):
            return self._unary()
        return self._atom()

    def _atom(self) -> Expr:
        token = self._take()
        if token.kind == "number":
            text = token.text
            is_int = not any(c in text for c in ".eE")
            return Literal(int(text) if is_int else float(text), token.at)
        if token.kind == "string":
            body = token.text[1:-1]
            if token.text[0] == '"':
                body = re.sub(r"\\(.)", r"\1", body)
            return Literal(body, token.at)
        if token.kind == "op" and token.text == "(":
            inner = self._or()
            self._expect(")", "')'")
            return inner
        if token.kind != "name":
            raise ExprError(f"expected a value, found {_describe(token)}", token.at)
        name = token.text
        if name in ("true", "false"):
            return Literal(name == "true", token.at)
        if name == "prev":
            self._expect(".", "'.' after prev (prev.<field>)")
            field = self._take()
            if field.kind != "name" or field.text in KEYWORDS:
                raise ExprError(
                    f"expected a field name after prev., found {_describe(field)}", field.at
                )
            return Ref(field.text, True, field.at)  # a mistake is in the name, not in prev.
        if name in ("and", "or", "not"):
            raise ExprError(f"expected a value, found {name!r}", token.at)
        if self._next.kind == "op" and self._next.text == "(":
            if name not in FUNCTIONS:
                raise ExprError(
                    f"unknown function {name!r} (allowed: {', '.join(FUNCTIONS)})", token.at
                )
            self._take()
            args = [self._or()]
            while self._accept(","):
                args.append(self._or())
            self._expect(")", "',' or ')'")
            lo, hi = _ARITY[name]
            if len(args) < lo or (hi is not None and len(args) > hi):
                want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
                raise ExprError(f"{name}() takes {want} arguments, got {len(args)}", token.at)
            return Call(name, tuple(args), token.at)
        return Ref(name, False, token.at)


def _describe(token: _Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def parse(text: str) -> Expr:
    """The tree of ``text``; raises :class:`ExprError` when it is not an expression."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ExprError("empty expression", 1)
    return _Parser(text).whole()


def refs(tree: Expr) -> Iterator[Ref]:
    """Every name the expression reads, in order of appearance."""
    if isinstance(tree, Ref):
        yield tree
    elif isinstance(tree, Unary):
        yield from refs(tree.operand)
    elif isinstance(tree, Binary):
        yield from refs(tree.left)
        yield from refs(tree.right)
    elif isinstance(tree, Call):
        for arg in tree.args:
            yield from refs(arg)


# ----------------------------------------------------------------------------- types


def _literal_type(value: object) -> VType:
    if isinstance(value, bool):
        return VType.BOOL
    if isinstance(value, int):
        return VType.INT
    if isinstance(value, float):
        return VType.FLOAT
    return VType.STR


def check(tree: Expr, types: Mapping[str, VType]) -> VType:
    """The type of ``tree`` given the type of each name; :class:`ExprError` on a mismatch.

    ``types`` must hold every name the tree reads (the caller checks names first)."""
    if isinstance(tree, Literal):
        return _literal_type(tree.value)
    if isinstance(tree, Ref):
        return types[tree.name]
    if isinstance(tree, Unary):
        t = check(tree.operand, types)
        if tree.op == "not":
            _want(t, (VType.BOOL,), "'not'", tree.at)
            return VType.BOOL
        _want(t, (VType.INT, VType.FLOAT), "'-'", tree.at)
        return t
    if isinstance(tree, Binary):
        a, b = check(tree.left, types), check(tree.right, types)
        op = tree.op
        if op in ("and", "or"):
            _want(a, (VType.BOOL,), f"{op!r}", tree.at)
            _want(b, (VType.BOOL,), f"{op!r}", tree.at)
            return VType.BOOL
        if op in ("==", "!="):
            if not (a == b or (a.numeric and b.numeric)):
                raise ExprError(f"{op!r} compares {a.article} with {b.article}", tree.at)
            return VType.BOOL
        _want(a, (VType.INT, VType.FLOAT), f"{op!r}", tree.at)
        _want(b, (VType.INT, VType.FLOAT), f"{op!r}", tree.at)
        if op in _COMPARE:
            return VType.BOOL
        if op == "/":
            return VType.FLOAT
        return VType.INT if a is VType.INT and b is VType.INT else VType.FLOAT
    args = [check(arg, types) for arg in tree.args]
    f = tree.function
    if f == "if":
        _want(args[0], (VType.BOOL,), "if()'s condition", tree.at)
        a, b = args[1], args[2]
        if a == b:
            return a
        if a.numeric and b.numeric:
            return VType.FLOAT
        raise ExprError(f"if() gives {a.article} or {b.article}: both must be one type", tree.at)
    for t in args:
        _want(t, (VType.INT, VType.FLOAT), f"{f}()", tree.at)
    if f == "round":
        if len(tree.args) == 1:
            return VType.INT
        digits = tree.args[1]
        if not (isinstance(digits, Literal) and _literal_type(digits.value) is VType.INT):
            raise ExprError(
                "round()'s digits must be a whole number written out, like 2", digits.at
            )
        return VType.INT if int(digits.value) <= 0 else VType.FLOAT
    return VType.INT if all(t is VType.INT for t in args) else VType.FLOAT


def _want(t: VType, allowed: tuple[VType, ...], what: str, at: int) -> None:
    if t not in allowed:
        wanted = "a number" if allowed == (VType.INT, VType.FLOAT) else allowed[0].article
        raise ExprError(f"{what} needs {wanted}, got {t.article}", at)


# ----------------------------------------------------------------------------- evaluation

Columns: TypeAlias = Mapping[str, Any]
"""Name → numpy column (vectorised) or single value (scalar)."""

Vector: TypeAlias = Callable[[Columns, Columns], Any]


def _safe_divide(a: Any, b: Any) -> Any:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _safe_mod(a: Any, b: Any) -> Any:
    a, b = np.asarray(a), np.asarray(b)
    zero = b == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.mod(a, np.where(zero, 1, b))
    return np.where(zero, 0, out)


_VECTOR_BINARY: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": _safe_divide,
    "%": _safe_mod,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
    "and": np.logical_and,
    "or": np.logical_or,
}


def vectorised(tree: Expr) -> Vector:
    """``f(current, previous)`` → the column of ``tree`` for a chunk of messages.

    Both mappings give a numpy column per name the tree reads (``previous`` for the
    ``prev.`` names); the result is a column, or a scalar for a tree with no names."""
    if isinstance(tree, Literal):
        value = tree.value
        return lambda cur, prev: value
    if isinstance(tree, Ref):
        name = tree.name
        if tree.prev:
            return lambda cur, prev: prev[name]
        return lambda cur, prev: cur[name]
    if isinstance(tree, Unary):
        operand = vectorised(tree.operand)
        if tree.op == "not":
            return lambda cur, prev: np.logical_not(operand(cur, prev))
        return lambda cur, prev: np.negative(operand(cur, prev))
    if isinstance(tree, Binary):
        left, right, op = vectorised(tree.left), vectorised(tree.right), _VECTOR_BINARY[tree.op]
        return lambda cur, prev: op(left(cur, prev), right(cur, prev))
    args = [vectorised(a) for a in tree.args]
    f = tree.function
    if f == "if":
        c, a, b = args
        return lambda cur, prev: np.where(c(cur, prev), a(cur, prev), b(cur, prev))
    if f == "abs":
        (x,) = args
        return lambda cur, prev: np.abs(x(cur, prev))
    if f == "clamp":
        x, lo, hi = args
        return lambda cur, prev: np.minimum(np.maximum(x(cur, prev), lo(cur, prev)), hi(cur, prev))
    if f == "round":
        x = args[0]
        digits = int(tree.args[1].value) if len(tree.args) == 2 else 0  # type: ignore[union-attr]
        if digits <= 0:
            return lambda cur, prev: np.round(x(cur, prev), digits).astype(np.int64)
        return lambda cur, prev: np.round(x(cur, prev), digits)
    reduce = np.minimum if f == "min" else np.maximum
    first, rest = args[0], args[1:]

    def extreme(cur: Columns, prev: Columns) -> Any:
        out = first(cur, prev)
        for arg in rest:
            out = reduce(out, arg(cur, prev))
        return out

    return extreme


def _scalar_divide(a: Any, b: Any) -> float:
    return a / b if b != 0 else 0.0


_SCALAR_BINARY: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _scalar_divide,
    "%": lambda a, b: 0 if b == 0 else a % b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def scalar(tree: Expr) -> Vector:
    """``f(current, previous)`` → the value of ``tree`` for one message (plain Python
    values in, one out): the same arithmetic as :func:`vectorised`, one row at a time."""
    if isinstance(tree, Literal):
        value = tree.value
        return lambda cur, prev: value
    if isinstance(tree, Ref):
        name = tree.name
        if tree.prev:
            return lambda cur, prev: prev[name]
        return lambda cur, prev: cur[name]
    if isinstance(tree, Unary):
        operand = scalar(tree.operand)
        if tree.op == "not":
            return lambda cur, prev: not operand(cur, prev)
        return lambda cur, prev: -operand(cur, prev)
    if isinstance(tree, Binary):
        left, right = scalar(tree.left), scalar(tree.right)
        if tree.op == "and":
            return lambda cur, prev: bool(left(cur, prev)) and bool(right(cur, prev))
        if tree.op == "or":
            return lambda cur, prev: bool(left(cur, prev)) or bool(right(cur, prev))
        op = _SCALAR_BINARY[tree.op]
        return lambda cur, prev: op(left(cur, prev), right(cur, prev))
    args = [scalar(a) for a in tree.args]
    f = tree.function
    if f == "if":
        c, a, b = args
        return lambda cur, prev: a(cur, prev) if c(cur, prev) else b(cur, prev)
    if f == "abs":
        (x,) = args
        return lambda cur, prev: abs(x(cur, prev))
    if f == "clamp":
        x, lo, hi = args
        return lambda cur, prev: min(max(x(cur, prev), lo(cur, prev)), hi(cur, prev))
    if f == "round":
        x = args[0]
        digits = int(tree.args[1].value) if len(tree.args) == 2 else 0  # type: ignore[union-attr]
        # numpy's rounding (half to even on the binary value), as the vectorised path.
        if digits <= 0:
            return lambda cur, prev: int(np.round(x(cur, prev), digits))
        return lambda cur, prev: float(np.round(x(cur, prev), digits))
    pick = min if f == "min" else max
    return lambda cur, prev: pick(arg(cur, prev) for arg in args)
