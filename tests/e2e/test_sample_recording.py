"""The sample in recordings/ is what recordings/make_sample.py says it is (a real client
at 1x, with a server restart and a reconnect), a valid recording, small, and replays to
the same bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import polars as pl
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from simulator.net.replay import replay
from simulator.storage.analysis import inspect
from simulator.storage.reader import read_recording
from tests.e2e.conftest import async_test
from tests.e2e.test_run_cli import sim_serving

SAMPLE = Path(__file__).parents[2] / "recordings" / "energy-dashboard-sample.parquet"
DASHBOARD_TYPES = {
    "system_stats",
    "dashboard_stats",
    "energy_market",
    "notification",
    "transaction",
}
#: The recorded connections: before the restart, the reconnect the proxy could not pass
#: on (the new server was not listening yet), and after it.
BEFORE, REFUSED, AFTER = 0, 1, 2


def texts(conn: int, sender: str) -> list[bytes]:
    frame = read_recording(SAMPLE).frame
    mine = frame.filter(
        (pl.col("conn") == conn) & (pl.col("kind") == "text") & (pl.col("sender") == sender)
    )
    return list(mine["payload"])


def test_sample_is_small() -> None:
    assert SAMPLE.stat().st_size < 32 * 1024


def test_sample_is_minutes_at_1x_with_a_restart_and_a_reconnect() -> None:
    """Three minutes of wall time; the server restarts (1001), the first reconnect finds
    no server (the proxy's upstream error), the next one gets the feed until the client
    closes (1000)."""
    summary = inspect(SAMPLE)
    assert summary.duration_ns >= 170 * 10**9
    codes = [c.close_code for c in summary.connections]
    assert codes == [1001, 1006, 1000]
    assert [conn for conn, _ in summary.errors] == [REFUSED]
    assert (summary.connections[REFUSED].close_reason or "").startswith("upstream: ")


@pytest.mark.parametrize("conn", [BEFORE, AFTER])
def test_on_each_connection_the_client_subscribes_then_pings_and_gets_every_stream(
    conn: int,
) -> None:
    sent = [orjson.loads(m) for m in texts(conn, "client")]
    got = [orjson.loads(m) for m in texts(conn, "server")]
    assert sent[0]["type"] == "subscribe"
    assert set(sent[0]["streams"]) == DASHBOARD_TYPES
    assert {m["type"] for m in sent[1:]} == {"ping"}
    assert len(sent) >= 5  # a ping every 10 s for about 90 s
    assert {m["type"] for m in got} >= DASHBOARD_TYPES
    assert sum(m["type"] == "pong" for m in got) == len(sent) - 1


@pytest.mark.parametrize("conn", [BEFORE, AFTER])
@async_test(timeout=30)
async def test_sample_replays_to_a_client_sending_the_recorded_messages(conn: int) -> None:
    """Sending a connection's recorded client messages in order yields its recorded
    server messages."""
    client, server = texts(conn, "client"), texts(conn, "server")
    got: list[bytes] = []
    async with replay(SAMPLE, port=0, speed=None, conn=conn) as replayer:  # noqa: SIM117
        async with websockets.connect(replayer.url, max_queue=None) as ws:
            for message in client:
                await ws.send(message.decode())
            while len(got) < len(server):
                got.append((await asyncio.wait_for(ws.recv(), 5)).encode())  # type: ignore[union-attr]
    assert got == server


@async_test(timeout=60)
async def test_sim_replay_free_run_feeds_a_client_that_sends_nothing() -> None:
    """`sim replay SAMPLE --free-run`, as a real process: a client that only listens
    (a dashboard pinging with other ids, say) gets every recorded server message of the
    first connection."""
    server = texts(BEFORE, "server")
    args = ("replay", SAMPLE, "--port", "0", "--speed", "max", "--free-run", "--quiet")
    async with sim_serving(*args) as replayer:  # noqa: SIM117 (url needed)
        async with websockets.connect(replayer.url, max_queue=None) as ws:
            got = [(await asyncio.wait_for(ws.recv(), 5)) for _ in server]
    assert [m.encode() if isinstance(m, str) else m for m in got] == server


async def first_message(url: str) -> bytes:
    """The first message a client of ``url`` gets."""
    async with websockets.connect(url, max_queue=None) as ws:
        message = await asyncio.wait_for(ws.recv(), 5)
    return message.encode() if isinstance(message, str) else message


@async_test(timeout=30)
async def test_the_reconnect_the_sample_recorded_as_refused_is_refused_with_502() -> None:
    """The second client replays the reconnect the proxy refused (its upstream was
    down): it is refused with the recorded 502 as the recorded client was, and the
    third client replays the connection after it."""
    async with replay(SAMPLE, port=0, speed=None, free_run=True) as replayer:
        assert await first_message(replayer.url) == texts(BEFORE, "server")[0]
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(replayer.url, open_timeout=5)
        assert refused.value.response.status_code == 502
        assert await first_message(replayer.url) == texts(AFTER, "server")[0]
        assert replayer.connections_total == 2 and replayer.rejected == 1


@async_test(timeout=30)
async def test_a_handshake_websockets_refuses_takes_no_recorded_connection() -> None:
    """A request that looks like an upgrade but whose key is no key (websockets
    answers 400) took the recorded refusal, and the client meant for it opened."""
    async with replay(SAMPLE, port=0, speed=None, free_run=True) as replayer:
        assert await first_message(replayer.url) == texts(BEFORE, "server")[0]
        host, port = replayer.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: not-base64\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 400 ")
        writer.close()
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(replayer.url, open_timeout=5)
        assert refused.value.response.status_code == 502
