"""The client side of the wire: :func:`connect` opens a :class:`ClientConnection`, the
same pump as a server's connection (see :mod:`simulator.net.wire`) with the client's
half of the opening handshake.

Every way an opening can fail becomes one :class:`~simulator.errors.ConnectError`
(refused with an HTTP status, unreachable, timed out, TLS, not a WebSocket server):
the one place where the transport's and the protocol's exceptions are mapped.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.http11 import USER_AGENT, Request, Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from simulator.errors import ConnectError, UsageError
from simulator.net.wire import Connection, Handler, Keepalive, WireConfig

#: Opens the transport of a new connection: given the protocol factory, return what
#: ``loop.create_connection`` returns. The default opens a TCP (or TLS) socket.
OpenTransport = Callable[
    [Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.BaseTransport, asyncio.Protocol]]
]

#: A client's defaults: no keepalive pings (a feed client may set them), the rest as a
#: server's.
CLIENT_CONFIG = WireConfig(ping_interval=None, ping_timeout=None)


class ClientConnection(Connection):
    """One connection to a server. Read ``response`` (the server's handshake response)
    and ``subprotocol`` once :func:`connect` has returned it."""

    shares_parsing = False  # its peer is the feed it asked for (see Connection)

    __slots__ = ("_keepalive", "_opening", "request", "response")

    protocol: ClientProtocol

    def __init__(self, protocol: ClientProtocol, handler: Handler, config: WireConfig) -> None:
        super().__init__(protocol, handler, config)
        self.request: Request | None = None
        self.response: Response | None = None
        self._opening: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keepalive: Keepalive | None = None

    @property
    def subprotocol(self) -> Subprotocol | None:
        return self.protocol.subprotocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.request is not None
        self.protocol.send_request(self.request)
        self.flush()

    def _handshake(self, event: Request | Response) -> None:
        assert isinstance(event, Response)
        self.response = event
        # Not the state: a close frame read together with the 101 has already moved
        # the protocol on to CLOSING, and the connection did open.
        if self.protocol.handshake_exc is None:
            interval = self.config.ping_interval
            if interval is not None:
                self._keepalive = Keepalive((self,), interval, self.config.ping_timeout)
                self._keepalive.start()
            if not self._opening.done():
                self._opening.set_result(None)
            self._open()
            return
        # Refused: the protocol has set handshake_exc and sent EOF.
        if not self._opening.done():
            self._opening.set_exception(
                ConnectError(
                    f"server rejected WebSocket connection: HTTP {event.status_code}",
                    status=event.status_code,
                    phrase=event.reason_phrase,
                    headers=tuple(event.headers.raw_items()),
                    body=bytes(event.body or b""),
                )
            )

    def _lost(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
        if not self._opening.done():
            exc = self.protocol.handshake_exc
            reason = str(exc) if exc is not None else "connection closed during the handshake"
            self._opening.set_exception(ConnectError(reason))

    def give_up(self) -> None:
        """The opening is abandoned: drop the socket, if any, and forget the outcome."""
        if not self._opening.done():
            self._opening.cancel()
        elif not self._opening.cancelled():
            self._opening.exception()  # retrieved: no "never retrieved" log
        if hasattr(self, "transport"):
            self.transport.abort()

    async def opened_or_failed(self) -> None:
        """Return once the opening handshake succeeded; raise :class:`ConnectError` if it
        failed."""
        await asyncio.shield(self._opening)


async def connect(
    url: str,
    handler: Handler,
    *,
    config: WireConfig = CLIENT_CONFIG,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    user_agent: str | None = USER_AGENT,
    ssl: ssl_module.SSLContext | None = None,
    open_transport: OpenTransport | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``) whose events go to
    ``handler``; return it once the opening handshake is over.

    ``headers`` are added to the request, ``subprotocols`` offered; ``wss://`` is
    verified with ``ssl`` (default: the system's CAs). ``open_transport`` replaces the
    socket (e.g. with :func:`simulator.net.memory.open_pipe`). The whole opening,
    socket included, takes at most ``config.open_timeout``.

    Raises :class:`ConnectError` for anything that keeps the connection from opening.
    """
    try:
        uri = parse_uri(url)
    except (InvalidURI, ValueError) as e:  # ValueError: urllib's, e.g. "Invalid IPv6 URL"
        raise ConnectError(str(e)) from None
    protocol = ClientProtocol(
        uri,
        origin=origin,  # type: ignore[arg-type]
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        max_size=config.max_size,
    )
    conn = ClientConnection(protocol, handler, config)
    request = protocol.connect()
    for name, value in headers:
        request.headers[name] = value
    if user_agent is not None:
        request.headers["User-Agent"] = user_agent
    conn.request = request
    if open_transport is None:
        open_transport = _socket_opener(uri.host, uri.port, uri.secure, ssl)
    opened = False
    try:
        async with asyncio.timeout(config.open_timeout):
            await open_transport(lambda: conn)
            await conn.opened_or_failed()
        opened = True
    except TimeoutError:
        raise ConnectError("timed out opening the connection", timed_out=True) from None
    except ssl_module.SSLError as e:
        raise ConnectError(f"TLS: {e.reason or e}") from None
    except OSError as e:
        raise ConnectError(e.strerror or str(e) or type(e).__name__) from None
    except (ValueError, InvalidHandshake) as e:
        # From the socket layer: a port out of range, a host name no resolver takes
        # (UnicodeError is a ValueError), a header value websockets refuses.
        raise ConnectError(str(e) or type(e).__name__) from None
    finally:
        # Timed out, refused, or cancelled (a server stopping while its handshake
        # waited on this upstream): no socket is left behind, and nobody waits for
        # the opening any more.
        if not opened:
            conn.give_up()
    return conn


def _socket_opener(
    host: str, port: int, secure: bool, context: ssl_module.SSLContext | None
) -> OpenTransport:
    async def open_socket(
        factory: Callable[[], asyncio.Protocol],
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        if not secure:
            return await loop.create_connection(factory, host, port)
        tls = context if context is not None else ssl_module.create_default_context()
        return await loop.create_connection(factory, host, port, ssl=tls, server_hostname=host)

    return open_socket


def gateway_status(error: ConnectError) -> int:
    """The HTTP status a gateway answers its own client with when ``error`` kept it
    from opening the upstream: the upstream's own refusal, 504 when it timed out,
    else 502."""
    if error.status is not None:
        return error.status
    return 504 if error.timed_out else 502


def check_url(url: str) -> None:
    """Raise :class:`~simulator.errors.UsageError` unless ``url`` is a ``ws://`` or
    ``wss://`` URL with a host and a port in range: mistakes no retry will mend."""
    try:
        uri = parse_uri(url)
    except InvalidURI as e:
        # websockets' message repeats the URL: say only why.
        raise UsageError(f"{url!r}: {e.msg}") from None
    except ValueError as e:
        raise UsageError(f"{url!r}: {e}") from None
    if not 0 < uri.port < 65536:
        raise UsageError(f"{url!r}: port {uri.port} is out of range")
