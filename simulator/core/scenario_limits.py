"""What a scenario can hold: one rule for the loader and for what writes scenarios
(``sim learn``), so that a writer knows what it must shorten or write otherwise."""

from __future__ import annotations

from typing import Final

__all__ = ["INT64", "MAX_DEPTH", "MAX_LIST_LEN", "MAX_RATE_PER_S"]

#: The integers a scenario holds: TOML's, 64-bit signed.
INT64: Final = range(-(2**63), 2**63)
#: How deep fields and JSON values may nest: a top-level field is at 1; a member of an
#: object, the item of a list, a value of a choice or cycle, what ``const`` holds and
#: an element of an array or table value are each one deeper. (It keeps the loader's
#: recursion far from Python's limit.)
MAX_DEPTH: Final = 32
#: The longest list a ``list`` field makes.
MAX_LIST_LEN: Final = 10_000
#: Highest mean rate one stream may ask for (messages a second): beyond it no server
#: here keeps up.
MAX_RATE_PER_S: Final = 100_000
