"""Each ``[[fault]]`` kind as a real websockets client on 127.0.0.1 sees it.

Message faults are checked against the pure planner: what a client receives must be
exactly what ``plan_faults(sc).connection(i).decide(...)`` says for the messages the
server routed to it (``server.sent``), and what ``server.injected`` reports. Timing is
only ever bounded on the safe side (a fault never happens early; a delayed message is
never less late than its delay); where an upper bound is needed it is generous.

Scenario time runs ``speed`` times faster than the wall clock, so ``at = "1s"`` at
``speed = 10`` happens 100 ms after the server starts.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidStatus,
)
from websockets.protocol import State

from simulator.core.faults import MessageDecision, plan_faults
from simulator.core.model import Scenario
from simulator.net.faulting import Injected
from simulator.net.log import EventKind
from simulator.net.server import SimServer, serve
from tests.e2e.conftest import (
    EPOCH_NS,
    S,
    async_test,
    client,
    connected,
    expect_event,
    receive_for,
    scenario,
)

MS = 1_000_000
TICK_NS = 100 * MS  # every stream below sends one message every 100 ms of scenario time


def toml(value: object) -> str:
    """``value`` as a TOML value (strings, numbers, booleans, arrays, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def fault(name: str, kind: str, **keys: object) -> str:
    """A ``[[fault]]`` table: ``fault("kick", "disconnect", at="2s", code=4001)``."""
    lines = ["[[fault]]", f"name = {toml(name)}", f"kind = {toml(kind)}"]
    lines += [f"{key} = {toml(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def feed(
    *faults: str, streams: tuple[str, ...] = ("tick",), start: str = "0s", seed: int = 7
) -> Scenario:
    """Streams sending a small object every 100 ms from ``start``, plus ``faults``.

    Message ``seq`` of each stream is at ``start + seq * 100ms`` of scenario time.
    """
    tables = "".join(
        f"""
        [[stream]]
        name = "{name}"
        every = "100ms"
        start = "{start}"
        [stream.fields]
        n = {{ dist = "randint", min = 0, max = 100000 }}
        label = {{ choice = ["alpha", "beta", "gamma"] }}
        """
        for name in streams
    )
    return scenario(f'[scenario]\nname = "faults"\nseed = {seed}\n{tables}\n{"".join(faults)}')


def seq_of(frame: str | bytes) -> int:
    seq: int = orjson.loads(frame)["seq"]
    return seq


def parses(frame: str | bytes) -> bool:
    try:
        orjson.loads(frame)
    except orjson.JSONDecodeError:
        return False
    return True


def is_fence(frame: str | bytes) -> bool:
    if not parses(frame):
        return False
    message = orjson.loads(frame)
    return (
        isinstance(message, dict) and message.get("type") == "pong" and message.get("id") == "fence"
    )


async def frames_until_fence(ws: ClientConnection) -> list[str]:
    """Raw frames (corrupt ones too) that arrived before the pong of a ping sent now.

    The pong is a reply, not a feed message, so message faults never hold it back: it
    comes after every frame the server had written to this client when it read the ping.
    """
    await ws.send(json.dumps({"type": "ping", "id": "fence"}))
    got: list[str] = []
    while not is_fence(frame := str(await ws.recv())):
        got.append(frame)
    return got


async def frames_until_closed(ws: ClientConnection) -> tuple[list[str], ConnectionClosed]:
    """Every frame until the connection ends, and the exception that ended it."""
    got: list[str] = []
    try:
        while True:
            got.append(str(await ws.recv()))
    except ConnectionClosed as closed:
        return got, closed


@dataclass(frozen=True, slots=True)
class Planned:
    """One message the server routed to a client, with the planner's decision on it."""

    stream: str
    seq: int
    payload: bytes
    decision: MessageDecision


def planned(server: SimServer, sc: Scenario, conn: int) -> list[Planned]:
    """What the planner decides for each message the server routed to ``conn``, in order."""
    assert server.sent is not None, "serve(..., log_sends=True) is needed"
    faults = plan_faults(sc, server.seed).connection(conn)
    out = []
    for sent in server.sent:
        if sent.conn == conn:
            seq = seq_of(sent.payload)
            d = faults.decide(sent.stream, seq, sent.payload, sent.t_ns)
            out.append(Planned(sent.stream, seq, sent.payload, d))
    return out


def injected(server: SimServer, kind: str, conn: int | None = None) -> list[Injected]:
    return [i for i in server.injected if i.kind == kind and (conn is None or i.conn == conn)]


def assert_reported(server: SimServer) -> None:
    """Every injected fault is also a ``fault`` event in the log and a count in the stats."""
    events = [e for e in server.log.records if e.kind is EventKind.FAULT]
    logged = [(e.detail["injected"], e.detail["fault"], e.conn, e.detail["t_ns"]) for e in events]
    assert logged == [(i.kind, i.fault, i.conn, i.t_ns) for i in server.injected]
    for event, record in zip(events, server.injected, strict=True):
        assert {k: event.detail[k] for k in record.detail} == record.detail
    assert server.stats().faults_by_kind == dict(Counter(i.kind for i in server.injected))


async def one_client_feed(
    sc: Scenario, *, speed: float, duration_s: float, seed: int | None = None
) -> tuple[SimServer, int, list[str]]:
    """Serve ``sc`` for ``duration_s`` of scenario time to one client; its raw frames."""
    async with serve(
        sc,
        port=0,
        seed=seed,
        speed=speed,
        duration_ns=int(duration_s * S),
        epoch_ns=EPOCH_NS,
        log_sends=True,
    ) as server:
        conn, ws = await connected(server)
        await server.wait()
        frames = await frames_until_fence(ws)
        await ws.close()
        assert_reported(server)
    return server, conn, frames


# A feed that starts 2 s in: 100 ms of wall time at speed 20 for the client to connect,
# so it sees every seq from 1. Then seq 1 .. 100, at 2.1 s .. 12 s (0.5 s of wall time).
LATE_START = "2s"
FEED_S = 12.05


def assert_saw_whole_feed(server: SimServer, conn: int, count: int = 100) -> None:
    """The server routed seq 1 .. ``count`` to ``conn``: it connected before the feed began."""
    seqs = [seq_of(s.payload) for s in server.sent or [] if s.conn == conn]
    assert seqs == list(range(1, count + 1)), (
        f"client connected late (first seqs routed to it: {seqs[:3]}): machine overloaded?"
    )


# ----------------------------------------------------------------------------- drop


DROP = fault("lossy", "drop", probability=0.3)


async def missing_seqs(seed: int) -> tuple[set[int], set[int], set[int]]:
    """Seqs missing at the client, dropped by the planner, reported as dropped."""
    sc = feed(DROP, start=LATE_START)
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S, seed=seed)
    assert_saw_whole_feed(server, conn)
    plan = planned(server, sc, conn)
    missing = {p.seq for p in plan} - {seq_of(f) for f in frames}
    dropped = {p.seq for p in plan if p.decision.drop}
    reported = {i.detail["seq"] for i in injected(server, "drop", conn)}
    return missing, dropped, reported


@async_test()
async def test_dropped_seqs_are_exactly_the_planners_and_the_same_for_the_same_seed() -> None:
    """A client misses exactly the seqs the planner drops, run after run; a new seed differs."""
    missing, dropped, reported = await missing_seqs(seed=7)
    again, _, _ = await missing_seqs(seed=7)
    other, other_dropped, _ = await missing_seqs(seed=8)

    assert 10 <= len(missing) <= 50  # p = 0.3 of 100
    assert missing == dropped == reported
    assert again == missing
    assert other == other_dropped != missing


# ----------------------------------------------------------------------------- duplicate, corrupt


@async_test()
async def test_duplicated_seqs_arrive_exactly_as_many_times_as_planned() -> None:
    """Each message arrives 1 + copies times, back to back, where the planner says."""
    sc = feed(
        fault("echo", "duplicate", probability=0.2, copies=2),
        start=LATE_START,
    )
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    plan = planned(server, sc, conn)

    expected = [p.payload.decode() for p in plan for _ in range(1 + p.decision.copies)]
    assert frames == expected
    duplicated = {p.seq for p in plan if p.decision.copies}
    assert duplicated and all(p.decision.copies == 2 for p in plan if p.seq in duplicated)
    assert {i.detail["seq"] for i in injected(server, "duplicate", conn)} == duplicated
    assert {s for s, n in Counter(seq_of(f) for f in frames).items() if n > 1} == duplicated


@async_test()
async def test_corrupted_frames_are_invalid_json_at_the_planned_seqs_and_the_rest_parse() -> None:
    """``invalid_json`` sends the planner's unparseable text in place of the planned seqs."""
    sc = feed(fault("garble", "corrupt", probability=0.2), start=LATE_START)
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    plan = planned(server, sc, conn)

    assert len(frames) == len(plan)  # nothing lost, nothing added, order kept
    corrupted = {p.seq for p in plan if p.decision.corrupt is not None}
    assert corrupted
    for p, frame in zip(plan, frames, strict=True):
        if p.seq in corrupted:
            assert p.decision.corrupt is not None
            assert frame.encode() == p.decision.corrupt != p.payload
            assert not parses(frame), frame
        else:
            assert frame.encode() == p.payload
            assert seq_of(frame) == p.seq
    assert {i.detail["seq"] for i in injected(server, "corrupt", conn)} == corrupted


# ----------------------------------------------------------------------------- delay


async def arrival_times(
    server: SimServer, ws: ClientConnection, count: int
) -> list[tuple[int, int]]:
    """``(seq, scenario time at arrival)`` of the next ``count`` messages, as they come."""
    got = []
    for _ in range(count):
        seq = seq_of(await ws.recv())
        got.append((seq, server.virtual_ns()))
    return got


@pytest.mark.parametrize("keep_order", [False, True])
@async_test()
async def test_delayed_messages_arrive_late_and_overtaken_unless_order_is_kept(
    keep_order: bool,
) -> None:
    """Every 20th message is 2 s late; without keep_order the next ones overtake it, with
    it they wait behind it and the order holds."""
    latency_ns = 2 * S
    sc = feed(fault("lag", "delay", latency="2s", every_nth=20, keep_order=keep_order), start="1s")
    # speed 10: a message every 10 ms of wall time, the delay is 200 ms of wall time.
    # The feed runs from 1.1 s to 5.9 s: seq 1 .. 49, of which 20 and 40 are delayed.
    async with serve(
        sc, port=0, speed=10, duration_ns=6 * S, epoch_ns=EPOCH_NS, log_sends=True
    ) as server:
        conn, ws = await connected(server)
        got = await arrival_times(server, ws, 49)
        await ws.close()
        assert_reported(server)

    assert_saw_whole_feed(server, conn, 49)
    planned_at = {seq_of(s.payload): s.t_ns for s in server.sent or [] if s.conn == conn}
    sent = sorted(planned_at)
    delayed = [seq for seq in sent if seq % 20 == 0]
    assert delayed == [20, 40]
    assert {i.detail["seq"] for i in injected(server, "delay", conn)} == set(delayed)
    assert all(i.detail["delay_ns"] == latency_ns for i in injected(server, "delay", conn))
    assert sorted(seq for seq, _ in got) == sent  # all arrive, once
    late = {seq: at - planned_at[seq] for seq, at in got}
    position = {seq: k for k, (seq, _) in enumerate(got)}
    for seq in delayed:
        assert late[seq] >= latency_ns, late[seq]
        # The neighbour before it was not delayed (generous: a 100 ms wall-clock hiccup).
        assert late[seq - 1] < latency_ns // 2, late[seq - 1]
        if keep_order:
            # Head-of-line blocking: the next one was held up behind it.
            assert late[seq + 1] >= latency_ns - TICK_NS, late[seq + 1]
        else:
            assert position[seq + 1] < position[seq]
    order = [seq for seq, _ in got]
    if keep_order:
        assert order == sent
    else:
        assert [s for s in order if s not in delayed] == [s for s in sent if s not in delayed]


# ----------------------------------------------------------------------------- reorder


def reordered(plan: list[Planned]) -> list[int]:
    """The arrival order the docs give: a held message goes out after the next ``hold``
    messages of the connection (or never, if they are not sent)."""
    order: list[int] = []
    held: list[list[int]] = []  # [messages still to wait for, seq]
    for p in plan:
        if p.decision.hold:
            held.append([p.decision.hold, p.seq])
            continue
        order.append(p.seq)
        for entry in held:
            entry[0] -= 1
        order.extend(seq for n, seq in held if n <= 0)
        held = [e for e in held if e[0] > 0]
    return order


@async_test()
async def test_reordered_message_arrives_after_the_next_depth_messages_as_planned() -> None:
    """A held message arrives after the next ``depth`` (3) messages sent, in exactly the
    places the planner's decisions give."""
    sc = feed(
        fault("shuffle", "reorder", depth=3, probability=0.1),
        start=LATE_START,
    )
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    plan = planned(server, sc, conn)
    got = [seq_of(f) for f in frames]

    held = [p.seq for p in plan if p.decision.hold]
    assert held and all(p.decision.hold == 3 for p in plan if p.decision.hold)
    assert got == reordered(plan)
    for seq in (s for s in held if s in got):  # the last ones may be lost as the feed ends
        overtaken_by = [s for s in got[: got.index(seq)] if s > seq]
        assert len(overtaken_by) >= 3, (seq, overtaken_by)
    assert {i.detail["seq"] for i in injected(server, "reorder", conn)} == set(held)


@async_test()
async def test_message_both_delayed_and_held_back_is_still_delayed() -> None:
    """Every 10th message is both delayed by 1 s and held for one message: it arrives at
    least 1 s late (the decision says: delay it, then hold it back)."""
    sc = feed(
        fault("lag", "delay", latency="1s", every_nth=10),
        fault("swap", "reorder", depth=1, every_nth=10),
        start="1s",
    )
    async with serve(
        sc, port=0, speed=10, duration_ns=6 * S, epoch_ns=EPOCH_NS, log_sends=True
    ) as server:
        conn, ws = await connected(server)
        got: list[tuple[int, int]] = []  # seq 10 at 2 s and 20 at 3 s are due by 4.1 s
        while not {10, 20} <= {seq for seq, _ in got}:
            got += await arrival_times(server, ws, 1)
        await ws.close()
        assert_reported(server)

    decision = plan_faults(sc).connection(conn).decide("tick", 10, b"{}", 2 * S)
    assert (decision.delay_ns, decision.hold) == (S, 1)
    planned_at = {seq_of(s.payload): s.t_ns for s in server.sent or [] if s.conn == conn}
    late = {seq: at - planned_at[seq] for seq, at in got}
    for seq in (10, 20):
        assert late[seq] >= S, f"seq {seq} arrived {late[seq] / MS:.0f} ms late, not >= 1000 ms"


# ----------------------------------------------------------------------------- burst_loss


def runs(seqs: set[int]) -> list[int]:
    """Lengths of the runs of consecutive numbers in ``seqs``."""
    lengths: list[int] = []
    for seq in sorted(seqs):
        if seq - 1 in seqs:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


@async_test()
async def test_burst_loss_loses_the_planned_seqs_in_runs() -> None:
    """Losses with burst = 4 come in runs (mean length well above the ~1.4 of independent
    drops at the same rate), and they are exactly the planner's."""
    sc = feed(
        fault("fade", "burst_loss", loss=0.3, burst=4),
        start=LATE_START,
    )
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    plan = planned(server, sc, conn)
    missing = {p.seq for p in plan} - {seq_of(f) for f in frames}

    assert missing == {p.seq for p in plan if p.decision.drop}
    assert {i.detail["seq"] for i in injected(server, "drop", conn)} == missing
    assert all(i.fault == "fade" for i in injected(server, "drop", conn))
    lengths = runs(missing)
    assert 10 <= len(missing) <= 60, len(missing)
    assert sum(lengths) / len(lengths) >= 2.0, lengths
    assert max(lengths) >= 4, lengths


# ----------------------------------------------------------------------------- disconnect, reset


@async_test()
async def test_disconnect_closes_with_the_code_and_reason_at_the_planned_time() -> None:
    """At 2 s the client gets a close frame 4001 'session expired', after the feed up to then."""
    sc = feed(fault("kick", "disconnect", at="2s", code=4001, reason="session expired"))
    async with serve(sc, port=0, speed=5, epoch_ns=EPOCH_NS) as server:
        conn, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        assert_reported(server)

    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "session expired")
    assert ws.close_code == 4001
    [record] = injected(server, "disconnect", conn)
    assert 2 * S - MS <= record.t_ns < 3 * S, record  # never early; late by < 200 ms of wall
    last = seq_of(frames[-1]) * TICK_NS
    assert 1500 * MS <= last <= record.t_ns  # the feed ran up to the close, not past it


@async_test()
async def test_reset_ends_the_connection_with_1006_and_no_close_frame() -> None:
    """A reset drops TCP: the client sees an abnormal closure (1006) and no close frame."""
    sc = feed(fault("rst", "reset", at="1s"))
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        conn, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        assert_reported(server)

    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None
    assert ws.close_code == 1006
    assert frames  # it was fed until then
    [record] = injected(server, "reset", conn)
    assert record.t_ns >= S - MS


# ----------------------------------------------------------------------------- stall


async def no_pong_within(ws: ClientConnection, seconds: float) -> bool:
    pong_waiter = await ws.ping()
    try:
        await asyncio.wait_for(pong_waiter, seconds)
    except TimeoutError:
        return True
    return False


@async_test()
async def test_stalled_connection_is_silent_and_answers_no_ping_then_resumes_with_a_gap() -> None:
    """From 1 s to 6 s nothing arrives and a WebSocket ping gets no pong, though TCP stays
    open; then the feed resumes, the stall's messages missing."""
    sc = feed(fault("freeze", "stall", at="1s", duration="5s"))
    # speed 5: the stall lasts from 0.2 s to 1.2 s of wall time.
    async with serve(sc, port=0, speed=5, epoch_ns=EPOCH_NS) as server:
        stalled = expect_event(server, EventKind.FAULT, injected="stall")
        conn, ws = await connected(server)
        await stalled
        # A client-side heartbeat: the pong does not come within 0.5 s (ends by 0.7 s).
        assert await no_pong_within(ws, 0.5)
        assert ws.protocol.state is State.OPEN  # no FIN, no RST: half-open
        assert server.clients[conn].open
        seqs: list[int] = []
        while not seqs or seqs[-1] * TICK_NS < 7 * S:  # until the feed is well past the stall
            seqs.append(seq_of(await ws.recv()))
        await ws.close()
        assert_reported(server)

    [start] = injected(server, "stall", conn)
    [end] = injected(server, "stall_end", conn)
    assert start.t_ns >= S - MS and end.t_ns >= 6 * S - MS
    during = [s for s in seqs if S < s * TICK_NS < 6 * S]
    assert during == [], during
    before = [s for s in seqs if s * TICK_NS <= S]
    after = [s for s in seqs if s * TICK_NS >= 6 * S]
    assert before and after[0] - before[-1] >= 50  # the gap: seq 10 .. 60 or so
    assert after == list(range(after[0], after[0] + len(after)))  # resumed, contiguous


@pytest.mark.parametrize(
    ("stalls", "silent_until_s"),
    [
        # 1-3 s and 2-5 s: silent from 1 s to 5 s.
        ([{"at": "1s", "duration": "2s"}, {"at": "2s", "duration": "3s"}], 5),
        # for ever from 1 s, and 2-3 s: silent from 1 s on.
        ([{"at": "1s"}, {"at": "2s", "duration": "1s"}], 6),
    ],
    ids=["finite", "forever"],
)
@async_test()
async def test_overlapping_stalls_keep_the_connection_silent_until_the_last_one_ends(
    stalls: list[dict[str, object]], silent_until_s: int
) -> None:
    """While any stall is in force nothing arrives: the first one ending does not lift
    another that is still on."""
    sc = feed(*(fault(f"stall-{i}", "stall", **keys) for i, keys in enumerate(stalls)))
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        conn, ws = await connected(server)
        # Until 6 s of scenario time (0.6 s of wall time at speed 10).
        seqs = [m["seq"] for m in await receive_for(ws, 0.6)]
        ws.transport.abort()  # as a client that detected a dead peer would
        assert_reported(server)

    assert [i.fault for i in injected(server, "stall", conn)] == ["stall-0", "stall-1"]
    assert seqs and seqs[0] * TICK_NS < S  # fed until the first stall
    during = [s for s in seqs if S < s * TICK_NS < silent_until_s * S]
    assert during == [], f"messages planned at 1-{silent_until_s} s arrived: seq {during}"


# Throttles: tests/net/test_faults_on_virtual_time.py (their effect is a matter of seconds).


# ----------------------------------------------------------------------------- outage, reject


@async_test()
async def test_outage_drops_clients_refuses_handshakes_with_503_then_recovers() -> None:
    """Outage 1-4 s: both open clients are reset (1006); a handshake then gets 503 and
    Retry-After: 3; one made after waiting Retry-After is accepted and fed."""
    speed = 5.0
    sc = feed(fault("down", "outage", at="1s", duration="3s"))
    async with serve(sc, port=0, speed=speed, epoch_ns=EPOCH_NS) as server:
        sockets = dict([await connected(server), await connected(server)])
        for ws in sockets.values():
            frames, closed = await frames_until_closed(ws)
            assert frames
            assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
            assert ws.close_code == 1006

        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "3"

        # A good client honours Retry-After (scenario seconds: wall time is / speed).
        await asyncio.sleep(int(response.headers["Retry-After"]) / speed + 0.05)
        again, ws = await connected(server)
        message = orjson.loads(await ws.recv())
        await ws.close()
        assert_reported(server)

    assert (sorted(sockets), again) == ([0, 1], 3)  # numbered by handshake attempt
    assert message["seq"] * TICK_NS >= 4 * S
    [outage] = injected(server, "outage")
    assert outage.detail["connections"] == 2 and outage.t_ns >= S - MS
    [refusal] = injected(server, "handshake_refused")
    assert refusal.conn == 2
    assert (refusal.detail["status"], refusal.detail["retry_after_s"]) == (503, 3)


@pytest.mark.parametrize(
    ("status", "retry_after", "header"),
    [(401, None, None), (403, None, None), (429, "10s", "10"), (503, "2500ms", "3")],
)
@async_test()
async def test_reject_refuses_handshakes_with_its_status_and_retry_after(
    status: int, retry_after: str | None, header: str | None
) -> None:
    """With after_connections = 1 and limit = 2, attempts 1 and 2 are refused with the
    status (and Retry-After in whole seconds, rounded up); attempts 0 and 3 get in."""
    extra = {} if retry_after is None else {"retry_after": retry_after}
    sc = feed(fault("gate", "reject", status=status, after_connections=1, limit=2, **extra))
    async with serve(sc, port=0, speed=1, epoch_ns=EPOCH_NS) as server:
        first, ws0 = await connected(server)
        responses = []
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                await client(server.url)
            responses.append(refused.value.response)
        last, ws3 = await connected(server)
        await ws0.close()
        await ws3.close()
        assert_reported(server)

    assert (first, last) == (0, 3)
    for response in responses:
        assert response.status_code == status
        assert response.headers.get("Retry-After") == header
    refusals = injected(server, "handshake_refused")
    assert [r.conn for r in refusals] == [1, 2]
    assert all(r.detail["status"] == status for r in refusals)


@async_test()
async def test_reject_with_a_delay_holds_the_handshake_at_least_that_long() -> None:
    """``delay = "2s"`` at speed 4: the handshake takes at least 0.5 s of wall time."""
    sc = feed(fault("slowgate", "reject", delay="2s", limit=1))
    async with serve(sc, port=0, speed=4, epoch_ns=EPOCH_NS) as server:
        loop = asyncio.get_running_loop()
        began = loop.time()
        conn, ws = await connected(server)
        took = loop.time() - began
        await ws.close()
        assert_reported(server)

    assert conn == 0
    assert took >= 0.5 - 0.01, took
    [record] = injected(server, "handshake_delayed")
    assert record.detail["delay_ns"] == 2 * S and record.detail["status"] is None


# ----------------------------------------------------------------------------- mass_disconnect


@async_test()
async def test_mass_disconnect_closes_every_client_at_once_with_its_code() -> None:
    """At 2 s all three clients get close 1012 'restarting', after the same last message."""
    sc = feed(fault("deploy", "mass_disconnect", at="2s", code=1012, reason="restarting"))
    async with serve(sc, port=0, speed=5, epoch_ns=EPOCH_NS) as server:
        sockets = [(await connected(server))[1] for _ in range(3)]
        ends = await asyncio.gather(*(frames_until_closed(ws) for ws in sockets))
        assert_reported(server)

    for _, closed in ends:
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (1012, "restarting")
    # One callback closed them all: the feed stopped for everyone at the same message.
    assert len({seq_of(frames[-1]) for frames, _ in ends}) == 1
    [record] = injected(server, "mass_disconnect")
    assert record.detail == {"code": 1012, "connections": 3}
    assert record.t_ns >= 2 * S - MS


@async_test()
async def test_mass_disconnect_in_a_window_also_closes_clients_that_open_during_it() -> None:
    """Window 1-3 s: the client open at 1 s is closed, one opening at ~1.5 s is closed as
    it opens, one opening after 3 s stays up."""
    speed = 10.0
    sc = feed(fault("drain", "mass_disconnect", window={"start": "1s", "end": "3s"}, code=4002))
    async with serve(sc, port=0, speed=speed, epoch_ns=EPOCH_NS) as server:
        _, early = await connected(server)
        _, closed_early = await frames_until_closed(early)
        _, during = await connected(server)
        _, closed_during = await frames_until_closed(during)
        # Wait for the end of the window: 3 s of scenario time.
        await asyncio.sleep((3 * S - server.virtual_ns()) / S / speed + 0.02)
        after_conn, after = await connected(server)
        await frames_until_fence(after)  # answering
        assert after.protocol.state is State.OPEN
        await after.close()
        assert_reported(server)

    for closed in (closed_early, closed_during):
        assert closed.rcvd is not None and closed.rcvd.code == 4002
    records = injected(server, "mass_disconnect")
    assert [r.detail["connections"] for r in records] == [1, 1]
    assert all(S - MS <= r.t_ns < 3 * S for r in records)
    assert after_conn == 2


# ----------------------------------------------------------------------------- targeting


@async_test()
async def test_message_faults_on_one_stream_never_touch_another() -> None:
    """Drops, copies, corruption and reordering on stream a leave stream b exactly whole."""
    kinds = ("drop", "duplicate", "corrupt", "reorder")
    faults = [fault(kind, kind, streams=["a"], probability=0.2) for kind in kinds]
    sc = feed(*faults, streams=("a", "b"), start=LATE_START)
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)

    b = [orjson.loads(f) for f in frames if parses(f) and orjson.loads(f)["type"] == "b"]
    sent_b = [seq_of(s.payload) for s in server.sent or [] if s.conn == conn and s.stream == "b"]
    assert [m["seq"] for m in b] == sent_b  # every b message, once, in order
    hit = [i for i in server.injected if i.conn == conn]
    assert {i.kind for i in hit} == {"drop", "duplicate", "corrupt", "reorder"}
    assert {i.detail["stream"] for i in hit} == {"a"}
    # Corrupt text (unparseable, so of no visible stream) is only ever a's.
    corrupt_a = {p.decision.corrupt for p in planned(server, sc, conn) if p.stream == "a"}
    assert {f.encode() for f in frames if not parses(f)} <= corrupt_a - {None}


@pytest.mark.parametrize(
    ("target", "hit"),
    [
        ({"connections": [1]}, {1}),
        ({"after_connections": 2}, {2, 3}),
        ({"connections": {"every": 2}}, {1, 3}),
    ],
)
@async_test()
async def test_message_fault_hits_only_its_target_connections(
    target: dict[str, object], hit: set[int]
) -> None:
    """A drop-everything fault with a connection target: those connections get no feed,
    the others get all of it."""
    sc = feed(fault("blackhole", "drop", **target), start=LATE_START)
    async with serve(
        sc, port=0, speed=20, duration_ns=int(FEED_S * S), epoch_ns=EPOCH_NS
    ) as server:
        sockets = dict([await connected(server) for _ in range(4)])
        await server.wait()
        received = {
            conn: [seq_of(f) for f in await frames_until_fence(ws)] for conn, ws in sockets.items()
        }
        for ws in sockets.values():
            await ws.close()
        assert_reported(server)

    assert sorted(received) == [0, 1, 2, 3]
    for conn, seqs in received.items():
        if conn in hit:
            assert seqs == [], conn
        else:
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) >= 90, conn
    assert {i.conn for i in injected(server, "drop")} == hit


@async_test()
async def test_connection_fault_hits_only_its_target_connection() -> None:
    """``disconnect`` with ``connections = [1]``: connection 1 is closed, 0 and 2 stay up."""
    sc = feed(fault("kick", "disconnect", at="1s", code=4000, connections=[1]))
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        kicked = expect_event(server, EventKind.DISCONNECTED, conn=1)
        sockets = dict([await connected(server) for _ in range(3)])
        _, closed = await frames_until_closed(sockets[1])
        await kicked
        for conn in (0, 2):
            await frames_until_fence(sockets[conn])  # still answering
            assert sockets[conn].protocol.state is State.OPEN
            await sockets[conn].close()
        assert_reported(server)

    assert closed.rcvd is not None and closed.rcvd.code == 4000
    assert [i.conn for i in injected(server, "disconnect")] == [1]


@async_test()
async def test_windowed_drop_loses_exactly_the_messages_planned_inside_the_window() -> None:
    """``window = 3 s .. 5 s``: the messages planned in it are lost, all others arrive."""
    sc = feed(fault("gap", "drop", window={"start": "3s", "end": "5s"}), start=LATE_START)
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    assert_saw_whole_feed(server, conn)
    got = {seq_of(f) for f in frames}
    plan = planned(server, sc, conn)

    inside = {p.seq for p in plan if 3 * S <= 2 * S + p.seq * TICK_NS < 5 * S}
    assert inside == set(range(10, 30))
    assert {p.seq for p in plan} - got == inside == {p.seq for p in plan if p.decision.drop}


@async_test()
async def test_match_targets_only_messages_with_the_given_values() -> None:
    """``match = { "data.label" = "alpha" }`` drops the alpha messages and no others."""
    sc = feed(fault("no-alpha", "drop", match={'"data.label"': "alpha"}), start=LATE_START)
    server, conn, frames = await one_client_feed(sc, speed=20, duration_s=FEED_S)
    assert_saw_whole_feed(server, conn)
    labels = {
        seq_of(s.payload): orjson.loads(s.payload)["data"]["label"] for s in server.sent or []
    }

    got = {seq_of(f) for f in frames}
    assert {labels[s] for s in got} == {"beta", "gamma"}
    assert set(labels) - got == {s for s, label in labels.items() if label == "alpha"} != set()


# ----------------------------------------------------------------------------- visibility


@async_test()
async def test_every_injected_fault_is_listed_logged_and_counted() -> None:
    """Many kinds in one run: each carried-out fault is in ``server.injected``, in the log
    as a ``fault`` event with the same details, and in ``stats().faults_by_kind``."""
    sc = feed(
        fault("loss", "drop", probability=0.2),
        fault("copy", "duplicate", probability=0.2),
        fault("garble", "corrupt", probability=0.2),
        fault("lag", "delay", latency="300ms", probability=0.2),
        fault("shuffle", "reorder", probability=0.2),
        fault("freeze", "stall", at="1s", duration="1s", connections=[0]),
        fault("kick", "disconnect", at="1s", connections=[1]),
        fault("gate", "reject", status=429, after_connections=2, limit=1),
        fault("deploy", "mass_disconnect", at="3s", code=1012),
    )
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        deployed = expect_event(server, EventKind.FAULT, injected="mass_disconnect")
        (_, ws0), (_, ws1) = await connected(server), await connected(server)
        with pytest.raises(InvalidStatus):
            await client(server.url)
        await deployed
        for ws in (ws0, ws1):
            await frames_until_closed(ws)
        assert_reported(server)
        counts = server.stats().faults_by_kind

    assert set(counts) == {
        "drop",
        "duplicate",
        "corrupt",
        "delay",
        "reorder",
        "stall",
        "stall_end",
        "disconnect",
        "handshake_refused",
        "mass_disconnect",
    }
    assert counts["handshake_refused"] == 1 and counts["mass_disconnect"] == 1
