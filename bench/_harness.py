"""Shared plumbing for the server benchmarks (fanout.py, lateness.py, idle_memory.py,
replay.py).

The reference servers and the load client live in the anchors kit
(``/work/shared/anchors``, read-only): ``setup.sh DIR`` makes a writable copy with its
own venv (picows, uvloop, websockets) and node_modules. Every process started here is
bounded (a timeout) and stopped by its own pid (SIGTERM, then SIGKILL), loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SIM = REPO / ".venv" / "bin" / "sim"
SIM_PYTHON = REPO / ".venv" / "bin" / "python"
ANCHORS_SRC = Path(os.environ.get("ANCHORS_SRC", "/work/shared/anchors"))
ANCHORS_DIR = Path(os.environ.get("ANCHORS_DIR", "/tmp/sim-anchors"))
HOST = "127.0.0.1"


# ---------------------------------------------------------------- anchors kit


def ensure_anchors(anchors: Path = ANCHORS_DIR) -> Path:
    """A ready copy of the anchors kit in ``anchors`` (made with its setup.sh if missing)."""
    ready = (anchors / ".venv" / "bin" / "python").exists() and (
        anchors / "node-mock-server" / "node_modules" / "ws"
    ).exists()
    if not ready:
        print(f"# setting up anchors in {anchors} (setup.sh)", file=sys.stderr)
        subprocess.run(
            [str(ANCHORS_SRC / "setup.sh"), str(anchors)],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
    return anchors


def start_loadgen(
    anchors: Path,
    port: int,
    *,
    conns: int,
    duration_s: float,
    warmup_s: float,
    server_pid: int,
    sample: int | None = None,
    procs: int = 1,
    label: str = "",
) -> subprocess.Popen[bytes]:
    """Start the anchors' loadgen.py; collect its result with :func:`finish_loadgen`."""
    argv = [
        str(anchors / ".venv" / "bin" / "python"),
        str(anchors / "loadgen.py"),
        "--port",
        str(port),
        "-c",
        str(conns),
        "-d",
        str(duration_s),
        "-w",
        str(warmup_s),
        "-p",
        str(procs),
        "--server-pid",
        str(server_pid),
        "--label",
        label,
    ]
    if sample is not None:
        argv += ["-s", str(sample)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_loadgen(
    proc: subprocess.Popen[bytes], timeout_s: float, label: str = ""
) -> dict[str, Any] | None:
    """loadgen's JSON result, or ``None`` if it failed or ran past ``timeout_s``."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        print(f"# loadgen timed out after {timeout_s:.0f} s ({label})", file=sys.stderr)
        return None
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err.decode().strip().splitlines()[-3:]
        print(f"# loadgen failed rc={proc.returncode} ({label}): {tail}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def loadgen_timeout(duration_s: float, warmup_s: float) -> float:
    return 60 + warmup_s + duration_s + 25  # loadgen's own hard deadline is 60 + W + D + 20


def loadgen(
    anchors: Path,
    port: int,
    *,
    conns: int,
    duration_s: float,
    warmup_s: float,
    server_pid: int,
    sample: int | None = None,
    procs: int = 1,
    label: str = "",
    timeout_s: float | None = None,
) -> dict[str, Any] | None:
    """Run the anchors' loadgen.py once; its JSON result, or ``None`` if it failed."""
    proc = start_loadgen(
        anchors,
        port,
        conns=conns,
        duration_s=duration_s,
        warmup_s=warmup_s,
        server_pid=server_pid,
        sample=sample,
        procs=procs,
        label=label,
    )
    limit = timeout_s if timeout_s is not None else loadgen_timeout(duration_s, warmup_s)
    return finish_loadgen(proc, limit, label)


def http_probe_ms(port: int, timeout_s: float = 2.0) -> float | None:
    """Time to the first byte of the answer to ``GET /healthz``, or ``None`` if none came
    within ``timeout_s``. sim answers it from its event loop; the node replica answers
    any plain HTTP request with 426 from its own, so both show whether the loop is free."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as s:
            s.settimeout(max(0.01, timeout_s - (time.monotonic() - t0)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            if not s.recv(1):
                return None
    except OSError:
        return None
    return (time.monotonic() - t0) * 1e3


# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A free loopback TCP port below the ephemeral range (as bench-fanout.sh picks)."""
    for port in random.sample(range(23000, 24000), 60):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 23000-23999")


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early (rc={proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout_s} s")


def stop(proc: subprocess.Popen[Any], grace_s: float = 3.0) -> None:
    """SIGTERM this one process, then SIGKILL it if it has not gone after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    #: True when it did not stop on SIGTERM within the grace period.
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_node(
    anchors: Path, log: Path, *, rate: float, wait_clients: int = 0, exit_after_s: int = 90
) -> Server:
    """The Node.js ``ws`` replica: BENCH mode at ``rate`` msg/s, or normal mock mode at 0."""
    port = free_port()
    env = dict(
        os.environ,
        HOST=HOST,
        PORT=str(port),
        BENCH_RATE=str(rate),
        BENCH_BYTES="200",
        BENCH_WAIT_CLIENTS=str(wait_clients),
        QUIET="1",
        EXIT_AFTER_S=str(exit_after_s),
    )
    with log.open("wb") as f:
        proc = subprocess.Popen(
            ["node", "node-mock-server/server.js"],
            cwd=anchors,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    server = Server("node", proc, port, log)
    try:
        wait_listening(port, proc)
    except BaseException:
        stop(proc)
        raise
    return server


def start_url_server(
    kind: str, argv: Sequence[str], log: Path, *, ready_timeout_s: float = 20.0
) -> Server:
    """Start a server that prints its ``ws://HOST:PORT`` URL as its first stdout line when
    it is ready (``sim run``, ``sim replay``); the port is read from that line. Its stderr
    goes to ``log``. Stop it with :func:`stop_server`."""
    with log.open("wb") as f:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=f)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], ready_timeout_s)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("ws://"):
            raise RuntimeError(f"{kind} printed {line!r} (see {log})")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
    except BaseException:
        stop(proc)
        raise
    return Server(kind, proc, port, log)


def start_sim(scenario: Path, log: Path, *, extra: Sequence[str] = ()) -> Server:
    """``sim run SCENARIO --port 0 --quiet``; the port is read from the URL line."""
    argv = [str(SIM), "run", str(scenario), "--port", "0", "--quiet", *extra]
    return start_url_server("sim", argv, log)


def stop_server(server: Server, grace_s: float = 2.0) -> None:
    if server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            server.killed = True
            with contextlib.suppress(ProcessLookupError):
                server.proc.kill()
            server.proc.wait(5)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        stop_server(server)


# ---------------------------------------------------------------- /proc


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN once it has gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)  # busy (not idle, not iowait), total


def machine_busy_pct(window_s: float = 1.0) -> float:
    """CPU busy over ``window_s``, in % of one core (the machine's max is 100 * nproc)."""
    b0, t0 = _cpu_jiffies()
    time.sleep(window_s)
    b1, t1 = _cpu_jiffies()
    return 100.0 * (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(max_s: float = 5.0, below_pct: float = 30.0) -> float:
    """Wait (at most ``max_s``) for other load on the box to drop; the last busy%."""
    busy = machine_busy_pct()
    deadline = time.monotonic() + max_s - 1
    while busy >= below_pct and time.monotonic() < deadline:
        busy = machine_busy_pct()
    return round(busy, 1)


# ---------------------------------------------------------------- reporting


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def machine_info(anchors: Path | None = None) -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    versions = [
        ("sim", [str(SIM_PYTHON), "-c", "import simulator.version as v; print(v.__version__)"]),
        ("websockets", [str(SIM_PYTHON), "-c", "import websockets; print(websockets.__version__)"]),
        ("node", ["node", "-v"]),
    ]
    if anchors is not None:
        ws_pkg = anchors / "node-mock-server" / "node_modules" / "ws" / "package.json"
        with contextlib.suppress(OSError, ValueError):
            info["ws"] = json.loads(ws_pkg.read_text())["version"]
        py = str(anchors / ".venv" / "bin" / "python")
        versions.append(("picows", [py, "-c", "import picows.version as v; print(v.__version__)"]))
    for name, argv in versions:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(argv, capture_output=True, timeout=20, text=True)
            info[name] = out.stdout.strip() or out.stderr.strip()[-80:]
    return info
