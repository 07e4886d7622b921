"""Checking values one key at a time, collecting every problem instead of stopping.

A builder wraps each TOML table in a :class:`Table` and asks it for one key at a time
(``t.duration("every", positive=True)``); the answer is the checked value, the default
when the key is absent, or ``None`` when it is wrong, a :class:`Problem` then being
recorded in the shared :class:`Context`. A builder checks all its keys, then builds
nothing if :meth:`Context.failed_since` its :meth:`Context.mark`: every problem of the
file is reported at once, and nothing is built from bad parts.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from typing import Final, TypeAlias, TypeVar

from simulator.core.durations import ALLOWED as DURATION_ALLOWED
from simulator.core.durations import parse_duration
from simulator.core.model import JSON
from simulator.core.scenario_limits import INT64, MAX_DEPTH
from simulator.errors import Problem
from simulator.scenario.lines import KeyPath, LineIndex
from simulator.scenario.messages import render_path, show, unknown

__all__ = ["ABSENT", "Context", "Table", "json_value"]

_MAX_DURATION_NS: Final = 36_500 * 86_400 * 10**9  # 100 years: epoch + offsets stay in int64

E = TypeVar("E", bound=enum.Enum)


class _Absent(enum.Enum):
    ABSENT = enum.auto()


ABSENT: Final = _Absent.ABSENT
"""What :meth:`Table.get` returns for a key that is not in the table."""


#: Where a key path of a document was written: the file, its line index, and the
#: path in that file (see :mod:`.extends`, whose documents join several files).
Located: TypeAlias = tuple[str, LineIndex, KeyPath]


@dataclass
class Context:
    """Where problems go: each gets the file, the line of its key path, and the path.

    ``locate`` is set for a document joined from several files (``extends``): it says
    in which file, and at which path there, each key path of the document was written.
    """

    source: str
    index: LineIndex
    problems: list[Problem] = field(default_factory=list)
    locate: Callable[[KeyPath], Located] | None = None

    def where(self, path: KeyPath) -> Located:
        """The file, its line index and the path in it where ``path`` was written."""
        return (self.source, self.index, path) if self.locate is None else self.locate(path)

    def report(self, path: KeyPath, message: str, found: str | None = None) -> None:
        """Record a problem at ``path``; ``found`` is the offending value, already shown."""
        source, index, local = self.where(path)
        line = index.line_of(local)
        self.problems.append(Problem(source, line, render_path(local), message, found))

    def name_of(self, path: KeyPath, seen_from: KeyPath) -> str:
        """``path`` as a reader of the file of ``seen_from`` finds it: ``fault[0]``, or
        ``fault[0] of base.toml:12`` when it was written in another file."""
        source, index, local = self.where(path)
        if source == self.where(seen_from)[0]:
            return render_path(local)
        line = index.line_of(local)
        return f"{render_path(local)} of {source}" + ("" if line is None else f":{line}")

    def bad(self, path: KeyPath, value: object, allowed: str) -> None:
        """``<path> = <value found>: <what is allowed>``"""
        self.report(path, allowed, show(value))

    def mark(self) -> int:
        """A point to ask :meth:`failed_since` about, once a builder has read its keys."""
        return len(self.problems)

    def failed_since(self, mark: int) -> bool:
        """Whether a problem was recorded after :meth:`mark` returned ``mark``."""
        return len(self.problems) > mark

    def too_deep(self, path: KeyPath, depth: int) -> bool:
        """Report ``path`` if it is nested deeper than the limit."""
        if depth > MAX_DEPTH:
            self.report(path, f"nested too deeply (at most {MAX_DEPTH} levels)")
            return True
        return False

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
        if value not in INT64:
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
        if isinstance(value, int) and value not in INT64:
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
            self.bad(path, value, f"a duration needs a unit, like '{show(value)}s'")
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
        self.bad(path, value, unknown(what, value, allowed))
        return None


def _limit(lo: float | None = None, hi: float | None = None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}"


def _parses(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


class Table:
    """One TOML table being read: each method checks one key and returns its value,
    ``default`` when the key is absent, or ``None`` when it is wrong (a problem is then
    recorded). ``required`` keys that are absent are reported as missing."""

    def __init__(self, ctx: Context, data: Mapping[str, object], path: KeyPath) -> None:
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
                self.ctx.report(self.at(key), unknown("key", key, allowed))

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

    def duration_or(self, key: str, word: str) -> int | str | None:
        """A duration > 0 in ns, or ``word`` itself (``"off"``, ``"forever"``) when that is
        what the file says; ``None`` when absent or wrong (reported, naming ``word``)."""
        value = self.get(key)
        if value is ABSENT:
            return None
        if value == word:
            return word
        if isinstance(value, str) and not _parses(value):
            self.ctx.bad(self.at(key), value, f"must be '{word}' or {DURATION_ALLOWED}")
            return None
        return self.ctx.duration(self.at(key), value, positive=True)

    def choose(self, key: str, kind: type[E], what: str, *, default: E | None = None) -> E | None:
        value = self.get(key)
        return default if value is ABSENT else self.ctx.choose(self.at(key), value, kind, what)

    def table(self, key: str, *, required: str | None = None) -> Table | None:
        value = self.get(key, required)
        if value is ABSENT:
            return None
        if not isinstance(value, dict):
            self.ctx.bad(self.at(key), value, "must be a table")
            return None
        return Table(self.ctx, value, self.at(key))

    def ordered(self, lo_key: str, lo: float | None, hi_key: str, hi: float | None) -> None:
        """Report ``lo_key`` when both bounds were given and ``lo > hi``."""
        if lo is not None and hi is not None and lo > hi:
            hi_text = show(self.data[hi_key])
            self.ctx.bad(self.at(lo_key), self.data[lo_key], f"must be <= {hi_key} ({hi_text})")


def json_value(ctx: Context, path: KeyPath, value: object, depth: int = 0) -> JSON:
    """A TOML value as JSON: date-times become ISO strings; NaN and infinities are errors."""
    if ctx.too_deep(path, depth):
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
        return [json_value(ctx, (*path, i), v, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: json_value(ctx, (*path, k), v, depth + 1) for k, v in value.items()}
    ctx.bad(path, value, "not a JSON value")  # pragma: no cover - tomllib makes no other type
    return None  # pragma: no cover
