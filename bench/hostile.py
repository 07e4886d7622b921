"""Hostile clients against a real `sim run` process (issue #13): what each attack of the
issue's table does to the server's memory and to a well-behaved client.

For each attack (and a control run with no attacker), in one run, on a fresh
``sim run bench/scenarios/hostile.toml`` process:

1. a good client (a child process, websockets' asyncio client) subscribes to ``tick``,
   a 10 ms stream, and keeps, for every message, its arrival wall time minus the
   message's own ``timestamp`` (its planned send time; the timestamp has millisecond
   resolution, so figures are within 1 ms);
2. after 1 s, the attacker (another child process, normal priority, raw sockets:
   ``tests/e2e/attackers.py``) attacks for ``--seconds``, starting over on a new
   connection each time the server closes one, and reports every close code and the
   time from its first frame to the server's close frame;
3. the server's RSS (``/proc/PID/status`` VmRSS) is sampled every 50 ms: before the
   attack, its peak, right after, and ``--settle`` seconds later (whether it is
   returned).

The good client's lateness during the attack window is compared with the control's.
Loopback only; every loop bounded; children stopped by pid.

    .venv/bin/python bench/hostile.py                       # every attack, 10 s each
    .venv/bin/python bench/hostile.py --attacks ping_flood,garbage --seconds 5 --settle 5
    .venv/bin/python bench/hostile.py --attacks non_readers --waves 3   # memory reused?
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from _harness import (
    BENCH,
    REPO,
    proc_cpu_s,
    rss_kb,
    run_main,
    start_url_server,
    stop,
    stop_server,
)

sys.path.insert(0, str(REPO))  # the attackers are the test suite's (tests/e2e/attackers.py)

from tests.e2e import attackers

SCENARIO = BENCH / "scenarios" / "hostile.toml"
ATTACKS = [
    "ping_flood",
    "endless_fragments",
    "garbage",
    "fragments_100k",
    "open_and_reset",
    "non_readers",
    "held_flood",
]
DESCRIBED = {
    "control": "no attacker",
    "ping_flood": "125-byte pings, 3,000 a write, never reading",
    "endless_fragments": "one message of endless empty continuations",
    "garbage": "50 connections flooding garbage text frames",
    "fragments_100k": "100k 1-byte fragments of one message in one write",
    "open_and_reset": "connections opened (half mid-handshake) and reset, 50 at a time",
    "non_readers": "2,000 clients that never read",
    "held_flood": "pings sent before a held handshake (2 s delay) is answered: dropped "
    "unopened past 4 KiB (counted as refused)",
}


# ---------------------------------------------------------------- the good client

#: The report lists when the good client's ticks came later than this.
LATE_MS = 10.0


def good_client(argv: list[str]) -> int:
    """``--good URL SECONDS``: read ``tick`` for SECONDS; print the samples as JSON."""
    url, seconds = argv[0], float(argv[1])
    from websockets.asyncio.client import connect

    samples: list[tuple[float, float, int]] = []  # (arrival, lateness ms, seq)

    async def main() -> None:
        async with connect(url, max_queue=None, ping_interval=None, compression=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "streams": ["tick"]}))
            end = time.time() + seconds
            while time.time() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.time()))
                except TimeoutError:
                    break
                now = time.time()
                message = json.loads(raw)
                if message.get("type") != "tick":
                    continue
                planned = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
                samples.append((now, (now - planned.timestamp()) * 1e3, message["seq"]))

    asyncio.run(main())
    print(json.dumps({"samples": samples}))
    return 0


# ---------------------------------------------------------------- the attacker


class Tally:
    """Close codes and times to close, over every connection of one attack."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.to_close_s: list[float] = []
        self.connections = 0
        self.refused = 0

    def closed(self, code: int | None, since: float) -> None:
        key = str(code) if code is not None else "none"
        self.codes[key] = self.codes.get(key, 0) + 1
        if code is not None:
            self.to_close_s.append(time.monotonic() - since)


async def flood_until(
    url: str, end: float, tally: Tally, flood: bytes, rcvbuf: int | None, *, early: bool = False
) -> None:
    """Connect, write ``flood`` (never reading), read the close; again until ``end``.
    With ``early``, the flood goes right after the request, before its answer (the time
    to close then counts from the open, when the flood is the server's to read)."""
    while time.monotonic() < end:
        try:
            before_answer = flood if early else b""
            raw = await attackers.open_raw(url, rcvbuf=rcvbuf, before_answer=before_answer)
        except (attackers.Refused, OSError, TimeoutError):
            tally.refused += 1
            await asyncio.sleep(0.05)
            continue
        tally.connections += 1
        since = time.monotonic()
        if not early:
            await raw.send(flood)
        tally.closed(await raw.close_code(timeout=10), since)
        raw.close()


async def attack(kind: str, url: str, seconds: float) -> Tally:
    tally = Tally()
    end = time.monotonic() + seconds
    if kind == "ping_flood":
        await flood_until(url, end, tally, attackers.pings(3000), attackers.SMALL_RCVBUF)
    elif kind == "endless_fragments":
        await flood_until(url, end, tally, attackers.endless_fragments(3000), None)
    elif kind == "fragments_100k":
        await flood_until(url, end, tally, attackers.one_message_in_fragments(100_000), None)
    elif kind == "garbage":
        flood = attackers.garbage(2000)
        await asyncio.gather(*(flood_until(url, end, tally, flood, None) for _ in range(50)))
    elif kind == "held_flood":
        await flood_until(url, end, tally, attackers.pings(100_000), None, early=True)
    elif kind == "open_and_reset":
        while time.monotonic() < end:
            tally.connections += await attackers.tcp_open_and_reset(url, 200, concurrency=50)
    elif kind == "non_readers":
        raws = []
        for _ in range(2000):
            if time.monotonic() > end:
                break
            try:
                raws.append(await attackers.open_raw(url, rcvbuf=attackers.SMALL_RCVBUF))
            except (attackers.Refused, OSError, TimeoutError):
                tally.refused += 1
        tally.connections = len(raws)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        for raw in raws:
            raw.close()
    return tally


def attacker(argv: list[str]) -> int:
    """``--attack KIND URL SECONDS``: attack; print the tally as JSON."""
    kind, url, seconds = argv[0], argv[1], float(argv[2])
    tally = asyncio.run(attack(kind, url, seconds))
    print(json.dumps(vars(tally)))
    return 0


# ---------------------------------------------------------------- one run


def child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def result(proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        return {"failed": "timed out"}
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if not lines:
        return {"failed": err.decode().strip()[-300:]}
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


class RssSampler:
    """VmRSS of ``pid`` every 50 ms, in a thread, with wall times."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), rss_kb(self.pid)))
            except (OSError, RuntimeError):
                return
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, since: float, until: float) -> float:
        window = [kb for t, kb in self.samples if since <= t <= until]
        return max(window, default=0) / 1024


def one_run(
    kind: str,
    seconds: float,
    settle: float,
    logdir: Path,
    scenario: Path = SCENARIO,
    waves: int = 1,
) -> dict[str, Any]:
    if kind == "held_flood":
        scenario = held_handshakes(scenario, logdir)
    argv = [sys.executable, "-m", "simulator", "run", str(scenario), "--port", "0", "--quiet"]
    server = start_url_server("sim", argv, logdir / f"sim-{kind}.log")
    url = f"ws://127.0.0.1:{server.port}/"
    row: dict[str, Any] = {"attack": kind}
    try:
        time.sleep(0.5)
        with RssSampler(server.pid) as rss:
            good = child("--good", url, str(seconds + 2.0))
            time.sleep(1.0)
            row["rss_before_mb"] = rss_kb(server.pid) / 1024
            start, cpu_start = time.time(), proc_cpu_s(server.pid)
            if kind != "control":
                tally = result(child("--attack", kind, url, str(seconds)), seconds + 60)
            else:
                time.sleep(seconds)
                tally = {}
            stop_at = time.time()
            row["server_cpu_pct"] = 100 * (proc_cpu_s(server.pid) - cpu_start) / (stop_at - start)
            row["attacker"] = tally
            row["rss_peak_mb"] = rss.peak_mb(start, stop_at + 0.5)
            samples = result(good, 60).get("samples", [])
            row["rss_after_mb"] = rss_kb(server.pid) / 1024
            time.sleep(settle)
            row["rss_settled_mb"] = rss_kb(server.pid) / 1024
            # More waves of the same attack on the same server: is the memory the first
            # left behind reused (bounded), or does each wave add to it (a leak)?
            row["rss_waves_mb"] = []
            for _ in range(waves - 1 if kind != "control" else 0):
                begun = time.time()
                result(child("--attack", kind, url, str(seconds)), seconds + 60)
                peak = rss.peak_mb(begun, time.time() + 0.5)
                time.sleep(settle)
                row["rss_waves_mb"].append((peak, rss_kb(server.pid) / 1024))
        window = [(lat, seq) for t, lat, seq in samples if start <= t <= stop_at]
        lateness = np.array([lat for lat, _ in window])
        seqs = [seq for _, _, seq in samples]
        row["good_messages"] = len(window)
        row["good_gaps"] = sum(b - a != 1 for a, b in itertools.pairwise(seqs))
        if len(lateness):
            row["good_p50_ms"] = float(np.percentile(lateness, 50))
            row["good_p99_ms"] = float(np.percentile(lateness, 99))
            row["good_max_ms"] = float(lateness.max())
        row["window_s"] = stop_at - start
        # Where the late ticks fall (s after the attack began): a stall while the attack
        # starts, while it runs, or when it ends is a different cause each time.
        row["late_at"] = [
            (round(t - start, 2), round(lat, 1))
            for t, lat, _ in samples
            if start <= t <= stop_at and lat > LATE_MS
        ]
    finally:
        stop_server(server)
    return row


def held_handshakes(scenario: Path, logdir: Path) -> Path:
    """``scenario`` with every handshake after the first (the good client's) held 2 s
    by an injected delay, as a slow auth service or a fault would."""
    held = logdir / "hostile-held.toml"
    held.write_text(
        scenario.read_text()
        + '\n[[fault]]\nkind = "reject"\ndelay = "2s"\nafter_connections = 1\n'
        + 'window = { start = "0s", end = "1h" }\n'
    )
    return held


def fmt(value: object, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict[str, Any]], args: argparse.Namespace, t0: float) -> list[str]:
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    control = next((r for r in rows if r["attack"] == "control"), {})
    out = [
        f"### Hostile clients: {args.seconds:g} s each, settle {args.settle:g} s, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at end "
        f"{loadavg} ({time.monotonic() - t0:.0f} s)\n",
        "| attack | closed with (count) | time to close p50 / max s | connections (refused) "
        "| RSS before / peak / after / +settle MB (then peak / +settle of each further wave) "
        "| server CPU % | good msgs, gaps | good p50 / p99 / max ms "
        "| p99 - control ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r.get("attacker") or {}
        times = a.get("to_close_s") or []
        closes = ", ".join(f"{k} ({v})" for k, v in sorted((a.get("codes") or {}).items()))
        ttc = (
            f"{np.percentile(times, 50):.3f} / {max(times):.3f}"
            if times
            else (
                "-"
                if r["attack"] in ("control", "open_and_reset", "non_readers", "held_flood")
                else "none"
            )
        )
        p99, base = r.get("good_p99_ms"), control.get("good_p99_ms")
        delta = "-" if p99 is None or base is None or r is control else f"{p99 - base:+.1f}"
        out.append(
            f"| {r['attack']}: {DESCRIBED[r['attack']]} | {closes or '-'} | {ttc} "
            f"| {a.get('connections', '-')} ({a.get('refused', '-')}) "
            f"| {fmt(r.get('rss_before_mb'), '.0f')} / {fmt(r.get('rss_peak_mb'), '.0f')} "
            f"/ {fmt(r.get('rss_after_mb'), '.0f')} / {fmt(r.get('rss_settled_mb'), '.0f')}"
            + "".join(f"; then {p:.0f} / {q:.0f}" for p, q in r.get("rss_waves_mb") or [])
            + f" | {fmt(r.get('server_cpu_pct'), '.0f')} "
            f"| {r.get('good_messages', '-')}, {r.get('good_gaps', '-')} "
            f"| {fmt(r.get('good_p50_ms'))} / {fmt(r.get('good_p99_ms'))} "
            f"/ {fmt(r.get('good_max_ms'))} | {delta} |"
        )
    out.append(f"\nTicks later than {LATE_MS:g} ms, as (s after the attack began, ms late):\n")
    for r in rows:
        late = r.get("late_at") or []
        shown = ", ".join(f"({t:.2f}, {ms:.0f})" for t, ms in late[:40])
        more = f" and {len(late) - 40} more" if len(late) > 40 else ""
        out.append(f"- {r['attack']}: {len(late)}{': ' + shown if late else ''}{more}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--seconds", type=float, default=10.0, help="each attack's length")
    ap.add_argument("--settle", type=float, default=30.0, help="RSS read again after this")
    ap.add_argument(
        "--waves",
        type=int,
        default=1,
        help="attack the same server this many times (RSS peak / settled of each wave "
        "after the first: reused or leaked?)",
    )
    ap.add_argument("--logs", type=Path, default=Path("/tmp/sim-bench-hostile"))
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    ap.add_argument(
        "--scenario", type=Path, default=SCENARIO, help="what sim run serves (its [server] limits)"
    )
    args = ap.parse_args()
    kinds = ["control", *[k for k in args.attacks.split(",") if k]]
    unknown = set(kinds) - set(DESCRIBED)
    if unknown:
        ap.error(f"unknown attack(s) {sorted(unknown)}; known: {', '.join(ATTACKS)}")
    args.logs.mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = str(REPO)  # `sim run` from this tree
    t0 = time.monotonic()
    rows = []
    for kind in kinds:
        row = one_run(kind, args.seconds, args.settle, args.logs, args.scenario, args.waves)
        print(
            f"# {kind}: {json.dumps({k: v for k, v in row.items() if k != 'attacker'})}",
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print("\n".join(report(rows, args, t0)))
    return 0


CHILDREN: dict[str, Callable[[list[str]], int]] = {"--good": good_client, "--attack": attacker}

if __name__ == "__main__":
    sys.exit(run_main(main, CHILDREN))
