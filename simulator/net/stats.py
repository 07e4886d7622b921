"""The live server's counters, and the snapshot of them that the status console and
the library API read."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

LATENESS_SAMPLES = 100_000


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the server's counters (what the live status shows)."""

    uptime_s: float
    virtual_s: float
    connections_open: int
    connections_total: int
    messages_by_stream: dict[str, int]
    frames_sent: int
    frames_dropped: int
    slow_closed: int
    client_errors: int
    #: Handshakes refused because max_connections clients were connected, and only
    #: those: an outage's or a reject's refusals are faults_by_kind["handshake_refused"].
    rejected: int
    #: When the server handed each message to the send path, less its scheduled time
    #: (None before any): negative for those it sent early, by up to the pump's reach
    #: (0.8 ms, simulator.net.common.AHEAD_S). Lateness at the client is bench/'s.
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    #: Messages not sent at all: later than max_lateness when the server got to them.
    late_dropped: int = 0


class LatenessSamples:
    """The newest ``capacity`` lateness samples (ns), in one array allocated up front.

    Not a deque of ints: each sample was then an object of its own, left wherever the
    allocator had room at the time, and 100,000 of them, replaced one by one, kept the
    pools they sat in, hence their arenas, from being freed once the many connections
    allocated around them had gone (issue #13)."""

    __slots__ = ("_count", "_next", "_ring")

    def __init__(self, capacity: int = LATENESS_SAMPLES) -> None:
        self._ring = array("q", bytes(8 * capacity))
        self._next = 0  # where the next sample goes
        self._count = 0  # samples held (at most capacity)

    def __len__(self) -> int:
        return self._count

    def append(self, ns: int) -> None:
        ring, i = self._ring, self._next
        ring[i] = ns
        i += 1
        self._next = 0 if i == len(ring) else i
        if self._count < len(ring):
            self._count += 1

    def clear(self) -> None:
        """Forget every sample (to start a new measurement)."""
        self._next = self._count = 0

    def newest(self, n: int | None = None) -> np.ndarray:
        """The ``n`` newest samples (all without ``n``), oldest first, as a copy."""
        held = np.frombuffer(self._ring, dtype=np.int64)
        count = self._count if n is None else max(0, min(n, self._count))
        return np.take(held, np.arange(self._next - count, self._next), mode="wrap")


@dataclass
class Counters:
    """What the server counts as it goes (clients that have gone leave their frame
    counts here)."""

    connections_total: int = 0
    messages_by_stream: Counter[str] = field(default_factory=Counter)
    frames_dropped_closed: int = 0
    frames_sent_closed: int = 0
    slow_closed: int = 0
    client_errors: int = 0
    rejected: int = 0
    #: Messages dropped for being later than max_lateness, by stream.
    late_by_stream: Counter[str] = field(default_factory=Counter)
    #: How late each recent message was handed to the send path, in ns.
    lateness_ns: LatenessSamples = field(default_factory=LatenessSamples)

    def lateness_ms(self, newest: int | None = None) -> tuple[float | None, float | None]:
        """The median and 99th percentile of the recent lateness samples (of the
        ``newest`` of them only, if given: cheaper to compute), in ms."""
        lateness = self.lateness_ns.newest(newest)
        if not len(lateness):
            return None, None
        return float(np.percentile(lateness, 50)) / 1e6, float(np.percentile(lateness, 99)) / 1e6
