"""A recording as a directory of parts (``sim run --workers N --record DIR``): read as
one table with a column per Hive key, refused when its parts do not belong together."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from simulator.errors import RecordingError
from simulator.storage.reader import read_metadata, read_recording, scan_recording
from simulator.storage.schema import SCHEMA
from simulator.storage.writer import RecordingWriter, segment_dir
from tests.test_storage import batch, meta


def write_part(root: Path, worker: int, conns: list[int], **metadata: object) -> Path:
    out = root / f"worker={worker}" / "part.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    with RecordingWriter(out, meta(**metadata)) as writer:
        for i, conn in enumerate(conns):
            writer.append(batch(i * 10, 10, conn=conn))
    return out


def test_a_directory_of_parts_reads_as_one_table_with_the_worker(tmp_path: Path) -> None:
    write_part(tmp_path, 0, [0, 2])
    write_part(tmp_path, 1, [1, 3])
    rec = read_recording(tmp_path)
    assert rec.metadata == meta()
    assert rec.frame.height == 40
    assert rec.frame.drop("worker").schema == SCHEMA
    pairs = rec.frame.select("conn", "worker").unique().sort("conn").rows()
    assert pairs == [(0, 0), (1, 1), (2, 0), (3, 1)]
    assert scan_recording(tmp_path).select(pl.len()).collect().item() == 40


def test_parts_that_share_a_connection_are_refused(tmp_path: Path) -> None:
    """Two instances numbering from 0 would merge two clients into connection 0."""
    write_part(tmp_path, 0, [0, 1])
    write_part(tmp_path, 1, [1, 2])
    with pytest.raises(RecordingError, match=r"connection 1 is in more than one part"):
        scan_recording(tmp_path)


def test_parts_of_different_sessions_are_refused(tmp_path: Path) -> None:
    write_part(tmp_path, 0, [0], seed=1)
    write_part(tmp_path, 1, [1], seed=2)
    with pytest.raises(RecordingError, match=r"parts of different sessions: .* seed 1, .* seed 2"):
        read_metadata(tmp_path)


def test_a_directory_without_parts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"no recording \(\*\.parquet\) in it"):
        read_metadata(tmp_path)


def test_a_part_not_closed_cleanly_says_how_to_recover_it(tmp_path: Path) -> None:
    write_part(tmp_path, 0, [0])
    unclosed = tmp_path / "worker=1" / "part.parquet"
    segment_dir(unclosed).mkdir(parents=True)
    with pytest.raises(RecordingError, match=r"sim recover .*worker=1/part\.parquet"):
        read_metadata(tmp_path)
