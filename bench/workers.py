"""`sim run --workers N`: broadcast fan-out and idle memory per connection, N vs 1.

Fan-out: for each worker count (default 1 and 2) and repetition, start
``sim run bench/scenarios/fanout.toml --port 0 --quiet --workers N`` (one ~200-byte
stream at 20,000 msg/s, starting 2 s after the server), run the anchors' ``loadgen.py``
(picows + uvloop, one process, on this same machine) with C clients, and keep the frames/s
it received in its window. The counts take turns (1, 2, then 2, 1, ...) so drift on a
shared machine hits both alike. CPU is the sum over the sim processes (the supervisor
and its workers) over loadgen's run, connecting included, in % of one core.

Every worker renders the whole feed itself (that is what keeps them independent), so
with N workers the rendering is done N times and only the sending is shared: on a
machine with fewer free cores than workers + load client the gain is small or none.

Idle memory: the same with the dashboard scenario and ``-n`` idle connections (as
``idle_memory.py``): (peak RSS while loadgen holds N connections - RSS with none) / N,
RSS summed over the workers (the supervisor holds no connection and is left out).

    PYTHONPATH=. .venv/bin/python bench/workers.py                 # C=500, 3 reps; idle 2000
    PYTHONPATH=. .venv/bin/python bench/workers.py --conns 1000 --workers 1,2 --reps 5
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
    BENCH,
    REPO,
    Server,
    ensure_anchors,
    finish_loadgen,
    fmt,
    loadgen,
    loadgen_timeout,
    machine_info,
    median,
    proc_cpu_s,
    rss_kb,
    start_loadgen,
    start_url_server,
    stop_server,
    wait_quiet,
)

FANOUT = BENCH / "scenarios" / "fanout.toml"
DASHBOARD = REPO / "scenarios" / "energy-dashboard.toml"


def start(scenario: Path, workers: int, log: Path) -> Server:
    """``sim run`` with this interpreter (run it with PYTHONPATH at the tree to measure)."""
    argv = [sys.executable, "-m", "simulator", "run", str(scenario), "--port", "0", "--quiet"]
    argv += ["--workers", str(workers), "--max-connections", "6000"]
    return start_url_server(f"sim x{workers}", argv, log)


def sim_pids(root: int) -> list[int]:
    """``root`` and its child processes (the workers; and multiprocessing's resource
    tracker, which sleeps)."""
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            children.append(int(stat.parent.name))
    return [root, *sorted(children)]


def cpu_s(pids: list[int]) -> float:
    return sum(v for v in (proc_cpu_s(p) for p in pids) if v == v)  # NaN: gone


def fanout(
    workers: int, conns: int, rep: int, args: argparse.Namespace, anchors: Path, logdir: Path
) -> dict[str, Any]:
    busy = wait_quiet(args.quiet_max_s)
    server = start(args.scenario, workers, logdir / f"fanout-x{workers}-rep{rep}.log")
    try:
        time.sleep(0.3)  # the workers' pids: they are listening once the URL is printed
        pids = sim_pids(server.pid)
        cpu0, t0 = cpu_s(pids), time.monotonic()
        result = loadgen(
            anchors,
            server.port,
            conns=conns,
            duration_s=args.duration,
            warmup_s=args.warmup,
            server_pid=server.pid,
            label=f"workers x{workers} c={conns} rep={rep}",
            timeout_s=loadgen_timeout(args.duration, args.warmup),
        )
        cpu_pct = 100 * (cpu_s(pids) - cpu0) / (time.monotonic() - t0)
    finally:
        stop_server(server, grace_s=10)
    row: dict[str, Any] = {
        "test": "workers-fanout",
        "workers": workers,
        "C": conns,
        "rep": rep,
        "busy_before_pct": busy,
        "processes": len(pids),
        "sim_cpu_pct": round(cpu_pct, 1),
        "failed": result is None,
    }
    if result is not None:
        row.update(result)
    return row


def idle(workers: int, n: int, rep: int, anchors: Path, logdir: Path) -> dict[str, Any]:
    busy = wait_quiet()
    server = start(DASHBOARD, workers, logdir / f"idle-x{workers}-rep{rep}.log")
    label = f"idle x{workers} n={n} rep={rep}"
    try:
        time.sleep(1.0)
        pids = sim_pids(server.pid)
        serving = pids[1:] if workers > 1 else pids  # not the supervisor, which holds none
        rss0 = sum(rss_kb(p) for p in serving)
        proc = start_loadgen(
            anchors,
            server.port,
            conns=n,
            duration_s=3,
            warmup_s=1,
            sample=1,
            server_pid=server.pid,
            label=label,
        )
        # The peak of the summed RSS while loadgen holds its connections open.
        peak = rss0
        while proc.poll() is None:
            peak = max(peak, sum(rss_kb(p) for p in serving))
            time.sleep(0.2)
        result = finish_loadgen(proc, 100, label)
    finally:
        stop_server(server, grace_s=10)
    row: dict[str, Any] = {
        "test": "workers-idle",
        "workers": workers,
        "rep": rep,
        "N": n,
        "busy_before_pct": busy,
        "rss0_kb": rss0,
        "rss_n_kb": peak,
        "failed": result is None,
    }
    if result is not None:
        row["connected"] = result["connected"]
        row["kb_per_conn"] = (peak - rss0) / max(1, result["connected"])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--conns", type=int, default=500, help="fan-out clients")
    ap.add_argument("--reps", type=int, default=3, help="fan-out repetitions (0: skip)")
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="measured seconds")
    ap.add_argument("-w", "--warmup", type=float, default=1.5, help="warm-up seconds")
    ap.add_argument(
        "--idle",
        default="1000,4000",
        help="comma-separated idle connection counts (empty: skip); with two or more, the "
        "slope between the smallest and the largest too",
    )
    ap.add_argument("--scenario", type=Path, default=FANOUT)
    ap.add_argument("--quiet-max-s", type=float, default=5.0)
    ap.add_argument("--anchors", type=Path, default=None, help="anchors copy (setup.sh DIR)")
    ap.add_argument("--out", type=Path, default=None, help="append raw JSON lines here")
    args = ap.parse_args(argv)
    anchors = ensure_anchors(args.anchors) if args.anchors else ensure_anchors()
    counts = [int(w) for w in args.workers.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="sim-bench-workers-"))
    info = machine_info(anchors)
    print(f"# workers: {json.dumps(info)}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for rep in range(1, args.reps + 1):
        for workers in counts if rep % 2 else counts[::-1]:
            row = fanout(workers, args.conns, rep, args, anchors, logdir)
            rows.append(row)
            print(
                f"# fanout x{workers} rep={rep}: "
                + (
                    "failed"
                    if row["failed"]
                    else f"{row['msgs_per_s']:,.0f} frames/s, sim CPU {row['sim_cpu_pct']}%, "
                    f"client {row['client_cpu_pct']}%, other {row['machine']['other_procs_pct']}%"
                ),
                file=sys.stderr,
                flush=True,
            )
    sizes = [int(n) for n in args.idle.split(",") if n]
    for rep in range(1, 3 if sizes else 1):
        for n in sizes:
            for workers in counts if rep % 2 else counts[::-1]:
                row = idle(workers, n, rep, anchors, logdir)
                rows.append(row)
                print(
                    f"# idle x{workers} n={n} rep={rep}: "
                    + ("failed" if row["failed"] else f"{row['kb_per_conn']:.2f} KB/conn"),
                    file=sys.stderr,
                    flush=True,
                )
    if args.out:
        with args.out.open("a") as f:
            for row in rows:
                f.write(json.dumps({**row, "machine_info": info}) + "\n")
    print("\n".join(report(rows, counts, args)))
    return 0


def report(rows: list[dict[str, Any]], counts: list[int], args: argparse.Namespace) -> list[str]:
    fan = [r for r in rows if r["test"] == "workers-fanout"]
    out = [
        f"### Fan-out with --workers: C={args.conns}, D={args.duration:g} s, "
        f"W={args.warmup:g} s, {args.reps} reps, {args.scenario.name}\n",
        "| workers | rep | delivered frames/s | sim CPU% (all processes) | client CPU% "
        "| other procs CPU% | load before % |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in fan:
        if r["failed"]:
            out.append(f"| {r['workers']} | {r['rep']} | failed | | | | |")
            continue
        out.append(
            f"| {r['workers']} | {r['rep']} | {r['msgs_per_s']:,.0f} | {r['sim_cpu_pct']} "
            f"| {r['client_cpu_pct']} | {r['machine']['other_procs_pct']} "
            f"| {r['busy_before_pct']} |"
        )
    base = median([r.get("msgs_per_s") for r in fan if r["workers"] == counts[0]])
    out += ["", "| workers | median frames/s | / first |", "|---|---|---|"]
    for w in counts:
        fps = median([r.get("msgs_per_s") for r in fan if r["workers"] == w])
        ratio = fps / base if fps and base else None
        out.append(f"| {w} | {fmt(fps, 0)} | {fmt(ratio, 2)}{'x' if ratio else ''} |")
    idle_rows = [r for r in rows if r["test"] == "workers-idle"]
    if idle_rows:
        out += [
            "",
            "### Idle memory with --workers\n",
            "| workers | N | rep | connected | RSS 0 conns MB | RSS N conns MB "
            "| KB per idle conn |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in idle_rows:
            if r["failed"]:
                out.append(f"| {r['workers']} | {r['N']} | {r['rep']} | failed | | | |")
                continue
            out.append(
                f"| {r['workers']} | {r['N']} | {r['rep']} | {r['connected']} "
                f"| {r['rss0_kb'] / 1024:.1f} | {r['rss_n_kb'] / 1024:.1f} "
                f"| {r['kb_per_conn']:.2f} |"
            )
        sizes = sorted({r["N"] for r in idle_rows})
        if len(sizes) > 1:
            # What one more connection costs, without what a process pays once for its
            # first connections (imports, allocator arenas), which N workers pay N times.
            lo, hi = sizes[0], sizes[-1]
            out += [
                "",
                f"| workers | KB per idle conn at {lo} | at {hi} "
                f"| marginal KB per conn ({lo} to {hi}, medians) |",
                "|---|---|---|---|",
            ]
            for w in counts:

                def med(n: int, key: str, w: int = w) -> float | None:
                    return median(
                        [r.get(key) for r in idle_rows if r["workers"] == w and r["N"] == n]
                    )

                a, b = med(lo, "rss_n_kb"), med(hi, "rss_n_kb")
                a0, b0 = med(lo, "rss0_kb"), med(hi, "rss0_kb")
                slope = None
                if None not in (a, b, a0, b0):
                    slope = ((b - b0) - (a - a0)) / (hi - lo)  # type: ignore[operator]
                out.append(
                    f"| {w} | {fmt(med(lo, 'kb_per_conn'), 2)} | {fmt(med(hi, 'kb_per_conn'), 2)} "
                    f"| {fmt(slope, 2)} |"
                )
    return out


if __name__ == "__main__":
    sys.exit(main())
