"""sim: a scenario-driven WebSocket simulator.

The public API is what this module exports; everything else is private and may
change. Layers, from the inside out::

    simulator.core      pure: scenario model, seeded draws, schedules, values, timeline,
                        faults, client protocol (no asyncio, sockets, clock or polars)
    simulator.scenario  TOML -> Scenario, with errors that name file, line and key
    simulator.storage   the Parquet recording format (schema, writer, reader), a
                        timeline rendered offline to Parquet, inspect and diff
    simulator.net       asyncio + websockets: live server, replay, proxy, capture
    simulator.client    (not written yet)
    simulator.testing   (not written yet)
    simulator.inspector the page, status, events and control API beside the WebSocket port
    simulator.cli       the `sim` command: loads files, wires the layers together

A module may import from its own layer, from the base (``simulator.errors``,
``simulator.version``) and from these layers only::

    core      -> (nothing else)
    scenario  -> core
    storage   -> core
    net       -> core, storage
    client    -> core, net
    testing   -> core, scenario, storage, net, client
    inspector -> core, scenario, net
    cli       -> everything

``tests/test_layers.py`` holds the same table and fails on any other import. So below
the CLI nothing reads a scenario file: the network layer is handed a loaded
:class:`Scenario` (made by :func:`load_scenario`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.core.model import Mode, Scenario
    from simulator.core.timeline import Timeline
    from simulator.errors import RecordingError, ScenarioError, SimError, UsageError
    from simulator.net.server import SimServer, serve
    from simulator.scenario import load_scenario, parse_scenario

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
    "load_scenario": "simulator.scenario",
    "parse_scenario": "simulator.scenario",
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
