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
from simulator.net.wire_client import OpenTransport, connect
from simulator.storage.schema import Kind, Sender


class CaptureError(SimError):
    """The feed could not be captured (refused, unreachable, TLS); the recording holds
    what happened."""


@dataclass(frozen=True, slots=True)
class Captured:
    """How a capture ended: messages received, and the close code and reason."""

    received: int
    close_code: int | None
    close_reason: str | None


class _Capture(Handler):
    """Records what the server sends, as it arrives; what arrives with the handshake's
    response (a welcome message), before the connection's ``open`` row is written, waits
    for :meth:`open_row_written`, so that the file reads in the order things happened."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.received = 0
        self.ended = asyncio.Event()
        self._early: list[Callable[[], None]] | None = []

    def open_row_written(self) -> None:
        """The ``open`` row is written: write what came before it, then record as it comes."""
        early, self._early = self._early or [], None
        for write in early:
            write()

    def _record(self, write: Callable[[], None]) -> None:
        if self._early is None:
            write()
        else:
            self._early.append(write)

    def message(self, conn: Connection, message: str | bytes) -> None:
        self._record(lambda: self.recorder.message(0, Sender.SERVER, message))
        self.received += 1

    def control(self, conn: Connection, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.ended.set()  # the server closes: the capture is over
        else:
            kind = Kind.PING if frame.opcode is Opcode.PING else Kind.PONG
            data = bytes(frame.data)
            self._record(lambda: self.recorder.control(0, Sender.SERVER, kind, data))

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
) -> Captured:
    """Record the feed at ``url`` to ``out`` until ``duration_s`` has passed, ``stop`` is
    set, or the server closes. ``send`` messages go out first, in order, as text.
    ``headers`` are added to the handshake (secret ones are never recorded).
    ``open_transport`` replaces the socket (see :func:`simulator.net.wire_client.connect`).

    Raises :class:`CaptureError` when the handshake fails (the file then holds the
    ``open`` and ``error`` rows), :class:`UsageError` for a bad URL and
    :class:`RecordingError` for an unwritable ``out``.
    """
    check_upstream(url)
    log = log if log is not None else EventLog()
    recorder = session_recorder(out, log, url, "connect", redact, redaction)
    flusher = asyncio.ensure_future(recorder.run())
    handshake: dict[str, Any] = {
        "upstream": redact_url(url),
        "request_headers": redact_headers(headers),
    }
    handler = _Capture(recorder)
    config = WireConfig(
        max_size=max_size,
        ping_interval=20.0,  # keeps a quiet feed's connection known to be alive
        ping_timeout=20.0,
        open_timeout=open_timeout,
        close_timeout=CLOSE_TIMEOUT_S,
    )
    try:
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
            raise _failed(recorder, handshake, e.reason, e.status) from None
        offered = offered_subprotocols(headers)
        handshake["subprotocol"] = redact_subprotocol(ws.subprotocol, offered)
        if ws.response is not None:
            handshake["response_headers"] = redact_headers(ws.response.headers.raw_items(), offered)
        recorder.opened(0, handshake)
        handler.open_row_written()
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
    finally:
        flusher.cancel()
        recorder.close()


def _failed(
    recorder: Recorder, handshake: dict[str, Any], error: str, status: int | None = None
) -> CaptureError:
    if status is not None:
        handshake["status"] = status
    recorder.opened(0, handshake)
    recorder.error(0, Sender.SERVER, error)
    return CaptureError(f"cannot connect to {handshake['upstream']}: {error}")
