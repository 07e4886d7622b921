"""Replay: `sim replay` frames/s at ``--speed max`` and timing error at 1x, one client,
each beside a plain ``websockets`` server sending the same frames in the same run.

Targets (issue #5), one client:

1. ``--speed max``: at least 100,000 delivered frames/s.
2. ``--speed 1``: timing error p99 under 2 ms. A frame's timing error is its arrival
   offset minus its recorded offset (positive: late).

Recordings are made first with the real CLI, into a temporary directory:
``sim generate bench/high-rate.toml --duration 60s`` for 1 (10,000 msg/s: 599,999 frames
of ~155 bytes) and ``sim generate bench/scenarios/replay-timing.toml --duration 10s``
for 2 (1,000 msg/s: 9,999 frames of ~205 bytes). Then, for each repetition, each server
is started fresh as a child process and one client process connects to it. The servers
take turns (sim, plain, then plain, sim, ...) so drift on the machine hits both alike.

* sim: ``sim replay FILE --port 0 --speed max|1 --quiet`` (its URL is its first line).
* plain: this file with ``--plain-server-child``, on the same ``websockets`` and the
  same default asyncio loop as sim. It reads the recording's frames straight from the
  Parquet file and, once a client's handshake is done, sends them: at max with
  ``await ws.send(payload, text=True)`` in a loop over the pre-encoded payloads (the
  library floor); at 1x the same, after ``asyncio.sleep`` until each frame's recorded
  offset from the start of the handler. sim / plain is what sim's replay machinery
  costs (or saves) over the library.
* ceiling (max only): the same server with every frame serialized beforehand and
  written in one ``transport.write``. The server does almost nothing, so this row is
  what the client can take in: it must be well above the other two, and each row's
  client CPU% shows how busy the client was.

The client (``--client-child``) is a separate process: a minimal RFC 6455 client over a
plain asyncio protocol (standard library, default loop). It timestamps
(``time.monotonic_ns``) each data frame when it reads it, stops after the recording's
frame count, and checks count, bytes and CRC-32 of the payloads against the recording,
so every row is the exact recorded frames in order. Over its window (handshake done to
last frame) it reads its own CPU time, the server's (``/proc/PID/stat``) and the
machine's (``/proc/stat``): "other CPU%" is load from unrelated processes. "client
frames/read" is how many frames each read returned: a few means the client was waiting
for data, so it kept up however busy its CPU% looks (each small read costs several us
of event loop and syscall); a client falling behind finds its socket buffer full and
reads hundreds at a time, as in the ceiling row.

Frames/s is (frames - 1) / (last arrival - first arrival). Timing offsets count from
connection open on each side: the recording's from its ``open`` row; the servers' from
after they have sent the 101 response (the plain server from the start of its handler,
sim from the start of the pump task its handler spawns); the client's from the moment
it has read that response. The client's open is later than the server's by the one-way
delivery of the 101 (tens of us on loopback): the figure includes it, as a client of
the replay would see it. Counting
from the first frame instead would cancel that constant but hide a late start (the
first frame's error is 0 by definition, and a late first frame makes every later one
look early); that variant is printed too, as a cross-check.

    .venv/bin/python bench/replay.py                   # 3 reps of each
    .venv/bin/python bench/replay.py --reps 5 --max-duration 120s --timing-duration 20s
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    BENCH,
    HOST,
    SIM,
    SIM_PYTHON,
    fmt,
    machine_info,
    median,
    proc_cpu_s,
    start_url_server,
    stop,
    stop_server,
    wait_quiet,
)

MAX_SCENARIO = BENCH / "high-rate.toml"  # 10,000 msg/s, ~155-byte payloads
TIMING_SCENARIO = BENCH / "scenarios" / "replay-timing.toml"  # 1,000 msg/s, ~205 bytes
TARGET_FPS = 100_000
TARGET_P99_MS = 2.0
CLIENT_FLAG = "--client-child"
PLAIN_FLAG = "--plain-server-child"
SERVER_READY_S = 120.0  # sim replay reads the whole recording before it listens
SERVER_EXIT_AFTER_S = 600.0  # the plain server stops by itself after this, whatever happens
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


# ---------------------------------------------------------------- the recordings


@dataclass(frozen=True, slots=True)
class Recorded:
    """The server frames of a one-connection recording, as a client must receive them."""

    path: Path
    offsets_ns: list[int]  # from the connection's open row
    payloads: list[bytes]
    nbytes: int  # of all payloads
    crc: int  # CRC-32 of all payloads, in order

    @property
    def frames(self) -> int:
        return len(self.payloads)


def read_recorded(path: Path) -> Recorded:
    """The text frames the server sent on connection 0 of ``path``, read straight from
    the Parquet file (not through sim's replay code). Raises ``SystemExit`` if it holds
    anything a plain sender would have to answer or close."""
    import polars as pl

    rows = (
        pl.read_parquet(path, columns=["conn", "seq", "t_ns", "sender", "kind", "payload"])
        .filter(pl.col("conn") == 0)
        .sort("seq")
        .with_columns(pl.col("sender").cast(pl.String), pl.col("kind").cast(pl.String))
    )
    if rows.is_empty() or rows["kind"][0] != "open":
        raise SystemExit(f"{path}: connection 0 does not start with an open row")
    pushes = rows.filter((pl.col("kind") == "text") & (pl.col("sender") == "server"))
    if pushes.height != rows.height - 1:
        raise SystemExit(f"{path}: connection 0 has rows other than open + server text")
    origin = int(rows["t_ns"][0])
    payloads: list[bytes] = pushes["payload"].to_list()
    crc = 0
    for payload in payloads:
        crc = zlib.crc32(payload, crc)
    offsets = [t - origin for t in pushes["t_ns"].to_list()]
    return Recorded(path, offsets, payloads, sum(map(len, payloads)), crc)


def generate(scenario: Path, duration: str, out: Path) -> None:
    """``sim generate SCENARIO --duration D --out FILE``, the real command."""
    argv = [str(SIM), "generate", str(scenario), "--duration", duration, "--out", str(out)]
    subprocess.run(argv, check=True, timeout=300, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- the client (child)


def _machine_jiffies() -> tuple[int, int, int]:
    """(busy, softirq, total) jiffies over all CPUs, as the anchors' loadgen reads them."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, softirq, sum(v)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    ns: int
    cpu_s: float
    server_cpu_s: float
    jiffies: tuple[int, int, int]

    @classmethod
    def take(cls, ns: int, server_pid: int) -> _Snapshot:
        t = os.times()
        return cls(ns, t.user + t.system, proc_cpu_s(server_pid), _machine_jiffies())


class _Receiver(asyncio.Protocol):
    """One client connection: the opening handshake, then every data frame counted,
    checksummed and timestamped when read. Server frames are never masked (RFC 6455
    §5.1), so a frame is a 2-10 byte header and its payload."""

    def __init__(self, port: int, frames: int, server_pid: int) -> None:
        self.port = port
        self.want = frames
        self.server_pid = server_pid
        self.key = base64.b64encode(os.urandom(16))
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.arrivals = array("q")
        self.reads = 0  # data_received calls after the handshake
        self.nbytes = 0
        self.crc = 0
        self.opened: _Snapshot | None = None
        self.last: _Snapshot | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (HOST.encode(), self.port, self.key)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost ({exc})" if exc else "connection lost")

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self.buf
        buf += data
        if self.opened is None and not self._handshake(buf, now):
            return
        self.reads += 1
        arrivals, want = self.arrivals, self.want
        pos, end = 0, len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= 2 and not self.done.done():
                b0, n = buf[pos], buf[pos + 1]
                head = 2
                if n & 0x80:
                    self._finish("protocol error: masked server frame")
                    break
                if n == 126:
                    if end - pos < 4:
                        break
                    n, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
                start, pos_next = pos + head, pos + head + n
                if pos_next > end:
                    break
                opcode = b0 & 0x0F
                if opcode <= 2:  # continuation, text, binary
                    self.crc = zlib.crc32(view[start:pos_next], self.crc)
                    self.nbytes += n
                    if b0 & 0x80:  # FIN: a message is complete
                        arrivals.append(now)
                        if len(arrivals) >= want:
                            self._finish("all frames", now)
                elif opcode == 8:
                    self._finish("closed by the server")
                elif opcode == 9:  # 5.5.2: "an endpoint MUST send a Pong frame in response"
                    self._send(0xA, bytes(view[start:pos_next]))
                pos = pos_next
        finally:
            view.release()
        del buf[:pos]

    def _handshake(self, buf: bytearray, now: int) -> bool:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 16384:
                self._finish("no end to the handshake response")
            return False
        status, *lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines)}
        if not status.startswith(b"HTTP/1.1 101") or headers.get(b"sec-websocket-accept") != accept:
            self._finish(f"handshake refused: {status.decode(errors='replace')}")
            return False
        self.opened = _Snapshot.take(now, self.server_pid)
        return True

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked (5.3); an all-zero key leaves the payload as is.
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + bytes(4) + payload)

    def _finish(self, why: str, last_ns: int | None = None) -> None:
        if self.done.done():
            return
        if self.opened is not None:
            self.last = _Snapshot.take(last_ns or time.monotonic_ns(), self.server_pid)
        self.done.set_result(why)
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def _client(port: int, frames: int, timeout_s: float, server_pid: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, rx = await asyncio.wait_for(
        loop.create_connection(lambda: _Receiver(port, frames, server_pid), HOST, port), 10
    )
    try:
        why = await asyncio.wait_for(asyncio.shield(rx.done), timeout_s)
    except TimeoutError:
        rx._finish(f"timed out after {timeout_s:g} s")
        why = rx.done.result()
    await asyncio.sleep(0.05)  # let the close frame go out
    out: dict[str, Any] = {
        "why": why,
        "frames": len(rx.arrivals),
        "reads": rx.reads,
        "bytes": rx.nbytes,
        "crc": rx.crc,
        "arrivals": rx.arrivals,
    }
    a, b = rx.opened, rx.last
    if a is not None and b is not None:
        window = max(1e-9, (b.ns - a.ns) / 1e9)
        busy, soft, total = (y - x for x, y in zip(a.jiffies, b.jiffies, strict=True))
        ncpu = os.cpu_count() or 1
        out.update(
            open_ns=a.ns,
            window_s=window,
            client_cpu_pct=100 * (b.cpu_s - a.cpu_s) / window,
            server_cpu_pct=100 * (b.server_cpu_s - a.server_cpu_s) / window,
            server_cpu_s=b.server_cpu_s - a.server_cpu_s,
            machine_busy_pct=100 * ncpu * busy / max(1, total),
            softirq_pct=100 * ncpu * soft / max(1, total),
        )
    return out


def client_child(argv: list[str]) -> int:
    """``replay.py --client-child PORT FRAMES TIMEOUT_S SERVER_PID ARRIVALS_FILE``: one
    JSON line on stdout; the arrival times (int64 ns, native order) in ARRIVALS_FILE."""
    port, frames, timeout_s, server_pid, arrivals_file = argv
    result = asyncio.run(_client(int(port), int(frames), float(timeout_s), int(server_pid)))
    Path(arrivals_file).write_bytes(result.pop("arrivals").tobytes())
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------- the plain server (child)


async def _plain_server(recorded: Recorded, mode: str, exit_after_s: float) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed
    from websockets.frames import Frame, Opcode

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.call_later(exit_after_s, stopping.set)
    payloads, offsets = recorded.payloads, [ns / 1e9 for ns in recorded.offsets_ns]
    blob = b""
    if mode == "ceiling":
        blob = b"".join(Frame(Opcode.TEXT, p).serialize(mask=False) for p in payloads)

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            if mode == "max":
                for payload in payloads:
                    await ws.send(payload, text=True)
            elif mode == "ceiling":
                ws.transport.write(blob)
            else:
                origin = loop.time()
                for at, payload in zip(offsets, payloads, strict=True):
                    delay = origin + at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await ws.send(payload, text=True)
            await ws.wait_closed()

    async with serve(handler, HOST, 0, compression=None, server_header=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://{HOST}:{port}", flush=True)
        await stopping.wait()


def plain_server_child(argv: list[str]) -> int:
    """``replay.py --plain-server-child FILE max|ceiling|timed``: serve until SIGTERM."""
    path, mode = argv
    if mode not in ("max", "ceiling", "timed"):
        raise SystemExit(f"mode={mode!r}: must be max, ceiling or timed")
    asyncio.run(_plain_server(read_recorded(Path(path)), mode, SERVER_EXIT_AFTER_S))
    return 0


# ---------------------------------------------------------------- one run


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of ``pid``: its peak resident memory so far (``None`` once it has gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def server_argv(kind: str, test: str, path: Path) -> list[str]:
    if kind == "sim":
        speed = "max" if test == "max" else "1"
        return [str(SIM), "replay", str(path), "--port", "0", "--speed", speed, "--quiet"]
    mode = "timed" if test == "timing" else ("ceiling" if kind == "ceiling" else "max")
    return [str(SIM_PYTHON), str(Path(__file__).resolve()), PLAIN_FLAG, str(path), mode]


def run_one(
    test: str, kind: str, recorded: Recorded, rep: int, logdir: Path, quiet_max_s: float
) -> dict[str, Any]:
    """One fresh server and one client; the client's figures, checked, as a row."""
    import numpy as np

    busy_before = wait_quiet(quiet_max_s)
    log = logdir / f"{test}-{kind}-rep{rep}.log"
    arrivals_file = logdir / f"{test}-{kind}-rep{rep}.arrivals"
    row: dict[str, Any] = {"test": test, "server": kind, "rep": rep, "log": str(log)}
    row["busy_before_pct"] = busy_before
    # At max the transfer takes a few seconds (>= 20,000 frames/s leaves room); at 1x,
    # the recording's length.
    timeout_s = recorded.frames / 20_000 if test == "max" else recorded.offsets_ns[-1] / 1e9
    timeout_s += 30
    try:
        server = start_url_server(
            kind, server_argv(kind, test, recorded.path), log, ready_timeout_s=SERVER_READY_S
        )
    except RuntimeError as e:
        row["failed"] = str(e)
        return row
    try:
        client = subprocess.Popen(
            [
                str(SIM_PYTHON),
                str(Path(__file__).resolve()),
                CLIENT_FLAG,
                str(server.port),
                str(recorded.frames),
                str(timeout_s),
                str(server.pid),
                str(arrivals_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = client.communicate(timeout=timeout_s + 20)
        except subprocess.TimeoutExpired:
            out, err = b"", b"the client ran past its own deadline"
        finally:
            stop(client)
        row["server_peak_rss_mb"] = _peak_rss_mb(server.pid)
    finally:
        stop_server(server)
    row["stopped_by_sigterm"] = not server.killed
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if client.returncode != 0 or not lines:
        row["failed"] = f"client rc={client.returncode}: {err.decode().strip()[-300:]}"
        return row
    result: dict[str, Any] = json.loads(lines[-1])
    arrivals = np.fromfile(arrivals_file, dtype=np.int64)
    arrivals_file.unlink()
    row.update(result)
    row["check"] = (
        "ok"
        if (result["frames"], result["bytes"], result["crc"])
        == (recorded.frames, recorded.nbytes, recorded.crc)
        else f"MISMATCH ({result['why']}): {result['frames']:,}/{recorded.frames:,} frames, "
        f"{result['bytes']:,}/{recorded.nbytes:,} bytes, crc {result['crc'] == recorded.crc}"
    )
    row["other_cpu_pct"] = max(
        0.0,
        result.get("machine_busy_pct", 0.0)
        - result.get("softirq_pct", 0.0)
        - result.get("client_cpu_pct", 0.0)
        - result.get("server_cpu_pct", 0.0),
    )
    if len(arrivals) < 2 or "open_ns" not in result:
        row["failed"] = f"too few frames ({result['why']})"
        return row
    row["open_to_first_ms"] = (arrivals[0] - result["open_ns"]) / 1e6
    row["fps"] = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)
    row["server_us_per_frame"] = 1e6 * result["server_cpu_s"] / len(arrivals)
    if test == "timing":
        recorded_ns = np.asarray(recorded.offsets_ns[: len(arrivals)], dtype=np.int64)
        from_open = (arrivals - result["open_ns"] - recorded_ns) / 1e6
        from_first = ((arrivals - arrivals[0]) - (recorded_ns - recorded_ns[0])) / 1e6
        for name, err_ms in (("open", from_open), ("first", from_first)):
            row[f"{name}_p50_ms"] = float(np.percentile(err_ms, 50))
            row[f"{name}_p99_ms"] = float(np.percentile(err_ms, 99))
            row[f"{name}_max_ms"] = float(err_ms.max())
            row[f"{name}_min_ms"] = float(err_ms.min())
        row["over_2ms_pct"] = float(100 * np.mean(from_open > TARGET_P99_MS))
    return row


# ---------------------------------------------------------------- report


def _ok(rows: list[dict[str, Any]], test: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["test"] == test and r["server"] == kind and not r.get("failed")]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def max_report(
    rows: list[dict[str, Any]], recorded: Recorded, args: argparse.Namespace
) -> list[str]:
    out = [
        f"### Replay at --speed max: {recorded.frames:,} frames "
        f"(~{recorded.nbytes / recorded.frames:.0f} B) to one client, {args.reps} reps "
        f"(sim generate {MAX_SCENARIO.name} --duration {args.max_duration})\n",
        "| server | rep | frames/s | open to first frame ms | server CPU% "
        "| server CPU us/frame | client CPU% | client frames/read | other CPU% "
        "| server peak RSS MB | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (r for r in rows if r["test"] == "max"):
        if r.get("failed"):
            out.append(f"| {r['server']} | {r['rep']} | failed: {r['failed']} |{' |' * 8}")
            continue
        out.append(
            f"| {r['server']} | {r['rep']} | {r['fps']:,.0f} | {r['open_to_first_ms']:.1f} "
            f"| {r['server_cpu_pct']:.0f} | {r['server_us_per_frame']:.2f} "
            f"| {r['client_cpu_pct']:.0f} | {r['frames'] / max(1, r['reads']):.1f} "
            f"| {r['other_cpu_pct']:.0f} | {fmt(r['server_peak_rss_mb'], 0)} | {r['check']} |"
        )
    fps = {k: median([r["fps"] for r in _ok(rows, "max", k)]) for k in KINDS["max"]}
    sim = fps["sim"]
    verdict = "-" if sim is None else ("met" if sim >= TARGET_FPS else "MISSED")
    out += [
        "",
        "| median over reps | frames/s | server CPU us/frame | client CPU% | sim / this |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in KINDS["max"]:
        ok = _ok(rows, "max", kind)
        out.append(
            f"| {kind} | {fmt(fps[kind], 0)} "
            f"| {fmt(median([r['server_us_per_frame'] for r in ok]), 2)} "
            f"| {fmt(median([r['client_cpu_pct'] for r in ok]), 0)} "
            f"| {'-' if kind == 'sim' else _ratio(sim, fps[kind])} |"
        )
    out.append(f"\nTarget >= {TARGET_FPS:,} frames/s: **{verdict}** ({fmt(sim, 0)}).")
    return out


def timing_report(
    rows: list[dict[str, Any]], recorded: Recorded, args: argparse.Namespace
) -> list[str]:
    out = [
        f"### Replay at 1x: timing error of {recorded.frames:,} frames "
        f"(~{recorded.nbytes / recorded.frames:.0f} B, 1,000 msg/s) to one client, "
        f"{args.reps} reps (sim generate {TIMING_SCENARIO.name} "
        f"--duration {args.timing_duration})\n",
        "Error = arrival offset - recorded offset in ms, offsets from connection open; "
        '"p99 from first frame" counts both from the first frame instead; "first frame at" '
        "is its arrival offset.\n",
        "| server | rep | p50 | p99 | max | min | > 2 ms | p99 from first frame "
        f"| first frame at (recorded {recorded.offsets_ns[0] / 1e6:.3f}) "
        "| server CPU% | client CPU% | other CPU% | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in (r for r in rows if r["test"] == "timing"):
        if r.get("failed"):
            out.append(f"| {r['server']} | {r['rep']} | failed: {r['failed']} |{' |' * 10}")
            continue
        out.append(
            f"| {r['server']} | {r['rep']} | {r['open_p50_ms']:.3f} | {r['open_p99_ms']:.3f} "
            f"| {r['open_max_ms']:.3f} | {r['open_min_ms']:.3f} | {r['over_2ms_pct']:.2f}% "
            f"| {r['first_p99_ms']:.3f} | {r['open_to_first_ms']:.3f} | {r['server_cpu_pct']:.1f} "
            f"| {r['client_cpu_pct']:.1f} | {r['other_cpu_pct']:.0f} | {r['check']} |"
        )
    p99 = {k: median([r["open_p99_ms"] for r in _ok(rows, "timing", k)]) for k in KINDS["timing"]}
    sim = p99["sim"]
    verdict = "-" if sim is None else ("met" if sim < TARGET_P99_MS else "MISSED")
    out += [
        "",
        "| median over reps | p50 ms | p99 ms | max ms | p99 from first frame ms "
        "| sim p99 / this |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS["timing"]:
        ok = _ok(rows, "timing", kind)
        out.append(
            f"| {kind} | {fmt(median([r['open_p50_ms'] for r in ok]), 3)} | {fmt(p99[kind], 3)} "
            f"| {fmt(median([r['open_max_ms'] for r in ok]), 3)} "
            f"| {fmt(median([r['first_p99_ms'] for r in ok]), 3)} "
            f"| {'-' if kind == 'sim' else _ratio(sim, p99[kind])} |"
        )
    out.append(f"\nTarget p99 < {TARGET_P99_MS:g} ms: **{verdict}** ({fmt(sim, 3)} ms).")
    return out


# ---------------------------------------------------------------- main

KINDS = {"max": ("sim", "plain", "ceiling"), "timing": ("sim", "plain")}


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # `timeout` (bench/run_all.sh) sends SIGTERM: exit through the finally blocks, which
    # stop the child processes, instead of dying with them still running.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tests", default="max,timing", help="comma-separated: max, timing")
    ap.add_argument("--max-duration", default="60s", help="recording for --speed max")
    ap.add_argument("--timing-duration", default="10s", help="recording for 1x")
    ap.add_argument("--quiet-max-s", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args(argv)
    tests = [t for t in args.tests.split(",") if t]
    if bad := [t for t in tests if t not in KINDS]:
        ap.error(f"--tests: unknown {', '.join(bad)} (known: max, timing)")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    info = machine_info()
    print(f"# replay: {json.dumps(info)}", file=sys.stderr)
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-replay-"))
    t0 = time.monotonic()
    recordings: dict[str, Recorded] = {}
    for test, scenario, duration in (
        ("max", MAX_SCENARIO, args.max_duration),
        ("timing", TIMING_SCENARIO, args.timing_duration),
    ):
        if test in tests:
            path = logdir / f"{test}.parquet"
            generate(scenario, duration, path)
            recordings[test] = read_recorded(path)
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for test in tests:
            kinds = KINDS[test] if rep % 2 else KINDS[test][::-1]
            for kind in kinds:
                row = run_one(test, kind, recordings[test], rep, logdir, args.quiet_max_s)
                row["machine_info"] = info
                rows.append(row)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                if row.get("failed"):
                    msg = f"failed: {row['failed']}"
                elif test == "max":
                    msg = f"{row['fps']:,.0f} frames/s"
                else:
                    msg = f"p50 {row['open_p50_ms']:.3f} p99 {row['open_p99_ms']:.3f} ms"
                print(
                    f"# {test} {kind} rep={rep}: {msg}, server CPU "
                    f"{row.get('server_cpu_pct', 0):.0f}%, client "
                    f"{row.get('client_cpu_pct', 0):.0f}%, other "
                    f"{row.get('other_cpu_pct', 0):.0f}% [{row.get('check', '-')}]",
                    file=sys.stderr,
                    flush=True,
                )
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(
        f"## sim replay, {info['date_utc']}, {info['nproc']} CPUs ({info['cpu']}), "
        f"Python {info['python']}, websockets {info['websockets']}, load average at start "
        f"{' '.join(info['loadavg'])}, at end {loadavg} ({time.monotonic() - t0:.0f} s; "
        f"logs in {logdir})\n"
    )
    if "max" in tests:
        print("\n".join(max_report(rows, recordings["max"], args)) + "\n")
    if "timing" in tests:
        print("\n".join(timing_report(rows, recordings["timing"], args)))
    for test in tests:
        recordings[test].path.unlink()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CLIENT_FLAG:
        sys.exit(client_child(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == PLAIN_FLAG:
        sys.exit(plain_server_child(sys.argv[2:]))
    sys.exit(main())
