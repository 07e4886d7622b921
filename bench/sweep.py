"""Sustainable broadcast fan-out, lateness measured at the client: sim, Node and Bun (#14).

For each client count C (``--conns``, default 100, 1,000, 10,000) it climbs a ladder of
offered loads, doubling (``--start``, default 50,000 frames/s, up to ``--max``): the
per-connection rate at a rung is offered / C msg/s. At each rung every server still in
the race gets a fresh process on a free loopback port and the same load client,
``bench/loadclient.py`` (picows + uvloop, the anchors' venv; its docstring has every
figure's definition; arrival is the kernel's receive timestamp, so the client's own
queueing is left out, and "p99 at read" shows it with that queueing), run with
``-c C --rate R -w W -d D``; the servers take turns, in
an order that alternates from rep to rep, so drift on the shared machine hits all alike.
With ``--reps N`` each rung is run N times per server and judged on the medians.

- **sim**: ``python -m simulator run SCENARIO --port 0 --quiet`` with this interpreter
  (run it with ``PYTHONPATH`` at the tree to measure). SCENARIO is written for the point
  into a temp dir: one ~200-byte stream (the payload of ``bench/scenarios/fanout.toml``)
  every 1/R s, broadcast, ``max_connections`` above C, keepalive 10 min, and no
  ``epoch``, so each message's ``timestamp`` is its scheduled wall-clock time (ms). Extra
  ``[server]`` lines come from ``--sim-server`` (e.g. ``'max_lateness = "100ms"'``). Its
  stream runs from the start; nobody is connected to receive it until the client is.
- **node**: the anchors' Node.js ``ws`` replica in BENCH mode (``BENCH_RATE=R``), **bun**:
  the anchors' ``Bun.serve`` server (uWebSockets) in the same mode. Both wait for C
  clients (``BENCH_WAIT_CLIENTS``) before broadcasting; their ``timestamp`` is the time a
  message was created (ms), so their lateness leaves out how late their own timer fired.
  When they fall behind they skip messages before numbering them (at most 5,000 / C a
  tick): no seq gap, but fewer delivered frames ("source msg/s" below R).

A point is **sustained** when all C clients connected, delivered >= 99.5% of
C x R x window and client-side p99 lateness < 50 ms. A server stays on the ladder while
it sustains (``--full-ladder``: to the top); its first failing rung, at 2x its
sustainable load, is its **overload** row. The summary gives per C the sustainable load
of each server and the ratios sim / bun and sim / node; at each rung both sim and bun
sustained, sim's p99 and CPU against bun's (targets of #14: at C = 1,000 sim sustains
>= 2x bun; p99 and CPU <= bun's at equal load; overload p99 < 250 ms).

The load client shares the machine's 2 cores with the server: its CPU% is in every row,
and a row where it is near 100% measures the client, not the server. A point that fails
while unrelated processes used more than ``--retry-busy`` % of a core (default 30) is run
once more; both rows are shown, the second one counts.

    PYTHONPATH=. .venv/bin/python bench/sweep.py                   # about 5-9 min (296 s here)
    PYTHONPATH=. .venv/bin/python bench/sweep.py --conns 1000 --servers sim,bun --reps 3
    PYTHONPATH=. .venv/bin/python bench/sweep.py --sim-server 'max_lateness = "100ms"'
    PYTHONPATH=. .venv/bin/python bench/sweep.py --conns 100 --start 100000 --max 400000 -d 3
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _harness import (
    BENCH,
    Server,
    ensure_anchors,
    fmt,
    keep_row,
    machine_info,
    median,
    report_title,
    run_client,
    start_bun,
    start_node,
    start_url_server,
    stop_server,
    wait_quiet,
)

LOADCLIENT = BENCH / "loadclient.py"
SERVERS = ("sim", "node", "bun")
SUSTAINED_PCT = 99.5
SUSTAINED_P99_MS = 50.0
OVERLOAD_P99_MS = 250.0
TARGET_C1000_VS_BUN = 2.0
PAYLOAD_FIELDS = """\
[stream.fields]
price = { dist = "normal", mean = 100.0, std = 2.5, round = 2 }
size = { dist = "randint", min = 1, max = 5000 }
side = { choice = ["buy", "sell"] }
n = { dist = "counter", start = 1 }
pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
"""


# ---------------------------------------------------------------- servers


def sim_scenario(rate: float, conns: int, server_lines: Sequence[str], tmpdir: Path) -> Path:
    """A scenario with one ~200-byte broadcast stream at ``rate`` msg/s, for C clients.

    No ``epoch``: each message's ``timestamp`` is its scheduled wall-clock time. The
    interval is written in ns, so ``rate`` is what sim is asked for to within 1 ns a
    message."""
    every_ns = round(1e9 / rate)
    defaults = [
        'host = "127.0.0.1"',
        "port = 0",
        'mode = "broadcast"',
        f"max_connections = {min(100_000, conns + 1000)}",
        'keepalive_interval = "600s"',
        'keepalive_timeout = "600s"',
    ]
    # An extra line replaces the default of the same key (say mode = "per-connection").
    given = {line.split("=", 1)[0].strip() for line in server_lines}
    lines = [
        "# written by bench/sweep.py for one point of the sweep",
        "[scenario]",
        'name = "bench-sweep"',
        "seed = 1",
        "",
        "[server]",
        *(line for line in defaults if line.split("=", 1)[0].strip() not in given),
        *server_lines,
        "",
        "[[stream]]",
        'name = "bench"',
        f'every = "{every_ns}ns"',
        PAYLOAD_FIELDS,
    ]
    path = tmpdir / f"sweep-c{conns}-r{rate:g}.toml"
    path.write_text("\n".join(lines))
    return path


def start_server(
    kind: str,
    conns: int,
    rate: float,
    args: argparse.Namespace,
    anchors: Path,
    logdir: Path,
    stem: str,
) -> Server:
    """A fresh ``kind`` server on a free loopback port, sending ``rate`` msg/s to C."""
    log = logdir / f"{stem}.log"
    # long enough for the slowest point: connecting (<= 90 s), W, D, and stopping
    exit_after = int(120 + args.warmup + args.duration)
    if kind == "node":
        return start_node(anchors, log, rate=rate, wait_clients=conns, exit_after_s=exit_after)
    if kind == "bun":
        return start_bun(anchors, log, rate=rate, wait_clients=conns, exit_after_s=exit_after)
    scenario = sim_scenario(rate, conns, args.sim_server, logdir)
    argv = [sys.executable, "-m", "simulator", "run", str(scenario), "--port", "0", "--quiet"]
    return start_url_server("sim", argv, log)


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one, for this process and its children (the
    servers and the load client each hold C sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- one point


def run_point(
    kind: str,
    conns: int,
    rate: float,
    rep: int,
    args: argparse.Namespace,
    anchors: Path,
    logdir: Path,
    test: str = "sweep",
) -> dict[str, Any]:
    """One server, one load: start it, run the load client against it, stop it; the row
    (the client's JSON and the point's settings; ``failed`` says why there is none)."""
    busy_before = wait_quiet(args.quiet_max_s)
    stem = f"{kind}-c{conns}-r{rate:g}-rep{rep}"
    row: dict[str, Any] = {
        "test": test,
        "server": kind,
        "C": conns,
        "rate": rate,
        "offered": conns * rate,
        "rep": rep,
        "busy_before_pct": busy_before,
        "sim_server": list(args.sim_server) if kind == "sim" else [],
    }
    try:
        server = start_server(kind, conns, rate, args, anchors, logdir, stem)
    except (RuntimeError, OSError) as e:
        # sim's own one-line error (an unknown [server] key, say) is in its log
        log = logdir / f"{stem}.log"
        said = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        row["failed"] = f"server did not start: {said[0] if said else e}"
        return row
    argv = [
        str(anchors / ".venv" / "bin" / "python"),
        str(LOADCLIENT),
        "--port",
        str(server.port),
        "-c",
        str(conns),
        "--rate",
        repr(rate),
        "-d",
        str(args.duration),
        "-w",
        str(args.warmup),
        "-p",
        str(args.procs),
        "--stride",
        str(args.stride),
        "--clock",
        args.clock,
        "--server-pid",
        str(server.pid),
        "--label",
        stem,
    ]
    try:
        result, why = run_client(argv, 90 + args.warmup + args.duration + 40)
    finally:
        stop_server(server)
    row["log"] = str(server.log)
    row["stopped_by_sigterm"] = not server.killed
    if result is None:
        row["failed"] = why
        return row
    row.update(result)
    row["sustained"] = sustained(row)
    return row


def sustained(row: dict[str, Any]) -> bool:
    """All connected, >= 99.5% delivered, client-side p99 < 50 ms."""
    if row.get("failed") or row.get("connected") != row["C"]:
        return False
    lat = row.get("lateness_ms") or {}
    p99 = lat.get("p99")
    return bool(
        row.get("delivered_pct", 0) >= SUSTAINED_PCT and p99 is not None and p99 < SUSTAINED_P99_MS
    )


# ---------------------------------------------------------------- medians


def point_median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The reps of one (server, C, rate) reduced to medians (the row itself for one)."""
    ok = [r for r in rows if not r.get("failed")]
    first = rows[0]
    out: dict[str, Any] = {k: first[k] for k in ("server", "C", "rate", "offered")}
    out["reps"] = len(rows)
    out["failed_reps"] = len(rows) - len(ok)
    if not ok:
        out["failed"] = rows[0].get("failed")
        out["sustained"] = False
        return out

    def med(get: Any) -> float | None:
        return median([get(r) for r in ok])

    def lat(key: str) -> Any:
        return lambda r: (r.get("lateness_ms") or {}).get(key)

    out.update(
        connected=min(r["connected"] for r in ok),
        delivered_pct=med(lambda r: r.get("delivered_pct")),
        msgs_per_s=med(lambda r: r["msgs_per_s"]),
        per_conn_min=med(lambda r: r["per_conn_msgs_per_s"]["min"]),
        per_conn_max=med(lambda r: r["per_conn_msgs_per_s"]["max"]),
        source_msgs_per_s=med(lambda r: r.get("source_msgs_per_s")),
        gaps=med(lambda r: r["gaps"]["frames"]),
        gaps_pct=med(lambda r: r["gaps"]["pct_of_seqs"]),
        p50=med(lat("p50")),
        p99=med(lat("p99")),
        max=med(lat("max")),
        over_10ms_pct=med(lat("over_10ms_pct")),
        over_100ms_pct=med(lat("over_100ms_pct")),
        resolution=(ok[0].get("lateness_ms") or {}).get("resolution"),
        server_cpu_pct=med(lambda r: r.get("server_cpu_pct")),
        server_user_cpu_pct=med(lambda r: r.get("server_user_cpu_pct")),
        server_rss_mb=med(lambda r: r.get("server_rss_mb")),
        server_peak_rss_mb=med(lambda r: r.get("server_peak_rss_mb")),
        client_cpu_pct=med(lambda r: r["client_cpu_pct"]),
        other_procs_pct=med(lambda r: r["machine"]["other_procs_pct"]),
        stride=ok[0]["stride"],
        connect_errors=sum(r["errors"]["connect"] for r in ok),
        disconnects=sum(r["errors"]["disconnects_in_window"] for r in ok),
    )
    out["sustained"] = (
        out["connected"] == out["C"]
        and out["failed_reps"] == 0
        and (out["delivered_pct"] or 0) >= SUSTAINED_PCT
        and out["p99"] is not None
        and out["p99"] < SUSTAINED_P99_MS
    )
    return out


# ---------------------------------------------------------------- the sweep


def ladder(start: float, stop: float) -> list[float]:
    """Offered loads (frames/s) from ``start``, doubling, up to ``stop``."""
    loads = []
    load = start
    while load <= stop * (1 + 1e-9):
        loads.append(load)
        load *= 2
    return loads


def sweep(
    args: argparse.Namespace,
    anchors: Path,
    logdir: Path,
    info: dict[str, Any],
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Every point of the sweep (rows appended to ``rows`` as they come); the medians."""
    points: list[dict[str, Any]] = []
    for conns in args.conns:
        racing = list(args.servers)
        for offered in ladder(args.start, args.max):
            if not racing:
                break
            rate = offered / conns
            at_rung: dict[str, list[dict[str, Any]]] = {k: [] for k in racing}
            for rep in range(1, args.reps + 1):
                order = racing if rep % 2 else racing[::-1]
                for kind in order:
                    row = run_point(kind, conns, rate, rep, args, anchors, logdir)
                    print(f"# {describe(row)}", file=sys.stderr, flush=True)
                    if busy_failure(row, args.retry_busy):
                        # other processes took the cores: this measured the machine
                        keep_row(rows, {**row, "superseded": True}, info, args.out)
                        row = run_point(kind, conns, rate, rep, args, anchors, logdir)
                        row["retry_of_busy"] = True
                        print(f"# retried: {describe(row)}", file=sys.stderr, flush=True)
                    keep_row(rows, row, info, args.out)
                    at_rung[kind].append(row)
            for kind in list(racing):
                point = point_median(at_rung[kind])
                points.append(point)
                if not point["sustained"] and not args.full_ladder:
                    racing.remove(kind)
    return points


def busy_failure(row: dict[str, Any], limit_pct: float) -> bool:
    """A point that was not sustained while unrelated processes used more than
    ``limit_pct`` of a core (0: never): worth one retry."""
    if limit_pct <= 0 or row.get("failed") or row.get("sustained"):
        return False
    return bool(row["machine"]["other_procs_pct"] > limit_pct)


def describe(row: dict[str, Any]) -> str:
    head = f"{row['server']} C={row['C']} rate={row['rate']:g} rep={row['rep']}"
    if row.get("failed"):
        return f"{head}: failed: {row['failed']}"
    lat = row.get("lateness_ms") or {}
    return (
        f"{head}: {row.get('delivered_pct')}% delivered, p99 {lat.get('p99')} ms, "
        f"server CPU {row.get('server_cpu_pct')}%, client {row['client_cpu_pct']}%, "
        f"other {row['machine']['other_procs_pct']}%"
        f"{'' if row['sustained'] else ' (not sustained)'}"
    )


# ---------------------------------------------------------------- report


def rows_table(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every run: one line a server, C, rate and rep."""
    out = [
        "| server | C | msg/s per conn | offered frames/s | rep | delivered % "
        "| per-conn min-max msg/s | source msg/s | gaps | p50 ms | p99 ms | max ms "
        "| > 10 ms | > 100 ms | p99 at read ms | server CPU % | server RSS MB (peak) "
        "| client CPU % | other CPU % | sustained |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        "---:|---:|---|",
    ]
    for r in rows:
        if r.get("failed"):
            out.append(
                f"| {r['server']} | {r['C']:,} | {r['rate']:,.4g} | {r['offered']:,.0f} "
                f"| {r['rep']} | failed: {r['failed'][:80]} |{' |' * 14}"
            )
            continue
        lat = r.get("lateness_ms") or {}
        pc = r["per_conn_msgs_per_s"]
        notes = ""
        if r["connected"] != r["C"]:
            notes = f" ({r['connected']:,} connected)"
        if r["errors"]["disconnects_in_window"]:
            notes += f" ({r['errors']['disconnects_in_window']} disconnects)"
        if r.get("superseded"):
            notes += " (busy machine: run again)"
        if r.get("retry_of_busy"):
            notes += " (rerun)"
        out.append(
            f"| {r['server']} | {r['C']:,} | {r['rate']:,.4g} | {r['offered']:,.0f} "
            f"| {r['rep']} | {fmt(r.get('delivered_pct'), 2)} "
            f"| {fmt(pc['min'], 1)}-{fmt(pc['max'], 1)} | {fmt(r.get('source_msgs_per_s'), 1)} "
            f"| {r['gaps']['frames']:,} | {fmt(lat.get('p50'), 2)} | {fmt(lat.get('p99'), 2)} "
            f"| {fmt(lat.get('max'), 1)} | {fmt(lat.get('over_10ms_pct'), 2)}% "
            f"| {fmt(lat.get('over_100ms_pct'), 2)}% "
            f"| {fmt((r.get('lateness_read_ms') or {}).get('p99'), 2)} "
            f"| {fmt(r.get('server_cpu_pct'))} "
            f"| {fmt(r.get('server_rss_mb'), 0)} ({fmt(r.get('server_peak_rss_mb'), 0)}) "
            f"| {fmt(r['client_cpu_pct'])} | {fmt(r['machine']['other_procs_pct'])} "
            f"| {'yes' if r['sustained'] else 'no'}{notes} |"
        )
    return out


def points_table(points: Iterable[dict[str, Any]]) -> list[str]:
    """Medians over the reps of each (server, C, rate)."""
    out = [
        "| server | C | msg/s per conn | offered frames/s | delivered % "
        "| per-conn min-max msg/s | gaps | p50 ms | p99 ms | max ms | > 10 ms | > 100 ms "
        "| server CPU % | server RSS MB (peak) | client CPU % | sustained |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for p in points:
        if p.get("failed"):
            out.append(
                f"| {p['server']} | {p['C']:,} | {p['rate']:,.4g} | {p['offered']:,.0f} "
                f"| failed: {str(p['failed'])[:80]} |{' |' * 11}"
            )
            continue
        out.append(
            f"| {p['server']} | {p['C']:,} | {p['rate']:,.4g} | {p['offered']:,.0f} "
            f"| {fmt(p['delivered_pct'], 2)} | {fmt(p['per_conn_min'], 1)}-"
            f"{fmt(p['per_conn_max'], 1)} | {fmt(p['gaps'], 0)} | {fmt(p['p50'], 2)} "
            f"| {fmt(p['p99'], 2)} | {fmt(p['max'], 1)} | {fmt(p['over_10ms_pct'], 2)}% "
            f"| {fmt(p['over_100ms_pct'], 2)}% | {fmt(p['server_cpu_pct'])} "
            f"| {fmt(p['server_rss_mb'], 0)} ({fmt(p['server_peak_rss_mb'], 0)}) "
            f"| {fmt(p['client_cpu_pct'])} | {'yes' if p['sustained'] else 'no'} |"
        )
    return out


def sustainable(points: list[dict[str, Any]], kind: str, conns: int) -> dict[str, Any] | None:
    """The highest sustained point of ``kind`` at C below its first failure, or None."""
    best = None
    for p in sorted(
        (p for p in points if p["server"] == kind and p["C"] == conns),
        key=lambda p: p["offered"],
    ):
        if not p["sustained"]:
            break
        best = p
    return best


def overload(points: list[dict[str, Any]], kind: str, conns: int) -> dict[str, Any] | None:
    """The first failing point of ``kind`` at C (2x its sustainable load), or None."""
    for p in sorted(
        (p for p in points if p["server"] == kind and p["C"] == conns),
        key=lambda p: p["offered"],
    ):
        if not p["sustained"]:
            return p
    return None


def summary(points: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    kinds = list(args.servers)
    out = [
        "#### Sustainable load (>= 99.5% delivered, p99 < 50 ms, all connected)",
        "",
        "| C | " + " | ".join(f"{k} frames/s" for k in kinds) + " | sim / bun | sim / node "
        "| target |",
        "|---:|" + "---:|" * len(kinds) + "---:|---:|---|",
    ]
    for conns in args.conns:
        best = {k: sustainable(points, k, conns) for k in kinds}
        loads = {k: (b["offered"] if b else None) for k, b in best.items()}
        cells = []
        for k in kinds:
            top = max(
                (p["offered"] for p in points if p["server"] == k and p["C"] == conns), default=None
            )
            note = ""
            if loads[k] is not None and top == loads[k]:
                note = " (top of the ladder)"
            elif loads[k] is None and top is not None:
                note = f"< {min(p['offered'] for p in points if p['C'] == conns):,.0f}"
            cells.append(f"{fmt(loads[k], 0)}{note}" if loads[k] else note or "-")
        ratios = []
        for other in ("bun", "node"):
            s, o = loads.get("sim"), loads.get(other)
            ratios.append(f"{s / o:.2f}x" if s and o else "-")
        target = ""
        if conns == 1000 and "sim" in loads and "bun" in loads:
            s, b = loads["sim"], loads["bun"]
            ok = s is not None and b is not None and s >= TARGET_C1000_VS_BUN * b
            target = f">= {TARGET_C1000_VS_BUN:g}x bun: {'met' if ok else 'MISSED'}"
        out.append(f"| {conns:,} | " + " | ".join(cells) + f" | {' | '.join(ratios)} | {target} |")

    out += [
        "",
        "#### At equal load: every rung both sim and bun sustained",
        "",
        "| C | offered frames/s | sim p99 ms | bun p99 ms | p99 <= bun | sim CPU % (user) "
        "| bun CPU % (user) | CPU <= bun |",
        "|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    pairs = 0
    for conns in args.conns:
        for p in sorted(
            (p for p in points if p["server"] == "sim" and p["C"] == conns),
            key=lambda p: p["offered"],
        ):
            b = next(
                (
                    q
                    for q in points
                    if q["server"] == "bun" and q["C"] == conns and q["offered"] == p["offered"]
                ),
                None,
            )
            if not (b and p["sustained"] and b["sustained"]):
                continue
            pairs += 1
            lat_ok = "met" if p["p99"] <= b["p99"] else "MISSED"
            cpu_ok = "met" if (p["server_cpu_pct"] or 0) <= (b["server_cpu_pct"] or 0) else "MISSED"
            out.append(
                f"| {conns:,} | {p['offered']:,.0f} | {fmt(p['p99'], 2)} | {fmt(b['p99'], 2)} "
                f"| {lat_ok} | {fmt(p['server_cpu_pct'])} ({fmt(p['server_user_cpu_pct'])}) "
                f"| {fmt(b['server_cpu_pct'])} ({fmt(b['server_user_cpu_pct'])}) | {cpu_ok} |"
            )
    if not pairs:
        out.append("| - | none | | | | | | |")

    out += [
        "",
        "#### Overload: the first rung each server failed (2x its sustainable load)",
        "",
        "| server | C | offered frames/s | x sustainable | delivered % | gaps (% of seqs) "
        "| p50 ms | p99 ms | max ms | > 100 ms | server CPU % | target |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for conns in args.conns:
        for k in kinds:
            over = overload(points, k, conns)
            if over is None:
                continue
            p = over
            base = sustainable(points, k, conns)
            times = f"{p['offered'] / base['offered']:.0f}x" if base else "-"
            target = ""
            if k == "sim":
                ok = p.get("p99") is not None and p["p99"] < OVERLOAD_P99_MS
                target = f"p99 < {OVERLOAD_P99_MS:g} ms: {'met' if ok else 'MISSED'}"
            if p.get("failed"):
                out.append(
                    f"| {k} | {conns:,} | {p['offered']:,.0f} | {times} | failed: "
                    f"{str(p['failed'])[:60]} | | | | | | | {target} |"
                )
                continue
            out.append(
                f"| {k} | {conns:,} | {p['offered']:,.0f} | {times} "
                f"| {fmt(p['delivered_pct'], 2)} | {fmt(p['gaps'], 0)} "
                f"({fmt(p['gaps_pct'], 2)}%) | {fmt(p['p50'], 2)} | {fmt(p['p99'], 2)} "
                f"| {fmt(p['max'], 1)} | {fmt(p['over_100ms_pct'], 2)}% "
                f"| {fmt(p['server_cpu_pct'])} | {target} |"
            )
    return out


# ---------------------------------------------------------------- main


def common_args(ap: argparse.ArgumentParser) -> None:
    """The options every #14 bench built on :func:`run_point` shares."""
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="measured s a point")
    ap.add_argument("-w", "--warmup", type=float, default=1.5, help="s after all connected")
    ap.add_argument("-p", "--procs", type=int, default=1, help="load client processes")
    ap.add_argument("--stride", type=int, default=0, help="client parses every Nth frame (0: auto)")
    ap.add_argument(
        "--clock",
        choices=["kernel", "read"],
        default="kernel",
        help="arrival time: the kernel's receive timestamp (default) or the client's read "
        "(picows; includes the client's own queueing)",
    )
    ap.add_argument(
        "--sim-server",
        action="append",
        default=[],
        metavar="LINE",
        help="an extra line for sim's [server] table (repeatable), e.g. 'max_lateness = \"100ms\"'",
    )
    ap.add_argument(
        "--quiet-max-s",
        type=float,
        default=2.0,
        help="wait up to this long before each point for other load to drop",
    )
    ap.add_argument("--anchors", type=Path, default=None, help="anchors copy (setup.sh DIR)")
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")


def parse_servers(text: str) -> list[str]:
    kinds = [k for k in text.split(",") if k]
    bad = [k for k in kinds if k not in SERVERS]
    if bad or not kinds:
        raise SystemExit(f"--servers: {','.join(bad) or 'none'}: choose from {','.join(SERVERS)}")
    return kinds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", default="100,1000,10000", help="comma-separated client counts")
    ap.add_argument("--servers", default="sim,node,bun", help="comma-separated: sim,node,bun")
    ap.add_argument("--start", type=float, default=50_000, help="lowest offered frames/s")
    ap.add_argument("--max", type=float, default=3_200_000, help="highest offered frames/s")
    ap.add_argument("--reps", type=int, default=1, help="runs per server and rung (medians)")
    ap.add_argument(
        "--retry-busy",
        type=float,
        default=30.0,
        metavar="PCT",
        help="run a failed point once more if other processes used > PCT%% of a core "
        "in it (0: never); the table shows both",
    )
    ap.add_argument(
        "--full-ladder",
        action="store_true",
        help="run every rung, not just up to each server's first failure",
    )
    common_args(ap)
    args = ap.parse_args()
    args.conns = [int(c) for c in args.conns.split(",") if c]
    args.servers = parse_servers(args.servers)
    raise_fd_limit()
    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-sweep-"))
    info = machine_info(anchors)
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []
    points = sweep(args, anchors, logdir, info, rows)
    if args.out:
        with args.out.open("a") as f:
            for p in points:
                f.write(json.dumps({"test": "sweep-median", **p, "machine_info": info}) + "\n")
    sim_lines = "; ".join(args.sim_server) or "none"
    print(
        report_title("Sustainable fan-out sweep (#14)", info, ["sim", "node", "picows"], t0, logdir)
    )
    print(
        f"C = {', '.join(f'{c:,}' for c in args.conns)}; offered {args.start:,.0f} to "
        f"{args.max:,.0f} frames/s, doubling; {args.reps} rep(s) a rung; W = {args.warmup:g} s, "
        f"D = {args.duration:g} s; sim's extra [server] lines: {sim_lines}. Lateness = "
        "arrival - the message's timestamp (sim: scheduled; node, bun: created), "
        f"resolution {next((p.get('resolution') for p in points if p.get('resolution')), '?')}."
        "\n"
    )
    print("\n".join([*rows_table(rows), "", *summary(points, args)]))
    if args.reps > 1:
        print("\n#### Medians over reps\n")
        print("\n".join(points_table(points)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
