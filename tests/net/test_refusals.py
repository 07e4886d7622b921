"""How refused handshakes reach a client, on the virtual clock over in-memory transports:
``Retry-After`` in wall seconds at the server's speed, and ``respond = "close"`` (accept,
then close at once with a close code and a reason that carries the retry-after).

Loop time is wall time here: at ``speed = 20`` a 10 s ``retry_after`` of scenario time
is 0.5 s of loop time, so the client is told ``1`` (whole seconds, rounded up).
"""

from __future__ import annotations

import pytest

from simulator.errors import ConnectError
from simulator.net.server import serve
from tests.e2e.conftest import EPOCH_NS
from tests.net.conftest import virtual_test
from tests.net.memory_client import connected, frames_until_closed, memory_websocket
from tests.net.test_faults import assert_reported, fault, feed, injected


@pytest.mark.parametrize(
    ("keys", "speed", "header"),
    [
        # The outage of issue #12: 10 s at 20x is 0.5 s of wall time.
        ({"kind": "outage", "duration": "20s", "retry_after": "10s"}, 20, "1"),
        ({"kind": "outage", "duration": "3s"}, 5, "1"),  # 0.6 s
        ({"kind": "outage", "duration": "10s"}, 4, "3"),  # 2.5 s, rounded up
        ({"kind": "outage", "duration": "3s"}, 0.5, "6"),  # slower than real time
        ({"kind": "outage", "duration": "3s"}, 1, "3"),
        ({"kind": "outage", "duration": "3s", "retry_after": "0s"}, 20, "0"),  # "at once"
        ({"kind": "reject", "status": 429, "retry_after": "10s"}, 20, "1"),
        ({"kind": "reject", "status": 503, "retry_after": "90s"}, 10, "9"),
    ],
)
@virtual_test
async def test_retry_after_is_wall_seconds_at_the_server_speed_rounded_up(
    keys: dict[str, object], speed: float, header: str
) -> None:
    """The ``Retry-After`` a refused client gets, and the one the fault record shows, is
    the scenario-time delay divided by ``speed``, rounded up to a whole second."""
    kind = str(keys.pop("kind"))
    sc = feed(fault("gate", kind, at="0s", **keys))
    async with serve(sc, speed=speed, epoch_ns=EPOCH_NS, in_memory=True) as server:
        with pytest.raises(ConnectError) as refused:
            await memory_websocket(server)
        assert_reported(server)

    assert dict(refused.value.headers)["Retry-After"] == header
    [record] = injected(server, "handshake_refused")
    assert record.detail["retry_after_s"] == int(header)


@virtual_test
async def test_outage_with_respond_close_accepts_then_closes_with_1013_and_retry_after() -> None:
    """During an outage with ``respond = "close"`` a handshake succeeds, then the
    connection is closed at once, before any message, with 1013 and
    ``retry-after=1`` (10 s at 20x); the server never counts it as a client."""
    sc = feed(fault("down", "outage", at="0s", duration="20s", retry_after="10s", respond="close"))
    async with serve(sc, speed=20, epoch_ns=EPOCH_NS, in_memory=True) as server:
        ws = await memory_websocket(server)
        frames, closed = await frames_until_closed(ws)
        stats = server.stats()
        assert_reported(server)

    assert frames == []
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1013, "retry-after=1")
    assert (stats.connections_total, stats.connections_open) == (0, 0)
    [record] = injected(server, "handshake_refused")
    assert record.detail == {
        "status": 503,
        "retry_after_s": 1,
        "delay_ns": 0,
        "respond": "close",
        "close_code": 1013,
    }


@pytest.mark.parametrize(
    ("keys", "code", "reason"),
    [
        ({"status": 401}, 4401, "Unauthorized"),
        ({"status": 403}, 4403, "Forbidden"),
        ({"status": 429, "retry_after": "10s"}, 1013, "retry-after=5"),
        ({"status": 503}, 1013, "Service Unavailable"),
        ({"status": 401, "close_code": 1008}, 1008, "Unauthorized"),
        ({"status": 429, "retry_after": "3s", "close_code": 4429}, 4429, "retry-after=2"),
    ],
)
@virtual_test
async def test_reject_with_respond_close_closes_with_the_status_code_or_its_close_code(
    keys: dict[str, object], code: int, reason: str
) -> None:
    """A reject with ``respond = "close"`` (after_connections = 1, limit = 1) lets
    attempt 0 in, closes attempt 1 at once with its code (4000 + status for 401/403,
    1013 for 429/503, or ``close_code``) and the reason (``retry-after=N`` in wall
    seconds at 2x, else the status phrase), and lets attempt 2 in."""
    sc = feed(fault("gate", "reject", respond="close", after_connections=1, limit=1, **keys))
    async with serve(sc, speed=2, epoch_ns=EPOCH_NS, in_memory=True) as server:
        first, ws0 = await connected(server)
        refused = await memory_websocket(server)
        frames, closed = await frames_until_closed(refused)
        last, ws2 = await connected(server)
        await ws0.close()
        await ws2.close()
        assert_reported(server)

    assert (first, last) == (0, 2)  # attempts are numbered, the refused one too
    assert frames == []
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (code, reason)
    [record] = injected(server, "handshake_refused")
    assert record.conn == 1
    assert (record.detail["respond"], record.detail["close_code"]) == ("close", code)
