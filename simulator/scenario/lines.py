"""Where each key of a TOML document is written: :class:`LineIndex`.

:mod:`tomllib` returns plain values with no positions, so error messages could not say
on which line a mistake is. This module scans the text a second time, after tomllib has
accepted it, and records the line of every key, table header and array element by its
key path, the same path the builders report problems at.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["BARE_KEY", "KeyPath", "LineIndex"]

KeyPath: TypeAlias = tuple[str | int, ...]
"""``("stream", 2, "fields", "cpu", "std")``: keys, and 0-based indexes into arrays."""

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
"""A key TOML lets you write without quotes."""


class LineIndex:
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
                m = BARE_KEY.match(s, self.i)
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
