"""`inspect` and `diff` of real recordings, rendered by `generate` into tmp_path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from simulator.errors import RecordingError
from simulator.scenario import load_scenario
from simulator.storage.analysis import (
    diff,
    diff_lines,
    inspect,
    summary_json,
    summary_lines,
)
from simulator.storage.generate import Plan, generate
from simulator.storage.reader import read_recording
from simulator.storage.schema import Kind, Sender, encode_metadata, event_batch

REPO = Path(__file__).resolve().parents[1]
TEN_MINUTES_NS = 600 * 10**9


def recording(tmp_path: Path, name: str = "a", **plan: Any) -> Path:
    """A 10-minute energy-dashboard recording (seed 42, one connection unless told)."""
    scenario = load_scenario(REPO / "scenarios" / "energy-dashboard.toml")
    out = tmp_path / f"{name}.parquet"
    generate(Plan.of(scenario, **{"duration_ns": TEN_MINUTES_NS, **plan}), out)
    return out


def rewritten(src: Path, out: Path, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Path:
    """A copy of ``src`` whose rows went through ``change``, with the same metadata."""
    rec = read_recording(src)
    change(rec.frame).write_parquet(out, metadata=encode_metadata(rec.metadata))
    return out


def rows_of(path: Path, conn: int) -> list[tuple[Any, ...]]:
    frame = read_recording(path).frame.filter(pl.col("conn") == conn).sort("seq")
    return list(frame.select("sender", "kind", "stream", "payload").iter_rows())


# --------------------------------------------------------------------------- inspect


def test_inspect_reports_each_stream_at_its_scheduled_rate(tmp_path: Path) -> None:
    summary = inspect(recording(tmp_path))

    # 0 s: open; 5 s .. 595 s: system_stats every 5 s, so 119 of them in 10 minutes.
    streams = {s.stream: s for s in summary.streams}
    assert set(streams) == {
        "system_stats",
        "dashboard_stats",
        "energy_market",
        "notification",
        "transaction",
    }
    assert {s.sender for s in summary.streams} == {"server"}
    assert streams["system_stats"].messages == 119
    expected_interval_s = {
        "system_stats": 5,
        "dashboard_stats": 10,
        "energy_market": 7,
        "notification": 22.5,  # uniform 15-30 s
        "transaction": 10,  # uniform 5-15 s
    }
    for name, interval in expected_interval_s.items():
        rate = streams[name].rate_per_s
        assert rate is not None
        assert rate == pytest.approx(1 / interval, rel=0.2), name
    assert streams["system_stats"].rate_per_s == pytest.approx(1 / 5, rel=0.01)
    assert [c.conn for c in summary.connections] == [0]
    assert (
        summary.connections[0].rows == summary.rows == 1 + sum(s.messages for s in summary.streams)
    )
    assert summary.duration_ns == 595 * 10**9  # the open at 0 s to the last message
    assert (summary.scenario, summary.seed, summary.format_version) == (
        "energy-dashboard",
        42,
        1,
    )
    assert summary.close_codes == () and summary.faults == ()


def test_inspect_gaps_are_the_longest_silences_of_a_stream(tmp_path: Path) -> None:
    path = recording(tmp_path)
    summary = inspect(path)

    frame = read_recording(path).frame.filter(pl.col("kind") == "text")
    gaps = sorted(
        (int(g) for _, t in frame.group_by("stream") for g in np.diff(t["t_ns"].to_numpy())),
        reverse=True,
    )
    assert [g.gap_ns for g in summary.gaps] == gaps[:5]
    # Only notifications (every 15-30 s) fall silent for that long.
    assert {g.stream for g in summary.gaps} == {"notification"}
    assert all(15e9 <= g.gap_ns <= 30e9 for g in summary.gaps)


def test_inspect_counts_close_codes_and_faults_by_kind(tmp_path: Path) -> None:
    def add_closes_and_faults(frame: pl.DataFrame) -> pl.DataFrame:
        n = frame.height
        extra = event_batch(
            seq=np.arange(n, n + 4),
            t_ns=600 * 10**9,
            wall_ns=0,
            session="s",
            conn=[0, 0, -1, 0],
            sender=[Sender.SERVER, Sender.SERVER, Sender.SERVER, Sender.CLIENT],
            kind=[Kind.FAULT, Kind.FAULT, Kind.FAULT, Kind.CLOSE],
            fault=['{"kind":"drop"}', '{"kind":"drop"}', '{"no":"kind"}', None],
            close_code=[None, None, None, 1011],
            close_reason=[None, None, None, "upstream gone"],
        )
        return pl.concat([frame, extra])

    summary = inspect(rewritten(recording(tmp_path), tmp_path / "x.parquet", add_closes_and_faults))

    assert summary.faults == (("drop", 2), ("unknown", 1))
    assert summary.close_codes == ((1011, 1),)
    # The server-wide fault (conn -1) is not a connection.
    [conn] = summary.connections
    assert (conn.close_code, conn.close_reason) == (1011, "upstream gone")
    text = "\n".join(summary_lines(summary))
    assert "1011 x1" in text and "drop x2" in text


def test_summary_renders_as_lines_and_as_json(tmp_path: Path) -> None:
    summary = inspect(recording(tmp_path))

    lines = summary_lines(summary)
    assert "energy-dashboard" in lines[0] and "seed 42" in lines[0]
    assert any("system_stats" in line and "119" in line for line in lines)
    data = json.loads(json.dumps(summary_json(summary)))
    assert data["metadata"]["seed"] == 42
    assert data["duration_s"] == 595.0
    assert len(data["streams"]) == 5 and len(data["gaps"]) == 5


# --------------------------------------------------------------------------- diff


def test_a_recording_is_equivalent_to_itself_with_no_timing_error(tmp_path: Path) -> None:
    path = recording(tmp_path)

    result = diff(path, path)

    assert result.equivalent
    assert [c.identical for c in result.connections] == [True]
    assert result.only_in_a == result.only_in_b == ()
    assert result.timing is not None
    assert (result.timing.p50_ms, result.timing.p99_ms, result.timing.max_ms) == (0, 0, 0)
    assert result.timing.rows == read_recording(path).frame.height
    assert "equivalent" in diff_lines(result)[0]


def test_different_seeds_differ_at_the_first_differing_row(tmp_path: Path) -> None:
    a, b = recording(tmp_path, "a", seed=1), recording(tmp_path, "b", seed=2)

    result = diff(a, b)

    rows_a, rows_b = rows_of(a, 0), rows_of(b, 0)
    expected = next(i for i, (x, y) in enumerate(zip(rows_a, rows_b, strict=False)) if x != y)
    assert not result.equivalent
    [conn] = result.connections
    assert conn.first_difference is not None
    assert conn.first_difference.index == expected
    assert (conn.rows_a, conn.rows_b) == (len(rows_a), len(rows_b))


def test_first_difference_is_the_changed_row_with_its_payload_shown(tmp_path: Path) -> None:
    a = recording(tmp_path)
    # Change the end of one payload: row 7 of connection 0 (seq 7) is now different.
    tail = pl.col("payload").bin.slice(0, pl.col("payload").bin.size() - 2)
    b = rewritten(
        a,
        tmp_path / "b.parquet",
        lambda f: f.with_columns(
            payload=pl.when(pl.col("seq") == 7).then(tail + b'"CHANGED"}').otherwise("payload")
        ),
    )

    result = diff(a, b)

    [conn] = result.connections
    d = conn.first_difference
    assert d is not None and d.a is not None and d.b is not None
    assert (d.index, d.a.seq, d.b.seq) == (7, 7, 7)
    # The payloads are shown from near where they start to differ, not from their start.
    assert d.b.payload is not None and "CHANGED" in d.b.payload
    assert len(d.b.payload) <= 100
    text = "\n".join(diff_lines(result))
    assert "first difference at index 7" in text and "CHANGED" in text


def test_shifted_times_are_equivalent_and_show_as_timing_error(tmp_path: Path) -> None:
    a = recording(tmp_path)
    b = rewritten(a, tmp_path / "b.parquet", lambda f: f.with_columns(pl.col("t_ns") + 1_000_000))

    result = diff(a, b)

    assert result.equivalent
    assert result.timing is not None
    assert (result.timing.p50_ms, result.timing.p99_ms, result.timing.max_ms) == (1, 1, 1)
    assert diff(a, b, ignore_timing=True).timing is None


def test_timing_is_measured_only_over_rows_the_same_in_both_files(tmp_path: Path) -> None:
    """Rows that differ are not the same event: when each was recorded says nothing
    (two unrelated sessions gave "timing error over 402 matched rows: p50 15000 ms")."""
    a = recording(tmp_path)
    changed = (pl.col("seq") % 2 == 1) & (pl.col("kind") == "text")
    b = rewritten(
        a,
        tmp_path / "b.parquet",
        lambda f: f.with_columns(
            payload=pl.when(changed).then(pl.lit(b'{"other": 1}')).otherwise("payload"),
            t_ns=pl.when(changed).then(pl.col("t_ns") + 10**9).otherwise("t_ns"),
        ),
    )
    frame = read_recording(a).frame
    differing = frame.filter((pl.col("seq") % 2 == 1) & (pl.col("kind") == "text")).height

    result = diff(a, b)

    assert result.timing is not None and differing > 0
    assert (result.timing.rows, result.untimed) == (frame.height - differing, differing)
    assert (result.timing.p50_ms, result.timing.p99_ms, result.timing.max_ms) == (0, 0, 0)
    assert f"({differing} that differ not timed)" in diff_lines(result)[-1]


def test_timing_of_recordings_with_no_row_in_common_is_not_comparable(tmp_path: Path) -> None:
    a = recording(tmp_path)
    b = rewritten(a, tmp_path / "b.parquet", lambda f: f.with_columns(stream=pl.lit("other")))

    result = diff(a, b)

    assert result.timing is None and result.untimed == read_recording(a).frame.height
    assert diff_lines(result)[-1] == (
        f"  timing not comparable: no row is the same in both files"
        f" ({result.untimed} that differ not timed)"
    )
    assert diff(a, b, ignore_timing=True).untimed == 0


def test_a_connection_in_only_one_file_is_reported_and_not_equivalent(tmp_path: Path) -> None:
    one, two = recording(tmp_path, "one"), recording(tmp_path, "two", connections=2)

    result = diff(one, two)

    assert not result.equivalent
    assert (result.only_in_a, result.only_in_b) == ((), (1,))
    # Broadcast mode: connection 0 received the same messages but for the dashboard's
    # active_connections, the live count of clients (1, then 2).
    assert [(c.conn, c.identical) for c in result.connections] == [(0, False)]
    assert f"only in {two}: conn 1" in "\n".join(diff_lines(result))
    assert diff(two, one).only_in_a == (1,)


# --------------------------------------------------------------------------- bad files


def not_parquet(path: Path, good: Path) -> str:
    path.write_text("session,conn\n")
    return "not a Parquet file"


def truncated(path: Path, good: Path) -> str:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "truncated Parquet file"


def missing(path: Path, good: Path) -> str:
    return "no such file"


def corrupt_data(path: Path, good: Path) -> str:
    # Footer intact, compressed pages garbled: found only when the data is read.
    data = bytearray(good.read_bytes())
    for i in range(len(data) // 4, len(data) // 2):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return "corrupt recording"


@pytest.mark.parametrize("damage", [not_parquet, truncated, missing, corrupt_data])
@pytest.mark.parametrize(
    "analyse",
    [
        pytest.param(lambda bad, good: inspect(bad), id="inspect"),
        pytest.param(lambda bad, good: diff(bad, good), id="diff-a"),
        pytest.param(lambda bad, good: diff(good, bad), id="diff-b"),
    ],
)
def test_a_bad_file_raises_recording_error_naming_it(
    tmp_path: Path,
    damage: Callable[[Path, Path], str],
    analyse: Callable[[Path, Path], object],
) -> None:
    good = recording(tmp_path, "good")
    bad = tmp_path / "bad.parquet"
    message = damage(bad, good)

    with pytest.raises(RecordingError) as info:
        analyse(bad, good)

    assert info.value.file == str(bad)
    assert message in str(info.value)
