"""`sim record --upstream`: a recording proxy between real clients and a real server.

For each client that connects, the proxy opens a connection to the upstream during the
client's handshake (so an upstream failure can answer it with the matching HTTP status),
forwarding the path and query, the requested subprotocols and the request headers
(Authorization and cookies included: the upstream needs them; the recording never
gets them). Then it relays messages both ways until one side closes, and closes the
other side with the same code and reason. Every event of both directions is a row in
the recording, redacted before it is buffered.

Use :func:`record_proxy` from code and tests::

    async with record_proxy("ws://feed.example:8080", "session.parquet", port=0) as proxy:
        async with websockets.connect(proxy.url + "/prices") as ws: ...

Connection numbers are handshake attempts, 0, 1, 2, ... (refused ones included).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from simulator.core.redact import redact_headers, redact_subprotocols, redact_text, redact_url
from simulator.errors import UsageError
from simulator.net.listener import Listener
from simulator.net.log import EventKind, EventLog
from simulator.net.recorder import Recorder
from simulator.storage.schema import Kind, Sender, new_metadata
from simulator.version import __version__

#: Request headers that belong to one hop (RFC 9110 §7.6.1) or to the WebSocket
#: handshake itself: the proxy's own connection to the upstream sets its own.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "origin",  # passed as connect(origin=...)
        "user-agent",  # passed as connect(user_agent_header=...)
    }
)
#: Response headers of the upstream worth passing back to the client (the rest of a
#: 101 response is the proxy's own handshake).
_RESPONSE_FORWARDED = ("set-cookie", "www-authenticate", "retry-after", "location")

#: Messages each leg buffers before it stops reading (backpressure to the sender): with
#: frames of up to max_size, a larger queue is megabytes per connection.
_MAX_QUEUE = 4

_CLOSE_TIMEOUT_S = 2.0
#: How long what a closing side sent before its close may take to reach the other side.
_DRAIN_TIMEOUT_S = 30.0

CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_INTERNAL_ERROR = 1011
#: Close codes that are never sent in a close frame (RFC 6455 §7.4.1).
_NOT_ON_THE_WIRE = frozenset({1005, 1006, 1015})


def upstream_url(upstream: str, request_path: str) -> str:
    """The URL to open upstream for a client that asked for ``request_path``: the
    client's path appended to the upstream's, queries joined (upstream's first)."""
    up = urlsplit(upstream)
    client = urlsplit(request_path)
    path = up.path.rstrip("/") + (client.path or "/")
    query = "&".join(q for q in (up.query, client.query) if q)
    return urlunsplit((up.scheme, up.netloc, path, query, ""))


def session_recorder(
    out: str | Path,
    log: EventLog,
    url: str,
    mode: str,
    redact: Callable[[bytes], bytes] | None,
    redaction: dict[str, Any] | None,
) -> Recorder:
    """The recorder of a `sim record` session of ``url`` (``mode``: how it was recorded).
    Raises :class:`RecordingError` when ``out`` cannot be written."""
    meta = new_metadata(
        sim_version=__version__,
        scenario="record",
        seed=None,
        source_url=redact_url(url),
        extra={"mode": mode, "redaction": redaction or {}},
    )
    session = f"record:{meta['created_at']}:{time.monotonic_ns()}"
    return Recorder(out, meta, log, session=session, redact=redact)


def check_upstream(upstream: str) -> None:
    """Raise :class:`UsageError` unless ``upstream`` is a ``ws://`` or ``wss://`` URL."""
    parts = urlsplit(upstream)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"--upstream {upstream!r}: must be a ws:// or wss:// URL with a host")


class _Observed:
    """Mixed into both legs' connections: reports ping and pong frames as they arrive,
    and the peer's close frame (before the closing handshake has run its course)."""

    on_control: Callable[[Opcode, bytes], None] | None = None
    on_close: Callable[[], None] | None = None

    def process_event(self, event: Any) -> None:
        control = isinstance(event, Frame) and event.opcode in (Opcode.PING, Opcode.PONG)
        if control and self.on_control is not None:
            self.on_control(event.opcode, bytes(event.data))
        super().process_event(event)  # type: ignore[misc]
        closing = isinstance(event, Frame) and event.opcode is Opcode.CLOSE
        # Only a close the peer started: the answer to one the proxy sent is no news.
        if closing and self.on_close and self.protocol.close_rcvd_then_sent:  # type: ignore[attr-defined]
            self.on_close()


class ObservedServerConnection(_Observed, ServerConnection):
    """The client's leg; ``upstream`` is set during its handshake."""

    upstream: ClientConnection | None = None
    index: int = -1
    relayed = False  # set once the relay has the connection (it then closes the upstream)
    #: Called if the connection is lost after its upstream opened but before the relay
    #: took it (a client gone mid-handshake, a 503 at shutdown).
    on_unrelayed: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.relayed and self.on_unrelayed is not None:
            self.on_unrelayed()
            self.on_unrelayed = None


class ObservedClientConnection(_Observed, ClientConnection):
    """The upstream's leg."""


@dataclass(frozen=True, slots=True)
class Relayed:
    """One message passed through (kept when ``log_sends`` is on)."""

    conn: int
    sender: Sender  # server: upstream to client; client: client to upstream
    message: str | bytes


class RecordingProxy(Listener):
    """A running proxy. Build it with :func:`record_proxy`; read it, don't construct it."""

    def __init__(
        self,
        upstream: str,
        recorder: Recorder,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        open_timeout: float,
        max_size: int,
        max_connections: int,
        log: EventLog,
        log_sends: bool,
    ) -> None:
        super().__init__(host)
        self.max_connections = max_connections
        self._opening = 0  # handshakes waiting for their upstream
        self._legs: set[Connection] = set()  # both legs of every relayed connection
        self._stopping = asyncio.Event()
        self.upstream = upstream
        self.recorder = recorder
        self.requested_port = port
        self.log = log
        self.sent: list[Relayed] | None = [] if log_sends else None
        self._ssl = ssl_context
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._next_index = 0
        self.connections = 0  # open client connections

    async def start(self) -> None:
        self._ws = await ws_serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
            create_connection=ObservedServerConnection,
            compression=None,
            max_size=self._max_size,
            max_queue=_MAX_QUEUE,
            ping_interval=None,  # the client's pings are relayed, the proxy sends none
            open_timeout=self._open_timeout + 10,
            close_timeout=_CLOSE_TIMEOUT_S,
            server_header=None,
        )
        self._spawn(self.recorder.run())
        if self.host in ("0.0.0.0", "::", ""):
            self.log.emit(
                EventKind.WARNING,
                message=f"listening on all interfaces ({self.host!r}): reachable from other hosts",
            )
        self.log.emit(
            EventKind.LISTENING, url=self.url, mode="record", upstream=redact_url(self.upstream)
        )

    async def stop(self) -> None:
        """Close every client with 1001 (going away), stop listening, write the file."""
        if self._ws is None:
            return
        self.log.emit(EventKind.STOPPING, connections=self.connections)
        self._stopping.set()
        self._ws.close(close_connections=True)
        # websockets' close first waits for room in the socket, with no deadline: a
        # client that reads nothing would hold the stop forever. Give every close the
        # close timeout, then drop whoever has not finished.
        done, _ = await asyncio.wait(
            {asyncio.ensure_future(self._ws.wait_closed())}, timeout=_CLOSE_TIMEOUT_S + 1
        )
        if not done:
            for leg in list(self._legs):
                leg.transport.abort()
            await self._ws.wait_closed()
        self._cancel_tasks()
        self.recorder.close()

    # ------------------------------------------------------------------ handshake

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        assert isinstance(connection, ObservedServerConnection)
        if not _is_upgrade(request):
            return None  # websockets answers it (426 or 400); nothing goes upstream
        index = connection.index = self._next_index
        self._next_index += 1
        if self.connections + self._opening >= self.max_connections:
            self.log.emit(EventKind.REJECTED, conn=index, reason="max_connections", status=503)
            response = connection.respond(503, "too many connections\n")
            response.headers["Retry-After"] = "1"
            return response
        self._opening += 1
        try:
            return await self._open_upstream(connection, request, index)
        finally:
            self._opening -= 1

    async def _open_upstream(
        self, connection: ObservedServerConnection, request: Request, index: int
    ) -> Response | None:
        url = upstream_url(self.upstream, request.path)
        offered = [
            Subprotocol(p.strip())
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
            if p.strip()
        ]
        forwarded = [
            (k, v) for k, v in request.headers.raw_items() if k.lower() not in _NOT_FORWARDED
        ]
        handshake: dict[str, Any] = {
            "path": redact_url(request.path),
            "upstream": redact_url(url),
            "subprotocols": redact_subprotocols(offered),
            "request_headers": redact_headers(request.headers.raw_items()),
        }
        try:
            upstream = await ws_connect(
                url,
                additional_headers=forwarded,
                subprotocols=offered or None,
                origin=request.headers.get("Origin"),  # type: ignore[arg-type]
                user_agent_header=request.headers.get("User-Agent"),
                compression=None,
                max_size=self._max_size,
                max_queue=_MAX_QUEUE,
                ssl=(self._ssl or True) if url.startswith("wss:") else None,
                open_timeout=self._open_timeout,
                close_timeout=_CLOSE_TIMEOUT_S,
                ping_interval=None,  # the upstream's pings are relayed to the client
                proxy=None,
                create_connection=ObservedClientConnection,
            )
        except InvalidStatus as e:
            return self._refuse(
                connection, index, handshake, e.response.status_code, e.response, str(e)
            )
        except TimeoutError:
            return self._refuse(connection, index, handshake, 504, None, "upstream timed out")
        except ssl.SSLError as e:
            return self._refuse(connection, index, handshake, 502, None, f"upstream TLS: {e}")
        except (OSError, InvalidHandshake, InvalidURI) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            return self._refuse(connection, index, handshake, 502, None, f"upstream: {reason}")
        connection.upstream = upstream
        handshake["subprotocol"] = redacted_subprotocol(upstream.subprotocol)
        if upstream.response is not None:
            handshake["response_headers"] = redact_headers(upstream.response.headers.raw_items())
        self.recorder.opened(index, handshake)
        connection.on_unrelayed = lambda: self._left_mid_handshake(index, upstream)
        if connection.transport.is_closing():  # the client left while we connected
            connection.on_unrelayed()
            connection.on_unrelayed = None
        return None

    def _left_mid_handshake(self, index: int, upstream: ClientConnection) -> None:
        """The client went away (or the server stopped) after its upstream was opened but
        before the relay began: close the upstream, and the recorded connection."""
        upstream.transport.abort()
        self.recorder.closed(index, CLOSE_ABNORMAL, "client left during the handshake", "client")

    def _refuse(
        self,
        connection: ServerConnection,
        index: int,
        handshake: dict[str, Any],
        status: int,
        upstream_response: Response | None,
        error: str,
    ) -> Response:
        """Answer the client as the upstream answered us (or 502/504), and record it."""
        error = redact_text(error)  # library errors quote URLs (a redirect's Location)
        handshake["status"] = status
        self.recorder.opened(index, handshake)
        self.recorder.error(index, Sender.SERVER, error)
        self.recorder.closed(index, CLOSE_ABNORMAL, error[:120], "server")
        self.log.emit(EventKind.REJECTED, conn=index, reason=error, status=status)
        phrase = _phrase(status, upstream_response)
        body = f"{phrase}\n".encode()
        if upstream_response is not None and upstream_response.body:
            body = bytes(upstream_response.body)
        # Built here rather than with connection.respond, which takes only the statuses
        # http.HTTPStatus knows: an upstream may answer 520 or 499.
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Length", str(len(body))),
                ("Content-Type", "text/plain; charset=utf-8"),
            ]
        )
        if upstream_response is not None:
            _copy_headers(upstream_response.headers, headers)
        return Response(status, phrase, headers, body)

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> Subprotocol | None:
        upstream = getattr(connection, "upstream", None)
        return None if upstream is None else upstream.subprotocol

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        upstream = getattr(connection, "upstream", None)
        if upstream is not None and upstream.response is not None and response.status_code == 101:
            _copy_headers(upstream.response.headers, response.headers)

    # ------------------------------------------------------------------ relaying

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, ObservedServerConnection) and ws.upstream is not None
        ws.relayed = True
        upstream, index = ws.upstream, ws.index
        self._legs.update((ws, upstream))
        assert isinstance(upstream, ObservedClientConnection)
        self.connections += 1
        self.log.emit(
            EventKind.CONNECTED,
            conn=index,
            path=redact_url(ws.request.path) if ws.request else None,
        )
        recorder = self.recorder
        # Pings are relayed; a pong answers a relayed ping (the proxy answers each side's
        # pings itself, as every WebSocket endpoint must, and records them).
        ws.on_control = lambda op, data: self._control(index, Sender.CLIENT, op, data, upstream)
        upstream.on_control = lambda op, data: self._control(index, Sender.SERVER, op, data, ws)
        # A side that closes (its close frame arrives first) ends the session: what it
        # sent before is relayed, nothing more is sent to it, and the other side is
        # closed the same way. The proxy itself ends it when it closes a side (shutdown,
        # an oversized message); a dropped connection ends it too.
        initiator: list[Connection] = []
        closed = asyncio.Event()

        def peer_closed(side: Connection) -> None:
            if not initiator:
                initiator.append(side)
                closed.set()

        ws.on_close = lambda: peer_closed(ws)
        upstream.on_close = lambda: peer_closed(upstream)
        to_upstream = asyncio.ensure_future(self._pipe(index, ws, upstream, Sender.CLIENT))
        to_client = asyncio.ensure_future(self._pipe(index, upstream, ws, Sender.SERVER))
        signalled = asyncio.ensure_future(closed.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        reading: asyncio.Future[Any] = signalled  # then the reader of the side still open
        end = _Ending(CLOSE_ABNORMAL, "", "server", ws)
        try:
            await asyncio.wait(
                (to_upstream, to_client, signalled, stopping),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._stopping.is_set() and not initiator:
                # The proxy is stopping: it closes the client (1001), so the upstream too,
                # without waiting for what is still in flight.
                end = _Ending(CLOSE_GOING_AWAY, "", "server", ws)
            else:
                end = _ending(ws, upstream, initiator[0] if initiator else None)
            other = upstream if end.ended is ws else ws
            from_ended, toward_ended = (
                (to_upstream, to_client) if end.ended is ws else (to_client, to_upstream)
            )
            # Nothing more goes to the side that ended (it may have stopped reading,
            # leaving the pipe stuck in a send); the other side is read on by itself.
            toward_ended.cancel()
            sender = Sender.CLIENT if other is ws else Sender.SERVER

            async def read_the_rest() -> None:
                await asyncio.wait({toward_ended})  # one reader of a connection at a time
                await self._pipe(index, other, None, sender)

            reading = asyncio.ensure_future(read_the_rest())
            # What the side that ended sent before its close goes through first (with
            # flow control: a slow reader is waited for, up to _DRAIN_TIMEOUT_S).
            if not self._stopping.is_set():
                await asyncio.wait({from_ended}, timeout=_DRAIN_TIMEOUT_S)
            await _close_like(other, end.code, end.reason)
            # Both closing handshakes, each bounded by its close timeout (then aborted).
            await asyncio.wait((from_ended, reading), timeout=_CLOSE_TIMEOUT_S + 1)
        finally:
            for task in (to_upstream, to_client, signalled, stopping, reading):
                task.cancel()
            self.connections -= 1
            self._legs.difference_update((ws, upstream))
            if upstream.protocol.state is not State.CLOSED:
                upstream.transport.abort()
            recorder.closed(index, end.code, end.reason, end.by)
            self.log.emit(
                EventKind.DISCONNECTED, conn=index, code=end.code, reason=end.reason, by=end.by
            )

    async def _pipe(
        self, index: int, src: Connection, dst: Connection | None, sender: Sender
    ) -> None:
        """Relay and record what ``src`` sends until it closes. Once ``dst`` is gone
        (or with none), what ``src`` still sends is recorded, not relayed: reading on
        is what lets ``src``'s closing handshake finish."""
        recorder, sent = self.recorder, self.sent
        relaying = dst is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in src:
                recorder.message(index, sender, message)
                if sent is not None:
                    sent.append(Relayed(index, sender, message))
                if relaying:
                    assert dst is not None
                    try:
                        await dst.send(message)
                    except ConnectionClosed:
                        relaying = False

    def _control(
        self, index: int, sender: Sender, opcode: Opcode, data: bytes, other: Connection
    ) -> None:
        kind = Kind.PING if opcode is Opcode.PING else Kind.PONG
        self.recorder.control(index, sender, kind, data)
        if opcode is Opcode.PING and other.protocol.state is State.OPEN:
            # Relay the ping; its pong comes back to the proxy (recorded, not relayed:
            # this side has had its pong from the proxy already).
            with contextlib.suppress(Exception):
                other.protocol.send_ping(data)
                other.send_data()


def _is_upgrade(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket (RFC 6455 §4.2.1), before websockets
    checks it in full: anything else must not open a connection upstream."""
    headers = request.headers  # a header may be repeated: read every value
    upgrade = ", ".join(headers.get_all("Upgrade")).lower()
    connection = ", ".join(headers.get_all("Connection")).lower()
    return (
        "websocket" in upgrade
        and "upgrade" in connection
        and "Sec-WebSocket-Key" in headers
        and headers.get_all("Sec-WebSocket-Version") == ["13"]
    )


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a relayed session ended: the close to pass on, who the recording says sent
    it (``client`` or ``server``: the upstream, or the proxy itself), and the leg it
    ended on (the other one is closed the same way)."""

    code: int
    reason: str
    by: str
    ended: Connection


def _ending(ws: Connection, upstream: Connection, initiator: Connection | None) -> _Ending:
    """Who ended the session of client leg ``ws`` and ``upstream``: ``initiator`` when
    a peer's close frame came first, else the proxy when it closed a leg itself, else
    the leg that dropped."""
    if initiator is not None:
        rcvd = initiator.protocol.close_rcvd
        assert rcvd is not None
        by = "client" if initiator is ws else "server"
        return _Ending(rcvd.code, rcvd.reason, by, initiator)
    for leg in (ws, upstream):
        sent = leg.protocol.close_sent
        if sent is not None:  # the proxy closed it: shutdown, or a protocol error
            return _Ending(sent.code, sent.reason, "server", leg)
    if ws.protocol.state is not State.OPEN and upstream.protocol.state is State.OPEN:
        return _Ending(CLOSE_ABNORMAL, "", "client", ws)
    return _Ending(CLOSE_ABNORMAL, "", "server", upstream)


async def _close_like(ws: Connection, code: int, reason: str) -> None:
    """Close ``ws`` with ``code``; a close that never went on the wire (1006: the other
    side dropped) is passed on as a dropped connection."""
    if ws.protocol.state is not State.OPEN:
        return  # closing or closed already
    if code in _NOT_ON_THE_WIRE or not (1000 <= code <= 4999):
        if code != 1005:
            # No close frame, as on the other side; but what is already written still
            # goes out first. (An abort would send a reset, and the peer's kernel would
            # throw away what it had received and not yet read.)
            transport = ws.transport
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
            return
        code, reason = 1000, ""  # a close frame without a status: close without one too
    # websockets' close waits for room in the socket with no deadline (a peer that
    # reads nothing): bound it, then drop the connection.
    closing = asyncio.ensure_future(ws.close(code, reason))
    done, _ = await asyncio.wait({closing}, timeout=_CLOSE_TIMEOUT_S + 1)
    if not done:
        ws.transport.abort()


def redacted_subprotocol(subprotocol: str | None) -> str | None:
    """The chosen subprotocol as a recording may hold it (a token becomes a marker)."""
    return None if subprotocol is None else redact_subprotocols([subprotocol])[0]


def _phrase(status: int, response: Response | None) -> str:
    if response is not None and response.reason_phrase:
        return response.reason_phrase
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _copy_headers(source: Headers, target: Headers) -> None:
    for name in _RESPONSE_FORWARDED:
        for value in source.get_all(name):
            target[name] = value


@contextlib.asynccontextmanager
async def record_proxy(
    upstream: str,
    out: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    redact: Callable[[bytes], bytes] | None = None,
    redaction: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    open_timeout: float = 10.0,
    max_size: int = 16 * 2**20,
    max_connections: int = 1000,
    log_sends: bool = False,
) -> AsyncIterator[RecordingProxy]:
    """Relay clients to ``upstream`` (``ws://`` or ``wss://``), recording to ``out``.

    ``redact`` is applied to every message payload before it is recorded (build it with
    :class:`simulator.core.redact.Redactor`); ``redaction`` describes it (no key) in
    the file's metadata. Secret headers and token-like query parameters are always
    removed. ``ssl_context`` verifies a ``wss://`` upstream (default: the system's CAs).
    Past ``max_connections`` clients (open or opening), handshakes get 503.
    The file is compacted when the block ends; killed, it keeps what was flushed
    (about the last second is lost; ``sim recover``).

    Raises :class:`UsageError` for a bad URL, :class:`RecordingError` for an
    unwritable ``out``, before listening.
    """
    check_upstream(upstream)
    log = EventLog()
    recorder = session_recorder(out, log, upstream, "proxy", redact, redaction)
    proxy = RecordingProxy(
        upstream,
        recorder,
        host=host,
        port=port,
        ssl_context=ssl_context,
        open_timeout=open_timeout,
        max_size=max_size,
        max_connections=max_connections,
        log=log,
        log_sends=log_sends,
    )
    try:
        await proxy.start()
    except BaseException:
        recorder.close()
        raise
    try:
        yield proxy
    finally:
        await proxy.stop()
