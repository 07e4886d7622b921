"""A live server that falls behind drops what is past ``max_lateness`` instead of
sending it late: the pump on a virtual clock whose sends take (virtual) time, and a
slow client's queue on a transport that reports a full buffer."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from simulator.core.lateness import stream_limits_ns
from simulator.core.model import SlowConsumerPolicy
from simulator.core.timeline import Batch, Timeline
from simulator.net.common import AHEAD_S, ScenarioClock, ahead_s, sleep_until
from simulator.net.log import Event, EventKind
from simulator.net.pump import Pacing, pump
from simulator.net.send_path import QUEUE_TIME_GRAIN_S, Client, SharedTime, text_frame
from simulator.net.server import serve
from simulator.scenario import parse_scenario
from simulator.storage.reader import read_recording
from simulator.testing.virtual_time import VirtualClockLoop, run

from .test_wire_pump import opened_pair


def feed(every_ms: int, limit: str) -> Any:
    return parse_scenario(
        f'[scenario]\nname = "t"\nseed = 1\nepoch = "2026-01-01T00:00:00Z"\n'
        f'[server]\nmax_lateness = "{limit}"\n'
        f'[[stream]]\nname = "a"\nevery = "{every_ms}ms"\n',
        "x.toml",
    )


@settings(max_examples=40)
@given(
    every_ms=st.integers(1, 50),
    cost_ms=st.integers(0, 200),
    limit_ms=st.integers(1, 300),
)
def test_a_pump_behind_schedule_sends_each_message_within_its_limit_or_drops_it(
    every_ms: int, cost_ms: int, limit_ms: int
) -> None:
    """Every message is either handed to the send path no later than the limit, or
    dropped for lateness (more than the limit late): none is lost, none sent twice,
    order kept, and a send path that keeps up drops nothing."""
    scenario = feed(every_ms, f"{limit_ms}ms")
    end_ns = 2 * 10**9

    async def main() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        clock = ScenarioClock(1.0)
        clock.start()
        sent: list[tuple[int, int]] = []  # (seq, lateness ns when handed over)
        dropped: list[tuple[int, int]] = []

        def lateness(batch: Batch) -> list[tuple[int, int]]:
            now = clock.virtual_ns()
            return [
                (q, now - t) for q, t in zip(batch.seq.tolist(), batch.t_ns.tolist(), strict=True)
            ]

        def send(batch: Batch) -> None:
            sent.extend(lateness(batch))
            loop.advance(cost_ms / 1000)  # the machine is this slow at sending a batch

        def late(batch: Batch) -> None:
            dropped.extend(lateness(batch))

        timeline = Timeline(scenario, 1, scope=None, epoch_ns=0)
        pacing = Pacing(False, stream_limits_ns(scenario, 1.0), late)
        await pump(timeline, clock, send, pacing, end_ns=end_ns)
        return sent, dropped

    sent, dropped = run(main())
    limit_ns = limit_ms * 10**6
    every_seq = [seq for seq, _ in sent] + [seq for seq, _ in dropped]
    assert sorted(every_seq) == list(range(1, len(every_seq) + 1))
    assert [seq for seq, _ in sent] == sorted(seq for seq, _ in sent)
    assert all(lateness <= limit_ns for _, lateness in sent)
    assert all(lateness > limit_ns for _, lateness in dropped)
    if cost_ms == 0:
        assert dropped == []


def test_a_limit_of_off_sends_everything_however_late() -> None:
    scenario = feed(1, "off")

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        clock = ScenarioClock(1.0)
        clock.start()
        counts = [0, 0]

        def send(batch: Batch) -> None:
            counts[0] += len(batch)
            loop.advance(0.5)

        def late(batch: Batch) -> None:
            counts[1] += len(batch)

        pacing = Pacing(False, stream_limits_ns(scenario, 1.0), late)
        timeline = Timeline(scenario, 1, scope=None, epoch_ns=0)
        await pump(timeline, clock, send, pacing, end_ns=10**9)
        return counts[0], counts[1]

    assert run(main()) == (999, 0)  # at 1 ms .. 999 ms: the end is excluded


class FullTape:
    """What a client that stopped reading looks like to the server: a write buffer
    over any limit, until ``drain``."""

    def __init__(self, tape: Any) -> None:
        self.tape = tape
        self.full = True

    def buffer_size(self) -> int:
        return 10**9 if self.full else 0


def client_of_a_full_socket(on_slow: Any, **options: Any) -> tuple[Client, Any, FullTape]:
    """A served client (call on a running loop) whose socket reports a full buffer
    until ``full.full = False``; what it writes is on the tape."""
    conn, tape, _, _ = opened_pair()
    tape.take()
    full = FullTape(tape)
    tape.get_write_buffer_size = full.buffer_size
    client = Client(
        0,
        conn,
        send_buffer_bytes=1 << 20,
        policy=SlowConsumerPolicy.DROP_OLDEST,
        connected_at=asyncio.get_running_loop().time(),
        epoch_ns=0,
        on_slow=on_slow,
        **options,
    )
    return client, tape, full


def test_frames_queued_for_a_slow_client_past_the_limit_are_dropped_when_it_drains() -> None:
    """Queued frames older than ``max_queue_s`` when the socket drains are dropped and
    counted; younger ones are written, in order."""

    async def main() -> tuple[bytes, int, list[tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        slow: list[tuple[str, int]] = []
        client, tape, full = client_of_a_full_socket(
            lambda c, what, n: slow.append((what, n)), max_queue_s=0.25
        )
        frames = [text_frame(f"m{i}".encode()) for i in range(4)]
        client.deliver(frames[0], frames[:1])  # queued at 0.0
        loop.advance(0.2)
        client.deliver(frames[1], frames[1:2])  # queued at 0.2
        loop.advance(0.1)
        client.deliver(b"".join(frames[2:]), frames[2:])  # queued at 0.3
        loop.advance(0.2)  # now 0.5: the first two waited 0.5 s and 0.3 s
        full.full = False
        client.flush_pending()
        return tape.take(), client.frames_dropped, slow

    written, dropped, slow = run(main())
    assert written == text_frame(b"m2") + text_frame(b"m3")
    assert dropped == 2
    assert slow == [("late", 2)]


@pytest.mark.parametrize("past_fault", [None, "stall", "delay"])
def test_a_client_that_never_drains_holds_nothing_much_older_than_the_limit(
    past_fault: str | None,
) -> None:
    """Frames queued for a client whose socket never drains are dropped once they are
    past ``max_queue_s``, as new ones queue (looked at twice per ``max_queue_s``): the
    queue holds at most 1.5 x ``max_queue_s`` of frames, not ``send_buffer_bytes``,
    and the drops are reported in batches, not one per frame. The same after a fault
    that is over (a stall that ended, a delayed message sent): the limit held only for
    clients no fault had ever touched."""

    async def main() -> tuple[list[float], list[tuple[str, int]], int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        slow: list[tuple[str, int]] = []
        client, _, _ = client_of_a_full_socket(
            lambda c, what, n: slow.append((what, n)), max_queue_s=0.2
        )
        if past_fault == "stall":
            client.faults().stall(client)
            client.faults().unstall(client)
        elif past_fault == "delay":
            late = text_frame(b"late")
            client.faults().send_later(client, [late], 0.01, keep_order=True)
            loop.advance(0.01)
            client.pending, client.pending_since, client.pending_bytes = None, None, 0
        oldest: list[float] = []
        frame = text_frame(b"tick")
        for _ in range(200):  # 2 s of a 10 ms stream
            client.deliver(frame, [frame])
            assert client.pending_since is not None
            oldest.append(loop.time() - client.pending_since[0])
            loop.advance(0.01)
        return oldest, slow, client.frames_dropped

    oldest, slow, dropped = run(main())
    assert max(oldest) <= 1.5 * 0.2 + 1e-9
    assert {what for what, _ in slow} == {"late"}
    assert len(slow) <= 2 * 2 / 0.2  # twice per max_queue_s, over 2 s
    assert sum(n for _, n in slow) == dropped > 100


@pytest.mark.parametrize("fault", ["stall", "throttle"])
def test_what_a_fault_held_counts_as_queued_when_it_ends(fault: str) -> None:
    """Frames queued before or during a stall or a throttle of 2 s are the fault's to
    deliver late: when it ends they join the queue as new, and are written, not dropped
    as older than ``max_queue_s`` (0.25 s)."""

    async def main() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        client, tape, full = client_of_a_full_socket(lambda c, what, n: None, max_queue_s=0.25)
        effects = client.faults()
        frames = [text_frame(f"m{i}".encode()) for i in range(3)]
        client.deliver(b"".join(frames), frames)  # queued: the socket is full
        if fault == "stall":
            effects.stall(client)
        else:
            effects.throttle(client, 1e9)
        loop.advance(2.0)
        full.full = False
        if fault == "stall":
            effects.unstall(client)
        else:
            effects.unthrottle(client, 1e9)
        client.flush_pending()
        return tape.take(), client.frames_dropped

    written, dropped = run(main())
    assert dropped == 0
    assert written == b"".join(text_frame(f"m{i}".encode()) for i in range(3))


def test_the_close_policy_closes_once_the_queue_is_over_send_buffer_bytes_not_before() -> None:
    """``slow_consumer = "close"``: frames queue for a client whose socket is full, as
    under drop-oldest; only past ``send_buffer_bytes`` is it closed (1013), and nothing
    is dropped before."""

    async def main() -> tuple[list[bool], int, list[tuple[str, int]]]:
        slow: list[tuple[str, int]] = []
        client, _, _ = client_of_a_full_socket(lambda c, what, n: slow.append((what, n)))
        client.policy = SlowConsumerPolicy.CLOSE
        frame = text_frame(b"x" * 1000)
        closing = []
        for _ in range(1100):  # 1.1 MB against a 1 MiB queue
            client.deliver(frame, [frame])
            closing.append(client.closing)
        return closing, client.frames_dropped, slow

    closing, dropped, slow = run(main())
    first = closing.index(True)
    assert 1000 < first < 1100 and all(closing[first:])  # past 1 MiB of 1,002-byte frames
    assert dropped == 0
    assert slow == [("closed", 0)]


def test_an_efficient_sleep_wakes_at_most_ahead_s_early_on_a_real_loop() -> None:
    """Not a speed figure: asyncio never runs a timer before its time, so a message
    leaves no more than AHEAD_S before the moment it is due."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        early = []
        for _ in range(20):
            when = loop.time() + 0.003
            await sleep_until(when)
            early.append(when - loop.time())
        assert ahead_s(precise=False) == AHEAD_S
        assert ahead_s(precise=True) == 0.0
        return early

    assert max(asyncio.run(main())) <= AHEAD_S + 1e-6


def test_precise_timing_never_wakes_early_and_long_waits_end_in_short_steps() -> None:
    """``precise`` yields until the very time; a long efficient wait (slept in steps,
    as Linux ends a sleep of t up to t/1000 late) still never wakes more than AHEAD_S
    early."""

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        early = []
        for delay in (0.0005, 0.002, 0.03):
            when = loop.time() + delay
            await sleep_until(when, precise=True)
            early.append(when - loop.time())
        when = loop.time() + 0.1  # more than LONG_SLEEP_S: slept in steps
        await sleep_until(when)
        return early, when - loop.time()

    early, long_wait_early = asyncio.run(main())
    assert max(early) <= 0.0
    assert long_wait_early <= AHEAD_S + 1e-6


def test_nothing_is_sent_early_on_a_virtual_clock() -> None:
    async def main() -> float:
        assert ahead_s(precise=False) == 0.0
        when = asyncio.get_running_loop().time() + 0.0123
        await sleep_until(when)
        return asyncio.get_running_loop().time() - when

    assert run(main()) == 0.0


def test_a_stalled_server_drops_what_is_too_late_and_says_so_in_stats_log_and_recording(
    tmp_path: Path,
) -> None:
    """A real server whose loop is blocked for 0.5 s (as a busy machine would) with
    ``max_lateness = "100ms"``: the messages due early in the stall are dropped, and
    the status, the log and the recording all count the same number."""
    scenario = parse_scenario(
        '[scenario]\nname = "t"\nseed = 1\n[server]\nmax_lateness = "100ms"\n'
        '[[stream]]\nname = "tick"\nevery = "10ms"\n',
        "x.toml",
    )
    path = tmp_path / "late.parquet"

    async def main() -> tuple[int, int, list[Event]]:
        async with serve(scenario, port=0, record=path) as server:  # noqa: SIM117 (url needed)
            async with connect(server.url, max_queue=None) as ws:
                await ws.recv()
                time.sleep(0.5)  # the loop stalls: nothing is sent meanwhile
                await asyncio.sleep(0.1)
        stats = server.stats()  # after the stop: what the recording holds too
        late = server.log.of_kind(EventKind.LATE)
        return stats.late_dropped, stats.messages_by_stream["tick"], late

    dropped, sent, events = asyncio.run(main())
    assert dropped >= 30  # of the ~50 due in the stall, those more than 100 ms late
    assert sent > 0
    assert events and events[0].detail["dropped"] > 0
    rows = read_recording(path).frame.filter(pl.col("kind") == "fault")
    recorded = [json.loads(f) for f in rows["fault"].to_list()]
    assert {r["kind"] for r in recorded} == {"late"}
    assert sum(r["messages"] for r in recorded) == dropped
    assert sum(r["streams"]["tick"] for r in recorded) == dropped


def test_each_clients_socket_send_buffer_is_socket_buffer_bytes_and_0_leaves_the_os_its_own(
    tmp_path: Path,
) -> None:
    """The kernel's buffer is what max_lateness cannot reach: its size is the key's
    (Linux reports twice what was set: it counts its bookkeeping)."""

    async def sndbuf(size: int) -> int:
        scenario = parse_scenario(
            f'[scenario]\nname = "t"\n[server]\nsocket_buffer_bytes = {size}\n'
            '[[stream]]\nname = "tick"\nevery = "1s"\n',
            "x.toml",
        )
        async with serve(scenario, port=0) as server:  # noqa: SIM117 (url needed)
            async with connect(server.url):
                while not server.clients:
                    await asyncio.sleep(0.01)
                [client] = server.clients.values()
                sock = client.transport.get_extra_info("socket")
                return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))

    with socket.socket() as fresh:
        os_default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    assert asyncio.run(sndbuf(8192)) == 2 * 8192
    assert asyncio.run(sndbuf(0)) >= os_default  # autotuned from the default upwards


def test_a_drained_socket_takes_the_whole_queue_not_one_share_of_it() -> None:
    """When writing resumes, queued frames go on to the socket while it takes them:
    stopping after one transport share, with frames queued and writing not paused,
    left nothing to flush them again, and the client starved while others were served."""

    async def main() -> tuple[int, int, int]:
        client, tape, full = client_of_a_full_socket(
            lambda c, what, n: None, transport_room=16 * 1024
        )
        frames = [text_frame(b"x" * 1000) for _ in range(100)]  # ~100 KiB: 6 shares
        for frame in frames:
            client.deliver(frame, [frame])
        queued = len(client.pending or ())
        full.full = False  # the kernel takes all it is given from now on
        client.flush_pending()
        return queued, len(tape.take()), len(client.pending or ())

    queued, written, left = run(main())
    assert queued == 100
    assert written == 100 * len(text_frame(b"x" * 1000))
    assert left == 0


def test_frames_queued_in_one_pass_share_one_time_object_and_a_later_pass_gets_its_own() -> None:
    """Every client that queues frames in one pass records the same float object as
    their queue time (2,000 clients that read nothing then hold one float per tick, not
    2,000: issue #13); frames queued a tick later get the later time."""

    async def main() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        # A new float object on each call, as a real loop's clock gives (the virtual
        # clock hands out the one it keeps, which would share it whatever the code did).
        virtual_time = loop.time
        loop.time = lambda: virtual_time() + 0.0  # type: ignore[method-assign]
        clients = [client_of_a_full_socket(lambda c, what, n: None)[0] for _ in range(3)]
        frame = text_frame(b"tick")
        for client in clients:
            client.deliver(frame, [frame])
        loop.advance(0.01)
        for client in clients:
            client.deliver(frame, [frame])
        queued = [list(c.pending_since or []) for c in clients]
        return [q[0] for q in queued], [q[1] for q in queued]

    first, second = run(main())
    assert all(t is first[0] for t in first)
    assert all(t is second[0] for t in second)
    assert second[0] - first[0] == pytest.approx(0.01)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_a_shared_time_is_within_the_grain_of_the_time_asked_and_reused_within_it(
    times: list[float],
) -> None:
    shared = SharedTime()
    for now in times:
        before = shared.latest
        given_out = shared.at(now)
        assert abs(given_out - now) < QUEUE_TIME_GRAIN_S
        if abs(now - before) < QUEUE_TIME_GRAIN_S:
            assert given_out is before
