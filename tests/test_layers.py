"""The layering promised in simulator/__init__.py holds, and the public names exist."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import simulator

CORE_MODULES = [
    "simulator.core.model",
    "simulator.core.draws",
    "simulator.core.schedules",
    "simulator.core.values",
    "simulator.core.encode",
    "simulator.core.timeline",
    "simulator.core.protocol",
    "simulator.core.rates",
    "simulator.core.durations",
    "simulator.core.redact",
]
FORBIDDEN_IN_CORE = ["asyncio", "websockets", "polars", "click", "rich", "random"]
# The interpreter loads `time` at start-up, so the clock is checked in the source instead.
FORBIDDEN_IMPORTS = {*FORBIDDEN_IN_CORE, "time", "socket", "os"}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_clock_or_global_random(module: str) -> None:
    probe = (
        f"import sys; before = set(sys.modules); import {module}; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in FORBIDDEN_IN_CORE if m in loaded] == []


def test_every_public_name_resolves() -> None:
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None


@pytest.mark.parametrize(
    "path", sorted(Path(simulator.__file__).parent.joinpath("core").glob("*.py"))
)
def test_core_source_reads_no_clock_and_no_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported & FORBIDDEN_IMPORTS == set()
    calls = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & {
        "now",
        "utcnow",
        "today",
        "monotonic",
        "perf_counter",
        "time_ns",
    }
    assert calls == set()
