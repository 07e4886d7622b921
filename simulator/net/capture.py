"""`sim record --connect`: capture a live feed directly, as a client.

Connects to the URL, sends the given messages (a subscribe, a login), and records
everything that passes until the duration is over, the server closes, or the caller
stops it; then closes with 1000. The recording is one connection (``conn = 0``) in the
same format as the proxy's, so `sim replay` serves it back to a client that sends the
same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from simulator.core.redact import redact_headers, redact_url
from simulator.errors import SimError
from simulator.net.log import EventKind, EventLog
from simulator.net.proxy import (
    ObservedClientConnection,
    check_upstream,
    redacted_subprotocol,
    session_recorder,
)
from simulator.net.recorder import Recorder
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
) -> Captured:
    """Record the feed at ``url`` to ``out`` until ``duration_s`` has passed, ``stop`` is
    set, or the server closes. ``send`` messages go out first, in order, as text.
    ``headers`` are added to the handshake (secret ones are never recorded).

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
    try:
        try:
            ws = await ws_connect(
                url,
                additional_headers=list(headers),
                compression=None,
                max_size=max_size,
                ssl=(ssl_context or True) if url.startswith("wss:") else None,
                open_timeout=open_timeout,
                proxy=None,
                create_connection=ObservedClientConnection,
            )
        except InvalidStatus as e:
            raise _failed(recorder, handshake, f"{e}", e.response.status_code) from None
        except TimeoutError:
            raise _failed(recorder, handshake, "timed out opening the connection") from None
        except ssl.SSLError as e:
            raise _failed(recorder, handshake, f"TLS: {e}") from None
        except (OSError, InvalidHandshake, InvalidURI) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise _failed(recorder, handshake, reason) from None
        assert isinstance(ws, ObservedClientConnection)
        handshake["subprotocol"] = redacted_subprotocol(ws.subprotocol)
        if ws.response is not None:
            handshake["response_headers"] = redact_headers(ws.response.headers.raw_items())
        recorder.opened(0, handshake)
        log.emit(EventKind.CONNECTED, conn=0, url=redact_url(url))
        ws.on_control = lambda op, data: recorder.control(
            0, Sender.SERVER, Kind.PING if op.name == "PING" else Kind.PONG, data
        )
        received = 0

        async def receive() -> None:
            nonlocal received
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    recorder.message(0, Sender.SERVER, message)
                    received += 1

        reader = asyncio.ensure_future(receive())
        for message in send:
            recorder.message(0, Sender.CLIENT, message)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)
        waits: set[asyncio.Future[Any]] = {reader}
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        await asyncio.wait(waits, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
        by = "server" if reader.done() else "client"
        await ws.close()
        await asyncio.wait({reader}, timeout=5)
        for waiter in waits:
            waiter.cancel()
        p = ws.protocol
        close = p.close_rcvd if by == "server" else p.close_sent
        code = 1006 if close is None else close.code
        reason = "" if close is None else close.reason
        recorder.closed(0, code, reason, by)
        log.emit(EventKind.DISCONNECTED, conn=0, code=code, reason=reason, by=by)
        return Captured(received, code, reason)
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
