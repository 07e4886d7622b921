"""The live server carries out a flat fault plan exactly: on the virtual clock over
in-memory transports, every planned fault happens at its planned nanosecond, on its
planned connection, whenever that connection is open then; nothing else happens.

Clients: two connect at 0 s; each connects again 250 ms after its connection ends or
its handshake is refused. Connections are numbered by handshake attempt, so a plan's
connections 0 to 4 are the two first ones and the next three attempts, whoever makes
them. A feed message goes out every 100 ms.

Times are on a 50 ms grid; the reconnect delay is 250 ms, so reconnections often fall
at the instant of a fault. The server reads scenario time from the loop's float clock
rounded to the nearest ns (``ScenarioClock.virtual_ns``): each instant is read as its
own nanosecond (``test_the_server_reads_a_planned_instant_as_that_nanosecond``).

What "exactly" means, kind by kind (checked against what the server logged):

- reset, disconnect, stall, throttle on connection ``c`` at ``t``: one record at ``t`` on
  ``c`` if ``c`` opened at or before ``t`` and was still open after ``t``; none if it
  opened after ``t``, never opened, or was closed before ``t``. When something else
  closes ``c`` at ``t`` itself, the order of the two is not planned (timers due at one
  instant), so then at most one. A stall with a duration also ends exactly then. On
  open, the same with ``t`` the time ``c`` opened (none if it never did), and a
  duration counted from then;
- drop, duplicate on ``c`` over ``[t, t + d)``: exactly the messages sent to ``c`` whose
  scenario time is in the window (several faults on one message merge as the planner
  says: a drop wins, copies add up);
- outage, mass_disconnect: one record at ``t``;
- reject, and the refusals of an outage: each handshake attempt is refused by the
  first outage in force at its time, else by the first reject in force, with that
  fault's status; it is accepted when none is in force.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, note, settings

from simulator.core.flat_plan import FlatPlan, PlannedFault, to_faults
from simulator.core.model import FaultKind, FaultLevel, Scenario
from simulator.errors import ConnectError
from simulator.net.fanout import Sent
from simulator.net.faulting import Injected
from simulator.net.log import Event, EventKind
from simulator.net.server import SimServer, serve
from simulator.net.wire import Connection, Handler, WireConfig
from simulator.net.wire_client import connect
from simulator.scenario import parse_scenario
from simulator.testing.strategies import fault_plans, plan_report
from simulator.testing.virtual_time import run

S = 1_000_000_000
MS = 1_000_000
EPOCH_NS = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
CLIENTS = 2
RECONNECT_S = 0.25
HORIZON = "6s"  # every planned fault starts before this
RUN_NS = 7_062_500_000  # and the run lasts this long (7 s + 2**-4 s: no attempt is made then)
SEED = 7

FEED: Scenario = parse_scenario(
    textwrap.dedent(
        """\
        [scenario]
        name = "flat-plan"
        seed = 7

        [[stream]]
        name = "tick"
        every = "100ms"
        """
    )
)

CLOSING = frozenset({"disconnect", "reset"})
SERVER_CLOSING = frozenset({"outage", "mass_disconnect"})


class _Ends(Handler):
    """Tells when the connection is gone."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    def closed(self, conn: Connection) -> None:
        self.ended.set()


async def reconnecting_client(server: SimServer) -> None:
    """Connect; when the connection ends or the handshake is refused, wait 250 ms and
    connect again; for ever."""
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
        await asyncio.sleep(RECONNECT_S)


@dataclass(frozen=True)
class Logged:
    """One server log event, at its scenario time; for an outage or a mass disconnect,
    the connections open at that moment (the ones it closes)."""

    t_ns: int
    kind: EventKind
    conn: int | None
    detail: dict[str, Any]
    open_then: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Outcome:
    injected: list[Injected]
    log: list[Logged]
    sent: list[Sent]


def serve_plan(plan: FlatPlan) -> Outcome:
    """Serve the feed with ``to_faults(plan)`` for RUN_NS of virtual time, with the
    reconnecting clients; return what the server did."""

    async def main() -> Outcome:
        scenario = dataclasses.replace(FEED, faults=to_faults(plan))
        async with serve(scenario, epoch_ns=EPOCH_NS, in_memory=True, log_sends=True) as server:
            log: list[Logged] = []

            def listen(event: Event) -> None:
                open_then: frozenset[int] = frozenset()
                if event.kind is EventKind.FAULT and event.detail["injected"] in SERVER_CLOSING:
                    open_then = frozenset(i for i, c in server.clients.items() if c.open)
                log.append(
                    Logged(server.virtual_ns(), event.kind, event.conn, event.detail, open_then)
                )

            server.log.listen(listen)
            clients = [asyncio.create_task(reconnecting_client(server)) for _ in range(CLIENTS)]
            await asyncio.sleep(RUN_NS / S)
            outcome = Outcome(list(server.injected), log, list(server.sent or []))
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        return outcome

    return run(main())


# ----------------------------------------------------------------------------- checks


def name(i: int, p: PlannedFault) -> str:
    return f"p{i}-{p.kind.value}"


def in_force(p: PlannedFault, t: int) -> bool:
    return p.at_ns <= t and (p.end_ns is None or t < p.end_ns)


def check_handshakes(plan: FlatPlan, out: Outcome) -> dict[int, int]:
    """Every attempt is answered as the plan says; returns when each accepted one
    opened."""
    opened = {e.conn: e.t_ns for e in out.log if e.kind is EventKind.CONNECTED}
    refused = [r for r in out.injected if r.kind == "handshake_refused"]
    attempts = {r.conn: r.t_ns for r in refused} | opened
    assert sorted(attempts) == list(range(len(attempts))), "attempts are numbered 0, 1, 2, ..."
    assert len(attempts) == len(refused) + len(opened), "an attempt both refused and accepted"
    planned = list(enumerate(plan))
    got = {r.conn: (r.t_ns, r.fault, r.detail["status"]) for r in refused}
    for attempt, t in attempts.items():
        outage = [(i, p) for i, p in planned if p.kind is FaultKind.OUTAGE and in_force(p, t)]
        reject = [(i, p) for i, p in planned if p.kind is FaultKind.REJECT and in_force(p, t)]
        if outage:
            i, p = outage[0]
            assert got.get(attempt) == (t, name(i, p), 503), attempt
        elif reject:
            i, p = reject[0]
            assert got.get(attempt) == (t, name(i, p), p.param("status")), attempt
        else:
            assert attempt in opened, f"attempt {attempt} at {t} refused with nothing in force"
    return {c: t for c, t in opened.items() if c is not None}


def closing_times(out: Outcome) -> dict[int, int]:
    """When each connection stopped being open: the first disconnect or reset on it, or
    outage or mass disconnect while it was open."""
    closed: dict[int, int] = {}
    for e in out.log:
        if e.kind is not EventKind.FAULT:
            continue
        hit = {e.conn} if e.detail["injected"] in CLOSING else set(e.open_then)
        for conn in hit:
            if conn is not None:
                closed.setdefault(conn, e.t_ns)
    return closed


def check_connection_faults(
    plan: FlatPlan, out: Outcome, opened: dict[int, int], closed: dict[int, int]
) -> None:
    for i, p in enumerate(plan):
        if p.kind.level is not FaultLevel.CONNECTION:
            continue
        assert p.conn is not None
        records = [r for r in out.injected if r.fault == name(i, p) and r.kind == p.kind.value]
        start, end = opened.get(p.conn), closed.get(p.conn)
        at = start if p.on_open else p.at_ns
        if at is None:
            assert records == [], f"{name(i, p)}: on open of connection {p.conn}, never opened"
            continue
        until = None if p.duration_ns is None else at + p.duration_ns
        assert all(r.t_ns == at and r.conn == p.conn for r in records), records
        if end == at:
            assert len(records) <= 1, name(i, p)  # closed at that instant: either order
        elif start is None or start > at or (end is not None and end < at):
            assert records == [], f"{name(i, p)}: connection {p.conn} not open then"
        else:
            assert len(records) == 1, f"{name(i, p)}: not carried out on an open connection"
        if p.kind is FaultKind.THROTTLE and records:
            assert records[0].detail == {"bytes_per_s": p.param("bytes_per_s"), "end_ns": until}
        if p.kind is FaultKind.DISCONNECT and records:
            assert records[0].detail == {"code": p.param("code")}
        if p.kind is FaultKind.STALL:
            ends = [r for r in out.injected if r.fault == name(i, p) and r.kind == "stall_end"]
            assert all(r.conn == p.conn and r.t_ns == until for r in ends)
            if not records or until is None or until >= RUN_NS:
                assert ends == []
            elif end == until:
                assert len(ends) <= 1, name(i, p)
            elif end is not None and end < until:
                assert ends == [], name(i, p)
            else:
                assert len(ends) == 1, name(i, p)


def check_server_faults(plan: FlatPlan, out: Outcome) -> None:
    expected = {name(i, p): p for i, p in enumerate(plan) if p.kind.value in SERVER_CLOSING}
    got = [r for r in out.injected if r.kind in SERVER_CLOSING]
    assert sorted(r.fault for r in got) == sorted(expected)
    for r in got:
        p = expected[r.fault]
        assert (r.kind, r.conn, r.t_ns) == (p.kind.value, None, p.at_ns), r


def check_message_faults(plan: FlatPlan, out: Outcome) -> None:
    expected: Counter[tuple[object, ...]] = Counter()
    for s in out.sent:
        hits = [
            (i, p)
            for i, p in enumerate(plan)
            if p.kind.level is FaultLevel.MESSAGE and p.conn == s.conn and in_force(p, s.t_ns)
        ]
        seq = orjson.loads(s.payload)["seq"]
        drops = [name(i, p) for i, p in hits if p.kind is FaultKind.DROP]
        copies = sum(p.param("copies") for _, p in hits if p.kind is FaultKind.DUPLICATE)
        if drops:
            expected["drop", ",".join(drops), s.conn, s.stream, seq, None] += 1
        elif hits:
            names = ",".join(name(i, p) for i, p in hits)
            expected["duplicate", names, s.conn, s.stream, seq, copies] += 1
    got = Counter(
        (r.kind, r.fault, r.conn, r.detail["stream"], r.detail["seq"], r.detail.get("copies"))
        for r in out.injected
        if r.kind in ("drop", "duplicate")
    )
    assert got == expected


def check_nothing_else(out: Outcome) -> None:
    kinds = {r.kind for r in out.injected}
    known = {"disconnect", "reset", "stall", "stall_end", "throttle", "drop", "duplicate"}
    assert kinds <= known | SERVER_CLOSING | {"handshake_refused"}


# ----------------------------------------------------------------------------- tests


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=fault_plans(connections=5, max_faults=6, horizon=HORIZON, step="50ms"))
def test_every_planned_fault_happens_at_its_nanosecond_on_its_connection(plan: FlatPlan) -> None:
    """Each kind of a flat plan is carried out as planned (see the module docstring)."""
    note(plan_report(plan, SEED))
    out = serve_plan(plan)
    opened = check_handshakes(plan, out)
    check_connection_faults(plan, out, opened, closing_times(out))
    check_server_faults(plan, out)
    check_message_faults(plan, out)
    check_nothing_else(out)


def test_a_plan_with_one_of_each_kind_is_carried_out() -> None:
    """A fixed plan touching every kind, so that each check above runs at least once:

    0.5 s stall conn 0 for 1 s; 1 s drop conn 1 for 300 ms; 1.25 s duplicate conn 1 for
    500 ms; 2 s throttle conn 1; 2.5 s disconnect conn 0 (which ends the stall's
    connection); 3 s reset conn 1; 3.5 s mass_disconnect; 4 s outage for 500 ms; 4.5 s
    reject 429 for 250 ms. The clients are back at 3.75 s, refused at 4.25 s (503) and
    4.5 s (429), back at 4.75 s."""
    plan: FlatPlan = (
        PlannedFault(500 * MS, FaultKind.STALL, conn=0, duration_ns=1 * S),
        PlannedFault(1 * S, FaultKind.DROP, conn=1, duration_ns=300 * MS),
        PlannedFault(1250 * MS, FaultKind.DUPLICATE, conn=1, duration_ns=500 * MS),
        PlannedFault(2 * S, FaultKind.THROTTLE, conn=1, params=(("bytes_per_s", 5000.0),)),
        PlannedFault(2500 * MS, FaultKind.DISCONNECT, conn=0, params=(("code", 4000),)),
        PlannedFault(3 * S, FaultKind.RESET, conn=1),
        PlannedFault(3500 * MS, FaultKind.MASS_DISCONNECT),
        PlannedFault(4 * S, FaultKind.OUTAGE, duration_ns=500 * MS),
        PlannedFault(4500 * MS, FaultKind.REJECT, duration_ns=250 * MS, params=(("status", 429),)),
    )
    out = serve_plan(plan)
    opened = check_handshakes(plan, out)
    closed = closing_times(out)
    check_connection_faults(plan, out, opened, closed)
    check_server_faults(plan, out)
    check_message_faults(plan, out)
    check_nothing_else(out)
    kinds = Counter(r.kind for r in out.injected)
    assert {k: kinds[k] for k in ("stall", "stall_end", "throttle", "disconnect", "reset")} == {
        "stall": 1,
        "stall_end": 1,
        "throttle": 1,
        "disconnect": 1,
        "reset": 1,
    }
    assert kinds["drop"] == 3 and kinds["duplicate"] == 5  # 1.0-1.2 s; 1.3-1.7 s
    refusals = [(r.t_ns, r.detail["status"]) for r in out.injected if r.kind == "handshake_refused"]
    assert refusals == [(4250 * MS, 503)] * 2 + [(4500 * MS, 429)] * 2
    assert opened[0] == opened[1] == 0 and closed[0] == 2500 * MS and closed[1] == 3 * S


@pytest.mark.parametrize(
    "plan",
    [
        # 1.001 s is no binary fraction: int(1.001 * 1e9) is 1000999999.
        (PlannedFault(1001 * MS, FaultKind.RESET, conn=0),),
        # 2.25 s is one, but the throttle's 10 ms drain ticks land the clock 1e-16 s
        # before it, and asyncio runs the reset then (it runs what is due within the
        # clock's resolution).
        (
            PlannedFault(0, FaultKind.THROTTLE, conn=0, params=(("bytes_per_s", 1000.0),)),
            PlannedFault(2250 * MS, FaultKind.RESET, conn=0),
        ),
    ],
    ids=["off-the-grid", "after-drain-ticks"],
)
def test_the_server_reads_a_planned_instant_as_that_nanosecond(plan: FlatPlan) -> None:
    """A reset planned at ``t`` is reported at ``t`` exactly (and so a handshake made at
    the instant a reject starts is refused, a connection opened at ``t`` opened at
    ``t``). Truncating the float clock read these 1 ns early."""
    [record] = [r for r in serve_plan(plan).injected if r.kind == "reset"]
    assert record.t_ns == plan[-1].at_ns
