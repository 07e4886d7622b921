"""Corrupted payloads for the ``corrupt`` fault: deterministic from the words given,
always valid UTF-8 (so they still go out as text frames) and never equal to the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import orjson

from simulator.core.jsonvalues import MISSING, parse
from simulator.core.model import CorruptMode


def corrupt(payload: bytes, mode: CorruptMode, w1: int, w2: int, w3: int) -> bytes:
    """``payload`` corrupted by ``mode``, chosen by the words: always valid UTF-8 (so it
    still goes out as a text frame) and always different from ``payload``."""
    if mode is CorruptMode.TRUNCATE:
        return _truncate(payload, w1)
    if mode is CorruptMode.WRONG_TYPES:
        return _wrong_types(payload, w1, w2)
    return _invalid_json(payload, w1, w2, w3)


def _is_char_start(byte: int) -> bool:
    return byte & 0xC0 != 0x80  # not a UTF-8 continuation byte


def _truncate(payload: bytes, w: int) -> bytes:
    """The first 1 .. len-1 bytes, cut back to a character boundary."""
    if len(payload) < 2:
        return b""
    k = 1 + w % (len(payload) - 1)
    while k > 0 and not _is_char_start(payload[k]):
        k -= 1
    return payload[:k]


def _unclosed(payload: bytes, w: int) -> bytes | None:
    """Without its last character (the closing brace of an object)."""
    body = payload.rstrip()
    if not body:
        return None
    k = len(body) - 1
    while k > 0 and not _is_char_start(body[k]):
        k -= 1
    return body[:k]


def _single_quote(payload: bytes, w: int) -> bytes | None:
    """One double quote made a single quote."""
    quotes = [i for i, b in enumerate(payload) if b == 0x22]
    if not quotes:
        return None
    i = quotes[w % len(quotes)]
    return payload[:i] + b"'" + payload[i + 1 :]


def _stray(payload: bytes, w: int) -> bytes | None:
    """A stray ``{``, ``,``, ``:`` or ``"`` inserted at a character boundary."""
    starts = [i for i, b in enumerate(payload) if _is_char_start(b)] + [len(payload)]
    i = starts[w % len(starts)]
    stray = b'{,:"'[(w >> 32) % 4 : (w >> 32) % 4 + 1]
    return payload[:i] + stray + payload[i:]


def _parses(payload: bytes) -> bool:
    return parse(payload) is not MISSING


def _invalid_json(payload: bytes, w1: int, w2: int, w3: int) -> bytes:
    """Broken JSON: one of three corruptions (chosen by ``w1``), the first that the
    message does not survive; a trailing NUL when none works (it never parses)."""
    forms = (_unclosed, _single_quote, _stray)
    first = w1 % len(forms)
    for j in range(len(forms)):
        out = forms[(first + j) % len(forms)](payload, w2 if j % 2 == 0 else w3)
        if out is not None and out != payload and not _parses(out):
            return out
    return payload + b"\x00"


def _wrong_types(payload: bytes, w1: int, w2: int) -> bytes:
    """Valid JSON in which one leaf value (chosen by ``w1``) has another type; a
    truncation when the payload is not JSON."""
    doc = parse(payload)
    if doc is MISSING:
        return _truncate(payload, w2)
    leaves = list(_leaves(doc, ()))
    path = leaves[w1 % len(leaves)]
    try:
        return orjson.dumps(_replace(doc, path))
    except orjson.JSONEncodeError:  # pragma: no cover - what orjson read it can write
        return _truncate(payload, w2)


def _leaves(doc: object, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Paths to every scalar and empty container, in document order."""
    if isinstance(doc, dict) and doc:
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list) and doc:
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _replace(doc: object, path: tuple[str | int, ...]) -> object:
    if not path:
        return _retype(doc)
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {k: (_replace(v, rest) if k == head else v) for k, v in doc.items()}
    assert isinstance(doc, list)
    return [_replace(v, rest) if i == head else v for i, v in enumerate(doc)]


def _retype(value: object) -> object:
    """The same value as another JSON type (see ``docs/faults.md``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return len(value)
        if not math.isfinite(number):
            return len(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if value is None:
        return "null"
    return {} if isinstance(value, list) else []
