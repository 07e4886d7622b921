"""Open recordings, checking that they are ours and readable by this version.

Every problem becomes one :class:`RecordingError` line that names the file; no
polars traceback reaches a user. Reading never modifies anything: a recording that
was not closed cleanly is reported, and ``sim recover PATH`` (which writes) is left
to the user, so that reading works on read-only media and never races a writer
that is still running.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from simulator.errors import RecordingError
from simulator.storage.schema import (
    RecordingMetadata,
    decode_metadata,
    error_reason,
    schema_problems,
)
from simulator.storage.writer import segment_dir

_MAGIC: Final = b"PAR1"
_ENCRYPTED_MAGIC: Final = b"PARE"


@dataclass(frozen=True, slots=True)
class Recording:
    """A whole recording in memory: its events in ``seq`` order and its metadata."""

    frame: pl.DataFrame
    metadata: RecordingMetadata


def read_metadata(path: str | os.PathLike[str]) -> RecordingMetadata:
    """The metadata of the recording at ``path``, after checking the file is one.

    Reads only the footer. Raises :class:`RecordingError` if the file is missing,
    not Parquet, truncated, not a recording, or of a newer format version.
    """
    path, file = Path(path), os.fspath(path)
    _check_file(path)
    try:
        kv = pl.read_parquet_metadata(path)
        schema = pl.read_parquet_schema(path)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(file, f"unreadable Parquet file: {error_reason(e)}") from e
    metadata = decode_metadata(kv, file)
    problems = schema_problems(schema)
    if problems:
        raise RecordingError(file, "not a sim recording: " + "; ".join(problems))
    return metadata


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Load the whole recording at ``path``. For big files prefer :func:`scan_recording`."""
    path = Path(path)
    metadata = read_metadata(path)
    try:
        frame = pl.read_parquet(path, glob=False, hive_partitioning=False)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(os.fspath(path), f"corrupt recording: {error_reason(e)}") from e
    return Recording(frame=frame, metadata=metadata)


def scan_recording(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy view of the recording at ``path``, checked as :func:`read_metadata` does.

    Only the footer is checked now: damage inside the data surfaces as a polars
    error when the query runs.
    """
    path = Path(path)
    read_metadata(path)
    return pl.scan_parquet(path, glob=False, hive_partitioning=False)


def _check_file(path: Path) -> None:
    """Explain a missing, empty, foreign or truncated file before polars sees it."""
    file = os.fspath(path)
    if not path.exists():
        if segment_dir(path).is_dir():
            raise RecordingError(
                file, f"recording was not closed cleanly; run `sim recover {file}`"
            )
        raise RecordingError(file, "no such file")
    if path.is_dir():
        raise RecordingError(file, "is a directory, not a recording")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(size - 4, 0))
            tail = f.read(4)
    except OSError as e:
        raise RecordingError(file, f"cannot read: {error_reason(e)}") from e
    if head != _MAGIC:
        raise RecordingError(file, "not a Parquet file")
    if tail == _ENCRYPTED_MAGIC:
        raise RecordingError(file, "encrypted Parquet file; sim recordings are not encrypted")
    # Header magic, 4-byte footer length, footer magic: at least 12 bytes.
    if size < 12 or tail != _MAGIC:
        raise RecordingError(
            file, f"truncated Parquet file ({size} bytes, footer missing): copied incompletely?"
        )
