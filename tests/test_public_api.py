"""The public API is what ``simulator`` exports, pinned here; the docs name it, not the
private modules behind it (as websockets' ``tests/test_exports.py`` pins its names)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import simulator

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    # a scenario and its faults
    "Scenario",
    "Mode",
    "Timeline",
    "load_scenario",
    "parse_scenario",
    "load_faults",
    "FaultSet",
    "FaultPlan",
    # serving, recording, replaying
    "serve",
    "SimServer",
    "record_proxy",
    "RecordingProxy",
    "capture",
    "Captured",
    "CaptureError",
    "Redactor",
    "replay",
    "ReplayServer",
    # reading recordings
    "read_recording",
    "scan_recording",
    "read_metadata",
    # errors
    "SimError",
    "ScenarioError",
    "RecordingError",
    "UsageError",
    "__version__",
}

#: Private modules behind a public name: docs must use ``simulator.<name>`` instead.
PRIVATE_HOMES = re.compile(
    r"simulator\.net\.(server|replay|proxy|capture)\b|simulator\.storage\.reader\b"
)


def test_the_public_names_are_exactly_these() -> None:
    assert set(simulator.__all__) == PUBLIC


def test_each_public_name_is_the_object_its_private_module_defines() -> None:
    for name, module in simulator._EXPORTS.items():
        assert getattr(simulator, name) is getattr(importlib.import_module(module), name)


def test_the_docs_name_record_replay_and_capture_by_their_public_names() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    private = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in pages
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if PRIVATE_HOMES.search(line)
    ]
    assert private == []
