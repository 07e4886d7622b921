"""`sim generate` with ``[[fault]]``s writes what a recording of `sim run` holds.

Each test serves a scenario on the virtual clock over in-memory transports, with
``--record``, to scripted clients that behave as generate's client model says (connect
at 0 s in order, send nothing, connect again a fixed delay after the connection ends or
the handshake is refused), and renders the same scenario with
:func:`simulator.storage.generate.generate`. The two files must hold, connection by
connection, the same rows in the same order: kind, stream, payload (the exact bytes,
timestamps included), close code and reason, and the fault as JSON (with its scenario
time). ``t_ns`` is not compared: a live recording stamps rows with the wall clock.

Messages come at random nanoseconds (a Poisson stream and a uniform interval), faults
and reconnections on a grid of whole milliseconds, so no message falls on the instant of
a fault: the order of events at one instant is not planned on the live server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, note, settings

from simulator.core.flat_plan import FlatPlan, to_faults
from simulator.core.model import FaultKind, FaultLevel, Scenario
from simulator.errors import ConnectError
from simulator.net.common import CLOSE_TIMEOUT_S
from simulator.net.server import SimServer, serve
from simulator.net.wire import Connection, Handler, WireConfig
from simulator.net.wire_client import connect
from simulator.scenario import parse_scenario
from simulator.storage.generate import Plan, generate
from simulator.storage.generate_faults import CLOSE_TIMEOUT_NS, unrendered
from simulator.testing.strategies import fault_plans, plan_report
from simulator.testing.virtual_time import run

S = 1_000_000_000
EPOCH_NS = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
RUN_NS = 3_000_500_000  # off the fault grid: nothing is due at the last instant
RECONNECT_NS = 250_000_000
CLIENTS = 2

FEED = """\
[scenario]
name = "agree"
seed = 7

[server]
mode = "{mode}"

[[stream]]
name = "tick"
rate = 20

[[stream]]
name = "price"
every = {{ min = "50ms", max = "400ms" }}
[stream.fields]
value = {{ dist = "normal", mean = 10, std = 2, round = 2 }}
level = {{ choice = ["info", "warning"] }}
"""

#: One scenario per fault kind (and a few of their variants), as [[fault]] TOML.
FAULTS: dict[str, str] = {
    "drop": 'kind = "drop"\nprobability = 0.3',
    "drop-matching": 'kind = "drop"\nmatch = { "data.level" = "warning" }',
    "burst_loss": 'kind = "burst_loss"\nloss = 0.2\nburst = 3',
    "delay": 'kind = "delay"\nprobability = 0.3\n'
    'latency = { dist = "uniform", min = "10ms", max = "300ms" }',
    "delay-keep-order": 'kind = "delay"\nprobability = 0.3\nkeep_order = true\n'
    'latency = { dist = "pareto", scale = "10ms", shape = 1.5, max = "1s" }',
    "duplicate": 'kind = "duplicate"\nprobability = 0.2\ncopies = 2',
    "reorder": 'kind = "reorder"\nprobability = 0.2\ndepth = 2',
    "corrupt": 'kind = "corrupt"\nprobability = 0.3',
    "disconnect": 'kind = "disconnect"\nevery = "700ms"\ncode = 4001\nreason = "bye"',
    "reset": 'kind = "reset"\nat = "900ms"\nconnections = [1]',
    "stall": 'kind = "stall"\nwindow = { start = "500ms", end = "1500ms" }',
    "throttle": 'kind = "throttle"\nwindow = { start = "300ms", end = "2s" }\nbytes_per_s = 300',
    "outage": 'kind = "outage"\nat = "1s"\nduration = "800ms"\nretry_after = "2s"',
    "outage-close": 'kind = "outage"\nat = "1s"\nduration = "800ms"\nrespond = "close"',
    "reject-close": 'kind = "reject"\nwindow = { start = "0s", end = "1s" }\nstatus = 401\n'
    'respond = "close"',
    "mass_disconnect": 'kind = "mass_disconnect"\nwindow = { start = "1200ms", end = "1700ms" }'
    "\ncode = 1012",
    "reject": 'kind = "reject"\nwindow = { start = "0s", end = "1s" }\nstatus = 429\n'
    "after_connections = 1",
    "reject-delay": 'kind = "reject"\nwindow = { start = "0s", end = "2s" }\ndelay = "300ms"'
    "\nlimit = 3",
}

#: Faults that only show together: a close of a stalled connection waits for the close
#: timeout (and its messages meanwhile are still recorded), an outage ends it at once.
COMBINED: dict[str, list[str]] = {
    "disconnect-while-stalled": [
        FAULTS["stall"],
        'kind = "disconnect"\nat = "800ms"\ncode = 4002',
    ],
    "outage-while-closing-stalled": [
        FAULTS["stall"],
        'kind = "disconnect"\nat = "800ms"',
        'kind = "outage"\nat = "1900ms"\nduration = "300ms"',
    ],
    "everything-at-once": [
        FAULTS["drop"],
        FAULTS["delay"],
        FAULTS["duplicate"],
        FAULTS["reorder"],
        FAULTS["corrupt"],
        FAULTS["disconnect"],
        FAULTS["outage"],
    ],
}


def scenario(faults: list[str], mode: str = "broadcast") -> Scenario:
    tables = [f'[[fault]]\nname = "f{i}"\n{body}\n' for i, body in enumerate(faults)]
    return parse_scenario(FEED.format(mode=mode) + "\n" + "\n".join(tables))


# ----------------------------------------------------------------------------- live


class _Ends(Handler):
    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def closed(self, conn: Connection) -> None:
        self.ended.set()


async def scripted_client(server: SimServer, reconnect_s: float) -> None:
    """generate's client model: connect, send nothing, and when the connection ends or
    the handshake is refused, connect again ``reconnect_s`` later; for ever."""
    config = WireConfig(ping_interval=None, ping_timeout=None)
    while True:
        handler = _Ends()
        try:
            await connect(
                "ws://memory/", handler, config=config, open_transport=server.open_transport
            )
        except ConnectError:
            pass
        else:
            await handler.ended.wait()
        await asyncio.sleep(reconnect_s)


def record_live(
    scene: Scenario, path: Path, *, clients: int = CLIENTS, reconnect_ns: int = RECONNECT_NS
) -> tuple[pl.DataFrame, frozenset[int]]:
    """Serve ``scene`` for RUN_NS with ``--record``; the recording, and the connections
    the server still held at the end (their last close row is the server's stop)."""

    async def main() -> frozenset[int]:
        async with serve(
            scene, epoch_ns=EPOCH_NS, duration_ns=RUN_NS, in_memory=True, record=path
        ) as server:
            tasks = [
                asyncio.create_task(scripted_client(server, reconnect_ns / S))
                for _ in range(clients)
            ]
            await asyncio.sleep(RUN_NS / S)
            held = frozenset(server.clients)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return held

    held = run(main())
    return pl.read_parquet(path), held


def render(
    scene: Scenario, path: Path, *, clients: int = CLIENTS, reconnect_ns: int = RECONNECT_NS
) -> pl.DataFrame:
    plan = Plan.of(
        scene,
        duration_ns=RUN_NS,
        connections=clients,
        epoch_ns=EPOCH_NS,
        reconnect_after_ns=reconnect_ns,
    )
    generate(plan, path)
    return pl.read_parquet(path)


Row = tuple[Any, ...]


def by_connection(frame: pl.DataFrame, held: frozenset[int] = frozenset()) -> dict[int, list[Row]]:
    """Each connection's rows in order, as what matters: kind, stream, payload (not for
    ``open``: the live one holds the client's path), close code and reason, fault JSON.
    The close rows of connections in ``held`` (the server's stop, after the run) go."""
    out: dict[int, list[Row]] = defaultdict(list)
    columns = ("conn", "kind", "stream", "payload", "close_code", "close_reason", "fault")
    for conn, kind, stream, payload, code, reason, fault in (
        frame.sort("seq").select(columns).rows()
    ):
        out[conn].append((kind, stream, None if kind == "open" else payload, code, reason, fault))
    for conn in held:
        if out[conn] and out[conn][-1][0] == "close":
            out[conn].pop()
    return dict(out)


def assert_same_rows(live: dict[int, list[Row]], generated: dict[int, list[Row]]) -> None:
    assert sorted(generated) == sorted(live), "the same connections (refused ones included)"
    for conn in sorted(live):
        g, lv = generated[conn], live[conn]
        first = next((i for i, (a, b) in enumerate(zip(g, lv, strict=False)) if a != b), None)
        assert g == lv, (
            f"conn {conn}: {len(g)} generated vs {len(lv)} live rows; first difference at "
            f"{first}: {g[first] if first is not None else None} vs "
            f"{lv[first] if first is not None else None}"
        )


def check_agreement(scene: Scenario, tmp_path: Path, **kwargs: Any) -> dict[int, list[Row]]:
    live, held = record_live(scene, tmp_path / "live.parquet", **kwargs)
    generated = render(scene, tmp_path / "generated.parquet", **kwargs)
    expected = by_connection(live, held)
    assert_same_rows(expected, by_connection(generated))
    assert_times_are_scenario_times(generated)
    return expected


def assert_times_are_scenario_times(generated: pl.DataFrame) -> None:
    """A generated row's ``t_ns`` is the scenario time the live server stamps on it: the
    fault JSON's ``t_ns``, and a message's ``timestamp`` (ms) less the epoch (corrupted
    messages aside)."""
    faults = generated.filter(pl.col("kind") == "fault").select("t_ns", "fault").rows()
    assert all(orjson.loads(f)["t_ns"] == t for t, f in faults)
    for t, payload in generated.filter(pl.col("kind") == "text").select("t_ns", "payload").rows():
        try:
            stamp = datetime.fromisoformat(orjson.loads(payload)["timestamp"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # corrupted on purpose
        assert round(stamp.timestamp() * 1000) == (EPOCH_NS + t) // 1_000_000


def fault_kinds(rows: dict[int, list[Row]]) -> set[str]:
    return {orjson.loads(r[5])["kind"] for rs in rows.values() for r in rs if r[0] == "fault"}


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_generate_holds_the_rows_a_recording_of_sim_run_holds(name: str, tmp_path: Path) -> None:
    """One fault kind at a time, broadcast: the generated file and the live recording
    agree row for row on every connection, and the fault did happen."""
    rows = check_agreement(scenario([FAULTS[name]]), tmp_path)
    kind = name.split("-")[0]
    expected = {"reject": "handshake_refused", "burst_loss": "drop"}.get(kind, kind)
    if name == "reject-delay":
        expected = "handshake_delayed"
    assert expected in fault_kinds(rows)


@pytest.mark.parametrize("name", sorted(COMBINED))
def test_generate_agrees_with_sim_run_on_faults_that_interact(name: str, tmp_path: Path) -> None:
    """Several faults together (a close during a stall waits for the close timeout)."""
    check_agreement(scenario(COMBINED[name]), tmp_path)


@pytest.mark.parametrize("name", ["duplicate", "disconnect", "outage", "stall", "reject-delay"])
def test_generate_agrees_with_sim_run_per_connection(name: str, tmp_path: Path) -> None:
    """Per-connection mode: each connection, reconnections included, has its own
    timeline from its open, faulted as the live server faults it."""
    check_agreement(scenario([FAULTS[name]], mode="per-connection"), tmp_path)


def test_generate_agrees_with_sim_run_beyond_the_connection_limit(tmp_path: Path) -> None:
    """More clients than max_connections: the extra attempts are refused before any
    fault is asked (no row, no connection number) and retried."""
    scene = scenario([FAULTS["disconnect"]])
    scene = dataclasses.replace(scene, server=dataclasses.replace(scene.server, max_connections=2))
    check_agreement(scene, tmp_path, clients=3)


def instants(plan: FlatPlan) -> list[int]:
    """When the plan's connection and server faults at a time start, and their stalls
    end. (A fault on open is no timer: it acts as its connection opens, in the same
    step; when that is, and so when its stall ends, the run decides.)"""
    timed = [p for p in plan if not p.on_open]
    starts = [p.at_ns for p in timed if p.kind.level is not FaultLevel.MESSAGE]
    ends = [p.at_ns + p.duration_ns for p in timed if p.kind is FaultKind.STALL and p.duration_ns]
    return starts + ends


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=fault_plans(connections=4, max_faults=4, horizon="2500ms", step="70ms"))
def test_generate_agrees_with_sim_run_for_any_flat_plan(plan: FlatPlan) -> None:
    """Any flat fault plan (every kind, any connection, lasting or for good), as long as
    no two of its faults that act on connections fall on one instant: which of two timers
    due together runs first is not planned on the live server. (A 70 ms grid keeps the
    close timeout, 2 s, off it too.)"""
    found = instants(plan)
    assume(len(set(found)) == len(found))
    note(plan_report(plan, 7))
    with tempfile.TemporaryDirectory() as tmp:
        check_agreement(dataclasses.replace(scenario([]), faults=to_faults(plan)), Path(tmp))


def test_the_close_timeout_is_the_live_servers() -> None:
    assert int(CLOSE_TIMEOUT_S * S) == CLOSE_TIMEOUT_NS


def test_only_stalls_are_noted_as_not_rendered_in_full() -> None:
    """A stall is rendered for clients without a keepalive of their own; every other
    kind is rendered in full, so it gets no note."""
    every = scenario(list(FAULTS.values()))
    notes = unrendered(every)
    assert len(notes) == 1 and "'f" in notes[0] and "(stall)" in notes[0]


@pytest.mark.parametrize("mode", ["broadcast", "per-connection"])
def test_faults_that_never_fire_leave_every_connection_as_without_faults(
    mode: str, tmp_path: Path
) -> None:
    """The faulted rendering and the batched one agree: a disconnect due after the end
    changes no connection's rows (rows of one instant may interleave connections
    differently: the faulted one sends one connection's messages, then the next's)."""
    late = 'kind = "disconnect"\nat = "1h"'
    clean = render(scenario([], mode=mode), tmp_path / "clean.parquet", clients=3)
    faulted = render(scenario([late], mode=mode), tmp_path / "faulted.parquet", clients=3)
    assert by_connection(faulted) == by_connection(clean)
    assert faulted.height == clean.height
