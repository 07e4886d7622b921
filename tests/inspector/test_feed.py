"""``/events`` keeps its cost per flush, not per message: faults injected into messages
are merged per flush (kind, fault, connection, stream) with a count, a batch holds at most
``MAX_EVENTS_PER_FLUSH`` entries and counts what it left out, and the live status lists
the newest ``LIVE_CONNECTIONS`` connections only. Over real sockets where it matters."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.inspector import app as app_module
from simulator.inspector import attach
from simulator.inspector.feed import MAX_EVENTS_PER_FLUSH, Batch
from simulator.net.log import EventKind, EventLog
from simulator.net.server import serve
from tests.e2e.conftest import async_test, connected, scenario
from tests.inspector.http_client import EventReader


def message_fault(log: EventLog, kind: str, conn: int, seq: int, stream: str = "tick") -> None:
    log.emit(
        EventKind.FAULT, conn=conn, injected=kind, fault="lossy", t_ns=seq, stream=stream, seq=seq
    )


def test_faults_injected_into_messages_are_merged_per_flush_with_their_count() -> None:
    log, batch = EventLog(clock=lambda: 1.0), Batch()
    log.listen(batch.add)
    log.emit(EventKind.CONNECTED, conn=0)
    for seq in range(1, 101):
        message_fault(log, "drop", conn=seq % 2, seq=seq)
    message_fault(log, "duplicate", conn=0, seq=7)
    log.emit(EventKind.FAULT, conn=1, injected="disconnect", fault="bye", t_ns=0, code=1012)
    data = batch.take()
    assert data["left_out"] == 0
    events = data["events"]
    # In the order each first happened; a connection fault (no seq) stays one event.
    assert [(e["event"], e.get("injected"), e["conn"], e.get("count")) for e in events] == [
        ("connected", None, 0, None),
        ("fault", "drop", 1, 50),
        ("fault", "drop", 0, 50),
        ("fault", "duplicate", 0, 1),
        ("fault", "disconnect", 1, None),
    ]
    assert (events[1]["seq"], events[1]["last_seq"]) == (1, 99)
    assert batch.take() == {"events": [], "left_out": 0}  # taken: empty again


events_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("connected"), st.integers(0, 3), st.just(0)),
        st.tuples(
            st.sampled_from(["drop", "delay", "corrupt"]), st.integers(0, 700), st.integers(1, 9)
        ),
    ),
    max_size=2 * MAX_EVENTS_PER_FLUSH + 200,
)


@given(events_strategy)
def test_a_batch_is_bounded_and_accounts_for_every_event(
    events: list[tuple[str, int, int]],
) -> None:
    log, batch = EventLog(clock=lambda: 1.0), Batch()
    log.listen(batch.add)
    for kind, conn, seq in events:
        if kind == "connected":
            log.emit(EventKind.CONNECTED, conn=conn)
        else:
            message_fault(log, kind, conn, seq)
    data = batch.take()
    sent = data["events"]
    assert len(sent) <= MAX_EVENTS_PER_FLUSH
    # Every event is sent, merged into a count, or counted as left out.
    assert sum(e.get("count", 1) for e in sent) + data["left_out"] == len(events)
    merged = Counter((e["injected"], e["conn"], e["stream"]) for e in sent if "count" in e)
    assert all(n == 1 for n in merged.values())  # one event per key and flush


FAST_DROPS = scenario(
    """
    [scenario]
    name = "lossy"
    seed = 5

    [[stream]]
    name = "tick"
    every = "2ms"
    [stream.fields]
    n = { dist = "counter" }

    [[fault]]
    name = "lossy"
    kind = "drop"
    probability = 0.5
    """
)


@async_test()
async def test_events_carry_dropped_messages_as_counts_not_one_event_each() -> None:
    async with serve(FAST_DROPS, port=0) as server:
        attach(server)
        _, ws = await connected(server)
        events = await EventReader.open(server.url)
        total, batches = 0, 0
        while total < 300:
            data = await events.until("log")
            drops = [e for e in data["events"] if e.get("injected") == "drop"]
            assert len(drops) <= 1  # one connection, one stream: one merged event a flush
            total += sum(e["count"] for e in drops)
            batches += bool(drops)
        # Fewer events than messages dropped: they came merged, and each counted them.
        assert batches < total
        assert server.faults is not None and server.faults.counts["drop"] >= total
        events.close()
        await ws.close()


@async_test()
async def test_the_live_status_lists_the_newest_connections_and_counts_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "LIVE_CONNECTIONS", 2)
    async with serve(FAST_DROPS, port=0) as server:
        attach(server)
        sockets = [await connected(server) for _ in range(3)]
        events = await EventReader.open(server.url)
        status = await events.until("status", lambda d: d["connections_open"] == 3)
        assert [c["conn"] for c in status["connections"]] == [c for c, _ in sockets[1:]]
        assert status["connections_left_out"] == 1
        events.close()
        await asyncio.gather(*(ws.close() for _, ws in sockets))
