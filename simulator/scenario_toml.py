"""TOML → :class:`~simulator.core.model.Scenario`, with errors people can act on.

:func:`load_scenario` and :func:`parse_scenario` raise only :class:`ScenarioError`, which
holds every problem found (not just the first), one line each::

    scenarios/x.toml:14: stream[2].fields.cpu.std: -3: must be > 0
    scenarios/x.toml:3: stream[0].evry: unknown key; did you mean 'every'? (allowed: ...)

How it works, in three steps:

1. bytes → text → ``dict`` with :mod:`tomllib` (binary data, syntax errors and empty files
   stop here, with the line tomllib names);
2. a :class:`_LineIndex` scans the text once more to learn on which line each key path
   is written (tomllib gives no positions);
3. builders walk the ``dict`` through :class:`_Table` readers, which check one key each,
   record a :class:`Problem` when it is wrong and return ``None``; a builder returns
   ``None`` as soon as one of its parts was wrong, so nothing is built from bad parts.

The language itself is documented in ``docs/scenario-reference.md``.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any, Final, NamedTuple, TypeAlias, TypeVar

from simulator.core.durations import ALLOWED as DURATION_ALLOWED
from simulator.core.durations import parse_duration
from simulator.core.model import (
    JSON,
    At,
    Bool,
    Burst,
    Choice,
    Const,
    Counter,
    Cycle,
    Envelope,
    Every,
    Exponential,
    FieldSpec,
    ListOf,
    LogNormal,
    Mode,
    Normal,
    Numeric,
    Object,
    Pattern,
    Poisson,
    Protocol,
    RandInt,
    Rule,
    Scenario,
    Schedule,
    Server,
    Slot,
    SlowConsumerPolicy,
    Stream,
    Template,
    TimeFormat,
    Timestamp,
    Uniform,
    UniformInterval,
    Uuid,
    Walk,
)
from simulator.core.rates import mean_rate_per_s
from simulator.errors import Problem, ScenarioError

__all__ = ["MAX_RATE_PER_S", "load_scenario", "mean_rate_per_s", "parse_scenario"]

MAX_RATE_PER_S: Final = 100_000
"""Highest mean rate one stream may ask for: beyond it no server here keeps up."""

_MAX_AT_OFFSETS: Final = 100_000
_MAX_BURST_COUNT: Final = 100_000
_MAX_LIST_LEN: Final = 10_000
_MAX_ROUND: Final = 12
_MAX_DEPTH: Final = 32  # nesting of fields and of JSON values: keeps recursion far from limits
_MAX_DURATION_NS: Final = 36_500 * 86_400 * 10**9  # 100 years: epoch + offsets stay in int64
_MAX_SEED: Final = 2**63 - 1
_INT64: Final = range(-(2**63), 2**63)
_EPOCH_RANGE: Final = (
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2100, 1, 1, tzinfo=UTC),
)
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_NOT_TEXT = re.compile("[\\x00\\ud800-\\udfff]")  # NUL, or a lone surrogate in a str
_UTF8_BOM: Final = b"\xef\xbb\xbf"

KeyPath: TypeAlias = tuple[str | int, ...]
E = TypeVar("E", bound=enum.Enum)


# ============================================================================ public API


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate the scenario file at ``path``.

    Raises :class:`ScenarioError` (and nothing else) when the file cannot be read or is not
    a valid scenario; print its ``str()`` to the user as it is.
    """
    source = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = getattr(e, "strerror", None) or str(e)
        raise ScenarioError([Problem(source, None, "", f"cannot read: {reason}")]) from None
    return parse_scenario(data, source)


def parse_scenario(text: str | bytes, source: str = "<scenario>") -> Scenario:
    """Validate the scenario ``text``; ``source`` names it in error messages.

    Raises :class:`ScenarioError` (and nothing else) listing every problem found.
    """
    doc, decoded = _parse_toml(text, source)
    ctx = _Context(source, _LineIndex(decoded))
    scenario = _scenario(ctx, doc)
    if ctx.problems:
        raise ScenarioError(ctx.problems)
    if scenario is None:  # pragma: no cover - a builder gave up without saying why
        raise AssertionError("scenario not built but no problem recorded")
    return scenario


# ============================================================================ text → dict


def _parse_toml(data: str | bytes, source: str) -> tuple[dict[str, object], str]:
    def fail(line: int | None, message: str) -> ScenarioError:
        return ScenarioError([Problem(source, line, "", message)])

    text, binary_at = _decode(data)
    if binary_at is not None:
        raise fail(None, f"not a text file (binary data at byte {binary_at})")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message, line = _split_position(str(e), text)
        raise fail(line, f"invalid TOML: {message}") from None
    except ValueError:
        # tomllib hands Python's int() a number of any length: over 4300 digits it raises.
        m = re.search(r"[0-9A-Fa-f_]{4300,}", text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        raise fail(line, "invalid TOML: a number has too many digits") from None
    except RecursionError:
        raise fail(None, "invalid TOML: arrays or tables nested too deeply") from None
    if not doc:
        raise fail(None, "empty scenario: needs a [scenario] table and at least one [[stream]]")
    return doc, text


def _decode(data: str | bytes) -> tuple[str, int | None]:
    """Return the text and, if it is not text, the offset of the first binary byte."""
    if isinstance(data, str):
        bom = 3 if data.startswith("\ufeff") else 0
        text = data[1:] if bom else data
        m = _NOT_TEXT.search(text)
        if m:
            return text, bom + len(text[: m.start()].encode("utf-8"))
        return text, None
    bom = 3 if data.startswith(_UTF8_BOM) else 0
    raw = data[bom:]
    bad = [i for i in (raw.find(b"\0"),) if i >= 0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad.append(e.start)
        text = ""
    return text, (bom + min(bad) if bad else None)


_AT_LINE = re.compile(r"(.*) \(at line (\d+), column \d+\)", re.DOTALL)
_AT_END = re.compile(r"(.*) \(at end of document\)", re.DOTALL)


def _split_position(message: str, text: str) -> tuple[str, int | None]:
    line: int | None = None
    if m := _AT_LINE.fullmatch(message):
        message, line = m[1], int(m[2])
    elif m := _AT_END.fullmatch(message):
        message, line = m[1], text.rstrip("\r\n").count("\n") + 1
    return " ".join(message.split()), line


# ============================================================================ line index


class _LineIndex:
    """On which line each key path of a valid TOML document is written.

    Paths are tuples like ``("stream", 2, "fields", "cpu", "std")``: array-of-tables
    headers and array elements count from 0. A path not written in the source (a
    missing key, a key inside a value) takes the line of its nearest written ancestor.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        _Scanner(text, self._lines).run()

    def line_of(self, path: KeyPath) -> int | None:
        for n in range(len(path), 0, -1):
            line = self._lines.get(path[:n])
            if line is not None:
                return line
        return None


@dataclass(slots=True)
class _Open:
    """An array (``[``) or inline table (``{``) whose closing bracket is still ahead."""

    kind: str
    path: KeyPath
    count: int = 0


class _Scanner:
    """One iterative pass over TOML text (already accepted by tomllib), recording the
    line of every key, table header and array element. No recursion, so nesting depth
    does not matter; every step consumes at least one character, so it always ends."""

    def __init__(self, text: str, out: dict[KeyPath, int]) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.out = out
        self.table: KeyPath = ()
        self.arrays_of_tables: dict[KeyPath, int] = {}  # array path → index of its last table
        self.open: list[_Open] = []

    def run(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c == "\n":
                self.line += 1
                self.i += 1
            elif c in " \t\r,":
                self.i += 1
            elif c == "#":
                self._skip_to_newline()
            elif self.open:
                self._in_container(c)
            elif c == "[":
                self._header()
            else:
                key = self._key()
                if key and self._equals():
                    self._record(self.table, key)
                    self._value(self.table + key)
                else:
                    self._skip_to_newline()

    def _in_container(self, c: str) -> None:
        top = self.open[-1]
        if c in "]}":
            self.open.pop()
            self.i += 1
        elif top.kind == "[":
            path = (*top.path, top.count)
            top.count += 1
            self._record(top.path, (top.count - 1,))
            self._value(path)
        else:
            key = self._key()
            if key and self._equals():
                self._record(top.path, key)
                self._value(top.path + key)
            else:
                self.i += 1

    def _header(self) -> None:
        s = self.s
        is_array = s.startswith("[[", self.i)
        self.i += 2 if is_array else 1
        key = self._key()
        if not key:
            self._skip_to_newline()
            return
        self._skip_blanks()
        self.i += 2 if is_array else 1
        if is_array:
            array = (*self._resolve(key[:-1]), key[-1])
            index = self.arrays_of_tables.get(array, -1) + 1
            self.arrays_of_tables[array] = index
            self.table = (*array, index)
        else:
            self.table = self._resolve(key)
        self._record((), self.table)

    def _resolve(self, key: tuple[str, ...]) -> KeyPath:
        """``stream.fields`` → ``stream[last].fields`` after ``[[stream]]`` headers."""
        path: KeyPath = ()
        for segment in key:
            path = (*path, segment)
            if path in self.arrays_of_tables:
                path = (*path, self.arrays_of_tables[path])
        return path

    def _record(self, base: KeyPath, key: KeyPath) -> None:
        for n in range(1, len(key) + 1):
            self.out.setdefault(base + key[:n], self.line)

    def _key(self) -> tuple[str, ...]:
        """Read a (dotted) key; ``()`` if there is none here."""
        s, n = self.s, len(self.s)
        segments: list[str] = []
        while True:
            self._skip_blanks()
            if self.i < n and s[self.i] in "\"'":
                start = self.i
                self._skip_string()
                segments.append(_unquote(s[start : self.i]))
            else:
                m = _BARE_KEY.match(s, self.i)
                if not m:
                    return ()
                segments.append(m.group())
                self.i = m.end()
            self._skip_blanks()
            if self.i < n and s[self.i] == ".":
                self.i += 1
                continue
            return tuple(segments)

    def _equals(self) -> bool:
        self._skip_blanks()
        if self.i < len(self.s) and self.s[self.i] == "=":
            self.i += 1
            return True
        return False

    def _value(self, path: KeyPath) -> None:
        self._skip_blanks()
        if self.i >= len(self.s):
            return
        c = self.s[self.i]
        if c in "[{":
            self.open.append(_Open(c, path))
            self.i += 1
        elif c in "\"'":
            self._skip_string()
        else:  # number, boolean or date-time (which may hold a space): up to a delimiter
            start = self.i
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1
            if self.i == start:
                self.i += 1

    def _skip_string(self) -> None:
        s, n = self.s, len(self.s)
        quote = s[self.i]
        multiline = s.startswith(quote * 3, self.i)
        j = self.i + (3 if multiline else 1)
        while j < n:
            if quote == '"' and s[j] == "\\":
                j += 2
            elif multiline and s.startswith(quote * 3, j):
                j += 3
                extra = 0  # up to two quotes just before the closing ones belong to the string
                while j < n and s[j] == quote and extra < 2:
                    j, extra = j + 1, extra + 1
                break
            elif not multiline and s[j] in (quote, "\n"):
                j += 1 if s[j] == quote else 0
                break
            else:
                j += 1
        j = min(j, n)
        self.line += s.count("\n", self.i, j)
        self.i = max(j, self.i + 1)

    def _skip_blanks(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def _skip_to_newline(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = len(self.s) if end < 0 else max(end, self.i + 1)


def _unquote(raw: str) -> str:
    if raw.startswith("'"):
        return raw[1:-1]
    try:  # let tomllib decode the escapes of a "basic" quoted key
        value = tomllib.loads(f"k = {raw}").get("k")
    except ValueError:
        return raw[1:-1]
    return value if isinstance(value, str) else raw[1:-1]


# ============================================================================ messages


def render_path(path: KeyPath) -> str:
    """``("stream", 2, "fields", "a b")`` → ``stream[2].fields."a b"``."""
    out: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        else:
            text = segment if _BARE_KEY.fullmatch(segment) else _quote(segment)
            out.append(f".{text}" if out else text)
    return "".join(out)


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(key: str) -> str:
    def esc(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c.isprintable():
            return c
        return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"

    return '"' + "".join(esc(c) for c in key) + '"'


def _show(value: object) -> str:
    """A value as the user wrote it, on one short line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37]) + "..."
    if isinstance(value, int) and value.bit_length() > 100:
        # repr() of a big int (hex literals may be thousands of digits long) can raise
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "an empty array" if not value else f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__  # pragma: no cover - tomllib makes nothing else


def _plain(name: str) -> bool:
    """Whether ``name`` reads unambiguously unquoted in a list of names."""
    return bool(name) and name.isprintable() and not any(c in name for c in ' ,"{}')


def _names(names: Iterable[str]) -> str:
    return ", ".join(n if _plain(n) else _quote(n) for n in names)


def _unknown(what: str, name: str, allowed: Sequence[str]) -> str:
    """``unknown distribution; did you mean 'normal'? (allowed: uniform, normal, ...)``"""
    close = difflib.get_close_matches(name, allowed, n=1) or [
        a for a in allowed if len(name) >= 3 and a.startswith(name)
    ]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (allowed: {_names(allowed)})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _limit(lo: float | None = None, hi: float | None = None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}"


# ============================================================================ readers


class _Absent(enum.Enum):
    ABSENT = enum.auto()


ABSENT: Final = _Absent.ABSENT


@dataclass
class _Context:
    """Where problems go: each gets the file, the line of its key path, and the path."""

    source: str
    index: _LineIndex
    problems: list[Problem] = field(default_factory=list)

    def report(self, path: KeyPath, message: str) -> None:
        problem = Problem(self.source, self.index.line_of(path), render_path(path), message)
        self.problems.append(problem)

    def bad(self, path: KeyPath, value: object, allowed: str) -> None:
        """``<path>: <what was found>: <what is allowed>``"""
        self.report(path, f"{_show(value)}: {allowed}")

    def mark(self) -> int:
        return len(self.problems)

    def failed_since(self, mark: int) -> bool:
        return len(self.problems) > mark

    # -- checks of one value: record a problem and return None when it is wrong --------

    def string(self, path: KeyPath, value: object) -> str | None:
        if not isinstance(value, str):
            self.bad(path, value, "must be a string")
            return None
        if not value.strip():
            self.bad(path, value, "must not be empty")
            return None
        return value

    def integer(
        self, path: KeyPath, value: object, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(path, value, "must be an integer")
            return None
        if value not in _INT64:
            self.bad(path, value, "must fit in 64 bits")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                top = "2**63-1" if hi == 2**63 - 1 else hi
                self.bad(path, value, f"must be an integer from {lo} to {top}")
            else:
                self.bad(path, value, f"must be {_limit(lo, hi)}")
            return None
        return value

    def number(
        self,
        path: KeyPath,
        value: object,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad(path, value, "must be a number")
            return None
        if isinstance(value, int) and value not in _INT64:
            self.bad(path, value, "must fit in 64 bits")
            return None
        x = float(value)
        if not math.isfinite(x):
            self.bad(path, value, "must be a finite number")
            return None
        if gt is not None and not x > gt:
            self.bad(path, value, f"must be > {gt:g}")
        elif (ge is not None and x < ge) or (le is not None and x > le):
            self.bad(path, value, f"must be {_limit(ge, le)}")
        else:
            return x
        return None

    def boolean(self, path: KeyPath, value: object) -> bool | None:
        if not isinstance(value, bool):
            self.bad(path, value, "must be true or false")
            return None
        return value

    def duration(self, path: KeyPath, value: object, *, positive: bool) -> int | None:
        """A duration string as nanoseconds; ``positive`` excludes zero."""
        bound = "> 0" if positive else ">= 0"
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.bad(path, value, f"a duration needs a unit, like '{_show(value)}s'")
            return None
        if not isinstance(value, str):
            self.bad(path, value, f"must be {DURATION_ALLOWED}")
            return None
        try:
            ns = parse_duration(value)
        except ValueError:
            negative = value.strip().startswith("-") and _parses(value.strip()[1:])
            self.bad(path, value, f"must be {bound}" if negative else f"must be {DURATION_ALLOWED}")
            return None
        if positive and ns == 0:
            self.bad(path, value, "must be > 0")
        elif ns > _MAX_DURATION_NS:
            self.bad(path, value, "must be at most 36500d (100 years)")
        else:
            return ns
        return None

    def choose(self, path: KeyPath, value: object, kind: type[E], what: str) -> E | None:
        """A string naming one member of ``kind`` by its value."""
        allowed = [str(member.value) for member in kind]
        if not isinstance(value, str):
            self.bad(path, value, f"must be a string, one of {', '.join(allowed)}")
            return None
        for member in kind:
            if member.value == value:
                return member
        self.bad(path, value, _unknown(what, value, allowed))
        return None


def _parses(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


class _Table:
    """One TOML table being read: each method checks one key and returns its value,
    ``default`` when the key is absent, or ``None`` when it is wrong (a problem is then
    recorded). ``required`` keys that are absent are reported as missing."""

    def __init__(self, ctx: _Context, data: Mapping[str, object], path: KeyPath) -> None:
        self.ctx = ctx
        self.data = data
        self.path = path
        self._suggested: set[str] = set()  # keys offered as "did you mean": not also "missing"

    def at(self, key: str | int) -> KeyPath:
        return (*self.path, key)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def only(self, allowed: Sequence[str]) -> None:
        """Report every key not in ``allowed``, with the closest allowed one."""
        for key in self.data:
            if key not in allowed:
                self._suggested.update(difflib.get_close_matches(key, allowed, n=1))
                self.ctx.report(self.at(key), _unknown("key", key, allowed))

    def suggested(self, keys: Iterable[str]) -> bool:
        """Whether an unknown key here was taken for one of ``keys``."""
        return not self._suggested.isdisjoint(keys)

    def get(self, key: str, required: str | None = None) -> object:
        """The raw value, or ABSENT; ``required`` says what is expected when missing."""
        value = self.data.get(key, ABSENT)
        if value is ABSENT and required is not None and key not in self._suggested:
            self.ctx.report(self.at(key), f"missing: required ({required})")
        return value

    def string(
        self, key: str, *, required: str | None = None, default: str | None = None
    ) -> str | None:
        value = self.get(key, required)
        return default if value is ABSENT else self.ctx.string(self.at(key), value)

    def integer(
        self,
        key: str,
        *,
        required: str | None = None,
        default: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int | None:
        value = self.get(key, required)
        return default if value is ABSENT else self.ctx.integer(self.at(key), value, lo, hi)

    def number(
        self,
        key: str,
        *,
        required: str | None = None,
        default: float | None = None,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float | None:
        value = self.get(key, required)
        if value is ABSENT:
            return default
        return self.ctx.number(self.at(key), value, gt=gt, ge=ge, le=le)

    def boolean(self, key: str, *, default: bool | None = None) -> bool | None:
        value = self.get(key)
        return default if value is ABSENT else self.ctx.boolean(self.at(key), value)

    def duration(
        self, key: str, *, positive: bool, required: str | None = None, default: int | None = None
    ) -> int | None:
        value = self.get(key, required)
        if value is ABSENT:
            return default
        return self.ctx.duration(self.at(key), value, positive=positive)

    def choose(self, key: str, kind: type[E], what: str, *, default: E | None = None) -> E | None:
        value = self.get(key)
        return default if value is ABSENT else self.ctx.choose(self.at(key), value, kind, what)

    def table(self, key: str, *, required: str | None = None) -> _Table | None:
        value = self.get(key, required)
        if value is ABSENT:
            return None
        if not isinstance(value, dict):
            self.ctx.bad(self.at(key), value, "must be a table")
            return None
        return _Table(self.ctx, value, self.at(key))

    def ordered(self, lo_key: str, lo: float | None, hi_key: str, hi: float | None) -> None:
        """Report ``lo_key`` when both bounds were given and ``lo > hi``."""
        if lo is not None and hi is not None and lo > hi:
            hi_text = _show(self.data[hi_key])
            self.ctx.bad(self.at(lo_key), self.data[lo_key], f"must be <= {hi_key} ({hi_text})")


# ============================================================================ JSON values


def _json(ctx: _Context, path: KeyPath, value: object, depth: int = 0) -> JSON:
    """A TOML value as JSON: date-times become ISO strings; NaN and infinities are errors."""
    if depth > _MAX_DEPTH:
        ctx.report(path, f"nested too deeply (at most {_MAX_DEPTH} levels)")
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if ctx.integer(path, value) is not None else None
    if isinstance(value, float):
        return value if ctx.number(path, value) is not None else None
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return [_json(ctx, (*path, i), v, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _json(ctx, (*path, k), v, depth + 1) for k, v in value.items()}
    ctx.bad(path, value, "not a JSON value")  # pragma: no cover - tomllib makes no other type
    return None  # pragma: no cover


# ============================================================================ fields

_DISTS: Final[dict[str, tuple[str, ...]]] = {
    "uniform": ("min", "max", "round"),
    "normal": ("mean", "std", "min", "max", "round"),
    "lognormal": ("mu", "sigma", "min", "max", "round"),
    "exponential": ("mean", "min", "max", "round"),
    "randint": ("min", "max"),
    "bool": ("p",),
    "walk": ("start", "step", "min", "max", "revert", "mean", "round"),
    "counter": ("start", "step"),
    "uuid": (),
    "timestamp": ("format",),
}
# A table holding one of these keys is a generator; any other table is an object of fields.
_GENERATORS: Final = ("dist", "choice", "cycle", "const", "template", "list")
_GENERATOR_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "choice": ("choice", "weights"),
    "cycle": ("cycle",),
    "const": ("const",),
    "template": ("template",),
    "list": ("list", "item"),
}
_TYPO_TARGETS: Final = (*_GENERATORS, "weights", "item")
_TEMPLATE_BUILTINS: Final = ("seq", "index")


def _field(ctx: _Context, value: object, path: KeyPath, depth: int) -> FieldSpec | None:
    if depth > _MAX_DEPTH:
        ctx.report(path, f"nested too deeply (at most {_MAX_DEPTH} levels)")
        return None
    if not isinstance(value, dict):
        mark = ctx.mark()
        const = _json(ctx, path, value, depth)
        return None if ctx.failed_since(mark) else Const(const)
    kinds = [k for k in _GENERATORS if k in value]
    if not kinds:
        return _object(ctx, value, path, depth, typo_guard=True)
    if len(kinds) > 1:
        ctx.report(
            (*path, kinds[1]),
            f"together with '{kinds[0]}': a field has one generator"
            f" (one of {', '.join(_GENERATORS)})",
        )
        return None
    t = _Table(ctx, value, path)
    kind = kinds[0]
    if kind == "dist":
        return _distribution(t)
    t.only(_GENERATOR_KEYS[kind])
    if kind == "choice":
        return _choice(t, depth)
    if kind == "cycle":
        values = _values(t, "cycle", depth)
        return None if values is None else Cycle(values)
    if kind == "const":
        mark = ctx.mark()
        const = _json(ctx, t.at("const"), value["const"], depth + 1)
        return None if ctx.failed_since(mark) else Const(const)
    if kind == "template":
        return _template(t)
    return _list(t, depth)


def _object(
    ctx: _Context, data: Mapping[str, object], path: KeyPath, depth: int, *, typo_guard: bool
) -> Object | None:
    """Each key a field, in order; then check template references against siblings."""
    mark = ctx.mark()
    fields: list[tuple[str, FieldSpec]] = []
    unknown_kind: list[str] = []  # siblings that failed: may be referenced without more noise
    for name, value in data.items():
        at = (*path, name)
        if not name:
            ctx.report(at, "empty field name: a field needs a name")
            continue
        if typo_guard and _looks_like_generator_typo(ctx, at, name, value):
            continue
        spec = _field(ctx, value, at, depth + 1)
        if spec is None:
            unknown_kind.append(name)
        else:
            fields.append((name, spec))
    siblings = [n for n, spec in fields if not isinstance(spec, Template)]
    for name, spec in fields:
        if isinstance(spec, Template):
            _check_template_names(ctx, (*path, name, "template"), spec, [*siblings, *unknown_kind])
    return None if ctx.failed_since(mark) else Object(tuple(fields))


def _looks_like_generator_typo(ctx: _Context, at: KeyPath, name: str, value: object) -> bool:
    """In a table with no generator key, ``{ dsit = "normal" }`` is most likely a
    misspelt generator, not an object with a field called ``dsit``."""
    if not isinstance(value, str | list):
        return False
    close = difflib.get_close_matches(name, _TYPO_TARGETS, n=1, cutoff=0.75)
    if close and close[0] != name:
        ctx.report(
            at,
            f"unknown key; did you mean {close[0]!r}? (for a field called"
            f" {_show(name)}, write {_names([name])} = {{ const = ... }})",
        )
        return True
    if name == "weights" and isinstance(value, list):
        ctx.report(
            at,
            "'weights' without 'choice' (for a field called 'weights',"
            " write weights = { const = ... })",
        )
        return True
    return False


def _distribution(t: _Table) -> FieldSpec | None:
    name = t.data["dist"]
    if not isinstance(name, str):
        t.ctx.bad(t.at("dist"), name, f"must be a string, one of {', '.join(_DISTS)}")
        return None
    if name not in _DISTS:
        t.ctx.bad(t.at("dist"), name, _unknown("distribution", name, list(_DISTS)))
        return None
    t.only(("dist", *_DISTS[name]))
    return _DIST_BUILDERS[name](t)


def _shape(t: _Table) -> Numeric | None:
    """Optional ``min``/``max`` clip and ``round``, shared by the numeric distributions."""
    mark = t.ctx.mark()
    lo, hi = t.number("min"), t.number("max")
    round_to = t.integer("round", lo=0, hi=_MAX_ROUND)
    t.ordered("min", lo, "max", hi)
    return None if t.ctx.failed_since(mark) else Numeric(lo, hi, round_to)


def _uniform(t: _Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    lo, hi = t.number("min", required="a number"), t.number("max", required="a number")
    round_to = t.integer("round", lo=0, hi=_MAX_ROUND)
    t.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return Uniform(lo, hi, Numeric(round_to=round_to))


def _normal(t: _Table) -> FieldSpec | None:
    mean = t.number("mean", required="a number")
    std = t.number("std", required="a number > 0", gt=0)
    shape = _shape(t)
    if mean is None or std is None or shape is None:
        return None
    return Normal(mean, std, shape)


def _lognormal(t: _Table) -> FieldSpec | None:
    mu = t.number("mu", required="a number, the mean of the underlying normal")
    sigma = t.number("sigma", required="a number > 0", gt=0)
    shape = _shape(t)
    if mu is None or sigma is None or shape is None:
        return None
    return LogNormal(mu, sigma, shape)


def _exponential(t: _Table) -> FieldSpec | None:
    mean = t.number("mean", required="a number > 0", gt=0)
    shape = _shape(t)
    if mean is None or shape is None:
        return None
    return Exponential(mean, shape)


def _randint(t: _Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    lo, hi = t.integer("min", required="an integer"), t.integer("max", required="an integer")
    t.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return RandInt(lo, hi)


def _bool(t: _Table) -> FieldSpec | None:
    p = t.number("p", default=0.5, ge=0, le=1)
    return None if p is None else Bool(p)


def _walk(t: _Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    start = t.number("start", required="a number")
    step = t.number("step", required="a number > 0", gt=0)
    revert = t.number("revert", default=0.0, ge=0, le=1)
    mean = t.number("mean")
    shape = _shape(t)
    if shape is not None:
        for key, x in (("start", start), ("mean", mean)):
            if x is not None and not _within(x, shape):
                t.ctx.bad(t.at(key), t.data[key], f"must be {_bounds(t)}")
    if t.ctx.failed_since(mark) or start is None or step is None or revert is None:
        return None
    if shape is None:
        return None
    return Walk(start, step, revert, mean, shape)


def _within(x: float, shape: Numeric) -> bool:
    return (shape.min is None or x >= shape.min) and (shape.max is None or x <= shape.max)


def _bounds(t: _Table) -> str:
    lo, hi = t.data.get("min"), t.data.get("max")
    if lo is not None and hi is not None:
        return f"between min ({_show(lo)}) and max ({_show(hi)})"
    return f">= min ({_show(lo)})" if lo is not None else f"<= max ({_show(hi)})"


def _counter(t: _Table) -> FieldSpec | None:
    mark = t.ctx.mark()
    start = t.integer("start", default=1)
    step = t.integer("step", default=1)
    if t.ctx.failed_since(mark) or start is None or step is None:
        return None
    return Counter(start, step)


def _uuid(t: _Table) -> FieldSpec | None:
    return Uuid()


def _timestamp(t: _Table) -> FieldSpec | None:
    fmt = t.choose("format", TimeFormat, "format", default=TimeFormat.ISO)
    return None if fmt is None else Timestamp(fmt)


_DIST_BUILDERS: Final[dict[str, Callable[[_Table], FieldSpec | None]]] = {
    "uniform": _uniform,
    "normal": _normal,
    "lognormal": _lognormal,
    "exponential": _exponential,
    "randint": _randint,
    "bool": _bool,
    "walk": _walk,
    "counter": _counter,
    "uuid": _uuid,
    "timestamp": _timestamp,
}


def _values(t: _Table, key: str, depth: int) -> tuple[JSON, ...] | None:
    """A non-empty array of JSON values (for ``choice`` and ``cycle``)."""
    raw = t.data[key]
    if not isinstance(raw, list) or not raw:
        t.ctx.bad(t.at(key), raw, "must be a non-empty array of values")
        return None
    mark = t.ctx.mark()
    values = tuple(_json(t.ctx, (*t.at(key), i), v, depth + 1) for i, v in enumerate(raw))
    return None if t.ctx.failed_since(mark) else values


def _choice(t: _Table, depth: int) -> FieldSpec | None:
    mark = t.ctx.mark()
    values = _values(t, "choice", depth)
    raw = t.get("weights")
    weights: tuple[float, ...] | None = None
    if raw is not ABSENT:
        if not isinstance(raw, list) or not raw:
            t.ctx.bad(t.at("weights"), raw, "must be a non-empty array of numbers >= 0")
        else:
            checked = [t.ctx.number((*t.at("weights"), i), w, ge=0) for i, w in enumerate(raw)]
            weights = tuple(w for w in checked if w is not None)
            if values is not None and len(raw) != len(values):
                t.ctx.report(
                    t.at("weights"),
                    f"{_count(len(raw), 'weight')} for {_count(len(values), 'choice')}:"
                    " needs one weight per choice",
                )
            elif len(weights) == len(raw) and not sum(weights) > 0:
                t.ctx.report(t.at("weights"), "all zero: must add up to more than 0")
    if t.ctx.failed_since(mark) or values is None:
        return None
    return Choice(values, weights)


def _template(t: _Table) -> FieldSpec | None:
    """``"tx_{seq}"``: plain ``{name}`` references only; names are checked by the caller."""
    text = t.data["template"]
    at = t.at("template")
    if not isinstance(text, str):
        t.ctx.bad(at, text, "must be a string with {name} references, like 'tx_{seq}'")
        return None
    names: list[str] = []
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        t.ctx.bad(at, text, f"not a template ({e}); write {{{{ and }}}} for literal braces")
        return None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or name.isdigit():
            t.ctx.bad(at, text, f"positional {{{name}}}: name a field instead, like {{seq}}")
            return None
        if any(c in name for c in ".[]"):
            t.ctx.bad(at, text, "attribute and index lookups are not supported: write {name}")
            return None
        if spec or conversion:
            t.ctx.bad(at, text, "format specs and conversions are not supported: write {name}")
            return None
        if name not in names:
            names.append(name)
    return Template(text, tuple(names))


def _check_template_names(
    ctx: _Context, path: KeyPath, template: Template, siblings: Sequence[str]
) -> None:
    allowed = [*siblings, *(b for b in _TEMPLATE_BUILTINS if b not in siblings)]
    for name in template.names:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {_ref(close[0])}?" if close else ""
            refs = ", ".join(_ref(n) for n in allowed)
            ctx.bad(
                path, template.text, f"{_ref(name)} is not a sibling field{hint} (allowed: {refs})"
            )


def _ref(name: str) -> str:
    return "{" + name + "}" if _plain(name) else "{" + _quote(name) + "}"


def _list(t: _Table, depth: int) -> FieldSpec | None:
    mark = t.ctx.mark()
    raw = t.data["list"]
    lo = hi = 0
    if isinstance(raw, dict):
        sizes = _Table(t.ctx, raw, t.at("list"))
        sizes.only(("min", "max"))
        lo_ = sizes.integer("min", required="an integer >= 0", lo=0, hi=_MAX_LIST_LEN)
        hi_ = sizes.integer("max", required="an integer >= 0", lo=0, hi=_MAX_LIST_LEN)
        sizes.ordered("min", lo_, "max", hi_)
        lo, hi = lo_ or 0, hi_ or 0  # 0 stands in only where a problem is recorded
    elif isinstance(raw, int) and not isinstance(raw, bool):
        lo = hi = t.ctx.integer(t.at("list"), raw, 0, _MAX_LIST_LEN) or 0
    else:
        allowed = f"must be a length from 0 to {_MAX_LIST_LEN}, or {{ min = 1, max = 5 }}"
        t.ctx.bad(t.at("list"), raw, allowed)
    item_raw = t.get("item", "the field each list item is drawn from")
    item = None if item_raw is ABSENT else _field(t.ctx, item_raw, t.at("item"), depth + 1)
    if isinstance(item, Template):
        _check_template_names(t.ctx, (*t.at("item"), "template"), item, [])
    if t.ctx.failed_since(mark) or item is None:
        return None
    return ListOf(item, lo, hi)


# ============================================================================ envelope


def _envelope(ctx: _Context, raw: object, path: KeyPath) -> Envelope | None:
    """Keys in order; ``"$seq"`` etc. are slots, ``"$$x"`` is the constant ``"$x"``."""
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table like { type = '$type', data = '$data' }")
        return None
    if not raw:
        ctx.bad(path, raw, "must have at least one key")
        return None
    slots = [s.value for s in Slot]
    mark = ctx.mark()
    keys: list[tuple[str, Slot | JSON]] = []
    for key, value in raw.items():
        at = (*path, key)
        if not key:
            ctx.report(at, "empty key: an envelope key needs a name")
        elif isinstance(value, str) and value.startswith("$$"):
            keys.append((key, value[1:]))
        elif isinstance(value, str) and value.startswith("$"):
            if value in slots:
                keys.append((key, Slot(value)))
            else:
                allowed = _unknown("slot", value, slots)
                ctx.bad(at, value, f"{allowed}; write '$$' for a literal '$'")
        else:
            keys.append((key, _json(ctx, at, value)))
    return None if ctx.failed_since(mark) else Envelope(tuple(keys))


# ============================================================================ streams

_SCHEDULE_KEYS: Final = ("every", "rate", "at", "burst")
_STREAM_KEYS: Final = (
    "name",
    "type",
    *_SCHEDULE_KEYS,
    "repeat",
    "start",
    "stop",
    "first",
    "envelope",
    "fields",
)
_TOO_FAST: Final = f"would exceed what can be served (max {MAX_RATE_PER_S} msg/s per stream)"


def _stream(ctx: _Context, raw: object, path: KeyPath, envelope: Envelope | None) -> Stream | None:
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table ([[stream]])")
        return None
    t = _Table(ctx, raw, path)
    mark = ctx.mark()
    t.only(_STREAM_KEYS)
    name = t.string("name", required="a name of letters, digits, '_', '.', ':' or '-'")
    if name is not None and not _STREAM_NAME.fullmatch(name):
        ctx.bad(t.at("name"), name, "must be letters, digits, '_', '.', ':' or '-'")
    type_ = t.string("type", default=name)
    pattern = _pattern(t)
    start = t.duration("start", positive=False, default=0)
    stop = t.duration("stop", positive=True)
    first = t.duration("first", positive=False)
    if start is not None and stop is not None and stop <= start:
        ctx.bad(t.at("stop"), raw["stop"], f"must be after start ({_show(raw.get('start', '0s'))})")
    if "envelope" in t:
        envelope = _envelope(ctx, raw["envelope"], t.at("envelope"))
    fields = _fields(t)
    if ctx.failed_since(mark) or name is None or type_ is None or pattern is None:
        return None
    if start is None or fields is None:
        return None
    return Stream(
        name=name,
        schedule=Schedule(pattern, start, stop, first),
        fields=fields,
        type=type_,
        envelope=envelope or Envelope(),
    )


def _fields(t: _Table) -> Object | None:
    raw = t.get("fields")
    if raw is ABSENT:
        return Object(())
    if not isinstance(raw, dict):
        t.ctx.bad(t.at("fields"), raw, "must be a table of fields ([stream.fields])")
        return None
    return _object(t.ctx, raw, t.at("fields"), 0, typo_guard=False)


def _pattern(t: _Table) -> Pattern | None:
    """Exactly one of ``every``, ``rate``, ``at``, ``burst``; and not too fast."""
    given = [k for k in t.data if k in _SCHEDULE_KEYS]  # in file order
    if "repeat" in t and given[:1] != ["at"]:
        t.ctx.bad(t.at("repeat"), t.data["repeat"], "only allowed with 'at'")
    if not given and t.suggested(_SCHEDULE_KEYS):
        return None  # a misspelt schedule key is reported already
    if not given:
        t.ctx.report(t.path, "no schedule: needs one of every, rate, at or burst")
        return None
    if len(given) > 1:
        for extra in given[1:]:
            t.ctx.report(
                t.at(extra), f"together with '{given[0]}': a stream has exactly one schedule"
            )
        return None
    key = given[0]
    pattern = _PATTERN_BUILDERS[key](t)
    if pattern is None:
        return None
    if not isinstance(pattern, At) or pattern.repeat_ns is not None:
        rate = mean_rate_per_s(Schedule(pattern))
        if rate > MAX_RATE_PER_S:
            t.ctx.report(t.at(key), f"{_fmt_rate(rate)} msg/s: {_TOO_FAST}")
            return None
    return pattern


def _fmt_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate < 1e12 else f"{rate:.3g}"


def _every(t: _Table) -> Pattern | None:
    raw = t.data["every"]
    if not isinstance(raw, dict):
        if isinstance(raw, str | int | float):
            ns = t.duration("every", positive=True)
            return None if ns is None else Every(ns)
        t.ctx.bad(
            t.at("every"), raw, "must be a duration like '5s', or { min = '15s', max = '30s' }"
        )
        return None
    span = _Table(t.ctx, raw, t.at("every"))
    mark = t.ctx.mark()
    span.only(("min", "max"))
    lo = span.duration("min", positive=False, required="a duration")
    hi = span.duration("max", positive=True, required="a duration > 0")
    span.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return UniformInterval(lo, hi)


def _rate(t: _Table) -> Pattern | None:
    rate = t.number("rate", gt=0)
    return None if rate is None else Poisson(rate)


def _at(t: _Table) -> Pattern | None:
    raw = t.data["at"]
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_AT_OFFSETS:
        allowed = f"must be an array of 1 to {_MAX_AT_OFFSETS} durations, like ['1s', '2.5s']"
        t.ctx.bad(t.at("at"), raw, allowed)
        return None
    mark = t.ctx.mark()
    offsets: list[int] = []
    previous = ""  # how the last valid offset was written, for messages
    for i, value in enumerate(raw):
        ns = t.ctx.duration((*t.at("at"), i), value, positive=False)
        if ns is None:
            continue
        if offsets and ns < offsets[-1]:
            t.ctx.bad((*t.at("at"), i), value, f"must not be before {previous}")
        offsets.append(ns)
        previous = f"at[{i}] ({_show(value)})"
    repeat = t.duration("repeat", positive=True)
    if repeat is not None and offsets and repeat <= offsets[-1]:
        t.ctx.bad(
            t.at("repeat"), t.data["repeat"], f"must be longer than the last offset {previous}"
        )
    if t.ctx.failed_since(mark):
        return None
    return At(tuple(offsets), repeat)


def _burst(t: _Table) -> Pattern | None:
    raw = t.data["burst"]
    if not isinstance(raw, dict):
        t.ctx.bad(
            t.at("burst"),
            raw,
            "must be a table like { count = 5, spacing = '100ms', every = '10s' }",
        )
        return None
    b = _Table(t.ctx, raw, t.at("burst"))
    mark = t.ctx.mark()
    b.only(("count", "spacing", "every"))
    count = b.integer("count", required="an integer >= 1", lo=1, hi=_MAX_BURST_COUNT)
    spacing = b.duration("spacing", positive=False, default=0)
    every = b.duration("every", positive=True, required="a duration > 0")
    if (
        count is not None
        and spacing is not None
        and every is not None
        and ((count - 1) * spacing >= every)
    ):
        b.ctx.report(
            t.at("burst"),
            f"{count} messages {_show(raw['spacing'])} apart take longer than every"
            f" ({_show(raw['every'])}): bursts must not overlap",
        )
    if t.ctx.failed_since(mark) or count is None or spacing is None or every is None:
        return None
    return Burst(count, spacing, every)


_PATTERN_BUILDERS: Final[dict[str, Callable[[_Table], Pattern | None]]] = {
    "every": _every,
    "rate": _rate,
    "at": _at,
    "burst": _burst,
}


# ============================================================================ server, protocol


_SERVER_INTS: Final = {
    "port": (0, 65535),
    "max_connections": (1, 100_000),
    "max_frame_bytes": (125, 16 * 2**20),
    "send_buffer_bytes": (1024, 64 * 2**20),
}
_SERVER_DURATIONS: Final = {
    "keepalive_interval": "keepalive_interval_ns",
    "keepalive_timeout": "keepalive_timeout_ns",
}


def _server(t: _Table | None) -> Server | None:
    """``[server]``: each key given replaces the default of :class:`Server`."""
    if t is None:
        return Server()
    mark = t.ctx.mark()
    t.only(("host", "mode", *_SERVER_INTS, "slow_consumer", *_SERVER_DURATIONS))
    changes: dict[str, object] = {
        "host": t.string("host"),
        "mode": t.choose("mode", Mode, "mode"),
        "slow_consumer": t.choose("slow_consumer", SlowConsumerPolicy, "policy"),
        **{key: t.integer(key, lo=lo, hi=hi) for key, (lo, hi) in _SERVER_INTS.items()},
        **{attr: t.duration(key, positive=True) for key, attr in _SERVER_DURATIONS.items()},
    }
    if t.ctx.failed_since(mark):
        return None
    return replace(Server(), **_given(changes))


def _given(changes: Mapping[str, object]) -> dict[str, Any]:
    """The keys that were in the file (absent ones read as ``None``), for
    :func:`dataclasses.replace`: each value was type-checked by its reader."""
    return {key: value for key, value in changes.items() if value is not None}


_PROTOCOL_TYPES: Final = {
    "ping": "ping_type",
    "pong": "pong_type",
    "subscribe": "subscribe_type",
    "unsubscribe": "unsubscribe_type",
    "error": "error_type",
}


def _protocol(t: _Table | None) -> Protocol | None:
    """``[protocol]`` and its ``[[protocol.rule]]`` tables."""
    if t is None:
        return Protocol()
    mark = t.ctx.mark()
    t.only((*_PROTOCOL_TYPES, "errors", "rule"))
    changes: dict[str, object] = {
        **{attr: t.string(key) for key, attr in _PROTOCOL_TYPES.items()},
        "errors": t.boolean("errors"),
    }
    rules: list[Rule] = []
    raw = t.get("rule")
    if raw is not ABSENT:
        if not isinstance(raw, list):
            t.ctx.bad(t.at("rule"), raw, "must be an array of tables ([[protocol.rule]])")
        else:
            for i, rule_raw in enumerate(raw):
                rule = _rule(t.ctx, rule_raw, (*t.at("rule"), i), i)
                if rule is not None:
                    rules.append(rule)
    if t.ctx.failed_since(mark):
        return None
    return replace(Protocol(), rules=tuple(rules), **_given(changes))


def _rule(ctx: _Context, raw: object, path: KeyPath, index: int) -> Rule | None:
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table ([[protocol.rule]])")
        return None
    t = _Table(ctx, raw, path)
    mark = ctx.mark()
    t.only(("name", "match", "reply", "delay"))
    name = t.string("name", default=f"rule[{index}]")
    match: tuple[tuple[str, JSON], ...] = ()
    match_raw = t.get("match", "a table of the fields a request must have, like { type = 'get' }")
    if match_raw is not ABSENT:
        if not isinstance(match_raw, dict) or not match_raw:
            ctx.bad(t.at("match"), match_raw, "must be a non-empty table, like { type = 'get' }")
        else:
            match = tuple((k, _json(ctx, (*t.at("match"), k), v)) for k, v in match_raw.items())
    reply_raw = t.get("reply", "the reply to send, any value")
    reply = None if reply_raw is ABSENT else _json(ctx, t.at("reply"), reply_raw)
    delay = t.duration("delay", positive=False, default=0)
    if ctx.failed_since(mark) or name is None or delay is None:
        return None
    return Rule(name, match, reply, delay)


# ============================================================================ scenario

_TOP_KEYS: Final = ("scenario", "server", "envelope", "protocol", "stream")
_SCENARIO_KEYS: Final = ("name", "description", "seed", "epoch", "duration")


def _scenario(ctx: _Context, doc: Mapping[str, object]) -> Scenario | None:
    top = _Table(ctx, doc, ())
    for key, value in doc.items():
        if key in _TOP_KEYS:
            continue
        if key in _SCENARIO_KEYS:
            ctx.report((key,), "not inside a table; did you mean to put it under [scenario]?")
        else:
            what = "table" if isinstance(value, dict | list) else "key"
            ctx.report((key,), _unknown(what, key, _TOP_KEYS))
    meta = top.table("scenario", required="a [scenario] table with at least a name")
    header = _header(meta) if meta is not None else None
    server = _server(top.table("server"))
    protocol = _protocol(top.table("protocol"))
    envelope = _envelope(ctx, doc["envelope"], ("envelope",)) if "envelope" in doc else None
    streams = _streams(ctx, top.get("stream", "at least one [[stream]]"), envelope)
    if header is None or server is None or protocol is None or streams is None:
        return None
    return Scenario(
        name=header.name,
        seed=header.seed,
        streams=streams,
        description=header.description,
        epoch_ns=header.epoch_ns,
        duration_ns=header.duration_ns,
        server=server,
        protocol=protocol,
        source=ctx.source,
    )


class _Header(NamedTuple):
    """What ``[scenario]`` holds."""

    name: str
    description: str
    seed: int
    epoch_ns: int | None
    duration_ns: int | None


def _header(t: _Table) -> _Header | None:
    mark = t.ctx.mark()
    t.only(_SCENARIO_KEYS)
    name = t.string("name", required="a non-empty string")
    description = t.get("description")
    if description is not ABSENT and not isinstance(description, str):
        t.ctx.bad(t.at("description"), description, "must be a string")
    seed = t.integer("seed", default=0, lo=0, hi=_MAX_SEED)
    epoch = _epoch_ns(t)
    duration = t.duration("duration", positive=True)
    if t.ctx.failed_since(mark) or name is None or seed is None:
        return None
    text = description if isinstance(description, str) else ""
    return _Header(name, text, seed, epoch, duration)


def _epoch_ns(t: _Table) -> int | None:
    raw = t.get("epoch")
    if raw is ABSENT:
        return None
    when: datetime | None = None
    if isinstance(raw, datetime):
        when = raw
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.strip())
        except ValueError:
            when = None
    if when is None:
        t.ctx.bad(
            t.at("epoch"),
            raw,
            "must be an ISO 8601 date-time with offset, like '2026-01-01T00:00:00Z'",
        )
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        t.ctx.bad(t.at("epoch"), raw, "has no UTC offset: add 'Z' or an offset like '+01:00'")
        return None
    if not _EPOCH_RANGE[0] <= when < _EPOCH_RANGE[1]:
        t.ctx.bad(t.at("epoch"), raw, "must be from 1970-01-01 to 2099-12-31")
        return None
    delta = when - _UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def _streams(ctx: _Context, raw: object, envelope: Envelope | None) -> tuple[Stream, ...] | None:
    if raw is ABSENT:
        return None
    if isinstance(raw, dict):
        ctx.report(("stream",), "a single [stream] table: write [[stream]] for each stream")
        return None
    if not isinstance(raw, list) or not raw:
        ctx.bad(("stream",), raw, "must be one or more [[stream]] tables")
        return None
    mark = ctx.mark()
    streams: list[Stream] = []
    first_use: dict[str, int] = {}
    for i, stream_raw in enumerate(raw):
        stream = _stream(ctx, stream_raw, ("stream", i), envelope)
        name = stream_raw.get("name") if isinstance(stream_raw, dict) else None
        if isinstance(name, str):
            if name in first_use:
                ctx.bad(
                    ("stream", i, "name"),
                    name,
                    f"already the name of stream[{first_use[name]}]: stream names must be unique",
                )
            else:
                first_use[name] = i
        if stream is not None:
            streams.append(stream)
    return None if ctx.failed_since(mark) else tuple(streams)
