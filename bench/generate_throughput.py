"""Throughput and peak memory of `sim generate` on a high-rate scenario.

Target (from the issue): one 6-field stream at 10,000 msg/s for 10 min of virtual time
(6M events) written at >= 500,000 events/s on a 2-core machine, with peak memory that
stays flat as the duration grows.

Each point runs the real command, ``python -m simulator generate``, in a fresh child
process, and measures that child alone: wall time from spawn to exit (interpreter start
and imports included), and peak RSS from ``os.wait4``'s rusage for that one pid. The
row count of the output is checked against the schedule. A reference, measured the
same way, writes the same number of rows of ready-made payloads through the same
polars sink: the difference is the cost of rendering.

    .venv/bin/python bench/generate_throughput.py                  # 1m, 5m, 10m; 3 runs each
    .venv/bin/python bench/generate_throughput.py --durations 10m --repeat 5
    .venv/bin/python bench/generate_throughput.py --scenario bench/high-rate-derived.toml

``--scenario`` renders another one-stream scenario on the same 100 us schedule, such as
``bench/high-rate-derived.toml`` (the same fields plus four derived ones: a difference,
a percentage, a running total, a conditional).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "high-rate.toml"
TARGET_EVENTS_PER_S = 500_000
INTERVAL_NS = 100_000  # bench/high-rate.toml: every = "100us"
SINK_FRAME_ROWS = 16_384  # simulator.storage.generate.EVENTS_PER_FRAME
SINK_CHILD_FLAG = "--sink-only-child"


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system: less sensitive than wall time to other load
    peak_rss_mb: float


def measure(argv: Sequence[str], timeout_s: float) -> Run:
    """Run ``argv`` to completion and measure it alone; raise if it fails or times out."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        # wait4 blocks, so the timeout is a timer that kills the child.
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            reason = f"timed out after {timeout_s:g} s" if wall >= timeout_s else f"exit {code}"
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(argv)}: {reason}\n{tail}")
    # Linux: ru_maxrss is in KiB.
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def expected_messages(duration_ns: int) -> int:
    """Messages at k * interval for k >= 1, strictly before the duration."""
    return (duration_ns - 1) // INTERVAL_NS


def row_count(path: Path) -> int:
    import polars as pl

    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


def generate_argv(duration: str, out: Path, scenario: Path = SCENARIO) -> list[str]:
    return [
        sys.executable,
        "-m",
        "simulator",
        "generate",
        str(scenario),
        "--duration",
        duration,
        "--out",
        str(out),
    ]


def sink_argv(rows: int, out: Path, scenario: Path = SCENARIO) -> list[str]:
    here = str(Path(__file__).resolve())
    return [sys.executable, here, SINK_CHILD_FLAG, str(rows), str(out), str(scenario)]


def sink_only(rows: int, out: str, scenario: Path = SCENARIO) -> None:
    """The reference, run in a child: ``rows`` rows through generate's sink, no rendering.

    Same schema, frame size, metadata-free zstd ``sink_parquet`` from a registered IO
    source as :func:`simulator.storage.generate.generate`; the payload column is real
    messages of the scenario, rendered once before the clock starts and reused for every
    frame.
    """
    import numpy as np
    import polars as pl
    from polars.io.plugins import register_io_source

    from simulator.core.timeline import Timeline
    from simulator.scenario import load_scenario
    from simulator.storage.schema import SCHEMA, Kind, Sender, event_batch

    batch = Timeline(load_scenario(scenario)).take_until((SINK_FRAME_ROWS + 1) * INTERVAL_NS)
    payloads = pl.Series("payload", batch.payloads[:SINK_FRAME_ROWS], dtype=pl.Binary)
    stream = pl.Series("stream", ["tick"] * SINK_FRAME_ROWS, dtype=pl.String)

    def frames() -> Iterator[pl.DataFrame]:
        for first in range(0, rows, SINK_FRAME_ROWS):
            n = min(SINK_FRAME_ROWS, rows - first)
            t = np.arange(first + 1, first + n + 1, dtype=np.int64) * INTERVAL_NS
            yield event_batch(
                seq=np.arange(first, first + n, dtype=np.int64),
                t_ns=t,
                wall_ns=t,
                session="sink-only",
                conn=0,
                sender=Sender.SERVER,
                kind=Kind.TEXT,
                stream=stream[:n],
                payload=payloads[:n],
            )

    def source(*_: object) -> Iterator[pl.DataFrame]:
        yield from frames()

    register_io_source(source, schema=SCHEMA).sink_parquet(out, compression="zstd")


def median_run(argv: Sequence[str], out: Path, rows: int, repeat: int, timeout_s: float) -> Run:
    runs = []
    for _ in range(repeat):
        runs.append(measure(argv, timeout_s))
        got = row_count(out)
        if got != rows:
            raise RuntimeError(f"{out}: {got} rows, expected {rows}")
        out.unlink()
    return Run(
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
        statistics.median(r.peak_rss_mb for r in runs),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--durations", default="1m,5m,10m", help="virtual durations, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (median shown)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--scenario",
        type=Path,
        default=SCENARIO,
        help="a one-stream scenario every 100us (default: bench/high-rate.toml)",
    )
    args = parser.parse_args(argv)
    scenario: Path = args.scenario

    from simulator.core.durations import parse_duration

    durations = [d.strip() for d in args.durations.split(",") if d.strip()]
    print(
        f"sim generate {scenario.name}: 10,000 msg/s; "
        f"{os.cpu_count()} CPUs, median of {args.repeat}, load average {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'':<22}{'events':>11}{'wall s':>9}{'cpu s':>8}{'events/s':>11}{'x 500k':>8}"
        f"{'peak RSS MB':>13}"
    )
    print(header)
    print("-" * len(header))
    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        out = Path(tmp) / "out.parquet"
        for duration in durations:
            events = expected_messages(parse_duration(duration))
            for label, cmd in [
                (f"generate {duration}", generate_argv(duration, out, scenario)),
                (f"  sink only {duration}", sink_argv(events, out, scenario)),
            ]:
                is_sink = label.startswith("  sink")
                rows = events if is_sink else events + 1  # + the connection's open row
                try:
                    run = median_run(cmd, out, rows, args.repeat, args.timeout)
                except RuntimeError as e:
                    print(f"{label.strip()}: failed: {e}", file=sys.stderr)
                    return 1
                rate = events / run.wall_s
                print(
                    f"{label:<22}{events:>11,}{run.wall_s:>9.2f}{run.cpu_s:>8.2f}{rate:>11,.0f}"
                    f"{rate / TARGET_EVENTS_PER_S:>8.2f}{run.peak_rss_mb:>13.0f}"
                )
                if not is_sink:
                    peaks.append(run.peak_rss_mb)
    if len(peaks) > 1:
        print(
            f"peak RSS of generate from {durations[0]} to {durations[-1]}: "
            f"{peaks[0]:.0f} -> {peaks[-1]:.0f} MB ({peaks[-1] / peaks[0]:.2f}x)"
        )
    # Other processes on the machine slow every figure down: check this is near 0.
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == SINK_CHILD_FLAG:
        sink_only(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
    else:
        sys.exit(main())
