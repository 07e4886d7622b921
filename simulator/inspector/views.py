"""What the inspector shows of a server, as JSON-ready dicts: ``/info`` (what does not
change: scenario, streams with their expected rates, the fault plan as TOML) and
``/status`` (the figures of the terminal status, plus the open connections)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Protocol

from simulator.core.flat_plan import PlannedFault, from_fault, to_toml
from simulator.core.model import Fault, Mode
from simulator.core.model import Protocol as FeedProtocol
from simulator.core.rates import mean_rate_per_s
from simulator.net.log import EventLog
from simulator.net.on_demand import OnDemandFaults
from simulator.net.send_path import Client
from simulator.net.server import SimServer


class View(Protocol):
    """A server as the inspector sees it."""

    log: EventLog

    def info(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    @property
    def on_demand(self) -> OnDemandFaults | None: ...

    @property
    def stream_names(self) -> list[str]: ...


def plan_toml(faults: tuple[Fault, ...]) -> tuple[str, list[str]]:
    """The faults as ``[[fault]]`` TOML of their flat plan (as ``sim plan --toml``
    prints it), and why each fault left out has no flat form."""
    flat: list[PlannedFault] = []
    left_out: list[str] = []
    for fault in faults:
        try:
            flat.append(from_fault(fault))
        except ValueError as e:
            left_out.append(str(e))
    return to_toml(flat), left_out


def protocol_names(protocol: FeedProtocol) -> dict[str, str]:
    """The message types the page sends and expects (a scenario may rename them)."""
    return {
        "ping": protocol.ping_type,
        "pong": protocol.pong_type,
        "subscribe": protocol.subscribe_type,
        "unsubscribe": protocol.unsubscribe_type,
    }


def client_status(client: Client, now: float) -> dict[str, Any]:
    remote = client.remote
    subscriptions = client.subscriptions
    return {
        "conn": client.index,
        "remote": f"{remote[0]}:{remote[1]}" if isinstance(remote, tuple) else None,
        "state": "closing" if client.closing else "open",
        "stalled": client.faulted is not None and client.faulted.stalled,
        "sent": client.frames_sent,
        "dropped": client.frames_dropped,
        "pending_bytes": client.pending_bytes,
        "subscriptions": None if subscriptions is None else sorted(subscriptions),
        "connected_s": now - client.connected_at,
    }


class RunView:
    """``sim run``'s :class:`~simulator.net.server.SimServer`."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.log = server.log

    @property
    def on_demand(self) -> OnDemandFaults | None:
        return self.server.on_demand

    @property
    def stream_names(self) -> list[str]:
        return [s.name for s in self.server.scenario.streams]

    def info(self) -> dict[str, Any]:
        server = self.server
        scenario = server.scenario
        toml, left_out = plan_toml(scenario.faults)
        return {
            "command": "run",
            "scenario": scenario.name,
            "url": server.url,
            "mode": scenario.server.mode.value,
            "speed": server.speed,
            "seed": server.seed,
            "duration_s": None if server.duration_ns is None else server.duration_ns / 1e9,
            "streams": [
                {
                    "name": s.name,
                    "type": s.type,
                    # Scenario time runs `speed` times faster than the wall clock.
                    "expected_per_s": mean_rate_per_s(s.schedule, scenario.duration_ns)
                    * server.speed,
                }
                for s in scenario.streams
            ],
            "per_connection": scenario.server.mode is Mode.PER_CONNECTION,
            "protocol": protocol_names(scenario.protocol),
            "faults": [f.name for f in scenario.faults],
            "plan_toml": toml,
            "plan_left_out": left_out,
        }

    def status(self) -> dict[str, Any]:
        """``server.stats()`` as a dict (the terminal status's figures), with the open
        connections and scenario time."""
        server = self.server
        stats = dataclasses.asdict(server.stats())
        now = asyncio.get_running_loop().time()
        stats["connections"] = [client_status(c, now) for c in list(server.clients.values())]
        stats["time"] = time.time()  # the page's clock for the events' wall times
        return stats
