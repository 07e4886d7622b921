"""Equality of JSON values, as JSON means it (used to match client messages and fields)."""

from __future__ import annotations


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
