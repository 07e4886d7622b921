"""The README stays true: its Python example runs as pasted (a real server on 127.0.0.1,
in a process of its own), and it lists every scenario in scenarios/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_serve_example_runs_as_pasted() -> None:
    """Pasted into a file and run with `python` from the repository's root, the example
    prints the first feed message it gets (JSON; which stream depends on how soon it
    connects), then the server's stats."""
    [example] = [b for b in python_blocks() if "simulator.serve(" in b]
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    first, stats = result.stdout.splitlines()[:2]
    assert json.loads(first)["type"] in {
        "system_stats",
        "dashboard_stats",
        "energy_market",
        "notification",
        "transaction",
    }
    assert stats.startswith("Stats(")


def test_the_readme_lists_every_scenario_and_no_other() -> None:
    section = README.split("\n## Scenarios\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `scenarios/([^`]+\.toml)`", section, re.M))
    shipped = {p.name for p in (ROOT / "scenarios").glob("*.toml")}
    assert listed == shipped


def test_the_readme_use_list_shows_every_command() -> None:
    """Each `sim` command has a line of its own in the README's "Use" block."""
    from simulator.cli import main

    block = README.split("\n## Use\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    shown = set(re.findall(r"^\.venv/bin/sim (\w[\w-]*)", block, re.M))
    assert sorted(set(main.commands) - shown) == []
