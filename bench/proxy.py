"""Recording proxy: the latency ``sim record --upstream`` adds, and frames it loses.

Both at 20,000 frames/s, measured beside the same traffic sent direct in the same run.

Target (issue #5): "Recording proxy: added latency p50 under 1 ms and no frame lost at
20,000 frames/s through it." No frame lost means every frame reached the client and
every frame is a row of the recording.

Three processes per run, all on 127.0.0.1, each started fresh and bounded by a timeout:

* upstream (``--upstream-child``): a plain ``websockets`` asyncio server (default loop),
  not sim. On ``/stream?n=N&rate=R`` it sends N ~200-byte JSON text frames
  ``{"seq": i, "due": ns, "t": ns, "pad": ...}`` at R frames/s, paced on the clock in
  batches every ``--batch-ms`` (whatever is due is sent; a late batch catches up), then
  closes with 1000 and reason ``sent N``. ``due`` is the frame's planned send time,
  ``t`` the ``time.monotonic_ns()`` just before ``send``; CLOCK_MONOTONIC is
  system-wide on Linux, so the client can subtract it. On ``/echo`` it sends every
  message back.
* proxy (proxied runs only): the real ``sim record --upstream ws://UPSTREAM --listen
  127.0.0.1:0 --out FILE --quiet``; its URL is its first stdout line.
* client (``--client-child``): a minimal RFC 6455 client over a plain asyncio protocol
  (standard library, default loop), so it costs little CPU. It stamps each frame with
  ``time.monotonic_ns()`` when it reads it; latency = that - ``t``. It checks the
  sequence numbers (lost, duplicated, out of order) against the ``sent N`` close reason.

Direct runs connect the client to the upstream; proxied runs to the proxy, which opens
its own connection to the same kind of upstream. They take turns (direct, proxied,
then proxied, direct, ...) so drift on the machine hits both alike. Added latency is
proxied - direct within each repetition (the two runs are seconds apart), then the
median over repetitions.

After a proxied run the proxy gets SIGTERM and must exit 0 (it compacts the file
first); the recording is read with ``simulator.storage.reader.read_recording`` and
must hold exactly N server text rows on connection 0 with sequence numbers 0..N-1 in
order. The proxy's CPU is read from ``/proc/PID/stat`` over the client's window
(handshake to close) and, in total (start-up and compaction included), from the
rusage of its exit (``os.wait4``); its peak RSS from the same rusage.

"upstream lag" is ``t - due``: how late the upstream sent. When the proxy cannot keep
up, TCP backpressure makes the upstream's ``send`` wait, so the lag grows and the
achieved rate falls below the offered rate; "latency from due" (arrival - ``due``)
then counts the wait too. "> 1 ms" is the share of frames later than 1 ms; "stalls"
counts runs of consecutive frames later than 5 ms (a blocked event loop shows as one
stall per block). "other CPU%" is the machine's busy time minus these three processes
(and softirq): load from unrelated processes, which on 2 cores moves every figure.

Echo (``--echo N``, default 1,000): one client message at a time, ``--echo-gap-ms``
apart, echoed by the upstream; round trip direct vs proxied. With nothing queued, the
difference is the proxy's cost per message for two passes (one each way).

With ``--cprofile DIR`` the proxied stream runs are run under ``python -m cProfile``
(which slows the proxy down: use for where the time goes, not for the figures) and the
top functions of the first profile are printed. ``--proxy-command 'PY SCRIPT'`` runs
that instead of ``.venv/bin/sim`` (followed by ``record --upstream ...``): an A/B of a
patched proxy against the same direct baseline.

    .venv/bin/python bench/proxy.py                         # 3 reps, 20,000 frames/s, 10 s
    .venv/bin/python bench/proxy.py --reps 5 --rate 10000 --seconds 5 --echo 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import _harness
from _harness import HOST, SIM, SIM_PYTHON, CpuSnapshot, Server, WebSocketClient, fmt, median

TARGET_ADDED_P50_MS = 1.0
TARGET_RATE = 20_000
FRAME_BYTES = 200
CLIENT_FLAG = "--client-child"
UPSTREAM_FLAG = "--upstream-child"
UPSTREAM_EXIT_AFTER_S = 600.0  # the upstream stops by itself after this, whatever happens
PROXY_STOP_GRACE_S = 60.0  # SIGTERM to exit: closing, compaction
OTHER_LOAD_PCT = 25.0  # other processes' CPU above which a run is flagged
STALL_MS = 5.0  # a frame later than this is part of a stall


def frame_text(seq: int, due_ns: int, pad: str) -> str:
    """One stream frame. ``t`` is read here, just before the caller sends it."""
    return f'{{"seq":{seq},"due":{due_ns},"t":{time.monotonic_ns()},"pad":"{pad}"}}'


def pad_for(size: int) -> str:
    """Padding that makes :func:`frame_text` about ``size`` bytes (6-digit seq)."""
    return "x" * max(0, size - len(frame_text(100_000, time.monotonic_ns(), "")))


# ---------------------------------------------------------------- upstream (child)


async def _stream(ws: Any, n: int, rate: float, batch_s: float) -> None:
    pad = pad_for(FRAME_BYTES)
    start_ns = time.monotonic_ns()
    period_ns = 1e9 / rate
    i = 0
    while i < n:
        # Everything due by now goes out in one batch; a late batch catches up.
        due = min(n, int((time.monotonic_ns() - start_ns) / period_ns) + 1)
        while i < due:
            await ws.send(frame_text(i, start_ns + int(i * period_ns), pad))
            i += 1
        if i < n:
            await asyncio.sleep(batch_s)
    await ws.close(1000, f"sent {i}")


async def _upstream(batch_s: float, exit_after_s: float) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.call_later(exit_after_s, stopping.set)

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with contextlib.suppress(ConnectionClosed):
            if url.path == "/stream":
                await _stream(ws, int(query["n"]), float(query["rate"]), batch_s)
            elif url.path == "/echo":
                async for message in ws:
                    await ws.send(message)
            else:
                await ws.close(1008, f"unknown path {url.path}")
            await ws.wait_closed()

    async with serve(
        handler, HOST, 0, compression=None, server_header=None, ping_interval=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://{HOST}:{port}", flush=True)
        await stopping.wait()


def upstream_child(argv: list[str]) -> int:
    """``proxy.py --upstream-child BATCH_MS``: serve until SIGTERM (or 10 minutes)."""
    (batch_ms,) = argv
    asyncio.run(_upstream(float(batch_ms) / 1e3, UPSTREAM_EXIT_AFTER_S))
    return 0


# ---------------------------------------------------------------- client (child)


class _Client(WebSocketClient):
    """One connection: every data message handed to ``on_message`` with the time it
    was read."""

    def __init__(self, port: int, path: str, on_message: Callable[[bytes, int], None]) -> None:
        super().__init__(port, path)
        self.on_message = on_message
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[tuple[int, str]] = loop.create_future()
        self.fragments: list[bytes] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_open(f"connection lost ({exc})" if exc else "connection lost")
        if not self.closed.done():
            self.closed.set_result((1006, ""))

    def handshake_done(self, now: int) -> None:
        self.opened.set_result(None)

    def frames_received(self, buf: bytearray, frames: list[tuple[int, int, int]], now: int) -> None:
        for b0, start, stop_at in frames:
            payload = bytes(buf[start:stop_at])
            opcode = b0 & 0x0F
            if opcode <= 2:  # continuation, text, binary
                # Micro-optimization: the common case (one unfragmented frame) first.
                if b0 & 0x80 and not self.fragments:
                    self.on_message(payload, now)
                elif b0 & 0x80:
                    self.on_message(b"".join([*self.fragments, payload]), now)
                    self.fragments.clear()
                else:
                    self.fragments.append(payload)
            elif opcode == 8:
                code = int.from_bytes(payload[:2]) if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result((code, payload[2:].decode(errors="replace")))
                # 5.5.1: "the endpoint MUST send a Close frame in response"
                self.send(0x8, payload[:2])
                assert self.transport is not None
                self.transport.close()
            elif opcode == 9:  # 5.5.2: "an endpoint MUST send a Pong frame in response"
                self.send(0xA, payload)

    def _fail_open(self, why: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(why))

    def fail(self, why: str) -> None:
        self._fail_open(why)
        if not self.closed.done():
            self.closed.set_result((1002, why))
        if self.transport is not None:
            self.transport.abort()


def _percentiles(values_ms: Any) -> dict[str, float]:
    import numpy as np

    if len(values_ms) == 0:
        return {}
    return {
        "p50": float(np.percentile(values_ms, 50)),
        "p99": float(np.percentile(values_ms, 99)),
        "p999": float(np.percentile(values_ms, 99.9)),
        "max": float(np.max(values_ms)),
    }


async def _connect(port: int, path: str, on_message: Callable[[bytes, int], None]) -> _Client:
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: _Client(port, path, on_message), HOST, port), 10
    )
    await asyncio.wait_for(asyncio.shield(client.opened), 30)
    return client


async def _stream_client(
    port: int, n: int, rate: float, timeout_s: float, pids: tuple[int, int]
) -> dict[str, Any]:
    import numpy as np

    arrivals = array("q")
    payloads: list[bytes] = []

    def on_message(payload: bytes, now: int) -> None:
        arrivals.append(now)
        payloads.append(payload)

    client = await _connect(port, f"/stream?n={n}&rate={rate:g}", on_message)
    first = CpuSnapshot.take(pids)
    try:
        code, reason = await asyncio.wait_for(asyncio.shield(client.closed), timeout_s)
    except TimeoutError:
        code, reason = 0, f"timed out after {timeout_s:g} s"
        client.fail(reason)
    last = CpuSnapshot.take(pids)
    await asyncio.sleep(0.05)  # let the close frame go out
    out: dict[str, Any] = {"close_code": code, "close_reason": reason}
    out.update(_harness.cpu_figures(first, last, ("proxy", "upstream")))
    sent = int(reason[5:]) if reason.startswith("sent ") and reason[5:].isdigit() else None
    records = [json.loads(p) for p in payloads]
    seq = np.fromiter((r["seq"] for r in records), dtype=np.int64, count=len(records))
    due = np.fromiter((r["due"] for r in records), dtype=np.int64, count=len(records))
    t = np.fromiter((r["t"] for r in records), dtype=np.int64, count=len(records))
    at = np.frombuffer(arrivals, dtype=np.int64)
    unique = len(np.unique(seq))
    expected = sent if sent is not None else n
    out.update(
        sent=sent,
        received=len(seq),
        duplicates=len(seq) - unique,
        lost=expected - int(np.isin(np.arange(expected), seq).sum()),
        out_of_order=int(np.sum(np.diff(seq) < 0)) if len(seq) > 1 else 0,
        bytes_per_frame=sum(map(len, payloads)) / max(1, len(payloads)),
    )
    if len(at) > 1:
        out["rate"] = (len(at) - 1) / ((at[-1] - at[0]) / 1e9)
        out["send_rate"] = (len(t) - 1) / ((t.max() - t.min()) / 1e9)
        out["latency_ms"] = _percentiles((at - t) / 1e6)
        out["from_due_ms"] = _percentiles((at - due) / 1e6)
        out["lag_ms"] = _percentiles((t - due) / 1e6)
        # Stalls: runs of consecutive frames later than STALL_MS (e.g. the loop blocked).
        late = (at - t) > STALL_MS * 1e6
        out["over_1ms_pct"] = float(100 * np.mean((at - t) > 1e6))
        out["stalls"] = int(late[0]) + int(np.sum(late[1:] & ~late[:-1]))
    return out


async def _echo_client(
    port: int, count: int, gap_s: float, timeout_s: float, pids: tuple[int, int]
) -> dict[str, Any]:
    import numpy as np

    loop = asyncio.get_running_loop()
    waiter: list[asyncio.Future[tuple[bytes, int]]] = []

    def on_message(payload: bytes, now: int) -> None:
        if waiter and not waiter[0].done():
            waiter[0].set_result((payload, now))

    client = await _connect(port, "/echo", on_message)
    first = CpuSnapshot.take(pids)
    pad = pad_for(FRAME_BYTES)
    rtts = array("q")
    mismatched = 0
    deadline = loop.time() + timeout_s
    for i in range(count):
        if loop.time() > deadline:
            break
        waiter[:] = [loop.create_future()]
        sent = frame_text(i, time.monotonic_ns(), pad).encode()
        t0 = time.monotonic_ns()
        client.send(0x1, sent)
        try:
            got, t1 = await asyncio.wait_for(waiter[0], 5)
        except TimeoutError:
            break
        rtts.append(t1 - t0)
        mismatched += got != sent
        await asyncio.sleep(gap_s)
    last = CpuSnapshot.take(pids)
    client.send(0x8, (1000).to_bytes(2))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(client.closed), 5)
    out: dict[str, Any] = {"sent": count, "received": len(rtts), "mismatched": mismatched}
    out.update(_harness.cpu_figures(first, last, ("proxy", "upstream")))
    out["rtt_ms"] = _percentiles(np.frombuffer(rtts, dtype=np.int64) / 1e6)
    return out


def client_child(argv: list[str]) -> int:
    """``proxy.py --client-child JSON``: one JSON line of results on stdout."""
    p = json.loads(argv[0])
    pids = (int(p["proxy_pid"]), int(p["upstream_pid"]))
    if p["test"] == "stream":
        coro = _stream_client(p["port"], p["n"], p["rate"], p["timeout_s"], pids)
    else:
        coro = _echo_client(p["port"], p["n"], p["gap_s"], p["timeout_s"], pids)
    print(json.dumps(asyncio.run(coro)), flush=True)
    return 0


# ---------------------------------------------------------------- the proxy


def proxy_argv(
    upstream_port: int, out: Path, profile: Path | None, command: list[str] | None
) -> list[str]:
    args = [
        "record",
        "--upstream",
        f"ws://{HOST}:{upstream_port}",
        "--listen",
        f"{HOST}:0",
        "--out",
        str(out),
        "--quiet",
    ]
    if command is not None:
        return [*command, *args]
    if profile is None:
        return [str(SIM), *args]
    return [str(SIM_PYTHON), "-m", "cProfile", "-o", str(profile), "-m", "simulator", *args]


@dataclass(frozen=True, slots=True)
class Exited:
    returncode: int
    stop_s: float  # SIGTERM to exit
    cpu_s: float  # whole life, from rusage
    peak_rss_mb: float
    killed: bool


def stop_measured(server: Server, grace_s: float) -> Exited:
    """SIGTERM ``server``, reap it with ``os.wait4`` for its rusage; SIGKILL it if it
    has not exited after ``grace_s``."""
    proc = server.proc
    t0 = time.monotonic()
    killed = False
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - t0 > grace_s:
            killed = server.killed = True
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    stop_s = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    return Exited(
        proc.returncode,
        stop_s,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        killed,
    )


def check_recording(path: Path, server_rows: int, client_rows: int) -> dict[str, Any]:
    """What the proxy recorded on connection 0, against what was sent: data rows per
    direction and the stream's sequence numbers."""
    import polars as pl

    from simulator.errors import RecordingError
    from simulator.storage.reader import read_recording

    try:
        frame = read_recording(path).frame
    except RecordingError as e:
        return {"recording": f"unreadable: {e}"}
    rows = (
        frame.filter(pl.col("conn") == 0)
        .sort("seq")
        .with_columns(pl.col("sender").cast(pl.String), pl.col("kind").cast(pl.String))
    )
    texts = rows.filter(pl.col("kind") == "text")
    server = texts.filter(pl.col("sender") == "server")["payload"].to_list()
    client = texts.filter(pl.col("sender") == "client").height
    seqs = [json.loads(p)["seq"] for p in server]
    in_order = seqs == list(range(len(seqs)))
    problems = []
    if len(server) != server_rows:
        problems.append(f"{len(server):,}/{server_rows:,} server rows")
    if client != client_rows:
        problems.append(f"{client:,}/{client_rows:,} client rows")
    if not in_order:
        problems.append("server rows not 0..N-1 in order")
    return {
        "recorded_rows": frame.height,
        "recorded_server_text": len(server),
        "recorded_client_text": client,
        "recording": "ok" if not problems else "; ".join(problems),
    }


# ---------------------------------------------------------------- one run


def run_one(
    test: str, kind: str, rep: int, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    """A fresh upstream (and proxy), one client; its figures, checked, as a row."""
    row: dict[str, Any] = {"test": test, "path": kind, "rep": rep}
    row["busy_before_pct"] = _harness.wait_quiet(args.quiet_max_s)
    name = f"{test}-{kind}-rep{rep}"
    if test == "stream":
        n = int(args.rate * args.seconds)
        timeout_s = 3 * args.seconds + 30
        params: dict[str, Any] = {"test": test, "n": n, "rate": args.rate}
    else:
        n = args.echo
        timeout_s = n * (args.echo_gap_ms / 1e3 + 0.005) + 30
        params = {"test": test, "n": n, "gap_s": args.echo_gap_ms / 1e3}
    params["timeout_s"] = timeout_s
    try:
        upstream = _harness.start_url_server(
            "upstream",
            [str(SIM_PYTHON), str(Path(__file__).resolve()), UPSTREAM_FLAG, str(args.batch_ms)],
            logdir / f"{name}-upstream.log",
        )
    except RuntimeError as e:
        row["failed"] = str(e)
        return row
    proxy: Server | None = None
    out = logdir / f"{name}.parquet"
    profile = None
    if args.cprofile is not None and kind == "proxied" and test == "stream":
        profile = args.cprofile / f"{name}.prof"
    try:
        port = upstream.port
        if kind == "proxied":
            try:
                proxy = _harness.start_url_server(
                    "proxy",
                    proxy_argv(upstream.port, out, profile, args.proxy_command),
                    logdir / f"{name}-proxy.log",
                )
            except RuntimeError as e:
                row["failed"] = str(e)
                return row
            port = proxy.port
        params.update(port=port, proxy_pid=proxy.pid if proxy else 0, upstream_pid=upstream.pid)
        result, why = _harness.run_client(
            [str(SIM_PYTHON), str(Path(__file__).resolve()), CLIENT_FLAG, json.dumps(params)],
            timeout_s + 30,
        )
        if proxy is not None:
            exited = stop_measured(proxy, PROXY_STOP_GRACE_S)
            row.update(
                proxy_rc=exited.returncode,
                proxy_stop_s=exited.stop_s,
                proxy_total_cpu_s=exited.cpu_s,
                proxy_peak_rss_mb=exited.peak_rss_mb,
                proxy_killed=exited.killed,
            )
    finally:
        if proxy is not None:
            _harness.stop_server(proxy)
        _harness.stop_server(upstream)
    if result is None:
        row["failed"] = why
        return row
    row.update(result)
    row["other_cpu_pct"] = max(
        0.0,
        row["machine_busy_pct"]
        - row["softirq_pct"]
        - row["client_cpu_pct"]
        - row["proxy_cpu_pct"]
        - row["upstream_cpu_pct"],
    )
    if kind == "proxied":
        if test == "stream":
            row.update(check_recording(out, row.get("sent") or n, 0))
            row["proxy_us_per_frame"] = 1e6 * row["proxy_cpu_s"] / max(1, row["received"])
        else:
            row.update(check_recording(out, row["received"], row["received"]))
        with contextlib.suppress(OSError):
            row["recording_mb"] = out.stat().st_size / 2**20
            out.unlink()
    return row


# ---------------------------------------------------------------- report


def _ok(rows: list[dict[str, Any]], test: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["test"] == test and r["path"] == kind and not r.get("failed")]


def _pct(r: dict[str, Any], key: str, q: str) -> float | None:
    value = (r.get(key) or {}).get(q)
    return None if value is None else float(value)


def _added(rows: list[dict[str, Any]], test: str, key: str, q: str) -> float | None:
    """Median over reps of proxied - direct, each rep's pair taken together."""
    diffs: list[float | None] = []
    for d in _ok(rows, test, "direct"):
        for p in _ok(rows, test, "proxied"):
            a, b = _pct(d, key, q), _pct(p, key, q)
            if p["rep"] == d["rep"] and a is not None and b is not None:
                diffs.append(b - a)
    return median(diffs)


def _no_loss(r: dict[str, Any]) -> bool:
    clean = r.get("lost") == 0 and r.get("duplicates") == 0 and r.get("out_of_order") == 0
    return clean and r.get("recording", "ok") == "ok" and r.get("proxy_rc", 0) == 0


def _stream_line(r: dict[str, Any]) -> str:
    proxied = r["path"] == "proxied"
    exit_cell = (
        f"{r['proxy_rc']}, {r['proxy_stop_s']:.2f}, {r['proxy_total_cpu_s']:.1f}, "
        f"{r['proxy_peak_rss_mb']:.0f}"
        if proxied
        else "-"
    )
    recording = f"{r['recorded_server_text']:,} rows: {r['recording']}" if proxied else "-"
    if proxied and "recorded_server_text" not in r:
        recording = r.get("recording", "-")
    return (
        f"| {r['path']} | {r['rep']} | {fmt(r['sent'], 0)} | {r['received']:,} "
        f"| {r['lost']:,} | {r['duplicates']} | {r['out_of_order']} "
        f"| {fmt(_pct(r, 'latency_ms', 'p50'), 3)} / {fmt(_pct(r, 'latency_ms', 'p99'), 3)} "
        f"/ {fmt(_pct(r, 'latency_ms', 'max'), 1)} | {fmt(r.get('over_1ms_pct'), 2)}% "
        f"| {r.get('stalls', '-')} | {fmt(_pct(r, 'from_due_ms', 'p99'), 3)} "
        f"| {fmt(_pct(r, 'lag_ms', 'p99'), 3)} "
        f"| {fmt(r.get('rate'), 0)} | {fmt(r['proxy_cpu_pct'], 0) if proxied else '-'} "
        f"| {fmt(r.get('proxy_us_per_frame'), 1)} | {r['upstream_cpu_pct']:.0f} "
        f"| {r['client_cpu_pct']:.0f} | {r['other_cpu_pct']:.0f} | {recording} "
        f"| {exit_cell} |"
    )


def stream_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    n = int(args.rate * args.seconds)
    out = [
        f"### Stream: {n:,} frames of ~{FRAME_BYTES} B offered at {args.rate:,.0f}/s "
        f"({args.seconds:g} s, batches every {args.batch_ms:g} ms), one client, "
        f"{args.reps} reps\n",
        "Latency = client read - upstream send (`t`), ms. Lag = how late the upstream "
        "sent (`t` - `due`): backpressure. CPU% of one core over the client's window.\n",
        *_harness.runs_table(
            "| path | rep | sent | received | lost | dup | out of order "
            f"| latency p50 / p99 / max | > 1 ms | stalls > {STALL_MS:g} ms | from due p99 "
            "| upstream lag p99 | frames/s received | proxy CPU% | proxy CPU us/frame "
            "| upstream CPU% | client CPU% | other CPU% | recording "
            "| proxy exit (rc, s after SIGTERM, total CPU s, peak RSS MB) |",
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
            (r for r in rows if r["test"] == "stream"),
            "path",
            _stream_line,
        ),
    ]
    out += [
        "",
        "| median over reps | latency p50 ms | p99 ms | max ms | > 1 ms | stalls "
        "| from due p99 ms | frames/s received | lost (worst rep) | proxy CPU% "
        "| proxy CPU us/frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("direct", "proxied"):
        ok = _ok(rows, "stream", kind)
        out.append(
            f"| {kind} | {fmt(median([_pct(r, 'latency_ms', 'p50') for r in ok]), 3)} "
            f"| {fmt(median([_pct(r, 'latency_ms', 'p99') for r in ok]), 3)} "
            f"| {fmt(median([_pct(r, 'latency_ms', 'max') for r in ok]), 1)} "
            f"| {fmt(median([r.get('over_1ms_pct') for r in ok]), 2)}% "
            f"| {fmt(median([r.get('stalls') for r in ok]), 0)} "
            f"| {fmt(median([_pct(r, 'from_due_ms', 'p99') for r in ok]), 3)} "
            f"| {fmt(median([r.get('rate') for r in ok]), 0)} "
            f"| {max((r['lost'] for r in ok), default='-')} "
            f"| {fmt(median([r['proxy_cpu_pct'] for r in ok]), 0) if kind == 'proxied' else '-'} "
            f"| {fmt(median([r.get('proxy_us_per_frame') for r in ok]), 1)} |"
        )
    busy = [
        f"{r['path']} rep {r['rep']} ({r['other_cpu_pct']:.0f}%)"
        for r in rows
        if r["test"] == "stream" and r.get("other_cpu_pct", 0) > OTHER_LOAD_PCT
    ]
    if busy:
        out.append(
            f"\nOther processes used more than {OTHER_LOAD_PCT:g}% of a core during: "
            f"{', '.join(busy)}; those runs say more about the machine than the proxy."
        )
    added50 = _added(rows, "stream", "latency_ms", "p50")
    added99 = _added(rows, "stream", "latency_ms", "p99")
    proxied = [r for r in rows if r["test"] == "stream" and r["path"] == "proxied"]
    all_kept = bool(proxied) and all(not r.get("failed") and _no_loss(r) for r in proxied)
    p50_met = added50 is not None and added50 < TARGET_ADDED_P50_MS
    out += [
        "",
        f"Added by the proxy (proxied - direct, median over reps): latency p50 "
        f"**{fmt(added50, 3)} ms**, p99 **{fmt(added99, 3)} ms**; from due p99 "
        f"{fmt(_added(rows, 'stream', 'from_due_ms', 'p99'), 3)} ms.",
        "",
        f"Target: added p50 < {TARGET_ADDED_P50_MS:g} ms "
        f"**{'met' if p50_met else 'MISSED'}**; no frame lost (to the client or the file, "
        f"every proxied rep) **{'met' if all_kept else 'MISSED'}**; at {args.rate:,.0f} "
        f"frames/s offered{'' if args.rate >= TARGET_RATE else ' (below the target rate)'}.",
    ]
    return out


def echo_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    out = [
        f"### Echo: {args.echo:,} round trips of ~{FRAME_BYTES} B, one at a time, "
        f"{args.echo_gap_ms:g} ms apart, {args.reps} reps\n",
        *_harness.runs_table(
            "| path | rep | round trips | mismatched | RTT p50 / p99 / max ms | recording |",
            "|---|---|---:|---:|---|---|",
            (r for r in rows if r["test"] == "echo"),
            "path",
            lambda r: (
                f"| {r['path']} | {r['rep']} | {r['received']:,}/{r['sent']:,} "
                f"| {r['mismatched']} | {fmt(_pct(r, 'rtt_ms', 'p50'), 3)} "
                f"/ {fmt(_pct(r, 'rtt_ms', 'p99'), 3)} / {fmt(_pct(r, 'rtt_ms', 'max'), 3)} "
                f"| {r.get('recording', '-')} |"
            ),
        ),
    ]
    out += ["", "| median over reps | RTT p50 ms | RTT p99 ms |", "|---|---:|---:|"]
    for kind in ("direct", "proxied"):
        ok = _ok(rows, "echo", kind)
        out.append(
            f"| {kind} | {fmt(median([_pct(r, 'rtt_ms', 'p50') for r in ok]), 3)} "
            f"| {fmt(median([_pct(r, 'rtt_ms', 'p99') for r in ok]), 3)} |"
        )
    a50, a99 = _added(rows, "echo", "rtt_ms", "p50"), _added(rows, "echo", "rtt_ms", "p99")
    out.append(
        f"\nAdded per round trip (two passes through the proxy): p50 **{fmt(a50, 3)} ms**, "
        f"p99 **{fmt(a99, 3)} ms**; per pass about {fmt(None if a50 is None else a50 / 2, 3)} ms."
    )
    return out


def profile_report(path: Path, top: int = 25) -> list[str]:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    title = f"### cProfile of the proxy ({path}), top {top} by own time\n"
    return [title, "```", *lines[-(top + 1) :], "```"]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="frames/s offered")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the stream")
    ap.add_argument("--batch-ms", type=float, default=1.0, help="upstream pacing interval")
    ap.add_argument("--echo", type=int, default=1000, help="round trips (0: no echo test)")
    ap.add_argument("--echo-gap-ms", type=float, default=1.0)
    ap.add_argument("--quiet-max-s", type=float, default=5.0)
    ap.add_argument("--cprofile", type=Path, default=None, help="profile proxied streams here")
    ap.add_argument(
        "--proxy-command",
        type=shlex.split,
        default=None,
        help="run this instead of .venv/bin/sim (e.g. '.venv/bin/python patched.py'), "
        "followed by 'record --upstream ...': to compare a patched proxy",
    )
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.batch_ms <= 0:
        ap.error("--rate, --seconds and --batch-ms must be > 0")
    if args.cprofile is not None:
        args.cprofile.mkdir(parents=True, exist_ok=True)

    info = _harness.machine_info()
    print(f"# proxy: {json.dumps(info)}", file=sys.stderr)
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-proxy-"))
    tests = ["stream"] + (["echo"] if args.echo > 0 else [])
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for test in tests:
            kinds = ("direct", "proxied") if rep % 2 else ("proxied", "direct")
            for kind in kinds:
                row = run_one(test, kind, rep, args, logdir)
                _harness.keep_row(rows, row, info, args.out)
                if row.get("failed"):
                    msg = f"failed: {row['failed']}"
                elif test == "stream":
                    msg = (
                        f"{row['received']:,} received, {row['lost']} lost, latency p50 "
                        f"{fmt(_pct(row, 'latency_ms', 'p50'), 3)} p99 "
                        f"{fmt(_pct(row, 'latency_ms', 'p99'), 3)} ms, "
                        f"{fmt(row.get('rate'), 0)} frames/s, proxy CPU "
                        f"{row['proxy_cpu_pct']:.0f}%, recording {row.get('recording', '-')}"
                    )
                else:
                    msg = (
                        f"RTT p50 {fmt(_pct(row, 'rtt_ms', 'p50'), 3)} p99 "
                        f"{fmt(_pct(row, 'rtt_ms', 'p99'), 3)} ms"
                    )
                print(f"# {test} {kind} rep={rep}: {msg}", file=sys.stderr, flush=True)
    print(_harness.report_title("sim record proxy", info, ("websockets", "sim"), t0, logdir))
    print("\n".join(stream_report(rows, args)))
    if "echo" in tests:
        print("\n" + "\n".join(echo_report(rows, args)))
    if args.cprofile is not None:
        first = sorted(args.cprofile.glob("stream-proxied-rep*.prof"))
        if first:
            print("\n" + "\n".join(profile_report(first[0])))
    return 0


if __name__ == "__main__":
    sys.exit(_harness.run_main(main, {CLIENT_FLAG: client_child, UPSTREAM_FLAG: upstream_child}))
