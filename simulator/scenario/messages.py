"""How key paths, values and names appear in a problem message: always on one line.

A value is shown the way TOML writes it (``-3``, ``'5s'``, ``[1, 2]``,
``{ min = '30s', max = '15s' }``), cut to :data:`SHOW_LIMIT` characters; a key path the
way a reader would look it up (``stream[2].fields."cpu load".std``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, time
from typing import Final

from simulator.scenario.lines import BARE_KEY, KeyPath

__all__ = ["SHOW_LIMIT", "names", "plain", "quote", "render_path", "show", "unknown"]

SHOW_LIMIT: Final = 60
"""Longest a shown value gets; a longer one is cut and ends in "…"."""


def render_path(path: KeyPath) -> str:
    """``("stream", 2, "fields", "a b")`` → ``stream[2].fields."a b"``."""
    out: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        else:
            text = _key(segment)
            out.append(f".{text}" if out else text)
    return "".join(out)


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else quote(key)


_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(key: str) -> str:
    """``a "b"`` → ``"a \\"b\\""``: a TOML basic string, escapes and all, on one line."""

    def esc(c: str) -> str:
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c.isprintable():
            return c
        return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"

    return '"' + "".join(esc(c) for c in key) + '"'


def show(value: object) -> str:
    """A value as the user wrote it, on one line of at most :data:`SHOW_LIMIT` characters."""
    text = ""
    # Pieces come lazily, so a huge or deeply nested value costs only what is shown.
    for piece in _pieces(value):
        text += piece
        if len(text) > SHOW_LIMIT:
            return text[: SHOW_LIMIT - 1] + "…"
    return text


def _pieces(value: object) -> Iterator[str]:
    if isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, str):
        yield repr(value[: SHOW_LIMIT + 1])  # one more than fits, so that it gets cut
    elif isinstance(value, int):
        yield _integer(value)
    elif isinstance(value, float):
        yield repr(value)  # nan, inf, 1e+16: how TOML writes them too
    elif isinstance(value, date | time):  # datetime is a date
        yield value.isoformat()
    elif isinstance(value, list):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item)
        yield "]"
    elif isinstance(value, dict):
        yield "{ " if value else "{"
        for i, (key, item) in enumerate(value.items()):
            yield f", {_key(key)} = " if i else f"{_key(key)} = "
            yield from _pieces(item)
        yield " }" if value else "}"
    else:  # pragma: no cover - tomllib makes nothing else
        yield type(value).__name__


def _integer(value: int) -> str:
    try:
        return repr(value)
    except ValueError:
        # Over 4300 decimal digits, which tomllib accepts only when written in hex
        # (or octal, binary): repr() refuses, hex() does not.
        return hex(value)


def plain(name: str) -> bool:
    """Whether ``name`` reads unambiguously unquoted in a list of names."""
    return bool(name) and name.isprintable() and not any(c in name for c in ' ,"{}')


def names(items: Iterable[str]) -> str:
    """``a, b, "c d"``"""
    return ", ".join(n if plain(n) else quote(n) for n in items)


def unknown(what: str, name: str, allowed: Sequence[str]) -> str:
    """``unknown distribution; did you mean 'normal'? (allowed: uniform, normal, ...)``"""
    close = difflib.get_close_matches(name, allowed, n=1) or [
        a for a in allowed if len(name) >= 3 and a.startswith(name)
    ]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (allowed: {names(allowed)})"
