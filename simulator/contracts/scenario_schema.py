"""The JSON Schema of scenario files, shipped as ``scenario.schema.json`` beside this module.

Editors that check TOML against a JSON Schema (taplo, VS Code's Even Better TOML) read
it from a ``#:schema`` line at the top of a scenario file or from their settings
(``docs/contracts.md``). It describes every key the loader (:mod:`simulator.scenario`)
accepts, with types, bounds and defaults; the loader stays the authority on what a file
means (durations, cross-key rules such as ``min <= max``). ``tests/contracts`` keeps the
two in step: each table's keys here are exactly those the loader allows.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any, Final

__all__ = ["SCHEMA_FILE", "scenario_schema", "scenario_schema_text"]

SCHEMA_FILE: Final = "scenario.schema.json"


def scenario_schema_text() -> str:
    """The schema file's text, as shipped."""
    return files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def scenario_schema() -> dict[str, Any]:
    """The schema as a ``dict``."""
    schema: dict[str, Any] = json.loads(scenario_schema_text())
    return schema
