"""The server side of the WebSocket layer (`simulator.net.wire_server`) on 127.0.0.1,
driven by a recording handler: handshakes (held or not), messages, keepalive, timeouts,
closing.

Timers are set short (tens of milliseconds) so the tests are quick; nothing asserts how
long anything took: each test waits for the handler's callbacks, bounded by the test's
own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response

from simulator.net import server as server_module
from simulator.net.log import EventKind
from simulator.net.server import serve
from simulator.net.wire import WireConfig, close_of
from simulator.net.wire_server import (
    HandshakeAnswer,
    ServerConnection,
    ServerHandler,
    WireServer,
)
from tests.e2e.conftest import (
    async_test,
    client,
    close_code,
    connected,
    expect_event,
    scenario,
)

FAST = WireConfig(
    max_size=1024,
    write_limit=2**16,
    ping_interval=None,
    ping_timeout=None,
    open_timeout=10.0,
    close_timeout=10.0,
)


class _Handler(ServerHandler):
    """A handler recording into queues (``opened``/``closed`` are callbacks, so the
    queues are named after what they hold)."""

    def __init__(self) -> None:
        #: How to answer the next handshakes, in turn; then they are accepted.
        self.answers: list[Callable[[ServerConnection], HandshakeAnswer]] = []
        self.conns: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.ends: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
        self.requests = 0

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        conn.index = self.requests
        self.requests += 1
        return self.answers.pop(0)(conn) if self.answers else None

    def opened(self, conn: ServerConnection) -> None:
        self.conns.put_nowait(conn)

    def message(self, conn: ServerConnection, message: str | bytes) -> None:
        self.messages.put_nowait(message)

    def closed(self, conn: ServerConnection) -> None:
        self.ends.put_nowait(close_of(conn))


async def started(config: WireConfig = FAST) -> tuple[WireServer, _Handler, str]:
    handler = _Handler()
    server = WireServer(handler, config)
    await server.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, handler, f"ws://127.0.0.1:{port}"


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded by the test's timeout) until ``predicate`` holds."""
    while not predicate():
        await asyncio.sleep(0.005)


async def send_raw_text(ws: ClientConnection, payload: bytes) -> None:
    """Send a text frame with ``payload`` as is (the client library would refuse bad UTF-8)."""
    ws.protocol.send_text(payload)
    ws.send_data()


# ----------------------------------------------------------------------------- messages


@async_test()
async def test_messages_arrive_whole_with_their_type() -> None:
    """Text arrives as str, binary as bytes, and a fragmented message as one message."""
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    await ws.send("plain")
    await ws.send(b"\x00\x01")
    await ws.send(["frag", "mented"])  # an iterable is sent as fragments
    await ws.send([b"bi", b"nary"])
    got = [await handler.messages.get() for _ in range(4)]
    assert got == ["plain", b"\x00\x01", "fragmented", b"binary"]
    await ws.close()
    await server.close()


@async_test()
async def test_invalid_utf8_closes_with_1007_and_is_not_delivered() -> None:
    """A text message that is not UTF-8 fails the connection with 1007 (RFC 6455 §8.1)."""
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    await send_raw_text(ws, b"ok \xff\xfe")
    assert await close_code(ws) == 1007
    code, _, by = await handler.ends.get()
    assert (code, by) == (1007, "server")
    assert handler.messages.empty()
    await server.close()


@async_test()
async def test_message_over_max_size_closes_with_1009() -> None:
    """A message over ``max_size``, even in fragments under it, is closed with 1009."""
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    await ws.send(["x" * 600, "y" * 600])  # 1200 bytes in all, over 1024
    assert await close_code(ws) == 1009
    assert (await handler.ends.get())[0] == 1009
    await server.close()


@async_test()
async def test_client_ping_gets_a_pong() -> None:
    """A WebSocket ping from the client is answered (by the sans-I/O protocol)."""
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    pong = await ws.ping(b"hi")
    latency = await pong  # the waiter resolves only when the pong arrives
    assert latency >= 0
    await ws.close()
    await server.close()


@async_test()
async def test_a_message_read_together_with_the_close_frame_is_delivered() -> None:
    """A client's last message and its close frame in one TCP segment: the message is
    the client's, sent before it closed, and reaches the handler."""
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    ws.protocol.send_text(b"last words")
    ws.protocol.send_close(1000, "bye")
    ws.send_data()  # both frames in one write
    await ws.wait_closed()
    assert await handler.messages.get() == "last words"
    assert (await handler.ends.get())[:2] == (1000, "bye")
    await server.close()


# ----------------------------------------------------------------------------- handshake


@async_test()
async def test_refused_handshake_gets_the_handlers_response_and_never_opens() -> None:
    """A response from the handler is sent instead of the 101, and nothing opens."""
    server, handler, url = await started()

    def refuse(conn: ServerConnection) -> Response:
        response = conn.protocol.reject(503, "busy\n")
        response.headers["Retry-After"] = "1"
        return response

    handler.answers = [refuse]
    with pytest.raises(InvalidStatus) as refused:
        await client(url)
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "1"
    assert handler.requests == 1 and handler.conns.empty()
    await server.close()


@async_test()
async def test_held_handshake_does_not_hold_up_other_connections() -> None:
    """While one handshake waits on the handler, another connection opens and talks; the
    held one opens once the handler answers."""
    server, handler, url = await started()
    release: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
    handler.answers = [lambda conn: release]
    first = asyncio.ensure_future(client(url))
    await until(lambda: handler.requests == 1)
    second = await client(url)
    conn = await handler.conns.get()
    assert conn.index == 1
    await second.send("second is in")
    assert await handler.messages.get() == "second is in"
    assert not first.done()
    release.set_result(None)
    ws = await first
    assert (await handler.conns.get()).index == 0
    await ws.close()
    await second.close()
    await server.close()


@async_test()
async def test_handshake_that_never_finishes_is_dropped_after_open_timeout() -> None:
    """A TCP connection that sends no complete request is closed after ``open_timeout``."""
    config = WireConfig(open_timeout=0.05, ping_interval=None, ping_timeout=None)
    server, handler, _ = await started(config)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
    assert await reader.read() == b""  # the server closed it
    writer.close()
    await until(lambda: not server.connections)
    assert handler.conns.empty() and handler.ends.empty()
    await server.close()


# ----------------------------------------------------------------------------- keepalive


@async_test()
async def test_client_that_answers_pings_stays_open_across_keepalive_rounds() -> None:
    """Pings are sent every ``ping_interval``; a client that answers is not closed."""
    config = WireConfig(ping_interval=0.02, ping_timeout=0.5)
    server, handler, url = await started(config)
    ws = await client(url)  # websockets answers pings as it reads
    await handler.conns.get()
    reader = asyncio.ensure_future(close_code(ws))
    await until(lambda: server.keepalive.pings >= 4)
    assert not reader.done() and handler.ends.empty()
    await ws.close()
    await reader
    await server.close()


@async_test()
async def test_client_that_does_not_answer_pings_is_closed_with_1011() -> None:
    """No pong within ``ping_timeout``: the server closes with 1011."""
    config = WireConfig(ping_interval=0.02, ping_timeout=0.02, close_timeout=0.05)
    server, handler, url = await started(config)
    ws = await client(url)
    await handler.conns.get()
    ws.transport.pause_reading()  # reads nothing, so answers no ping
    assert await handler.ends.get() == (1011, "keepalive ping timeout", "server")
    ws.transport.abort()
    await server.close()


@async_test()
async def test_connection_with_keepalive_stopped_is_not_pinged_until_it_restarts() -> None:
    """``stop_keepalive`` (a stalled connection) spares it pings and the 1011."""
    config = WireConfig(ping_interval=0.02, ping_timeout=0.02, close_timeout=0.05)
    server, handler, url = await started(config)
    ws = await client(url)
    conn = await handler.conns.get()
    conn.stop_keepalive()
    ws.transport.pause_reading()
    rounds = server.keepalive.pings
    await until(lambda: server.keepalive.pings >= rounds + 4)
    assert handler.ends.empty() and conn.ping is None
    conn.start_keepalive()
    assert (await handler.ends.get())[0] == 1011
    ws.transport.abort()
    await server.close()


# ----------------------------------------------------------------------------- closing


@async_test()
async def test_close_is_a_clean_handshake_reported_as_the_servers() -> None:
    """``close`` sends the code, the client answers, and it ends as the server's close."""
    server, handler, url = await started()
    ws = await client(url)
    conn = await handler.conns.get()
    reader = asyncio.ensure_future(close_code(ws))
    await conn.close(4000, "bye")
    assert await reader == 4000
    assert await handler.ends.get() == (4000, "bye", "server")
    await server.close()


@async_test()
async def test_client_close_is_reported_as_the_clients() -> None:
    server, handler, url = await started()
    ws = await client(url)
    await handler.conns.get()
    await ws.close(4001, "leaving")
    assert await handler.ends.get() == (4001, "leaving", "client")
    await server.close()


@async_test()
async def test_client_that_ignores_the_close_frame_is_aborted_after_close_timeout() -> None:
    config = WireConfig(ping_interval=None, ping_timeout=None, close_timeout=0.05)
    server, handler, url = await started(config)
    ws = await client(url)
    conn = await handler.conns.get()
    ws.transport.pause_reading()
    conn.start_close(1000, "")
    assert await handler.ends.get() == (1000, "", "server")
    assert not server.connections
    ws.transport.abort()
    await server.close()


@async_test()
async def test_abort_ends_with_1006_reported_as_the_networks() -> None:
    """An aborted transport (an injected reset) sends no close frame: 1006 both ways."""
    server, handler, url = await started()
    ws = await client(url)
    conn = await handler.conns.get()
    conn.transport.abort()
    assert await close_code(ws) == 1006
    assert await handler.ends.get() == (1006, "", "network")
    await server.close()


@async_test()
async def test_server_close_closes_every_connection_with_1001_even_a_paused_one() -> None:
    """Closing the server closes each open connection with 1001; one whose reading is
    paused (a stall) is resumed so that its closing handshake completes too."""
    # A close timeout longer than the test may run: only completed handshakes pass.
    config = WireConfig(ping_interval=None, ping_timeout=None, close_timeout=600.0)
    server, handler, url = await started(config)
    sockets = [await client(url) for _ in range(3)]
    conns = [await handler.conns.get() for _ in range(3)]
    conns[1].transport.pause_reading()
    readers = [asyncio.ensure_future(close_code(ws)) for ws in sockets]
    await server.close()
    assert [await r for r in readers] == [1001, 1001, 1001]
    ends = [await handler.ends.get() for _ in range(3)]
    assert ends == [(1001, "", "server")] * 3


@async_test()
async def test_server_close_answers_a_held_handshake_with_503() -> None:
    server, handler, url = await started()
    never: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
    handler.answers = [lambda conn: never]
    held = asyncio.ensure_future(client(url))
    await until(lambda: handler.requests == 1)
    await server.close()
    with pytest.raises(InvalidStatus) as refused:
        await held
    assert refused.value.response.status_code == 503


@async_test()
async def test_open_connections_cost_no_task() -> None:
    """An open, idle connection has no task of its own (the point of this layer)."""
    config = WireConfig(ping_interval=0.05, ping_timeout=0.05)
    server, handler, url = await started(config)
    before = len(asyncio.all_tasks())
    sockets = [await client(url) for _ in range(20)]
    for _ in sockets:
        await handler.conns.get()
    # websockets' client has tasks of its own (keepalive off: none per connection).
    assert len(asyncio.all_tasks()) == before
    for ws in sockets:
        await ws.close()
    await server.close()


@async_test()
async def test_handler_failing_on_a_message_closes_that_client_with_1011_only() -> None:
    """A bug in the handler is contained: that client gets 1011, another goes on."""
    server, handler, url = await started()
    good, bad = await client(url), await client(url)
    await handler.conns.get()
    await handler.conns.get()
    record = handler.message

    def message(conn: ServerConnection, message: str | bytes) -> None:
        if message == "boom":
            raise RuntimeError("a bug")
        record(conn, message)

    handler.message = message  # type: ignore[method-assign]
    await bad.send("boom")
    assert await close_code(bad) == 1011
    await good.send("still here")
    assert await handler.messages.get() == "still here"
    await good.close()
    await server.close()


# ----------------------------------------------------------------------------- sim run


STALLED_FOR_EVER = """
[scenario]
name = "stalled"
[[stream]]
name = "tick"
every = "100ms"
[stream.fields]
n = 1
[[fault]]
name = "freeze"
kind = "stall"
at = "1s"
"""


@async_test()
async def test_leaving_serve_closes_a_stalled_client_with_1001_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection stalled by a fault (reading paused) still gets 1001 and completes the
    closing handshake when the server stops: its close frame is read, not waited out."""
    # Longer than the test may run: only a completed closing handshake lets it pass.
    monkeypatch.setattr(server_module, "CLOSE_TIMEOUT_S", 600.0)
    async with serve(scenario(STALLED_FOR_EVER), port=0, speed=10) as server:
        stalled = expect_event(server, EventKind.FAULT, injected="stall")
        conn, ws = await connected(server)
        await stalled
        reader = asyncio.ensure_future(close_code(ws))
    assert await reader == 1001
    [gone] = server.log.of_kind(EventKind.DISCONNECTED)
    assert (gone.conn, gone.detail["code"], gone.detail["by"]) == (conn, 1001, "server")
