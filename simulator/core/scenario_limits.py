"""What a scenario can hold: one rule for the loader and for what writes scenarios
(``sim learn``), so that a writer knows what it must shorten or write otherwise."""

from __future__ import annotations

from typing import Final

__all__ = ["INT64"]

#: The integers a scenario holds: TOML's, 64-bit signed.
INT64: Final = range(-(2**63), 2**63)
