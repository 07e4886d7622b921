"""``/events``: the server's side channel as Server-Sent Events, for the inspector page.

Every event of the server's log and, every :data:`STATUS_INTERVAL_S`, a status snapshot
go to each subscriber. Log events are gathered and sent together every
:data:`FLUSH_INTERVAL_S` (at most :data:`MAX_EVENTS_PER_FLUSH` of them, the newest; the
number left out is sent with them), so a fault storm costs one write per subscriber per
flush. A fault injected into one message (it names the message's ``seq``: ``drop``,
``delay``, ``duplicate``, ``reorder``, ``corrupt``) is not sent on its own: those of one
flush with the same kind, fault, connection and stream are sent as one event with a
``count`` (a 1% drop on 100 clients at 1,000 msg/s is 1,000 events a second; the page
shows them as ticks and counts, not one by one). A subscriber that does not read is
dropped (see :meth:`~simulator.inspector.http.StreamWriter.send`), never waited for.
Nothing of this reaches a WebSocket client's feed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from simulator.inspector.http import StreamWriter
from simulator.net.log import Event, EventKind, EventLog

STATUS_INTERVAL_S = 0.5
FLUSH_INTERVAL_S = 0.1
MAX_EVENTS_PER_FLUSH = 500
#: Subscribers at once; one more is refused (503).
MAX_SUBSCRIBERS = 32


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event (``data`` as one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Batch:
    """The log events of one flush, as the dicts sent on ``/events``: the newest
    :data:`MAX_EVENTS_PER_FLUSH` (:attr:`left_out` counts the others), the per-message
    faults merged (see the module docstring)."""

    def __init__(self) -> None:
        # Each entry: the dict to send, and its merge key if it is merged faults.
        self._entries: deque[tuple[dict[str, Any], tuple[Any, ...] | None]] = deque()
        self._merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.left_out = 0

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, event: Event) -> None:
        detail = event.detail
        if event.kind is EventKind.FAULT and "seq" in detail:
            key = (detail.get("injected"), detail.get("fault"), event.conn, detail.get("stream"))
            merged = self._merged.get(key)
            if merged is not None:
                merged["count"] += 1
                merged["last_seq"] = detail["seq"]
                merged["last_time"] = event.wall
                return
            merged = event.as_dict()
            merged.update(count=1, last_seq=detail["seq"], last_time=event.wall)
            self._merged[key] = merged
            self._append(merged, key)
        else:
            self._append(event.as_dict(), None)

    def _append(self, entry: dict[str, Any], key: tuple[Any, ...] | None) -> None:
        if len(self._entries) == MAX_EVENTS_PER_FLUSH:
            oldest, oldest_key = self._entries.popleft()
            self.left_out += 1 if oldest_key is None else oldest["count"]
            if oldest_key is not None:
                del self._merged[oldest_key]
        self._entries.append((entry, key))

    def take(self) -> dict[str, Any]:
        """The ``log`` event's data, ``{"events": [...], "left_out": N}``; empties it."""
        data = {"events": [entry for entry, _ in self._entries], "left_out": self.left_out}
        self._entries.clear()
        self._merged.clear()
        self.left_out = 0
        return data


class EventFeed:
    """Fans ``log``'s events and ``status()`` out to the ``/events`` subscribers; runs
    only while someone subscribes."""

    def __init__(self, log: EventLog, status: Callable[[], dict[str, Any]]) -> None:
        self._log = log
        self._status = status
        self.subscribers: list[StreamWriter] = []
        self._pending = Batch()
        self._unlisten: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        return len(self.subscribers) >= MAX_SUBSCRIBERS

    def subscribe(self, writer: StreamWriter) -> None:
        """Start sending to ``writer``: first a status and the recent log, then live."""
        self.subscribers.append(writer)
        writer.on_close = lambda: self._drop(writer)
        recent = Batch()
        # The recent records only (merged faults may take several each).
        for event in self._log.newest(4 * MAX_EVENTS_PER_FLUSH):
            recent.add(event)
        recent.left_out = 0  # older ones than these are not counted either
        writer.send(sse("status", self._status()) + sse("log", recent.take()))
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
        self._pending = Batch()

    def _on_event(self, event: Event) -> None:
        self._pending.add(event)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_status = loop.time()
        while True:
            chunk = b""
            if self._pending:
                chunk += sse("log", self._pending.take())
            if loop.time() >= next_status:
                next_status += STATUS_INTERVAL_S
                chunk += sse("status", self._status())
            if chunk:
                for writer in list(self.subscribers):
                    writer.send(chunk)
            await asyncio.sleep(FLUSH_INTERVAL_S)
