"""Recording rows, crash-safely on disk: what `sim run --record` served, and what
`sim record` saw pass between a client and an upstream server.

Rows are buffered in plain lists on the event loop (about a microsecond a row). Every
FLUSH_EVERY_S the lists are swapped for empty ones and handed to one worker thread,
which builds the batch and gives it to the segment writer (a segment at least every
second, written and fsynced in that thread): a Parquet write takes tens of
milliseconds, which on the loop would hold back every frame behind it. A killed
process loses at most about a second and a quarter. A failing disk stops the
recording, with a warning in the log, never the server.

What is recorded is what the server handed to each client's send path: a frame later
dropped for a slow consumer still has its row (the drop is counted in the stats).
Injected faults are rows of kind ``fault`` with the fault as JSON.

Redaction happens here, before a row reaches the writer: ``redact`` (see
:mod:`simulator.core.redact`) is applied to every message payload in the worker thread,
so nothing it removes reaches a segment or the output file, and a large message with
a recursive rule (``$..token`` walks every node) does not hold up the event loop.
Error texts are scrubbed of URLs and ``name=secret`` pairs (``redact_text``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from simulator.core.redact import UNREDACTABLE, redact_text
from simulator.errors import RecordingError
from simulator.net.log import EventKind, EventLog
from simulator.storage.schema import Kind, RecordingMetadata, Sender, event_batch
from simulator.storage.writer import RecordingWriter

FLUSH_EVERY_S = 0.25


class Recorder:
    """Buffers rows and feeds a :class:`RecordingWriter`. Call :meth:`close` at the end."""

    def __init__(
        self,
        path: str | Path,
        metadata: RecordingMetadata,
        log: EventLog,
        *,
        session: str | None = None,
        redact: Callable[[bytes], bytes] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = str(path)
        self.session = session or f"run:{metadata['scenario']}:{metadata['created_at']}"
        self._redact = redact
        self._writer: RecordingWriter | None = RecordingWriter(path, metadata, overwrite=overwrite)
        self._log = log
        self._start_ns = time.monotonic_ns()
        self._seq = 0
        self._cols: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
        self.rows = 0
        self._failure: RecordingError | None = None  # from the worker thread
        # One thread: the writer takes one call at a time, and batches stay in order.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sim-recorder")

    def _row(
        self,
        conn: int,
        sender: Sender,
        kind: Kind,
        stream: str | None = None,
        payload: bytes | None = None,
        close_code: int | None = None,
        close_reason: str | None = None,
        fault: str | None = None,
    ) -> None:
        if self._writer is None:
            return
        c = self._cols
        c["conn"].append(conn)
        c["t_ns"].append(time.monotonic_ns() - self._start_ns)
        c["wall_ns"].append(time.time_ns())
        c["sender"].append(sender.value)
        c["kind"].append(kind.value)
        c["stream"].append(stream)
        c["payload"].append(payload)
        c["close_code"].append(close_code)
        c["close_reason"].append(close_reason)
        c["fault"].append(fault)

    def opened(self, conn: int, handshake: dict[str, Any] | None = None) -> None:
        """The connection opened; ``handshake`` (already redacted: path, headers, ...)
        is stored as the row's JSON payload."""
        payload = None if handshake is None else orjson.dumps(handshake)
        self._row(conn, Sender.SERVER, Kind.OPEN, payload=payload)

    def sent(self, conn: int, streams: Sequence[str | None], payloads: Sequence[bytes]) -> None:
        for stream, payload in zip(streams, payloads, strict=True):
            self._row(conn, Sender.SERVER, Kind.TEXT, stream, payload)

    def received(self, conn: int, message: str | bytes) -> None:
        self.message(conn, Sender.CLIENT, message)

    def message(
        self, conn: int, sender: Sender, message: str | bytes, stream: str | None = None
    ) -> None:
        """A data message ``sender`` sent: text for ``str``, binary for ``bytes``."""
        if isinstance(message, str):
            self._row(conn, sender, Kind.TEXT, stream, message.encode())
        else:
            self._row(conn, sender, Kind.BINARY, stream, message)

    def control(self, conn: int, sender: Sender, kind: Kind, data: bytes) -> None:
        """A ping or pong frame ``sender`` sent, with its application data."""
        self._row(conn, sender, kind, payload=data)

    def error(self, conn: int, sender: Sender, message: str) -> None:
        """A failure observed on ``conn`` (e.g. the upstream refused the handshake)."""
        self._row(conn, sender, Kind.ERROR, payload=redact_text(message).encode())

    def closed(self, conn: int, code: int, reason: str, by: str) -> None:
        """How ``conn`` ended: ``by`` the ``client`` or the ``server`` (anything else is
        taken as the server). A reason may quote a URL: it is redacted like an error."""
        sender = Sender.CLIENT if by == "client" else Sender.SERVER
        self._row(conn, sender, Kind.CLOSE, close_code=code, close_reason=redact_text(reason))

    def fault(self, conn: int | None, detail: dict[str, Any]) -> None:
        # Server-wide faults belong to no connection: the format has no null conn, so -1.
        text = orjson.dumps(detail, default=str).decode()
        self._row(-1 if conn is None else conn, Sender.SERVER, Kind.FAULT, fault=text)

    def _take(self) -> dict[str, list[Any]]:
        """The rows buffered so far; the buffer starts over (call on the loop)."""
        taken, self._cols = self._cols, {k: [] for k in _COLUMNS}
        return taken

    def flush(self) -> None:
        """Write the buffered rows now, in this thread (the writer writes a segment when
        due). :meth:`run` does the same off the event loop."""
        self._write(self._take())

    async def written(self) -> None:
        """Return once the rows buffered so far have gone to the writer (after the batch
        the worker thread may be writing): what is buffered then is what came since."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, self._take())

    def _write(self, c: dict[str, list[Any]]) -> None:
        """Hand rows ``c`` to the writer. Runs in the worker thread, one call at a time."""
        writer = self._writer
        if writer is None:
            return
        n = len(c["conn"])
        try:
            if n:
                if self._redact is not None:
                    c["payload"] = self._redacted(c["kind"], c["payload"])
                frame = event_batch(
                    seq=np.arange(self._seq, self._seq + n, dtype=np.int64),
                    t_ns=np.asarray(c["t_ns"], dtype=np.int64),
                    wall_ns=np.asarray(c["wall_ns"], dtype=np.int64),
                    session=self.session,
                    conn=np.asarray(c["conn"], dtype=np.int32),
                    sender=c["sender"],
                    kind=c["kind"],
                    stream=c["stream"],
                    payload=c["payload"],
                    close_code=c["close_code"],
                    close_reason=c["close_reason"],
                    fault=c["fault"],
                )
                self._seq += n
                self.rows += n
                writer.append(frame)
            writer.maybe_flush()
        except RecordingError as e:
            self._writer = None  # seen by the loop, which reports it (see run)
            self._failure = e

    def _redacted(self, kinds: list[str], payloads: list[bytes | None]) -> list[bytes | None]:
        return [
            self._redact_one(p) if p is not None and k in _MESSAGES else p
            for k, p in zip(kinds, payloads, strict=True)
        ]

    def _redact_one(self, payload: bytes) -> bytes:
        redact = self._redact
        assert redact is not None
        try:
            return redact(payload)
        except Exception:
            # Never store what could not be redacted, and never lose the batch for it.
            return UNREDACTABLE

    async def run(self) -> None:
        """Flush every FLUSH_EVERY_S, off the loop, until cancelled."""
        loop = asyncio.get_running_loop()
        while self._writer is not None:
            await asyncio.sleep(FLUSH_EVERY_S)
            # Shielded: cancelling the wait must not cancel the batch. An unshielded
            # cancel cancels the work item if the thread has not started it yet, and
            # its rows are lost; shielded, the thread writes it and close() waits.
            batch = loop.run_in_executor(self._executor, self._write, self._take())
            await asyncio.shield(batch)
            if self._failure is not None:
                self._fail(self._failure)

    def close(self) -> None:
        """Flush everything and compact the segments into the output file. Blocks until
        the worker thread is done; call it once the loop no longer adds rows."""
        self._executor.shutdown(wait=True)
        self.flush()
        if self._failure is not None:
            self._fail(self._failure)
        if self._writer is None:
            return
        try:
            self._writer.close()
        except RecordingError as e:
            self._fail(e)
        self._writer = None

    def _fail(self, error: RecordingError) -> None:
        self._writer = None
        self._failure = None
        self._log.emit(
            EventKind.WARNING,
            message=f"recording stopped: {error}; run `sim recover {self.path}` for what was saved",
        )


_MESSAGES = frozenset({Kind.TEXT.value, Kind.BINARY.value})

_COLUMNS = (
    "conn",
    "t_ns",
    "wall_ns",
    "sender",
    "kind",
    "stream",
    "payload",
    "close_code",
    "close_reason",
    "fault",
)
