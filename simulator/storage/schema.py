"""The recording format, defined once: columns, file metadata, format version.

A recording is a Parquet file with one row per WebSocket event. Every module that
writes or reads recordings takes the column set from :data:`SCHEMA` and the
metadata keys from this module; ``docs/recording-format.md`` documents both.

Build frames with :func:`event_batch` (columns in, a frame with exactly
:data:`SCHEMA` out) so that the hot path never creates one Python object per row.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias, TypedDict

import numpy as np
import polars as pl

from simulator.errors import RecordingError, UsageError

#: Incremented on any change that a reader of the previous version could misread:
#: a column added, removed, renamed or retyped, a ``kind``/``sender`` value added,
#: or a column's meaning changed. Readers refuse newer versions.
FORMAT_VERSION: Final = 1


class Sender(enum.StrEnum):
    """Which side of the connection produced the event."""

    SERVER = "server"
    CLIENT = "client"


class Kind(enum.StrEnum):
    """What happened. ``fault`` is an injected fault, ``error`` a failure observed."""

    OPEN = "open"
    TEXT = "text"
    BINARY = "binary"
    PING = "ping"
    PONG = "pong"
    CLOSE = "close"
    FAULT = "fault"
    ERROR = "error"


# Enum rather than String: stored as a dictionary-encoded string column, so other
# Parquet readers (DuckDB, pyarrow) see plain strings, while polars restores the
# Enum from the Arrow schema it embeds; it survives scan_parquet → sink_parquet
# compaction unchanged. The category order is part of the format: append only.
SENDER_DTYPE: Final = pl.Enum([s.value for s in Sender])
KIND_DTYPE: Final = pl.Enum([k.value for k in Kind])

SCHEMA: Final = pl.Schema(
    {
        "session": pl.String(),
        "conn": pl.Int32(),
        "seq": pl.Int64(),
        "t_ns": pl.Int64(),
        "wall_ns": pl.Int64(),
        "sender": SENDER_DTYPE,
        "kind": KIND_DTYPE,
        "stream": pl.String(),
        "payload": pl.Binary(),
        "close_code": pl.Int32(),
        "close_reason": pl.String(),
        "fault": pl.String(),
    }
)

#: Columns that are never null in a well-formed recording.
REQUIRED_COLUMNS: Final = ("session", "conn", "seq", "t_ns", "wall_ns", "sender", "kind")

# Parquet file-level key-value metadata. Every value is a string.
KEY_FORMAT_VERSION: Final = "sim.format_version"
KEY_SIM_VERSION: Final = "sim.version"
KEY_SCENARIO: Final = "sim.scenario"
KEY_SEED: Final = "sim.seed"
KEY_SOURCE_URL: Final = "sim.source_url"
KEY_CREATED_AT: Final = "sim.created_at"
KEY_EXTRA: Final = "sim.extra"


class RecordingMetadata(TypedDict):
    """File metadata of a recording, as a plain dict.

    ``source_url`` must already have its secrets removed: it is stored verbatim.
    ``created_at`` is ISO 8601 UTC (``2025-01-31T12:00:00.000000Z``).
    ``extra`` is free-form and must be JSON-serialisable.
    """

    format_version: int
    sim_version: str
    scenario: str
    seed: int | None
    source_url: str | None
    created_at: str
    extra: dict[str, Any]


def new_metadata(
    *,
    sim_version: str,
    scenario: str,
    seed: int | None,
    source_url: str | None = None,
    extra: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> RecordingMetadata:
    """Metadata for a new recording at the current :data:`FORMAT_VERSION`.

    ``created_at`` defaults to now; pass it to make output reproducible.
    """
    when = created_at if created_at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise UsageError(f"created_at={when!r} must be timezone-aware")
    return RecordingMetadata(
        format_version=FORMAT_VERSION,
        sim_version=sim_version,
        scenario=scenario,
        seed=seed,
        source_url=source_url,
        created_at=when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        extra=dict(extra or {}),
    )


def encode_metadata(meta: RecordingMetadata) -> dict[str, str]:
    """The Parquet key-value pairs for ``meta``. ``None`` values are left out."""
    try:
        extra = json.dumps(meta["extra"], sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise UsageError(f"metadata extra={meta['extra']!r} is not JSON-serialisable: {e}") from e
    kv = {
        KEY_FORMAT_VERSION: str(meta["format_version"]),
        KEY_SIM_VERSION: meta["sim_version"],
        KEY_SCENARIO: meta["scenario"],
        KEY_CREATED_AT: meta["created_at"],
        KEY_EXTRA: extra,
    }
    if meta["seed"] is not None:
        kv[KEY_SEED] = str(meta["seed"])
    if meta["source_url"] is not None:
        kv[KEY_SOURCE_URL] = meta["source_url"]
    return kv


def decode_metadata(kv: Mapping[str, str], file: str) -> RecordingMetadata:
    """Parse the key-value pairs of ``file`` back into metadata.

    Raises :class:`RecordingError` if the file is not a recording (no format
    version), is of a newer format, or has a malformed value.
    """
    raw_version = kv.get(KEY_FORMAT_VERSION)
    if raw_version is None:
        raise RecordingError(file, f"not a sim recording: no {KEY_FORMAT_VERSION!r} metadata")
    version = _parse_int(raw_version, KEY_FORMAT_VERSION, file)
    if version > FORMAT_VERSION:
        raise RecordingError(
            file,
            f"recording format version {version} is newer than this sim supports "
            f"({FORMAT_VERSION}); upgrade sim to read it",
        )
    if version < 1:
        raise RecordingError(file, f"invalid {KEY_FORMAT_VERSION}={raw_version!r}")

    def required(key: str) -> str:
        value = kv.get(key)
        if value is None:
            raise RecordingError(file, f"recording metadata has no {key!r}")
        return value

    raw_extra = kv.get(KEY_EXTRA, "{}")
    try:
        extra = json.loads(raw_extra)
    except ValueError:
        extra = None
    if not isinstance(extra, dict):
        raise RecordingError(file, f"metadata {KEY_EXTRA!r} is not a JSON object: {raw_extra!r}")
    raw_seed = kv.get(KEY_SEED)
    return RecordingMetadata(
        format_version=version,
        sim_version=required(KEY_SIM_VERSION),
        scenario=required(KEY_SCENARIO),
        seed=None if raw_seed is None else _parse_int(raw_seed, KEY_SEED, file),
        source_url=kv.get(KEY_SOURCE_URL),
        created_at=required(KEY_CREATED_AT),
        extra=extra,
    )


def _parse_int(raw: str, key: str, file: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise RecordingError(file, f"metadata {key!r}={raw!r} is not an integer") from None


def schema_problems(schema: Mapping[str, pl.DataType]) -> list[str]:
    """What keeps ``schema`` from being :data:`SCHEMA`, one phrase each; empty if equal."""
    problems = [f"column {name!r} missing" for name in SCHEMA if name not in schema]
    problems += [
        f"column {name!r} is {schema[name]}, expected {dtype}"
        for name, dtype in SCHEMA.items()
        if name in schema and schema[name] != dtype
    ]
    problems += [f"unexpected column {name!r}" for name in schema if name not in SCHEMA]
    if not problems and list(schema) != list(SCHEMA):
        problems.append(f"columns are in the order {list(schema)}, expected {list(SCHEMA)}")
    return problems


def empty_frame() -> pl.DataFrame:
    """A frame with no rows and exactly :data:`SCHEMA`."""
    return SCHEMA.to_frame()


# A column argument of event_batch: one value for every row, or one value per row.
Column: TypeAlias = (
    str | bytes | int | np.integer[Any] | np.ndarray[Any, Any] | pl.Series | Sequence[Any] | None
)


def event_batch(
    *,
    seq: np.ndarray[Any, Any] | pl.Series | Sequence[int],
    t_ns: Column,
    wall_ns: Column,
    session: Column,
    conn: Column,
    sender: Column,
    kind: Column,
    stream: Column = None,
    payload: Column = None,
    close_code: Column = None,
    close_reason: Column = None,
    fault: Column = None,
) -> pl.DataFrame:
    """Build a frame with exactly :data:`SCHEMA` from whole columns.

    ``seq`` fixes the number of rows. Every other argument is either a scalar
    (``str``, ``bytes``, ``int``, ``None`` or an enum member), repeated for every
    row, or a column of that length: a numpy array (cheapest for the integer
    columns), a :class:`polars.Series`, or a list (``list[bytes | None]`` for
    ``payload``, ``list[str]`` for ``sender``/``kind``).

    Raises :class:`UsageError` naming the column if a length, a value or a type
    does not fit.
    """
    columns: dict[str, Column] = {
        "session": session,
        "conn": conn,
        "seq": seq,
        "t_ns": t_ns,
        "wall_ns": wall_ns,
        "sender": sender,
        "kind": kind,
        "stream": stream,
        "payload": payload,
        "close_code": close_code,
        "close_reason": close_reason,
        "fault": fault,
    }
    n = len(seq)
    return pl.DataFrame([_series(name, columns[name], dtype, n) for name, dtype in SCHEMA.items()])


def _series(name: str, value: Column, dtype: pl.DataType, n: int) -> pl.Series:
    if value is None or isinstance(value, str | bytes | int | np.integer):
        if isinstance(value, np.integer):
            value = int(value)
        # Build one value, then repeat it: no per-row Python objects.
        one = _convert(name, [value], dtype)
        return one.new_from_index(0, n) if n else one.clear()
    if isinstance(value, pl.Series):
        series = _cast(name, value.alias(name), dtype)
    elif isinstance(value, np.ndarray):
        series = _cast(name, pl.Series(name, value), dtype)
    else:
        series = _convert(name, value, dtype)
    if len(series) != n:
        raise UsageError(f"column {name!r} has {len(series)} values, expected {n} (len(seq))")
    return series


def _convert(name: str, values: Sequence[Any], dtype: pl.DataType) -> pl.Series:
    try:
        return pl.Series(name, values, dtype=dtype)
    except (pl.exceptions.PolarsError, TypeError, OverflowError) as e:
        raise UsageError(f"column {name!r}: cannot convert to {dtype}: {error_reason(e)}") from e


def _cast(name: str, series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if series.dtype == dtype:
        return series
    if dtype.is_integer() and not series.dtype.is_integer():
        # cast() would truncate 1.5 to 1 without a word.
        raise UsageError(f"column {name!r}: cannot cast {series.dtype} to {dtype}: not integers")
    try:
        return series.cast(dtype)
    except pl.exceptions.PolarsError as e:
        raise UsageError(
            f"column {name!r}: cannot cast {series.dtype} to {dtype}: {error_reason(e)}"
        ) from e


def error_reason(e: BaseException) -> str:
    """One line saying why ``e`` happened: the OS reason, or a polars message's first line."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    # polars wraps OS errors: "parquet: ...: underlying IO error: No space left on device
    # (os error 28)"; the OS reason is what the user can act on.
    _, io_sep, os_reason = line.partition("underlying IO error: ")
    return os_reason if io_sep else line
