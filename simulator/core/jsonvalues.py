"""JSON values as JSON means them: parsing that never raises, and equality.

Used to match client messages (request rules) and message fields (fault ``match``), and
by fault corruption.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

import orjson

#: What :func:`parse` returns for text that is not JSON, and a lookup for a missing key.
MISSING: Final = object()


def parse(payload: bytes | str) -> object:
    """The JSON value in ``payload``, or :data:`MISSING` when it is not JSON."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return MISSING


def json_equal(a: object, b: object) -> bool:
    """Unlike Python's ``==``: ``true`` is not ``1`` and ``false`` is not ``0``; numbers
    compare by value (``1`` equals ``1.0``); anything else must have the same type."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def json_key(value: object) -> Hashable:
    """A hashable stand-in for a parsed JSON ``value``: ``json_key(a) == json_key(b)``
    exactly when ``json_equal(a, b)``, so equal messages can be found by dict lookup.

    Raises ``RecursionError`` for values nested deeper than Python's recursion limit.
    """
    if isinstance(value, bool):
        return ("bool", value)  # tagged: True == 1 in Python, not in JSON
    if isinstance(value, int | float):
        return ("num", value)  # Python's == and hash agree that 1 and 1.0 are equal
    if isinstance(value, list):
        return ("list", tuple(json_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, json_key(v)) for k, v in value.items()))
    return (type(value).__name__, value)
