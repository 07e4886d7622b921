"""A lean WebSocket server: one asyncio protocol per connection pumping websockets'
sans-I/O :class:`~websockets.server.ServerProtocol`, and no task per connection.

``websockets.asyncio`` gives every connection a handler task, a keepalive task, a
message assembler and their futures: about 12 KB per idle client. Here a connection is
the asyncio transport, the sans-I/O protocol and one slotted object (about 6 KB). What
the tasks did is done by callbacks and by server-wide timers:

* the opening handshake calls :meth:`Handler.handshake` from ``data_received``; only
  a handshake the handler wants to hold (an awaitable answer) gets a task;
* complete messages go to :meth:`Handler.message` as they are parsed (fragments are
  joined here, text is decoded here: invalid UTF-8 closes with 1007);
* one keepalive timer pings every open connection each ``ping_interval`` and closes
  with 1011 those whose pong has not come within ``ping_timeout``;
* handshakes that never finish are aborted after ``open_timeout``, closing handshakes
  that never finish after ``close_timeout`` (per-connection timers, only while in
  those states).

Build it with :meth:`WireServer.listen`; stop it with :meth:`WireServer.close`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

logger = logging.getLogger(__name__)

#: The handler's answer to a handshake: ``None`` accepts it, a response refuses it, an
#: awaitable (of either) holds it until it is done without holding up other connections.
HandshakeAnswer = Response | None | Awaitable[Response | None]


class Handler(Protocol):
    """What a :class:`WireServer` tells about its connections. Callbacks run on the event
    loop and must not block; they may write to ``conn.transport`` or call
    :meth:`WireConnection.start_close`."""

    def handshake(self, conn: WireConnection, request: Request) -> HandshakeAnswer:
        """Accept (``None``) or refuse (a response from ``conn.protocol.reject``)."""
        ...

    def opened(self, conn: WireConnection) -> None:
        """The handshake succeeded: ``conn`` is open."""
        ...

    def message(self, conn: WireConnection, message: str | bytes) -> None:
        """A complete message arrived (text as ``str``, binary as ``bytes``)."""
        ...

    def closed(self, conn: WireConnection) -> None:
        """An opened connection is gone (read how with ``listener.close_of``)."""
        ...


@dataclass(frozen=True, slots=True)
class WireConfig:
    """Limits and timers, in bytes and seconds (``None`` turns one off)."""

    max_size: int | None = 2**20
    write_limit: int = 2**16  # high-water mark of the transport's write buffer
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    close_timeout: float = 10.0


class WireConnection(asyncio.Protocol):
    """One connection. The server creates it; read ``index``, ``path`` and
    ``remote_address``, write frames to ``transport``, end it with :meth:`close`."""

    __slots__ = (
        "_close_timer",
        "_drained",
        "_fragments",
        "_open_timer",
        "_paused",
        "_waiter",
        "index",
        "keepalive",
        "on_resume",
        "opened",
        "path",
        "ping",
        "protocol",
        "server",
        "transport",
    )

    def __init__(self, server: WireServer) -> None:
        self.server = server
        self.protocol = ServerProtocol(max_size=server.config.max_size)
        self.transport: asyncio.Transport
        self.index: int | None = None  # given by the handler at handshake time
        self.path: str | None = None  # of the handshake request
        self.opened = False
        #: Called when the transport's write buffer drains below its low-water mark.
        self.on_resume: Callable[[], None] | None = None
        self.keepalive = True  # pinged by the keepalive timer (off while stalled)
        self.ping: bytes | None = None  # payload of the keepalive ping awaiting its pong
        self._fragments: list[bytes] | None = None  # b"t" or b"b" (text or binary), then payloads
        self._open_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None  # created by wait_closed
        self._paused = False  # writing: the transport's buffer is over its high-water mark
        self._drained: asyncio.Future[None] | None = None  # created by drain

    # ------------------------------------------------------------------ public

    @property
    def remote_address(self) -> Any:
        return self.transport.get_extra_info("peername")

    def start_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (if the connection is open); the transport is aborted if the
        client has not completed the closing handshake within ``close_timeout``."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.flush()
        elif self.protocol.state is State.CONNECTING:
            self.transport.abort()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake; return once the TCP connection is closed."""
        self.start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Return once the TCP connection is closed."""
        if self not in self.server.connections:
            return  # connection_lost has run
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    async def drain(self) -> None:
        """Return once the transport's write buffer is below its low-water mark (or the
        connection is gone)."""
        if not self._paused or self not in self.server.connections:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)

    def stop_keepalive(self) -> None:
        """Send no keepalive ping (and forget the one in flight) until :meth:`start_keepalive`."""
        self.keepalive = False
        self.ping = None

    def start_keepalive(self) -> None:
        self.keepalive = True

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame with ``code`` and
        ``reason``, then discard whatever the client sends."""
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            self.flush()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.server.config.write_limit)
        self.server.connections.add(self)
        timeout = self.server.config.open_timeout
        if timeout is not None:
            self._open_timer = asyncio.get_running_loop().call_later(timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        # Messages are delivered until a close: the client's (in this data) or ours
        # (before it). Parsing the whole read first moves the protocol to CLOSING, so
        # its state cannot tell a message sent before the client's close frame.
        deliver = protocol.close_sent is None
        protocol.receive_data(data)
        events = protocol.events_received()
        self.flush()  # automatic answers: pongs, the close frame echoed
        for event in events:
            if isinstance(event, Frame):
                if event.opcode is Opcode.CLOSE:
                    deliver = False
                self._frame(event, deliver)
            elif isinstance(event, Request):
                self._request(event)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.flush()
        return None  # the WebSocket closing handshake is over: let asyncio close the socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state is now CLOSED
        for timer in (self._open_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._open_timer = self._close_timer = None
        self.ping = None
        self.server.connections.discard(self)
        self._paused = False
        for waiter in (self._waiter, self._drained):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._waiter = self._drained = None
        if self.opened:
            try:
                self.server.handler.closed(self)
            except Exception:
                logger.exception("closed handler failed")

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None:
            self._drained.set_result(None)
            self._drained = None
        if self.on_resume is not None:
            self.on_resume()

    # ------------------------------------------------------------------ internals

    def flush(self) -> None:
        """Write what the sans-I/O protocol has to send; arm the close timer when it
        expects the TCP connection to end."""
        protocol, transport = self.protocol, self.transport
        for data in protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()  # half-close: the client closes the TCP connection
            else:
                transport.close()
        if self._close_timer is None and protocol.close_expected():
            if self._open_timer is not None:
                self._open_timer.cancel()
                self._open_timer = None
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(self.server.config.close_timeout, transport.abort)

    def _request(self, request: Request) -> None:
        try:
            answer = self.server.handler.handshake(self, request)
        except Exception:
            logger.exception("handshake handler failed")
            answer = _internal_error(self.protocol)
        if isinstance(answer, Awaitable):
            self.server.hold(self, request, answer)
        else:
            self.respond(request, answer)

    def respond(self, request: Request, response: Response | None) -> None:
        """Finish the opening handshake: accept it (``None``) or send ``response``."""
        protocol = self.protocol
        if protocol.state is not State.CONNECTING or self.transport.is_closing():
            return  # the client went away while the handshake was held
        if response is None:
            response = protocol.accept(request)
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and not self.server.serving:
            response = protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        protocol.send_response(response)  # opens the connection if it is a 101
        self.flush()
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            if self._open_timer is not None:
                self._open_timer.cancel()
                self._open_timer = None
            self.path = request.path
            self.opened = True
            try:
                self.server.handler.opened(self)
            except Exception:
                logger.exception("opened handler failed")
                self.fail(CloseCode.INTERNAL_ERROR, "")

    def _frame(self, frame: Frame, deliver: bool) -> None:
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            if self.ping is not None and frame.data == self.ping:
                self.ping = None
            return
        if opcode is Opcode.CONT:
            if self._fragments is None:
                return  # the protocol has already failed the connection
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            text = self._fragments[0] == b"t"
            data = b"".join(self._fragments[1:])
            self._fragments = None
        elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                # A marker first: one list, no second slot for the message's opcode.
                self._fragments = [b"t" if opcode is Opcode.TEXT else b"b", bytes(frame.data)]
                return
            text = opcode is Opcode.TEXT
            data = bytes(frame.data)
        else:
            return  # PING and CLOSE: the sans-I/O protocol has answered them
        if not deliver:
            return  # we are closing: what is still in flight is dropped
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                # RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8
                # but finds that the byte stream is not, in fact, a valid UTF-8 stream,
                # that endpoint MUST _Fail the WebSocket Connection_" (1007, §7.4.1).
                self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        try:
            self.server.handler.message(self, message)
        except Exception:
            # A bug of ours, not the client's: this client gets 1011, the others go on.
            logger.exception("message handler failed")
            self.fail(CloseCode.INTERNAL_ERROR, "")


def _internal_error(protocol: ServerProtocol) -> Response:
    return protocol.reject(
        http.HTTPStatus.INTERNAL_SERVER_ERROR, "Failed to open a WebSocket connection.\n"
    )


class WireServer:
    """A listening socket and its connections. Create it, ``await listen(...)``, and
    ``await close()`` when done."""

    def __init__(self, handler: Handler, config: WireConfig) -> None:
        self.handler = handler
        self.config = config
        #: Every TCP connection not yet lost (handshaking, open or closing).
        self.connections: set[WireConnection] = set()
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.Task[None]] = set()
        self._keepalive: asyncio.TimerHandle | None = None
        self._pings = 0

    async def listen(self, host: str, port: int) -> None:
        """Start accepting connections on ``host``:``port`` (``0``: a free port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: WireConnection(self), host, port)
        if self.config.ping_interval is not None:
            self._keepalive = loop.call_later(self.config.ping_interval, self._ping_all)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        assert self._server is not None, "not listening"
        return tuple(self._server.sockets)

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def hold(
        self, conn: WireConnection, request: Request, answer: Awaitable[Response | None]
    ) -> None:
        """Answer ``conn``'s handshake once ``answer`` is ready (in a task of its own)."""
        task = asyncio.ensure_future(self._answer_later(conn, request, answer))
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _answer_later(
        self, conn: WireConnection, request: Request, answer: Awaitable[Response | None]
    ) -> None:
        try:
            response = await answer
        except asyncio.CancelledError:  # the server is closing
            response = conn.protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        except Exception:
            logger.exception("handshake handler failed")
            response = _internal_error(conn.protocol)
        conn.respond(request, response)

    def _ping_all(self) -> None:
        """Send a keepalive ping to every open connection that has none in flight; close
        with 1011 (after ``ping_timeout``) those that do not answer it."""
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        assert interval is not None
        loop = asyncio.get_running_loop()
        self._keepalive = loop.call_later(interval, self._ping_all)
        self._pings += 1
        data = struct.pack("!I", self._pings & 0xFFFFFFFF)
        sent = False
        for conn in self.connections:
            if conn.keepalive and conn.ping is None and conn.protocol.state is State.OPEN:
                conn.ping = data
                conn.protocol.send_ping(data)
                conn.flush()
                sent = True
        if sent and timeout is not None:
            loop.call_later(timeout, self._expire, data)

    def _expire(self, data: bytes) -> None:
        for conn in [c for c in self.connections if c.ping == data]:
            conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening, close every connection with ``code`` (all at once: a client
        that does not answer is aborted after ``close_timeout``, in parallel with the
        others), and return when they are all gone."""
        if self._server is None:
            return
        self._server.close()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        for task in list(self._held):
            task.cancel()  # held handshakes are answered 503
        for conn in list(self.connections):
            if conn.protocol.state is State.OPEN:
                conn.start_close(code, reason)
                # Read the client's close frame even from a connection paused by a fault.
                if not conn.transport.is_reading():
                    conn.transport.resume_reading()
        if self._held:
            await asyncio.wait(list(self._held))
        for conn in list(self.connections):
            if conn.protocol.state is State.CONNECTING and not conn.protocol.eof_sent:
                conn.transport.abort()  # no request yet: nothing to answer
        waits = [asyncio.ensure_future(c.wait_closed()) for c in list(self.connections)]
        if waits:
            await asyncio.wait(waits)
        await self._server.wait_closed()
