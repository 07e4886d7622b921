"""Re-make recordings/energy-dashboard-sample.parquet: `python recordings/make_sample.py`
(takes about three minutes: it records in real time).

A real session at 1x, recorded by `sim record` as a proxy between `sim connect` (the
reference resilient client) and `sim run scenarios/energy-dashboard.toml`, three real
processes on 127.0.0.1:

- 0 s: the client connects through the proxy and subscribes to the five streams; it
  pings every 10 s (the feed's own ``{"type": "ping"}``);
- 90 s: the server restarts (SIGTERM: it closes the client with 1001 "going away", then
  a new `sim run` serves the same port); the client reconnects after its jittered
  backoff and subscribes again;
- 180 s: the client's --duration ends and it closes with 1000.

Used by the docs and by tests/e2e/test_sample_recording.py. The file is about 20 kB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "scenarios" / "energy-dashboard.toml"
OUT = HERE / "energy-dashboard-sample.parquet"
STREAMS = ("system_stats", "dashboard_stats", "energy_market", "notification", "transaction")
RESTART_AFTER_S = 90
CLIENT_DURATION = "3m"


def sim(*args: str) -> subprocess.Popen[str]:
    """`sim ARGS` as a process whose stdout we read (its first line is its URL)."""
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        raise SystemExit(f"{process.args} printed no URL (exit {process.wait()})")
    return line


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, the graceful stop: clients get 1001, a recorder writes its file."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def main() -> None:
    OUT.unlink(missing_ok=True)
    server = sim("run", str(SCENARIO), "--port", "0", "--quiet")
    server_url = first_line(server)
    port = server_url.rsplit(":", 1)[1]
    proxy = sim(
        "record", "--upstream", server_url, "--listen", "127.0.0.1:0", "--out", str(OUT), "--quiet"
    )
    proxy_url = first_line(proxy)
    subscriptions = [arg for name in STREAMS for arg in ("--subscribe", name)]
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "connect",
            proxy_url,
            *subscriptions,
            "--duration",
            CLIENT_DURATION,
            "--seed",
            "1",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(RESTART_AFTER_S)
    stop(server)
    server = sim("run", str(SCENARIO), "--port", port, "--quiet")
    first_line(server)
    client.wait(timeout=300)
    stop(proxy)
    stop(server)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
