"""What a new user who slips sees from `sim`, as a real process: an output that exists,
a port in use, a misspelt table, a recording given as a scenario, a scenario that is not
there, the address spelt two ways, a faults-only file to check. Each ends in exit 2 and
lines on stderr that say what to do, never a traceback (or works, where it should)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import async_test
from tests.e2e.test_cli_foundation import ROOT, assert_usage_error, sim
from tests.e2e.test_run_cli import sim_serving

DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
SAMPLE = ROOT / "recordings" / "energy-dashboard-sample.parquet"


@contextmanager
def port_in_use() -> Iterator[int]:
    """A port another socket listens on, for the duration of the block."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


# --- --force --------------------------------------------------------------------------


def test_generate_refuses_to_overwrite_without_force_and_overwrites_with_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "day.parquet"
    out.write_bytes(b"precious")
    refused = sim("generate", DASHBOARD, "--duration", "1m", "--out", out)
    assert_usage_error(refused, f"{out}: already exists; pass --force to overwrite it")
    assert out.read_bytes() == b"precious"
    forced = sim("generate", DASHBOARD, "--duration", "1m", "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes()[:4] == b"PAR1"


@pytest.mark.parametrize(
    "command",
    [
        ("run", DASHBOARD, "--port", "0", "--duration", "1s", "--speed", "50", "--record"),
        ("record", "--upstream", "ws://127.0.0.1:9", "--port", "0", "--out"),
        ("record", "--connect", "ws://127.0.0.1:9", "--out"),
    ],
    ids=["run --record", "record --upstream", "record --connect"],
)
def test_recording_commands_refuse_an_existing_output_before_serving(
    tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    """The output is checked before anything listens or connects: no URL line."""
    out = tmp_path / "session.parquet"
    out.write_bytes(b"precious")
    result = sim(*command, out)
    assert_usage_error(result, "already exists; pass --force to overwrite it")
    assert result.stdout == ""
    assert out.read_bytes() == b"precious"


def test_run_record_with_force_replaces_the_old_file_and_the_segments_left_over(
    tmp_path: Path,
) -> None:
    out = tmp_path / "session.parquet"
    out.write_bytes(b"old")
    leftovers = tmp_path / "session.parquet.segments"
    leftovers.mkdir()
    (leftovers / "000001.parquet").write_bytes(b"old segment")
    args = ("run", DASHBOARD, "--port", "0", "--duration", "2s", "--speed", "50", "--quiet")
    result = sim(*args, "--record", out, "--force")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"PAR1"
    assert not leftovers.exists()


def test_segments_of_a_killed_recorder_are_not_discarded_without_force(tmp_path: Path) -> None:
    out = tmp_path / "session.parquet"
    (tmp_path / "session.parquet.segments").mkdir()
    result = sim("run", DASHBOARD, "--port", "0", "--duration", "1s", "--record", out)
    assert_usage_error(result, f"`sim recover {out}` rebuilds the file, --force discards them")


# --- the address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("run", DASHBOARD, "--port"),
        ("replay", SAMPLE, "--port"),
        ("record", "--upstream", "ws://127.0.0.1:9", "--out", "{out}", "--port"),
    ],
    ids=["run", "replay", "record"],
)
def test_a_port_in_use_gives_one_line_suggesting_port_0(
    tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    args = [str(tmp_path / "out.parquet") if a == "{out}" else a for a in command]
    with port_in_use() as port:
        result = sim(*args, str(port))
    assert_usage_error(result, "address already in use", "--port 0 picks a free one")
    assert len(result.stderr.splitlines()) == 1, result.stderr


#: Each command that records, started where it cannot start: on a port in use ("{port}"),
#: or for --connect a feed nothing listens on; with its exit code then.
CANNOT_START = {
    "run --record": (("run", DASHBOARD, "--port", "{port}", "--record", "{out}"), 2),
    "run --workers --record": (
        ("run", DASHBOARD, "--port", "{port}", "--workers", "2", "--record", "{out}"),
        2,
    ),
    "record --upstream": (
        ("record", "--upstream", "ws://127.0.0.1:9", "--port", "{port}", "--out", "{out}"),
        2,
    ),
    "record --connect": (("record", "--connect", "ws://127.0.0.1:9", "--out", "{out}"), 1),
}


def cannot_start(command: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``CANNOT_START[command]`` recording to ``out``; its exit code checked."""
    args, code = CANNOT_START[command]
    with port_in_use() as port:
        fill = {"{port}": str(port), "{out}": str(out)}
        result = sim(*(fill.get(str(a), a) for a in args), *extra)
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    return result


@pytest.mark.parametrize("command", list(CANNOT_START))
def test_a_recorder_that_cannot_start_writes_nothing(tmp_path: Path, command: str) -> None:
    """No empty recording (nor folder) is left to refuse the next attempt."""
    cannot_start(command, tmp_path / "session.parquet")
    assert list(tmp_path.iterdir()) == []
    again = cannot_start(command, tmp_path / "session.parquet")
    assert "--force" not in again.stderr  # not refused as a recording that exists


@pytest.mark.parametrize("command", ["run --record", "record --upstream", "record --connect"])
def test_a_recorder_that_cannot_start_keeps_the_recording_force_would_replace(
    tmp_path: Path, command: str
) -> None:
    """`--force` replaces the old recording only once the new one can be written: the
    server listens, or the feed answers."""
    old = tmp_path / "old.parquet"
    old.write_bytes(b"the previous session")
    cannot_start(command, old, "--force")
    assert old.read_bytes() == b"the previous session"
    assert list(tmp_path.iterdir()) == [old]


@pytest.mark.parametrize(
    "command",
    [
        ("run", DASHBOARD),
        ("replay", SAMPLE),
        ("record", "--upstream", "ws://127.0.0.1:9", "--out", "{out}"),
    ],
    ids=["run", "replay", "record"],
)
@async_test(timeout=60)
async def test_listen_host_port_is_the_same_as_host_and_port(
    tmp_path: Path, command: tuple[str | Path, ...]
) -> None:
    """`--listen 127.0.0.1:0` serves on a free port of 127.0.0.1, on every command that
    listens."""
    args = [str(tmp_path / "out.parquet") if a == "{out}" else a for a in command]
    async with sim_serving(*args, "--listen", "127.0.0.1:0", "--quiet") as running:
        assert running.url.startswith("ws://127.0.0.1:")
        assert not running.url.endswith(":0")


@pytest.mark.parametrize("spelling", [("--host", "127.0.0.1"), ("--port", "0")])
def test_listen_and_host_or_port_together_are_refused(spelling: tuple[str, str]) -> None:
    result = sim("run", DASHBOARD, "--listen", "127.0.0.1:0", *spelling)
    assert_usage_error(result, f"--listen and {spelling[0]}: give the address one way")


def run_make(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``make --no-print-directory ARGS`` in the checkout (the test is skipped without
    make), its output captured."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # Run from `make test`, a make of its own: its variables would make this one print
    # "Entering directory" lines and pass on its flags.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        [make, "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_make_run_serves_on_the_port_given_as_port() -> None:
    """`make run PORT=N` passes N to `sim run --port` (shown with make -n, run nothing)."""
    shown = run_make("-n", "run", "PORT=4321", timeout=30)
    assert shown.returncode == 0, shown.stderr
    last = shown.stdout.strip().splitlines()[-1]
    assert last.endswith("sim run scenarios/energy-dashboard.toml --port 4321")


def test_make_run_prints_the_url_first(tmp_path: Path) -> None:
    """`make run PORT=0` (.venv set up): the first line is sim's URL, as the README says,
    not make's echo of the command. The venv's `sim` is this checkout's, stopping at
    once."""
    venv = tmp_path / "bin"
    venv.mkdir()
    (venv / "sim").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m simulator "$@" --duration 1s --quiet\n'
    )
    (venv / "sim").chmod(0o755)
    stamp = tmp_path / "installed"  # newer than pyproject.toml: nothing to set up
    stamp.touch()
    ran = run_make("run", "PORT=0", f"BIN={venv}", f"STAMP={stamp}", timeout=60)
    assert ran.returncode == 0, ran.stderr
    first = ran.stdout.splitlines()[0]
    assert first.startswith("ws://127.0.0.1:") and not first.endswith(":0"), ran.stdout


# --- the scenario argument ------------------------------------------------------------


def test_a_misspelt_stream_table_gets_a_did_you_mean_before_the_toml_error(
    tmp_path: Path,
) -> None:
    """`[[streams]]` followed by `[stream.fields]` is not valid TOML ("Cannot overwrite a
    value" or "Cannot declare ... twice"); the misspelling is named first, at its line."""
    text = DASHBOARD.read_text().replace("[[stream]]", "[[streams]]", 1)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    line = text.splitlines().index("[[streams]]") + 1
    result = sim("validate", bad)
    assert_usage_error(result)
    first, second = result.stderr.splitlines()
    assert first == f"{bad}:{line}: [[streams]]: unknown table; did you mean [[stream]]?"
    assert second.startswith(f"{bad}:") and "invalid TOML" in second


@pytest.mark.parametrize(("written", "meant"), [("[[faults]]", "fault"), ("[servers]", "server")])
def test_other_misspelt_top_level_tables_get_a_did_you_mean(
    tmp_path: Path, written: str, meant: str
) -> None:
    extra = {"[[faults]]": 'name = "x"\nkind = "drop"\n', "[servers]": 'mode = "broadcast"\n'}
    bad = tmp_path / "bad.toml"
    bad.write_text(DASHBOARD.read_text() + f"\n{written}\n{extra[written]}")
    result = sim("validate", bad)
    assert_usage_error(result, f"unknown table; did you mean '{meant}'?")


@pytest.mark.parametrize(
    "command",
    [
        ("run", "{sample}"),
        ("validate", "{sample}"),
        ("generate", "{sample}", "--out", "never.parquet"),
        ("plan", "{sample}"),
        ("run", DASHBOARD, "--faults", "{sample}"),
        ("plan", DASHBOARD, "--faults", "{sample}"),
    ],
    ids=["run", "validate", "generate", "plan", "run --faults", "plan --faults"],
)
def test_a_recording_given_as_a_scenario_is_one_line_pointing_at_sim_replay(
    command: tuple[str | Path, ...],
) -> None:
    """One line that says what the file is, not the reader's "not a text file" first."""
    result = sim(*(SAMPLE if a == "{sample}" else a for a in command))
    assert_usage_error(result)
    assert result.stderr.splitlines() == [
        f"{SAMPLE} is a recording, not a scenario: `sim replay {SAMPLE}` serves it, "
        f"`sim inspect {SAMPLE}` summarises it"
    ]
    assert not Path("never.parquet").exists()


@pytest.mark.parametrize("command", ["replay", "inspect"])
def test_a_scenario_given_as_a_recording_points_at_sim_run(command: str) -> None:
    extra = ["--port", "0"] if command == "replay" else []
    result = sim(command, DASHBOARD, *extra)
    assert_usage_error(result, f"{DASHBOARD}: not a Parquet file", f"`sim run {DASHBOARD}`")
    assert result.stdout == ""


def test_a_missing_scenario_lists_the_scenarios_beside_it_with_the_closest_first() -> None:
    missing = ROOT / "scenarios" / "energy-dashbord.toml"
    result = sim("run", missing)
    assert_usage_error(result, f"{missing}: cannot read: No such file or directory")
    hint = result.stderr.splitlines()[-1]
    assert hint.startswith(f"did you mean {ROOT / 'scenarios' / 'energy-dashboard.toml'}? ")
    for scenario in sorted((ROOT / "scenarios").glob("*.toml")):
        assert scenario.name in hint


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_scenario_suggests_only_a_close_name(tmp_path: Path, command: str) -> None:
    """The folder's path and `.toml` made any two names in it look alike: `missing.toml`
    got "did you mean expr2.toml?"."""
    (tmp_path / "expr2.toml").write_text(DASHBOARD.read_text())
    result = sim(command, tmp_path / "missing.toml")
    assert_usage_error(result)
    assert result.stderr.splitlines()[-1] == f"scenarios in {tmp_path}/: expr2.toml"
    slip = sim(command, tmp_path / "exrp2.toml")
    assert slip.stderr.splitlines()[-1].startswith(f"did you mean {tmp_path / 'expr2.toml'}? ")


def test_a_missing_scenario_in_a_folder_without_any_lists_those_in_scenarios(
    tmp_path: Path,
) -> None:
    """Run from a checkout: a name with no folder looks in ./scenarios/."""
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "dashboard.toml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert_usage_error(result, "dashboard.toml: cannot read", "scenarios in scenarios/: ")
    assert "energy-dashboard.toml" in result.stderr.splitlines()[-1]


# --- sim validate of faults -----------------------------------------------------------

FAULTS_ONLY = """\
[scenario]
seed = 7

[[fault]]
name = "lossy"
kind = "drop"
probability = 0.1
streams = ["prices"]

[[fault]]
name = "restart"
kind = "disconnect"
at = "30s"
code = 1012
"""


def test_validate_accepts_a_faults_only_file_and_lists_its_faults(tmp_path: Path) -> None:
    """A file with only [[fault]] tables (what --faults takes) is valid on its own; the
    streams it names are checked only against the recording or scenario it is used on."""
    faults = tmp_path / "faults.toml"
    faults.write_text(FAULTS_ONLY)
    result = sim("validate", faults)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{faults}: ok: faults file (for --faults), 2 faults, seed 7",
        "  fault 'lossy'    drop  always  streams=['prices']  probability=0.1",
        "  fault 'restart'  disconnect  code=1012  at 30s",
    ]


def test_validate_of_a_faults_only_file_names_file_line_and_key_of_a_mistake(
    tmp_path: Path,
) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text(FAULTS_ONLY.replace("probability = 0.1", "probability = 1.5"))
    result = sim("validate", faults)
    assert_usage_error(result, f"{faults}:7: fault[0].probability = 1.5: must be between 0 and 1")


def test_learn_that_fails_keeps_the_file_force_would_replace(tmp_path: Path) -> None:
    keep = tmp_path / "keep.toml"
    keep.write_text("# mine\n")
    result = sim("learn", str(tmp_path / "missing.parquet"), "-o", str(keep), "--force")
    assert result.returncode == 2
    assert keep.read_text() == "# mine\n"
