"""What the server did, as structured records: the one source for logs, the live
status, the library API and (later) recordings and the browser inspector.

Records are plain values; the CLI decides how to print them (plain lines, JSON, or
nothing). Listeners are called synchronously and must not block.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    LISTENING = "listening"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REJECTED = "rejected"  # handshake refused (limit reached)
    CLIENT_ERROR = "client_error"  # a bad frame from a client, answered with an error
    SLOW_CONSUMER = "slow_consumer"  # frames dropped for, or connection closed on, a slow reader
    LATE = "late"  # messages dropped: later than max_lateness when the server got to them
    RATE_LIMITED = "rate_limited"  # a client sent faster than allowed and was closed
    FAULT = "fault"  # a fault was injected (see simulator.net.faulting)
    STOPPING = "stopping"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. ``conn`` is the connection index, when there is one."""

    kind: EventKind
    wall: float  # Unix seconds
    conn: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind.value, "time": self.wall, "conn": self.conn, **self.detail}

    def as_text(self) -> str:
        who = f" conn={self.conn}" if self.conn is not None else ""
        rest = " ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind.value}{who} {rest}".rstrip()


Listener = Callable[[Event], None]


class EventLog:
    """The last ``maxlen`` events, plus listeners told of each new one."""

    def __init__(self, maxlen: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.records: deque[Event] = deque(maxlen=maxlen)
        self._listeners: list[Listener] = []
        self._clock = clock

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new event; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, kind: EventKind, conn: int | None = None, **detail: Any) -> Event:
        event = Event(kind, self._clock(), conn, detail)
        self.records.append(event)
        for listener in list(self._listeners):
            listener(event)
        return event

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [e for e in self.records if e.kind is kind]
