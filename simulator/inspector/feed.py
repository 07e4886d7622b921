"""``/events``: the server's side channel as Server-Sent Events, for the inspector page.

Every event of the server's log and, every :data:`STATUS_INTERVAL_S`, a status snapshot
go to each subscriber. Log events are gathered and sent together every
:data:`FLUSH_INTERVAL_S` (at most :data:`MAX_EVENTS_PER_FLUSH` of them, the newest; the
number left out is sent with them), so a fault storm costs one write per subscriber per
flush. A subscriber that does not read is dropped (see
:meth:`~simulator.inspector.http.StreamWriter.send`), never waited for. Nothing of this
reaches a WebSocket client's feed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from simulator.inspector.http import StreamWriter
from simulator.net.log import Event, EventLog

STATUS_INTERVAL_S = 0.5
FLUSH_INTERVAL_S = 0.1
MAX_EVENTS_PER_FLUSH = 500
#: Subscribers at once; one more is refused (503).
MAX_SUBSCRIBERS = 32


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event (``data`` as one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventFeed:
    """Fans ``log``'s events and ``status()`` out to the ``/events`` subscribers; runs
    only while someone subscribes."""

    def __init__(self, log: EventLog, status: Callable[[], dict[str, Any]]) -> None:
        self._log = log
        self._status = status
        self.subscribers: list[StreamWriter] = []
        self._pending: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS_PER_FLUSH)
        self._left_out = 0
        self._unlisten: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        return len(self.subscribers) >= MAX_SUBSCRIBERS

    def subscribe(self, writer: StreamWriter) -> None:
        """Start sending to ``writer``: first a status and the recent log, then live."""
        self.subscribers.append(writer)
        writer.on_close = lambda: self._drop(writer)
        recent = [e.as_dict() for e in list(self._log.records)[-MAX_EVENTS_PER_FLUSH:]]
        writer.send(sse("status", self._status()) + sse("log", {"events": recent, "left_out": 0}))
        if self._unlisten is None:
            self._unlisten = self._log.listen(self._on_event)
            self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        for writer in list(self.subscribers):
            writer.close()
        self._stop()

    def _drop(self, writer: StreamWriter) -> None:
        if writer in self.subscribers:
            self.subscribers.remove(writer)
        if not self.subscribers:
            self._stop()

    def _stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._pending.clear()
        self._left_out = 0

    def _on_event(self, event: Event) -> None:
        if len(self._pending) == self._pending.maxlen:
            self._left_out += 1
        self._pending.append(event.as_dict())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_status = loop.time()
        while True:
            chunk = b""
            if self._pending:
                chunk += sse("log", {"events": list(self._pending), "left_out": self._left_out})
                self._pending.clear()
                self._left_out = 0
            if loop.time() >= next_status:
                next_status += STATUS_INTERVAL_S
                chunk += sse("status", self._status())
            if chunk:
                for writer in list(self.subscribers):
                    writer.send(chunk)
            await asyncio.sleep(FLUSH_INTERVAL_S)
