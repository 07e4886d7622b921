"""The in-memory transport shows protocols what asyncio's TCP transport shows them:
ordered bytes from later callbacks, asyncio's flow control, EOF, close and reset.

Every test runs on the virtual clock; ``await settle()`` returns once nothing is left to
run (the clock only jumps when the loop is idle).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from simulator.net.memory import READ_SIZE, MemoryTransport, open_pipe
from simulator.testing.virtual_time import run

Event = tuple[Any, ...]


async def settle() -> None:
    """Return once every pending callback has run (on the virtual clock, a sleep ends
    only when the loop has nothing else to do)."""
    await asyncio.sleep(1)


class Recorder(asyncio.Protocol):
    """Records what its transport tells it; ``keep_open`` is its answer to an EOF."""

    def __init__(self, log: list[str] | None = None, *, keep_open: bool = False) -> None:
        self.events: list[Event] = []
        self.keep_open = keep_open
        self.log = log
        self.transport: MemoryTransport
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, MemoryTransport)
        self.transport = transport
        self.events.append(("made",))
        if self.log is not None:
            self.log.append(f"{transport.get_extra_info('sockname')} made")

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def eof_received(self) -> bool:
        self.events.append(("eof",))
        return self.keep_open

    def pause_writing(self) -> None:
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self) -> None:
        self.events.append(("resume", self.transport.get_write_buffer_size()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", type(exc)))
        self.lost.set_result(exc)

    @property
    def received(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


async def pair(
    server: Callable[[], Recorder] = Recorder, client: Callable[[], Recorder] = Recorder
) -> tuple[Recorder, Recorder]:
    """A connected (server, client) pair of recorders."""
    made: list[Recorder] = []

    def server_factory() -> Recorder:
        made.append(server())
        return made[0]

    _, client_protocol = await open_pipe(server_factory, client)
    return made[0], client_protocol


def on_virtual_clock(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on the virtual clock, with a real-time limit."""

    def sync_test() -> None:
        run(test(), timeout_real_s=10)

    sync_test.__name__ = test.__name__
    sync_test.__doc__ = test.__doc__
    return sync_test


# ------------------------------------------------------------------- opening


@on_virtual_clock
async def test_open_pipe_makes_the_server_then_the_client_before_returning() -> None:
    """connection_made runs on the server's protocol, then the client's, then open_pipe
    returns the client's transport and protocol."""
    log: list[str] = []
    transport, client = await open_pipe(lambda: Recorder(log), lambda: Recorder(log))
    assert log == ["('127.0.0.1', 8765) made", "('127.0.0.1', 32768) made"]
    assert client.transport is transport
    assert transport.get_protocol() is client


@on_virtual_clock
async def test_each_end_names_itself_and_its_peer_and_has_no_socket() -> None:
    """peername and sockname are crossed; client ports count up per loop; no socket."""
    server, client = await pair()
    _, other = await open_pipe(Recorder, Recorder, client_address=("10.0.0.7", 4000))
    assert server.transport.get_extra_info("peername") == ("127.0.0.1", 32768)
    assert server.transport.get_extra_info("sockname") == ("127.0.0.1", 8765)
    assert client.transport.get_extra_info("peername") == ("127.0.0.1", 8765)
    assert client.transport.get_extra_info("sockname") == ("127.0.0.1", 32768)
    assert client.transport.get_extra_info("socket") is None
    assert other.transport.get_extra_info("sockname") == ("10.0.0.7", 4000)
    _, third = await open_pipe(Recorder, Recorder)
    assert third.transport.get_extra_info("sockname") == ("127.0.0.1", 32769)


# ------------------------------------------------------------------- data


@on_virtual_clock
async def test_bytes_arrive_in_order_from_a_later_callback() -> None:
    """Nothing reaches the peer during write(); it all arrives, in order, afterwards, and
    the write buffer counts it until then."""
    server, client = await pair()
    client.transport.write(b"ab")
    client.transport.write(bytearray(b"c"))
    client.transport.writelines([b"d", memoryview(b"ef")])
    client.transport.write(b"")
    assert server.events == [("made",)]  # no re-entrancy
    assert client.transport.get_write_buffer_size() == 6
    await settle()
    assert server.received == b"abcdef"
    assert client.transport.get_write_buffer_size() == 0


@on_virtual_clock
async def test_a_peer_answering_from_data_received_is_not_called_back_inside_it() -> None:
    """An echo server answers from data_received; each side's callbacks run one at a
    time, so the conversation keeps its order both ways."""

    class Echo(Recorder):
        depth = 0

        def data_received(self, data: bytes) -> None:
            Echo.depth += 1
            assert Echo.depth == 1
            super().data_received(data)
            self.transport.write(data.upper())
            Echo.depth -= 1

    server, client = await pair(server=Echo)
    for word in (b"one ", b"two ", b"three"):
        client.transport.write(word)
        await settle()
    assert server.received == b"one two three"
    assert client.received == b"ONE TWO THREE"


@on_virtual_clock
async def test_a_large_write_arrives_in_read_sized_chunks() -> None:
    """At most READ_SIZE bytes reach data_received at once, as asyncio reads them."""
    server, client = await pair()
    client.transport.write(bytes(READ_SIZE + 10))
    await settle()
    assert [len(e[1]) for e in server.events if e[0] == "data"] == [READ_SIZE, 10]


@on_virtual_clock
async def test_write_refuses_what_is_not_bytes() -> None:
    _, client = await pair()
    with pytest.raises(TypeError, match="bytes-like object, not 'str'"):
        client.transport.write("text")  # type: ignore[arg-type]


# ------------------------------------------------------------------- flow control


@on_virtual_clock
async def test_write_buffer_limits_default_to_asyncios() -> None:
    """64 KiB high, a quarter of it low; one given mark sets the other as asyncio does."""
    _, client = await pair()
    transport = client.transport
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError, match=r"high \(10\) must be >= low \(20\)"):
        transport.set_write_buffer_limits(high=10, low=20)


@on_virtual_clock
async def test_a_paused_reader_takes_nothing_so_the_writer_pauses_over_high() -> None:
    """While the server reads nothing, the client's buffer holds all it wrote; going over
    the high-water mark pauses its protocol once; at the mark exactly does not."""
    server, client = await pair()
    server.transport.pause_reading()
    assert not server.transport.is_reading()
    client.transport.set_write_buffer_limits(high=100, low=20)
    client.transport.write(bytes(100))
    await settle()
    assert client.transport.get_write_buffer_size() == 100
    assert "pause" not in client.kinds()
    client.transport.write(b"x")
    client.transport.write(b"y")
    assert client.events[1:] == [("pause", 101)]
    assert server.received == b""


@on_virtual_clock
async def test_the_writer_resumes_only_once_drained_to_low() -> None:
    """Resumed reading drains the buffer a chunk at a time; resume_writing comes when it
    is at or below the low-water mark, not before."""
    server, client = await pair()
    server.transport.pause_reading()
    client.transport.write(bytes(READ_SIZE + 20 * 1024))  # over the 16 KiB low mark
    assert client.events[1:] == [("pause", READ_SIZE + 20 * 1024)]
    server.transport.resume_reading()
    assert server.transport.is_reading()
    await asyncio.sleep(0)
    assert [len(e[1]) for e in server.events if e[0] == "data"] == [READ_SIZE]
    assert client.kinds() == ["made", "pause"]
    await settle()
    assert client.events[1:] == [("pause", READ_SIZE + 20 * 1024), ("resume", 0)]


@on_virtual_clock
async def test_lowering_the_high_mark_under_the_buffer_pauses_at_once() -> None:
    server, client = await pair()
    server.transport.pause_reading()
    client.transport.write(bytes(500))
    client.transport.set_write_buffer_limits(high=400)
    assert client.events[1:] == [("pause", 500)]


# ------------------------------------------------------------------- EOF and closing


@on_virtual_clock
async def test_a_paused_reader_sees_the_eof_only_after_the_data_once_resumed() -> None:
    server, client = await pair(server=lambda: Recorder(keep_open=True))
    server.transport.pause_reading()
    client.transport.write(b"last words")
    client.transport.write_eof()
    await settle()
    assert server.kinds() == ["made"]
    server.transport.resume_reading()
    await settle()
    assert server.events == [("made",), ("data", b"last words"), ("eof",)]


@on_virtual_clock
async def test_a_falsy_eof_answer_closes_the_peer_which_sends_its_own_eof() -> None:
    """write_eof: the server gets the data then the EOF; its eof_received returns None,
    so its transport closes, and the client in turn sees an EOF."""
    server, client = await pair()
    assert client.transport.can_write_eof()
    client.transport.write(b"bye")
    client.transport.write_eof()
    with pytest.raises(RuntimeError, match=r"write\(\) after write_eof\(\)"):
        client.transport.write(b"more")
    await settle()
    assert server.events == [("made",), ("data", b"bye"), ("eof",), ("lost", type(None))]
    assert client.events == [("made",), ("eof",), ("lost", type(None))]


@on_virtual_clock
async def test_a_truthy_eof_answer_keeps_the_peer_open_for_writing() -> None:
    """A half-closed connection still carries data the other way."""
    server, client = await pair(server=lambda: Recorder(keep_open=True))
    client.transport.write_eof()
    await settle()
    assert not server.transport.is_closing()
    server.transport.write(b"reply")
    server.transport.close()
    await settle()
    assert client.events == [("made",), ("data", b"reply"), ("eof",), ("lost", type(None))]
    assert server.events == [("made",), ("eof",), ("lost", type(None))]


@on_virtual_clock
async def test_close_flushes_then_loses_the_connection_then_sends_the_eof() -> None:
    server, client = await pair()
    client.transport.write(b"flushed")
    client.transport.close()
    assert client.transport.is_closing()
    assert not client.transport.is_reading()
    await settle()
    assert client.events == [("made",), ("lost", type(None))]
    assert server.events == [("made",), ("data", b"flushed"), ("eof",), ("lost", type(None))]


@on_virtual_clock
async def test_close_waits_for_a_paused_peer_to_take_the_buffer() -> None:
    """As with a socket: connection_lost comes once what was written has been taken."""
    server, client = await pair()
    server.transport.pause_reading()
    client.transport.write(b"pending")
    client.transport.close()
    await settle()
    assert client.kinds() == ["made"]
    assert client.transport.get_write_buffer_size() == 7
    server.transport.resume_reading()
    await settle()
    assert client.kinds() == ["made", "lost"]
    assert server.received == b"pending"


@on_virtual_clock
async def test_bytes_written_to_a_closed_side_are_dropped() -> None:
    """The client keeps writing after the server closed: the bytes go nowhere, and a
    paused writer is resumed as its buffer empties."""
    server, client = await pair(client=lambda: Recorder(keep_open=True))
    server.transport.close()
    await settle()
    client.transport.set_write_buffer_limits(high=10)
    client.transport.write(bytes(50))
    await settle()
    assert client.events == [("made",), ("eof",), ("pause", 50), ("resume", 0)]
    assert server.events == [("made",), ("lost", type(None))]


@on_virtual_clock
async def test_abort_discards_what_is_in_flight_and_resets_the_peer() -> None:
    """Neither side gets the bytes in flight; the aborting side loses the connection
    with None, the peer with ConnectionResetError; neither sees an EOF."""
    server, client = await pair()
    server.transport.pause_reading()
    client.transport.pause_reading()
    client.transport.write(b"to server")
    server.transport.write(b"to client")
    client.transport.abort()
    assert client.transport.is_closing() and server.transport.is_closing()
    assert client.transport.get_write_buffer_size() == 0
    assert server.transport.get_write_buffer_size() == 0
    await settle()
    assert client.events == [("made",), ("lost", type(None))]
    assert server.events == [("made",), ("lost", ConnectionResetError)]


@on_virtual_clock
async def test_connection_lost_is_called_exactly_once_per_side() -> None:
    """close, abort and more close on both sides, before and after the loss."""
    server, client = await pair()
    client.transport.close()
    client.transport.abort()
    server.transport.abort()
    client.transport.close()
    await settle()
    server.transport.close()
    server.transport.abort()
    client.transport.abort()
    await settle()
    assert client.kinds().count("lost") == 1
    assert server.kinds().count("lost") == 1


@on_virtual_clock
async def test_writes_after_the_connection_is_lost_are_ignored() -> None:
    server, client = await pair()
    client.transport.abort()
    await settle()
    client.transport.write(b"into the void")
    server.transport.write(b"into the void")
    await settle()
    assert client.transport.get_write_buffer_size() == 0
    assert server.kinds() == ["made", "lost"]


@on_virtual_clock
async def test_an_error_in_data_received_is_reported_and_closes_that_side() -> None:
    """As asyncio: the loop's exception handler gets it, that side's connection_lost gets
    it, and the peer sees the EOF of the closed socket."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))

    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ValueError("bad frame")

    server, client = await pair(server=Broken)
    client.transport.write(b"boom")
    await settle()
    assert [type(c["exception"]) for c in reported] == [ValueError]
    assert server.events == [("made",), ("lost", ValueError)]
    assert client.events == [("made",), ("eof",), ("lost", type(None))]


@on_virtual_clock
async def test_set_protocol_redirects_what_arrives() -> None:
    server, client = await pair()
    other = Recorder()
    server.transport.set_protocol(other)
    assert server.transport.get_protocol() is other
    client.transport.write(b"to the new protocol")
    await settle()
    assert other.received == b"to the new protocol"
    assert server.received == b""


# ------------------------------------------------------------------- websockets over it


class WebSocketPump(asyncio.Protocol):
    """Feeds a websockets sans-I/O protocol from its transport and back, as websockets'
    asyncio layer does: a server accepts and echoes text, a client opens the handshake."""

    def __init__(self, protocol: ServerProtocol | ClientProtocol) -> None:
        self.protocol = protocol
        self.transport: asyncio.Transport
        self.events: list[Request | Response | Frame] = []
        loop = asyncio.get_running_loop()
        self.got_event: asyncio.Event = asyncio.Event()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if isinstance(self.protocol, ClientProtocol):
            self.protocol.send_request(self.protocol.connect())
            self.send()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            self.events.append(event)
            self.got_event.set()
            if not isinstance(self.protocol, ServerProtocol):
                continue
            if isinstance(event, Request):
                self.protocol.send_response(self.protocol.accept(event))
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.protocol.send_text(bytes(event.data).upper())
        self.send()

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        self.lost.set_result(exc)

    def send(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.write_eof()  # websockets' half-close after the close frame

    async def next_event(self) -> Request | Response | Frame:
        await self.got_event.wait()
        self.got_event.clear()
        return self.events[-1]


def state_of(pump: WebSocketPump) -> State:
    return pump.protocol.state


@on_virtual_clock
async def test_a_websockets_handshake_message_and_close_run_over_it() -> None:
    """Sans-I/O server and client: the opening handshake, an echoed text message, and
    the closing handshake down to both connection_lost(None), in zero virtual time."""
    servers: list[WebSocketPump] = []

    def server_factory() -> WebSocketPump:
        servers.append(WebSocketPump(ServerProtocol()))
        return servers[0]

    _, client = await open_pipe(
        server_factory, lambda: WebSocketPump(ClientProtocol(parse_uri("ws://localhost/feed")))
    )
    response = await client.next_event()
    assert isinstance(response, Response) and response.status_code == 101
    assert state_of(client) is State.OPEN
    request = servers[0].events[0]
    assert isinstance(request, Request) and request.path == "/feed"

    client.protocol.send_text(b"hello")
    client.send()
    echo = await client.next_event()
    assert isinstance(echo, Frame) and echo.data == b"HELLO"

    client.protocol.send_close(1000, "done")
    client.send()
    assert await client.lost is None
    assert await servers[0].lost is None
    assert state_of(client) is State.CLOSED
    assert servers[0].protocol.close_rcvd is not None
    assert servers[0].protocol.close_rcvd.code == 1000
    assert asyncio.get_running_loop().time() == 0.0
