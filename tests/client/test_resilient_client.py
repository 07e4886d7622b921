"""Each promise of the reference resilient client (`simulator.client`), against the live
server with a fault that tests it, on the virtual clock: times are exact scenario
seconds, and every run is the same."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from simulator.client import (
    ClientConfig,
    ClientEvent,
    Duplicate,
    Gap,
    Message,
    OfflineQueueFull,
    Refused,
    ResilientClient,
    Retry,
    State,
    StateChanged,
)
from simulator.core.backoff import BackoffPolicy
from simulator.net.log import EventKind
from simulator.testing.harness import RunningSim, run_sim

POLICY = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=8.0, stable_s=5.0)
CONFIG = ClientConfig(backoff=POLICY, heartbeat_interval_s=1.0, heartbeat_timeout_s=1.0)


def feed(*faults: dict[str, Any], streams: tuple[str, ...] = ("tick",)) -> dict[str, Any]:
    """Streams sending a counter every 100 ms, plus ``faults``."""
    return {
        "scenario": {"name": "client-test", "seed": 11},
        "stream": [
            {"name": name, "every": "100ms", "fields": {"n": {"dist": "counter"}}}
            for name in streams
        ],
        **({"fault": list(faults)} if faults else {}),
    }


class Watch:
    """Everything a client reported."""

    def __init__(self, client: ResilientClient) -> None:
        self.events: list[ClientEvent] = []
        client.listen(self.events.append)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def states(self) -> list[State]:
        return [e.state for e in self.of(StateChanged)]


def client_of(sim: RunningSim, config: ClientConfig = CONFIG, **options: Any) -> ResilientClient:
    options.setdefault("seed", 0)  # every run the same
    return ResilientClient(sim.url, config=config, open_transport=sim.open_transport, **options)


def test_a_disconnected_client_reconnects_after_a_jittered_delay_within_the_first_window() -> None:
    """Closed with 1012 at 3 s (after 3 s open: not yet stable), the client waits a
    delay in [0, base) and is open again."""

    async def check(sim: RunningSim) -> tuple[list[Retry], list[State], int]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(4)
        await client.close()
        return watch.of(Retry), watch.states(), client.connections

    sc = feed({"name": "restart", "kind": "disconnect", "at": "3s", "code": 1012})
    retries, states, connections = run_sim(check, sc)
    [retry] = retries
    assert 0 <= retry.delay_s < POLICY.base_s
    assert "1012" in retry.reason
    assert connections == 2
    assert states[:4] == [State.CONNECTING, State.OPEN, State.BACKOFF, State.CONNECTING]


def test_a_server_that_accepts_then_closes_is_not_hammered_the_backoff_keeps_growing() -> None:
    """Every connection is closed with 1011 as soon as it opens: no connection is ever
    stable, so the attempt count never resets and the windows grow to the cap."""

    async def check(sim: RunningSim) -> list[Retry]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(60)
        await client.close()
        return watch.of(Retry)

    retries = run_sim(check, feed({"name": "flap", "kind": "disconnect", "code": 1011}))
    assert [r.attempt for r in retries] == list(range(len(retries)))
    for retry in retries:
        assert retry.delay_s <= POLICY.window_s(retry.attempt)
    # Over a minute, windows of 0.5, 1, 2, 4, 8, 8, ...: a handful of attempts, not thousands.
    assert 5 <= len(retries) <= 30


def test_a_policy_violation_close_stops_the_client_for_good() -> None:
    async def check(sim: RunningSim) -> tuple[State, str | None, int]:
        client = client_of(sim)
        await client.start()
        await sim.sleep(30)
        state, reason = client.state, client.stop_reason
        await client.close()
        return state, reason, client.connections

    sc = feed({"name": "kick", "kind": "disconnect", "at": "2s", "code": 1008})
    state, reason, connections = run_sim(check, sc)
    assert state is State.STOPPED and connections == 1
    assert reason is not None and "1008" in reason


def test_a_refused_first_connect_is_retried_and_retry_after_is_honoured() -> None:
    """Handshakes are refused with 503 and ``Retry-After: 3`` for the first 5 s: the
    client waits at least 3 s each time, then gets in."""

    async def check(sim: RunningSim) -> tuple[list[Retry], State, float | None]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(20)
        opened = [e.at for e in watch.of(StateChanged) if e.state is State.OPEN]
        await client.close()
        return watch.of(Retry), client.state, opened[0] if opened else None

    sc = feed(
        {
            "name": "busy",
            "kind": "reject",
            "status": 503,
            "retry_after": "3s",
            "window": {"start": "0s", "end": "5s"},
        }
    )
    retries, _, opened_at = run_sim(check, sc)
    assert retries and all(r.delay_s >= 3.0 for r in retries)
    assert all("503" in r.reason for r in retries)
    assert opened_at is not None and opened_at >= 5.0


def test_a_1013_close_whose_reason_says_retry_after_is_honoured_like_the_header() -> None:
    """Handshakes of the first 5 s are accepted, then closed at once with 1013
    ``retry-after=3`` (``respond = "close"``): the client waits at least 3 s each
    time, as for ``Retry-After: 3``, then gets in."""

    async def check(sim: RunningSim) -> tuple[list[Retry], float | None]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(20)
        opened = [e.at for e in watch.of(StateChanged) if e.state is State.OPEN]
        await client.close()
        # The first OPEN is of a connection closed at once: the one that stays is last.
        return watch.of(Retry), opened[-1] if opened else None

    sc = feed(
        {
            "name": "busy",
            "kind": "reject",
            "status": 503,
            "retry_after": "3s",
            "respond": "close",
            "window": {"start": "0s", "end": "5s"},
        }
    )
    retries, opened_at = run_sim(check, sc)
    refused = [r for r in retries if "1013" in r.reason]
    assert refused and refused == retries
    assert all(r.delay_s >= 3.0 for r in refused)
    assert opened_at is not None and opened_at >= 5.0


def test_a_1013_retry_after_is_capped_as_the_header_is() -> None:
    """``retry-after=30`` with ``retry_after_cap_s = 1``: the first wait is the cap plus
    the jitter of attempt 0 (below its 0.5 s window), not 30 s."""

    async def check(sim: RunningSim) -> list[Retry]:
        config = ClientConfig(
            backoff=BackoffPolicy(base_s=0.5, factor=2.0, cap_s=8.0, retry_after_cap_s=1.0)
        )
        client = client_of(sim, config)
        watch = Watch(client)
        await client.start()
        await sim.sleep(3)
        await client.close()
        return watch.of(Retry)

    sc = feed(
        {
            "name": "down",
            "kind": "outage",
            "at": "0s",
            "duration": "30s",
            "respond": "close",
        }
    )
    retries = run_sim(check, sc)
    assert retries[0].retry_after_s == 1.0
    assert 1.0 <= retries[0].delay_s < 1.5
    assert "1013" in retries[0].reason


def test_a_401_refusal_stops_the_client() -> None:
    async def check(sim: RunningSim) -> tuple[State, str | None]:
        client = client_of(sim)
        await client.start()
        await sim.sleep(10)
        return client.state, client.stop_reason

    sc = feed({"name": "auth", "kind": "reject", "status": 401})
    state, reason = run_sim(check, sc)
    assert state is State.STOPPED and reason is not None and "401" in reason


def test_a_stalled_connection_is_detected_within_interval_plus_timeout() -> None:
    """Half-open from 5 s (nothing sent, nothing read): the heartbeat drops it by
    5 + 1 + 1 s, and the client reconnects."""

    async def check(sim: RunningSim) -> tuple[list[StateChanged], int]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(12)
        await client.close()
        return watch.of(StateChanged), client.connections

    sc = feed({"name": "zombie", "kind": "stall", "at": "5s", "duration": "1h", "connections": [0]})
    changes, connections = run_sim(check, sc)
    left_open = next(e for e in changes if e.state is State.BACKOFF)
    assert 5.0 <= left_open.at <= 5.0 + 1.0 + 1.0 + 1e-6
    assert left_open.reason is not None and "heartbeat" in left_open.reason
    assert connections == 2


def test_the_client_never_has_two_live_sockets() -> None:
    """Through disconnects and resets, the server never sees this client open twice."""

    async def check(sim: RunningSim) -> int:
        client = client_of(sim)
        await client.start()
        peak = 0
        for _ in range(300):
            await sim.sleep(0.1)
            peak = max(peak, len(sim.server.clients))
        await client.close()
        return peak

    sc = feed(
        {"name": "kick", "kind": "disconnect", "every": "4s", "code": 1001},
        {"name": "cut", "kind": "reset", "every": "7s"},
    )
    assert run_sim(check, sc) == 1


def test_close_cancels_a_pending_reconnect_and_leaves_no_task_or_socket() -> None:
    async def check(sim: RunningSim) -> tuple[int, int, State]:
        client = client_of(sim)
        await client.start()
        await sim.sleep(3.2)  # disconnected at 3 s: now backing off (delay < 0.5 s)
        await client.close()
        await sim.sleep(30)  # a reconnect left pending would have happened by now
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return len(others), len(sim.server.clients), client.state

    sc = feed({"name": "restart", "kind": "disconnect", "at": "3s", "code": 1012})
    tasks, sockets, state = run_sim(check, sc)
    # The server's own tasks (its pump, its fault planner) are all that is left.
    assert sockets == 0 and state is State.STOPPED
    assert tasks <= 2


def test_after_a_reconnect_the_subscriptions_are_exactly_the_active_set() -> None:
    """Subscribed to a and b, then unsubscribed from b; after a reset the server holds
    exactly {a} for the new connection."""

    async def check(sim: RunningSim) -> tuple[frozenset[str] | None, set[str]]:
        client = client_of(sim, subscriptions=["a", "b"])
        watch = Watch(client)
        await client.start()
        await sim.sleep(1)
        client.unsubscribe("b")
        await sim.sleep(4)  # reset at 3 s, reconnected by 3.5 s
        [server_side] = sim.server.clients.values()
        got = {m.stream for m in watch.of(Message) if m.stream and m.at > 4.0}
        await client.close()
        return server_side.subscriptions, got

    sc = feed({"name": "cut", "kind": "reset", "at": "3s"}, streams=("a", "b", "c"))
    subs, streams = run_sim(check, sc)
    assert subs == frozenset({"a"})
    assert streams == {"a"}


def test_a_refused_stream_is_skipped_on_its_connection_and_asked_for_on_the_next() -> None:
    """``subscribe("b", "zzz")``: zzz is unknown here, so the server refuses the whole
    request; the client asks for b again alone, and keeps zzz in its set (another
    server, after a reconnect, may have it): refused again on the next connection,
    where b is still served. ``subscribe()`` with no names changes nothing."""

    async def check(sim: RunningSim) -> tuple[list[Refused], set[str] | None, list[Any]]:
        client = client_of(sim, subscriptions=["a"])
        watch = Watch(client)
        await client.start()
        await sim.sleep(1)
        client.subscribe("b", "zzz")
        client.subscribe()
        await sim.sleep(1.5)
        views = [served.subscriptions for served in sim.server.clients.values()]
        await sim.sleep(3)  # reset at 3 s, reconnected by 3.5 s
        views += [served.subscriptions for served in sim.server.clients.values()]
        await client.close()
        return watch.of(Refused), client.subscriptions, views

    sc = feed({"name": "cut", "kind": "reset", "at": "3s"}, streams=("a", "b", "c"))
    refused, subscriptions, views = run_sim(check, sc)
    assert [r.streams for r in refused] == [("zzz",), ("zzz",)]
    assert subscriptions == {"a", "b", "zzz"}
    assert views == [frozenset({"a", "b"}), frozenset({"a", "b"})]


def test_dropped_messages_are_reported_as_gaps_matching_the_fault_log() -> None:
    async def check(sim: RunningSim) -> tuple[list[Gap], list[int]]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(10)
        await client.close()
        dropped = [i.detail["seq"] for i in sim.injected if i.kind == "drop"]
        return watch.of(Gap), dropped

    sc = feed({"name": "lossy", "kind": "drop", "probability": 0.1})
    gaps, dropped = run_sim(check, sc)
    reported = [seq for gap in gaps for seq in range(gap.first, gap.last + 1)]
    assert dropped and reported == dropped


def test_duplicates_are_reported_and_delivered_once() -> None:
    async def check(sim: RunningSim) -> tuple[list[int], int]:
        client = client_of(sim)
        watch = Watch(client)
        await client.start()
        await sim.sleep(10)
        await client.close()
        seqs = [m.seq for m in watch.of(Message) if m.stream == "tick"]
        return seqs, len(watch.of(Duplicate))

    sc = feed({"name": "echo", "kind": "duplicate", "probability": 0.2})
    seqs, duplicates = run_sim(check, sc)
    assert seqs == sorted(set(seqs)) and duplicates > 0


def test_messages_sent_while_offline_go_out_once_in_order_on_the_next_connection() -> None:
    """Pings 1-3 are sent during an outage; the server answers each once, in order,
    after the client is back."""

    async def check(sim: RunningSim) -> list[int]:
        client = client_of(sim, config=ClientConfig(backoff=POLICY, heartbeat_interval_s=None))
        watch = Watch(client)
        await client.start()
        await sim.sleep(2.5)  # the outage began at 2 s
        assert client.state is not State.OPEN
        for n in (1, 2, 3):
            client.send(orjson.dumps({"type": "ping", "id": n}).decode())
        await sim.sleep(10)
        await client.close()
        return [
            m.data["id"]
            for m in watch.of(Message)
            if isinstance(m.data, dict) and m.data.get("type") == "pong"
        ]

    sc = feed({"name": "down", "kind": "outage", "at": "2s", "duration": "3s"})
    assert run_sim(check, sc) == [1, 2, 3]


def test_the_offline_queue_is_bounded() -> None:
    async def check(sim: RunningSim) -> None:
        client = client_of(sim, config=ClientConfig(queue_limit=2))
        client.send("a")
        client.send("b")
        with pytest.raises(OfflineQueueFull):
            client.send("c")

    run_sim(check, feed())


def test_the_same_seed_gives_the_same_run() -> None:
    async def check(sim: RunningSim) -> list[tuple[str, float]]:
        client = client_of(sim, seed=5)
        watch = Watch(client)
        await client.start()
        await sim.sleep(40)
        await client.close()
        return [(type(e).__name__, e.at) for e in watch.events if not isinstance(e, Message)]

    sc = feed(
        {"name": "flap", "kind": "disconnect", "every": "3s", "code": 1011},
        {"name": "cut", "kind": "reset", "every": "5s"},
    )
    assert run_sim(check, sc) == run_sim(check, sc)


def test_the_server_sees_the_preamble_first_on_every_connection() -> None:
    """The preamble (here a ping with an id) is re-sent on each connection, first."""

    async def check(sim: RunningSim) -> list[int]:
        login = orjson.dumps({"type": "ping", "id": 99}).decode()
        client = client_of(sim, preamble=[login])
        watch = Watch(client)
        await client.start()
        await sim.sleep(8)
        await client.close()
        connected = [e.conn for e in sim.server.log.records if e.kind is EventKind.CONNECTED]
        pongs = [
            m.data.get("id")
            for m in watch.of(Message)
            if isinstance(m.data, dict) and m.data.get("type") == "pong"
        ]
        assert len(connected) == 3
        return pongs

    sc = feed({"name": "kick", "kind": "disconnect", "every": "3s", "code": 1001})
    pongs = run_sim(check, sc)
    assert pongs.count(99) == 3
