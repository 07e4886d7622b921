"""The connection pump (`simulator.net.wire`) bytes in, bytes out, with no socket and no
peer: a transport that only records what is written, and websockets' own
``ClientProtocol`` to make the client's bytes and read the server's — the way
websockets tests its protocol."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.uri import parse_uri

from simulator.net.wire import Connection, Handler, WireConfig
from simulator.net.wire_server import ServerConnection, WireServer
from simulator.testing.virtual_time import run

CONFIG = WireConfig(ping_interval=None, ping_timeout=None, close_timeout=2.0)


class Tape(asyncio.Transport):
    """A transport that records writes, EOF and aborts, and delivers nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.eof = False
        self.aborted = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class Log(Handler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def opened(self, conn: Connection) -> None:
        self.events.append(("opened", None))

    def message(self, conn: Connection, message: str | bytes) -> None:
        self.events.append(("message", message))

    def control(self, conn: Connection, frame: Frame) -> None:
        self.events.append(("control", frame.opcode))

    def closed(self, conn: Connection) -> None:
        self.events.append(("closed", None))


class Accepting(Log):
    """Accepts every handshake."""

    def handshake(self, conn: ServerConnection, request: Request) -> None:
        return None


def opened_pair(
    config: WireConfig = CONFIG, handler: Log | None = None, url: str = "ws://test/"
) -> tuple[ServerConnection, Tape, ClientProtocol, Log]:
    """A server connection past its handshake, its tape, the client's protocol, and the
    handler (by default one that accepts), which has logged ``opened``."""
    handler = Accepting() if handler is None else handler
    server = WireServer(handler, config)
    server.start()
    conn = server.connection()
    tape = Tape()
    conn.connection_made(tape)
    client = ClientProtocol(parse_uri(url))
    client.send_request(client.connect())
    conn.data_received(b"".join(client.data_to_send()))
    client.receive_data(tape.take())
    [response] = client.events_received()
    assert isinstance(response, Response) and response.status_code == 101
    return conn, tape, client, handler


def from_client(client: ClientProtocol, conn: Connection) -> None:
    conn.data_received(b"".join(client.data_to_send()))


def test_a_handshake_in_gets_a_101_out_and_opens() -> None:
    async def main() -> list[tuple[str, Any]]:
        _, _, _, log = opened_pair()
        return log.events

    assert run(main()) == [("opened", None)]


def test_the_handshake_sees_the_request_headers_which_are_dropped_once_it_is_answered() -> None:
    """websockets' parser keeps the request for the connection's life: the server
    empties its headers once the 101 is out (memory per connection, issue #13)."""
    seen: list[Request] = []
    headers_at_handshake: list[list[str]] = []

    class Server(Accepting):
        def handshake(self, conn: ServerConnection, request: Request) -> None:
            seen.append(request)
            headers_at_handshake.append([name.lower() for name in request.headers])

    async def main() -> None:
        conn, _, _, _ = opened_pair(handler=Server(), url="ws://test/path")
        assert conn.path == "/path"

    run(main())
    [request] = seen
    assert {"host", "upgrade", "sec-websocket-key"} <= set(headers_at_handshake[0])
    assert list(request.headers) == []


def test_masked_text_in_is_one_str_message_fragments_joined() -> None:
    async def main() -> list[tuple[str, Any]]:
        conn, _, client, log = opened_pair()
        client.send_text("héllo".encode())
        client.send_text(b"par", fin=False)
        client.send_continuation(b"t", fin=False)
        client.send_continuation(b"s", fin=True)
        client.send_binary(b"\x00\x01")
        from_client(client, conn)
        return log.events[1:]

    assert run(main()) == [("message", "héllo"), ("message", "parts"), ("message", b"\x00\x01")]


def test_a_ping_in_gets_its_pong_out() -> None:
    async def main() -> list[Frame]:
        conn, tape, client, _ = opened_pair()
        client.send_ping(b"abc")
        from_client(client, conn)
        client.receive_data(tape.take())
        return [e for e in client.events_received() if isinstance(e, Frame)]

    [pong] = run(main())
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"abc")


def test_invalid_utf8_in_gets_a_1007_close_out_and_is_not_delivered() -> None:
    async def main() -> tuple[list[tuple[str, Any]], Close | None]:
        conn, tape, client, log = opened_pair()
        conn.data_received(Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True))
        client.receive_data(tape.take())
        return log.events[1:], client.close_rcvd

    events, close = run(main())
    assert events == []
    assert close is not None and close.code == CloseCode.INVALID_DATA


def test_a_close_in_is_echoed_then_the_server_ends_tcp() -> None:
    async def main() -> tuple[Close | None, bool, list[tuple[str, Any]]]:
        conn, tape, client, log = opened_pair()
        client.send_close(4000, "bye")
        from_client(client, conn)
        client.receive_data(tape.take())
        return client.close_rcvd, tape.eof, log.events[1:]

    close, eof, events = run(main())
    assert close is not None and (close.code, close.reason) == (4000, "bye")
    assert eof  # RFC 6455 §7.1.1: the server closes the TCP connection first
    assert events == [("control", Opcode.CLOSE)]


def test_what_came_before_a_close_answer_is_handled_when_the_peer_has_already_reset() -> None:
    """The peer answers our close and resets at once: ending our half (the TCP close
    that follows a closing handshake) fails with ENOTCONN, and the frames read with the
    answer (a ping here: a recorder keeps it) were lost with the read."""

    class Reset(Tape):
        def write_eof(self) -> None:
            raise OSError(107, "Transport endpoint is not connected")

    async def main() -> list[tuple[str, Any]]:
        conn, _, client, log = opened_pair()
        conn.transport = Reset()
        conn.start_close(CloseCode.GOING_AWAY)
        client.send_ping(b"before my answer")
        client.send_close(CloseCode.GOING_AWAY)
        from_client(client, conn)
        return log.events[1:]

    assert run(main()) == [("control", Opcode.PING), ("control", Opcode.CLOSE)]


def test_a_close_out_that_is_never_answered_aborts_after_close_timeout() -> None:
    async def main() -> tuple[bool, bool, float]:
        conn, tape, _, _ = opened_pair()
        loop = asyncio.get_running_loop()
        began = loop.time()
        conn.start_close(CloseCode.GOING_AWAY)
        await asyncio.sleep(CONFIG.close_timeout - 0.001)
        before = tape.aborted
        await asyncio.sleep(0.002)
        return before, tape.aborted, loop.time() - began

    before, after, _ = run(main())
    assert (before, after) == (False, True)  # not a moment before the timeout, and then


def test_after_ending_without_a_close_nothing_more_is_written() -> None:
    """A connection ended with no close frame (half-closed, as the proxy passes on a
    drop) writes nothing more: not a pong, not a close frame (asyncio raises on a write
    after EOF)."""

    async def main() -> tuple[bool, bytes, bool]:
        conn, tape, client, _ = opened_pair()
        conn.end_without_close()
        client.send_ping(b"still there?")
        from_client(client, conn)
        conn.start_close(CloseCode.GOING_AWAY)
        await asyncio.sleep(CONFIG.close_timeout + 0.1)
        return tape.eof, tape.take(), tape.aborted

    eof, written, aborted = run(main())
    assert (eof, written, aborted) == (True, b"", True)  # and dropped after close_timeout
