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
* handshakes that never finish are aborted after ``open_timeout``, closing handshakes
  after ``close_timeout`` (per-connection timers, only while in those states); past
  ``max_handshakes`` connections whose request has not arrived, the oldest is dropped.

Build it with :meth:`WireServer.listen` (sockets) or feed it connections with
:meth:`WireServer.connection` (any transport); stop it with :meth:`WireServer.close`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
from collections.abc import Awaitable

from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from simulator.net.wire import Connection, Handler, Keepalive, WireConfig

__all__ = [
    "HandshakeAnswer",
    "ServerConnection",
    "ServerHandler",
    "WireConfig",
    "WireServer",
]

logger = logging.getLogger(__name__)

#: The handler's answer to a handshake: ``None`` accepts it, a response refuses it (or
#: accepts it with headers of its own, when it is a 101 from ``conn.protocol.accept``),
#: an awaitable (of either) holds it without holding up other connections.
HandshakeAnswer = Response | None | Awaitable[Response | None]


class ServerHandler(Handler):
    """What a :class:`WireServer` tells about its connections."""

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        """Accept (``None``) or refuse (a response from ``conn.protocol.reject``)."""
        return None


class ServerConnection(Connection):
    """One client connection, as the server sees it; ``path`` is its request's."""

    __slots__ = ("path", "server")

    protocol: ServerProtocol

    def __init__(self, server: WireServer) -> None:
        super().__init__(
            ServerProtocol(max_size=server.config.max_size), server.handler, server.config
        )
        self.server = server
        self.path: str | None = None  # of the handshake request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)
        self.server.awaiting_request(self)

    def _lost(self) -> None:
        self.server.connections.discard(self)
        self.server.handshaking.pop(self, None)

    def _handshake(self, event: Request | Response) -> None:
        assert isinstance(event, Request)
        self.server.handshaking.pop(self, None)  # its request is in: no slowloris
        handler = self.server.handler
        try:
            answer = handler.handshake(self, event)
        except Exception:
            logger.exception("handshake handler failed")
            answer = _internal_error(self.protocol)
        if isinstance(answer, Awaitable):
            self.server.hold(self, event, answer)
        else:
            self.respond(event, answer)

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
            self.path = request.path
            self._open()


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
        if config.ping_interval is not None:
            self.keepalive = Keepalive(self.connections, config.ping_interval, config.ping_timeout)

    async def listen(self, host: str, port: int) -> None:
        """Start accepting connections on ``host``:``port`` (``0``: a free port)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.connection, host, port)
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

    def hold(
        self, conn: ServerConnection, request: Request, answer: Awaitable[Response | None]
    ) -> None:
        """Answer ``conn``'s handshake once ``answer`` is ready (in a task of its own)."""
        task = asyncio.ensure_future(self._answer_later(conn, request, answer))
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _answer_later(
        self, conn: ServerConnection, request: Request, answer: Awaitable[Response | None]
    ) -> None:
        protocol = conn.protocol
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
