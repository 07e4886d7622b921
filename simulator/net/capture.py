"""`sim record --connect`: capture a live feed directly, as a client.

Connects to the URL, sends the given messages (a subscribe, a login), and records
everything that passes until the duration is over, the server closes, or the caller
stops it; then closes with 1000. The recording is one connection (``conn = 0``) in the
same format as the proxy's, so `sim replay` serves it back to a client that sends the
same messages.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.frames import Frame, Opcode

from simulator.core.redact import (
    offered_subprotocols,
    redact_headers,
    redact_subprotocol,
    redact_url,
)
from simulator.errors import ConnectError, SimError
from simulator.net.common import CLOSE_ABNORMAL, CLOSE_TIMEOUT_S
from simulator.net.log import EventKind, EventLog
from simulator.net.proxy import check_upstream, session_recorder
from simulator.net.recorder import Recorder
from simulator.net.wire import Connection, Handler, WireConfig
from simulator.net.wire_client import ClientConnection, OpenTransport, connect
from simulator.storage.schema import Kind, Sender


class CaptureError(SimError):
    """The feed could not be captured (refused, unreachable, TLS); nothing was written."""


@dataclass(frozen=True, slots=True)
class Captured:
    """How a capture ended: messages received, and the close code and reason."""

    received: int
    close_code: int | None
    close_reason: str | None


class _Capture(Handler):
    """Records what the server sends, as it arrives. The recording is opened once the
    connection is (a feed that cannot be reached leaves no file): what arrives before
    :meth:`open_row_written` (a welcome message with the handshake's response) waits for
    it, so that the file reads in the order things happened."""

    def __init__(self) -> None:
        self.recorder: Recorder | None = None
        self.received = 0
        self.ended = asyncio.Event()
        self._early: list[Callable[[Recorder], None]] | None = []

    def open_row_written(self, recorder: Recorder) -> None:
        """``recorder`` holds the ``open`` row: write what came before it there, then
        record as it comes."""
        early, self._early = self._early or [], None
        self.recorder = recorder
        for write in early:
            write(recorder)

    def _record(self, write: Callable[[Recorder], None]) -> None:
        if self.recorder is None:
            assert self._early is not None
            self._early.append(write)
        else:
            write(self.recorder)

    def message(self, conn: Connection, message: str | bytes) -> None:
        self._record(lambda r: r.message(0, Sender.SERVER, message))
        self.received += 1

    def control(self, conn: Connection, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.ended.set()  # the server closes: the capture is over
        else:
            kind = Kind.PING if frame.opcode is Opcode.PING else Kind.PONG
            data = bytes(frame.data)
            self._record(lambda r: r.control(0, Sender.SERVER, kind, data))

    def closed(self, conn: Connection) -> None:
        self.ended.set()


async def capture(
    url: str,
    out: str | Path,
    *,
    send: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    redact: Callable[[bytes], bytes] | None = None,
    redaction: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    open_timeout: float = 10.0,
    max_size: int = 16 * 2**20,
    log: EventLog | None = None,
    open_transport: OpenTransport | None = None,
    overwrite: bool = False,
) -> Captured:
    """Record the feed at ``url`` to ``out`` until ``duration_s`` has passed, ``stop`` is
    set, or the server closes. ``send`` messages go out first, in order, as text.
    ``headers`` are added to the handshake (secret ones are never recorded).
    ``open_transport`` replaces the socket (see :func:`simulator.net.wire_client.connect`).

    ``out`` is opened once the connection is: a feed that cannot be reached leaves no
    file, and an existing ``out`` is replaced (``overwrite``) only then.

    Raises :class:`CaptureError` when the handshake fails (nothing is written; the
    message says why), :class:`UsageError` for a bad URL and :class:`RecordingError`
    for an existing (without ``overwrite``) or unwritable ``out`` (the connection is
    then closed at once).
    """
    check_upstream(url)
    log = log if log is not None else EventLog()
    handler = _Capture()
    config = WireConfig(
        max_size=max_size,
        ping_interval=20.0,  # keeps a quiet feed's connection known to be alive
        ping_timeout=20.0,
        open_timeout=open_timeout,
        close_timeout=CLOSE_TIMEOUT_S,
    )
    try:
        ws = await connect(
            url,
            handler,
            config=config,
            headers=headers,
            ssl=ssl_context,
            open_transport=open_transport,
        )
    except ConnectError as e:
        raise CaptureError(f"cannot connect to {redact_url(url)}: {e.reason}") from None
    try:
        recorder = session_recorder(out, log, url, "connect", redact, redaction, overwrite)
    except BaseException:
        await ws.close()  # bounded by the close timeout
        raise
    flusher = asyncio.ensure_future(recorder.run())
    try:
        return await _record(ws, handler, recorder, url, headers, send, duration_s, stop, log)
    finally:
        flusher.cancel()
        recorder.close()


async def _record(
    ws: ClientConnection,
    handler: _Capture,
    recorder: Recorder,
    url: str,
    headers: Sequence[tuple[str, str]],
    send: Sequence[str],
    duration_s: float | None,
    stop: asyncio.Event | None,
    log: EventLog,
) -> Captured:
    """The open connection ``ws`` recorded until the end (see :func:`capture`); the
    caller closes ``recorder``."""
    offered = offered_subprotocols(headers)
    handshake: dict[str, Any] = {
        "upstream": redact_url(url),
        "request_headers": redact_headers(headers),
        "subprotocol": redact_subprotocol(ws.subprotocol, offered),
    }
    if ws.response is not None:
        handshake["response_headers"] = redact_headers(ws.response.headers.raw_items(), offered)
    recorder.opened(0, handshake)
    handler.open_row_written(recorder)
    log.emit(EventKind.CONNECTED, conn=0, url=redact_url(url))
    for message in send:
        recorder.message(0, Sender.CLIENT, message)
        ws.send(message)
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(handler.ended.wait())}
    if stop is not None:
        waits.add(asyncio.ensure_future(stop.wait()))
    await asyncio.wait(waits, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waits:
        waiter.cancel()
    by = "server" if handler.ended.is_set() else "client"
    await ws.close()  # bounded by the close timeout
    p = ws.protocol
    close = p.close_rcvd if by == "server" else p.close_sent
    code = CLOSE_ABNORMAL if close is None else close.code
    reason = "" if close is None else close.reason
    recorder.closed(0, code, reason, by)
    log.emit(EventKind.DISCONNECTED, conn=0, code=code, reason=reason, by=by)
    return Captured(handler.received, code, reason)
