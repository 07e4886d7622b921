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
import functools
import http
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from simulator.core.redact import (
    redact_headers,
    redact_subprotocol,
    redact_subprotocols,
    redact_text,
    redact_url,
)
from simulator.errors import ConnectError, UsageError
from simulator.net.common import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_NO_STATUS,
    CLOSE_TIMEOUT_S,
    sendable,
)
from simulator.net.handshake import is_upgrade, refusal, too_many_connections
from simulator.net.listener import Listener
from simulator.net.log import EventKind, EventLog
from simulator.net.recorder import Recorder
from simulator.net.wire import (
    CLIENT_FRAMES_PER_S,
    MAX_HANDSHAKES,
    Connection,
    Handler,
    WireConfig,
)
from simulator.net.wire_client import ClientConnection, OpenTransport, connect, gateway_status
from simulator.net.wire_server import HandshakeAnswer, ServerConnection
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
        "user-agent",  # passed as connect(user_agent=...)
    }
)
#: Response headers of the upstream worth passing back to the client (the rest of a
#: 101 response is the proxy's own handshake).
_RESPONSE_FORWARDED = ("set-cookie", "www-authenticate", "retry-after", "location")

#: The largest message relayed, either way, unless ``max_size`` says otherwise.
MAX_SIZE = 16 * 2**20
#: Bytes a leg buffers for its peer before the proxy stops reading the other leg
#: (backpressure to the sender).
_WRITE_LIMIT = 2**16
#: How long what a closing side sent before its close may take to reach the other side.
_DRAIN_TIMEOUT_S = 30.0


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
    overwrite: bool = False,
) -> Recorder:
    """The recorder of a `sim record` session of ``url`` (``mode``: how it was recorded);
    ``overwrite`` replaces an existing ``out`` (and a killed recorder's segments) now.
    Raises :class:`RecordingError` when ``out`` cannot be written."""
    meta = new_metadata(
        sim_version=__version__,
        scenario="record",
        seed=None,
        source_url=redact_url(url),
        extra={"mode": mode, "redaction": redaction or {}},
    )
    session = f"record:{meta['created_at']}:{time.monotonic_ns()}"
    return Recorder(out, meta, log, session=session, redact=redact, overwrite=overwrite)


def check_upstream(upstream: str) -> None:
    """Raise :class:`UsageError` unless ``upstream`` is a ``ws://`` or ``wss://`` URL."""
    parts = urlsplit(upstream)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"--upstream {upstream!r}: must be a ws:// or wss:// URL with a host")


@dataclass(frozen=True, slots=True)
class Relayed:
    """One message passed through (kept when ``log_sends`` is on)."""

    conn: int
    sender: Sender  # server: upstream to client; client: client to upstream
    message: str | bytes


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a relayed session ended: the close to pass on, and who the recording says
    sent it (``client``, or ``server``: the upstream, or the proxy itself)."""

    code: int
    reason: str
    by: str


class _Relay(Handler):
    """One relayed session: the client's leg (a connection of the proxy's server) and
    the upstream's leg (a client connection of the proxy's). Messages are passed on
    as they arrive, in order; a leg whose peer has too much buffered stops being read
    until it drains. The handler of the upstream leg; the proxy hands it the client
    leg's events."""

    def __init__(self, proxy: RecordingProxy, index: int, client: ServerConnection) -> None:
        self.proxy = proxy
        self.index = index
        self.client = client
        self.upstream: ClientConnection | None = None
        self.relaying = False  # the client leg is open: messages go through
        self.early: list[str | bytes] = []  # upstream messages before that
        self.ending: _Ending | None = None
        self.lost = 0  # legs whose TCP connection is gone

    # ------------------------------------------------------------------ legs

    def other(self, leg: Connection) -> Connection | None:
        return self.upstream if leg is self.client else self.client

    def sender(self, leg: Connection) -> Sender:
        return Sender.CLIENT if leg is self.client else Sender.SERVER

    def start(self) -> None:
        """The client leg is open: pass on what the upstream sent meanwhile, and read
        the upstream from now on."""
        assert self.upstream is not None
        self.relaying = True
        for message in self.early:
            self.client.send(message)
        self.early = []
        self.upstream.release_reading("handshake")

    # ------------------------------------------------------------------ events

    def message(self, conn: Connection, message: str | bytes) -> None:
        sender = self.sender(conn)
        if sender is Sender.SERVER and self.upstream is None:
            # Came with the upstream's handshake response, before its `open` row.
            self.early.append(message)
            return
        self._record(sender, message)
        if self.ending is not None:
            return  # recorded, not relayed: the other side is closing or gone
        if sender is Sender.SERVER and not self.relaying:
            self.early.append(message)
            return
        dst = self.other(conn)
        assert dst is not None
        dst.send(message)
        if dst.transport.get_write_buffer_size() > _WRITE_LIMIT:
            # Backpressure: read no more from this side until the other drains.
            conn.hold_reading("backpressure")
            dst.on_resume = functools.partial(conn.release_reading, "backpressure")

    def record_early(self) -> None:
        """The `open` row is written: record what the upstream sent with its response."""
        for message in self.early:
            self._record(Sender.SERVER, message)

    def _record(self, sender: Sender, message: str | bytes) -> None:
        self.proxy.relayed[sender] += 1
        self.proxy.recorder.message(self.index, sender, message)
        if self.proxy.sent is not None:
            self.proxy.sent.append(Relayed(self.index, sender, message))

    def control(self, conn: Connection, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.CLOSE:
            # Only a close the peer started: the answer to one the proxy sent is no news.
            rcvd = conn.protocol.close_rcvd
            if self.ending is None and rcvd is not None and conn.protocol.close_rcvd_then_sent:
                by = "client" if conn is self.client else "server"
                self._end(conn, _Ending(rcvd.code, rcvd.reason, by))
            return
        kind = Kind.PING if opcode is Opcode.PING else Kind.PONG
        self.proxy.recorder.control(self.index, self.sender(conn), kind, bytes(frame.data))
        other = self.other(conn)
        if opcode is Opcode.PING and other is not None and other.is_open:
            # Relay the ping; its pong comes back to the proxy (recorded, not relayed:
            # this side has had its pong from the proxy already).
            other.send_ping(bytes(frame.data))

    def closing(self, conn: Connection) -> None:
        """The proxy began closing ``conn`` itself (a limit its peer broke, a keepalive
        it missed): the session ends now, not once that leg is gone (up to the close
        timeout later, upstream messages recorded meanwhile and never relayed)."""
        sent = conn.protocol.close_sent
        if self.ending is None and sent is not None:
            self._end(conn, _Ending(sent.code, sent.reason, "server"))

    def closed(self, conn: Connection) -> None:
        if self.ending is None:
            sent = conn.protocol.close_sent
            if sent is not None:  # the proxy closed it (told by closing(), unless that failed)
                self._end(conn, _Ending(sent.code, sent.reason, "server"))
            else:  # dropped
                by = "client" if conn is self.client else "server"
                self._end(conn, _Ending(CLOSE_ABNORMAL, "", by))
        self.lost += 1
        # A client leg that never opened (gone during the handshake, or refused at a
        # shutdown) tells nothing: the upstream's loss ends the session then.
        if self.lost == 2 or not self.relaying:
            self.proxy.finished(self)

    def end_with(self, ending: _Ending) -> None:
        """The session ends so: recorded now, when it is known (not once both legs are
        gone, which may be seconds later: a replay would close that much late). What
        is recorded after it was not relayed."""
        self.ending = ending
        self.proxy.recorder.closed(self.index, ending.code, ending.reason, ending.by)

    def _end(self, leg: Connection, ending: _Ending) -> None:
        """``leg``'s side ended the session: close the other side the same way, once
        what was already relayed to it has gone out."""
        self.end_with(ending)
        other = self.other(leg)
        if other is None:
            return
        if not other.lost:
            # Maybe held by backpressure toward the side that ended: its answer to our
            # close must be read.
            other.release_all_reading()
        self.proxy.spawn_close(other, ending.code, ending.reason)


class RecordingProxy(Listener):
    """A running proxy. Build it with :func:`record_proxy`; read it, don't construct it."""

    #: The recording, opened by :meth:`start` once the proxy listens.
    recorder: Recorder

    def __init__(
        self,
        upstream: str,
        open_recorder: Callable[[], Recorder],
        *,
        host: str,
        port: int | None,
        ssl_context: ssl.SSLContext | None,
        open_timeout: float,
        max_size: int,
        max_connections: int,
        log: EventLog,
        log_sends: bool,
        open_upstream: OpenTransport | None = None,
        max_frames_per_s: int = CLIENT_FRAMES_PER_S,
        max_handshakes: int = MAX_HANDSHAKES,
    ) -> None:
        super().__init__(host, log)
        self.max_connections = max_connections
        self.max_frames_per_s = max_frames_per_s
        self.max_handshakes = max_handshakes
        self.upstream = upstream
        self._open_recorder = open_recorder
        self.requested_port = port
        self.sent: list[Relayed] | None = [] if log_sends else None
        self._ssl = ssl_context
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._next_index = 0
        self._relays: dict[int, _Relay] = {}  # every session whose upstream opened
        self._opening = 0  # handshakes waiting for their upstream
        self._open_upstream_transport = open_upstream
        self.connections = 0  # relayed client connections still open
        self.rejected = 0  # handshakes refused: past max_connections, or as upstream refused
        self.relayed: Counter[str] = Counter()  # messages recorded, by sender (server, client)
        self._leg_config = WireConfig(
            max_size=max_size,
            write_limit=_WRITE_LIMIT,
            ping_interval=None,  # each side's pings are relayed; the proxy sends none
            ping_timeout=None,
            open_timeout=open_timeout,
            close_timeout=CLOSE_TIMEOUT_S,
        )

    async def start(self) -> None:
        config = WireConfig(
            max_size=self._max_size,
            write_limit=_WRITE_LIMIT,
            ping_interval=None,
            ping_timeout=None,
            open_timeout=self._open_timeout,  # for the request; then the upstream's own
            close_timeout=CLOSE_TIMEOUT_S,
            max_frames_per_s=self.max_frames_per_s,
            max_handshakes=self.max_handshakes,
        )
        await self._listen(config, self.requested_port)
        # Opened only now (as the live server opens its own): a port in use must leave
        # no file behind, nor remove the one --force would replace.
        try:
            self.recorder = self._open_recorder()
        except BaseException:
            await self._close(CLOSE_GOING_AWAY)  # an unwritable path: stop, then fail
            raise
        self._spawn(self.recorder.run())
        self.log.emit(
            EventKind.LISTENING, url=self.url, mode="record", upstream=redact_url(self.upstream)
        )

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and its upstream too, without waiting
        for what is in flight, stop listening, write the file. Bounded by the close
        timeout: a side that does not answer is dropped."""
        if not self.serving:
            return
        self.log.emit(EventKind.STOPPING, connections=self.connections)
        upstreams = []
        for relay in list(self._relays.values()):
            if relay.ending is None:
                relay.end_with(_Ending(CLOSE_GOING_AWAY, "", "server"))
            if relay.upstream is not None and not relay.upstream.lost:
                relay.upstream.start_close(CLOSE_GOING_AWAY)
                upstreams.append(relay.upstream.wait_closed())
        await self._close(CLOSE_GOING_AWAY)  # the client legs, bounded by the close timeout
        if upstreams:
            await asyncio.gather(*upstreams)  # each bounded by its close timer
        for relay in list(self._relays.values()):
            if not relay.relaying and relay.upstream is not None:
                relay.upstream.abort()  # opened for a handshake the shutdown refused
        self.recorder.close()

    @property
    def connections_total(self) -> int:
        """Client handshakes relayed so far (refused ones included)."""
        return self._next_index

    def open_sessions(self) -> list[int]:
        """The connection indices of the sessions relaying now."""
        return [i for i, r in list(self._relays.items()) if r.relaying and r.ending is None]

    # ------------------------------------------------------------------ handshake

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        if not is_upgrade(request):
            return None  # websockets answers it (426 or 400); nothing goes upstream
        index = conn.index = self._next_index
        self._next_index += 1
        if self.connections + self._opening >= self.max_connections:
            self.rejected += 1
            self.log.emit(EventKind.REJECTED, conn=index, reason="max_connections", status=503)
            return too_many_connections(conn.protocol)
        return self._open_upstream(conn, request, index)

    async def _open_upstream(
        self, conn: ServerConnection, request: Request, index: int
    ) -> Response | None:
        url = upstream_url(self.upstream, request.path)
        offered = [
            p.strip()
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
        relay = _Relay(self, index, conn)
        self._opening += 1
        try:
            upstream = await connect(
                url,
                relay,
                config=self._leg_config,
                headers=forwarded,
                subprotocols=offered,
                origin=request.headers.get("Origin"),
                user_agent=request.headers.get("User-Agent"),
                ssl=self._ssl,
                open_transport=self._open_upstream_transport,
            )
        except ConnectError as e:
            return self._refuse(conn, index, handshake, e, offered)
        finally:
            self._opening -= 1
        # Nothing goes to the client before its handshake is answered: hold the
        # upstream's messages (those that came with its response are kept in order).
        upstream.hold_reading("handshake")
        relay.upstream = upstream
        self._relays[index] = relay
        handshake["subprotocol"] = redact_subprotocol(upstream.subprotocol, offered)
        if upstream.response is not None:
            response_headers = upstream.response.headers.raw_items()
            handshake["response_headers"] = redact_headers(response_headers, offered)
        response: Response = conn.protocol.accept(request)
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            # websockets refuses what is_upgrade let through (it checks what websockets
            # checks, so this is a safety net): the client gets its answer, recorded as
            # the refusal it is, and the upstream opened for it is let go.
            handshake["status"] = response.status_code
            self.recorder.opened(index, handshake)
            reason = f"refused: {response.status_code} {response.reason_phrase}"
            self.recorder.error(index, Sender.SERVER, reason)
            upstream.abort()
            relay.end_with(_Ending(CLOSE_ABNORMAL, reason, "server"))
            self.rejected += 1
            self.log.emit(
                EventKind.REJECTED, conn=index, reason=reason, status=response.status_code
            )
            return response
        self.recorder.opened(index, handshake)
        relay.record_early()
        if conn.lost or conn.transport.is_closing() or conn.protocol.eof_sent:
            # The client went away while we connected, or what it sent with its request
            # failed it (the answer will drop it): close the upstream, and the recorded
            # connection.
            upstream.abort()
            relay.end_with(_Ending(CLOSE_ABNORMAL, "client left during the handshake", "client"))
            return None
        if upstream.subprotocol is not None:
            response.headers["Sec-WebSocket-Protocol"] = upstream.subprotocol
        if upstream.response is not None:
            _copy_headers(upstream.response.headers, response.headers)
        return response

    def _refuse(
        self,
        conn: ServerConnection,
        index: int,
        handshake: dict[str, Any],
        error: ConnectError,
        offered: list[str],
    ) -> Response:
        """Answer the client as the upstream answered us (or 502/504), and record it."""
        status = gateway_status(error)
        if error.status is not None:
            text = error.reason
            location = Headers(error.headers).get("Location")
            if location is not None:  # a redirect: passed on, and worth knowing where
                text += f" to {location}"
        elif error.timed_out:
            text = "upstream timed out"
        else:
            text = f"upstream: {error.reason}"
        text = redact_text(text)  # library errors quote URLs (a redirect's Location)
        handshake["status"] = status
        if error.status is not None:
            # The upstream's refusal, as for an accepted handshake: a replay answers with
            # its Retry-After.
            handshake["response_headers"] = redact_headers(error.headers, offered)
        self.recorder.opened(index, handshake)
        self.recorder.error(index, Sender.SERVER, text)
        self.recorder.closed(index, CLOSE_ABNORMAL, text[:120], "server")
        self.rejected += 1
        self.log.emit(EventKind.REJECTED, conn=index, reason=text, status=status)
        upstream = Headers(error.headers)
        forwarded = [
            (name, value) for name in _RESPONSE_FORWARDED for value in upstream.get_all(name)
        ]
        return refusal(status, forwarded, phrase=error.phrase, body=error.body)

    # ------------------------------------------------------------------ relaying
    # The client legs' events (from the WireServer), passed to their relay.

    def _relay_of(self, conn: Connection) -> _Relay | None:
        return self._relays.get(conn.index if conn.index is not None else -1)

    def opened(self, conn: Connection) -> None:
        relay = self._relay_of(conn)
        assert relay is not None and isinstance(conn, ServerConnection)
        self.connections += 1
        self.log.emit(
            EventKind.CONNECTED,
            conn=relay.index,
            path=None if conn.path is None else redact_url(conn.path),
        )
        relay.start()

    def message(self, conn: Connection, message: str | bytes) -> None:
        relay = self._relay_of(conn)
        if relay is not None:
            relay.message(conn, message)

    def control(self, conn: Connection, frame: Frame) -> None:
        relay = self._relay_of(conn)
        if relay is not None:
            relay.control(conn, frame)

    def closing(self, conn: Connection) -> None:
        relay = self._relay_of(conn)
        if relay is not None:
            relay.closing(conn)

    def closed(self, conn: Connection) -> None:
        relay = self._relay_of(conn)
        if relay is not None:
            relay.closed(conn)

    def spawn_close(self, leg: Connection, code: int, reason: str) -> None:
        """Close ``leg`` like the other side ended, in the background."""
        self._spawn(_close_like(leg, code, reason))

    def finished(self, relay: _Relay) -> None:
        """Both legs of ``relay`` are gone: log how it ended (and record it, if no side
        said: a connection lost)."""
        if self._relays.pop(relay.index, None) is None:
            return
        if relay.relaying:
            self.connections -= 1
        ending = relay.ending
        if ending is None:
            ending = _Ending(CLOSE_ABNORMAL, "", "server")
            relay.end_with(ending)
        if relay.relaying:
            self.log.emit(
                EventKind.DISCONNECTED,
                conn=relay.index,
                code=ending.code,
                reason=ending.reason,
                by=ending.by,
            )


async def _close_like(leg: Connection, code: int, reason: str) -> None:
    """Close ``leg`` with ``code`` once what was relayed to it has gone out (a slow
    reader is waited for, up to _DRAIN_TIMEOUT_S); a close that never went on the wire
    (1006: the other side dropped) is passed on as a dropped connection."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            await leg.drain()
    if leg.protocol.state is not State.OPEN:
        return  # closing or closed already
    if not sendable(code) and code != CLOSE_NO_STATUS:
        leg.end_without_close()  # as on the other side, after what was relayed
        return
    # 1005: a close frame without a status, as the other side sent.
    await leg.close(None if code == CLOSE_NO_STATUS else code, reason)  # aborted if unanswered


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
    max_size: int = MAX_SIZE,
    max_connections: int = 1000,
    log_sends: bool = False,
    in_memory: bool = False,
    open_upstream: OpenTransport | None = None,
    tls: ssl.SSLContext | None = None,
    max_frames_per_s: int = CLIENT_FRAMES_PER_S,
    max_handshakes: int = MAX_HANDSHAKES,
    overwrite: bool = False,
) -> AsyncIterator[RecordingProxy]:
    """Relay clients to ``upstream`` (``ws://`` or ``wss://``), recording to ``out``.

    ``redact`` is applied to every message payload before it is recorded (build it with
    :class:`simulator.core.redact.Redactor`); ``redaction`` describes it (no key) in
    the file's metadata. Secret headers and token-like query parameters are always
    removed. ``ssl_context`` verifies a ``wss://`` upstream (default: the system's CAs).
    Past ``max_connections`` clients (open or opening), handshakes get 503. A message
    larger than ``max_size`` (either way) closes its leg with 1009; a client sending
    more than ``max_frames_per_s`` frames in a second is closed with 1008; past
    ``max_handshakes`` connections whose request has not arrived, the oldest is dropped
    (docs/limits.md).
    The file is compacted when the block ends; killed, it keeps what was flushed
    (about the last second is lost; ``sim recover``). ``in_memory`` opens no socket:
    clients connect with ``open_transport=proxy.open_transport``; ``open_upstream``
    replaces the sockets to the upstream (see :func:`simulator.net.wire_client.connect`).
    ``tls`` makes the listening side ``wss://`` (a server context:
    :func:`simulator.net.tls.server_context`); ``ssl_context`` is the upstream's.

    ``out`` is opened once the proxy listens: when it cannot (a port in use), nothing
    is written, and an existing ``out`` is replaced (``overwrite``) only then.

    Raises :class:`UsageError` for a bad URL, :class:`RecordingError` for an existing
    (without ``overwrite``) or unwritable ``out``, before anyone is served.
    """
    check_upstream(upstream)
    log = EventLog()
    proxy = RecordingProxy(
        upstream,
        functools.partial(
            session_recorder, out, log, upstream, "proxy", redact, redaction, overwrite
        ),
        host=host,
        port=None if in_memory else port,
        ssl_context=ssl_context,
        open_timeout=open_timeout,
        max_size=max_size,
        max_connections=max_connections,
        log=log,
        log_sends=log_sends,
        open_upstream=open_upstream,
        max_frames_per_s=max_frames_per_s,
        max_handshakes=max_handshakes,
    )
    proxy.tls = tls
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
