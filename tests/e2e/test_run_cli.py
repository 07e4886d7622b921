"""`sim run` as a real process: the URL line, signals, --duration, logs, usage errors.

Each process runs under a hard timeout and is killed in a ``finally`` if it is still
alive; nothing asserts how fast it starts or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import DASHBOARD, async_test, client, close_code, receive

START_TIMEOUT_S = 20  # interpreter start-up and imports, on a slow machine
ENV = {**os.environ, "NO_COLOR": "1"}


@dataclass
class Running:
    process: asyncio.subprocess.Process
    url: str

    async def finish(self) -> tuple[int, str, str]:
        """Wait for the process to exit; its exit code and the rest of stdout and stderr."""
        assert self.process.stdout is not None and self.process.stderr is not None
        out, err = await asyncio.gather(self.process.stdout.read(), self.process.stderr.read())
        code = await self.process.wait()
        return code, out.decode(), err.decode()


def sim_run(*args: str | Path) -> contextlib.AbstractAsyncContextManager[Running]:
    """Start ``sim run`` with ``args``; yield once it has printed its URL line."""
    return sim_serving("run", *args)


@contextlib.asynccontextmanager
async def sim_serving(*args: str | Path) -> AsyncIterator[Running]:
    """Start ``sim ARGS...`` (a command that prints a URL line first); yield once it has."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            first = (await process.stdout.readline()).decode()
        yield Running(process, first.rstrip("\n"))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def sim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@async_test(timeout=60)
async def test_signal_closes_clients_with_1001_and_exits_0(sig: signal.Signals) -> None:
    """The first stdout line is the URL; a signal closes clients with 1001 and exits 0."""
    async with sim_run(DASHBOARD, "--port", "0", "--speed", "50") as sim:
        assert sim.url.startswith("ws://127.0.0.1:")
        ws = await client(sim.url)
        first = await receive(ws)
        assert first["type"] == "system_stats"  # every 5 s: the first at 0.1 s of wall time
        sim.process.send_signal(sig)
        assert await close_code(ws) == 1001
        code, _, err = await sim.finish()
    assert code == 0, err
    assert "Traceback" not in err


@async_test(timeout=60)
async def test_duration_ends_the_run_with_exit_0() -> None:
    """--duration 2s at --speed 10 stops by itself after 0.2 s of wall time, exit 0."""
    async with sim_run(DASHBOARD, "--port", "0", "--duration", "2s", "--speed", "10") as sim:
        assert sim.url.startswith("ws://127.0.0.1:")
        code, out, err = await sim.finish()
    assert code == 0, err
    assert out == ""  # nothing after the URL line
    assert "Traceback" not in err
    assert "stopping" in err


@async_test(timeout=60)
async def test_json_log_format_writes_one_event_per_stderr_line() -> None:
    """--log-format json logs listening, connected and disconnected as JSON lines."""
    async with sim_run(DASHBOARD, "--port", "0", "--speed", "50", "--log-format", "json") as sim:
        ws = await client(sim.url)
        await receive(ws)
        await ws.close()
        assert sim.process.stderr is not None
        lines: list[str] = []  # read up to the disconnect, so it is logged before the signal
        while not lines or '"disconnected"' not in lines[-1]:
            line = (await sim.process.stderr.readline()).decode()
            assert line, f"sim run exited early: {lines}"
            lines.append(line)
        sim.process.send_signal(signal.SIGINT)
        code, _, err = await sim.finish()
    assert code == 0, err
    events = [json.loads(line) for line in [*lines, *err.splitlines()]]
    kinds = [e["event"] for e in events]
    assert kinds == ["listening", "connected", "disconnected", "stopping"], kinds
    listening, connected, disconnected, _ = events
    assert listening["url"] == sim.url
    assert listening["mode"] == "broadcast"
    assert connected["conn"] == disconnected["conn"] == 0
    assert disconnected["code"] == 1000
    assert all(isinstance(e["time"], float) for e in events)


def test_bad_scenario_exits_2_with_one_line(tmp_path: Path) -> None:
    """A scenario with a mistake exits 2 with one line naming the file, line and key."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "bad"\n\n[[stream]]\nname = "tick"\nevery = 5\n')
    result = sim("run", bad, "--port", "0")
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{bad}:6: stream[0].every = 5: ")


def test_port_in_use_exits_2_with_a_clear_message() -> None:
    """Serving on a port another socket listens on exits 2 with one line, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sim("run", DASHBOARD, "--port", str(port))
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sim: cannot serve: ")
    assert "address already in use" in lines[0]
    assert str(port) in lines[0]


def test_run_on_a_terminal_shows_the_live_status_and_stops_on_sigint() -> None:
    """With a terminal on stdout `sim run` draws the status table (streams, counts) and
    still exits 0 on SIGINT."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            "scenarios/energy-dashboard.toml",
            "--port",
            "0",
            "--speed",
            "50",
        ],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"system_stats" not in seen or b"connections" not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert seen.startswith(b"ws://127.0.0.1:")
    assert b"energy_market" in seen and b"lateness" in seen
