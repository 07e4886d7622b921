"""bytes or str → TOML document: the first step of reading a scenario.

Problems found here concern the whole file (not text, not TOML, empty), so they stop
the reading at once, and carry no key path.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from typing import Final

from simulator.errors import Problem, ScenarioError

__all__ = ["TOP_TABLES", "parse_toml"]

_NOT_TEXT = re.compile("[\\x00\\ud800-\\udfff]")  # NUL, or a lone surrogate in a str
_UTF8_BOM: Final = b"\xef\xbb\xbf"


#: The top-level tables of a scenario or faults file: a table header that misspells one
#: gets a did-you-mean (the same names as ``document._TOP_KEYS``; a test checks it).
TOP_TABLES: Final = ("scenario", "server", "envelope", "protocol", "stream", "fault")


def parse_toml(
    data: str | bytes, source: str, tables: Sequence[str] = TOP_TABLES
) -> tuple[dict[str, object], str]:
    """The TOML document in ``data`` and its decoded text (for :mod:`.lines`).

    Raises :class:`ScenarioError` with one file-level problem when ``data`` is not UTF-8
    text, not TOML, or empty: nothing else can be checked then. When it is not TOML
    and a table header misspells one of ``tables`` (the top-level tables allowed), a
    did-you-mean for it comes first: ``[[streams]]`` followed by ``[stream.fields]``
    is the usual cause of tomllib's "Cannot overwrite a value".
    """

    def fail(line: int | None, message: str) -> ScenarioError:
        hints = _misspelt_headers(text, source, tables)
        return ScenarioError([*hints, Problem(source, line, "", message)])

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


# A table header ([name...] or [[name...]]) and its first key, when that key is bare.
# The key must end where a key ends (a dot or the closing bracket): "[scen\x1erio]" has
# no bare first key to correct, and is left to the TOML parser's own message.
_HEADER = re.compile(r"^[ \t]*(\[\[?)[ \t]*([A-Za-z0-9_-]+)(?=[ \t]*[.\]])[^\n]*$", re.MULTILINE)


def _misspelt_headers(text: str, source: str, tables: Sequence[str]) -> list[Problem]:
    """A did-you-mean for each header whose first key is close to, but not, one of
    ``tables`` (each name once, at its first line)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for m in _HEADER.finditer(text):
        name = m[2]
        if name in tables or name in seen:
            continue
        seen.add(name)
        close = difflib.get_close_matches(name, tables, n=1)
        if close:
            header = m[0].strip()
            if not header.isprintable():
                header = f"{m[1]}{name}{']' * len(m[1])}"
            meant = header.replace(name, close[0], 1)
            line = text.count("\n", 0, m.start()) + 1
            message = f"{header}: unknown table; did you mean {meant}?"
            problems.append(Problem(source, line, "", message))
    return problems


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
