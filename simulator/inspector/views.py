"""What the inspector shows of a server, as JSON-ready dicts: ``/info`` (what does not
change: scenario, streams with their expected rates, the fault plan as TOML) and
``/status`` (the figures of the terminal status, plus the open connections)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any, Protocol, TypeVar

from simulator.core.flat_plan import PlannedFault, from_fault, to_toml
from simulator.core.model import Fault, Mode
from simulator.core.model import Protocol as FeedProtocol
from simulator.core.protocol import answer_types
from simulator.core.rates import mean_rate_per_s
from simulator.core.redact import redact_url
from simulator.core.replay_plan import Push
from simulator.net.client_options import BATCH_PARAMETER
from simulator.net.common import address_text
from simulator.net.log import EventLog
from simulator.net.on_demand import OnDemandFaults
from simulator.net.proxy import RecordingProxy
from simulator.net.replay import ReplayServer, recorded_streams
from simulator.net.send_path import Client
from simulator.net.server import SimServer


class View(Protocol):
    """A server as the inspector sees it."""

    log: EventLog

    def info(self) -> dict[str, Any]: ...

    def status(
        self, lateness_newest: int | None = None, newest_connections: int | None = None
    ) -> dict[str, Any]: ...

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


T = TypeVar("T")

#: How far apart the page's own feed (of `sim run`) comes in batches: a tenth of a
#: second is not seen by a reader of a log, and at 1,000 msg/s it is 10 arrivals a
#: second for the browser instead of 1,000.
PAGE_BATCH = "100ms"


def newest(items: list[T], n: int | None) -> tuple[list[T], int]:
    """The last ``n`` of ``items`` (all if ``n`` is None), and how many are left out."""
    if n is None or len(items) <= n:
        return items, 0
    return items[len(items) - n :], len(items) - n


def client_status(client: Client, now: float) -> dict[str, Any]:
    subscriptions = client.subscriptions
    return {
        "conn": client.index,
        "remote": address_text(client.remote),
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
            # The page's own feed, in batches (net.client_options): a browser pays
            # about the same for each arrival, however many messages it brings.
            "feed_query": f"?{BATCH_PARAMETER}={PAGE_BATCH}",
            "protocol": protocol_names(scenario.protocol),
            "faults": [f.name for f in scenario.faults],
            "plan_toml": toml,
            "plan_left_out": left_out,
        }

    def status(
        self, lateness_newest: int | None = None, newest_connections: int | None = None
    ) -> dict[str, Any]:
        """``server.stats()`` as a dict (the terminal status's figures), with the open
        connections and the server's wall clock; lateness over the ``lateness_newest``
        newest messages only, and only the ``newest_connections`` newest connections
        (``connections_left_out`` counts the others), if given."""
        server = self.server
        stats = dataclasses.asdict(server.stats(lateness_newest))
        now = asyncio.get_running_loop().time()
        shown, left_out = newest(list(server.clients.values()), newest_connections)
        stats["connections"] = [client_status(c, now) for c in shown]
        if newest_connections is not None:
            stats["connections_left_out"] = left_out
        stats["time"] = time.time()  # the page's clock for the events' wall times
        return stats


#: Recorded push times sent to the page per recorded connection, at most.
TIMELINE_POINTS = 400


class ReplayView:
    """``sim replay``'s :class:`~simulator.net.replay.ReplayServer`: the recording's
    timeline per recorded connection, and where each client's replay stands (the page
    does not connect to the feed by itself: it would take a recorded connection from
    the client under test)."""

    def __init__(self, server: ReplayServer, source: str) -> None:
        self.server = server
        self.source = source
        self.log = server.log

    @property
    def on_demand(self) -> OnDemandFaults | None:
        return None

    @property
    def stream_names(self) -> list[str]:
        return recorded_streams(self.server.plans)

    def info(self) -> dict[str, Any]:
        server = self.server
        plans = server.plans
        pushes: Counter[str] = Counter()
        timelines = {}
        for conn, plan in plans.items():
            times = [s.at_ns / 1e9 for s in plan.steps if isinstance(s, Push)]
            pushes.update(s.stream for s in plan.steps if isinstance(s, Push) and s.stream)
            step = max(1, len(times) // TIMELINE_POINTS)
            timelines[str(conn)] = {"duration_s": plan.duration_ns / 1e9, "pushes": times[::step]}
        total_s = sum(p.duration_ns for p in plans.values()) / 1e9
        faults = () if server.faults is None else server.faults.plan.faults
        toml, left_out = plan_toml(tuple(faults))
        return {
            "command": "replay",
            "scenario": self.source,
            "url": server.url,
            "mode": "replay",
            "speed": server.speed if server.speed is not None else "max",
            "seed": None if server.faults is None else server.faults.plan.seed,
            "duration_s": None,
            # Each client replays one recorded connection: a rate per open client.
            "streams": [
                {
                    "name": name,
                    "type": name,
                    "expected_per_s": pushes[name] / total_s if total_s else 0.0,
                }
                for name in self.stream_names
                # An answer (pong, subscribed) is no stream to subscribe to.
                if name not in answer_types(FeedProtocol())
            ],
            "per_connection": True,
            "protocol": protocol_names(FeedProtocol()),
            "faults": [f.name for f in faults],
            "plan_toml": toml,
            "plan_left_out": left_out,
            "recorded": timelines,
        }

    def status(
        self, lateness_newest: int | None = None, newest_connections: int | None = None
    ) -> dict[str, Any]:
        server = self.server
        uptime = asyncio.get_running_loop().time() - server.clock.start_at
        faults = {} if server.faults is None else dict(server.faults.counts)
        positions = server.positions()
        shown, left_out = newest(positions, newest_connections)
        status = {
            "uptime_s": uptime,
            "virtual_s": server.virtual_ns() / 1e9,
            "connections_open": len(positions),
            "connections_total": server.connections_total,
            "messages_by_stream": dict(server.sent_by_stream),
            "frames_sent": server.frames_sent,
            "frames_dropped": 0,
            "slow_closed": 0,
            "client_errors": server.unexpected_count,
            "rejected": server.rejected,
            "lateness_p50_ms": None,
            "lateness_p99_ms": None,
            "faults_by_kind": faults,
            "connections": [
                {
                    "conn": p["conn"],
                    "state": "open",
                    "stalled": False,
                    "dropped": None,
                    "pending_bytes": None,
                    **p,
                }
                for p in shown
            ],
            "replay": shown,
            "time": time.time(),
        }
        if newest_connections is not None:
            status["connections_left_out"] = left_out
        return status


class RecordView:
    """``sim record``'s :class:`~simulator.net.proxy.RecordingProxy`: the traffic passing
    through (the page does not connect to the feed by itself: it would be recorded)."""

    def __init__(self, proxy: RecordingProxy) -> None:
        self.proxy = proxy
        self.log = proxy.log
        self._started = asyncio.get_running_loop().time()

    @property
    def on_demand(self) -> OnDemandFaults | None:
        return None

    @property
    def stream_names(self) -> list[str]:
        return []

    def info(self) -> dict[str, Any]:
        proxy = self.proxy
        return {
            "command": "record",
            "scenario": f"record → {redact_url(proxy.upstream)}",
            "url": proxy.url,
            "mode": "record",
            "speed": 1,
            "seed": None,
            "duration_s": None,
            "streams": [],
            "per_connection": True,
            "protocol": protocol_names(FeedProtocol()),
            "faults": [],
            "plan_toml": "",
            "plan_left_out": [],
        }

    def status(
        self, lateness_newest: int | None = None, newest_connections: int | None = None
    ) -> dict[str, Any]:
        proxy = self.proxy
        uptime = asyncio.get_running_loop().time() - self._started
        relayed = dict(proxy.relayed)
        shown, left_out = newest(list(proxy.open_sessions()), newest_connections)
        status = {
            "uptime_s": uptime,
            "virtual_s": uptime,
            "connections_open": proxy.connections,
            "connections_total": proxy.connections_total,
            "messages_by_stream": {},
            "frames_sent": relayed.get("server", 0),
            "frames_dropped": 0,
            "slow_closed": 0,
            "client_errors": 0,
            "rejected": proxy.rejected,
            "lateness_p50_ms": None,
            "lateness_p99_ms": None,
            "faults_by_kind": {},
            "relayed": {
                "from upstream": relayed.get("server", 0),
                "from clients": relayed.get("client", 0),
            },
            "recorded_rows": proxy.recorder.rows,
            "connections": [
                {
                    "conn": i,
                    "state": "open",
                    "stalled": False,
                    "remote": None,
                    "sent": None,
                    "dropped": None,
                    "pending_bytes": None,
                }
                for i in shown
            ],
            "time": time.time(),
        }
        if newest_connections is not None:
            status["connections_left_out"] = left_out
        return status
