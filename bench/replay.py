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
import contextlib
import json
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

import _harness
from _harness import BENCH, HOST, SIM, SIM_PYTHON, CpuSnapshot, WebSocketClient, fmt, median

MAX_SCENARIO = BENCH / "high-rate.toml"  # 10,000 msg/s, ~155-byte payloads
TIMING_SCENARIO = BENCH / "scenarios" / "replay-timing.toml"  # 1,000 msg/s, ~205 bytes
TARGET_FPS = 100_000
TARGET_P99_MS = 2.0
CLIENT_FLAG = "--client-child"
PLAIN_FLAG = "--plain-server-child"
SERVER_READY_S = 120.0  # sim replay reads the whole recording before it listens
SERVER_EXIT_AFTER_S = 600.0  # the plain server stops by itself after this, whatever happens


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


class _Receiver(WebSocketClient):
    """One client connection: every data frame counted, checksummed and timestamped
    when read."""

    def __init__(self, port: int, frames: int, server_pid: int) -> None:
        super().__init__(port)
        self.want = frames
        self.server_pid = server_pid
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.arrivals = array("q")
        self.reads = 0  # data_received calls after the handshake
        self.nbytes = 0
        self.crc = 0
        self.opened: CpuSnapshot | None = None
        self.last: CpuSnapshot | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(f"connection lost ({exc})" if exc else "connection lost")

    def handshake_done(self, now: int) -> None:
        self.opened = CpuSnapshot.take((self.server_pid,), now)

    def frames_received(self, buf: bytearray, frames: list[tuple[int, int, int]], now: int) -> None:
        self.reads += 1
        if self.done.done():
            return
        arrivals, want = self.arrivals, self.want
        crc, nbytes = self.crc, self.nbytes
        view = memoryview(buf)
        try:
            for b0, start, stop in frames:
                opcode = b0 & 0x0F
                if opcode <= 2:  # continuation, text, binary
                    crc = zlib.crc32(view[start:stop], crc)
                    nbytes += stop - start
                    if b0 & 0x80:  # FIN: a message is complete
                        arrivals.append(now)
                        if len(arrivals) >= want:
                            self.finish("all frames", now)
                            break
                elif opcode == 8:
                    self.finish("closed by the server")
                    break
                elif opcode == 9:  # 5.5.2: "an endpoint MUST send a Pong frame in response"
                    self.send(0xA, bytes(view[start:stop]))
        finally:
            view.release()
            self.crc, self.nbytes = crc, nbytes

    def fail(self, why: str) -> None:
        self.finish(why)

    def finish(self, why: str, last_ns: int | None = None) -> None:
        """Done (the first call only), for the reason ``why``: the window ends at
        ``last_ns`` (default: now) and the connection is closed."""
        if self.done.done():
            return
        if self.opened is not None:
            self.last = CpuSnapshot.take((self.server_pid,), last_ns)
        self.done.set_result(why)
        if self.transport is not None and not self.transport.is_closing():
            self.send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def _client(port: int, frames: int, timeout_s: float, server_pid: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, rx = await asyncio.wait_for(
        loop.create_connection(lambda: _Receiver(port, frames, server_pid), HOST, port), 10
    )
    try:
        why = await asyncio.wait_for(asyncio.shield(rx.done), timeout_s)
    except TimeoutError:
        rx.finish(f"timed out after {timeout_s:g} s")
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
    if rx.opened is not None and rx.last is not None:
        out["open_ns"] = rx.opened.ns
        out.update(_harness.cpu_figures(rx.opened, rx.last, ("server",)))
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

    busy_before = _harness.wait_quiet(quiet_max_s)
    log = logdir / f"{test}-{kind}-rep{rep}.log"
    arrivals_file = logdir / f"{test}-{kind}-rep{rep}.arrivals"
    row: dict[str, Any] = {"test": test, "server": kind, "rep": rep, "log": str(log)}
    row["busy_before_pct"] = busy_before
    # At max the transfer takes a few seconds (>= 20,000 frames/s leaves room); at 1x,
    # the recording's length.
    timeout_s = recorded.frames / 20_000 if test == "max" else recorded.offsets_ns[-1] / 1e9
    timeout_s += 30
    try:
        server = _harness.start_url_server(
            kind, server_argv(kind, test, recorded.path), log, ready_timeout_s=SERVER_READY_S
        )
    except RuntimeError as e:
        row["failed"] = str(e)
        return row
    try:
        result, why = _harness.run_client(
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
            timeout_s + 20,
        )
        row["server_peak_rss_mb"] = _peak_rss_mb(server.pid)
    finally:
        _harness.stop_server(server)
    row["stopped_by_sigterm"] = not server.killed
    if result is None:
        row["failed"] = why
        return row
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


def _title(
    what: str, recorded: Recorded, rate: str, reps: int, scenario: Path, duration: str
) -> str:
    """A report's title: what was measured, on which frames, how many times."""
    return (
        f"### Replay at {what} {recorded.frames:,} frames "
        f"(~{recorded.nbytes / recorded.frames:.0f} B{rate}) to one client, {reps} reps "
        f"(sim generate {scenario.name} --duration {duration})\n"
    )


def _medians_table(
    rows: list[dict[str, Any]],
    test: str,
    header: str,
    columns: list[tuple[str, int]],
    headline: str | None = None,
) -> tuple[list[str], float | None]:
    """The table of medians over reps, a line per server: ``columns`` (row key, digits),
    then sim's ``headline`` figure (default: the first column's) / this server's. Also
    sim's median of the headline figure, for the verdict."""
    headline = headline or columns[0][0]
    ok = {kind: _ok(rows, test, kind) for kind in KINDS[test]}
    med = {kind: {key: median([r[key] for r in ok[kind]]) for key, _ in columns} for kind in ok}
    sim = med["sim"][headline]
    out = ["", header, "|---" + "|---:" * (len(columns) + 1) + "|"]
    for kind, figures in med.items():
        cells = "".join(f"| {fmt(figures[key], digits)} " for key, digits in columns)
        ratio = "-" if kind == "sim" else _ratio(sim, figures[headline])
        out.append(f"| {kind} {cells}| {ratio} |")
    return out, sim


def max_report(
    rows: list[dict[str, Any]], recorded: Recorded, args: argparse.Namespace
) -> list[str]:
    out = [
        _title("--speed max:", recorded, "", args.reps, MAX_SCENARIO, args.max_duration),
        *_harness.runs_table(
            "| server | rep | frames/s | open to first frame ms | server CPU% "
            "| server CPU us/frame | client CPU% | client frames/read | other CPU% "
            "| server peak RSS MB | check |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            (r for r in rows if r["test"] == "max"),
            "server",
            lambda r: (
                f"| {r['server']} | {r['rep']} | {r['fps']:,.0f} | {r['open_to_first_ms']:.1f} "
                f"| {r['server_cpu_pct']:.0f} | {r['server_us_per_frame']:.2f} "
                f"| {r['client_cpu_pct']:.0f} | {r['frames'] / max(1, r['reads']):.1f} "
                f"| {r['other_cpu_pct']:.0f} | {fmt(r['server_peak_rss_mb'], 0)} | {r['check']} |"
            ),
        ),
    ]
    medians, sim = _medians_table(
        rows,
        "max",
        "| median over reps | frames/s | server CPU us/frame | client CPU% | sim / this |",
        [("fps", 0), ("server_us_per_frame", 2), ("client_cpu_pct", 0)],
    )
    verdict = "-" if sim is None else ("met" if sim >= TARGET_FPS else "MISSED")
    out += medians
    out.append(f"\nTarget >= {TARGET_FPS:,} frames/s: **{verdict}** ({fmt(sim, 0)}).")
    return out


def timing_report(
    rows: list[dict[str, Any]], recorded: Recorded, args: argparse.Namespace
) -> list[str]:
    out = [
        _title(
            "1x: timing error of",
            recorded,
            ", 1,000 msg/s",
            args.reps,
            TIMING_SCENARIO,
            args.timing_duration,
        ),
        "Error = arrival offset - recorded offset in ms, offsets from connection open; "
        '"p99 from first frame" counts both from the first frame instead; "first frame at" '
        "is its arrival offset.\n",
        *_harness.runs_table(
            "| server | rep | p50 | p99 | max | min | > 2 ms | p99 from first frame "
            f"| first frame at (recorded {recorded.offsets_ns[0] / 1e6:.3f}) "
            "| server CPU% | client CPU% | other CPU% | check |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            (r for r in rows if r["test"] == "timing"),
            "server",
            lambda r: (
                f"| {r['server']} | {r['rep']} | {r['open_p50_ms']:.3f} | {r['open_p99_ms']:.3f} "
                f"| {r['open_max_ms']:.3f} | {r['open_min_ms']:.3f} | {r['over_2ms_pct']:.2f}% "
                f"| {r['first_p99_ms']:.3f} | {r['open_to_first_ms']:.3f} "
                f"| {r['server_cpu_pct']:.1f} | {r['client_cpu_pct']:.1f} "
                f"| {r['other_cpu_pct']:.0f} | {r['check']} |"
            ),
        ),
    ]
    medians, sim = _medians_table(
        rows,
        "timing",
        "| median over reps | p50 ms | p99 ms | max ms | p99 from first frame ms "
        "| sim p99 / this |",
        [("open_p50_ms", 3), ("open_p99_ms", 3), ("open_max_ms", 3), ("first_p99_ms", 3)],
        headline="open_p99_ms",
    )
    verdict = "-" if sim is None else ("met" if sim < TARGET_P99_MS else "MISSED")
    out += medians
    out.append(f"\nTarget p99 < {TARGET_P99_MS:g} ms: **{verdict}** ({fmt(sim, 3)} ms).")
    return out


# ---------------------------------------------------------------- main

KINDS = {"max": ("sim", "plain", "ceiling"), "timing": ("sim", "plain")}


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

    info = _harness.machine_info()
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
                _harness.keep_row(rows, row, info, args.out)
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
    print(_harness.report_title("sim replay", info, ("websockets",), t0, logdir))
    if "max" in tests:
        print("\n".join(max_report(rows, recordings["max"], args)) + "\n")
    if "timing" in tests:
        print("\n".join(timing_report(rows, recordings["timing"], args)))
    for test in tests:
        recordings[test].path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(_harness.run_main(main, {CLIENT_FLAG: client_child, PLAIN_FLAG: plain_server_child}))
