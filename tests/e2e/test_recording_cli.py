"""`sim inspect`, `sim diff` and `sim recover` as real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from tests.e2e.conftest import async_test
from tests.e2e.test_run_cli import sim_serving

SIM = [sys.executable, "-m", "simulator"]


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SIM, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rec")
    a, b = root / "a.parquet", root / "b.parquet"
    base = ["generate", "scenarios/energy-dashboard.toml", "--duration", "5m", "--out"]
    assert sim(*base, str(a)).returncode == 0
    assert sim(*base, str(b), "--seed", "9").returncode == 0
    return a, b


def test_inspect_summarises_streams_and_speaks_json(recordings: tuple[Path, Path]) -> None:
    """Plain output names every stream; --json is one parsable object with the same counts."""
    a, _ = recordings
    plain = sim("inspect", str(a))
    assert plain.returncode == 0
    assert "system_stats" in plain.stdout and "59" in plain.stdout
    data = json.loads(sim("inspect", str(a), "--json").stdout)
    assert isinstance(data, dict) and data


def test_diff_exits_0_for_equivalent_and_1_for_different(recordings: tuple[Path, Path]) -> None:
    """A file against itself is equivalent (0); two seeds differ (1) at message index 1."""
    a, b = recordings
    assert sim("diff", str(a), str(a)).returncode == 0
    different = sim("diff", str(a), str(b))
    assert different.returncode == 1
    assert "first difference at index 1" in different.stdout


def test_diff_of_unrelated_recordings_times_only_the_rows_they_share(
    recordings: tuple[Path, Path],
) -> None:
    """A generated session against the real sample share only connection 0's open row:
    the timing error is over that row, and says how many were not timed (it was over
    every position, "p50 17346 ms": the gap between two unrelated messages)."""
    a, _ = recordings
    result = sim("diff", str(a), "recordings/energy-dashboard-sample.parquet")
    assert result.returncode == 1, result.stderr
    [timing] = [line for line in result.stdout.splitlines() if "timing" in line]
    expected = r"  timing error over 1 row the same in both files \(\d+ that differ not timed\): .*"
    assert re.fullmatch(expected, timing), timing


def test_bad_files_and_nothing_to_recover_exit_2_with_one_line(tmp_path: Path) -> None:
    """A text file given as a recording, or a recover with no segments: exit 2, no traceback."""
    text = tmp_path / "notes.parquet"
    text.write_text("hello")
    for args in (("inspect", str(text)), ("recover", str(tmp_path / "none.parquet"))):
        done = sim(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_sim_replay_serves_a_recorded_session_again(tmp_path: Path) -> None:
    """`sim run --record`, then `sim replay --speed max`: a client sending the same ping
    receives the same frames, and SIGINT stops the replay with exit 0."""
    import asyncio
    import signal

    import websockets

    from simulator.net.server import serve
    from simulator.scenario import load_scenario

    out = tmp_path / "live.parquet"

    async def record() -> list[str]:
        got: list[str] = []
        scenario = load_scenario("scenarios/energy-dashboard.toml")
        async with serve(scenario, port=0, speed=200, record=out) as server:
            async with websockets.connect(server.url) as ws:
                await ws.send('{"type": "ping", "id": 7}')
                while len(got) < 8:
                    got.append(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
            for _ in range(100):
                if not server.clients:
                    break
                await asyncio.sleep(0.01)
        return got

    original = asyncio.run(record())
    proc = subprocess.Popen(
        [*SIM, "replay", str(out), "--port", "0", "--speed", "max", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")

        async def again() -> list[str]:
            got: list[str] = []
            async with websockets.connect(url) as ws:
                await ws.send('{"type": "ping", "id": 7}')
                while len(got) < 8:
                    got.append(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
            return got

        assert asyncio.run(again()) == original
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@async_test(timeout=60)
async def test_sim_replay_max_connections_refuses_the_one_past_it_with_503(
    recordings: tuple[Path, Path],
) -> None:
    args = ("replay", recordings[0], "--port", "0", "--free-run", "--loop", "--quiet")
    async with sim_serving(*args, "--max-connections", "1") as replayer:
        first = await connect(replayer.url, max_queue=None, proxy=None)
        with pytest.raises(InvalidStatus) as refused:
            await connect(replayer.url, proxy=None)
        assert refused.value.response.status_code == 503
        assert first.state is State.OPEN
        await first.close()
