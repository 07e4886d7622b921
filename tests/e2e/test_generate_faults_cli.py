"""`sim generate` renders a scenario's [[fault]]s, as real processes: `sim diff` tells a
faulted feed from the clean one, the client model's option is used, and what a file
cannot show is said on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def sim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


def generate(name: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = sim("generate", SCENARIOS / f"{name}.toml", "--duration", "5m", "--out", out, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def fault_kinds(frame: pl.DataFrame) -> set[str]:
    faults = frame.filter(pl.col("kind") == "fault")["fault"].to_list()
    return {orjson.loads(f)["kind"] for f in faults}


def test_diff_tells_generated_flaky_network_from_energy_dashboard(tmp_path: Path) -> None:
    """flaky-network is the energy-dashboard feed plus message faults: generated, the two
    files are no longer "equivalent" (exit 1), and flaky's holds its faults."""
    flaky, clean = tmp_path / "flaky.parquet", tmp_path / "clean.parquet"
    generate("flaky-network", flaky)
    generate("energy-dashboard", clean)
    diff = sim("diff", flaky, clean)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "equivalent" not in diff.stdout
    assert "different" in diff.stdout
    kinds = fault_kinds(pl.read_parquet(flaky))
    assert {"drop", "delay", "duplicate", "reorder"} <= kinds
    assert fault_kinds(pl.read_parquet(clean)) == set()


def test_outage_clients_reconnect_after_the_given_delay(tmp_path: Path) -> None:
    """outage.toml (down from 30 s to 50 s): the clients' connections end at 30 s, their
    handshakes are refused every --reconnect-after until 50 s, then accepted."""
    out = tmp_path / "outage.parquet"
    generate("outage", out, "--connections", "2", "--reconnect-after", "4s")
    frame = pl.read_parquet(out).sort("seq")
    refused = frame.filter(pl.col("fault").str.contains('"handshake_refused"'))
    # Attempts at 34, 38, ..., 50 s: 34 to 46 s are refused (5 each), 50 s is accepted.
    assert sorted(set(refused["t_ns"].to_list())) == [s * 10**9 for s in (34, 38, 42, 46)]
    assert refused.height == 8
    opens = frame.filter(pl.col("kind") == "open")
    assert opens["t_ns"].to_list() == [0, 0, 50 * 10**9, 50 * 10**9]
    closes = frame.filter(pl.col("kind") == "close")
    assert closes.select("t_ns", "close_code").rows() == [(30 * 10**9, 1006)] * 2
    assert orjson.loads(frame["fault"].drop_nulls()[0])["kind"] == "outage"


def test_a_stall_is_noted_on_stderr_as_rendered_for_clients_without_keepalive(
    tmp_path: Path,
) -> None:
    """zombie-connection stalls connections: generate still writes the file, and says on
    stderr, one line per stall, what the file leaves out and why."""
    done = generate("zombie-connection", tmp_path / "zombie.parquet")
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert notes and all("(stall)" in line and "keepalive" in line for line in notes)
    clean = generate("energy-dashboard", tmp_path / "clean.parquet")
    assert clean.stderr == ""
