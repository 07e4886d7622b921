"""Recording storage: schema, segment writer, compaction, recovery, reader errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import RecordingError, UsageError
from simulator.storage.reader import read_metadata, read_recording, scan_recording
from simulator.storage.schema import (
    FORMAT_VERSION,
    KEY_FORMAT_VERSION,
    SCHEMA,
    Kind,
    RecordingMetadata,
    Sender,
    decode_metadata,
    empty_frame,
    encode_metadata,
    event_batch,
    new_metadata,
)
from simulator.storage.writer import RecordingWriter, recover, segment_dir

REPO = Path(__file__).resolve().parents[1]
CREATED = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def meta(**overrides: Any) -> RecordingMetadata:
    m = new_metadata(
        sim_version="0.1.0",
        scenario="energy-dashboard",
        seed=42,
        source_url="wss://example.test/feed",
        extra={"ports": [3002], "note": "ünïcode"},
        created_at=CREATED,
    )
    m.update(overrides)  # type: ignore[typeddict-item]
    return m


def batch(start: int, n: int, *, conn: int = 0, kind: str = "text") -> pl.DataFrame:
    """``n`` rows with seq ``start .. start+n-1``; payload encodes the seq."""
    seq = np.arange(start, start + n, dtype=np.int64)
    return event_batch(
        seq=seq,
        t_ns=seq * 1_000,
        wall_ns=1_700_000_000_000_000_000 + seq * 1_000,
        session="sess-1",
        conn=conn,
        sender=Sender.SERVER,
        kind=kind,
        stream="reading",
        payload=[b"p%d" % i for i in range(start, start + n)],
    )


def segments(out: Path) -> list[str]:
    return sorted(p.name for p in segment_dir(out).iterdir())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- schema ------------------------------------------------------------------


def test_event_batch_has_exact_schema_and_broadcasts_scalars() -> None:
    df = event_batch(
        seq=np.arange(3),
        t_ns=np.array([5, 6, 7]),
        wall_ns=0,
        session="s",
        conn=np.int64(2),
        sender="client",
        kind=[Kind.TEXT, "ping", "close"],
        payload=[b"a", None, b""],
        close_code=[None, None, 1000],
        close_reason=[None, None, "bye"],
    )
    assert df.schema == SCHEMA
    assert df["session"].to_list() == ["s"] * 3
    assert df["conn"].to_list() == [2, 2, 2]
    assert df["sender"].to_list() == ["client"] * 3
    assert df["kind"].to_list() == ["text", "ping", "close"]
    assert df["payload"].to_list() == [b"a", None, b""]
    assert df["stream"].null_count() == 3


def test_empty_batch_and_empty_frame_have_exact_schema() -> None:
    empty = event_batch(
        seq=[], t_ns=[], wall_ns=[], session="s", conn=0, sender="server", kind="open"
    )
    assert empty.schema == SCHEMA
    assert empty.height == 0
    assert empty_frame().schema == SCHEMA


@pytest.mark.parametrize(
    ("override", "column"),
    [
        ({"kind": "nope"}, "kind"),
        ({"sender": ["server", "proxy", "client"]}, "sender"),
        ({"conn": np.array([2**40] * 3)}, "conn"),
        ({"payload": [b"only one"]}, "payload"),
        ({"t_ns": np.array([0.5, 1.5, 2.5])}, "t_ns"),
        ({"close_code": "1000"}, "close_code"),
    ],
)
def test_event_batch_rejects_bad_columns_naming_them(override: dict[str, Any], column: str) -> None:
    kwargs: dict[str, Any] = {
        "seq": np.arange(3),
        "t_ns": 0,
        "wall_ns": 0,
        "session": "s",
        "conn": 0,
        "sender": "server",
        "kind": "text",
    }
    kwargs.update(override)
    with pytest.raises(UsageError, match=f"column '{column}'"):
        event_batch(**kwargs)


@settings(max_examples=30, deadline=None)
@given(
    scenario=st.text(),
    seed=st.none() | st.integers(min_value=-(2**80), max_value=2**80),
    source_url=st.none() | st.text(),
    extra=st.dictionaries(st.text(), st.none() | st.integers() | st.text() | st.booleans()),
)
def test_metadata_round_trips_through_parquet(
    tmp_path_factory: pytest.TempPathFactory,
    scenario: str,
    seed: int | None,
    source_url: str | None,
    extra: dict[str, Any],
) -> None:
    m = meta(scenario=scenario, seed=seed, source_url=source_url, extra=extra)
    path = tmp_path_factory.mktemp("meta") / "r.parquet"
    empty_frame().write_parquet(path, metadata=encode_metadata(m))
    assert read_metadata(path) == m


def test_new_metadata_requires_an_aware_timestamp() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        new_metadata(sim_version="1", scenario="s", seed=1, created_at=datetime(2025, 1, 1))


# -- writer ------------------------------------------------------------------


def test_round_trip_keeps_rows_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    frames = [
        batch(0, 10, kind="open"),
        batch(10, 1000, conn=1),
        event_batch(
            seq=np.array([1010, 1011]),
            t_ns=np.array([9, 10]),
            wall_ns=np.array([11, 12]),
            session="sess-1",
            conn=1,
            sender=["client", "server"],
            kind=["fault", "close"],
            fault=['{"kind":"drop"}', None],
            close_code=[None, 1011],
            close_reason=[None, "internal error"],
        ),
    ]
    with RecordingWriter(out, meta(), flush_rows=300) as writer:
        for frame in frames:
            writer.append(frame)
    rec = read_recording(out)
    assert rec.frame.schema == SCHEMA
    assert rec.frame.equals(pl.concat(frames))
    assert rec.metadata == meta()
    assert rec.metadata["format_version"] == FORMAT_VERSION
    assert not segment_dir(out).exists()


def test_order_is_kept_across_many_segments(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    rng = np.random.default_rng(7)
    writer = RecordingWriter(out, meta(), flush_rows=7)
    start = 0
    for size in rng.integers(1, 20, size=300):
        writer.append(batch(start, int(size)))
        start += int(size)
    n_segments = len(segments(out))
    writer.close()
    assert n_segments > 150
    seq = read_recording(out).frame["seq"].to_numpy()
    assert np.array_equal(seq, np.arange(start))


def test_flush_by_size(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    writer = RecordingWriter(out, meta(), flush_rows=100, clock=FakeClock())
    writer.append(batch(0, 60))
    assert (writer.buffered_rows, writer.flushed_rows, segments(out)) == (60, 0, [])
    writer.append(batch(60, 60))
    assert (writer.buffered_rows, writer.flushed_rows) == (0, 120)
    assert segments(out) == ["seg-000001.parquet"]
    segment = pl.read_parquet(segment_dir(out) / "seg-000001.parquet")
    assert segment["seq"].to_list() == list(range(120))
    writer.close()


def test_flush_by_time_with_injected_clock(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    clock = FakeClock()
    writer = RecordingWriter(out, meta(), flush_interval_s=1.0, clock=clock)
    # 0 s: nothing buffered, nothing due
    clock.now = 5.0
    assert writer.maybe_flush() == 0
    # 5 s: first rows arrive; the interval counts from here
    writer.append(batch(0, 3))
    clock.now = 5.9
    assert writer.maybe_flush() == 0
    writer.append(batch(3, 2))
    assert segments(out) == []
    # 6 s: the oldest row is 1 s old: the timer's call writes a segment
    assert writer.maybe_flush(6.0) == 5
    assert segments(out) == ["seg-000001.parquet"]
    # 7 s: rows arrive; at 8.5 s the next append finds them overdue and flushes itself
    clock.now = 7.0
    writer.append(batch(5, 1))
    clock.now = 8.5
    writer.append(batch(6, 1))
    assert (writer.buffered_rows, writer.flushed_rows) == (0, 7)
    assert segments(out) == ["seg-000001.parquet", "seg-000002.parquet"]
    writer.close()
    assert read_recording(out).frame["seq"].to_list() == list(range(7))


def test_append_rejects_a_frame_with_another_schema(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec.parquet", meta())
    wrong = batch(0, 2).with_columns(pl.col("conn").cast(pl.Int64))
    with pytest.raises(UsageError, match="column 'conn' is Int64, expected Int32"):
        writer.append(wrong)
    with pytest.raises(UsageError, match="column 'fault' missing"):
        writer.append(batch(0, 2).drop("fault"))
    writer.close()


def test_a_session_without_events_is_an_empty_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    RecordingWriter(out, meta()).close()
    rec = read_recording(out)
    assert rec.frame.equals(empty_frame())
    assert rec.metadata == meta()


def test_close_is_idempotent_and_append_after_close_is_refused(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec.parquet", meta())
    writer.append(batch(0, 1))
    writer.close()
    writer.close()
    with pytest.raises(UsageError, match="closed"):
        writer.append(batch(1, 1))


def test_leaving_with_block_on_an_exception_keeps_what_was_recorded(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    with pytest.raises(KeyError), RecordingWriter(out, meta()) as writer:
        writer.append(batch(0, 4))
        raise KeyError("server crashed")
    assert read_recording(out).frame.height == 4


def test_missing_folders_of_the_output_are_made(tmp_path: Path) -> None:
    out = tmp_path / "out" / "today" / "rec.parquet"
    with RecordingWriter(out, meta()) as writer:
        writer.append(batch(0, 2))
    assert read_recording(out).frame.height == 2


def test_a_file_where_the_folder_should_be_fails_at_construction(tmp_path: Path) -> None:
    (tmp_path / "missing").write_text("a file")
    out = tmp_path / "missing" / "rec.parquet"
    with pytest.raises(RecordingError, match=r"cannot create folder .*missing") as info:
        RecordingWriter(out, meta())
    assert info.value.file == str(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_fails_at_construction(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RecordingError, match="Permission denied"):
            RecordingWriter(tmp_path / "rec.parquet", meta())
    finally:
        tmp_path.chmod(0o755)


def test_existing_recording_or_stale_segments_are_not_overwritten_silently(
    tmp_path: Path,
) -> None:
    out = tmp_path / "rec.parquet"
    with RecordingWriter(out, meta()) as writer:
        writer.append(batch(0, 1))
    with pytest.raises(RecordingError, match="already exists"):
        RecordingWriter(out, meta())
    out.unlink()
    segment_dir(out).mkdir()
    with pytest.raises(RecordingError, match="sim recover"):
        RecordingWriter(out, meta())
    with RecordingWriter(out, meta(), overwrite=True) as writer:
        writer.append(batch(0, 2))
    assert read_recording(out).frame.height == 2


def test_a_failed_segment_write_raises_and_stops_the_writer(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    writer = RecordingWriter(out, meta(), flush_rows=10)
    writer.append(batch(0, 10))
    # The directory vanishes under the writer (an operator, a full disk, a lost mount).
    for p in segment_dir(out).iterdir():
        p.unlink()
    segment_dir(out).rmdir()
    with pytest.raises(RecordingError, match=r"cannot write segment .*seg-000002.*5 rows not"):
        writer.append(batch(10, 5))
        writer.flush()
    with pytest.raises(RecordingError, match="earlier error"):
        writer.append(batch(15, 1))
    with pytest.raises(RecordingError, match="sim recover"):
        writer.close()


@pytest.mark.parametrize(
    ("bad", "value"),
    [("flush_rows", 0), ("flush_interval_s", 0.0), ("flush_interval_s", float("nan"))],
)
def test_writer_rejects_bad_flush_settings(tmp_path: Path, bad: str, value: float) -> None:
    with pytest.raises(UsageError, match=bad):
        kwargs: dict[str, Any] = {bad: value}
        RecordingWriter(tmp_path / "rec.parquet", meta(), **kwargs)
    assert not segment_dir(tmp_path / "rec.parquet").exists()


# -- recovery ----------------------------------------------------------------


def test_recover_after_a_kill_keeps_every_flushed_row(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    writer = RecordingWriter(out, meta(), flush_rows=50)
    for start in range(0, 230, 10):
        writer.append(batch(start, 10))
    assert (writer.flushed_rows, writer.buffered_rows) == (200, 30)
    # Killed: no close(). A segment and the final file were half-written.
    (segment_dir(out) / "seg-000005.parquet.tmp").write_bytes(b"PAR1 half a segment")
    Path(f"{out}.tmp").write_bytes(b"PAR1 half a recording")

    assert recover(out) == 200
    rec = read_recording(out)
    assert rec.frame["seq"].to_list() == list(range(200))
    assert rec.metadata == meta()
    assert not segment_dir(out).exists()


def test_recover_skips_a_damaged_segment(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    writer = RecordingWriter(out, meta(), flush_rows=10)
    for start in range(0, 30, 10):
        writer.append(batch(start, 10))
    (segment_dir(out) / "seg-000002.parquet").write_bytes(b"garbage")
    assert recover(out) == 20
    assert read_recording(out).frame["seq"].to_list() == [*range(10), *range(20, 30)]


def test_recover_with_nothing_to_recover_raises(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    with pytest.raises(RecordingError, match="no segment directory"):
        recover(out)
    segment_dir(out).mkdir()
    (segment_dir(out) / "seg-000001.parquet.tmp").write_bytes(b"PAR1")
    with pytest.raises(RecordingError, match="no complete segment"):
        recover(out)
    assert not out.exists()


def test_writer_killed_by_sigkill_loses_no_flushed_row(tmp_path: Path) -> None:
    """A real process appends with a 0.1 s flush interval and is SIGKILLed mid-stream."""
    out = tmp_path / "rec.parquet"
    child = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from simulator.storage.schema import event_batch, new_metadata
        from simulator.storage.writer import RecordingWriter
        w = RecordingWriter({str(out)!r}, new_metadata(sim_version="t", scenario="kill", seed=1),
                            flush_interval_s=0.1, flush_rows=10**9)
        start, reported = 0, 0
        while True:
            seq = np.arange(start, start + 100, dtype=np.int64)
            w.append(event_batch(seq=seq, t_ns=seq, wall_ns=seq, session="k", conn=0,
                                 sender="server", kind="binary", payload=b"x" * 200))
            start += 100
            if w.flushed_rows != reported:
                reported = w.flushed_rows
                print(reported, flush=True)
            time.sleep(0.002)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        reported = [int(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    rows = recover(out)
    # Every row reported flushed is there; a flush may have completed after the last report.
    assert rows >= reported[-1] > reported[0] > 0
    assert read_recording(out).frame["seq"].to_list() == list(range(rows))


# -- reader ------------------------------------------------------------------


def write_parquet(path: Path, frame: pl.DataFrame, kv: dict[str, str] | None = None) -> Path:
    frame.write_parquet(path, metadata=kv)
    return path


def a_recording(path: Path) -> Path:
    with RecordingWriter(path, meta()) as writer:
        writer.append(batch(0, 500))
    return path


def truncated(path: Path) -> Path:
    data = a_recording(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


OURS = encode_metadata(meta())

BAD_FILES: list[tuple[str, Any, str]] = [
    ("missing", lambda p: p, "no such file"),
    ("empty", lambda p: (p.write_bytes(b""), p)[1], "not a Parquet file"),
    ("text", lambda p: (p.write_text("seq,kind\n1,text\n"), p)[1], "not a Parquet file"),
    ("truncated", truncated, "truncated Parquet file"),
    ("foreign", lambda p: write_parquet(p, pl.DataFrame({"a": [1]})), "not a sim recording"),
    ("no metadata", lambda p: write_parquet(p, batch(0, 3)), "no 'sim.format_version'"),
    (
        "wrong type",
        lambda p: write_parquet(p, batch(0, 3).with_columns(pl.col("conn").cast(pl.Int64)), OURS),
        "column 'conn' is Int64, expected Int32",
    ),
    (
        "missing column",
        lambda p: write_parquet(p, batch(0, 3).drop("payload"), OURS),
        "column 'payload' missing",
    ),
    (
        "newer version",
        lambda p: write_parquet(p, batch(0, 3), {**OURS, KEY_FORMAT_VERSION: "2"}),
        "format version 2 is newer",
    ),
    ("a directory", lambda p: (p.mkdir(), p)[1], "is a directory"),
]


@pytest.mark.parametrize(
    ("make", "message"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_files_give_one_clear_line(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path / "rec.parquet")
    for read in (read_recording, scan_recording, read_metadata):
        with pytest.raises(RecordingError, match=message) as info:
            read(path)
        assert info.value.file == str(path)
        assert "\n" not in str(info.value)


def test_reader_points_to_recover_for_an_unclosed_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec.parquet"
    writer = RecordingWriter(out, meta(), flush_rows=5)
    writer.append(batch(0, 5))
    with pytest.raises(RecordingError, match=f"not closed cleanly; run `sim recover {out}`"):
        read_recording(out)


def test_scan_recording_is_lazy_and_queryable(tmp_path: Path) -> None:
    out = a_recording(tmp_path / "rec.parquet")
    lf = scan_recording(out)
    assert isinstance(lf, pl.LazyFrame)
    got = lf.filter(pl.col("seq") >= 490).select(pl.len()).collect().item()
    assert got == 10


def test_decode_metadata_rejects_malformed_values() -> None:
    with pytest.raises(RecordingError, match=re.escape("'sim.seed'='x' is not an integer")):
        decode_metadata({**OURS, "sim.seed": "x"}, "f")
    with pytest.raises(RecordingError, match="not a JSON object"):
        decode_metadata({**OURS, "sim.extra": "[1]"}, "f")
    with pytest.raises(RecordingError, match=re.escape("no 'sim.scenario'")):
        decode_metadata({k: v for k, v in OURS.items() if k != "sim.scenario"}, "f")
