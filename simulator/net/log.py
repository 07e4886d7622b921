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

import orjson


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


#: Events in one chunk of the log's memory, at most: under 257, so that a chunk's count
#: is one of CPython's cached small ints, not an object of its own.
EVENTS_PER_CHUNK = 256


class EventLog:
    """The last ``maxlen`` events, plus listeners told of each new one.

    The log keeps its events encoded, as JSON lines in chunks of
    :data:`EVENTS_PER_CHUNK`, and decodes them when read (:attr:`records`,
    :meth:`newest`): not as :class:`Event` objects. Each of those was four or five small
    objects, and the log's 4,000 lines about 2,000 clients that had come and gone, made
    among those clients' own objects, kept the allocator from freeing the 12 MB of
    arenas they had used (issue #13). A chunk is one buffer outside those arenas. What
    is read back is JSON: a tuple in ``detail`` comes back a list, any other object that
    is not JSON its ``str``; listeners get the event as emitted."""

    def __init__(self, maxlen: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.maxlen = maxlen
        self._chunks: deque[bytearray] = deque()  # oldest first
        self._counts: deque[int] = deque()  # events in each chunk
        self._held = 0  # events in all of them
        self._listeners: list[Listener] = []
        self._clock = clock

    def __len__(self) -> int:
        """How many events the log holds (at most ``maxlen``)."""
        return min(self._held, self.maxlen)

    @property
    def records(self) -> list[Event]:
        """The events held, oldest first (decoded anew on each read)."""
        return self.newest(self.maxlen)

    def newest(self, n: int) -> list[Event]:
        """The ``n`` newest events held, oldest first."""
        n = min(n, len(self))
        events: list[Event] = []
        for chunk, count in zip(reversed(self._chunks), reversed(self._counts), strict=True):
            if len(events) >= n:
                break
            lines = chunk.split(b"\n")[:-1]
            events[:0] = [_decode(line) for line in lines[max(0, count - (n - len(events))) :]]
        return events

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new event; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, kind: EventKind, conn: int | None = None, **detail: Any) -> Event:
        event = Event(kind, self._clock(), conn, detail)
        self._keep(orjson.dumps((kind.value, event.wall, conn, detail), default=str))
        for listener in list(self._listeners):
            listener(event)
        return event

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [e for e in self.records if e.kind is kind]

    def _keep(self, line: bytes) -> None:
        if not self._counts or self._counts[-1] == EVENTS_PER_CHUNK:
            self._chunks.append(bytearray())
            self._counts.append(0)
        self._chunks[-1] += line
        self._chunks[-1] += b"\n"
        self._counts[-1] += 1
        self._held += 1
        if self._held - self._counts[0] >= self.maxlen:  # the oldest chunk is not needed
            self._held -= self._counts.popleft()
            self._chunks.popleft()


def _decode(line: bytes | bytearray) -> Event:
    kind, wall, conn, detail = orjson.loads(line)
    return Event(EventKind(kind), wall, conn, detail)
