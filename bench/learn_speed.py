"""Time `sim learn` on about 200,000 messages of the energy dashboard.

The issue's load is one hour of the dashboard at 100x its rates; the same number of
messages at the scenario's own rates is 96 hours, which is what this renders (with
`sim generate`, once) before timing `sim learn` on it in a fresh child process: wall
time from spawn to exit (imports included) and peak RSS. Target: under 10 s.

    .venv/bin/python bench/learn_speed.py
    .venv/bin/python bench/learn_speed.py --hours 96 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE.parent / "scenarios" / "energy-dashboard.toml"
TARGET_S = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=96, help="virtual hours to learn from")
    parser.add_argument("--repeat", type=int, default=3, help="runs (median shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sim-learn-") as tmp:
        recording = Path(tmp) / "feed.parquet"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "simulator",
                "generate",
                str(DASHBOARD),
                "--duration",
                f"{args.hours}h",
                "--out",
                str(recording),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        import polars as pl

        messages = pl.scan_parquet(recording).filter(pl.col("kind") == "text").select(pl.len())
        count = int(messages.collect().item())
        walls, peaks = [], []
        for i in range(args.repeat):
            out = Path(tmp) / f"learned{i}.toml"
            start = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "simulator", "learn", str(recording), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            walls.append(time.perf_counter() - start)
            peaks.append(usage.ru_maxrss / 1024)
            if os.waitstatus_to_exitcode(status) != 0:
                print("sim learn failed", file=sys.stderr)
                return 1
        wall = statistics.median(walls)
        print(
            f"sim learn on {count:,} messages ({args.hours} h of the dashboard): "
            f"{wall:.2f} s wall (median of {args.repeat}; target < {TARGET_S:g} s), "
            f"peak RSS {statistics.median(peaks):.0f} MB, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
