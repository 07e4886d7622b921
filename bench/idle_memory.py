"""Memory per idle connection: sim vs the Node.js replica, side by side.

Target (from the issue): at most the Node.js replica's (about 11 KB per idle connection
in the anchors' RESULTS.md).

For each server: start it on a free loopback port, wait 1 s, read its RSS (0 clients),
open N idle connections with the anchors' ``loadgen.py -c N -d 2 -w 1 -s 1`` (as
``bench-fanout.sh`` does), and take the RSS loadgen reads at the end of its window.
(RSS_N - RSS_0) / N is the cost of one idle connection. Kernel socket buffers are not in
RSS, for either server.

* sim: ``sim run scenarios/energy-dashboard.toml --port 0 --max-connections 6000``
  (the dashboard feed: a message every few seconds, so the connections are idle).
* node: ``node-mock-server/server.js`` in normal mock mode (its five timers on).

    .venv/bin/python bench/idle_memory.py                 # N = 5000, 2 runs each
    .venv/bin/python bench/idle_memory.py -n 2000 --reps 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    ensure_anchors,
    fmt,
    loadgen,
    machine_info,
    median,
    rss_kb,
    start_node,
    start_sim,
    stop_server,
    wait_quiet,
)

SCENARIO = REPO / "scenarios" / "energy-dashboard.toml"


def run_one(
    kind: str, n: int, rep: int, anchors: Path, logdir: Path, scenario: Path
) -> dict[str, Any]:
    busy = wait_quiet()
    log = logdir / f"{kind}-idle-rep{rep}.log"
    if kind == "node":
        server = start_node(anchors, log, rate=0)
    else:
        server = start_sim(scenario, log, extra=["--max-connections", "6000"])
    try:
        time.sleep(1.0)
        rss0 = rss_kb(server.pid)
        result = loadgen(
            anchors,
            server.port,
            conns=n,
            duration_s=2,
            warmup_s=1,
            sample=1,
            server_pid=server.pid,
            label=f"idle {kind} n={n} rep={rep}",
            timeout_s=100,
        )
    finally:
        stop_server(server)
    row: dict[str, Any] = {
        "test": "idle",
        "server": kind,
        "rep": rep,
        "N": n,
        "rss0_kb": rss0,
        "busy_before_pct": busy,
        "failed": result is None,
    }
    if result is not None:
        row.update(result)
        row["kb_per_conn"] = (result["server_rss_mb"] * 1024 - rss0) / max(1, result["connected"])
    return row


def report(rows: list[dict[str, Any]], n: int) -> list[str]:
    out = [
        f"### Idle memory: {n} idle connections\n",
        "| server | run | connected | RSS 0 conns MB | RSS N conns MB | KB per idle conn "
        "| server CPU% idle |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["failed"]:
            out.append(f"| {r['server']} | {r['rep']} | failed | | | | |")
            continue
        out.append(
            f"| {r['server']} | {r['rep']} | {r['connected']} | {r['rss0_kb'] / 1024:.1f} "
            f"| {r['server_rss_mb']} | {r['kb_per_conn']:.2f} | {r.get('server_cpu_pct')} |"
        )
    med = {
        kind: median([r.get("kb_per_conn") for r in rows if r["server"] == kind])
        for kind in ("node", "sim")
    }
    ratio = med["sim"] / med["node"] if med["sim"] and med["node"] else None
    verdict = "-" if ratio is None else ("met" if ratio <= 1.0 else "MISSED")
    out += [
        "",
        "| median KB per idle conn: node | sim | sim / node | target sim <= node |",
        "|---|---|---|---|",
        f"| {fmt(med['node'], 2)} | {fmt(med['sim'], 2)} | {fmt(ratio, 2)}"
        f"{'x' if ratio else ''} | {verdict} |",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--conns", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    ap.add_argument("--anchors", type=Path, default=None, help="anchors copy (setup.sh DIR)")
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args(argv)
    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-idle-"))
    info = machine_info(anchors)
    print(f"# idle memory: {json.dumps(info)}", file=sys.stderr)
    rows = []
    for rep in range(1, args.reps + 1):
        for kind in ("node", "sim") if rep % 2 else ("sim", "node"):
            row = run_one(kind, args.conns, rep, anchors, logdir, args.scenario)
            row["machine_info"] = info
            rows.append(row)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(
                f"# {kind} idle rep={rep}: "
                + ("failed" if row["failed"] else f"{row['kb_per_conn']:.2f} KB/conn"),
                file=sys.stderr,
                flush=True,
            )
    print("\n".join(report(rows, args.conns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
