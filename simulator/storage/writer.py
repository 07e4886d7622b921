"""Crash-safe recording writer: rolling Parquet segments, compacted on close.

Layout while recording to ``OUT``::

    OUT.segments/seg-000001.parquet     complete, self-describing Parquet files
    OUT.segments/seg-000002.parquet
    OUT.segments/seg-000003.parquet.tmp being written; never read

A segment is written under a ``.tmp`` name, fsynced, then renamed, so a segment
under its final name is always complete. Each carries the recording metadata, so
the directory alone is enough to rebuild the recording (:func:`recover`). A killed
writer therefore loses at most the rows buffered since the last flush: at most
``flush_interval_s`` of events, provided the caller calls :meth:`maybe_flush` from
a timer. :meth:`RecordingWriter.close` streams the segments into ``OUT.tmp``,
renames it to ``OUT`` and only then removes the segment directory.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import polars as pl

from simulator.errors import RecordingError, UsageError
from simulator.storage.schema import (
    SCHEMA,
    RecordingMetadata,
    decode_metadata,
    encode_metadata,
    error_reason,
    schema_problems,
)

logger = logging.getLogger(__name__)

_SEGMENT_RE: Final = re.compile(r"seg-(\d+)\.parquet")
# Segments live a few seconds: favour speed. The compacted file is kept: favour size.
_SEGMENT_COMPRESSION: Final = "lz4"
_FINAL_COMPRESSION: Final = "zstd"


def segment_dir(out_path: str | os.PathLike[str]) -> Path:
    """The directory holding the segments of the recording ``out_path``."""
    return Path(f"{os.fspath(out_path)}.segments")


class _State(enum.Enum):
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


class RecordingWriter:
    """Write a recording to ``out_path`` in rolling segments; compact it on close.

    Construction creates ``<out_path>.segments/`` and raises :class:`RecordingError`
    if that is impossible (missing or unwritable directory), so a server can fail
    before it starts serving. It also refuses to start if ``out_path`` or segments
    of an unfinished recording exist, unless ``overwrite`` is true, which deletes
    them.

    Then:

    - call :meth:`append` with frames of exactly :data:`SCHEMA` (build them with
      :func:`~simulator.storage.schema.event_batch`), in ``seq`` order;
    - call :meth:`maybe_flush` from a timer (every ``flush_interval_s`` or more
      often), so that a quiet connection's last events reach the disk too;
    - call :meth:`close` (or leave the ``with`` block) to produce ``out_path``.

    If a segment cannot be written (disk full, directory removed), :meth:`append`,
    :meth:`maybe_flush` or :meth:`flush` raise :class:`RecordingError`; the rows
    buffered at that moment are dropped and the writer stops: every later call
    raises too. Segments already on disk stay there for ``sim recover``. A live
    server may catch the error and go on serving without recording.

    Not thread-safe. Flushing and closing block on disk I/O; an asyncio caller may
    run them in an executor, one call at a time.
    """

    def __init__(
        self,
        out_path: str | os.PathLike[str],
        metadata: RecordingMetadata,
        *,
        flush_interval_s: float = 1.0,
        flush_rows: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        overwrite: bool = False,
    ) -> None:
        if not flush_interval_s > 0:
            raise UsageError(f"flush_interval_s={flush_interval_s!r} must be > 0")
        if flush_rows < 1:
            raise UsageError(f"flush_rows={flush_rows!r} must be >= 1")
        self.out_path = Path(out_path)
        self.segment_dir = segment_dir(out_path)
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self._clock = clock
        self._kv = encode_metadata(metadata)  # validates before anything touches the disk
        self._buffer: list[pl.DataFrame] = []
        self._buffered_rows = 0
        self._flushed_rows = 0
        self._segments = 0
        self._oldest: float | None = None  # clock() when the buffer became non-empty
        self._state = _State.OPEN
        self._failure: RecordingError | None = None
        self._prepare(overwrite)

    def _prepare(self, overwrite: bool) -> None:
        out, segs = str(self.out_path), self.segment_dir
        if self.out_path.is_dir():
            raise RecordingError(out, "is a directory")
        if overwrite:
            with _os_errors(out, "cannot remove the previous recording"):
                self.out_path.unlink(missing_ok=True)
                if segs.exists():
                    shutil.rmtree(segs)
        elif self.out_path.exists():
            raise RecordingError(out, "already exists; choose another path or overwrite it")
        elif segs.exists():
            raise RecordingError(
                out,
                f"segments of an unfinished recording exist in {segs}; "
                f"run `sim recover {out}` or remove them",
            )
        # Its folder is made as generate, asyncapi and learn make theirs: `--record
        # out/session.parquet` works in a fresh clone.
        with _os_errors(out, f"cannot create folder {self.out_path.parent}"):
            self.out_path.parent.mkdir(parents=True, exist_ok=True)
        with _os_errors(out, f"cannot create segment directory {segs}"):
            segs.mkdir()
        # mkdir succeeding does not prove files can be created in it (root-squashed
        # NFS, read-only bind mounts): create and remove one.
        with _os_errors(out, f"cannot write in segment directory {segs}"):
            fd, probe = tempfile.mkstemp(dir=segs, prefix=".probe-", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)

    # -- recording -------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        """Rows appended but not yet in a segment on disk."""
        return self._buffered_rows

    @property
    def flushed_rows(self) -> int:
        """Rows in segments on disk: what survives if the process is killed now."""
        return self._flushed_rows

    def append(self, frame: pl.DataFrame) -> None:
        """Buffer ``frame``; write a segment if the buffer is full or old enough.

        ``frame`` must have exactly :data:`SCHEMA` (:class:`UsageError` otherwise).
        """
        self._check_open()
        if frame.schema != SCHEMA:
            raise UsageError(
                "RecordingWriter.append: frame does not match the recording schema: "
                + "; ".join(schema_problems(frame.schema))
            )
        if frame.height == 0:
            return
        if self._oldest is None:
            self._oldest = self._clock()
        self._buffer.append(frame)
        self._buffered_rows += frame.height
        if self._buffered_rows >= self.flush_rows:
            self.flush()
        else:
            self.maybe_flush()

    def maybe_flush(self, now: float | None = None) -> int:
        """Write a segment if the oldest buffered row is ``flush_interval_s`` old.

        ``now`` is a reading of the writer's clock (default: read it). Returns the
        number of rows written, 0 if none were due.
        """
        self._check_open()
        if self._oldest is None:
            return 0
        if now is None:
            now = self._clock()
        if now - self._oldest < self.flush_interval_s:
            return 0
        return self.flush()

    def flush(self) -> int:
        """Write every buffered row to a new segment now. Returns the rows written."""
        self._check_open()
        if not self._buffer:
            return 0
        frame = pl.concat(self._buffer, how="vertical", rechunk=False)
        rows = self._buffered_rows
        self._buffer, self._buffered_rows, self._oldest = [], 0, None
        name = f"seg-{self._segments + 1:06d}.parquet"
        try:
            self._write_segment(frame, name)
        except RecordingError as e:
            failure = RecordingError(e.file, f"{e.message}; {rows} rows not recorded")
            self._fail(failure)
            raise failure from e
        self._segments += 1
        self._flushed_rows += rows
        return rows

    def _write_segment(self, frame: pl.DataFrame, name: str) -> None:
        final = self.segment_dir / name
        tmp = final.with_name(name + ".tmp")
        try:
            frame.write_parquet(
                tmp, compression=_SEGMENT_COMPRESSION, statistics=False, metadata=self._kv
            )
            _fsync_file(tmp)
            os.replace(tmp, final)
            _fsync_dir(self.segment_dir)
        except (OSError, pl.exceptions.PolarsError) as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise RecordingError(
                str(self.out_path), f"cannot write segment {final}: {error_reason(e)}"
            ) from e

    def _fail(self, error: RecordingError) -> None:
        self._state = _State.FAILED
        self._failure = error

    def _check_open(self) -> None:
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise UsageError(f"RecordingWriter for {self.out_path} is closed")
        raise RecordingError(
            str(self.out_path), f"recording stopped after an earlier error: {self._failure}"
        )

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Flush, compact the segments into ``out_path``, remove the segment directory.

        Calling it again does nothing. If the writer stopped after an error, or the
        compaction fails, raises :class:`RecordingError` and leaves the segments in
        place for ``sim recover``.
        """
        if self._state is _State.CLOSED:
            return
        if self._state is _State.FAILED:
            self._state = _State.CLOSED
            raise RecordingError(
                str(self.out_path),
                f"recording incomplete after an earlier error; segments kept in "
                f"{self.segment_dir}: run `sim recover {self.out_path}`",
            )
        try:
            self.flush()
        finally:
            self._state = _State.CLOSED
        segments = _list_segments(self.segment_dir)
        _compact(segments, self.out_path, self._kv)
        _remove_segments(self.segment_dir, str(self.out_path))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Keep what was recorded before the failure, but never hide the failure.
        try:
            self.close()
        except RecordingError as close_error:
            exc.add_note(f"while closing the recording: {close_error}")


def recover(out_path: str | os.PathLike[str]) -> int:
    """Rebuild ``out_path`` from the complete segments a killed writer left.

    Ignores temporary files and unreadable segments (logged). Replaces
    ``out_path`` if it exists, then removes the segment directory. Returns the
    number of rows in the rebuilt recording. Raises :class:`RecordingError` if
    there is no segment to recover.
    """
    out = Path(out_path)
    segs = segment_dir(out)
    if not segs.is_dir():
        raise RecordingError(str(out), f"nothing to recover: no segment directory {segs}")
    usable: list[Path] = []
    kv: dict[str, str] | None = None
    for seg in _list_segments(segs):
        try:
            seg_kv = pl.read_parquet_metadata(seg)
            problems = schema_problems(pl.read_parquet_schema(seg))
            decode_metadata(seg_kv, str(seg))
        except (OSError, pl.exceptions.PolarsError, RecordingError) as e:
            logger.warning("skipping unreadable segment %s: %s", seg, error_reason(e))
            continue
        if problems:
            logger.warning("skipping segment %s: %s", seg, "; ".join(problems))
            continue
        kv = kv or {k: v for k, v in seg_kv.items() if k.startswith("sim.")}
        usable.append(seg)
    if kv is None:
        raise RecordingError(
            str(out), f"nothing to recover: no complete segment in {segs}; remove it"
        )
    _compact(usable, out, kv)
    _remove_segments(segs, str(out))
    try:
        rows: int = pl.scan_parquet(out, glob=False).select(pl.len()).collect().item()
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(str(out), f"cannot read the recovered file: {error_reason(e)}") from e
    return rows


def _list_segments(segs: Path) -> list[Path]:
    """Complete segments in write order (by number, not by name: 1000000 > 999999)."""
    found: list[tuple[int, Path]] = []
    with _os_errors(str(segs), "cannot list segments"):
        for entry in os.scandir(segs):
            m = _SEGMENT_RE.fullmatch(entry.name)
            if m and entry.is_file():
                found.append((int(m.group(1)), Path(entry.path)))
    return [path for _, path in sorted(found)]


def _compact(segments: list[Path], out: Path, kv: dict[str, str]) -> None:
    """Stream ``segments`` in order into ``out`` atomically, with flat memory."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        if segments:
            # glob=False: a '[' in a user's directory name is not a pattern.
            pl.scan_parquet(segments, glob=False, hive_partitioning=False).sink_parquet(
                tmp, compression=_FINAL_COMPRESSION, metadata=kv, maintain_order=True
            )
        else:  # a session with no events is still a valid recording
            SCHEMA.to_frame().write_parquet(tmp, compression=_FINAL_COMPRESSION, metadata=kv)
        _fsync_file(tmp)
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except (OSError, pl.exceptions.PolarsError) as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RecordingError(
            str(out),
            f"cannot write the recording: {error_reason(e)}; segments kept in "
            f"{segment_dir(out)}: run `sim recover {out}` once the cause is fixed",
        ) from e


def _remove_segments(segs: Path, out: str) -> None:
    # The recording is complete at this point; a leftover directory only blocks
    # the next recording to the same path, so report it but do not fail.
    try:
        shutil.rmtree(segs)
    except OSError as e:
        logger.warning(
            "%s: recording complete but cannot remove %s: %s", out, segs, error_reason(e)
        )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable across a power cut (POSIX; not on Windows).
    if os.name != "posix":
        return
    _fsync_file(path)


@contextlib.contextmanager
def _os_errors(file: str, doing: str) -> Iterator[None]:
    """Turn an :class:`OSError` into a :class:`RecordingError` saying what failed."""
    try:
        yield
    except OSError as e:
        raise RecordingError(file, f"{doing}: {error_reason(e)}") from e
