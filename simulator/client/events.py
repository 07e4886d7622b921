"""What the reference client tells its application: its state, and events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class State(enum.Enum):
    """Where the client is. ``BACKOFF`` waits before the next attempt; ``STOPPED`` is
    final (``close()`` was called, or the server said not to come back)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The client entered ``state``; ``delay_s`` and ``reason`` say why it backs off or
    stopped."""

    state: State
    at: float  # loop time
    delay_s: float | None = None
    reason: str | None = None
    event = "state"


@dataclass(frozen=True, slots=True)
class Message:
    """A message for the application. ``stream`` and ``seq`` are the envelope's ``type``
    and ``seq`` when it has them; ``data`` is the parsed JSON (``None`` if it was not
    JSON), ``raw`` the message as received."""

    at: float
    raw: str | bytes
    data: Any
    stream: str | None = None
    seq: int | None = None
    late: bool = False  # an older seq, reported missing before, arrived after all
    event = "message"


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages ``first`` to ``last`` (inclusive) of ``stream`` never arrived."""

    at: float
    stream: str
    first: int
    last: int
    event = "gap"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Message ``seq`` of ``stream`` arrived again; it was not delivered twice."""

    at: float
    stream: str
    seq: int
    event = "duplicate"


@dataclass(frozen=True, slots=True)
class Restarted:
    """``stream``'s count started again on a new connection: its first ``seq`` there is
    not above ``previous``, the highest seen before (a restarted server, a per-connection
    feed, another host behind a balancer). The client counts afresh from ``seq``; what
    the application derived from the old count (totals, the last seq) is stale."""

    at: float
    stream: str
    previous: int
    seq: int
    event = "restart"


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused to (un)subscribe ``streams``: it does not send them. They are
    skipped on this connection, and the rest of the set was asked for again if the
    refusal took it down with them. They stay in the active set (the next connection
    may reach a server that has them): unsubscribe them to stop asking."""

    at: float
    streams: tuple[str, ...]
    reason: str
    event = "refused"


@dataclass(frozen=True, slots=True)
class Retry:
    """The client will try again in ``delay_s`` (attempt ``attempt``, counting failures
    since the last stable connection) because of ``reason``; ``retry_after_s`` is what
    the server asked for (``Retry-After`` or a 1013's reason, capped), which the delay
    is drawn after."""

    at: float
    delay_s: float
    reason: str
    attempt: int
    retry_after_s: float | None = None
    event = "retry"


ClientEvent = StateChanged | Message | Gap | Duplicate | Restarted | Refused | Retry


def as_dict(event: ClientEvent) -> dict[str, Any]:
    """``event`` as a JSON-able dict with its ``event`` name (what ``sim connect
    --log-format json`` prints)."""
    fields: dict[str, Any] = {"event": event.event}
    for name in event.__slots__:
        value = getattr(event, name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, tuple):
            value = list(value)
        fields[name] = value
    return fields
