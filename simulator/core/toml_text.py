"""JSON-like values as TOML text, for the scenarios `sim new --from-asyncapi` and
`sim learn` write and the lines `sim validate` prints.

Only what a scenario needs: strings, integers, finite floats, booleans, arrays and
inline tables. ``None`` has no TOML form and is refused: a writer must decide what a
``null`` becomes, and say so.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final

__all__ = ["toml_key", "toml_value"]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """``cpu`` stays bare; ``"cpu load"`` is quoted."""
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # A JSON string literal is a TOML basic string: the same escapes (\" \\ \n \uXXXX...),
    # and json.dumps never writes the one JSON escape TOML lacks ("\/"). TOML also
    # wants DEL escaped, which JSON leaves as it is.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    """``value`` as one line of TOML; tables are inline (``{ a = 1, b = 'x' }``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no TOML form sim accepts")
        text = repr(value)
        return text if any(c in text for c in ".en") else f"{text}.0"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    raise ValueError(f"{value!r} has no TOML form")
