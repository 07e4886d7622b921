"""Shared by the contract tests: the official AsyncAPI 3.0 schema, `sim` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
THIRD_PARTY = DATA / "third-party.yaml"


@cache
def asyncapi_validator() -> jsonschema.Draft7Validator:
    """The official AsyncAPI 3.0.0 JSON Schema (tests/contracts/data/README.md)."""
    schema = json.loads((DATA / "asyncapi-3.0.0.schema.json").read_text())
    return jsonschema.Draft7Validator(schema)


def asyncapi_errors(doc: Any) -> list[str]:
    return [
        f"{list(e.absolute_path)}: {e.message[:300]}" for e in asyncapi_validator().iter_errors(doc)
    ]


def sim(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`sim` as a real process (this tree's code), with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)},
    )
