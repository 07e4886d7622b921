"""sim: a scenario-driven WebSocket simulator.

The public API is what this module exports; everything else is private and may
change. Layers, from the inside out (a module may import only from layers above
it in this list)::

    simulator.core        pure: scenario model, seeded draws, schedules, values,
                          timeline, client protocol (no asyncio, sockets, clock, polars)
    simulator.scenario    TOML -> Scenario, with errors that name file, line and key
    simulator.storage     the Parquet recording format: schema, writer, reader
    simulator.generate    a timeline rendered offline, in virtual time, to Parquet
    simulator.net         asyncio + websockets: the live server
    simulator.cli         the `sim` command, which wires the layers together
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.core.model import Mode, Scenario
    from simulator.core.timeline import Timeline
    from simulator.errors import RecordingError, ScenarioError, SimError, UsageError
    from simulator.net.server import SimServer, serve
    from simulator.scenario_toml import load_scenario, parse_scenario

from simulator.version import __version__

# Exports load on first use, so that importing the pure core (simulator.core.*)
# never drags in asyncio, websockets or polars through this package's __init__.
_EXPORTS = {
    "Mode": "simulator.core.model",
    "Scenario": "simulator.core.model",
    "Timeline": "simulator.core.timeline",
    "RecordingError": "simulator.errors",
    "ScenarioError": "simulator.errors",
    "SimError": "simulator.errors",
    "UsageError": "simulator.errors",
    "SimServer": "simulator.net.server",
    "serve": "simulator.net.server",
    "load_scenario": "simulator.scenario_toml",
    "parse_scenario": "simulator.scenario_toml",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


__all__ = [
    "Mode",
    "RecordingError",
    "Scenario",
    "ScenarioError",
    "SimError",
    "SimServer",
    "Timeline",
    "UsageError",
    "__version__",
    "load_scenario",
    "parse_scenario",
    "serve",
]
