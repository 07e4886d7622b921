"""What a client of `sim run` may ask for in the query of the URL it connects to.

``?sim_batch=<duration>`` (at most :data:`MAX_BATCH_S`): its messages in batches that
far apart, each the messages that fell due since the last, in one write. Each arrival
costs a browser about the same however many messages it brings (~100 µs of its CPU at
1,000 msg/s), so the inspector page asks for 100 ms batches; a client under test asks
for nothing and gets each message when it is due. The ``sim_`` prefix keeps clear of
the query parameters a real feed's URL may carry (the rest are ignored).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from simulator.core.durations import ALLOWED, parse_duration

#: The longest batch a client may ask for.
MAX_BATCH_S = 1.0
#: The query parameter.
BATCH_PARAMETER = "sim_batch"


def batch_asked(path: str | None) -> float:
    """The batch interval, in seconds, that the request path ``path`` asks for (0: none).

    Raises :class:`ValueError` saying what is allowed when the value is not a duration
    from 0 to :data:`MAX_BATCH_S`."""
    if not path or "?" not in path:
        return 0.0
    values = parse_qs(urlsplit(path).query).get(BATCH_PARAMETER)
    if not values:
        return 0.0
    text = values[-1]
    try:
        seconds = parse_duration(text) / 1e9
    except ValueError:
        raise ValueError(
            f"{BATCH_PARAMETER}={text!r} is not {ALLOWED}; served without batches"
        ) from None
    if seconds > MAX_BATCH_S:
        raise ValueError(
            f"{BATCH_PARAMETER}={text!r} is over {MAX_BATCH_S:g}s; served without batches"
        )
    return seconds
