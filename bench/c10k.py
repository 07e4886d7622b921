"""C10k: 10,000 clients each receiving 1 msg/s, client-side lateness: sim, Bun, Node (#14).

Target (issue #14, item 5): all 10,000 connected and served, client-side p99 lateness
under 50 ms, RSS reported.

One point of ``bench/sweep.py`` (its docstring has the servers and the method) at
C = 10,000 and 1 msg/s per connection, per server and repetition, the servers taking
turns: a fresh server, ``bench/loadclient.py -c 10000 --rate 1`` (stride 1: every frame
parsed, so "delivered" counts the frames *stamped* in the window, exact at a few messages
a connection), W s after all are connected, D s measured. Each message is one broadcast,
so all 10,000 copies leave in one burst; lateness is reported as it comes. The client
times each frame by the kernel's receive timestamp (``--clock kernel``, the default), so
its own queueing is left out: it reads a burst one connection after another, and its
time per frame (``client us/frame``) x 10,000 is the "client floor" that the figure
with that queueing, "p99 at read", cannot go below (``-p 2`` splits the clients over two
processes and halves it, but takes CPU from the server on 2 cores).

    PYTHONPATH=. .venv/bin/python bench/c10k.py                    # 3 servers, 1 rep, ~1.5 min
    PYTHONPATH=. .venv/bin/python bench/c10k.py --reps 3 -d 10 --servers sim,bun
    PYTHONPATH=. .venv/bin/python bench/c10k.py --sim-server 'max_lateness = "100ms"'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import ensure_anchors, fmt, keep_row, machine_info, median, report_title
from sweep import common_args, parse_servers, raise_fd_limit, run_point

CONNS = 10_000
RATE = 1.0
TARGET_P99_MS = 50.0


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| server | rep | connected | delivered % | gaps | per-conn min-max msg/s | p50 ms "
        "| p99 ms | max ms | > 10 ms | > 100 ms | server CPU % | server RSS MB (peak) "
        "| client us/frame | client floor ms | p99 at read ms | other CPU % |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("failed"):
            out.append(f"| {r['server']} | {r['rep']} | failed: {r['failed'][:80]} |{' |' * 14}")
            continue
        lat = r.get("lateness_ms") or {}
        pc = r["per_conn_msgs_per_s"]
        us = r.get("client_us_per_frame")
        floor = us * CONNS / 1e3 / r["procs"] if us else None
        out.append(
            f"| {r['server']} | {r['rep']} | {r['connected']:,} | {fmt(r.get('delivered_pct'), 2)} "
            f"| {r['gaps']['frames']:,} | {fmt(pc['min'], 2)}-{fmt(pc['max'], 2)} "
            f"| {fmt(lat.get('p50'), 1)} | {fmt(lat.get('p99'), 1)} | {fmt(lat.get('max'), 1)} "
            f"| {fmt(lat.get('over_10ms_pct'), 1)}% | {fmt(lat.get('over_100ms_pct'), 1)}% "
            f"| {fmt(r.get('server_cpu_pct'))} "
            f"| {fmt(r.get('server_rss_mb'), 0)} ({fmt(r.get('server_peak_rss_mb'), 0)}) "
            f"| {fmt(us, 1)} | {fmt(floor, 0)} "
            f"| {fmt((r.get('lateness_read_ms') or {}).get('p99'), 1)} "
            f"| {fmt(r['machine']['other_procs_pct'])} |"
        )
    return out


def summary(rows: list[dict[str, Any]], kinds: list[str]) -> list[str]:
    out = [
        "| server | median p99 ms | median delivered % | all connected, every rep | "
        "median peak RSS MB | target: all served, p99 < 50 ms |",
        "|---|---:|---:|---|---:|---|",
    ]
    for kind in kinds:
        mine = [r for r in rows if r["server"] == kind]
        ok = [r for r in mine if not r.get("failed")]
        p99 = median([(r.get("lateness_ms") or {}).get("p99") for r in ok])
        delivered = median([r.get("delivered_pct") for r in ok])
        connected = bool(ok) and len(ok) == len(mine) and all(r["connected"] == CONNS for r in ok)
        met = connected and p99 is not None and p99 < TARGET_P99_MS
        met = met and delivered is not None and delivered >= 99.5
        out.append(
            f"| {kind} | {fmt(p99, 1)} | {fmt(delivered, 2)} | {'yes' if connected else 'no'} "
            f"| {fmt(median([r.get('server_peak_rss_mb') for r in ok]), 0)} "
            f"| {'met' if met else 'MISSED'} |"
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default="sim,bun,node", help="comma-separated: sim,node,bun")
    ap.add_argument("--reps", type=int, default=1)
    common_args(ap)
    ap.set_defaults(duration=10.0, warmup=3.0)
    args = ap.parse_args()
    kinds = parse_servers(args.servers)
    raise_fd_limit()
    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-c10k-"))
    info = machine_info(anchors)
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for kind in kinds if rep % 2 else kinds[::-1]:
            row = run_point(kind, CONNS, RATE, rep, args, anchors, logdir, test="c10k")
            keep_row(rows, row, info, args.out)
            lat = row.get("lateness_ms") or {}
            print(
                f"# {kind} rep={rep}: "
                + (
                    f"failed: {row['failed']}"
                    if row.get("failed")
                    else f"{row['connected']} connected, {row.get('delivered_pct')}% delivered, "
                    f"p99 {lat.get('p99')} ms, RSS {row.get('server_rss_mb')} MB"
                ),
                file=sys.stderr,
                flush=True,
            )
    print(
        report_title(
            "C10k: 10,000 clients x 1 msg/s (#14)", info, ["sim", "node", "picows"], t0, logdir
        )
    )
    sim_lines = "; ".join(args.sim_server) or "none"
    print(
        f"W = {args.warmup:g} s after all connected, D = {args.duration:g} s, {args.procs} "
        f"load client process(es); sim's extra [server] lines: {sim_lines}. Lateness = "
        "arrival - the message's timestamp (sim: scheduled; node, bun: created).\n"
    )
    print("\n".join([*table(rows), "", *summary(rows, kinds)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
