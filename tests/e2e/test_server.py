"""`serve()` on 127.0.0.1 with real websockets clients: feeds, protocol, limits, stop.

Every wait is bounded (each test runs inside ``asyncio.timeout``) and nothing asserts a
latency: counts get generous bounds, and absence is checked with a ping fence (what
the server sent before the pong) rather than with a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from simulator.core.timeline import Timeline
from simulator.net.common import on_whole_ms
from simulator.net.log import EventKind
from simulator.net.server import (
    CLIENT_BURST,
    CLIENT_ERROR_BURST,
    CLIENT_ERRORS_LOGGED,
    serve,
)
from simulator.storage.generate import Plan, recording_frames
from tests.e2e.conftest import (
    EPOCH_NS,
    S,
    async_test,
    client,
    close_code,
    connected,
    dashboard,
    expect_event,
    feed_until_pong,
    fence,
    iso,
    receive,
    receive_for,
    receive_until,
    reply_of_type,
    scenario,
    seqs_contiguous,
)

QUIET = """\
[scenario]
name = "quiet"
[server]
max_frame_bytes = 1024
[[stream]]
name = "tick"
every = "1h"
"""

TICK = """\
[scenario]
name = "tick"
seed = 3
[[stream]]
name = "tick"
every = "1s"
[stream.fields]
x = { dist = "normal", mean = 0, std = 1, round = 4 }
"""

# Varied fields and all three kinds of schedule; nothing before 20 s of scenario time,
# so a client connecting right after the server starts misses nothing.
IDENTITY = """\
[scenario]
name = "identity"
seed = 99
[server]
mode = "{mode}"
[[stream]]
name = "quote"
every = "100ms"
start = "{start}"
[stream.fields]
price = {{ dist = "walk", start = 80.0, step = 1.5, min = 0, round = 2 }}
id = {{ dist = "uuid" }}
at = {{ dist = "timestamp", format = "ms" }}
[[stream]]
name = "book"
every = {{ min = "50ms", max = "300ms" }}
start = "{start}"
[stream.fields]
levels = {{ list = {{ min = 0, max = 4 }}, item = {{ dist = "uniform", min = 1, max = 2 }} }}
side = {{ choice = ["buy", "sell"], weights = [3, 1] }}
[[stream]]
name = "trade"
rate = 5
start = "{start}"
[stream.fields]
qty = {{ dist = "randint", min = 1, max = 100 }}
label = {{ template = "trade {{seq}}" }}
"""


def slow_scenario(policy: str) -> str:
    pad = "x" * 4096
    return f"""\
[scenario]
name = "slow"
[server]
send_buffer_bytes = 16384
slow_consumer = "{policy}"
[[stream]]
name = "blob"
every = "1ms"
[stream.fields]
pad = "{pad}"
"""


def by_type(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        streams[m["type"]].append(m)
    return streams


def ms_between(a: str, b: str) -> int:
    delta = datetime.fromisoformat(b) - datetime.fromisoformat(a)
    return round(delta.total_seconds() * 1000)


def later(stamp: str, seconds: float) -> str:
    """The envelope timestamp ``seconds`` after ``stamp``."""
    when = datetime.fromisoformat(stamp) + timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------- feeds


@async_test()
async def test_dashboard_streams_arrive_at_their_declared_rates() -> None:
    """At speed 100, two seconds of wall time carry about 200 s of the dashboard feed."""
    async with serve(dashboard(), port=0, speed=100, epoch_ns=EPOCH_NS) as server:
        ws = await client(server.url)
        streams = by_type(await receive_for(ws, 2.0))
        await ws.close()

    # 200 s of scenario time: 40 system_stats (5 s), 20 dashboard_stats (10 s),
    # 28 energy_market (7 s). Lower bounds leave room for a stalled machine.
    counts = Counter({name: len(ms) for name, ms in streams.items()})
    assert 30 <= counts["system_stats"] <= 41, counts
    assert 15 <= counts["dashboard_stats"] <= 21, counts
    assert 21 <= counts["energy_market"] <= 29, counts
    assert 3 <= counts["notification"] <= 14, counts  # every 15-30 s
    assert 8 <= counts["transaction"] <= 41, counts  # every 5-15 s
    for name, ms in streams.items():
        assert seqs_contiguous([m["seq"] for m in ms]), name
    # Fixed intervals: message n of the stream is at exactly n intervals after the epoch.
    for name, interval in [("system_stats", 5), ("dashboard_stats", 10), ("energy_market", 7)]:
        for m in streams[name]:
            assert m["timestamp"] == iso(m["seq"] * interval * S), (name, m)
    for name, low, high in [("notification", 15_000, 30_000), ("transaction", 5_000, 15_000)]:
        stamps = [m["timestamp"] for m in streams[name]]
        gaps = [ms_between(a, b) for a, b in itertools.pairwise(stamps)]
        assert all(low <= g <= high for g in gaps), (name, gaps)


@async_test()
async def test_broadcast_client_receives_exactly_what_generate_renders() -> None:
    """A broadcast client there from the start gets generate's payloads, byte for byte."""
    sc = scenario(IDENTITY.format(mode="broadcast", start="20s"))
    k = 200
    async with serve(sc, port=0, seed=11, speed=20, epoch_ns=EPOCH_NS, log_sends=True) as server:
        index, ws = await connected(server)
        received = [await ws.recv(decode=False) for _ in range(k)]
        await ws.close()
        assert server.sent is not None
        logged = [s.payload for s in server.sent if s.conn == index][:k]

    plan = Plan.of(sc, duration_ns=60 * S, seed=11, connections=1, epoch_ns=EPOCH_NS)
    rendered = pl.concat(recording_frames(plan)).filter(pl.col("kind") == "text")
    expected = rendered["payload"].head(k).to_list()
    assert len(expected) == k
    assert received == expected
    assert logged == expected


@async_test()
async def test_per_connection_client_receives_its_own_timeline() -> None:
    """Connection i gets exactly Timeline(scope=i) from its own connect time."""
    sc = scenario(IDENTITY.format(mode="per-connection", start="0s"))
    k = 60
    received: dict[int, list[bytes]] = {}
    epochs: dict[int, int] = {}
    async with serve(sc, port=0, seed=11, speed=20) as server:
        sockets = []
        for _ in range(3):
            index, ws = await connected(server)
            epochs[index] = server.clients[index].epoch_ns
            sockets.append((index, ws))
        for index, ws in sockets:
            received[index] = [await ws.recv(decode=False) for _ in range(k)]
            await ws.close()

    assert sorted(received) == [0, 1, 2]
    for index, payloads in received.items():
        timeline = Timeline(sc, seed=11, scope=index, epoch_ns=epochs[index])
        assert payloads == timeline.take_until(60 * S).payloads[:k], index
    # Each connection draws its own values.
    assert received[0] != received[1] != received[2]


@async_test()
async def test_broadcast_late_joiner_sees_the_feed_from_now_on() -> None:
    """A client joining a running broadcast starts mid-stream and then misses nothing."""
    async with serve(scenario(TICK), port=0, speed=100) as server:
        first = await client(server.url)
        early = await receive_until(first, lambda m: m["seq"] >= 20)
        late = await client(server.url)
        joined = [await receive(late) for _ in range(20)]
        early += await receive_until(first, lambda m: m["seq"] >= joined[-1]["seq"])
        await first.close()
        await late.close()

    seqs = [m["seq"] for m in joined]
    assert seqs[0] > 1
    assert seqs_contiguous(seqs)
    assert seqs_contiguous([m["seq"] for m in early])
    by_seq = {m["seq"]: m for m in early}
    assert all(by_seq[m["seq"]] == m for m in joined)  # the same shared feed


# ----------------------------------------------------------------------------- protocol


@async_test()
async def test_subscription_filters_the_feed_until_star_restores_it() -> None:
    """subscribe narrows the feed to one type, unsubscribe silences it, "*" restores all."""
    async with serve(dashboard(), port=0, speed=100, epoch_ns=EPOCH_NS) as server:
        ws = await client(server.url)
        witness = await client(server.url)  # receives everything: our clock

        async def feed_for(virtual_s: int) -> list[dict[str, Any]]:
            """What ``ws`` receives over the next ``virtual_s`` seconds of scenario time."""
            feed, pong = await fence(ws, ping_id="start")
            end = later(pong["timestamp"], virtual_s)
            await receive_until(witness, lambda m: m["timestamp"] >= end)
            return feed + await feed_until_pong(ws, ping_id="end")

        await ws.send(json.dumps({"type": "subscribe", "streams": ["system_stats"]}))
        ack = await reply_of_type(ws, "subscribed")
        assert ack["streams"] == ["system_stats"]
        only = await feed_for(30)
        assert len(only) >= 5, only  # every 5 s
        assert {m["type"] for m in only} == {"system_stats"}

        await ws.send(json.dumps({"type": "unsubscribe", "streams": ["system_stats"]}))
        ack = await reply_of_type(ws, "unsubscribed")
        assert ack["streams"] == []
        assert await feed_for(30) == []

        await ws.send(json.dumps({"type": "subscribe", "streams": "*"}))
        ack = await reply_of_type(ws, "subscribed")
        assert ack["streams"] == sorted(s.type for s in server.scenario.streams)
        types = {m["type"] for m in await feed_for(30)}
        assert {"system_stats", "dashboard_stats", "energy_market"} <= types
        await ws.close()
        await witness.close()


@async_test()
async def test_subscribing_to_an_unknown_stream_is_refused_and_the_connection_stays_up() -> None:
    """An unknown stream name gets an error naming it; the subscriptions are unchanged."""
    async with serve(dashboard(), port=0, speed=100) as server:
        ws = await client(server.url)
        await ws.send(json.dumps({"type": "subscribe", "streams": ["system_stats", "weather"]}))
        error = await reply_of_type(ws, "error")
        assert error["error"] == "unknown_stream"
        assert "weather" in error["message"]
        assert ws.state is State.OPEN
        # Still subscribed to everything: the refused request changed nothing.
        feed = [await receive(ws) for _ in range(20)]  # over 30 s of scenario time
        assert {"system_stats", "dashboard_stats", "energy_market"} <= {m["type"] for m in feed}
        await ws.close()


@async_test()
async def test_ping_gets_a_pong_echoing_its_id() -> None:
    """{"type": "ping", "id": X} is answered with a pong carrying X and a timestamp."""
    async with serve(scenario(QUIET), port=0, epoch_ns=EPOCH_NS) as server:
        ws = await client(server.url)
        for ping_id in [7, "abc", {"nested": [1, None]}]:
            await ws.send(json.dumps({"type": "ping", "id": ping_id}))
            pong = await receive(ws)
            assert pong["type"] == "pong"
            assert pong["id"] == ping_id
            assert pong["timestamp"].startswith("2026-01-01T00:")
        await ws.send(json.dumps({"type": "ping"}))
        assert "id" not in await receive(ws)
        await ws.close()


@async_test()
async def test_request_rule_replies_with_the_request_fields_after_its_delay() -> None:
    """A matching request gets the rule's templated reply, after the rule's delay."""
    sc = scenario(
        QUIET
        + """
[[protocol.rule]]
name = "balance"
match = { type = "get_balance" }
delay = "20s"
[protocol.rule.reply]
type = "balance"
account = "{request.account}"
note = "for {request.account}"
at = "{now}"
"""
    )
    async with serve(sc, port=0, speed=20, epoch_ns=EPOCH_NS) as server:
        ws = await client(server.url)
        await ws.send(json.dumps({"type": "get_balance", "account": 42}))
        # 20 s of scenario time is 1 s of wall time at speed 20: the pong comes first.
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        first = await receive(ws)
        reply = await receive(ws)
        await ws.close()
    assert first == {"type": "pong", "timestamp": first["timestamp"], "id": 1}
    assert reply["type"] == "balance"
    assert reply["account"] == 42  # a whole-string reference keeps the JSON type
    assert reply["note"] == "for 42"
    # {now}: when it was sent, 20 s of scenario time after the request (it was the request time).
    sent_at = datetime.fromisoformat(reply["at"].replace("Z", "+00:00"))
    assert sent_at >= datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")) + timedelta(
        seconds=10
    )


BAD_FRAMES = [
    pytest.param('{"type": "ping"', "invalid_json", id="malformed-json"),
    pytest.param("[1, 2, 3]", "not_an_object", id="json-array"),
    pytest.param('"ping"', "not_an_object", id="json-string"),
    pytest.param("null", "not_an_object", id="json-null"),
    pytest.param('{"type": "launch"}', "unknown_type", id="unknown-type"),
    pytest.param('{"id": 1}', "unknown_type", id="no-type"),
    pytest.param('{"type": "subscribe", "streams": "tick"}', "bad_streams", id="bad-streams"),
    pytest.param(b'{"type": "ping"}', "binary_frame", id="binary-frame"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
@async_test()
async def test_bad_frame_gets_an_error_and_the_connection_stays_up(
    frame: str | bytes, code: str
) -> None:
    """A frame the server cannot use is answered with an error; the next ping still works."""
    async with serve(scenario(QUIET), port=0) as server:
        index, ws = await connected(server)
        logged = expect_event(server, EventKind.CLIENT_ERROR, conn=index, error=code)
        await ws.send(frame)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["error"] == code
        assert isinstance(error["message"], str) and error["message"]
        await logged
        assert await feed_until_pong(ws) == []
        assert server.stats().client_errors == 1
        await ws.close()


@async_test()
async def test_bad_frame_is_ignored_but_counted_when_errors_are_off() -> None:
    """With [protocol] errors = false a bad frame gets no reply but is still logged."""
    async with serve(scenario(QUIET + "[protocol]\nerrors = false\n"), port=0) as server:
        index, ws = await connected(server)
        logged = expect_event(server, EventKind.CLIENT_ERROR, conn=index, error="invalid_json")
        await ws.send("{not json")
        assert await feed_until_pong(ws) == []  # nothing but the pong
        await logged
        assert server.stats().client_errors == 1
        await ws.close()


@async_test()
async def test_frame_of_exactly_max_frame_bytes_is_accepted() -> None:
    """A message of exactly max_frame_bytes (1024) is read and answered."""
    async with serve(scenario(QUIET), port=0) as server:
        ws = await client(server.url)
        ping = json.dumps({"type": "ping", "id": 1, "pad": ""})
        ping = ping.replace('"pad": ""', '"pad": "' + "x" * (1024 - len(ping)) + '"')
        assert len(ping) == 1024
        await ws.send(ping)
        assert (await receive(ws))["type"] == "pong"
        await ws.close()


@async_test()
async def test_oversized_frame_closes_the_connection_with_1009() -> None:
    """A message over max_frame_bytes closes the connection with 1009 (message too big)."""
    async with serve(scenario(QUIET), port=0) as server:
        ws = await client(server.url)
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 1025}))
        assert await close_code(ws) == 1009


@async_test()
async def test_client_flooding_past_the_rate_limit_is_closed_with_1008() -> None:
    """A client sending far past the rate limit is closed with 1008; others keep receiving."""
    async with serve(scenario(TICK), port=0, speed=100) as server:
        bystander = await client(server.url)
        flooder_index, flooder = await connected(server)
        limited = expect_event(server, EventKind.RATE_LIMITED, conn=flooder_index)
        gone = expect_event(server, EventKind.DISCONNECTED, conn=flooder_index)
        before = await receive_until(bystander, lambda m: m["seq"] >= 5)
        ping = json.dumps({"type": "ping"})
        try:
            for _ in range(int(CLIENT_BURST * 5)):
                await flooder.send(ping)
        except ConnectionClosed:
            pass
        assert await close_code(flooder) == 1008
        await limited
        # The closing handshake completes: the server reads the client's echo of 1008
        # (rather than giving up after its close timeout and recording 1006).
        assert (await gone).detail["code"] == 1008
        after = await receive_until(bystander, lambda m: m["seq"] >= before[-1]["seq"] + 20)
        assert seqs_contiguous([m["seq"] for m in before + after])
        await bystander.close()


@async_test()
async def test_what_a_client_sent_during_a_stall_is_not_taken_for_a_flood() -> None:
    """A stall reads nothing: the client's messages of those 1.5 s (10 a second, half
    the message limit, near the frame limit) are read at once when it ends, and were
    charged to that instant, past the burst of 5 and the 12 frames a second: the client
    was closed with 1008 for what the fault did."""
    limits = "[server]\nmax_messages_per_s = 20\nmessage_burst = 5\nmax_frames_per_s = 12"
    sc = scenario(
        QUIET.replace("[server]", limits)
        + '[[fault]]\nname = "freeze"\nkind = "stall"\nat = "200ms"\nduration = "1500ms"\n'
    )
    async with serve(sc, port=0) as server:
        ws = await client(server.url)
        for n in range(25):  # 2.5 s
            await ws.send(json.dumps({"type": "ping", "id": n}))
            await asyncio.sleep(0.1)
        pongs = await receive_until(ws, lambda m: m.get("id") == 24)
        await ws.close()
        assert not server.log.of_kind(EventKind.RATE_LIMITED)
    assert [m["id"] for m in pongs if m["type"] == "pong"] == list(range(25))


@pytest.mark.parametrize(
    "limits",
    [
        "max_messages_per_s = 20\nmessage_burst = 5",  # the message limit
        "max_messages_per_s = 10000\nmax_frames_per_s = 12",  # the frame limit
    ],
    ids=["messages", "frames"],
)
@async_test()
async def test_the_allowance_for_a_stall_cannot_be_saved_for_a_flood(limits: str) -> None:
    """A client silent through the stall, flooding 2 s after it: the allowance for what
    a stall held back lasts a second, so the flood is one (it went unpunished)."""
    limits = "[server]\n" + limits
    sc = scenario(
        QUIET.replace("[server]", limits)
        + '[[fault]]\nname = "freeze"\nkind = "stall"\nat = "200ms"\nduration = "1500ms"\n'
    )
    async with serve(sc, port=0) as server:
        index, ws = await connected(server)
        gone = expect_event(server, EventKind.DISCONNECTED, conn=index)
        await asyncio.sleep(3.7)  # past the stall's end (1.7 s), and 2 s more
        with contextlib.suppress(ConnectionClosed):
            for n in range(30):
                await ws.send(json.dumps({"type": "ping", "id": n}))
        assert await close_code(ws) == 1008
        assert (await gone).detail["code"] == 1008


@async_test()
async def test_a_client_sending_garbage_gets_a_few_answers_and_log_lines_then_1008() -> None:
    """Invalid messages are answered up to CLIENT_ERROR_BURST at once; past it the client
    is closed with 1008. Only CLIENT_ERRORS_LOGGED are logged one by one; the rest are
    summed up when it disconnects."""
    async with serve(scenario(QUIET), port=0) as server:
        index, ws = await connected(server)
        logged: list[object] = []
        server.log.listen(lambda e: logged.append(e) if e.kind is EventKind.CLIENT_ERROR else None)
        gone = expect_event(server, EventKind.DISCONNECTED, conn=index)
        try:
            for _ in range(int(CLIENT_ERROR_BURST) * 10):
                await ws.send("{not json")
        except ConnectionClosed:
            pass
        replies = 0
        try:
            while True:
                message = json.loads(await ws.recv())
                assert message["error"] == "invalid_json"
                replies += 1
        except ConnectionClosed:
            pass
        assert ws.close_code == 1008 and ws.close_reason == "too many invalid messages"
        assert replies == CLIENT_ERROR_BURST
        disconnected = await gone
        assert len(logged) == CLIENT_ERRORS_LOGGED
        assert disconnected.detail["errors"] == CLIENT_ERROR_BURST + 1


@async_test()
async def test_burst_within_the_rate_limit_is_answered_in_full() -> None:
    """Half the allowed burst of pings, sent at once, all get their pongs."""
    async with serve(scenario(QUIET), port=0) as server:
        ws = await client(server.url)
        n = int(CLIENT_BURST / 2)
        for i in range(n):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        pongs = [await receive(ws) for _ in range(n)]
        assert [p["id"] for p in pongs] == list(range(n))
        assert ws.state is State.OPEN
        await ws.close()


# ----------------------------------------------------------------------------- slow consumers


async def paused_client(server: Any) -> tuple[int, Any]:
    """A client that stops reading: a small receive buffer and a paused transport."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    index, ws = await connected(server, sock=sock)
    ws.transport.pause_reading()
    return index, ws


@async_test(timeout=40)
async def test_slow_consumer_has_frames_dropped_while_a_reader_keeps_up() -> None:
    """drop-oldest: a client that stops reading loses frames; a reading one loses none."""
    sc = scenario(slow_scenario("drop-oldest"))
    async with serve(sc, port=0, speed=1) as server:
        slow_index, slow = await paused_client(server)
        dropping = expect_event(server, EventKind.SLOW_CONSUMER, conn=slow_index, action="dropped")
        reader_index, reader = await connected(server)  # max_queue=None: always reads
        await dropping
        # The feed goes on: 500 more messages (0.5 s) while the slow client drops frames.
        target = server.stats().messages_by_stream["blob"] + 500
        seqs = [m["seq"] for m in await receive_until(reader, lambda m: m["seq"] >= target)]
        assert server.clients[slow_index].frames_dropped > 0
        assert server.stats().frames_dropped == server.clients[slow_index].frames_dropped
        assert server.clients[reader_index].frames_dropped == 0
        assert slow_index in server.clients  # dropping, not closing
        assert seqs_contiguous(seqs)

        # Reading again, the slow client skips the dropped frames and catches up.
        slow.transport.resume_reading()
        target = server.stats().messages_by_stream["blob"]
        resumed = [m["seq"] for m in await receive_until(slow, lambda m: m["seq"] >= target)]
        assert not seqs_contiguous(resumed)
        await slow.close()
        await reader.close()


@async_test(timeout=40)
async def test_slow_consumer_is_closed_with_1013_under_the_close_policy() -> None:
    """close: a client that stops reading is closed with 1013; a reading one stays."""
    sc = scenario(slow_scenario("close"))
    async with serve(sc, port=0, speed=1) as server:
        slow_index, slow = await paused_client(server)
        closing = expect_event(server, EventKind.SLOW_CONSUMER, conn=slow_index, action="closed")
        gone = expect_event(server, EventKind.DISCONNECTED, conn=slow_index)
        reader_index, reader = await connected(server)  # max_queue=None: always reads
        await closing
        # Reading again within the close timeout, the client sees the server's close.
        slow.transport.resume_reading()
        assert await close_code(slow) == 1013
        assert slow.close_reason == "slow consumer"
        assert (await gone).detail["code"] == 1013
        assert server.stats().slow_closed == 1
        assert server.stats().frames_dropped == 0
        assert reader_index in server.clients
        assert server.clients[reader_index].frames_dropped == 0
        await reader.close()


# ----------------------------------------------------------------------------- limits, health


@async_test()
async def test_handshake_past_max_connections_is_refused_with_503() -> None:
    """With max_connections = 2, a third handshake gets HTTP 503 until a slot frees up."""
    sc = scenario(QUIET.replace("[server]", "[server]\nmax_connections = 2"))
    async with serve(sc, port=0) as server:
        first = await client(server.url)
        _, second = await connected(server)
        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert server.stats().rejected == 1
        assert len(server.log.of_kind(EventKind.REJECTED)) == 1

        gone = expect_event(server, EventKind.DISCONNECTED)
        await first.close()
        await gone
        third = await client(server.url)
        assert (await feed_until_pong(third)) == []
        await second.close()
        await third.close()


@async_test()
async def test_max_connections_holds_under_concurrent_handshakes() -> None:
    """Twenty simultaneous handshakes against max_connections = 2 admit exactly two."""
    sc = scenario(QUIET.replace("[server]", "[server]\nmax_connections = 2"))

    async def attempt(url: str) -> Any:
        try:
            return await client(url)
        except InvalidStatus as e:
            return e.response.status_code

    async with serve(sc, port=0) as server:
        results = await asyncio.gather(*(attempt(server.url) for _ in range(20)))
        admitted = [r for r in results if not isinstance(r, int)]
        assert len(admitted) == 2
        assert Counter(r for r in results if isinstance(r, int)) == {503: 18}
        for ws in admitted:
            await ws.close()


@async_test()
async def test_healthz_answers_200_with_json_on_the_websocket_port() -> None:
    """GET /healthz is answered with JSON status, even when connections are at the limit."""
    sc = scenario(QUIET.replace("[server]", "[server]\nmax_connections = 1"))
    async with serve(sc, port=0) as server:
        _, ws = await connected(server)
        url = f"http://127.0.0.1:{server.port}/healthz"

        def get() -> tuple[int, list[str], bytes]:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=10) as response:
                types = response.headers.get_all("Content-Type")
                return response.status, types, response.read()

        status, content_types, body = await asyncio.to_thread(get)
        assert status == 200
        assert content_types == ["application/json"]
        assert json.loads(body) == {
            "status": "ok",
            "scenario": "quiet",
            "connections": 1,
            "worker": 0,  # of `sim run --workers`: a lone server is worker 0 of 1
            "workers": 1,
        }
        await ws.close()


# ----------------------------------------------------------------------------- stop


@async_test()
async def test_leaving_serve_closes_every_client_with_1001() -> None:
    """Stopping the server closes each open connection with 1001 (going away)."""
    async with serve(scenario(TICK), port=0, speed=100) as server:
        sockets = [(await connected(server))[1] for _ in range(3)]
        for ws in sockets:
            await receive(ws)
        log = server.log
    assert [await close_code(ws) for ws in sockets] == [1001, 1001, 1001]
    assert [e.detail["code"] for e in log.of_kind(EventKind.DISCONNECTED)] == [1001] * 3
    assert len(log.of_kind(EventKind.STOPPING)) == 1


@async_test()
async def test_scenario_time_0_is_the_epoch_on_a_whole_millisecond_of_wall_time() -> None:
    """With no epoch given, the epoch is the wall time of scenario time 0, a whole
    millisecond, so a timestamp written in milliseconds is a message's scheduled time
    exactly (not up to 1 ms before it); per connection, each client's time 0 is a whole
    millisecond too; given the workers' shared origin, a server takes it as its epoch."""
    per_connection = TICK.replace("[[stream]]", '[server]\nmode = "per-connection"\n[[stream]]')
    async with serve(scenario(per_connection), port=0) as server:
        _, ws = await connected(server)
        scheduled_now = server.epoch_ns + server.virtual_ns()
        wall_now = time.time_ns()
        (conn,) = server.clients.values()
        await ws.close()
    assert server.epoch_ns % 1_000_000 == 0
    assert conn.epoch_ns % 1_000_000 == 0
    assert abs(wall_now - scheduled_now) < 50_000_000  # two clocks read one after the other
    origin = on_whole_ms(time.time_ns()) - 3 * S  # workers start their clocks after it
    async with serve(scenario(TICK), port=0, origin_wall_ns=origin) as server:
        assert server.epoch_ns == origin
        assert server.virtual_ns() >= 3 * S


@async_test()
async def test_live_values_over_real_sockets_are_each_clients_own() -> None:
    """Two real clients on 127.0.0.1: each is told two are connected, its own index, and
    how many messages it was sent before (its own count, from 0)."""
    sc = scenario(
        '[scenario]\nname = "live"\nseed = 3\n[[stream]]\nname = "s"\nevery = "100ms"\n'
        "[stream.fields]\n"
        'n = { live = "connected_clients" }\nme = { live = "connection" }\n'
        'before = { live = "messages_sent" }\nup = { live = "uptime_s" }\n'
    )
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        first, ws1 = await connected(server)
        second, ws2 = await connected(server)
        # From a message sent once both were connected on, each sees both.
        got = {
            index: [json.loads(await ws.recv()) for _ in range(30)][-10:]
            for index, ws in ((first, ws1), (second, ws2))
        }
        await ws1.close()
        await ws2.close()
    for index, messages in got.items():
        data = [m["data"] for m in messages]
        assert {d["n"] for d in data} == {2}
        assert {d["me"] for d in data} == {index}
        befores = [d["before"] for d in data]
        assert befores == list(range(befores[0], befores[0] + 10))
        assert all(b["up"] > a["up"] for a, b in itertools.pairwise(data))


@async_test()
async def test_a_pump_that_fails_stops_the_server_instead_of_serving_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the feed's pump is not swallowed: wait() returns, failure says what."""
    from simulator.net.fanout import Fanout

    def broken(self: Fanout, *args: Any) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(Fanout, "send", broken)
    async with serve(scenario(TICK), port=0, speed=100) as server:
        await asyncio.wait_for(server.wait(), 10)
        assert isinstance(server.failure, ValueError)
