"""The server side of the wire: a listening socket whose connections are
:class:`ServerConnection` pumps (see :mod:`simulator.net.wire`), and no task per
connection.

``websockets.asyncio`` gives every connection a handler task, a keepalive task, a
message assembler and their futures: about 12 KB per idle client. Here a connection is
the transport, the sans-I/O protocol and one slotted object (about 6 KB). What the
tasks did is done by callbacks and by server-wide timers:

* the opening handshake calls :meth:`ServerHandler.handshake` from ``data_received``;
  only a handshake the handler wants to hold (an awaitable answer) gets a task;
* one :class:`~simulator.net.wire.Keepalive` timer pings every open connection;
* handshakes whose request has not arrived within ``open_timeout`` are aborted (its
  answer, once in, may be held as long as an injected delay says), closing handshakes
  after ``close_timeout`` (per-connection timers, only while in those states); past
  ``max_handshakes`` connections whose request has not arrived, the oldest is dropped.

Build it with :meth:`WireServer.listen` (sockets) or feed it connections with
:meth:`WireServer.connection` (any transport); stop it with :meth:`WireServer.close`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as _Protocol

from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from simulator.net.heap import HeapTrimmer
from simulator.net.wire import Connection, Handler, Keepalive, WireConfig

__all__ = [
    "CloseAtOnce",
    "HandshakeAnswer",
    "HttpExchange",
    "HttpRouter",
    "ServerConnection",
    "ServerHandler",
    "WireConfig",
    "WireServer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CloseAtOnce:
    """A handshake answer: accept, then close at once with ``code`` and ``reason``
    before anything else is sent. The handler is never told the connection opened.

    This is how a server refuses a browser in a way it can read: the browser's
    WebSocket API shows nothing of an HTTP refusal (only close 1006), but it does
    show a close code and reason."""

    code: int
    reason: str = ""


#: The handler's answer to a handshake: ``None`` accepts it, a response refuses it (or
#: accepts it with headers of its own, when it is a 101 from ``conn.protocol.accept``),
#: :class:`CloseAtOnce` accepts it only to close it, an awaitable (of any of them) holds
#: it without holding up other connections.
Immediate = Response | CloseAtOnce | None
HandshakeAnswer = Immediate | Awaitable[Immediate]


class ServerHandler(Handler):
    """What a :class:`WireServer` tells about its connections."""

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        """Accept (``None``) or refuse (a response from ``conn.protocol.reject``)."""
        return None


#: A request head longer than this is left to websockets (which refuses it).
MAX_SNIFFED_HEAD = 16 * 1024
#: Connections accepted in one turn of the event loop, at most (see listen).
ACCEPTS_PER_TURN = 16
#: The kernel's queue of connections not yet accepted (asyncio's default).
LISTEN_BACKLOG = 100
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class HttpExchange(_Protocol):
    """A plain HTTP exchange that has taken over a connection from the WebSocket pump."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class HttpRouter(_Protocol):
    """Who answers plain HTTP on a :class:`WireServer`'s port (the inspector)."""

    def take(self, head: bytes, transport: asyncio.Transport) -> HttpExchange | None:
        """Called with the first request's head (up to its blank line): return an
        exchange to answer it over ``transport`` (it is fed the bytes received from now
        on, ``head`` included), or ``None`` to leave it to the WebSocket handshake."""
        ...


def _first_supported(
    supported: tuple[str, ...],
) -> Callable[[ServerProtocol, Sequence[Subprotocol]], Subprotocol | None]:
    """A ``select_subprotocol`` for websockets (a function: it binds it as a method):
    the first of ``supported`` the client offered, or none (served without one, where
    websockets would refuse: a mock feed takes every client)."""

    def choose(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        return next((Subprotocol(name) for name in supported if name in offered), None)

    return choose


class ServerConnection(Connection):
    """One client connection, as the server sees it; ``path`` is its request's."""

    __slots__ = ("_head", "_http", "path", "server")

    protocol: ServerProtocol

    def __init__(self, server: WireServer) -> None:
        supported = server.config.subprotocols
        protocol = ServerProtocol(
            max_size=server.config.max_size,
            select_subprotocol=_first_supported(supported) if supported else None,
        )
        super().__init__(protocol, server.handler, server.config)
        self.server = server
        self.path: str | None = None  # of the handshake request
        # With an HTTP router, the first request's head is read here before websockets
        # sees it (websockets parses GET only and never reads a body).
        self._head: bytes | None = b"" if server.http is not None else None
        self._http: HttpExchange | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)
        self.server.awaiting_request(self)

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._http.data_received(data)
            return
        if self._head is not None:
            head = self._head + data
            # The blank line that ends the head: CRLF, or a bare LF as `nc` sends (h11
            # reads both; websockets, which gets handshakes, only CRLF).
            blank = _BLANK_LINE.search(head)
            end = blank.end() if blank is not None else -1
            if end < 0 and len(head) <= MAX_SNIFFED_HEAD:
                self._head = head
                return
            self._head = None
            router = self.server.http
            exchange = None
            # A head over the limit, even whole in one read, is websockets' to refuse.
            if 0 <= end <= MAX_SNIFFED_HEAD and router is not None:
                exchange = router.take(head[:end], self.transport)
            if exchange is not None:
                self._http = exchange  # not a WebSocket: no open timeout, no keepalive
                self._cancel_open_timer()
                # Its request is in: not one of the handshakes the slowloris cap drops
                # (an open /events stream would otherwise be the oldest of them).
                self.server.handshaking.pop(self, None)
                exchange.data_received(head)
                return
            data = head
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._http is not None:
            self._http.connection_lost(exc)
        super().connection_lost(exc)

    def _lost(self) -> None:
        self.server.connections.discard(self)
        self.server.heap.closed()
        self.server.handshaking.pop(self, None)

    def _handshake(self, event: Request | Response) -> None:
        assert isinstance(event, Request)
        self.server.handshaking.pop(self, None)  # its request is in: no slowloris
        # Nor is it the client's to be quick any more: what is left, the answer, is ours,
        # held up at most by an injected delay (one given on demand is known only now).
        self._cancel_open_timer()
        handler = self.server.handler
        try:
            answer = handler.handshake(self, event)
        except Exception:
            logger.exception("handshake handler failed")
            answer = _internal_error(self.protocol)
        if isinstance(answer, Awaitable):
            self._hold_for_answer()
            self.server.hold(self, event, answer)
        else:
            self.respond(event, answer)

    def respond(self, request: Request, answer: Immediate) -> None:
        """Finish the opening handshake: accept it (``None``), send a response, or accept
        it and close at once (:class:`CloseAtOnce`)."""
        protocol = self.protocol
        if protocol.state is not State.CONNECTING or self.transport.is_closing():
            return  # the client went away while the handshake was held
        if protocol.eof_sent:
            # What it sent with its request (a close frame, a frame websockets cannot
            # parse) already failed the connection: an answer would open one that
            # reads nothing more. It is dropped, as when it sends that after the open.
            self.abort()
            return
        close = answer if isinstance(answer, CloseAtOnce) else None
        if answer is None or close is not None:
            response = protocol.accept(request)
        else:
            assert isinstance(answer, Response)
            response = answer
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and not self.server.serving:
            response = protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        # What the client sent before this answer (RFC 6455 §4.1 forbids it) was parsed
        # with its request, and websockets queued its automatic answers (pongs): they
        # would go before the response, which the client could then not read.
        protocol.data_to_send()
        protocol.send_response(response)  # opens the connection if it is a 101
        self.flush()
        # websockets' parser keeps the request for the connection's life (a local of
        # its generator): its headers, some 50 small objects, are dropped once answered.
        request.headers.clear()
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            self.path = request.path
            if close is not None:
                self.start_close(close.code, close.reason)
            else:
                self._open()
        self._answered()


def _internal_error(protocol: ServerProtocol) -> Response:
    return protocol.reject(
        http.HTTPStatus.INTERNAL_SERVER_ERROR, "Failed to open a WebSocket connection.\n"
    )


class WireServer:
    """A listening socket and its connections. Create it, ``await listen(...)``, and
    ``await close()`` when done."""

    def __init__(self, handler: ServerHandler, config: WireConfig) -> None:
        self.handler = handler
        self.config = config
        #: Answers plain HTTP requests on the same port, if set (before ``listen``).
        self.http: HttpRouter | None = None
        #: Every connection not yet lost (handshaking, open or closing).
        self.connections: set[ServerConnection] = set()
        #: Connections whose opening request has not arrived, oldest first.
        self.handshaking: dict[ServerConnection, None] = {}
        #: Connections dropped because ``config.max_handshakes`` were waiting already.
        self.handshakes_dropped = 0
        self._server: asyncio.Server | None = None
        self._accepting = False
        self._held: set[asyncio.Task[None]] = set()
        self.keepalive: Keepalive | None = None
        #: Gives freed memory back to the system after waves of closes (simulator.net.heap).
        self.heap = HeapTrimmer.for_this_system()
        if config.ping_interval is not None:
            self.keepalive = Keepalive(self.connections, config.ping_interval, config.ping_timeout)

    async def listen(
        self, host: str, port: int, tls: ssl.SSLContext | None = None, *, reuse_port: bool = False
    ) -> None:
        """Start accepting connections on ``host``:``port`` (``0``: a free port); with
        ``tls``, TLS connections only (``wss://``); with ``reuse_port``, alongside other
        sockets bound to that port with ``SO_REUSEPORT`` (the kernel spreads new
        connections among the listening ones)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.connection,
            host,
            port,
            ssl=tls,
            reuse_port=reuse_port or None,
            # A connection exists for the server from the end of its TLS handshake on:
            # one that never finishes it is dropped as one that never upgrades is.
            ssl_handshake_timeout=None if tls is None else self.config.open_timeout,
            # asyncio accepts up to `backlog` connections in one loop turn: a storm of
            # connections (opened and reset, or churned by a flood) must not hold the
            # feed's next tick behind a hundred accepts.
            backlog=ACCEPTS_PER_TURN,
        )
        for listening in self._server.sockets:
            # ...while the kernel still queues a burst of connects (C10k) for them.
            with socket.fromfd(listening.fileno(), listening.family, listening.type) as sock:
                sock.listen(LISTEN_BACKLOG)
        self.start()

    def start(self) -> None:
        """Start serving connections handed to :meth:`connection` (``listen`` calls it)."""
        self._accepting = True
        if self.keepalive is not None:
            self.keepalive.start()

    def connection(self) -> ServerConnection:
        """A new connection of this server: the protocol factory for a transport (pass
        it to ``loop.create_server`` or to :func:`simulator.net.memory.open_pipe`)."""
        return ServerConnection(self)

    def awaiting_request(self, conn: ServerConnection) -> None:
        """``conn`` is connected, its request not yet in. Past ``config.max_handshakes``
        such connections, the oldest is dropped: a client that takes that long to send
        a request is the likeliest to be one that never will (slowloris), and new
        clients still get in (a 503 to them instead would let the slow ones keep
        everyone out until ``open_timeout``)."""
        self.handshaking[conn] = None
        limit = self.config.max_handshakes
        if limit is not None and len(self.handshaking) > limit:
            oldest = next(iter(self.handshaking))
            del self.handshaking[oldest]
            self.handshakes_dropped += 1
            oldest.transport.abort()

    @property
    def listening(self) -> bool:
        """Whether it has sockets (see :meth:`listen`), rather than only connections
        handed to it."""
        return self._server is not None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        assert self._server is not None, "not listening"
        return tuple(self._server.sockets)

    @property
    def serving(self) -> bool:
        return self._accepting

    def hold(self, conn: ServerConnection, request: Request, answer: Awaitable[Immediate]) -> None:
        """Answer ``conn``'s handshake once ``answer`` is ready (in a task of its own)."""
        task = asyncio.ensure_future(self._answer_later(conn, request, answer))
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _answer_later(
        self, conn: ServerConnection, request: Request, answer: Awaitable[Immediate]
    ) -> None:
        protocol = conn.protocol
        response: Immediate
        try:
            response = await answer
        except asyncio.CancelledError:  # the server is closing
            response = protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        except Exception:
            logger.exception("handshake handler failed")
            response = _internal_error(protocol)
        conn.respond(request, response)

    async def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening, close every connection with ``code`` (all at once: a client
        that does not answer is aborted after ``close_timeout``, in parallel with the
        others), and return when they are all gone."""
        if not self._accepting:
            return
        self._accepting = False
        if self._server is not None:
            self._server.close()
        if self.keepalive is not None:
            self.keepalive.stop()
        self.heap.stop()
        for task in list(self._held):
            task.cancel()  # held handshakes are answered 503
        for conn in list(self.connections):
            if conn.protocol.state is State.OPEN:
                conn.start_close(code, reason)
                # Read the client's close frame even from a connection paused by a fault.
                conn.release_all_reading()
        if self._held:
            await asyncio.wait(list(self._held))
        for conn in list(self.connections):
            if conn.protocol.state is State.CONNECTING and not conn.protocol.eof_sent:
                conn.transport.abort()  # no request yet: nothing to answer
        waits = [asyncio.ensure_future(c.wait_closed()) for c in list(self.connections)]
        if waits:
            await asyncio.wait(waits)
        if self._server is not None:
            await self._server.wait_closed()
