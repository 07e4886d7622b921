"""`sim validate` and `sim generate` as real processes: exit codes, messages, output files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from simulator.core.live import LiveState, fill
from simulator.core.timeline import Timeline
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
S = 1_000_000_000
TEN_MINUTES = 600 * S
DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
# Data columns of a recording; the file metadata (created_at) may differ between runs.
ROWS = ["session", "conn", "seq", "t_ns", "wall_ns", "sender", "kind", "stream", "payload"]

PER_CONNECTION = """\
[scenario]
name = "per-conn"
seed = 5

[server]
mode = "per-connection"

[[stream]]
name = "tick"
every = { min = "1s", max = "3s" }
[stream.fields]
x = { dist = "normal", mean = 0, std = 1, round = 3 }
id = { dist = "uuid" }
"""


def sim(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def generate(out: Path, *args: str | Path, scenario: Path = DASHBOARD) -> pl.DataFrame:
    result = sim("generate", scenario, "--duration", "10m", "--out", out, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    frame = pl.read_parquet(out)
    assert result.stdout.strip() == f"wrote {frame.height} rows to {out}"
    return frame


def texts(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("kind") == "text")


def messages(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [json.loads(p) for p in texts(frame)["payload"]]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """energy-dashboard, 10 min, defaults: seed 42, one connection, epoch 2026-01-01."""
    return generate(tmp_path_factory.mktemp("gen") / "dashboard.parquet")


# --- sim validate ----------------------------------------------------------------------


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_validate_accepts_every_shipped_scenario_with_a_line_per_stream_and_fault(
    path: Path,
) -> None:
    """Each file in scenarios/ is valid; the summary names every stream with its mean rate,
    then every fault with its kind."""
    result = sim("validate", path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, *lines = result.stdout.splitlines()
    assert header.startswith(f"{path}: ok: ")
    scenario = load_scenario(path)  # a file may extend another
    names = [s.name for s in scenario.streams]
    assert len(lines) == len(names) + len(scenario.faults)
    for line, name in zip(lines, names, strict=False):
        assert line.split()[0] == name
        assert line.endswith(" msg/s")
    for line, fault in zip(lines[len(names) :], scenario.faults, strict=True):
        assert line.split()[:3] == ["fault", repr(fault.name), fault.kind.value]


def test_validate_summary_gives_the_declared_mean_rates() -> None:
    """Fixed intervals give 1/interval; a 15-30 s uniform interval gives 1/22.5 s."""
    lines = sim("validate", DASHBOARD).stdout.splitlines()
    rates = {line.split()[0]: line.split()[-2] for line in lines[1:]}
    assert rates == {
        "system_stats": "0.2",
        "dashboard_stats": "0.1",
        "energy_market": "0.143",
        "notification": "0.0444",
        "transaction": "0.1",
    }
    assert lines[0].endswith("0.587 msg/s in all")


BROKEN = [
    (
        '[scenario]\nname = "x"\n\n[[stream]]\nname = "a"\nevery = "5s"\n[stream.fields]\n'
        'cpu = { dist = "normal", mean = 1, std = -3 }\n',
        ":8: stream[0].fields.cpu.std = -3: must be > 0",
    ),
    (
        '[scenario]\nname = "x"\n[[stream]]\nname = "a"\nevry = "5s"\n',
        ":5: stream[0].evry: unknown key; did you mean 'every'?",
    ),
    ('[scenario\nname = "x"\n', ":1: invalid TOML: "),
    (
        '[scenario]\nname = "x"\n[[stream]]\nname = "a"\nevery = "5"\n',
        ":5: stream[0].every = ",
    ),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_validate_rejects_a_broken_file_with_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """A mistake is one `file:line: path...` line on stderr, exit 2, no traceback."""
    path = tmp_path / "broken.toml"
    path.write_text(text)
    result = sim("validate", path)
    assert_usage_error(result)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}{message}")


def test_validate_reports_every_file_good_and_bad_and_exits_2(tmp_path: Path) -> None:
    """A good file's summary still prints when another file is bad; the exit code is 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[[stream]]\nname = "a"\nevry = "5s"\n')
    result = sim("validate", DASHBOARD, bad)
    assert_usage_error(result, f"{bad}:5: stream[0].evry: unknown key")
    assert result.stdout.startswith(f"{DASHBOARD}: ok: 'energy-dashboard'")
    assert "system_stats" in result.stdout


def test_validate_of_a_missing_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = sim("validate", missing)
    assert_usage_error(result)
    assert result.stderr.splitlines()[0] == f"{missing}: cannot read: No such file or directory"


def test_console_script_runs_the_same_command() -> None:
    """The installed `sim` entry point next to the interpreter is the same CLI."""
    exe = shutil.which("sim", path=str(Path(sys.executable).parent))
    assert exe is not None
    result = subprocess.run(
        [exe, "validate", DASHBOARD], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == sim("validate", DASHBOARD).stdout


# --- sim generate ----------------------------------------------------------------------


def test_generate_twice_gives_identical_rows(dashboard: pl.DataFrame, tmp_path: Path) -> None:
    """Same scenario, seed and duration: the same rows, byte for byte."""
    assert_frame_equal(generate(tmp_path / "again.parquet").select(ROWS), dashboard.select(ROWS))


def test_generate_matches_the_timeline_rendered_directly(dashboard: pl.DataFrame) -> None:
    """The file holds exactly what Timeline renders: same times, streams and payload
    bytes, the live values filled in as `sim run` fills them for one client."""
    scenario = load_scenario(DASHBOARD)
    batch = Timeline(scenario).take_until(TEN_MINUTES)
    rows = texts(dashboard)
    filled = [
        fill(p, LiveState(0, 1, k, t))
        for k, (p, t) in enumerate(zip(batch.payloads, batch.t_ns.tolist(), strict=True))
    ]
    assert rows["payload"].to_list() == filled
    assert rows["t_ns"].to_list() == batch.t_ns.tolist()
    assert rows["stream"].to_list() == [scenario.streams[i].name for i in batch.stream.tolist()]


def test_generate_rows_follow_the_recording_layout(dashboard: pl.DataFrame) -> None:
    """One open row at time 0, then text rows by time; seq counts rows from 0."""
    assert dashboard["seq"].to_list() == list(range(dashboard.height))
    first = dashboard.row(0, named=True)
    assert (first["kind"], first["conn"], first["t_ns"], first["payload"]) == ("open", 0, 0, None)
    rows = texts(dashboard)
    assert rows.height == dashboard.height - 1
    assert rows["t_ns"].is_sorted()
    assert (rows["wall_ns"] - rows["t_ns"]).unique().to_list() == [
        int(DEFAULT_EPOCH.timestamp()) * S
    ]


def test_generate_sends_each_stream_at_its_declared_interval(dashboard: pl.DataFrame) -> None:
    """system_stats every 5 s: at 5 s, 10 s, ... 595 s (the 10 min end is exclusive),
    seq 1..119, timestamps every 5 s from the default epoch."""
    stats = texts(dashboard).filter(pl.col("stream") == "system_stats")
    payloads = [json.loads(p) for p in stats["payload"]]
    assert stats["t_ns"].to_list() == [k * 5 * S for k in range(1, 120)]
    assert [p["seq"] for p in payloads] == list(range(1, 120))
    assert [p["timestamp"] for p in payloads] == [
        (DEFAULT_EPOCH + timedelta(seconds=5 * k)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for k in range(1, 120)
    ]
    counts = dict(texts(dashboard).group_by("stream").len().iter_rows())
    assert counts["dashboard_stats"] == 59  # every 10 s
    assert counts["energy_market"] == 85  # every 7 s: 7 s .. 595 s
    # Random intervals: 15-30 s and 5-15 s, means 22.5 s and 10 s.
    assert 600 / 30 <= counts["notification"] <= 600 / 15
    assert 600 / 15 <= counts["transaction"] <= 600 / 5


def test_generate_with_another_seed_changes_payloads_not_fixed_times(
    dashboard: pl.DataFrame, tmp_path: Path
) -> None:
    other = generate(tmp_path / "seed.parquet", "--seed", "43")
    fixed = pl.col("stream") == "system_stats"
    a, b = texts(dashboard).filter(fixed), texts(other).filter(fixed)
    assert a["t_ns"].to_list() == b["t_ns"].to_list()
    assert a["payload"].to_list() != b["payload"].to_list()
    assert other["session"][0] == "generate:energy-dashboard:43"


def test_generate_epoch_shifts_timestamps_and_nothing_else(
    dashboard: pl.DataFrame, tmp_path: Path
) -> None:
    """--epoch moves wall times and the timestamps in payloads; t_ns and data are unchanged."""
    epoch = datetime(2030, 1, 1, tzinfo=UTC)
    shifted = generate(tmp_path / "epoch.parquet", "--epoch", "2030-01-01T00:00:00Z")
    shift = int((epoch - DEFAULT_EPOCH).total_seconds()) * S
    assert shifted["t_ns"].to_list() == dashboard["t_ns"].to_list()
    assert shifted["wall_ns"].to_list() == [w + shift for w in dashboard["wall_ns"]]
    before, after = messages(dashboard), messages(shifted)
    assert after[0]["timestamp"] == "2030-01-01T00:00:05.000Z"
    for m in (*before, *after):
        del m["timestamp"]
    assert before == after


def test_generate_broadcast_sends_every_message_to_every_connection(
    dashboard: pl.DataFrame, tmp_path: Path
) -> None:
    """--connections 3 in broadcast mode: three open rows, then each message three times
    (the live active_connections of system_stats says 3 where one client is told 1)."""
    three = generate(tmp_path / "three.parquet", "--connections", "3")
    opens = three.filter(pl.col("kind") == "open")
    assert opens.select("conn", "seq", "t_ns").rows() == [(0, 0, 0), (1, 1, 0), (2, 2, 0)]
    rows = texts(three)
    assert rows.height == 3 * texts(dashboard).height
    single = texts(dashboard)["payload"].to_list()
    told = [p.replace(b'"active_connections":1}', b'"active_connections":3}') for p in single]
    assert told != single
    for conn in range(3):
        assert rows.filter(pl.col("conn") == conn)["payload"].to_list() == told
    assert rows["conn"].to_list()[:6] == [0, 1, 2, 0, 1, 2]


def test_generate_per_connection_gives_each_connection_its_own_timeline(tmp_path: Path) -> None:
    """per-connection mode: each connection draws its own times and values."""
    scenario = tmp_path / "per-conn.toml"
    scenario.write_text(PER_CONNECTION)
    frame = generate(tmp_path / "per.parquet", "--connections", "3", scenario=scenario)
    rows = texts(frame)
    assert rows["t_ns"].is_sorted()
    per_conn = [rows.filter(pl.col("conn") == c)["payload"].to_list() for c in range(3)]
    assert all(len(p) > 100 for p in per_conn)
    assert len({p[0] for p in per_conn}) == 3
    assert not set(per_conn[0]) & set(per_conn[1])
    # Connection i is the timeline of scope i, rendered on its own.
    direct = Timeline(load_scenario(scenario), scope=1).take_until(TEN_MINUTES).payloads
    assert per_conn[1] == direct


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "abc"], "Invalid value for '--duration': 'abc' is not a duration like"),
        (["--duration", "0s"], "Invalid value for '--duration': '0s': must be > 0"),
        (["--epoch", "2030-01-01T00:00:00"], "needs a UTC offset"),
        (["--connections", "0"], "Invalid value for '--connections'"),
    ],
)
def test_generate_rejects_bad_arguments_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out.parquet"
    result = sim("generate", DASHBOARD, "--duration", "1m", "--out", out, *args)
    assert_usage_error(result, message)
    assert not out.exists()


def test_generate_to_an_unwritable_path_exits_2_naming_it() -> None:
    result = sim("generate", DASHBOARD, "--duration", "1m", "--out", "/proc/x.parquet")
    assert_usage_error(result)
    (line,) = result.stderr.splitlines()
    assert re.match(r"/proc/x\.parquet: cannot write: ", line), line


def test_generate_of_a_broken_scenario_exits_2_with_its_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[[stream]]\nname = "a"\nevry = "5s"\n')
    result = sim("generate", bad, "--duration", "1m", "--out", tmp_path / "out.parquet")
    assert_usage_error(result, f"{bad}:5: stream[0].evry: unknown key")
