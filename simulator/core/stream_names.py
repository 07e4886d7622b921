"""What a stream's name may be (docs/scenario-reference.md, ``[[stream]]``), and how a
name is made from a text that is not one (a recorded message type, an AsyncAPI
message's name): the one rule the scenario reader, ``sim learn`` and the AsyncAPI
importer share."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["STREAM_NAME", "stream_name_from", "unique_name"]

#: A whole stream name: letters, digits, ``_``, ``.``, ``:`` or ``-``.
STREAM_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_NOT_IN_STREAM_NAME: Final = re.compile(r"[^A-Za-z0-9_.:-]")


def stream_name_from(text: str, taken: set[str]) -> str:
    """A stream name made of ``text``: what a name cannot hold made ``_`` (``price
    update`` becomes ``price_update``; nothing left, ``stream``), then ``_2``, ``_3``...
    appended while it is in ``taken``. The caller adds it to ``taken``."""
    return unique_name(_NOT_IN_STREAM_NAME.sub("_", text) or "stream", taken)


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``... whichever is first not in ``taken``."""
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name
