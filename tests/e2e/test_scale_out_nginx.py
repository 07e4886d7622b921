"""docs/examples/nginx-scale-out.conf, run for real: nginx on loopback balancing
WebSocket clients over two `sim run` instances ("hosts") that share scenario, seed and
epoch. Every frame a client gets through nginx, whichever host served it, is the frame
of the deterministic timeline with that stream and seq, byte for byte.

nginx comes from Debian (`make test` installs it as root). Without it the test is
skipped, saying so; in CI (CI=true) it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulator.core.timeline import Timeline
from simulator.scenario import load_scenario
from tests.e2e.conftest import (
    DASHBOARD,
    EPOCH,
    EPOCH_NS,
    S,
    async_test,
    client,
    without_live_count,
)
from tests.e2e.test_run_cli import Running, sim_run

CONFIG = Path(__file__).parents[2] / "docs" / "examples" / "nginx-scale-out.conf"
SEED = 7
CLIENTS = 8
FRAMES = 20
START_TIMEOUT_S = 20


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        why = "nginx is not installed (`apt-get install nginx`, or `make test` as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def nginx(config: Path, prefix: Path, port: int) -> AsyncIterator[None]:
    """nginx with ``config`` in the foreground, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        nginx_binary(),
        "-p",
        str(prefix),
        "-c",
        str(config),
        "-e",
        "stderr",
        "-g",
        f"daemon off; pid {prefix / 'nginx.pid'};",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise AssertionError((await process.stderr.read()).decode())
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGQUIT)  # graceful: close, then exit
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def port_of(running: Running) -> int:
    return int(running.url.rsplit(":", 1)[1])


async def connections_logged(running: Running) -> int:
    """How many `connected` events ``running`` (stopped by now) logged."""
    _, _, err = await running.finish()
    return sum(json.loads(line)["event"] == "connected" for line in err.splitlines() if line)


@async_test(timeout=120)
async def test_nginx_spreads_clients_over_hosts_that_serve_the_same_feed(tmp_path: Path) -> None:
    nginx_binary()
    args = ("--port", "0", "--seed", str(SEED), "--epoch", EPOCH.isoformat(), "--speed", "20")
    host = (*args, "--log-format", "json")
    async with sim_run(DASHBOARD, *host) as a, sim_run(DASHBOARD, *host) as b:
        port = free_port()
        text = CONFIG.read_text()
        for old, new in (
            ("127.0.0.1:3002", f"127.0.0.1:{port_of(a)}"),
            ("127.0.0.1:3012", f"127.0.0.1:{port_of(b)}"),
            ("127.0.0.1:8080", f"127.0.0.1:{port}"),
        ):
            assert old in text
            text = text.replace(old, new)
        config = tmp_path / "nginx.conf"
        config.write_text(text)
        async with nginx(config, tmp_path, port):
            url = f"ws://127.0.0.1:{port}/"
            sockets = [await client(url) for _ in range(CLIENTS)]
            received = [[await ws.recv(decode=False) for _ in range(FRAMES)] for ws in sockets]
            health: dict[str, Any] = json.loads(
                await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
                )
            )
            for ws in sockets:
                await ws.close()
        for running in (a, b):
            running.process.send_signal(signal.SIGTERM)
        per_host = [await connections_logged(a), await connections_logged(b)]

    assert health["status"] == "ok" and health["scenario"] == "energy-dashboard"
    assert sum(per_host) == CLIENTS
    assert min(per_host) >= 1, per_host  # least_conn: both hosts got clients
    reference: dict[tuple[str, int], bytes] = {}
    timeline = Timeline(load_scenario(DASHBOARD), SEED, scope=None, epoch_ns=EPOCH_NS)
    for payload in timeline.take_until(3600 * S).payloads:
        message = json.loads(payload)
        reference[message["type"], message["seq"]] = without_live_count(bytes(payload))
    for frames in received:
        for raw in frames:
            message = json.loads(raw)
            # Each host's live count of its clients is its own: the rest is the same bytes.
            assert without_live_count(raw) == reference[message["type"], message["seq"]]
