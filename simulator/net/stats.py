"""The live server's counters, and the snapshot of them that the status console and
the library API read."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import islice

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
    rejected: int
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    #: Messages not sent at all: later than max_lateness when the server got to them.
    late_dropped: int = 0


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
    lateness_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENESS_SAMPLES))

    def lateness_ms(self, newest: int | None = None) -> tuple[float | None, float | None]:
        """The median and 99th percentile of the recent lateness samples (of the
        ``newest`` of them only, if given: cheaper to compute), in ms."""
        samples = self.lateness_ns if newest is None else islice(reversed(self.lateness_ns), newest)
        lateness = np.fromiter(samples, dtype=np.int64)
        if not len(lateness):
            return None, None
        return float(np.percentile(lateness, 50)) / 1e6, float(np.percentile(lateness, 99)) / 1e6
