"""Broadcast fan-out: frames/s delivered to C clients, sim vs the Node.js replica.

Target (from the issue): with 1,000 clients and a ~200-byte stream at a saturating rate,
``sim`` delivers at least 1.5x the frames/s of the Node.js ``ws`` replica of the original
mock server, measured side by side in the same run with the same neutral load client.

For each C and each repetition it starts a fresh server on a free loopback port, runs
the anchors' ``loadgen.py -c C -d D -w W --server-pid PID`` (picows + uvloop, one
process) against it, stops the server, and keeps loadgen's JSON. The servers take turns
(node, sim, then sim, node, ...) so drift on the shared machine hits both alike.

* node: ``node-mock-server/server.js`` in BENCH mode, ``BENCH_RATE`` msg/s (default
  20,000), ~200-byte messages, broadcasting only once C clients are connected.
* sim: ``sim run bench/scenarios/fanout.toml`` (one ~200-byte stream every 50 us =
  20,000 msg/s, starting 2 s after the server, so the connections are open first).
  ``--sim-every 50us,1ms`` runs one sim variant per interval, side by side.

Inside the window it also sends one plain ``GET /healthz`` and times the first byte of
the answer (2 s at most): "no answer" means the server's event loop is not getting to
new connections. sim answers it with JSON; the node replica answers 426.

W is the warm-up after all clients are connected. With the default 1.5 s the window
starts about 1 s after sim's broadcast does; ``-w 8`` measures steady state instead.

Latency: loadgen measures send-to-receive from ``data.ts`` (monotonic ns), which the
node replica puts in its messages and sim's payloads do not carry; for sim the table
shows loadgen's inter-arrival time instead (mean gap over its sample stride).

    .venv/bin/python bench/fanout.py                      # C = 1000 and 100, 3 reps
    .venv/bin/python bench/fanout.py --conns 1000 -w 8 --sim-every 50us,1ms
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    BENCH,
    ensure_anchors,
    finish_loadgen,
    fmt,
    http_probe_ms,
    loadgen_timeout,
    machine_info,
    median,
    start_loadgen,
    start_node,
    start_sim,
    stop_server,
    wait_quiet,
)

SCENARIO = BENCH / "scenarios" / "fanout.toml"
SIM_STREAM_START_S = 2.0  # bench/scenarios/fanout.toml: start = "2s"
LOADGEN_START_S = 0.5  # about how long loadgen takes to start before it connects
TARGET_RATIO = 1.5
PROBE_AFTER_S = 3.0  # after W: inside the window for D >= 4
PROBE_TIMEOUT_S = 2.0


def with_interval(scenario: Path, every: str, tmpdir: Path) -> Path:
    """A copy of ``scenario`` whose one stream sends every ``every`` instead."""
    text, n = re.subn(r'(?m)^every = "[^"]*"$', f'every = "{every}"', scenario.read_text())
    if n != 1:
        raise SystemExit(f"{scenario}: expected exactly one 'every = ...' line, found {n}")
    out = tmpdir / f"{scenario.stem}-every-{every}.toml"
    out.write_text(text)
    return out


def run_one(
    kind: str,
    scenario: Path | None,
    conns: int,
    rep: int,
    args: argparse.Namespace,
    anchors: Path,
    logdir: Path,
) -> dict[str, Any]:
    busy_before = wait_quiet(args.quiet_max_s)
    log = logdir / f"{kind.replace(' ', '-')}-c{conns}-rep{rep}.log"
    if scenario is None:
        server = start_node(anchors, log, rate=args.node_rate, wait_clients=conns)
    else:
        server = start_sim(scenario, log)
    label = f"fanout {kind} c={conns} rep={rep}"
    try:
        proc = start_loadgen(
            anchors,
            server.port,
            conns=conns,
            duration_s=args.duration,
            warmup_s=args.warmup,
            server_pid=server.pid,
            procs=args.procs,
            label=label,
        )
        try:
            # Inside the measured window (it starts W s after connecting, which takes
            # about 0.5-1.5 s): does the server still answer a plain HTTP request?
            time.sleep(args.warmup + PROBE_AFTER_S)
            probe_ms = http_probe_ms(server.port, PROBE_TIMEOUT_S)
        finally:
            result = finish_loadgen(proc, loadgen_timeout(args.duration, args.warmup), label)
    finally:
        stop_server(server)
    row: dict[str, Any] = {
        "test": "fanout",
        "server": kind,
        "C": conns,
        "rep": rep,
        "warmup_s": args.warmup,
        "busy_before_pct": busy_before,
        "stopped_by_sigterm": not server.killed,
        "http_probe_ms": None if probe_ms is None else round(probe_ms, 1),
        "log": str(log),
    }
    if result is None:
        row["failed"] = True
        return row
    row.update(result)
    if scenario is not None:
        row["connect_before_broadcast"] = result["connect_s"] + LOADGEN_START_S < SIM_STREAM_START_S
    return row


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| server | C | rep | delivered frames/s | per-conn msg/s mean (min-max) "
        "| server CPU% | server CPU us/frame | client CPU% | other procs CPU% "
        "| server RSS MB (peak) | latency p50/p99 ms | connect s | HTTP probe ms | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("failed"):
            out.append(f"| {r['server']} | {r['C']} | {r['rep']} | failed |{' |' * 10}")
            continue
        pc = r["per_conn_msgs_per_s"]
        cpu = r.get("server_cpu_pct")
        us = cpu * 1e4 / r["msgs_per_s"] if cpu and r["msgs_per_s"] else None
        lat = r.get("latency_ms")
        if lat:
            latency = f"{lat['p50']} / {lat['p99']}"
        elif r.get("interarrival_ms"):
            ia = r["interarrival_ms"]
            latency = f"n/a (inter-arrival {ia['p50']} / {ia['p99']})"
        else:
            latency = "-"
        e = r["errors"]
        notes = []
        missing = r["connections"] - r["connected"]
        if missing or e["connect"] or e["disconnects_in_window"]:
            notes.append(
                f"{missing} not connected, {e['disconnects_in_window']} disconnects in window"
            )
        probe = fmt(r["http_probe_ms"]) if r["http_probe_ms"] is not None else "no answer"
        if not r["stopped_by_sigterm"]:
            notes.append("ignored SIGTERM (killed)")
        if r.get("connect_before_broadcast") is False:
            notes.append("broadcast may have begun before all connected")
        out.append(
            f"| {r['server']} | {r['C']} | {r['rep']} | {r['msgs_per_s']:,.0f} "
            f"| {pc['mean']:,.0f} ({fmt(pc['min'], 0)}-{fmt(pc['max'], 0)}) "
            f"| {fmt(cpu)} | {fmt(us, 2)} | {r['client_cpu_pct']} "
            f"| {r['machine']['other_procs_pct']} "
            f"| {r.get('server_rss_mb')} ({r.get('server_peak_rss_mb')}) | {latency} "
            f"| {r['connect_s']} | {probe} | {'; '.join(notes)} |"
        )
    return out


def summary(rows: list[dict[str, Any]], conns_list: list[int]) -> list[str]:
    kinds = list(dict.fromkeys(r["server"] for r in rows))
    out = [
        "| C | server | median frames/s | / node | target | median server CPU% "
        "| server CPU us/frame | median client CPU% | median peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in conns_list:
        node_fps = None
        for kind in kinds:
            ok = [r for r in rows if r["server"] == kind and r["C"] == c and not r.get("failed")]
            fps = median([r["msgs_per_s"] for r in ok])
            cpu = median([r.get("server_cpu_pct") for r in ok])
            us = cpu * 1e4 / fps if cpu and fps else None
            ratio, verdict = None, ""
            if kind == "node":
                node_fps = fps
            elif node_fps and fps is not None:
                ratio = fps / node_fps
                verdict = f">= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
            out.append(
                f"| {c} | {kind} | {fmt(fps, 0)} | {fmt(ratio, 2)}{'x' if ratio else ''} "
                f"| {verdict} | {fmt(cpu)} | {fmt(us, 2)} "
                f"| {fmt(median([r['client_cpu_pct'] for r in ok]))} "
                f"| {fmt(median([r.get('server_peak_rss_mb') for r in ok]))} |"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", default="1000,100", help="comma-separated client counts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="measured seconds")
    ap.add_argument("-w", "--warmup", type=float, default=1.5, help="warm-up seconds")
    ap.add_argument("-p", "--procs", type=int, default=1, help="loadgen worker processes")
    ap.add_argument("--node-rate", type=float, default=20000, help="node BENCH_RATE msg/s")
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    ap.add_argument(
        "--sim-every",
        default="",
        help="comma-separated intervals for the sim stream, one sim variant each "
        "(e.g. 50us,1ms); default: the scenario's own (50us)",
    )
    ap.add_argument("--no-node", action="store_true", help="run only sim")
    ap.add_argument("--quiet-max-s", type=float, default=5.0)
    ap.add_argument("--anchors", type=Path, default=None, help="anchors copy (setup.sh DIR)")
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args(argv)

    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    conns_list = [int(c) for c in args.conns.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-fanout-"))
    servers: dict[str, Path | None] = {} if args.no_node else {"node": None}
    for every in [e for e in args.sim_every.split(",") if e] or [""]:
        if every:
            servers[f"sim every={every}"] = with_interval(args.scenario, every, logdir)
        else:
            servers["sim"] = args.scenario
    info = machine_info(anchors)
    print(f"# fan-out: {json.dumps(info)}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for conns in conns_list:
        for rep in range(1, args.reps + 1):
            order = list(servers) if rep % 2 else list(servers)[::-1]
            for kind in order:
                row = run_one(kind, servers[kind], conns, rep, args, anchors, logdir)
                row["machine_info"] = info
                rows.append(row)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                msg = (
                    "failed"
                    if row.get("failed")
                    else f"{row['msgs_per_s']:,.0f} frames/s, server CPU "
                    f"{row.get('server_cpu_pct')}%, client {row['client_cpu_pct']}%, other "
                    f"{row['machine']['other_procs_pct']}%"
                )
                print(f"# {kind} C={conns} rep={rep}: {msg}", file=sys.stderr, flush=True)
    print(
        f"### Fan-out: {args.reps} reps, D={args.duration:g} s, W={args.warmup:g} s, "
        f"node BENCH_RATE={args.node_rate:g}, sim {args.scenario.name}"
        f"{' every ' + args.sim_every if args.sim_every else ''} "
        f"({time.monotonic() - t0:.0f} s; server logs in {logdir})\n"
    )
    print("\n".join([*table(rows), "", *summary(rows, conns_list)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
