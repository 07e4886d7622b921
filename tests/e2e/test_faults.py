"""Faults as websockets' own asyncio client sees them over real sockets on 127.0.0.1:
only what a socket and a client we did not write can show. Every fault kind, with
exact timing, is in ``tests/net/test_faults.py`` (virtual clock, in-memory transports).

Scenario time runs ``speed`` times faster than the wall clock, so ``at = "1s"`` at
``speed = 10`` happens 100 ms after the server starts. Timing is only bounded on the
safe side (a fault never happens early).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from simulator.net.log import EventKind
from simulator.net.server import serve
from tests.e2e.conftest import (
    EPOCH_NS,
    S,
    async_test,
    client,
    connected,
    expect_event,
    scenario,
)
from tests.net.test_faults import MS, TICK_NS, assert_reported, fault, feed, injected, seq_of


async def frames_until_closed(ws: ClientConnection) -> tuple[list[str], ConnectionClosed]:
    """Every frame until the connection ends, and the exception that ended it."""
    got: list[str] = []
    try:
        while True:
            got.append(str(await ws.recv()))
    except ConnectionClosed as closed:
        return got, closed


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


@async_test(timeout=5)  # were pongs answered, nothing would end the connection
async def test_stalled_connection_is_noticed_only_by_the_clients_keepalive() -> None:
    """A stall sends nothing and reads nothing but keeps TCP open (no FIN, no reset):
    websockets' client notices only when its keepalive ping goes unanswered, and fails
    the connection with 1011 itself."""
    sc = feed(fault("freeze", "stall", at="500ms"))  # for ever
    # speed 10: the stall begins 50 ms after the server starts (scenario 0.5 s); the
    # client pings 100 ms after it connects, gives up 200 ms later, and drops the
    # connection after waiting 100 ms more for the server to close it.
    async with serve(sc, port=0, speed=10, epoch_ns=EPOCH_NS) as server:
        stalled = expect_event(server, EventKind.FAULT, injected="stall")
        conn, ws = await connected(server, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.1)
        await stalled
        frames, closed = await frames_until_closed(ws)
        assert_reported(server)

    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is None
    assert closed.sent is not None
    assert (closed.sent.code, closed.sent.reason) == (1011, "keepalive ping timeout")
    assert all(seq_of(f) * TICK_NS <= 500 * MS for f in frames)  # nothing since the stall
    [start] = injected(server, "stall", conn)
    assert start.t_ns >= 500 * MS - MS


@async_test()
async def test_outage_resets_clients_and_refuses_handshakes_with_503_and_retry_after() -> None:
    """Outage 1-4 s: the open client's connection is reset (1006, no close frame), and a
    new handshake is refused: websockets raises InvalidStatus, 503 with Retry-After: 1."""
    sc = feed(fault("down", "outage", at="1s", duration="3s"))
    # speed 5: the outage begins 200 ms after the server starts; Retry-After is its 3 s
    # of scenario time in wall seconds (0.6 s), rounded up.
    async with serve(sc, port=0, speed=5, epoch_ns=EPOCH_NS) as server:
        _, ws = await connected(server)
        frames, closed = await frames_until_closed(ws)
        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        assert_reported(server)

    assert frames
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
    assert ws.close_code == 1006
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    [refusal] = injected(server, "handshake_refused")
    assert (refusal.detail["status"], refusal.detail["retry_after_s"]) == (503, 1)


@async_test()
async def test_a_stall_on_a_throttled_connection_sends_nothing_until_it_ends() -> None:
    """A throttle's queue went on draining through a stall (21 messages arrived while
    the connection was to be silent); it resumes when the stall ends."""
    sc = scenario(
        '[scenario]\nname = "st"\n[[stream]]\nname = "tick"\nevery = "10ms"\n'
        '[[fault]]\nname = "slow"\nkind = "throttle"\nat = "100ms"\nduration = "5s"\n'
        "bytes_per_s = 1000\n"
        '[[fault]]\nname = "freeze"\nkind = "stall"\nat = "1s"\nduration = "2s"\n'
    )
    async with serve(sc, port=0, speed=4) as server:
        ws = await client(server.url)
        arrivals: list[float] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(4.0 / 4):  # 4 s of scenario time
                while True:
                    await ws.recv()
                    arrivals.append(server.virtual_ns() / S)
        await ws.close()
    # (A message a drain tick wrote just before the stall may still be on its way.)
    assert not [t for t in arrivals if 1.1 < t < 2.95], arrivals
    assert [t for t in arrivals if t > 3.0], "the throttle drained again after the stall"


@pytest.mark.parametrize("mode", ["broadcast", "per-connection"])
@async_test()
async def test_a_connection_opening_just_after_a_faults_time_is_not_hit_by_it(mode: str) -> None:
    """Its open time went to the fault planner taken down to a whole millisecond (for
    exact timestamps): at --speed 0.01 a connection opening 0.3 ms of scenario time
    (30 ms of wall time) after a reset's `at` was reset."""
    sc = scenario(
        f'[scenario]\nname = "floor"\n[server]\nmode = "{mode}"\n'
        '[[stream]]\nname = "tick"\nevery = "1h"\n'
        '[[fault]]\nname = "cut"\nkind = "reset"\nat = "10ms"\n'
    )
    async with serve(sc, port=0, speed=0.01) as server:
        while server.virtual_ns() < 10_300_000:  # 1.03 s of wall time
            await asyncio.sleep(0.005)
        ws = await client(server.url)
        await asyncio.sleep(0.3)
        assert [i.kind for i in server.injected] == []
        await ws.close()
