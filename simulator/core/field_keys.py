"""The keys a table of fields reserves: one rule for the loader and for what writes
scenarios (`sim new --from-asyncapi`, `sim learn`).

In ``[stream.fields]``, a table holding one of :data:`GENERATOR_KEYS` is a generator
and any other table an object of fields (docs/scenario-reference.md, "Objects"). So an
object with a member named ``dist`` or ``list`` cannot be written as an object of
fields: only as a constant (or a choice of constants), whose tables may hold any key.
And in a nested object, a string or an array under a name close to a generator key
(``dsit = "normal"``, ``weight = "5kg"``) reads as a misspelt one: a writer that means
a field of that name writes it ``{ const = ... }``.
"""

from __future__ import annotations

import difflib
from typing import Final

__all__ = ["GENERATOR_KEYS", "TYPO_TARGETS", "close_generator_key"]

GENERATOR_KEYS: Final = ("dist", "choice", "cycle", "const", "template", "list", "expr", "live")
#: What a misspelt key in a nested object is compared with.
TYPO_TARGETS: Final = (*GENERATOR_KEYS, "weights", "item")


def close_generator_key(name: str) -> str | None:
    """The key of :data:`TYPO_TARGETS` that ``name`` is, or is close to (``dsit`` →
    ``dist``), else ``None``. The loader reports a string or an array under such a
    name in a nested object as a typo unless ``name`` is that key itself; a writer
    wraps such a value in ``{ const = ... }`` either way."""
    close = difflib.get_close_matches(name, TYPO_TARGETS, n=1, cutoff=0.75)
    return close[0] if close else None
