"""sim: a scenario-driven WebSocket simulator.

The public API is what this module exports (and the front doors of two packages,
:mod:`simulator.client` and :mod:`simulator.testing`); everything else is private and
may change:

- a scenario: :func:`load_scenario`, :func:`parse_scenario`, :class:`Scenario`;
  faults for a recording: :func:`load_faults` (a :class:`FaultSet`; make a
  :class:`FaultPlan` of it);
- serving it: :func:`serve` (a :class:`SimServer`), ``record=`` to record it;
- recording a real feed: :func:`record_proxy` (a :class:`RecordingProxy` between
  clients and a server) and :func:`capture` (as a client; a :class:`Captured`);
  message fields are redacted by a :class:`Redactor`;
- replaying a recording: :func:`replay` (a :class:`ReplayServer`);
- reading one: :func:`read_recording`, :func:`scan_recording` (a polars LazyFrame),
  :func:`read_metadata`;
- errors: :class:`SimError` and its subclasses.

Layers, from the inside out::

    simulator.core      pure: scenario model, seeded draws, schedules, values, timeline,
                        faults, client protocol (no asyncio, sockets, clock or polars)
    simulator.scenario  TOML -> Scenario, with errors that name file, line and key
    simulator.storage   the Parquet recording format (schema, writer, reader), a
                        timeline rendered offline to Parquet, inspect and diff
    simulator.net       asyncio + websockets: live server, replay, proxy, capture
    simulator.client    the reference resilient client
    simulator.testing   the test kit: virtual time, run_sim, pytest plugin, strategies
    simulator.contracts AsyncAPI 3.0 out of and into scenarios, messages checked against
                        a contract, the JSON Schema of scenario files
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
    contracts -> core, scenario
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
    from simulator.core.faults import FaultPlan
    from simulator.core.model import Mode, Scenario
    from simulator.core.redact import Redactor
    from simulator.core.timeline import Timeline
    from simulator.errors import RecordingError, ScenarioError, SimError, UsageError
    from simulator.net.capture import Captured, CaptureError, capture
    from simulator.net.proxy import RecordingProxy, record_proxy
    from simulator.net.replay import ReplayServer, replay
    from simulator.net.server import SimServer, serve
    from simulator.scenario import FaultSet, load_faults, load_scenario, parse_scenario
    from simulator.storage.reader import read_metadata, read_recording, scan_recording

from simulator.version import __version__

# Exports load on first use, so that importing the pure core (simulator.core.*)
# never drags in asyncio, websockets or polars through this package's __init__.
_EXPORTS = {
    "FaultPlan": "simulator.core.faults",
    "Mode": "simulator.core.model",
    "Scenario": "simulator.core.model",
    "Redactor": "simulator.core.redact",
    "Timeline": "simulator.core.timeline",
    "RecordingError": "simulator.errors",
    "ScenarioError": "simulator.errors",
    "SimError": "simulator.errors",
    "UsageError": "simulator.errors",
    "CaptureError": "simulator.net.capture",
    "Captured": "simulator.net.capture",
    "capture": "simulator.net.capture",
    "RecordingProxy": "simulator.net.proxy",
    "record_proxy": "simulator.net.proxy",
    "ReplayServer": "simulator.net.replay",
    "replay": "simulator.net.replay",
    "SimServer": "simulator.net.server",
    "serve": "simulator.net.server",
    "FaultSet": "simulator.scenario",
    "load_faults": "simulator.scenario",
    "load_scenario": "simulator.scenario",
    "parse_scenario": "simulator.scenario",
    "read_metadata": "simulator.storage.reader",
    "read_recording": "simulator.storage.reader",
    "scan_recording": "simulator.storage.reader",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


__all__ = [
    "CaptureError",
    "Captured",
    "FaultPlan",
    "FaultSet",
    "Mode",
    "RecordingError",
    "RecordingProxy",
    "Redactor",
    "ReplayServer",
    "Scenario",
    "ScenarioError",
    "SimError",
    "SimServer",
    "Timeline",
    "UsageError",
    "__version__",
    "capture",
    "load_faults",
    "load_scenario",
    "parse_scenario",
    "read_metadata",
    "read_recording",
    "record_proxy",
    "replay",
    "scan_recording",
    "serve",
]
