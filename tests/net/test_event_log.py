"""The server's event log: the newest ``maxlen`` events, kept encoded and decoded as
they were emitted."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from simulator.net.log import EVENTS_PER_CHUNK, Event, EventKind, EventLog

details = st.dictionaries(
    st.sampled_from(["code", "reason", "remote", "dropped", "path", "event", "time"]),
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    max_size=4,
)
emitted = st.lists(
    st.tuples(st.sampled_from(list(EventKind)), st.none() | st.integers(0, 10**6), details),
    max_size=60,
)


def log_of(maxlen: int) -> EventLog:
    ticks = itertools.count()
    return EventLog(maxlen, clock=lambda: 1.7e9 + next(ticks) / 8)


@given(st.integers(1, 30), emitted, st.integers(0, 80))
def test_the_log_reads_back_the_newest_events_as_they_were_emitted(
    maxlen: int, events: list[tuple[EventKind, int | None, dict[str, Any]]], n: int
) -> None:
    log = log_of(maxlen)
    sent = [log.emit(kind, conn, **detail) for kind, conn, detail in events]
    kept = sent[-maxlen:] if sent else []
    assert len(log) == len(kept)
    assert log.records == kept
    assert log.newest(n) == (kept[len(kept) - min(n, len(kept)) :])
    assert log.of_kind(EventKind.FAULT) == [e for e in kept if e.kind is EventKind.FAULT]


def test_a_long_log_keeps_its_last_maxlen_events_across_many_chunks() -> None:
    log = log_of(1000)
    for i in range(10 * EVENTS_PER_CHUNK + 7):
        log.emit(EventKind.CONNECTED, i, remote=f"127.0.0.1:{i}")
    records = log.records
    assert len(records) == len(log) == 1000
    assert [e.conn for e in records] == list(
        range(10 * EVENTS_PER_CHUNK + 7 - 1000, 10 * EVENTS_PER_CHUNK + 7)
    )
    assert records[-1].detail == {"remote": f"127.0.0.1:{10 * EVENTS_PER_CHUNK + 6}"}


def test_listeners_get_each_event_as_it_is_emitted() -> None:
    log = log_of(10)
    heard: list[Event] = []
    stop = log.listen(heard.append)
    first = log.emit(EventKind.LISTENING, url="ws://127.0.0.1:1/")
    stop()
    log.emit(EventKind.STOPPING)
    assert heard == [first]
