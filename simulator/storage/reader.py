"""Open recordings, checking that they are ours and readable by this version.

A recording is one Parquet file, or a directory of them: the parts written by the
workers of one ``sim run --workers N --record DIR`` (``DIR/worker=0/part.parquet``,
...), or by any set of `sim` instances sharing a scenario, seed and epoch. A directory
is read as one table (Hive partitioning: the ``worker=`` of a part's path becomes a
column); its parts must agree on scenario and seed and must not share a connection.

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


def recording_parts(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of the recording at ``path``: the file itself, or every part
    in the directory ``path`` (at any depth), in path order.

    Raises :class:`RecordingError` for a directory with no part, or with a part that
    was not closed cleanly (its segments are there, its file is not).
    """
    root = Path(path)
    if not root.is_dir():
        return [root]
    parts: list[Path] = []
    for found in sorted(root.rglob("*")):
        if any(p.name.endswith(".segments") for p in found.relative_to(root).parents):
            continue  # a part's segments (see sim recover), not a part
        if found.is_dir() and found.name.endswith(".segments"):
            part = found.with_name(found.name.removesuffix(".segments"))
            if not part.exists():
                raise RecordingError(
                    os.fspath(part), f"recording was not closed cleanly; run `sim recover {part}`"
                )
        elif found.is_file() and found.suffix == ".parquet":
            parts.append(found)
    if not parts:
        raise RecordingError(os.fspath(root), "is a directory with no recording (*.parquet) in it")
    return parts


def read_metadata(path: str | os.PathLike[str]) -> RecordingMetadata:
    """The metadata of the recording at ``path``, after checking the file is one (for
    a directory: every part, which must agree on scenario and seed; the first's).

    Reads only the footers. Raises :class:`RecordingError` if the file is missing,
    not Parquet, truncated, not a recording, or of a newer format version.
    """
    parts = recording_parts(path)
    first = _read_part_metadata(parts[0])
    for part in parts[1:]:
        other = _read_part_metadata(part)
        mine, theirs = (first["scenario"], first["seed"]), (other["scenario"], other["seed"])
        if mine != theirs:
            raise RecordingError(
                os.fspath(path),
                f"parts of different sessions: {parts[0]} has scenario {mine[0]!r} seed "
                f"{mine[1]}, {part} has scenario {theirs[0]!r} seed {theirs[1]}",
            )
    return first


def _read_part_metadata(path: Path) -> RecordingMetadata:
    file = os.fspath(path)
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
    if path.is_dir():
        table = scan_recording(path)
        metadata = read_metadata(path)
        try:
            return Recording(frame=table.collect(), metadata=metadata)
        except (OSError, pl.exceptions.PolarsError) as e:
            raise RecordingError(os.fspath(path), f"corrupt recording: {error_reason(e)}") from e
    metadata = read_metadata(path)
    try:
        frame = pl.read_parquet(path, glob=False, hive_partitioning=False)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(os.fspath(path), f"corrupt recording: {error_reason(e)}") from e
    return Recording(frame=frame, metadata=metadata)


def scan_recording(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy view of the recording at ``path``, checked as :func:`read_metadata` does.

    Only the footer is checked now: damage inside the data surfaces as a polars
    error when the query runs. A directory is scanned as one table, with a column per
    Hive key of its parts' paths (``worker``); this reads the parts' ``conn`` columns
    to check that no connection is in two parts.
    """
    path = Path(path)
    read_metadata(path)
    if not path.is_dir():
        return pl.scan_parquet(path, glob=False, hive_partitioning=False)
    parts = recording_parts(path)
    table = pl.scan_parquet(parts, glob=False, hive_partitioning=True)
    _check_distinct_connections(path, parts)
    return table


def _check_distinct_connections(path: Path, parts: list[Path]) -> None:
    """Refuse parts that number their connections alike: a merged table would mix
    two clients into one connection (workers of one run never do: see
    :class:`simulator.core.numbering.Numbering`)."""
    seen = pl.scan_parquet(parts, glob=False, hive_partitioning=False, include_file_paths="part")
    try:
        shared = (
            seen.filter(pl.col("conn") >= 0)
            .group_by("conn")
            .agg(pl.col("part").unique().sort())
            .filter(pl.col("part").list.len() > 1)
            .sort("conn")
            .head(1)
            .collect()
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        raise RecordingError(os.fspath(path), f"corrupt recording: {error_reason(e)}") from e
    if len(shared):
        conn, files = shared.row(0)
        raise RecordingError(
            os.fspath(path),
            f"connection {conn} is in more than one part ({', '.join(files)}): record each "
            "instance with its own numbering (sim run --workers numbers worker w's "
            "connections w, w+N, ...)",
        )


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
