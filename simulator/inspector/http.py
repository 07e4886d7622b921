"""Plain HTTP/1.1 on the WebSocket port: one request per connection, parsed by h11.

The wire's :class:`~simulator.net.wire_server.ServerConnection` hands a connection over
(see :class:`~simulator.net.wire_server.HttpRouter`) when its first request is not a
WebSocket handshake. :class:`Exchange` reads that request within limits (head size,
body size, time), asks a handler for the answer and writes it: a whole response, or an
event stream that stays open (Server-Sent Events).

Limits, because anyone who can reach the port can send anything: a head of at most
:data:`MAX_HEAD_BYTES`, a body of at most :data:`MAX_BODY_BYTES` (413), the whole
request within :data:`REQUEST_TIMEOUT_S` (408). Every answer closes the connection
(``Connection: close``) except a stream, which ends when either side ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import h11
import orjson

from simulator.net.event_loop import release_transport

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
REQUEST_TIMEOUT_S = 10.0
#: A stream whose reader lets this much pile up in the socket's buffer is dropped.
MAX_STREAM_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    peer: str | None  # the client's IP address


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, value: object) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(value) + b"\n", "application/json")


def error_response(status: int, message: str, **extra: object) -> HttpResponse:
    """A JSON error: ``{"error": message, ...extra}``."""
    return json_response(status, {"error": message, **extra})


class StreamWriter:
    """The open end of an event stream: :meth:`send` chunks until it returns False."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self.closed = False
        self.on_close: Callable[[], None] | None = None

    def send(self, chunk: bytes) -> bool:
        """Write ``chunk``; False (and the stream is closed) when the reader is gone or
        has let more than :data:`MAX_STREAM_BUFFER_BYTES` pile up: a slow reader is
        dropped, never waited for."""
        if self.closed:
            return False
        transport = self._exchange.transport
        if transport.is_closing():
            self.close()
            return False
        if transport.get_write_buffer_size() > MAX_STREAM_BUFFER_BYTES:
            # Dropped: its buffer is thrown away with the connection (a close would
            # wait, for ever, to flush it to a reader that reads nothing).
            self.close()
            transport.abort()
            return False
        self._exchange.write(h11.Data(data=chunk))
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._exchange.finish()
        if self.on_close is not None:
            self.on_close()


@dataclass(frozen=True, slots=True)
class EventStream:
    """An answer that stays open: ``opened`` is called with the writer once the head is
    written (keep it, :meth:`StreamWriter.send` to it; set ``on_close`` to hear of its end)."""

    opened: Callable[[StreamWriter], None]
    content_type: str = "text/event-stream"
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[HttpRequest], HttpResponse | EventStream]


class Exchange:
    """One HTTP request and its answer over ``transport`` (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, handler: Handler) -> None:
        self.transport = transport
        self._handler = handler
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._answered = False
        self._stream: StreamWriter | None = None
        loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            REQUEST_TIMEOUT_S, self._timed_out
        )

    # ------------------------------------------------------------------ reading

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return  # one request per connection: the rest is not read
        try:
            self._h11.receive_data(data)
            self._read_events()
        except h11.RemoteProtocolError as e:
            self._answer(error_response(e.error_status_hint, f"bad request: {e}"))

    def _read_events(self) -> None:
        while not self._answered:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_BODY_BYTES:
                    self._answer(error_response(413, f"request body over {MAX_BODY_BYTES} bytes"))
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            else:  # ConnectionClosed
                self.transport.close()
                return

    def _dispatch(self) -> None:
        assert self._request is not None
        request = self._request
        try:
            target = urlsplit(request.target.decode("latin-1"))
        except ValueError as e:  # "//[", an unclosed IPv6 host: not a target we serve
            self._answer(error_response(400, f"bad request target: {e}"))
            return
        peer = self.transport.get_extra_info("peername")
        parsed = HttpRequest(
            method=request.method.decode("latin-1"),
            path=target.path or "/",
            query=dict(parse_qsl(target.query)),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers},
            body=bytes(self._body),
            peer=str(peer[0]) if isinstance(peer, tuple) and peer else None,
        )
        try:
            answer = self._handler(parsed)
        except Exception:
            logger.exception("inspector request handler failed")
            answer = error_response(500, "internal error")
        self._answer(answer)

    def _timed_out(self) -> None:
        self._timer = None
        if not self._answered:
            self._answer(
                error_response(408, f"request not complete within {REQUEST_TIMEOUT_S:g} s")
            )

    # ------------------------------------------------------------------ writing

    def _answer(self, answer: HttpResponse | EventStream) -> None:
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._h11.our_state is not h11.SEND_RESPONSE and self._h11.our_state is not h11.IDLE:
            self.transport.close()
            return
        if isinstance(answer, EventStream):
            headers = [
                ("Content-Type", answer.content_type),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
                *answer.headers,
            ]
            self.write(h11.Response(status_code=200, headers=headers))
            self._stream = StreamWriter(self)
            answer.opened(self._stream)
            return
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(answer.body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *answer.headers,
        ]
        reason = _phrase(answer.status)
        self.write(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        head_only = self._request is not None and self._request.method == b"HEAD"
        if answer.body and not head_only:  # a HEAD answer is the head alone (RFC 9110 §9.3.2)
            self.write(h11.Data(data=answer.body))
        self.finish()

    def write(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None:
        data = self._h11.send(event)
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def finish(self) -> None:
        """End the answer and the connection (after what is buffered is written)."""
        if self.transport.is_closing():
            return
        # A broken request may leave no response started: then there is nothing to end.
        with contextlib.suppress(h11.LocalProtocolError):
            self.write(h11.EndOfMessage())
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        release_transport(self.transport)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._answered = True
        if self._stream is not None and not self._stream.closed:
            self._stream.closed = True
            if self._stream.on_close is not None:
                self._stream.on_close()


def _phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
