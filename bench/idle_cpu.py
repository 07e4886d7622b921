"""Idle CPU at the dashboard's own rates: sim against the Node.js replica (#14).

Target (issue #14, item 3): at the dashboard's own rates, server CPU < 1% of a core.

Per server and repetition (taking turns): a fresh server with a few clients connected
(``-c``, default 5) by ``bench/loadclient.py --stride 1``, and its user + system CPU over
``-d`` seconds (default 30) after ``-w`` s (default 3), in % of one core, read from
``/proc`` by the client at the window's ends.

- **sim**: ``python -m simulator run scenarios/energy-dashboard.toml --port 0 --quiet``
  with this interpreter (its five streams every 5-30 s; no ``epoch``, so timestamps are
  scheduled times).
- **node**: the anchors' Node.js ``ws`` replica in its normal mode (no ``BENCH_RATE``):
  the original mock server's timers, the same five message kinds.

The table also shows the messages each client received and their client-side lateness
(sim: against the scheduled time; node: against creation), so "idle" is not "silent".

    PYTHONPATH=. .venv/bin/python bench/idle_cpu.py              # 2 servers x 1 rep, ~1.5 min
    PYTHONPATH=. .venv/bin/python bench/idle_cpu.py --reps 3 -d 60 -c 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    REPO,
    Server,
    ensure_anchors,
    fmt,
    keep_row,
    machine_info,
    median,
    report_title,
    run_client,
    start_node,
    start_url_server,
    stop_server,
    wait_quiet,
)
from sweep import LOADCLIENT

DASHBOARD = REPO / "scenarios" / "energy-dashboard.toml"
TARGET_CPU_PCT = 1.0


def start(kind: str, scenario: Path, anchors: Path, log: Path, exit_after_s: int) -> Server:
    if kind == "node":
        return start_node(anchors, log, rate=0, exit_after_s=exit_after_s)
    argv = [sys.executable, "-m", "simulator", "run", str(scenario), "--port", "0", "--quiet"]
    return start_url_server("sim", argv, log)


def run_one(
    kind: str, rep: int, args: argparse.Namespace, anchors: Path, logdir: Path
) -> dict[str, Any]:
    busy = wait_quiet(args.quiet_max_s)
    log = logdir / f"{kind}-rep{rep}.log"
    row: dict[str, Any] = {"test": "idle-cpu", "server": kind, "rep": rep, "busy_before_pct": busy}
    server = start(kind, args.scenario, anchors, log, int(args.duration + args.warmup + 120))
    argv = [
        str(anchors / ".venv" / "bin" / "python"),
        str(LOADCLIENT),
        "--port",
        str(server.port),
        "-c",
        str(args.conns),
        "-d",
        str(args.duration),
        "-w",
        str(args.warmup),
        "--stride",
        "1",
        "--grace",
        "0",
        "--server-pid",
        str(server.pid),
        "--label",
        f"idle {kind} rep={rep}",
    ]
    try:
        result, why = run_client(argv, 90 + args.warmup + args.duration + 30)
    finally:
        stop_server(server)
    if result is None:
        row["failed"] = why
    else:
        row.update(result)
    return row


def report(rows: list[dict[str, Any]], kinds: list[str]) -> list[str]:
    out = [
        "| server | rep | clients | window s | server CPU % | messages per client "
        "| lateness p50 / max ms | server RSS MB | other CPU % |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        if r.get("failed"):
            out.append(f"| {r['server']} | {r['rep']} | failed: {r['failed'][:80]} |{' |' * 6}")
            continue
        lat = r.get("lateness_ms") or {}
        per_client = r["total_messages"] / max(1, r["connected"])
        out.append(
            f"| {r['server']} | {r['rep']} | {r['connected']} | {r['seconds']:.1f} "
            f"| {fmt(r.get('server_cpu_pct'), 2)} | {per_client:.1f} "
            f"| {fmt(lat.get('p50'), 2)} / {fmt(lat.get('max'), 2)} "
            f"| {fmt(r.get('server_rss_mb'), 0)} | {fmt(r['machine']['other_procs_pct'])} |"
        )
    out += ["", "| server | median CPU % | target < 1% |", "|---|---:|---|"]
    for kind in kinds:
        cpu = median([r.get("server_cpu_pct") for r in rows if r["server"] == kind])
        verdict = "-" if cpu is None else ("met" if cpu < TARGET_CPU_PCT else "MISSED")
        out.append(f"| {kind} | {fmt(cpu, 2)} | {verdict if kind == 'sim' else ''} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default="sim,node", help="comma-separated: sim,node")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("-c", "--conns", type=int, default=5)
    ap.add_argument("-d", "--duration", type=float, default=30.0, help="measured s (<= 60)")
    ap.add_argument("-w", "--warmup", type=float, default=3.0)
    ap.add_argument("--scenario", type=Path, default=DASHBOARD)
    ap.add_argument("--quiet-max-s", type=float, default=3.0)
    ap.add_argument("--anchors", type=Path, default=None, help="anchors copy (setup.sh DIR)")
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args()
    kinds = [k for k in args.servers.split(",") if k]
    if not kinds or any(k not in ("sim", "node") for k in kinds):
        raise SystemExit("--servers: choose from sim,node")
    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-idle-cpu-"))
    info = machine_info(anchors)
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for kind in kinds if rep % 2 else kinds[::-1]:
            row = run_one(kind, rep, args, anchors, logdir)
            keep_row(rows, row, info, args.out)
            print(f"# idle {kind} rep={rep}: CPU {row.get('server_cpu_pct')}%", file=sys.stderr)
    print(
        report_title("Idle CPU at the dashboard's rates (#14)", info, ["sim", "node"], t0, logdir)
    )
    print(
        f"{args.conns} clients, W = {args.warmup:g} s, D = {args.duration:g} s; sim: "
        f"{args.scenario.name}; node: the replica's normal mode.\n"
    )
    print("\n".join(report(rows, kinds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
