"""What the inspector page costs the feed, measured at the clients (issue #11, Speed).

Target: lateness p99 with the page open within 10% of without (ratio <= 1.10), at
1,000 msg/s; and the page stays responsive (its log renders at most one batch per
animation frame).

Method. ``sim run bench/scenarios/inspector.toml`` (one ~200-byte stream at 1,000 msg/s,
broadcast; no ``epoch``, so each message's ``timestamp`` is its wall-clock scheduled
time) runs as its own process, a fresh one per run. The anchors' load client
(``loadgen.py --lat-from timestamp``: picows + uvloop, in its own process) opens
``--conns`` connections (100: 100,000 frames/s), warms up, then for ``--seconds``
counts what each connection receives and takes every 16th message's lateness: arrival
wall time minus the message's scheduled time, at the client (the stamp has ms
resolution), p50/p99/max; and the server's CPU. Before each run, up to 5 s for other
load on the machine to drop (``wait_quiet``). Three conditions, each repetition in
another order (rotated, reversed every other rep) so that a drift of the machine's load
falls on all of them:

- ``none``: no page (the browser stays open on ``about:blank``);
- ``page``: headless Chromium (the Debian ``chromium``/``chromium-driver``, driven by
  selenium as tests/browser does) with the page open and drawing from before the load
  client connects until it is done: its own feed client (one more WebSocket client
  receiving every message, in 100 ms batches: ``?sim_batch=100ms``) and ``/events``;
- ``served``: what the page asks of the server, without a browser: a child process
  reading every message on one more WebSocket connection (batched as the page's) and
  subscribed to ``/events``;
- ``bare`` (only with ``--conditions``): the same Chromium with a tab holding nothing but
  a WebSocket client of the feed that parses each message as it comes, unbatched (no
  page, no ``/events``, no drawing): what any page receiving the feed message by message
  costs the browser.

The page's own figures come from the page (a 50 ms timer, and a counter on each log
draw): log draws per second, the longest the page's main thread was held (how late the
timer fired: past ~100 ms a click would feel slow), the most log draws in one animation
frame (the target: at most one), the most log rows in the DOM, messages it received.
The browser's CPU (every process under chromedriver) is read from /proc, split by
Chromium process (its ``--type``): the renderer (the page's JavaScript, layout, paint,
and receiving each message), the network service (reading the socket), the GPU process
(compositing; software here) and the rest (the browser process, chromedriver). "others"
is what the rest of the machine took meanwhile. On a 2-core machine Chromium's CPU
competes with the server's: that is part of what the page costs a feed served on the
same machine (``page`` against ``served`` tells the two apart).

    PYTHONPATH=. .venv/bin/python bench/inspector_overhead.py          # 4 reps of 8 s each
    PYTHONPATH=. .venv/bin/python bench/inspector_overhead.py --reps 6 --seconds 15
    PYTHONPATH=. .venv/bin/python bench/inspector_overhead.py --conditions page,bare
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    BENCH,
    Server,
    ensure_anchors,
    finish_loadgen,
    fmt,
    keep_row,
    loadgen_timeout,
    machine_info,
    median,
    proc_cpu_s,
    run_main,
    start_url_server,
    stop,
    stop_server,
    wait_quiet,
)

SCENARIO = BENCH / "scenarios" / "inspector.toml"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONDITIONS = ("none", "page", "served", "bare")
DEFAULT_CONDITIONS = "none,page,served"
#: Chromium's processes by their ``--type`` (none: the browser process itself).
BROWSER_PARTS = ("renderer", "network", "gpu", "other")
TARGET_RATIO = 1.10
#: A run is "quiet" when the rest of the machine took less than this (% of one core).
QUIET_OTHERS_PCT = 10.0
PAGE_TIMEOUT_S = 30

# Installed in the page once it runs: counts animation frames (and the longest gap
# between two) and log renders per frame (all rAF callbacks of one frame see the same
# document.timeline.currentTime), and the most log rows in the DOM after a render.
PROBE_JS = """
const probe = window.__probe = {start: performance.now(), stall: 0, renders: 0, draws: 0,
  perFrame: new Map(), maxPerFrame: 0, maxRows: 0};
let due = performance.now() + 50;
probe.timer = setInterval(() => {
  const now = performance.now();
  probe.stall = Math.max(probe.stall, now - due);
  due = now + 50;
}, 50);
const inner = window.renderLog;
window.renderLog = function (rebuild) {
  const t = document.timeline.currentTime;
  const n = (probe.perFrame.get(t) || 0) + 1;
  probe.perFrame.set(t, n);
  if (probe.perFrame.size > 1000) probe.perFrame.clear();
  probe.renders += 1;
  probe.maxPerFrame = Math.max(probe.maxPerFrame, n);
  const out = inner(rebuild);
  probe.maxRows = Math.max(probe.maxRows,
    document.querySelectorAll("#log li:not([hidden])").length);
  return out;
};
"""

READ_PROBE_JS = """
const p = window.__probe, s = (performance.now() - p.start) / 1000;
return {renders_per_s: p.renders / s, longest_stall_ms: p.stall, log_renders: p.renders,
        max_renders_per_frame: p.maxPerFrame, max_log_rows: p.maxRows,
        received: [...page.streams.values()].reduce((n, x) => n + x.received, 0),
        kept: page.log.length, state: page.ws ? page.ws.readyState : -1};
"""


def open_browser() -> tuple[Any, str]:
    """Headless Chromium with a fresh profile (remove the directory after ``quit``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="sim-bench-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    return driver, profile


def descendants(root: int) -> list[int]:
    """Every process under ``root`` (from /proc), ``root`` included."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def browser_part(pid: int) -> str:
    """Which of BROWSER_PARTS Chromium process ``pid`` is, from its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").replace("\0", " ")
    except OSError:
        return "other"
    kind = re.search(r"--type=(\S+)", argv)
    if kind is None:
        return "other"
    if kind.group(1) == "renderer":
        return "renderer"
    if kind.group(1) == "gpu-process":
        return "gpu"
    if "network" in argv and "--utility-sub-type=network" in argv:
        return "network"
    return "other"


def browser_cpu_s(driver: Any) -> dict[str, float]:
    """CPU seconds used so far by chromedriver and every Chromium process under it, by
    BROWSER_PARTS."""
    used = dict.fromkeys(BROWSER_PARTS, 0.0)
    for pid in descendants(driver.service.process.pid):
        cpu = proc_cpu_s(pid)
        if cpu == cpu:  # a process gone: NaN
            used[browser_part(pid)] += cpu
    return used


def page_client(argv: list[str]) -> int:
    """The child of the ``served`` condition: what the page asks of the server, without a
    browser: a WebSocket client that reads every message (in the page's batches), and an
    ``/events`` subscriber, for ``argv[1]`` seconds on port ``argv[0]``."""
    import asyncio

    from websockets.asyncio.client import connect

    from simulator.inspector.views import PAGE_BATCH

    port, seconds = int(argv[0]), float(argv[1])
    url = f"ws://127.0.0.1:{port}/?sim_batch={PAGE_BATCH}"

    async def feed() -> None:
        async with connect(url, max_queue=None, compression=None) as ws:
            async for _ in ws:
                pass

    async def events() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while await reader.read(65536):
            pass

    async def both() -> None:
        tasks = [asyncio.ensure_future(feed()), asyncio.ensure_future(events())]
        await asyncio.wait(tasks, timeout=seconds)
        for task in tasks:
            task.cancel()

    asyncio.run(both())
    return 0


def start_sim(scenario: Path, logdir: Path, label: str) -> Server:
    argv = [sys.executable, "-m", "simulator", "run", str(scenario), "--port", "0", "--quiet"]
    return start_url_server("sim", argv, logdir / f"{label}.log")


def wait_for_page(driver: Any) -> None:
    """Until the page's own feed client has received messages."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    script = "return typeof page !== 'undefined' && page.ws && page.ws.readyState === 1" \
        " && [...page.streams.values()].some((s) => s.received > 0)"  # fmt: skip
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise RuntimeError("the page did not receive the feed")
        time.sleep(0.1)


# The ``bare`` condition: a WebSocket client of the feed in a tab of its own, that parses
# each message and counts those with a ``seq``, and does nothing else.
BARE_JS = """
window.received = 0;
const ws = new WebSocket(arguments[0]);
ws.onmessage = (event) => { if (JSON.parse(event.data).seq !== undefined) window.received += 1; };
"""


def wait_for_bare(driver: Any) -> None:
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while not driver.execute_script("return window.received > 0"):
        if time.monotonic() > deadline:
            raise RuntimeError("the bare client did not receive the feed")
        time.sleep(0.1)


def one_run(args: argparse.Namespace, driver: Any, condition: str, rep: int) -> dict[str, Any]:
    label = f"rep{rep}-{condition}"
    row: dict[str, Any] = {"condition": condition, "rep": rep, "busy_before_pct": wait_quiet()}
    server = start_sim(args.scenario, args.logdir, label)
    served_by: subprocess.Popen[bytes] | None = None
    try:
        if condition == "page":
            driver.get(f"http://127.0.0.1:{server.port}/")
            wait_for_page(driver)
            driver.execute_script(PROBE_JS)
        elif condition == "bare":
            driver.get(f"http://127.0.0.1:{server.port}/healthz")  # an origin, no page
            driver.execute_script(BARE_JS, f"ws://127.0.0.1:{server.port}/")
            wait_for_bare(driver)
        elif condition == "served":
            served_by = subprocess.Popen(
                [sys.executable, __file__, "--page-client", str(server.port),
                 str(loadgen_timeout(args.seconds, args.warmup))],
            )  # fmt: skip
        browser0, t0 = browser_cpu_s(driver), time.monotonic()
        argv = [
            str(args.anchors / ".venv" / "bin" / "python"), str(args.anchors / "loadgen.py"),
            "--port", str(server.port), "-c", str(args.conns), "-d", str(args.seconds),
            "-w", str(args.warmup), "--lat-from", "timestamp", "--server-pid", str(server.pid),
            "--label", label,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        result = finish_loadgen(proc, loadgen_timeout(args.seconds, args.warmup), label)
        browser1, elapsed = browser_cpu_s(driver), time.monotonic() - t0
        for part in BROWSER_PARTS:
            row[f"browser_{part}_pct"] = 100 * (browser1[part] - browser0[part]) / elapsed
        row["browser_cpu_pct"] = sum(row[f"browser_{part}_pct"] for part in BROWSER_PARTS)
        if condition == "page":
            row.update(("page_" + k, v) for k, v in driver.execute_script(READ_PROBE_JS).items())
    finally:
        if condition in ("page", "bare"):
            driver.get("about:blank")  # the page leaves before its server does
        if served_by is not None:
            stop(served_by)
        stop_server(server)
    if result is None or not result.get("latency_ms"):
        row["failed"] = "loadgen gave no result (see stderr)"
        return row
    lat = result["latency_ms"]
    row.update(
        delivered_per_s=result["msgs_per_s"],
        per_conn_min=result["per_conn_msgs_per_s"]["min"],
        samples=lat["samples"],
        p50_ms=lat["p50"],
        p99_ms=lat["p99"],
        max_ms=lat["max"],
        server_cpu_pct=result.get("server_cpu_pct"),
        client_cpu_pct=result["client_cpu_pct"],
        machine_busy_pct=result["machine"]["busy_pct"],
    )
    # What the rest of the machine took meanwhile (other users of a shared machine).
    row["others_cpu_pct"] = max(
        0.0,
        row["machine_busy_pct"]
        - result["machine"]["softirq_pct"]
        - (row["server_cpu_pct"] or 0)
        - row["client_cpu_pct"]
        - row["browser_cpu_pct"],
    )
    return row


def summary(rows: list[dict[str, Any]], which: str) -> list[str]:
    """Medians per condition over ``rows``, and the ratios to ``none``."""
    parts = [f"browser_{part}_pct" for part in BROWSER_PARTS]
    figures = ("p50_ms", "p99_ms", "max_ms", "server_cpu_pct", "browser_cpu_pct", *parts)
    conditions = [c for c in CONDITIONS if any(r["condition"] == c for r in rows)]
    med = {
        c: {k: median([r.get(k) for r in rows if r["condition"] == c]) for k in figures}
        for c in conditions
    }
    out = [
        "",
        f"| median, {which} | runs | p50 ms | p99 ms | max ms | server CPU % | browser CPU % "
        "| renderer / network / GPU / other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conditions:
        m = med[c]
        runs = sum(r["condition"] == c for r in rows)
        out.append(
            f"| {c} | {runs} | {fmt(m['p50_ms'], 3)} | {fmt(m['p99_ms'], 3)} "
            f"| {fmt(m['max_ms'], 3)} | {fmt(m['server_cpu_pct'])} | {fmt(m['browser_cpu_pct'])} "
            f"| {' / '.join(fmt(m[k]) for k in parts)} |"
        )
    p99 = {c: med[c]["p99_ms"] for c in conditions}
    none = p99.get("none")

    def ratio(c: str) -> float | None:
        value = p99.get(c)
        return value / none if none and value is not None else None

    page_ratio = ratio("page")
    verdict = "-" if page_ratio is None else ("met" if page_ratio <= TARGET_RATIO else "MISSED")
    out += [
        "",
        f"p99(page) / p99(none) = {fmt(page_ratio, 2)}: target <= {TARGET_RATIO:.2f} "
        f"{verdict}; p99(served, no browser) / p99(none) = {fmt(ratio('served'), 2)}",
    ]
    return out


def report(rows: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, Any]) -> str:
    out = [
        f"### Inspector overhead at the client: {info['date_utc']}, {info['nproc']} CPUs, "
        f"load average at start {' '.join(info['loadavg'])}; {args.reps} reps (rotated) of "
        f"{args.seconds:g} s, 1,000 msg/s broadcast to {args.conns} load clients "
        "(+ the page's own when open)\n",
        "| rep | condition | delivered/s | p50 ms | p99 ms | max ms | server CPU % "
        "| browser CPU % | renderer / network / GPU / other | load client CPU % | others CPU % "
        "| log draws/s | longest page stall ms | log draws in a frame (max) "
        "| log rows (max) | page received |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("failed"):
            out.append(f"| {r['rep']} | {r['condition']} | failed: {r['failed']} |" + " |" * 13)
            continue
        page = r["condition"] == "page"
        split = " / ".join(fmt(r[f"browser_{part}_pct"]) for part in BROWSER_PARTS)
        out.append(
            f"| {r['rep']} | {r['condition']} | {fmt(r['delivered_per_s'], 0)} "
            f"| {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.3f} "
            f"| {fmt(r['server_cpu_pct'])} | {fmt(r['browser_cpu_pct'])} | {split} "
            f"| {fmt(r['client_cpu_pct'])} | {fmt(r['others_cpu_pct'])} "
            + (
                f"| {r['page_renders_per_s']:.1f} | {r['page_longest_stall_ms']:.0f} "
                f"| {r['page_max_renders_per_frame']} | {r['page_max_log_rows']} "
                f"| {r['page_received']:,} |"
                if page
                else "| | | | | |"
            )
        )
    out += summary([r for r in rows if not r.get("failed")], "all runs")
    # On a shared machine: the runs nothing else took a tenth of a core from, if any.
    quiet = [r for r in rows if not r.get("failed") and r["others_cpu_pct"] < QUIET_OTHERS_PCT]
    if {r["condition"] for r in quiet} == set(args.conditions):
        out += summary(quiet, f"the {len(quiet)} runs where others took < {QUIET_OTHERS_PCT}%")
    return "\n".join(out)


def conditions_arg(text: str) -> tuple[str, ...]:
    chosen = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CONDITIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown condition {', '.join(unknown) or '(none given)'}; "
            f"allowed: {', '.join(CONDITIONS)}"
        )
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured per run (<= 30)")
    ap.add_argument("--warmup", type=float, default=2.0, help="after all connected")
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    ap.add_argument("--logdir", type=Path, default=None, help="server logs (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="append each run as a JSON line")
    ap.add_argument(
        "--conditions",
        type=conditions_arg,
        default=conditions_arg(DEFAULT_CONDITIONS),
        help=f"comma-separated, of {', '.join(CONDITIONS)} (default {DEFAULT_CONDITIONS})",
    )
    args = ap.parse_args()
    args.anchors = ensure_anchors()
    args.logdir = args.logdir or Path(tempfile.mkdtemp(prefix="sim-bench-inspector-"))
    args.logdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    driver, profile = open_browser()
    rows: list[dict[str, Any]] = []
    try:
        for rep in range(1, args.reps + 1):
            # Each rep in another order (rotated, and reversed every other rep), so that a
            # drift of the machine's load does not fall on one condition.
            turn = (rep - 1) % len(args.conditions)
            order = args.conditions[turn:] + args.conditions[:turn]
            for condition in order if rep % 2 else order[::-1]:
                row = one_run(args, driver, condition, rep)
                print(f"# {row}", file=sys.stderr, flush=True)
                keep_row(rows, row, info, args.out)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(report(rows, args, info))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, {"--page-client": page_client}))
