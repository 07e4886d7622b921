"""Each ``[[fault]]`` kind as a client of the live server sees it, on the virtual clock
over in-memory transports.

Message faults are checked against the pure planner: what a client receives must be
exactly what ``plan_faults(sc).connection(i).decide(...)`` says for the messages the
server routed to it (``server.sent``), and what ``server.injected`` reports.

Timing is exact: the virtual clock runs every timer when it is due, so a fault planned
at 2 s happens at 2 s and a message delayed by 2 s arrives 2 s late, to the millisecond
(scenario time is computed from a float clock: it may be a nanosecond off). Where a
message is planned at the very instant a fault starts or ends, which goes first is the
loop's order of two timers due together, not a property of the server: such a message
is allowed either way.

Scenario time runs ``speed`` times faster than loop time, so ``at = "1s"`` at
``speed = 10`` happens 100 ms after the server starts.

What only a real socket and a client we did not write show (websockets' view of a
reset, of a stall, of a refused handshake) is in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from websockets.protocol import State

from simulator.core.faults import MessageDecision, plan_faults
from simulator.core.model import Scenario
from simulator.errors import ConnectError
from simulator.net.faulting import Injected
from simulator.net.log import EventKind
from simulator.net.server import SimServer, serve
from simulator.testing.virtual_time import run
from tests.e2e.conftest import EPOCH_NS, S, expect_event, scenario
from tests.net.conftest import virtual_test
from tests.net.memory_client import (
    Inbox,
    MemoryWebSocket,
    connected,
    frames_until_closed,
    memory_client,
    memory_websocket,
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


def at_ms(t_ns: int) -> int:
    """Scenario time ``t_ns`` to the nearest millisecond (it comes from a float clock)."""
    return round(t_ns / MS)


async def frames_until_fence(ws: MemoryWebSocket) -> list[str]:
    """Raw frames (corrupt ones too) that arrived before the pong of a ping sent now.

    The pong is a reply, not a feed message, so message faults never hold it back: it
    comes after every frame the server had written to this client when it read the ping.
    """
    await ws.send(json.dumps({"type": "ping", "id": "fence"}))
    got: list[str] = []
    while not is_fence(frame := str(await ws.recv())):
        got.append(frame)
    return got


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


# Seq 1 .. 100 of the feed, at 0.1 s .. 10 s: a client connected at 0 s sees them all.
FEED_S = 10.05


async def one_client_feed(
    sc: Scenario, *, speed: float, duration_s: float = FEED_S, seed: int | None = None
) -> tuple[SimServer, int, list[str]]:
    """Serve ``sc`` for ``duration_s`` of scenario time to one client; its raw frames."""
    async with serve(
        sc,
        seed=seed,
        speed=speed,
        duration_ns=int(duration_s * S),
        epoch_ns=EPOCH_NS,
        log_sends=True,
        in_memory=True,
    ) as server:
        conn, ws = await connected(server)
        await server.wait()
        frames = await frames_until_fence(ws)
        await ws.close()
        assert_reported(server)
    return server, conn, frames


def routed_seqs(server: SimServer, conn: int) -> list[int]:
    return [seq_of(s.payload) for s in server.sent or [] if s.conn == conn]


# ----------------------------------------------------------------------------- drop


DROP = fault("lossy", "drop", probability=0.3)


async def missing_seqs(seed: int) -> tuple[set[int], set[int], set[int]]:
    """Seqs missing at the client, dropped by the planner, reported as dropped."""
    sc = feed(DROP)
    server, conn, frames = await one_client_feed(sc, speed=20, seed=seed)
    assert routed_seqs(server, conn) == list(range(1, 101))
    plan = planned(server, sc, conn)
    missing = {p.seq for p in plan} - {seq_of(f) for f in frames}
    dropped = {p.seq for p in plan if p.decision.drop}
    reported = {i.detail["seq"] for i in injected(server, "drop", conn)}
    return missing, dropped, reported


@virtual_test
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


@virtual_test
async def test_duplicated_seqs_arrive_exactly_as_many_times_as_planned() -> None:
    """Each message arrives 1 + copies times, back to back, where the planner says."""
    sc = feed(fault("echo", "duplicate", probability=0.2, copies=2))
    server, conn, frames = await one_client_feed(sc, speed=20)
    plan = planned(server, sc, conn)

    expected = [p.payload.decode() for p in plan for _ in range(1 + p.decision.copies)]
    assert frames == expected
    duplicated = {p.seq for p in plan if p.decision.copies}
    assert duplicated and all(p.decision.copies == 2 for p in plan if p.seq in duplicated)
    assert {i.detail["seq"] for i in injected(server, "duplicate", conn)} == duplicated
    assert {s for s, n in Counter(seq_of(f) for f in frames).items() if n > 1} == duplicated


@virtual_test
async def test_corrupted_frames_are_invalid_json_at_the_planned_seqs_and_the_rest_parse() -> None:
    """``invalid_json`` sends the planner's unparseable text in place of the planned seqs."""
    sc = feed(fault("garble", "corrupt", probability=0.2))
    server, conn, frames = await one_client_feed(sc, speed=20)
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
    server: SimServer, ws: MemoryWebSocket, count: int
) -> list[tuple[int, int]]:
    """``(seq, scenario time at arrival)`` of the next ``count`` messages, as they come."""
    got = []
    for _ in range(count):
        seq = seq_of(await ws.recv())
        got.append((seq, server.virtual_ns()))
    return got


@pytest.mark.parametrize("keep_order", [False, True])
@virtual_test
async def test_delayed_messages_arrive_late_and_overtaken_unless_order_is_kept(
    keep_order: bool,
) -> None:
    """Every 20th message arrives exactly 2 s late; without keep_order the next ones
    overtake it and arrive on time, with it they wait behind it and the order holds."""
    latency_ns = 2 * S
    sc = feed(fault("lag", "delay", latency="2s", every_nth=20, keep_order=keep_order), start="1s")
    # The feed runs from 1.1 s to 5.9 s: seq 1 .. 49, of which 20 (3 s) and 40 (5 s) are
    # delayed, to 5 s and 7 s.
    async with serve(
        sc, speed=10, duration_ns=6 * S, epoch_ns=EPOCH_NS, log_sends=True, in_memory=True
    ) as server:
        conn, ws = await connected(server)
        got = await arrival_times(server, ws, 49)
        await ws.close()
        assert_reported(server)

    planned_at = {seq_of(s.payload): s.t_ns for s in server.sent or [] if s.conn == conn}
    sent = sorted(planned_at)
    assert sent == list(range(1, 50))
    delayed = [seq for seq in sent if seq % 20 == 0]
    assert delayed == [20, 40]
    assert {i.detail["seq"] for i in injected(server, "delay", conn)} == set(delayed)
    assert all(i.detail["delay_ns"] == latency_ns for i in injected(server, "delay", conn))
    assert sorted(seq for seq, _ in got) == sent  # all arrive, once

    # When each one is due: its planned time, 2 s later if delayed, and with keep_order
    # not before the delayed message it queues behind.
    due: dict[int, int] = {}
    queue_until = 0
    for seq in sent:
        due[seq] = planned_at[seq] + (latency_ns if seq in delayed else 0)
        if keep_order:
            due[seq] = queue_until = max(due[seq], queue_until)
    assert {seq: at_ms(at - planned_at[seq]) for seq, at in got} == {
        seq: at_ms(due[seq] - planned_at[seq]) for seq in sent
    }
    late = {seq: at_ms(at - planned_at[seq]) for seq, at in got}
    position = {seq: k for k, (seq, _) in enumerate(got)}
    for seq in delayed:
        assert late[seq] == 2000
        if keep_order:
            assert late[seq + 1] == 1900  # head-of-line blocking: held up behind it
        else:
            assert late[seq + 1] == 0 and position[seq + 1] < position[seq]
    # With keep_order, seq 39 (4.9 s) waits behind seq 20 (out at 5 s): 100 ms late.
    assert (late[19], late[39]) == (0, 100 if keep_order else 0)
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


@virtual_test
async def test_reordered_message_arrives_after_the_next_depth_messages_as_planned() -> None:
    """A held message arrives after the next ``depth`` (3) messages sent, in exactly the
    places the planner's decisions give."""
    sc = feed(fault("shuffle", "reorder", depth=3, probability=0.1))
    server, conn, frames = await one_client_feed(sc, speed=20)
    plan = planned(server, sc, conn)
    got = [seq_of(f) for f in frames]

    held = [p.seq for p in plan if p.decision.hold]
    assert held and all(p.decision.hold == 3 for p in plan if p.decision.hold)
    assert got == reordered(plan)
    for seq in (s for s in held if s in got):  # the last ones may be lost as the feed ends
        overtaken_by = [s for s in got[: got.index(seq)] if s > seq]
        assert len(overtaken_by) >= 3, (seq, overtaken_by)
    assert {i.detail["seq"] for i in injected(server, "reorder", conn)} == set(held)


@virtual_test
async def test_message_both_delayed_and_held_back_is_delayed_then_held() -> None:
    """Every 10th message is both delayed by 1 s and held for one message: it arrives
    exactly 1.1 s late, with the first message sent after its delay ends (the decision
    says: delay it, then hold it back)."""
    sc = feed(
        fault("lag", "delay", latency="1s", every_nth=10),
        fault("swap", "reorder", depth=1, every_nth=10),
        start="1s",
    )
    async with serve(
        sc, speed=10, duration_ns=6 * S, epoch_ns=EPOCH_NS, log_sends=True, in_memory=True
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
    late = {seq: at_ms(at - planned_at[seq]) for seq, at in got}
    # 2 s: seq 10 is delayed by 1 s.
    # 3 s: its delay ends; it is held for one message (seq 20, planned now, is delayed
    #      too, and sends nothing).
    # 3.1 s: seq 21 is sent, then seq 10 behind it: 1.1 s late. Seq 20 likewise at 4.1 s.
    assert (late[10], late[20]) == (1100, 1100)
    order = [seq for seq, _ in got]
    assert order.index(21) < order.index(10) and order.index(31) < order.index(20)


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


@virtual_test
async def test_burst_loss_loses_the_planned_seqs_in_runs() -> None:
    """Losses with burst = 4 come in runs (mean length well above the ~1.4 of independent
    drops at the same rate), and they are exactly the planner's."""
    sc = feed(fault("fade", "burst_loss", loss=0.3, burst=4))
    server, conn, frames = await one_client_feed(sc, speed=20)
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


@virtual_test
async def test_disconnect_closes_with_the_code_and_reason_at_the_planned_time() -> None:
    """At exactly 2 s the client gets a close frame 4001 'session expired', after the
    whole feed up to then."""
    sc = feed(fault("kick", "disconnect", at="2s", code=4001, reason="session expired"))
    async with serve(sc, speed=5, epoch_ns=EPOCH_NS, in_memory=True) as server:
        conn, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        closed_at = server.virtual_ns()
        assert_reported(server)

    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "session expired")
    assert ws.close_code == 4001
    [record] = injected(server, "disconnect", conn)
    assert at_ms(record.t_ns) == at_ms(closed_at) == 2000
    # Seq 1 .. 19 (0.1 s .. 1.9 s), and seq 20 if it went out before the close at 2 s.
    seqs = [seq_of(f) for f in frames]
    assert seqs in (list(range(1, 20)), list(range(1, 21)))


@virtual_test
async def test_reset_ends_the_connection_on_time_with_1006_and_no_close_frame() -> None:
    """At exactly 1 s the transport is reset: the client sees an abnormal closure (1006),
    no close frame either way, after the whole feed up to then."""
    sc = feed(fault("rst", "reset", at="1s"))
    async with serve(sc, speed=10, epoch_ns=EPOCH_NS, in_memory=True) as server:
        conn, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        closed_at = server.virtual_ns()
        assert_reported(server)

    assert (closed.rcvd, closed.sent) == (None, None)
    assert ws.close_code == 1006
    seqs = [seq_of(f) for f in frames]
    assert seqs in (list(range(1, 10)), list(range(1, 11)))  # fed until then
    [record] = injected(server, "reset", conn)
    assert at_ms(record.t_ns) == at_ms(closed_at) == 1000


# ----------------------------------------------------------------------------- stall


@virtual_test
async def test_stalled_connection_is_silent_and_answers_no_ping_then_resumes_with_a_gap() -> None:
    """From 1 s to 6 s nothing arrives and a WebSocket ping gets no pong, though the
    connection stays open; the pong comes exactly as the stall ends, then the feed
    resumes, the stall's messages missing."""
    speed = 5.0
    sc = feed(fault("freeze", "stall", at="1s", duration="5s"))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        stalled = expect_event(server, EventKind.FAULT, injected="stall")
        conn, ws = await connected(server)
        await stalled
        pinged_at = server.virtual_ns()
        pong = await ws.ping()
        await asyncio.sleep(4.9 / speed)  # until 5.9 s
        assert not pong.done()
        assert ws.protocol.state is State.OPEN and not ws.transport.is_closing()
        assert server.clients[conn].open  # half-open: no close, no reset, either way
        latency_s = await pong
        seqs: list[int] = []
        while not seqs or seqs[-1] * TICK_NS < 7 * S:  # until the feed is well past the stall
            seqs.append(seq_of(await ws.recv()))
        await ws.close()
        assert_reported(server)

    assert at_ms(pinged_at) == 1000
    assert round(latency_s * speed * 1000) == 5000  # the pong, at 6 s
    [start] = injected(server, "stall", conn)
    [end] = injected(server, "stall_end", conn)
    assert (at_ms(start.t_ns), at_ms(end.t_ns)) == (1000, 6000)
    before = [s for s in seqs if s * TICK_NS < S]
    during = [s for s in seqs if S < s * TICK_NS < 6 * S]
    after = [s for s in seqs if s * TICK_NS > 6 * S]
    assert before == list(range(1, 10))
    assert during == [], during
    assert after == list(range(61, 71))  # resumed, contiguous


@pytest.mark.parametrize(
    ("stalls", "silent_until_s"),
    [
        # 1-3 s and 2-5 s: silent from 1 s to 5 s.
        ([{"at": "1s", "duration": "2s"}, {"at": "2s", "duration": "3s"}], 5),
        # for ever from 1 s, and 2-3 s: silent from 1 s on.
        ([{"at": "1s"}, {"at": "2s", "duration": "1s"}], None),
    ],
    ids=["finite", "forever"],
)
@virtual_test
async def test_overlapping_stalls_keep_the_connection_silent_until_the_last_one_ends(
    stalls: list[dict[str, object]], silent_until_s: int | None
) -> None:
    """While any stall is in force nothing arrives: the first one ending does not lift
    another that is still on."""
    speed = 10.0
    sc = feed(*(fault(f"stall-{i}", "stall", **keys) for i, keys in enumerate(stalls)))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        conn, ws = await connected(server)
        await asyncio.sleep(6.05 / speed)  # until 6.05 s
        seqs = [seq_of(m) for _, m in ws.messages]
        ws.transport.abort()  # as a client that detected a dead peer would
        assert_reported(server)

    assert [i.fault for i in injected(server, "stall", conn)] == ["stall-0", "stall-1"]
    # The first stall to end says the connection is still stalled by the other.
    ends = [(i.fault, i.detail.get("still_stalled")) for i in injected(server, "stall_end", conn)]
    assert ends == ([("stall-0", 1), ("stall-1", None)] if silent_until_s else [("stall-1", 1)])
    # Fed until the first stall, at 1 s (seq 10, planned then, either way).
    assert [s for s in seqs if s < 10] == list(range(1, 10))
    if silent_until_s is None:
        assert [s for s in seqs if s > 10] == []
    else:
        # Silent until the last stall ends; fed again from then (the seq planned at that
        # very instant either way), up to 6 s.
        resumed = silent_until_s * 10
        assert [s for s in seqs if 10 < s < resumed] == []
        assert [s for s in seqs if s > resumed] == list(range(resumed + 1, 61))


# ----------------------------------------------------------------------------- throttle

PAD = "x" * 1000
# About 1.08 kB a frame, 100 frames a second: ~108 kB/s.
BLOBS = f"""\
[scenario]
name = "throttle"
[[stream]]
name = "blob"
every = "10ms"
[stream.fields]
pad = "{PAD}"
"""
FRAME_BYTES = len(
    orjson.dumps(
        {"type": "blob", "seq": 100, "timestamp": "2026-01-01T00:00:01.000Z", "data": {"pad": PAD}}
    )
)


def rate(inbox: Inbox, server: SimServer, start_s: float, end_s: float) -> float:
    """Bytes per second received between two scenario times (at speed 1)."""
    origin = server.clock.start_at
    total = sum(len(m) for t, m in inbox.messages if start_s <= (t - origin) < end_s)
    return total / (end_s - start_s)


def test_throttled_connection_gets_its_byte_rate_while_another_gets_the_full_feed() -> None:
    """Capped at 10 kB/s, connection 0 receives 10 kB/s (within a frame) from 0.5 s to
    2.5 s; connection 1, uncapped, gets the whole ~100 frames/s feed."""

    async def main() -> tuple[float, float, SimServer]:
        sc = scenario(BLOBS + fault("narrow", "throttle", bytes_per_s=10_000, connections=[0]))
        async with serve(sc, speed=1, epoch_ns=EPOCH_NS, in_memory=True) as server:
            ws0, capped = await memory_client(server)
            ws1, full = await memory_client(server)
            await asyncio.sleep(2.6)
            await ws0.close()
            await ws1.close()
        return rate(capped, server, 0.5, 2.5), rate(full, server, 0.5, 2.5), server

    capped, full, server = run(main())
    assert capped == pytest.approx(10_000, abs=FRAME_BYTES / 2)
    assert full == pytest.approx(100 * FRAME_BYTES, rel=0.02)
    [record] = injected(server, "throttle")
    assert record.conn == 0 and record.detail["bytes_per_s"] == 10_000


def test_throttle_stays_in_force_after_an_overlapping_one_ends() -> None:
    """A 10 kB/s cap for good and a 50 kB/s one from 0.5 s to 1 s: from 1.5 s to 3 s the
    rate is back to 10 kB/s (the shorter one ending does not lift the other)."""

    async def main() -> tuple[float, SimServer]:
        sc = scenario(
            BLOBS
            + fault("cap", "throttle", bytes_per_s=10_000)
            + fault("spike", "throttle", bytes_per_s=50_000, window={"start": "500ms", "end": "1s"})
        )
        async with serve(sc, speed=1, epoch_ns=EPOCH_NS, in_memory=True) as server:
            ws, got = await memory_client(server)
            await asyncio.sleep(3.1)
            await ws.close()
        return rate(got, server, 1.5, 3.0), server

    got, server = run(main())
    assert [i.fault for i in injected(server, "throttle", 0)] == ["cap", "spike"]
    assert got == pytest.approx(10_000, abs=FRAME_BYTES / 1.5)


# ----------------------------------------------------------------------------- outage, reject


@virtual_test
async def test_outage_drops_clients_refuses_handshakes_with_503_then_recovers() -> None:
    """Outage 1-4 s: at exactly 1 s both open clients are reset (1006); a handshake then
    gets 503 and Retry-After: 3; one made after waiting exactly Retry-After is accepted
    and fed. (At 1x: scenario and wall seconds are the same; the speed case is below.)"""
    speed = 1.0
    sc = feed(fault("down", "outage", at="1s", duration="3s"))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        sockets = dict([await connected(server), await connected(server)])
        for ws in sockets.values():
            frames, closed = await frames_until_closed(ws)
            assert frames
            assert (closed.rcvd, closed.sent) == (None, None)
            assert ws.close_code == 1006
        reset_at = server.virtual_ns()

        with pytest.raises(ConnectError) as refused:
            await memory_websocket(server)
        assert refused.value.status == 503
        retry_after = dict(refused.value.headers)["Retry-After"]
        assert retry_after == "3"

        # A good client honours Retry-After (wall seconds, as loop time is).
        await asyncio.sleep(int(retry_after))
        again, ws = await connected(server)
        connected_at = server.virtual_ns()
        message = orjson.loads(await ws.recv())
        await ws.close()
        assert_reported(server)

    assert (sorted(sockets), again) == ([0, 1], 3)  # numbered by handshake attempt
    assert (at_ms(reset_at), at_ms(connected_at)) == (1000, 4000)
    assert message["seq"] in (40, 41)  # the first one planned from 4 s on
    [outage] = injected(server, "outage")
    assert outage.detail["connections"] == 2 and at_ms(outage.t_ns) == 1000
    [refusal] = injected(server, "handshake_refused")
    assert refusal.conn == 2 and at_ms(refusal.t_ns) == 1000
    assert (refusal.detail["status"], refusal.detail["retry_after_s"]) == (503, 3)


@pytest.mark.parametrize(
    ("status", "retry_after", "header"),
    [(401, None, None), (403, None, None), (429, "10s", "10"), (503, "2500ms", "3")],
)
@virtual_test
async def test_reject_refuses_handshakes_with_its_status_and_retry_after(
    status: int, retry_after: str | None, header: str | None
) -> None:
    """With after_connections = 1 and limit = 2, attempts 1 and 2 are refused with the
    status (and Retry-After in whole seconds, rounded up); attempts 0 and 3 get in."""
    extra = {} if retry_after is None else {"retry_after": retry_after}
    sc = feed(fault("gate", "reject", status=status, after_connections=1, limit=2, **extra))
    async with serve(sc, speed=1, epoch_ns=EPOCH_NS, in_memory=True) as server:
        first, ws0 = await connected(server)
        refusals = []
        for _ in range(2):
            with pytest.raises(ConnectError) as refused:
                await memory_websocket(server)
            refusals.append(refused.value)
        last, ws3 = await connected(server)
        await ws0.close()
        await ws3.close()
        assert_reported(server)

    assert (first, last) == (0, 3)
    for refusal in refusals:
        assert refusal.status == status
        assert dict(refusal.headers).get("Retry-After") == header
    records = injected(server, "handshake_refused")
    assert [r.conn for r in records] == [1, 2]
    assert all(r.detail["status"] == status for r in records)


@pytest.mark.parametrize(
    ("delay", "speed", "held_s"),
    [
        ("2s", 4, 0.5),
        # Past the default 10 s opening timeout: the docs say hold it this long, then go on.
        ("21s", 2, 10.5),
    ],
)
@virtual_test
async def test_reject_with_a_delay_holds_the_handshake_exactly_that_long_then_lets_it_in(
    delay: str, speed: float, held_s: float
) -> None:
    """``delay`` at ``speed`` holds the handshake exactly delay / speed of loop time, then
    the client gets in."""
    sc = feed(fault("slowgate", "reject", delay=delay, limit=1))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        loop = asyncio.get_running_loop()
        began = loop.time()
        conn, ws = await connected(server, open_timeout=30)
        held = loop.time() - began
        await ws.close()
        assert_reported(server)

    assert conn == 0
    assert held == pytest.approx(held_s, abs=1e-6)
    [record] = injected(server, "handshake_delayed")
    assert record.detail["delay_ns"] == held_s * speed * S and record.detail["status"] is None


# ----------------------------------------------------------------------------- mass_disconnect


@virtual_test
async def test_mass_disconnect_closes_every_client_at_once_with_its_code() -> None:
    """At exactly 2 s all three clients get close 1012 'restarting', after the same last
    message."""
    sc = feed(fault("deploy", "mass_disconnect", at="2s", code=1012, reason="restarting"))
    async with serve(sc, speed=5, epoch_ns=EPOCH_NS, in_memory=True) as server:
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
    assert at_ms(record.t_ns) == 2000


@virtual_test
async def test_mass_disconnect_in_a_window_also_closes_clients_that_open_during_it() -> None:
    """Window 1-3 s: the client open at 1 s is closed then, one opening at 1.5 s is
    closed as it opens, one opening at 3 s (the end, excluded) stays up."""
    speed = 10.0
    sc = feed(fault("drain", "mass_disconnect", window={"start": "1s", "end": "3s"}, code=4002))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        loop = asyncio.get_running_loop()
        _, early = await connected(server)
        _, closed_early = await frames_until_closed(early)
        await asyncio.sleep(server.clock.loop_time(1500 * MS) - loop.time())
        # The server's view of the client opening now (its own: the next test).
        closed_during = expect_event(server, EventKind.DISCONNECTED, conn=1)
        await memory_websocket(server)
        during = await closed_during
        await asyncio.sleep(server.clock.loop_time(3 * S) - loop.time())
        after_conn, after = await connected(server)
        await frames_until_fence(after)  # answering
        assert after.protocol.state is State.OPEN
        await after.close()
        assert_reported(server)

    assert closed_early.rcvd is not None and closed_early.rcvd.code == 4002
    assert (during.detail["code"], during.detail["by"]) == (4002, "server")
    records = injected(server, "mass_disconnect")
    assert [r.detail["connections"] for r in records] == [1, 1]
    assert [at_ms(r.t_ns) for r in records] == [1000, 1500]
    assert after_conn == 2


@virtual_test
async def test_client_opening_during_a_mass_disconnect_window_is_opened_then_closed() -> None:
    """A client opening at 1.5 s, inside the window 1-3 s, gets in and is closed with the
    fault's code at once: connect() returns, then recv() raises with close 4002."""
    sc = feed(fault("drain", "mass_disconnect", window={"start": "1s", "end": "3s"}, code=4002))
    async with serve(sc, speed=10, epoch_ns=EPOCH_NS, in_memory=True) as server:
        await asyncio.sleep(server.clock.loop_time(1500 * MS))
        _, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        closed_at = server.virtual_ns()

    assert frames == []
    assert closed.rcvd is not None and closed.rcvd.code == 4002
    assert at_ms(closed_at) == 1500


# ----------------------------------------------------------------------------- targeting


@virtual_test
async def test_message_faults_on_one_stream_never_touch_another() -> None:
    """Drops, copies, corruption and reordering on stream a leave stream b exactly whole."""
    kinds = ("drop", "duplicate", "corrupt", "reorder")
    faults = [fault(kind, kind, streams=["a"], probability=0.2) for kind in kinds]
    sc = feed(*faults, streams=("a", "b"))
    server, conn, frames = await one_client_feed(sc, speed=20)

    b = [orjson.loads(f) for f in frames if parses(f) and orjson.loads(f)["type"] == "b"]
    sent_b = [seq_of(s.payload) for s in server.sent or [] if s.conn == conn and s.stream == "b"]
    assert sent_b == list(range(1, 101))
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
@virtual_test
async def test_message_fault_hits_only_its_target_connections(
    target: dict[str, object], hit: set[int]
) -> None:
    """A drop-everything fault with a connection target: those connections get no feed,
    the others get all of it."""
    sc = feed(fault("blackhole", "drop", **target))
    async with serve(
        sc, speed=20, duration_ns=int(FEED_S * S), epoch_ns=EPOCH_NS, in_memory=True
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
        assert seqs == ([] if conn in hit else list(range(1, 101))), conn
    assert {i.conn for i in injected(server, "drop")} == hit


@virtual_test
async def test_connection_fault_hits_only_its_target_connection() -> None:
    """``disconnect`` with ``connections = [1]``: connection 1 is closed, 0 and 2 stay up."""
    sc = feed(fault("kick", "disconnect", at="1s", code=4000, connections=[1]))
    async with serve(sc, speed=10, epoch_ns=EPOCH_NS, in_memory=True) as server:
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


@virtual_test
async def test_windowed_drop_loses_exactly_the_messages_planned_inside_the_window() -> None:
    """``window = 3 s .. 5 s``: the messages planned in it are lost, all others arrive."""
    sc = feed(fault("gap", "drop", window={"start": "3s", "end": "5s"}))
    server, conn, frames = await one_client_feed(sc, speed=20)
    got = {seq_of(f) for f in frames}
    plan = planned(server, sc, conn)

    assert [p.seq for p in plan] == list(range(1, 101))
    inside = {p.seq for p in plan if 3 * S <= p.seq * TICK_NS < 5 * S}
    assert inside == set(range(30, 50))
    assert {p.seq for p in plan} - got == inside == {p.seq for p in plan if p.decision.drop}


@virtual_test
async def test_match_targets_only_messages_with_the_given_values() -> None:
    """``match = { "data.label" = "alpha" }`` drops the alpha messages and no others."""
    sc = feed(fault("no-alpha", "drop", match={'"data.label"': "alpha"}))
    server, conn, frames = await one_client_feed(sc, speed=20)
    assert routed_seqs(server, conn) == list(range(1, 101))
    labels = {
        seq_of(s.payload): orjson.loads(s.payload)["data"]["label"] for s in server.sent or []
    }

    got = {seq_of(f) for f in frames}
    assert {labels[s] for s in got} == {"beta", "gamma"}
    assert set(labels) - got == {s for s, label in labels.items() if label == "alpha"} != set()


# ----------------------------------------------------------------------------- visibility


@virtual_test
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
    async with serve(sc, speed=10, epoch_ns=EPOCH_NS, in_memory=True) as server:
        deployed = expect_event(server, EventKind.FAULT, injected="mass_disconnect")
        (_, ws0), (_, ws1) = await connected(server), await connected(server)
        with pytest.raises(ConnectError):
            await memory_websocket(server)
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
