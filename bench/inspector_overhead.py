"""What the inspector page costs the feed, and whether it keeps up (issue #11, Speed).

Targets: the server's lateness p99 with the page open within 10% of without; the page
stays responsive with a 1,000 msg/s feed (its log renders one batch per animation
frame).

The server runs in this process (``serve`` + ``attach``, as ``sim run`` does) with
``bench/scenarios/lateness.toml`` (one stream at 1,000 msg/s). ``--conns`` plain
WebSocket clients that read everything run in a separate process. Each repetition
measures, on a fresh server, ``--seconds`` of lateness samples in each condition, in
turn:

- ``none``: no inspector client at all;
- ``served``: what the page costs the server, without a browser: one more reading
  client and an ``/events`` subscriber (in the readers' process);
- ``page``: headless Chromium (the Debian ``chromium``/``chromium-driver``) with the
  page open: its own feed client (one more WebSocket client at 1,000 msg/s) and
  ``/events``. On a small machine the browser's own CPU competes with the server's.

In the ``page`` condition the page itself reports how its animation frames went while
the feed ran (frames per second and the longest gap between two frames).

    .venv/bin/python bench/inspector_overhead.py                # 3 reps of 10 s
    .venv/bin/python bench/inspector_overhead.py --reps 5 --seconds 20 --conns 20
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from simulator.inspector import attach
from simulator.net.server import SimServer, serve
from simulator.scenario import load_scenario

BENCH = Path(__file__).resolve().parent
SCENARIO = BENCH / "scenarios" / "lateness.toml"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONDITIONS = ("none", "served", "page")

READERS = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.client import connect

    async def reader(url):
        async with connect(url, max_queue=None, ping_interval=None, compression=None) as ws:
            async for _ in ws:
                pass

    async def events(url):
        host, port = url.removeprefix("ws://").rsplit(":", 1)
        r, w = await asyncio.open_connection(host, int(port))
        w.write(b"GET /events HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        while await r.read(65536):
            pass

    async def main(url, n, seconds, with_events):
        tasks = [asyncio.ensure_future(reader(url)) for _ in range(n)]
        if with_events:
            tasks.append(asyncio.ensure_future(events(url)))
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"))
    """
)

# Counts animation frames in the page for a while: how many, and the longest gap.
FRAMES_JS = """
const done = arguments[arguments.length - 1];
const seconds = arguments[0];
let frames = 0, last = performance.now(), longest = 0;
const start = last;
function tick(now) {
  frames += 1; longest = Math.max(longest, now - last); last = now;
  if (now - start < seconds * 1000) requestAnimationFrame(tick);
  else done({fps: frames / ((now - start) / 1000), longest_gap_ms: longest,
             log_kept: page.log.length, received: [...page.streams.values()][0].received});
}
requestAnimationFrame(tick);
"""


def browser() -> Any:
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
    driver.set_script_timeout(120)
    driver.profile_dir = profile
    return driver


async def measure(server: SimServer, seconds: float) -> dict[str, float]:
    server.lateness_ns.clear()
    await asyncio.sleep(seconds)
    samples = np.fromiter(server.lateness_ns, dtype=np.int64) / 1e6
    return {
        "samples": len(samples),
        "p50_ms": float(np.percentile(samples, 50)),
        "p99_ms": float(np.percentile(samples, 99)),
    }


async def one_rep(args: argparse.Namespace, rep: int) -> list[dict[str, Any]]:
    rows = []
    for condition in CONDITIONS:
        async with serve(load_scenario(args.scenario), port=0) as server:
            attach(server)
            total = args.seconds + 3 + (args.seconds if condition == "page" else 0)
            served = condition == "served"
            conns = args.conns + served
            readers = await asyncio.create_subprocess_exec(
                sys.executable, "-c", READERS, server.url, str(conns), str(total + 5),
                "1" if served else "0",
            )  # fmt: skip
            driver = None
            try:
                while len(server.clients) < conns:
                    await asyncio.sleep(0.05)
                page: dict[str, Any] = {}
                if condition == "page":
                    driver = await asyncio.to_thread(browser)
                    page_url = server.url.replace("ws://", "http://") + "/"
                    await asyncio.to_thread(driver.get, page_url)
                    while len(server.clients) < args.conns + 1:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)
                if driver is not None:
                    frames = asyncio.ensure_future(
                        asyncio.to_thread(driver.execute_async_script, FRAMES_JS, args.seconds)
                    )
                row = await measure(server, args.seconds)
                if driver is not None:
                    page = await frames
            finally:
                if driver is not None:
                    await asyncio.to_thread(driver.quit)
                    shutil.rmtree(driver.profile_dir, ignore_errors=True)
                if readers.returncode is None:
                    readers.kill()
                await readers.wait()
        row.update(condition=condition, rep=rep, **{f"page_{k}": v for k, v in page.items()})
        print(f"# rep {rep} {condition}: {row}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    out = [
        f"### Inspector overhead: {args.reps} reps of {args.seconds:g} s, 1,000 msg/s to "
        f"{args.conns} clients (+ the page's own client when open)\n",
        "| rep | condition | samples | p50 ms | p99 ms | page fps | longest frame gap ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rep']} | {r['condition']} | {r['samples']:,} | {r['p50_ms']:.3f} "
            f"| {r['p99_ms']:.3f} | {r.get('page_fps', 0):.0f} "
            f"| {r.get('page_longest_gap_ms', 0):.0f} |"
        )
    p99 = {c: statistics.median(r["p99_ms"] for r in rows if r["condition"] == c)
           for c in CONDITIONS}  # fmt: skip
    out += [
        "",
        "| median p99: none | served (no browser) | ratio | page open | ratio | target <= 1.10 |",
        "|---|---|---|---|---|---|",
    ]
    served, opened = (p99[c] / p99["none"] if p99["none"] else float("nan") for c in CONDITIONS[1:])
    out.append(
        f"| {p99['none']:.3f} ms | {p99['served']:.3f} ms | {served:.2f} "
        f"| {p99['page']:.3f} ms | {opened:.2f} | {'met' if opened <= 1.10 else 'MISSED'} |"
    )
    return out


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for rep in range(1, args.reps + 1):
        rows += await one_rep(args, rep)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    args = ap.parse_args(argv)
    print("\n".join(report(asyncio.run(amain(args)), args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
