"""`sim replay` over real sockets: a recorded session played back to a new client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator.errors import RecordingError, UsageError
from simulator.net.replay import MAX_UNEXPECTED_KEPT, MIN_MESSAGE_LIMIT, replay
from simulator.net.server import serve
from simulator.storage.schema import event_batch, new_metadata
from simulator.storage.writer import RecordingWriter
from tests.e2e.conftest import async_test, client, scenario

MS = 1_000_000
PING = '{"type": "ping", "id": 1}'

FEED = """
[scenario]
name = "replayed"
seed = 3

[server]
mode = "per-connection"

[[stream]]
name = "tick"
every = "20ms"
[stream.fields]
n = { dist = "counter" }
"""

# A row is (conn, t_ns, sender, kind, stream, payload, close_code, close_reason).
RowSpec = tuple[int, int, str, str, str | None, bytes | None, int | None, str | None]


def write(path: Path, rows: list[RowSpec]) -> Path:
    """Write ``rows`` as a recording, as `sim run --record` would have."""
    meta = new_metadata(sim_version="test", scenario="synthetic", seed=None)
    writer = RecordingWriter(path, meta)
    cols = list(zip(*rows, strict=True))
    writer.append(
        event_batch(
            seq=list(range(len(rows))),
            session="s",
            conn=list(cols[0]),
            t_ns=list(cols[1]),
            wall_ns=list(cols[1]),
            sender=list(cols[2]),
            kind=list(cols[3]),
            stream=list(cols[4]),
            payload=list(cols[5]),
            close_code=list(cols[6]),
            close_reason=list(cols[7]),
        )
    )
    writer.close()
    return path


def opened(conn: int) -> RowSpec:
    return (conn, 0, "server", "open", None, None, None, None)


def push(conn: int, t_ms: int, payload: bytes) -> RowSpec:
    return (conn, t_ms * MS, "server", "text", "tick", payload, None, None)


def said(conn: int, t_ms: int, payload: bytes) -> RowSpec:
    return (conn, t_ms * MS, "client", "text", None, payload, None, None)


def answered(conn: int, t_ms: int, payload: bytes) -> RowSpec:
    return (conn, t_ms * MS, "server", "text", None, payload, None, None)


async def read(ws: ClientConnection, n: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < n:
        message = await ws.recv()
        got.append(message.encode() if isinstance(message, str) else message)
    return got


async def arrival_times_ms(ws: ClientConnection, count: int) -> list[float]:
    """When each of the next ``count`` messages arrives, in ms from now."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    arrivals = []
    for _ in range(count):
        await ws.recv()
        arrivals.append((loop.time() - start) * 1000)
    return arrivals


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


async def record_session(out: Path, n: int) -> list[bytes]:
    """Serve FEED recorded to ``out``; a client pings, reads ``n`` messages, closes."""
    async with serve(scenario(FEED), port=0, speed=10, record=out) as server:
        ws = await client(server.url)
        await ws.send(PING)
        received = await read(ws, n)
        await ws.close()
        for _ in range(200):  # the close is processed (and recorded) before stopping
            if not server.clients:
                break
            await asyncio.sleep(0.01)
    return received


async def replayed(url: str, n: int, **kwargs: Any) -> list[bytes]:
    ws = await client(url, **kwargs)
    await ws.send(PING)
    got = await read(ws, n)
    await ws.close()
    return got


@async_test(timeout=30)
async def test_replay_sends_a_client_what_the_recorded_client_received(tmp_path: Path) -> None:
    """A client that sends the recorded ping gets the recorded messages byte for byte, in
    the recorded order, the pong included; twice in a row, and at real speed too."""
    out = tmp_path / "session.parquet"
    original = await record_session(out, 15)
    assert any(b'"pong"' in m for m in original)
    async with replay(out, speed=None, conn=0) as server:
        first = await replayed(server.url, 15)
        second = await replayed(server.url, 15)
        assert server.unexpected == []
    async with replay(out, speed=1.0) as server:
        third = await replayed(server.url, 15)
    assert first == original
    assert second == original
    assert third == original


@async_test(timeout=30)
async def test_reply_waits_for_the_client_message_it_answers(tmp_path: Path) -> None:
    """Pushes recorded before the ping arrive without it; the pong, and everything
    recorded after it, only once the client has sent the ping."""
    out = write(
        tmp_path / "r.parquet",
        [
            opened(0),
            push(0, 1, b"a"),
            said(0, 2, b'{"type":"ping","id":1}'),
            answered(0, 3, b'{"type":"pong","id":1}'),
            push(0, 4, b"b"),
        ],
    )
    async with replay(out, speed=None) as server:
        ws = await client(server.url)
        assert await read(ws, 1) == [b"a"]
        # Nothing more comes while the ping is not sent.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await ws.recv()
        await ws.send('{ "id": 1, "type": "ping" }')  # JSON-equal to the recorded one
        assert await read(ws, 2) == [b'{"type":"pong","id":1}', b"b"]
        await ws.close()
        assert server.unexpected == []


@async_test(timeout=30)
async def test_replies_keep_their_recorded_distance_from_the_message_they_answer(
    tmp_path: Path,
) -> None:
    """A proxy records no streams: everything the server sent after a client message
    answers it. Each goes out at its recorded distance from that message (within
    150 ms), not at its distance from the one before (which would add the delays up:
    200, 600, 1,200 and 2,000 ms here)."""
    offsets = [200, 400, 600, 800]
    rows = [opened(0), said(0, 0, b'{"type":"subscribe"}')]
    rows += [answered(0, t, b"%d" % t) for t in offsets]
    out = write(tmp_path / "proxied.parquet", rows)
    async with replay(out, speed=1.0) as server:
        ws = await client(server.url)
        await ws.send('{"type":"subscribe"}')
        arrivals = await arrival_times_ms(ws, len(offsets))
        await ws.close()
    for want, got in zip(offsets, arrivals, strict=True):
        assert want - 20 <= got <= want + 150, (offsets, arrivals)


@async_test(timeout=30)
async def test_speed_one_keeps_recorded_timing(tmp_path: Path) -> None:
    """At speed 1, a one-second recording takes about one second, each message near
    its recorded offset from the connect (within 150 ms)."""
    offsets = [0, 250, 500, 750, 1000]
    rows = [opened(0)] + [push(0, t, b"%d" % t) for t in offsets]
    out = write(tmp_path / "timed.parquet", rows)
    async with replay(out, speed=1.0) as server:
        ws = await client(server.url)
        arrivals = await arrival_times_ms(ws, len(offsets))
        await ws.close()
    for want, got in zip(offsets, arrivals, strict=True):
        assert want - 20 <= got <= want + 150, (offsets, arrivals)


@async_test(timeout=30)
async def test_strict_closes_on_an_unexpected_message_with_1008(tmp_path: Path) -> None:
    """With strict, a message the recording does not have closes with 1008; without,
    it is collected and the replay goes on."""
    rows = [opened(0), said(0, 1, b'{"type":"ping"}'), answered(0, 2, b"pong"), push(0, 3, b"x")]
    out = write(tmp_path / "s.parquet", rows)
    async with replay(out, speed=None, strict=True) as server:
        ws = await client(server.url)
        await ws.send('{"type":"nope"}')
        await ws.send('{"type":"also not"}')  # in flight while closing: not counted
        assert await closed_with(ws) == (1008, "unexpected message")
        assert [u.payload for u in server.unexpected] == [b'{"type":"nope"}']
    async with replay(out, speed=None) as server:
        ws = await client(server.url)
        await ws.send('{"type":"nope"}')
        await ws.send('{"type":"ping"}')
        assert await read(ws, 2) == [b"pong", b"x"]
        await ws.close()
        assert len(server.unexpected) == 1


@async_test(timeout=30)
async def test_clients_map_to_recorded_connections_in_order_and_wrap(tmp_path: Path) -> None:
    """The i-th client replays the i-th recorded connection, wrapping; ``conn`` pins one;
    a recorded server close is replayed with its code and reason."""
    rows = [
        opened(0),
        push(0, 1, b"zero"),
        opened(1),
        push(1, 1, b"one"),
        (1, 2 * MS, "server", "close", None, None, 4000, "bye"),
    ]
    out = write(tmp_path / "m.parquet", rows)
    async with replay(out, speed=None, log_sends=True) as server:
        got = []
        for _ in range(3):
            ws = await client(server.url)
            got.append((await read(ws, 1))[0])
            await ws.close()
        assert got == [b"zero", b"one", b"zero"]
        assert server.sent is not None
        assert [(s.conn, s.recorded_conn, s.payload) for s in server.sent] == [
            (0, 0, b"zero"),
            (1, 1, b"one"),
            (2, 0, b"zero"),
        ]
    async with replay(out, speed=None, conn=1) as server:
        ws = await client(server.url)
        assert await read(ws, 1) == [b"one"]
        assert await closed_with(ws) == (4000, "bye")


@async_test(timeout=30)
async def test_loop_starts_the_recording_over(tmp_path: Path) -> None:
    """With loop, a connection's recording plays again when it ends."""
    out = write(tmp_path / "l.parquet", [opened(0), push(0, 1, b"a"), push(0, 2, b"b")])
    async with replay(out, speed=None, loop=True) as server:
        ws = await client(server.url)
        assert await read(ws, 6) == [b"a", b"b"] * 3
        await ws.close()


@async_test(timeout=30)
async def test_bad_file_or_argument_fails_before_serving(tmp_path: Path) -> None:
    """A truncated recording gives RecordingError, a conn not in it UsageError."""
    out = write(tmp_path / "t.parquet", [opened(0), push(0, 1, b"a")])
    with pytest.raises(UsageError, match="conn=5"):
        async with replay(out, conn=5):
            pass
    with pytest.raises(UsageError, match="speed="):
        async with replay(out, speed=0):
            pass
    data = out.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match="truncated"):
        async with replay(cut):
            pass


@async_test(timeout=30)
async def test_recorded_dropped_connection_is_replayed_as_a_drop(tmp_path: Path) -> None:
    """A recorded 1006 (no close frame) ends the replayed connection without one too."""
    rows = [opened(0), push(0, 1, b"a"), (0, 2 * MS, "server", "close", None, None, 1006, "")]
    out = write(tmp_path / "d.parquet", rows)
    async with replay(out, speed=None) as server:
        ws = await client(server.url)
        assert await read(ws, 1) == [b"a"]
        assert (await closed_with(ws))[0] == 1006


@async_test(timeout=30)
async def test_ignored_fields_do_not_keep_a_client_message_from_matching(tmp_path: Path) -> None:
    """--ignore '$.id' --ignore '$..ts': a ping with another id and timestamp gets the
    recorded reply; without them it is unexpected."""
    recorded_ping = b'{"type":"ping","id":1,"meta":{"ts":"10:00"}}'
    rows = [opened(0), said(0, 1, recorded_ping), answered(0, 2, b'{"type":"pong"}')]
    out = write(tmp_path / "i.parquet", rows)
    live_ping = '{"type":"ping","id":7,"meta":{"ts":"11:30"}}'
    async with replay(out, speed=None, ignore=["$.id", "$..ts"]) as server:
        ws = await client(server.url)
        await ws.send(live_ping)
        assert await ws.recv() == '{"type":"pong"}'
        await ws.close()
        assert server.unexpected == []
    async with replay(out, speed=None) as server:
        ws = await client(server.url)
        await ws.send(live_ping)
        for _ in range(500):
            if server.unexpected:
                break
            await asyncio.sleep(0.01)
        await ws.close()
        assert [u.payload for u in server.unexpected] == [live_ping.encode()]
    with pytest.raises(UsageError, match="--ignore"):
        async with replay(out, ignore=["$.id=hash"]):
            pass


@async_test(timeout=30)
async def test_a_flood_of_unexpected_messages_is_counted_not_kept(tmp_path: Path) -> None:
    """Memory stays bounded: the first MAX_UNEXPECTED_KEPT are kept, all are counted."""
    out = write(tmp_path / "f.parquet", [opened(0), said(0, 1, PING.encode())])
    async with replay(out, speed=None) as server:
        ws = await client(server.url)
        for k in range(MAX_UNEXPECTED_KEPT + 5):
            await ws.send(f"junk {k}")
            if k % 900 == 899:
                await asyncio.sleep(1.05)  # under the frame budget (CLIENT_FRAMES_PER_S)
        while server.unexpected_count < MAX_UNEXPECTED_KEPT + 5:
            await asyncio.sleep(0.01)
        await ws.close()
        assert len(server.unexpected) == MAX_UNEXPECTED_KEPT
        assert server.unexpected[0].payload == b"junk 0"


@async_test(timeout=30)
async def test_a_file_whose_rows_are_out_of_seq_order_replays_in_seq_order(
    tmp_path: Path,
) -> None:
    """Rows are read a slice at a time in file order; a file not in seq order (written
    by another tool) is sorted instead."""
    rows = [opened(0), push(0, 1, b"a"), push(0, 2, b"b"), push(0, 3, b"c")]
    cols = list(zip(*rows, strict=True))
    meta = new_metadata(sim_version="test", scenario="shuffled", seed=None)
    writer = RecordingWriter(tmp_path / "s.parquet", meta)
    writer.append(
        event_batch(
            seq=[0, 3, 1, 2],  # the rows of b"c" and b"a" swapped places in the file
            session="s",
            conn=list(cols[0]),
            t_ns=[0, 3 * MS, 1 * MS, 2 * MS],
            wall_ns=list(cols[1]),
            sender=list(cols[2]),
            kind=list(cols[3]),
            stream=list(cols[4]),
            payload=[None, b"c", b"a", b"b"],
            close_code=list(cols[6]),
            close_reason=list(cols[7]),
        )
    )
    writer.close()
    async with replay(tmp_path / "s.parquet", speed=None) as server:
        ws = await client(server.url)
        assert await read(ws, 3) == [b"a", b"b", b"c"]
        await ws.close()


@async_test(timeout=30)
async def test_free_run_sends_everything_without_waiting_for_the_client(tmp_path: Path) -> None:
    """A client that sends nothing (or something else) still gets the recorded reply and
    what follows it, and nothing it sends is unexpected."""
    rows = [
        opened(0),
        push(0, 1, b"a"),
        said(0, 2, PING.encode()),
        answered(0, 3, b"pong"),
        push(0, 4, b"b"),
    ]
    out = write(tmp_path / "free.parquet", rows)
    async with replay(out, speed=None, free_run=True) as server:
        ws = await client(server.url)
        await ws.send("something else")
        assert await read(ws, 3) == [b"a", b"pong", b"b"]
        await ws.close()
        assert server.unexpected_count == 0
    with pytest.raises(UsageError, match="strict"):
        async with replay(out, free_run=True, strict=True):
            pass


@async_test()
async def test_past_max_connections_a_handshake_gets_503_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    out = write(tmp_path / "c.parquet", [opened(0), push(0, 1, b"a")])
    async with replay(out, speed=None, loop=True, max_connections=1) as server:
        first = await client(server.url)
        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"
        assert await first.recv() == "a"  # the one within the limit is served
        await first.close()


@async_test()
async def test_a_client_message_larger_than_any_recorded_and_than_1_mib_gets_1009(
    tmp_path: Path,
) -> None:
    out = write(tmp_path / "m.parquet", [opened(0), said(0, 1, PING.encode())])
    async with replay(out, speed=None) as server:
        ws = await client(server.url, max_size=None)
        await ws.send("x" * (MIN_MESSAGE_LIMIT + 1))
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 1009
