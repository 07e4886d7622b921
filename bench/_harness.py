"""Shared plumbing for the server benchmarks (fanout.py, lateness.py, idle_memory.py,
replay.py, proxy.py).

The reference servers and the load client live in the anchors kit
(``/work/shared/anchors``, read-only): ``setup.sh DIR`` makes a writable copy with its
own venv (picows, uvloop, websockets) and node_modules. Every process started here is
bounded (a timeout) and stopped by its own pid (SIGTERM, then SIGKILL), loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SIM = REPO / ".venv" / "bin" / "sim"
# This checkout's virtualenv (`make` makes it); else the one running the bench (a git
# worktree of the repository has none of its own).
SIM_PYTHON = REPO / ".venv" / "bin" / "python"
if not SIM_PYTHON.exists():
    SIM_PYTHON = Path(sys.executable)
ANCHORS_SRC = Path(os.environ.get("ANCHORS_SRC", "/work/shared/anchors"))
ANCHORS_DIR = Path(os.environ.get("ANCHORS_DIR", "/tmp/sim-anchors"))
HOST = "127.0.0.1"


# ---------------------------------------------------------------- anchors kit


def bun_binary(anchors: Path) -> Path:
    """Where the anchors' Bun binary is (``setup.sh`` links it there)."""
    return anchors / "bun-server" / "node_modules" / "bun" / "bin" / "bun.exe"


def bun_runs(anchors: Path) -> bool:
    """Whether the anchors' Bun binary is there and answers ``--version``."""
    try:
        out = subprocess.run(
            [str(bun_binary(anchors)), "--version"], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def ensure_anchors(anchors: Path = ANCHORS_DIR) -> Path:
    """A ready copy of the anchors kit in ``anchors`` (made with its setup.sh if missing).

    A copy whose Bun binary is missing or broken is repaired the way ``setup.sh`` makes
    it: ``node install.js`` in ``bun-server/node_modules/bun`` links the binary that npm
    fetched (``@oven/bun-linux-x64``) to ``bin/bun.exe``."""
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
    bun_pkg = anchors / "bun-server" / "node_modules" / "bun"
    if bun_pkg.is_dir() and not bun_runs(anchors):
        print(f"# repairing the Bun binary in {bun_pkg} (node install.js)", file=sys.stderr)
        subprocess.run(
            ["node", "install.js"], cwd=bun_pkg, check=True, timeout=120, capture_output=True
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
    argv = ["node", "node-mock-server/server.js"]
    return _start_js("node", argv, anchors, log, rate, wait_clients, exit_after_s)


def start_bun(
    anchors: Path, log: Path, *, rate: float, wait_clients: int = 0, exit_after_s: int = 90
) -> Server:
    """The anchors' Bun server (``Bun.serve``, uWebSockets underneath; one ``publish`` a
    message): the BENCH mode of the Node replica at ``rate`` msg/s, same env, same
    messages. At rate 0 it only accepts connections (it has no mock mode)."""
    argv = [str(bun_binary(anchors)), "bun-server/server.js"]
    return _start_js("bun", argv, anchors, log, rate, wait_clients, exit_after_s)


def _start_js(
    kind: str,
    argv: list[str],
    anchors: Path,
    log: Path,
    rate: float,
    wait_clients: int,
    exit_after_s: int,
) -> Server:
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
        proc = subprocess.Popen(argv, cwd=anchors, env=env, stdout=f, stderr=subprocess.STDOUT)
    server = Server(kind, proc, port, log)
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


def run_client(argv: Sequence[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run a client child process to its end, or stop it after ``timeout_s``: its result
    (the last JSON object line on its stdout), or ``None`` and why there is none."""
    client = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = client.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out, err = b"", b"the client ran past its own deadline"
    finally:
        stop(client)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if client.returncode != 0 or not lines:
        return None, f"client rc={client.returncode}: {err.decode().strip()[-300:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result, ""


def run_main(main: Callable[[], int], children: dict[str, Callable[[list[str]], int]]) -> int:
    """A benchmark's exit status: ``children[FLAG](rest)`` when its command line is
    ``FLAG rest...`` (one of its own child processes), else ``main()``, during which
    SIGTERM raises ``SystemExit``."""
    if len(sys.argv) > 1 and sys.argv[1] in children:
        return children[sys.argv[1]](sys.argv[2:])
    # `timeout` (bench/run_all.sh) sends SIGTERM: exit through the finally blocks, which
    # stop the child processes, instead of dying with them still running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return main()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- RFC 6455 client
#
# The minimal WebSocket client of replay.py and proxy.py, which reads up to ~800,000
# frames/s on one core. The functions take and give bytes (no socket, no clock);
# WebSocketClient is the asyncio pump that feeds them, and a subclass does its own thing
# with each frame. No extensions, no subprotocol, no UTF-8 check, no fragmented sending.

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_HANDSHAKE_RESPONSE = 16384


class ServerProtocolError(Exception):
    """The server broke RFC 6455 (or refused the connection): fail the connection."""


def handshake_request(port: int, path: str = "/") -> tuple[bytes, bytes]:
    """The opening handshake (RFC 6455 §4.1) for ``ws://HOST:port/path``: the request to
    write, and the key to hand to :func:`handshake_response` with the reply."""
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (path.encode(), HOST.encode(), port, key)
    )
    return request, key


def handshake_response(buf: bytearray, key: bytes) -> bool:
    """Whether ``buf`` starts with the whole response to the opening handshake.

    ``False``: wait for more data and call again. ``True``: the server accepted (101 and
    the ``Sec-WebSocket-Accept`` that ``key`` asks for); the response has been removed
    from ``buf``, and what is left is frames, for :func:`parse_server_frames`. Raises
    :class:`ServerProtocolError` if the server refused, or sent 16 KiB without an end
    to the response.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HANDSHAKE_RESPONSE:
            raise ServerProtocolError("no end to the handshake response")
        return False
    status, *lines = bytes(buf[:end]).split(b"\r\n")
    del buf[: end + 4]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines)}
    if not status.startswith(b"HTTP/1.1 101") or headers.get(b"sec-websocket-accept") != accept:
        raise ServerProtocolError(f"handshake refused: {status.decode(errors='replace')}")
    return True


def parse_server_frames(buf: bytearray) -> tuple[list[tuple[int, int, int]], int, str | None]:
    """The complete frames at the start of ``buf``, where they stop, and any error.

    Each frame is ``(b0, start, stop)``: its first byte (FIN is ``b0 & 0x80``, the
    opcode ``b0 & 0x0F``) and where its payload is, ``buf[start:stop]``. Server frames
    are never masked (RFC 6455 §5.1), so a frame is a 2-10 byte header and its payload.

    After handling the frames, the caller must ``del buf[:end]``, ``end`` being the
    offset returned: what is left is the beginning of a frame, to complete with the next
    read. The error is ``None``, or, when a masked frame follows the frames returned,
    why the caller must fail the connection.
    """
    # One call a read and a tuple a frame, not a call (or a generator step) a frame:
    # with replay.py's client on 155-byte frames, 0.70 us a frame at 200 frames a read
    # against 0.93 us for the loop that parsed inline; ~0.1 us more a read at one frame
    # a read. `b << 8 | b` rather than int.from_bytes(slice): no slice, no call, for the
    # common 126-65535 byte payload.
    frames: list[tuple[int, int, int]] = []
    append = frames.append
    pos, end = 0, len(buf)
    while end - pos >= 2:
        b0, n = buf[pos], buf[pos + 1]
        head = 2
        if n >= 126:
            if n & 0x80:
                return frames, pos, "protocol error: masked server frame"
            if n == 126:
                if end - pos < 4:
                    break
                n, head = buf[pos + 2] << 8 | buf[pos + 3], 4
            else:
                if end - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
        stop = pos + head + n
        if stop > end:
            break
        append((b0, pos + head, stop))
        pos = stop
    return frames, pos, None


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame as a client must send it: masked (RFC 6455 §5.3), with the
    all-zero key, which leaves the payload as it is."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8)
    return head + bytes(4) + payload


class WebSocketClient(asyncio.Protocol):
    """The pump of a minimal client connection to ``ws://HOST:port/path``: writes the
    opening handshake, checks the response, then hands each read's complete frames to
    :meth:`frames_received`, keeping a partial frame for the next read.

    A subclass implements the three hooks, which ``data_received`` calls; it may call
    :meth:`send` from them (``transport`` is set by then).
    """

    def __init__(self, port: int, path: str = "/") -> None:
        self.request, self.key = handshake_request(port, path)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False  # the server accepted the handshake

    def handshake_done(self, now: int) -> None:
        """The server accepted, in the read made at ``now`` (``time.monotonic_ns``);
        frames come next."""
        raise NotImplementedError

    def frames_received(self, buf: bytearray, frames: list[tuple[int, int, int]], now: int) -> None:
        """One read's complete frames, from :func:`parse_server_frames` (maybe none, as
        on the read that completes the handshake); the read was made at ``now``."""
        raise NotImplementedError

    def fail(self, why: str) -> None:
        """The server refused the handshake or broke the protocol (after the frames
        before that, if any): close the connection."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self.buf
        buf += data
        if not self.open:
            try:
                if not handshake_response(buf, self.key):
                    return
            except ServerProtocolError as e:
                self.fail(str(e))
                return
            self.open = True
            self.handshake_done(now)
        frames, pos, error = parse_server_frames(buf)
        self.frames_received(buf, frames, now)
        del buf[:pos]
        if error is not None:
            self.fail(error)

    def send(self, opcode: int, payload: bytes) -> None:
        """One frame (:func:`client_frame`), unless the connection is closing."""
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))


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


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, softirq, total) jiffies over all CPUs so far, as the anchors' loadgen reads
    them: busy is all but idle and iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, softirq, sum(v)


def machine_busy_pct(window_s: float = 1.0) -> float:
    """CPU busy over ``window_s``, in % of one core (the machine's max is 100 * nproc)."""
    b0, _, t0 = machine_jiffies()
    time.sleep(window_s)
    b1, _, t1 = machine_jiffies()
    return 100.0 * (os.cpu_count() or 1) * (b1 - b0) / max(1, t1 - t0)


def wait_quiet(max_s: float = 5.0, below_pct: float = 30.0) -> float:
    """Wait (at most ``max_s``) for other load on the box to drop; the last busy%."""
    busy = machine_busy_pct()
    deadline = time.monotonic() + max_s - 1
    while busy >= below_pct and time.monotonic() < deadline:
        busy = machine_busy_pct()
    return round(busy, 1)


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU time used so far, read at ``ns`` (``time.monotonic_ns``): by this process, by
    the processes ``pids`` (0.0 for a pid of 0: none) and by the machine. Two of them
    make a window: :func:`cpu_figures`."""

    ns: int
    cpu_s: float
    pids_cpu_s: tuple[float, ...]
    jiffies: tuple[int, int, int]

    @classmethod
    def take(cls, pids: tuple[int, ...], ns: int | None = None) -> CpuSnapshot:
        """Now; ``ns`` is when the window starts or ends if not now (a read's time)."""
        t = os.times()
        cpu = tuple(proc_cpu_s(p) if p else 0.0 for p in pids)
        ns = time.monotonic_ns() if ns is None else ns
        return cls(ns, t.user + t.system, cpu, machine_jiffies())


def cpu_figures(a: CpuSnapshot, b: CpuSnapshot, names: tuple[str, ...]) -> dict[str, float]:
    """CPU between ``a`` and ``b``, in % of one core over the window: ``client_cpu_pct``
    (this process), ``NAME_cpu_pct`` and ``NAME_cpu_s`` for each of the pids (``names``
    in the order of the pids), ``machine_busy_pct`` and ``softirq_pct``."""
    window = max(1e-9, (b.ns - a.ns) / 1e9)
    busy, soft, total = (y - x for x, y in zip(a.jiffies, b.jiffies, strict=True))
    ncpu = os.cpu_count() or 1
    out = {
        "window_s": window,
        "client_cpu_pct": 100 * (b.cpu_s - a.cpu_s) / window,
        "machine_busy_pct": 100 * ncpu * busy / max(1, total),
        "softirq_pct": 100 * ncpu * soft / max(1, total),
    }
    for name, x, y in zip(names, a.pids_cpu_s, b.pids_cpu_s, strict=True):
        out[f"{name}_cpu_s"] = y - x
        out[f"{name}_cpu_pct"] = 100 * (y - x) / window
    return out


# ---------------------------------------------------------------- reporting


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def keep_row(
    rows: list[dict[str, Any]], row: dict[str, Any], info: dict[str, Any], out: Path | None
) -> None:
    """Add ``row`` with the :func:`machine_info` ``info`` to ``rows``, and append it as
    a JSON line to ``out`` if there is one."""
    row["machine_info"] = info
    rows.append(row)
    if out:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def report_title(
    what: str, info: dict[str, Any], versions: Sequence[str], t0: float, logdir: Path
) -> str:
    """The first line of a report: what, when, on what (with the ``versions`` named,
    from ``info``), the load average at ``info``'s time and now, how long since ``t0``
    (``time.monotonic``) and where the logs are."""
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    names = "".join(f"{name} {info.get(name, 'unknown')}, " for name in versions)
    return (
        f"## {what}, {info['date_utc']}, {info['nproc']} CPUs ({info['cpu']}), "
        f"Python {info['python']}, {names}load average at start "
        f"{' '.join(info['loadavg'])}, at end {loadavg} ({time.monotonic() - t0:.0f} s; "
        f"logs in {logdir})\n"
    )


def runs_table(
    header: str,
    align: str,
    runs: Iterable[dict[str, Any]],
    key: str,
    line: Callable[[dict[str, Any]], str],
) -> list[str]:
    """A Markdown table with a line per run: ``header``, ``align`` (the ``|---|---:|``
    row), then ``line(run)``, or for a run that failed (``run["failed"]`` says why) its
    ``run[key]`` and ``run["rep"]`` cells, why, and the rest of the row left empty."""
    empty = " |" * (align.count("|") - 4)  # the columns after key, rep and why
    out = [header, align]
    for r in runs:
        out.append(
            f"| {r[key]} | {r['rep']} | failed: {r['failed']} |{empty}"
            if r.get("failed")
            else line(r)
        )
    return out


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
