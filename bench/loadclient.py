"""Client-side lateness and delivery of a broadcast feed: the load client of the #14 benches.

Opens C WebSocket connections to ``ws://127.0.0.1:PORT`` (spread over ``-p`` worker
processes), waits ``-w`` seconds once all are connected, then for ``-d`` seconds counts
the text frames each connection receives and, on every ``--stride``-th frame of each
connection, reads the message's own ``timestamp`` and ``seq``. It prints one JSON object
(and a one-line summary on stderr). Run it with the anchors' venv (picows, uvloop)::

    /tmp/sim-anchors/.venv/bin/python bench/loadclient.py --port 3002 -c 1000 --rate 100 \\
        -d 5 -w 1.5 --server-pid PID

Two clients, one output (``--clock``):

- ``kernel`` (default): a plain ``epoll`` loop over non-blocking sockets with
  ``SO_TIMESTAMPNS`` on; a frame *arrives* at the kernel's receive time of the read that
  completed it (the newest segment in that read, so a frame that came in an earlier
  segment of the same read is timed a little late, never early). The client's own
  queueing (reading 10,000 sockets one after another after a broadcast) is left out; it
  is reported apart as ``lateness_read_ms`` (the time the read returned).
- ``read``: picows + uvloop (as the anchors' ``loadgen.py``); a frame arrives when
  picows hands it over, so the figure includes the client's queueing.

What it reports. The window is ``-d`` seconds of arrival time for the counts and the
CPU figures; the sampled frames are those whose ``timestamp`` falls in the same window of
wall time, wherever they arrive up to ``--grace`` s (default 1) after it, so a frame due
in the window and delivered late is measured instead of being cut off at its end.

- **delivered**: text frames received by all connections in the window, per second;
  per-connection min / mean / max msg/s; and, with ``--rate`` (the server's msg/s per
  connection), in % of the offered ``C x rate x window``. At stride 1 that % counts the
  frames *stamped* in the window (``delivered_by: timestamp``), exact even for a few
  messages a connection (C10k at 1 msg/s); at a larger stride it counts arrivals
  (``delivered_by: arrival``), within about ``1 / (rate x window)`` of it.
- **lateness** = arrival wall time (see ``--clock``) - the message's ISO
  ``timestamp``, parsed with every digit of its fraction (the
  resolution is reported: ``1 ms`` for sim and the references, whose stamps are
  truncated to the millisecond, so a figure may be up to 1 ms high). For ``sim run`` on a
  scenario without ``epoch`` the stamp is the message's *scheduled* time; for the
  references (the anchors' node and bun servers) it is the time the message was created.
  p50, p99, p99.9, max, and the share of samples later than 1, 2, 10, 50, 100 and
  250 ms. With ``--clock read`` it includes the client's own time to get to the
  frame: when a broadcast reaches all C connections at once, the client reads them one
  after another, about ``client_us_per_frame`` each (its CPU in the window / frames).
- **gaps** (drops seen by the client): the first ``"seq":N`` in the message (sim: the
  envelope's per-stream ``seq``; the references: ``data.seq``). Per connection, between
  its first and last sampled frame in the window, ``(seq_last - seq_first) - (frames
  received between them)``: exact at any stride as long as the server keeps order. A
  server that skips a message for everyone before numbering it (the references' BENCH
  loop, when it falls behind) makes no gap; that shows as **source msg/s** below
  ``--rate``: how fast ``seq`` advanced against the stamps (median over connections).
- **CPU**: the server's (``--server-pid``, user + system, % of one core), its RSS at the
  end and its peak (``VmHWM``, since it started); the client's own (all workers); the
  machine's busy % (of one core; the maximum is 100 x CPUs) and ``other procs``: busy less
  softirq, server and client, i.e. load from unrelated processes.
- **errors**: connections that failed to open (with examples), disconnects in the window
  and in all, non-text frames.

The stride (``--stride``, a power of two; ``0`` = auto) keeps the client's parsing cost
small: auto picks the smallest stride that keeps samples under ~50,000/s in all (so every
frame below 50,000 offered frames/s), and 16 when ``--rate`` is not given. Every frame is
counted whatever the stride. Bounds: ``-d`` <= 60 s, ``-w`` <= 20 s, connecting <= 90 s,
a hard wall-clock deadline kills the workers, loopback hosts only.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import calendar
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import select
import socket
import statistics
import struct
import sys
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from _harness import (
    ServerProtocolError,
    client_frame,
    handshake_request,
    handshake_response,
    parse_server_frames,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_DURATION_S = 60.0
MAX_WARMUP_S = 20.0
CONNECT_LIMIT_S = 90.0
SAMPLES_PER_S = 50_000  # auto stride: at most about this many parsed frames a second
OVER_MS = (1, 2, 10, 50, 100, 250)  # the shares of samples later than these are reported


# ---------------------------------------------------------------- /proc


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid`` so far, and user alone (NaN once it has
    gone): the kernel's share is the sends themselves, the same for every server that
    makes as many; user time is what a server adds to them."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan"), float("nan")
    user, system = int(fields[11]), int(fields[12])
    return (user + system) / CLK_TCK, user / CLK_TCK


def proc_mem_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of ``pid`` in KiB ({} once it has gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, softirq, total) jiffies over all CPUs; busy is all but idle and iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, softirq, sum(v)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of a sorted, non-empty list."""
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def raise_fd_limit() -> int:
    """Raise this process's soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- parsing


def stamp_ns(payload: bytes | bytearray, cache: dict[bytes, int]) -> tuple[int, int] | None:
    """The first ``"timestamp":"YYYY-MM-DDTHH:MM:SS[.f...]Z"`` in ``payload`` as Unix ns,
    and the number of fraction digits; ``None`` when there is none. Whole seconds are
    looked up in ``cache`` (a feed's stamps share them)."""
    i = payload.find(b'"timestamp":"')
    if i < 0:
        return None
    i += 13
    head = bytes(payload[i : i + 19])
    sec = cache.get(head)
    if sec is None:
        try:
            sec = calendar.timegm(time.strptime(head.decode(), "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        cache[head] = sec
    ns = sec * 1_000_000_000
    if payload[i + 19 : i + 20] != b".":
        return ns, 0
    j = k = i + 20
    end = len(payload)
    while k < end and 48 <= payload[k] <= 57:
        k += 1
    digits = min(k - j, 9)
    if digits:
        ns += int(payload[j : j + digits]) * 10 ** (9 - digits)
    return ns, digits


def first_seq(payload: bytes | bytearray) -> int | None:
    """The value of the first ``"seq":N`` in ``payload``, or ``None``."""
    i = payload.find(b'"seq":')
    if i < 0:
        return None
    i += 6
    j, end = i, len(payload)
    while j < end and 48 <= payload[j] <= 57:
        j += 1
    return int(payload[i:j]) if j > i else None


def seq_figures(
    ends: list[tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]],
) -> dict[str, Any]:
    """Gaps and source rate from each connection's first and last sample in the window,
    each ``(seq, frames received so far, stamp ns)``: frames between them that the seqs
    say were sent and the count says never came."""
    gaps, spans, backwards, seq_rates = 0, 0, 0, [0.0]
    for first, last in ends:
        if first is None or last is None or last is first:
            continue
        seq_span = last[0] - first[0]
        missing = seq_span - (last[1] - first[1])
        if missing < 0:  # more frames than seqs: duplicates or a restart
            backwards += 1
        else:
            gaps += missing
        spans += seq_span
        if last[2] > first[2]:
            seq_rates.append(seq_span * 1e9 / (last[2] - first[2]))
    return {
        "gaps": gaps,
        "seq_spans": spans,
        "conns_backwards": backwards,
        "seq_rate": statistics.median(seq_rates[1:] or seq_rates),
    }


# ---------------------------------------------------------------- worker


def worker(
    nconn: int, url: str, stride: int, grace_s: float, connect_conc: int, pipe: Connection
) -> None:
    """One worker process: ``nconn`` connections, told the window by the parent."""
    import uvloop  # type: ignore[import-not-found]  # the anchors' venv has them
    from picows import WSListener, WSMsgType, ws_connect  # type: ignore[import-not-found]

    text = WSMsgType.TEXT
    mask = stride - 1
    lat = array("q")  # lateness samples, ns
    # Sampled frames count when their timestamp is in the window [lo, hi) (wall ns),
    # whenever they arrive up to --grace s after it: so a frame scheduled in the window
    # and delivered late is measured, not cut off by the window's end.
    state = {"on": False, "lo": 0, "hi": 0, "disc": 0, "nontext": 0, "digits": 99}
    state.update(unstamped=0, in_window=0)
    cache: dict[bytes, int] = {}
    wall = time.time_ns

    class Listener(WSListener):  # type: ignore[misc]
        __slots__ = ("first", "last", "n")

        def __init__(self) -> None:
            self.n = random.randrange(stride)  # de-synchronise sampling across connections
            # (seq, n, stamp ns) of the first and last sample in the window
            self.first: tuple[int, int, int] | None = None
            self.last: tuple[int, int, int] | None = None

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not text:
                state["nontext"] += 1
                return
            n = self.n = self.n + 1
            if n & mask or not state["on"]:
                return
            now = wall()
            payload = frame.get_payload_as_bytes()
            stamp = stamp_ns(payload, cache)
            if stamp is None:
                state["unstamped"] += 1
                if now >= state["hi"]:
                    return
                stamp = (now, 0)
            else:
                if not state["lo"] <= stamp[0] < state["hi"]:
                    return
                state["in_window"] += 1
                lat.append(now - stamp[0])
                if stamp[1] < state["digits"]:
                    state["digits"] = stamp[1]
            seq = first_seq(payload)
            if seq is not None:
                self.last = (seq, n, stamp[0])
                if self.first is None:
                    self.first = self.last

        def on_ws_disconnected(self, transport: Any) -> None:
            state["disc"] += 1

    async def run() -> None:
        sem = asyncio.Semaphore(connect_conc)
        listeners: list[Listener] = []
        errors: list[str] = []

        async def one() -> None:
            async with sem:
                try:
                    _, listener = await ws_connect(
                        Listener, url, websocket_handshake_timeout=10, enable_auto_ping=False
                    )
                    listeners.append(listener)
                except Exception as e:
                    errors.append(f"{type(e).__name__}: {str(e)[:80]}")

        try:
            await asyncio.wait_for(asyncio.gather(*(one() for _ in range(nconn))), CONNECT_LIMIT_S)
        except TimeoutError:
            errors.append("connect phase timeout")
        pipe.send(("ready", len(listeners)))
        loop = asyncio.get_running_loop()
        t_start, t_end = await loop.run_in_executor(None, pipe.recv)
        await asyncio.sleep(max(0.0, t_start - time.monotonic()))
        disc0 = state["disc"]
        n0 = [x.n for x in listeners]
        cpu0 = os.times()
        w0 = time.monotonic()
        state["lo"] = wall()
        state["hi"] = state["lo"] + round((t_end - w0) * 1e9)
        state["on"] = True
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        w1 = time.monotonic()
        n1 = [x.n for x in listeners]
        cpu1 = os.times()
        await asyncio.sleep(grace_s)  # frames stamped in the window, arriving late
        state["on"] = False
        cpu2 = os.times()
        seqs = seq_figures([(x.first, x.last) for x in listeners])
        pipe.send(
            (
                "result",
                {
                    "connected": len(listeners),
                    "counts": [b - a for a, b in zip(n0, n1, strict=True)],
                    "window_s": w1 - w0,
                    "lat": lat.tobytes(),
                    "digits": state["digits"],
                    "unstamped": state["unstamped"],
                    **seqs,
                    "lat_read": b"",
                    "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                    "grace_cpu_s": (cpu2.user - cpu1.user) + (cpu2.system - cpu1.system),
                    "in_window": state["in_window"],
                    "stamp_window_s": (state["hi"] - state["lo"]) / 1e9,
                    "errors": errors,
                    "disconnects_in_window": state["disc"] - disc0,
                    "disconnects_total": state["disc"],
                    "nontext": state["nontext"],
                },
            )
        )

    uvloop.run(run())
    os._exit(0)  # closing thousands of sockets one by one would take longer than the run


# ---------------------------------------------------------------- kernel-clock worker

# Linux: ask for the kernel's receive time of each read (CLOCK_REALTIME, struct timespec
# of two longs); the socket module does not name these (asm-generic/socket.h).
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@qq")
READ_BYTES = 262_144


class RawConnection:
    """One connection of :func:`raw_worker`: its socket, unparsed bytes and tallies."""

    __slots__ = ("buf", "first", "last", "n", "open", "sock")

    def __init__(self, sock: socket.socket, leftover: bytearray, stride: int) -> None:
        self.sock = sock
        self.buf = leftover
        self.n = random.randrange(stride)  # de-synchronise sampling across connections
        self.first: tuple[int, int, int] | None = None
        self.last: tuple[int, int, int] | None = None
        self.open = True


def raw_connect(port: int, path: str) -> tuple[socket.socket, bytearray]:
    """A WebSocket connection opened with blocking calls (10 s at most), with receive
    timestamps on; the bytes after the handshake response."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        request, key = handshake_request(port, path)
        sock.sendall(request)
        buf = bytearray()
        while not handshake_response(buf, key):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            buf += chunk
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, buf


def raw_worker(
    nconn: int,
    port: int,
    path: str,
    stride: int,
    grace_s: float,
    connect_conc: int,
    pipe: Connection,
) -> None:
    """One worker process on a plain epoll loop: ``nconn`` connections whose frames are
    timed by the kernel's receive timestamp of the read that completed them (the last
    segment in it: a frame that came in an earlier segment of the same read is timed a
    little late, never early), so the client's own queueing is left out. The read time
    (``time.time_ns()`` after ``recvmsg``) is kept too, as ``lat_read``."""
    mask = stride - 1
    lat = array("q")
    lat_read = array("q")
    cache: dict[bytes, int] = {}
    digits, unstamped, in_window, nontext, disc, unclocked = 99, 0, 0, 0, 0, 0
    errors: list[str] = []
    conns: dict[int, RawConnection] = {}
    deadline = time.monotonic() + CONNECT_LIMIT_S

    def connect_one(_: int) -> tuple[socket.socket, bytearray] | str:
        if time.monotonic() > deadline:
            return "connect phase timeout"
        try:
            return raw_connect(port, path)
        except (OSError, ServerProtocolError) as e:
            return f"{type(e).__name__}: {str(e)[:80]}"

    # blocking handshakes, connect_conc at a time (threads: each waits on its socket)
    with ThreadPoolExecutor(max_workers=max(1, min(connect_conc, 64))) as pool:
        for opened in pool.map(connect_one, range(nconn)):
            if isinstance(opened, str):
                errors.append(opened)
            else:
                conns[opened[0].fileno()] = RawConnection(opened[0], opened[1], stride)
    poller = select.epoll()
    for fd in conns:
        poller.register(fd, select.EPOLLIN)
    poller.register(pipe.fileno(), select.EPOLLIN)
    connected = len(conns)
    pipe.send(("ready", connected))

    on = False
    lo = hi = 0
    t_start = t_end = t_stop = float("inf")
    phase = "wait"  # -> "window" -> "grace" -> "done"
    n0: dict[int, int] = {}
    n1: dict[int, int] = {}
    cpu0 = cpu1 = cpu2 = os.times()
    w0 = w1 = 0.0
    disc0 = 0
    wall = time.time_ns
    recv_buf = bytearray(READ_BYTES)
    view = memoryview(recv_buf)
    anc_size = socket.CMSG_SPACE(TIMESPEC.size)
    while phase != "done":
        now_m = time.monotonic()
        if phase == "wait" and now_m >= t_start:
            phase, w0 = "window", now_m
            n0 = {fd: c.n for fd, c in conns.items()}
            cpu0, disc0 = os.times(), disc
            lo = wall()
            hi = lo + round((t_end - w0) * 1e9)
            on = True
        if phase == "window" and now_m >= t_end:
            phase, w1 = "grace", now_m
            n1 = {fd: c.n for fd, c in conns.items()}
            cpu1 = os.times()
            t_stop = t_end + grace_s
        if phase == "grace" and now_m >= t_stop:
            phase, on = "done", False
            cpu2 = os.times()
            break
        due = t_start if phase == "wait" else t_end if phase == "window" else t_stop
        for fd, _ in poller.poll(max(0.0, min(due - now_m, 0.05))):
            conn = conns.get(fd)
            if conn is None:  # the parent's pipe: the window
                t_start, t_end = pipe.recv()
                continue
            try:
                size, anc, _flags, _addr = conn.sock.recvmsg_into([view], anc_size)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                size, anc = 0, []
            read_ns = wall()
            if not size:
                poller.unregister(fd)
                conn.open = False
                del conns[fd]
                conn.sock.close()
                disc += 1
                continue
            if anc and anc[0][1] == SCM_TIMESTAMPNS:  # the only one asked for
                sec, nsec = TIMESPEC.unpack_from(anc[0][2])
                kernel_ns = sec * 1_000_000_000 + nsec
            else:  # no receive timestamp: time it at the read, and say so
                kernel_ns = read_ns
                unclocked += 1
            buf = conn.buf
            buf += view[:size]
            frames, end, error = parse_server_frames(buf)
            for b0, start, stop in frames:
                opcode = b0 & 0x0F
                if opcode != 1:
                    if opcode == 9:  # ping: answer it (picows does so by itself)
                        with contextlib.suppress(OSError):  # a full buffer: the next one
                            conn.sock.send(client_frame(0xA, bytes(buf[start:stop])))
                    elif opcode == 8:
                        error = error or "closed by the server"
                    else:
                        nontext += 1
                    continue
                n = conn.n = conn.n + 1
                if n & mask or not on:
                    continue
                payload = buf[start:stop]
                stamp = stamp_ns(payload, cache)
                if stamp is None:
                    unstamped += 1
                    if read_ns >= hi:
                        continue
                    stamp = (read_ns, 0)
                else:
                    if not lo <= stamp[0] < hi:
                        continue
                    in_window += 1
                    lat.append(kernel_ns - stamp[0])
                    lat_read.append(read_ns - stamp[0])
                    if stamp[1] < digits:
                        digits = stamp[1]
                seq = first_seq(payload)
                if seq is not None:
                    conn.last = (seq, n, stamp[0])
                    if conn.first is None:
                        conn.first = conn.last
            del buf[:end]
            if error is not None:
                poller.unregister(fd)
                del conns[fd]
                conn.sock.close()
                disc += 1
    seqs = seq_figures([(c.first, c.last) for c in conns.values()])
    pipe.send(
        (
            "result",
            {
                "connected": connected,
                # connections that closed in the window are left out (and counted below)
                "counts": [n1[fd] - n0[fd] for fd in n1 if fd in n0],
                "window_s": w1 - w0,
                "lat": lat.tobytes(),
                "lat_read": lat_read.tobytes(),
                "digits": digits,
                "unstamped": unstamped,
                **seqs,
                "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                "grace_cpu_s": (cpu2.user - cpu1.user) + (cpu2.system - cpu1.system),
                "in_window": in_window,
                "stamp_window_s": (hi - lo) / 1e9,
                "errors": errors,
                "disconnects_in_window": disc - disc0,
                "disconnects_total": disc,
                "nontext": nontext,
                "reads_without_kernel_time": unclocked,
            },
        )
    )
    os._exit(0)


# ---------------------------------------------------------------- parent


def auto_stride(conns: int, rate: float | None) -> int:
    """The smallest power of two keeping samples under SAMPLES_PER_S (16 without a rate)."""
    if not rate:
        return 16
    need = conns * rate / SAMPLES_PER_S
    stride = 1
    while stride < need:
        stride *= 2
    return stride


def summarize(
    a: argparse.Namespace, results: list[dict[str, Any]], connect_s: float
) -> dict[str, Any]:
    """The JSON result from the workers' results (server and machine figures added later)."""
    counts = [c for r in results for c in r["counts"]]
    total = sum(counts)
    window = sum(r["window_s"] for r in results) / max(1, len(results))
    lat_arr = array("q")
    for r in results:
        lat_arr.frombytes(r["lat"])
    lat = sorted(lat_arr)
    digits = min((r["digits"] for r in results), default=99)
    spans = sum(r["seq_spans"] for r in results)
    gaps = sum(r["gaps"] for r in results)
    out: dict[str, Any] = {
        "label": a.label,
        "url": f"ws://{a.host}:{a.port}{a.path}",
        "connections": a.connections,
        "connected": sum(r["connected"] for r in results),
        "connect_s": round(connect_s, 2),
        "procs": a.procs,
        "stride": a.stride,
        "seconds": round(window, 3),
        "rate": a.rate,
        "total_messages": total,
        "msgs_per_s": round(total / window, 1),
        "per_conn_msgs_per_s": {
            "mean": round(total / window / max(1, len(counts)), 2),
            "min": round(min(counts) / window, 2) if counts else None,
            "max": round(max(counts) / window, 2) if counts else None,
        },
        "gaps": {
            "frames": gaps,
            "pct_of_seqs": round(100 * gaps / spans, 3) if spans else None,
            "conns_out_of_order": sum(r["conns_backwards"] for r in results),
        },
        "source_msgs_per_s": round(statistics.median(r["seq_rate"] for r in results), 2)
        if results
        else None,
        "client_cpu_pct": round(100 * sum(r["cpu_s"] for r in results) / window, 1),
        "grace_s": a.grace,
        "errors": {
            "connect": sum(len(r["errors"]) for r in results),
            "connect_examples": [e for r in results for e in r["errors"]][:3],
            "disconnects_in_window": sum(r["disconnects_in_window"] for r in results),
            "disconnects_total": sum(r["disconnects_total"] for r in results),
            "non_text_frames": sum(r["nontext"] for r in results),
            "frames_without_timestamp": sum(r["unstamped"] for r in results),
            "reads_without_kernel_time": sum(
                r.get("reads_without_kernel_time", 0) for r in results
            ),
        },
    }
    cpu_s = sum(r["cpu_s"] for r in results)
    out["client_us_per_frame"] = round(1e6 * cpu_s / total, 2) if total else None
    if a.rate:
        offered = a.connections * a.rate * window
        out["offered_per_s"] = a.connections * a.rate
        by_arrival = round(100 * total / offered, 2)
        out["delivered_pct_by_arrival"] = by_arrival
        stamped = sum(r["in_window"] for r in results)
        if a.stride == 1 and stamped:
            # every frame parsed: count those *stamped* in the window (late ones included),
            # exact even when C x rate x window is a handful of messages a connection
            stamp_window = sum(r["stamp_window_s"] for r in results) / len(results)
            out["delivered_pct"] = round(100 * stamped / (a.connections * a.rate * stamp_window), 2)
            out["delivered_by"] = "timestamp"
        else:
            out["delivered_pct"] = by_arrival
            out["delivered_by"] = "arrival"
    if lat:
        out["lateness_ms"] = {
            "p50": round(percentile(lat, 0.50) / 1e6, 3),
            "p99": round(percentile(lat, 0.99) / 1e6, 3),
            "p999": round(percentile(lat, 0.999) / 1e6, 3),
            "max": round(lat[-1] / 1e6, 3),
            "min": round(lat[0] / 1e6, 3),
            **{
                f"over_{ms}ms_pct": round(
                    100 * (len(lat) - bisect.bisect_right(lat, ms * 1_000_000)) / len(lat), 3
                )
                for ms in OVER_MS
            },
            "samples": len(lat),
            "resolution": f"{10 ** (9 - digits) / 1e6:g} ms" if digits <= 9 else "?",
        }
    else:
        out["lateness_ms"] = None
    out["clock"] = a.clock
    read_arr = array("q")
    for r in results:
        read_arr.frombytes(r["lat_read"])
    if read_arr:
        read = sorted(read_arr)
        out["lateness_read_ms"] = {
            "p50": round(percentile(read, 0.50) / 1e6, 3),
            "p99": round(percentile(read, 0.99) / 1e6, 3),
            "max": round(read[-1] / 1e6, 3),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("-c", "--connections", type=int, default=100)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="measured s (<= 60)")
    ap.add_argument("-w", "--warmup", type=float, default=1.5, help="s after connecting (<= 20)")
    ap.add_argument("-p", "--procs", type=int, default=1, help="worker processes")
    ap.add_argument("--rate", type=float, default=None, help="offered msg/s per connection")
    ap.add_argument("--stride", type=int, default=0, help="parse every Nth frame (0: auto)")
    ap.add_argument(
        "--grace",
        type=float,
        default=1.0,
        help="s after the window to wait for frames stamped in it (<= 5)",
    )
    ap.add_argument(
        "--clock",
        choices=["kernel", "read"],
        default="kernel",
        help="arrival = the kernel's receive time of the read (plain epoll loop; default) "
        "or the time picows hands the frame over (picows + uvloop)",
    )
    ap.add_argument("--connect-concurrency", type=int, default=200)
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadclient: loopback hosts only")
    a.duration = min(max(a.duration, 0.5), MAX_DURATION_S)
    a.warmup = min(max(a.warmup, 0.0), MAX_WARMUP_S)
    a.grace = min(max(a.grace, 0.0), 5.0)
    a.procs = max(1, min(a.procs, a.connections))
    stride = a.stride or auto_stride(a.connections, a.rate)
    a.stride = 1 << max(0, (stride - 1).bit_length())  # a power of two
    raise_fd_limit()
    url = f"ws://{a.host}:{a.port}{a.path}"
    hard_deadline = time.monotonic() + CONNECT_LIMIT_S + a.warmup + a.duration + a.grace + 20

    ctx = mp.get_context("fork")
    procs, pipes = [], []
    n, p = a.connections, a.procs
    for i in range(p):
        mine, theirs = ctx.Pipe()
        share = n // p + (1 if i < n % p else 0)
        conc = max(1, a.connect_concurrency // p)
        if a.clock == "kernel":
            target: Any = raw_worker
            args: tuple[Any, ...] = (share, a.port, a.path, a.stride, a.grace, conc, theirs)
        else:
            target, args = worker, (share, url, a.stride, a.grace, conc, theirs)
        proc = ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        procs.append(proc)
        pipes.append(mine)

    def recv(pipe: Connection) -> Any:
        left = hard_deadline - time.monotonic()
        if left <= 0 or not pipe.poll(left):
            for proc in procs:
                proc.kill()
            sys.exit("loadclient: hard deadline hit")
        return pipe.recv()

    t_conn0 = time.monotonic()
    for pipe in pipes:
        recv(pipe)
    connect_s = time.monotonic() - t_conn0
    t_start = time.monotonic() + a.warmup
    t_end = t_start + a.duration
    for pipe in pipes:
        pipe.send((t_start, t_end))

    time.sleep(max(0.0, t_start - time.monotonic()))
    m0 = machine_jiffies()
    (s0, u0), st0 = proc_cpu_s(a.server_pid) if a.server_pid else (0.0, 0.0), time.monotonic()
    time.sleep(max(0.0, t_end - time.monotonic()))
    m1 = machine_jiffies()
    (s1, u1), st1 = proc_cpu_s(a.server_pid) if a.server_pid else (0.0, 0.0), time.monotonic()
    mem = proc_mem_kb(a.server_pid) if a.server_pid else {}

    results = [recv(pipe)[1] for pipe in pipes]
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()

    out = summarize(a, results, connect_s)
    ncpu = os.cpu_count() or 1
    total_j = max(1, m1[2] - m0[2])
    machine = {
        "busy_pct": round(100 * ncpu * (m1[0] - m0[0]) / total_j, 1),
        "softirq_pct": round(100 * ncpu * (m1[1] - m0[1]) / total_j, 1),
        "ncpu": ncpu,
    }
    if a.server_pid:
        out["server_cpu_pct"] = round(100 * (s1 - s0) / (st1 - st0), 1)
        out["server_user_cpu_pct"] = round(100 * (u1 - u0) / (st1 - st0), 1)
        out["server_rss_mb"] = round(mem.get("VmRSS", 0) / 1024, 1)
        out["server_peak_rss_mb"] = round(mem.get("VmHWM", 0) / 1024, 1)
    other = machine["busy_pct"] - machine["softirq_pct"] - out["client_cpu_pct"]
    other -= out.get("server_cpu_pct", 0.0)
    machine["other_procs_pct"] = round(max(0.0, other), 1)
    out["machine"] = machine
    print(json.dumps(out), flush=True)
    lat = out["lateness_ms"] or {}
    print(
        f"# {a.label}: {out['msgs_per_s']:,.0f} frames/s"
        + (f" ({out['delivered_pct']}% of offered)" if a.rate else "")
        + f", lateness p50 {lat.get('p50')} p99 {lat.get('p99')} max {lat.get('max')} ms,"
        f" gaps {out['gaps']['frames']}, server CPU {out.get('server_cpu_pct')}%,"
        f" client CPU {out['client_cpu_pct']}%, other {machine['other_procs_pct']}%",
        file=sys.stderr,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
