"""Faults as a user of the CLI meets them, with real `sim run` and `sim replay`
processes and real clients: ``--faults`` on `sim run`, ``Retry-After`` at ``--speed``,
``respond = "close"``, and scenarios that ``extends`` another.

Each outage below starts at 0 s and lasts an hour of scenario time, so a client that
connects after the URL line is refused however slow the machine is.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import DASHBOARD, ROOT, async_test, client
from tests.e2e.test_replay import opened, write
from tests.e2e.test_replay_faults import pushes
from tests.e2e.test_run_cli import ENV, sim_run, sim_serving

FLAKY = "scenarios/flaky-network.toml"
OUTAGE_10S = """
    [[fault]]
    name = "down"
    kind = "outage"
    at = "0s"
    duration = "1h"
    retry_after = "10s"
    """


def write_toml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def sim(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        cwd=cwd,
    )


async def refusal_of(url: str) -> tuple[int, str | None]:
    """The status and ``Retry-After`` of a refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        await client(url)
    response = refused.value.response
    return response.status_code, response.headers.get("Retry-After")


async def close_of(url: str) -> tuple[int, str]:
    """Connect (the handshake succeeds) and return the close code and reason the server
    closed with before sending anything."""
    ws = await client(url)
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    rcvd = closed.value.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


# ----------------------------------------------------------------------------- Retry-After


@async_test(timeout=60)
async def test_run_at_speed_20_tells_a_refused_client_retry_after_1(tmp_path: Path) -> None:
    """`sim run energy-dashboard.toml --faults F --speed 20`: the outage's 10 s of
    scenario time is 0.5 s of wall time, so a real client is told ``Retry-After: 1``."""
    faults = write_toml(tmp_path / "outage.toml", OUTAGE_10S)
    args = (DASHBOARD, "--faults", faults, "--speed", "20", "--port", "0", "--quiet")
    async with sim_run(*args) as running:
        assert await refusal_of(running.url) == (503, "1")


@async_test(timeout=60)
async def test_run_at_speed_1_tells_the_retry_after_of_the_file(tmp_path: Path) -> None:
    """At 1x the client is told the file's 10 s, unchanged."""
    faults = write_toml(tmp_path / "outage.toml", OUTAGE_10S)
    async with sim_run(DASHBOARD, "--faults", faults, "--port", "0", "--quiet") as running:
        assert await refusal_of(running.url) == (503, "10")


@async_test(timeout=60)
async def test_replay_at_speed_20_with_faults_tells_retry_after_1(tmp_path: Path) -> None:
    """`sim replay --speed 20 --faults F`: the same outage, the same ``Retry-After: 1``."""
    recording = write(tmp_path / "r.parquet", [opened(0), *pushes(0, 5, "a")])
    faults = write_toml(tmp_path / "outage.toml", OUTAGE_10S)
    args = ("replay", recording, "--faults", faults, "--speed", "20", "--port", "0", "--quiet")
    async with sim_serving(*args) as running:
        assert await refusal_of(running.url) == (503, "1")


# ----------------------------------------------------------------------------- respond = close


@async_test(timeout=60)
async def test_run_outage_with_respond_close_closes_with_1013_and_retry_after(
    tmp_path: Path,
) -> None:
    """``respond = "close"``: a real client's handshake succeeds, then it is closed
    with 1013 and ``retry-after=1`` (10 s at 20x), what a browser can read."""
    faults = write_toml(tmp_path / "outage.toml", OUTAGE_10S + 'respond = "close"\n')
    args = (DASHBOARD, "--faults", faults, "--speed", "20", "--port", "0", "--quiet")
    async with sim_run(*args) as running:
        assert await close_of(running.url) == (1013, "retry-after=1")


@async_test(timeout=60)
async def test_run_auth_reject_with_respond_close_closes_with_4401(tmp_path: Path) -> None:
    """A 401 reject with ``respond = "close"`` closes with 4401 ``Unauthorized``."""
    faults = write_toml(
        tmp_path / "auth.toml",
        """
        [[fault]]
        kind = "reject"
        status = 401
        respond = "close"
        """,
    )
    async with sim_run(DASHBOARD, "--faults", faults, "--port", "0", "--quiet") as running:
        assert await close_of(running.url) == (4401, "Unauthorized")


# ----------------------------------------------------------------------------- --faults


def test_run_faults_file_errors_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    """A fault of the --faults file named like one of the scenario's, and one naming a
    stream the scenario lacks: exit 2, one line each, no traceback."""
    faults = write_toml(
        tmp_path / "f.toml",
        """
        [[fault]]
        name = "server-down"
        kind = "reset"

        [[fault]]
        kind = "drop"
        streams = ["trades"]
        """,
    )
    result = sim("run", "scenarios/outage.toml", "--faults", faults, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{faults}:8: fault[1].streams[0] = 'trades': unknown stream (allowed: system_stats,"
        " dashboard_stats, energy_market, notification, transaction)",
    ]
    faults.write_text(textwrap.dedent(faults.read_text()).split("\n\n")[0] + "\n")
    result = sim("run", "scenarios/outage.toml", "--faults", faults, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{faults}:3: fault[0].name = 'server-down': already the name of a fault of"
        " scenarios/outage.toml: fault names must be unique (a name seeds the fault's draws);"
        " give this one a name of its own",
    ]


@pytest.mark.parametrize("shape", [(), ("--flat",)], ids=["timeline", "flat"])
def test_plan_with_faults_is_the_plan_of_the_scenario_that_has_them(shape: tuple[str, ...]) -> None:
    """`sim plan SCENARIO --faults FILE` previews what `sim run SCENARIO --faults FILE`
    carries out: flaky-network.toml is the dashboard (same seed) with its faults, so the
    dashboard with them added plans the same (but for the name on the first line)."""
    args = ("--duration", "2m", "--connections", "3", *shape)
    added = sim("plan", "scenarios/energy-dashboard.toml", "--faults", FLAKY, *args)
    own = sim("plan", FLAKY, *args)
    assert added.returncode == 0 and own.returncode == 0, (added.stderr, own.stderr)
    assert "burst" in own.stdout  # flaky-network's faults, not an empty plan
    assert added.stdout.splitlines()[1:] == own.stdout.splitlines()[1:]
    bad = sim("plan", "scenarios/energy-dashboard.toml", "--faults", "missing.toml")
    assert bad.returncode == 2 and bad.stderr.startswith("missing.toml: cannot read")


# ----------------------------------------------------------------------------- extends


def test_a_scenario_extending_another_validates_and_plans_its_faults(tmp_path: Path) -> None:
    """A file that extends the dashboard, relative to itself, overriding the seed and
    adding a fault: `sim validate` shows the dashboard's five streams and the new seed,
    `sim plan` its fault."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "dashboard.toml").write_text(DASHBOARD.read_text())
    derived = write_toml(
        tmp_path / "kick.toml",
        """
        [scenario]
        extends = "base/dashboard.toml"
        name = "kick"
        seed = 7

        [[fault]]
        name = "kick"
        kind = "disconnect"
        at = "3s"
        code = 4000
        """,
    )
    validated = sim("validate", derived)
    assert validated.returncode == 0, validated.stderr
    assert f"{derived}: ok: 'kick', 5 stream(s), broadcast, seed 7" in validated.stdout
    planned = sim("plan", derived, "--duration", "10s", "--connections", "1")
    assert planned.returncode == 0, planned.stderr
    assert "3s  conn 0  disconnect  'kick'  code=4000" in planned.stdout


def test_extends_in_a_circle_or_of_a_missing_file_exits_2_naming_the_line(
    tmp_path: Path,
) -> None:
    write_toml(tmp_path / "a.toml", '[scenario]\nname = "a"\nextends = "b.toml"\n')
    write_toml(tmp_path / "b.toml", '# b\n[scenario]\nextends = "a.toml"\n')
    write_toml(tmp_path / "c.toml", '[scenario]\nname = "c"\nextends = "gone.toml"\n')
    circle = sim("validate", "a.toml", cwd=tmp_path)
    assert circle.returncode == 2
    assert circle.stderr.splitlines() == [
        "b.toml:3: scenario.extends = 'a.toml': extends itself: a.toml -> b.toml -> a.toml"
    ]
    missing = sim("validate", "c.toml", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "c.toml:3: scenario.extends = 'gone.toml': cannot read gone.toml: No such file or directory"
    ]
