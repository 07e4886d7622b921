"""Durations written by people (``250ms``, ``5s``, ``1h30m``) as integer nanoseconds.

Integer nanoseconds everywhere in the core: sums of intervals stay exact, so a
timeline is the same whichever order its pieces are added in.
"""

from __future__ import annotations

import re

NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+")

ALLOWED = "a duration like '250ms', '5s', '2m', '1h30m' (units ns, us, ms, s, m, h, d)"


def parse_duration(text: str) -> int:
    """Return the duration ``text`` in nanoseconds.

    Raises :class:`ValueError` with a message naming what is allowed when ``text`` is
    not of the form ``<number><unit>`` repeated (``1h30m``, ``1.5s``). A bare ``0``
    means zero. The caller attaches file and key to the message.
    """
    s = text.strip()
    if s == "0":
        return 0
    if not _WHOLE.fullmatch(s):
        raise ValueError(f"{text!r} is not {ALLOWED}")
    total = 0
    for number, unit in _PART.findall(s):
        if "." in number:
            whole, frac = number.split(".")
            scale = NS_PER_UNIT[unit]
            total += int(whole) * scale + (int(frac) * scale) // 10 ** len(frac)
        else:
            total += int(number) * NS_PER_UNIT[unit]
    return total


def format_duration(ns: int) -> str:
    """Render ``ns`` compactly (``1h30m``, ``250ms``, ``7s``); inverse of :func:`parse_duration`
    for whole multiples of a unit."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns % 1_000_000_000 == 0:
        secs = ns // 1_000_000_000
        parts = []
        for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
            if secs >= size:
                parts.append(f"{secs // size}{unit}")
                secs %= size
        return sign + "".join(parts)
    for unit in ("ms", "us", "ns"):
        if ns % NS_PER_UNIT[unit] == 0:
            return f"{sign}{ns // NS_PER_UNIT[unit]}{unit}"
    return f"{sign}{ns}ns"  # pragma: no cover - the loop always ends on ns
