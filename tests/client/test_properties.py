"""The reference client's reconnect properties, under generated fault plans, in virtual
time (issue #10, item 6):

(a) after any finite fault plan the client is connected again within the Retry-After it
    was given (capped) plus the backoff cap, plus one heartbeat period, after the
    faults end;
(b) every message the server sent on a connection that survived reaches the
    application exactly once, in order, and every gap the client reports is a message
    that was dropped, or sent while it was away, or lost with a connection that ended;
(c) the subscription set after each reconnect is the requested one;
(d) a stall is detected within heartbeat interval + timeout;
(e) retry delays are within their bounds, and 100 clients dropped at once spread their
    reconnects over at least half the backoff window (no thundering herd);
(f) nothing is left behind after ``close()``.

Each property also runs against a deliberately broken client (``Broken*`` below) on a
plan that exercises it, and must FAIL there: none can pass vacuously. On a failure,
hypothesis prints the minimal plan as ``[[fault]]`` TOML and the seed (see
``simulator.testing.harness``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simulator.client import (
    ClientConfig,
    ClientEvent,
    Gap,
    Message,
    ResilientClient,
    Retry,
    State,
    StateChanged,
)
from simulator.client.resilient import _Session
from simulator.core.backoff import Backoff, BackoffPolicy
from simulator.core.flat_plan import FlatPlan, PlannedFault, to_faults
from simulator.core.model import FaultKind
from simulator.net.faulting import Injected
from simulator.net.wire_client import ClientConnection
from simulator.testing.harness import RunningSim, run_sim
from simulator.testing.strategies import fault_plans

S = 1_000_000_000
POLICY = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=4.0, stable_s=3.0, retry_after_cap_s=5.0)
INTERVAL_S, TIMEOUT_S = 1.0, 1.0
CONFIG = ClientConfig(
    backoff=POLICY, heartbeat_interval_s=INTERVAL_S, heartbeat_timeout_s=TIMEOUT_S
)
SUBSCRIBED = frozenset({"a"})
FEED: dict[str, Any] = {
    "scenario": {"name": "properties", "seed": 1},
    "stream": [
        {"name": name, "every": "200ms", "fields": {"n": {"dist": "counter"}}}
        for name in ("a", "b")
    ],
}
#: Every fault starts in the first minute; with durations of up to half a minute, the
#: faults are over by 90 s, and the client must be back by 90 + 5 + 2 s: two minutes of
#: scenario time an example.
HORIZON = "60s"
MAX_DURATION_NS = 30 * S

#: The kinds whose effect the client can see and the properties speak of.
KINDS = (
    FaultKind.RESET,
    FaultKind.DISCONNECT,
    FaultKind.STALL,
    FaultKind.DROP,
    FaultKind.DUPLICATE,
    FaultKind.MASS_DISCONNECT,
    FaultKind.OUTAGE,
    FaultKind.REJECT,
)


def retryable(plan: FlatPlan) -> FlatPlan:
    """``plan`` with what tells a client to stop for good made retryable (4xxx closes,
    401/403), and every fault finite: property (a) is about coming back."""
    out = []
    for p in plan:
        params = dict(p.params)
        if (
            p.kind in (FaultKind.DISCONNECT, FaultKind.MASS_DISCONNECT)
            and params.get("code", 1000) >= 4000
        ):
            params["code"] = 1012
        if p.kind is FaultKind.REJECT and params.get("status") in (401, 403):
            params["status"] = 503
        duration = p.duration_ns
        if p.kind not in (FaultKind.RESET, FaultKind.DISCONNECT, FaultKind.MASS_DISCONNECT):
            duration = min(duration or MAX_DURATION_NS, MAX_DURATION_NS)
        out.append(dataclasses.replace(p, duration_ns=duration, params=tuple(params.items())))
    return tuple(out)


plans = fault_plans(kinds=KINDS, connections=4, max_faults=5, min_faults=3, horizon=HORIZON).map(
    retryable
)


# ----------------------------------------------------------------------------- a run


@dataclasses.dataclass
class Run:
    """What one client saw, and what the server did, in one example."""

    events: list[ClientEvent]
    state_at_bound: State
    bound_s: float
    injected: list[Any]
    sent: list[tuple[int, str, int, int]]  # (conn, stream, seq, t_ns) handed to each connection
    final_conn: int | None
    #: The server's view of each connection's subscriptions, sampled every 500 ms.
    server_subscriptions: dict[int, list[frozenset[str] | None]]
    tasks_left: int
    sockets_left: int
    final_state: State

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def faults_end_s(plan: FlatPlan, injected: Sequence[Injected]) -> float:
    """When the plan's last fault is over: at its time plus its duration, or, for one on
    open, when its connection opened (as the server did it so far) plus its duration:
    each reconnection may open a connection that one is waiting for."""
    ends = [(p.at_ns + (p.duration_ns or 0)) / S for p in plan if not p.on_open]
    on_open = {f"p{i}-{p.kind.value}": p for i, p in enumerate(plan) if p.on_open}
    ends += [
        (i.t_ns + (on_open[i.fault].duration_ns or 0)) / S
        for i in injected
        if i.fault in on_open and i.kind == on_open[i.fault].kind.value
    ]
    return max(ends, default=0.0)


def retry_after_ns(fault: PlannedFault) -> int:
    """The Retry-After a fault tells clients (an outage's is its length by default)."""
    value = dict(fault.params).get("retry_after_ns")
    if value is None and fault.kind is FaultKind.OUTAGE:
        value = fault.duration_ns
    return value if isinstance(value, int) else 0


def comeback_bound_s(plan: FlatPlan, injected: Sequence[Injected]) -> float:
    """When the client must be connected again: the faults' end, plus the longest wait
    it may be told (a Retry-After up to its cap, then the backoff's jitter, up to its
    cap, after it), plus one heartbeat
    period (a stall that ends with the plan was being detected)."""
    hint = max([0.0, *(min(retry_after_ns(p) / S, POLICY.retry_after_cap_s) for p in plan)])
    longest_wait = hint + POLICY.cap_s  # the jitter is drawn after the hint
    return faults_end_s(plan, injected) + longest_wait + INTERVAL_S + TIMEOUT_S + 0.01


def run_client(
    plan: FlatPlan,
    make: Callable[[RunningSim], ResilientClient] | None = None,
    *,
    seed: int = 0,
) -> Run:
    make = make or (lambda sim: reference(sim, seed))

    async def check(sim: RunningSim) -> Run:
        client = make(sim)
        events: list[ClientEvent] = []
        client.listen(events.append)
        # The server's view of each connection's subscriptions, every 500 ms.
        subscriptions: dict[int, list[frozenset[str] | None]] = {}

        def sample() -> None:
            for index, served in sim.server.clients.items():
                subscriptions.setdefault(index, []).append(served.subscriptions)

        await client.start()
        # Read again as faults on open happen: each may push the end of the plan on.
        while sim.now() < (bound := comeback_bound_s(plan, sim.injected)):
            sample()
            await sim.sleep(min(0.5, bound - sim.now()))
        sample()
        state_at_bound = client.state
        final_conn = max(sim.server.clients, default=None)
        await client.close()
        await sim.sleep(POLICY.cap_s + POLICY.retry_after_cap_s + 1)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        sent = []
        for s in sim.server.sent or []:
            envelope = orjson.loads(s.payload)
            sent.append((s.conn, s.stream, envelope["seq"], s.t_ns))
        return Run(
            events,
            state_at_bound,
            bound,
            list(sim.injected),
            sent,
            final_conn,
            subscriptions,
            len(others),
            len(sim.server.clients),
            client.state,
        )

    return run_sim(check, {**FEED, "fault": []}, faults=to_faults(plan), seed=seed)


def reference(sim: RunningSim, seed: int = 0) -> ResilientClient:
    return ResilientClient(
        sim.url,
        config=CONFIG,
        subscriptions=sorted(SUBSCRIBED),
        seed=seed,
        open_transport=sim.open_transport,
    )


# ----------------------------------------------------------------------------- properties


def comes_back(run: Run) -> None:
    """(a)"""
    assert run.state_at_bound is State.OPEN, (
        f"not connected at {run.bound_s:.2f} s: {run.state_at_bound}"
    )


def exactly_once_and_gaps_explained(run: Run) -> None:
    """(b)"""
    delivered = [(m.stream, m.seq) for m in run.of(Message) if m.seq is not None]
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    for stream in {s for s, _ in delivered}:
        seqs = [q for s, q in delivered if s == stream]
        assert seqs == sorted(seqs), f"{stream}: out of order"
    delivered_set = set(delivered)
    dropped = {
        (i.conn, i.detail["stream"], i.detail["seq"]) for i in run.injected if i.kind == "drop"
    }
    # A stalled connection sends nothing, and what it was to send is lost.
    stalls = [
        (i.conn, i.t_ns, i.detail.get("end_ns") or 2**62) for i in run.injected if i.kind == "stall"
    ]

    def lost(conn: int, stream: str, seq: int, t_ns: int) -> bool:
        return (conn, stream, seq) in dropped or any(
            c == conn and start <= t_ns < end for c, start, end in stalls
        )

    final = [(s, q) for c, s, q, t in run.sent if c == run.final_conn and not lost(c, s, q, t)]
    # On the connection that survived, everything not lost to a fault arrives (but what
    # was in flight when the client was closed at the end).
    last: dict[str, int] = {}
    for stream, seq in delivered:
        last[stream] = max(seq, last.get(stream, seq))
    missing = [(s, q) for s, q in final if (s, q) not in delivered_set and q <= last.get(s, 0)]
    assert missing == [], f"sent on the live connection, never delivered: {missing[:5]}"
    # Every reported gap is explained: lost to a fault, sent on a connection that ended
    # (in flight, or queued), or sent while the client was away (never to it at all).
    final_set = set(final)
    for gap in run.of(Gap):
        for seq in range(gap.first, gap.last + 1):
            key = (gap.stream, seq)
            assert key not in final_set, f"gap {key} invented: it was sent and not lost"
            assert key not in delivered_set, f"gap {key} invented: it was delivered"
    # None missed: what was lost on the live connection inside what was delivered is
    # reported.
    reported = {(g.stream, q) for g in run.of(Gap) for q in range(g.first, g.last + 1)}
    for conn, stream, seq, t_ns in run.sent:
        if conn == run.final_conn and lost(conn, stream, seq, t_ns):
            # A client joins a stream at the first seq it sees: only what is lost
            # after that can be told.
            seqs = [q for s, q in delivered if s == stream]
            inside = bool(seqs) and min(seqs) < seq < max(seqs)
            if inside and (stream, seq) not in delivered_set:
                assert (stream, seq) in reported, f"loss of {stream} {seq} not reported"


def subscriptions_restored(run: Run) -> None:
    """(c): once the server has a connection's subscriptions (a stalled one may never
    read them), they are the requested set; the surviving connection has them."""
    assert run.final_conn is not None, "never connected"
    for conn, samples in run.server_subscriptions.items():
        known = [s for s in samples if s is not None]
        assert all(s == SUBSCRIBED for s in known), f"connection {conn} had {set(known)}"
    assert run.server_subscriptions[run.final_conn][-1] == SUBSCRIBED, (
        f"the surviving connection {run.final_conn} has "
        f"{run.server_subscriptions[run.final_conn][-1]}"
    )


def stalls_detected(run: Run) -> None:
    """(d)"""
    left = [e for e in run.of(StateChanged) if e.state is State.BACKOFF]
    enders = ("disconnect", "reset", "mass_disconnect", "outage")
    for stall in (i for i in run.injected if i.kind == "stall"):
        t = stall.t_ns / S
        deadline = t + INTERVAL_S + TIMEOUT_S
        end = stall.detail.get("end_ns")
        if end is not None and end / S < deadline + 0.01:
            continue  # over before it could be told from a quiet feed
        if any(
            i.kind in enders and i.conn in (stall.conn, None) and t <= i.t_ns / S <= deadline
            for i in run.injected
        ):
            continue  # the connection was ended by another fault first: that is (a)'s
        assert any(t <= e.at <= t + INTERVAL_S + TIMEOUT_S + 1e-6 for e in left), (
            f"stall at {t:.3f} s on connection {stall.conn} not detected in time"
        )


def delays_within_bounds(run: Run) -> None:
    """(e), for one client."""
    for retry in run.of(Retry):
        hint = retry.retry_after_s or 0.0
        assert 0 <= hint <= POLICY.retry_after_cap_s
        assert hint <= retry.delay_s <= hint + POLICY.window_s(retry.attempt)


def nothing_left(run: Run) -> None:
    """(f)"""
    assert run.final_state is State.STOPPED
    assert run.sockets_left == 0, "a socket is left open"
    # The server's own tasks (pump, fault planner) are all that may remain.
    assert run.tasks_left <= 2, f"{run.tasks_left} tasks left"


PROPERTIES = [
    comes_back,
    exactly_once_and_gaps_explained,
    subscriptions_restored,
    stalls_detected,
    delays_within_bounds,
    nothing_left,
]


@settings(
    max_examples=int(os.environ.get("SIM_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans, seed=st.integers(0, 2**32 - 1))
# An outage tells clients its length as Retry-After (capped at 5 s): a refusal just
# before it ends means 5 s plus the jitter after it.
@example(plan=(PlannedFault(0, FaultKind.OUTAGE, duration_ns=17_034_000_000),), seed=0)
def test_the_reference_client_keeps_every_property_under_any_fault_plan(
    plan: FlatPlan, seed: int
) -> None:
    run = run_client(plan, seed=seed)
    for check in PROPERTIES:
        check(run)


# ----------------------------------------------------------------------------- (e) the herd


def reconnect_spread_s(make: Callable[[RunningSim, int], ResilientClient]) -> tuple[float, float]:
    """100 clients, all closed with 1012 at 10 s: the spread of the times they next
    connect again, and the backoff window they were in."""
    plan = (PlannedFault(10 * S, FaultKind.MASS_DISCONNECT, params=(("code", 1012),)),)

    async def check(sim: RunningSim) -> list[float]:
        clients = [make(sim, i) for i in range(100)]
        back: dict[int, float] = {}
        for i, client in enumerate(clients):

            def seen(event: ClientEvent, i: int = i) -> None:
                again = isinstance(event, StateChanged) and event.state is State.CONNECTING
                if again and event.at > 10.0 and i not in back:
                    back[i] = event.at

            client.listen(seen)
            await client.start()
        await sim.sleep(15)
        for client in clients:
            await client.close()
        return list(back.values())

    reconnects = run_sim(check, FEED, faults=to_faults(plan))
    assert len(reconnects) == 100, "not every client came back"
    window = POLICY.window_s(0)  # each had been open 10 s: stable, so attempt 0
    return max(reconnects) - min(reconnects), window


def spread_enough(spread: float, window: float) -> None:
    assert spread >= window / 2, f"reconnects spread over {spread:.3f} s of a {window} s window"


def test_a_hundred_clients_dropped_at_once_spread_their_reconnects() -> None:
    spread_enough(*reconnect_spread_s(lambda sim, i: reference(sim, seed=i)))


def test_clients_given_no_seed_spread_too_and_one_seed_for_all_does_not() -> None:
    """Without a seed each client draws its own (a fleet of dashboards built from the
    docs' example); the same seed for all brings them back at one instant."""

    def unseeded(sim: RunningSim, i: int) -> ResilientClient:
        return ResilientClient(sim.url, config=CONFIG, open_transport=sim.open_transport)

    spread_enough(*reconnect_spread_s(unseeded))
    same, _ = reconnect_spread_s(lambda sim, i: reference(sim, seed=0))
    assert same == 0.0


# ----------------------------------------------------------------------------- broken clients


class BrokenGivesUp(ResilientClient):
    """Stops after its third failure."""

    def listen_failures(self) -> None:
        self.listen(self._count)
        self._failures = 0

    def _count(self, event: ClientEvent) -> None:
        if isinstance(event, Retry):
            self._failures += 1
            if self._failures >= 3:
                self._closing = True


class BrokenDeliversDuplicates(ResilientClient):
    """Delivers every message it gets, duplicates included."""

    def _received(self, session: _Session, raw: str | bytes) -> None:
        self._tracker.restart()
        super()._received(session, raw)


class BrokenForgetsSubscriptions(ResilientClient):
    """Subscribes on its first connection only."""

    def _opened(self, conn: ClientConnection, session: _Session) -> None:
        active = self.subscriptions
        if self.connections >= 1:
            self.subscriptions = None
        super()._opened(conn, session)
        self.subscriptions = active


class BrokenNoHeartbeat(ResilientClient):
    """Never notices a silent peer."""

    def _arm_heartbeat(self, conn: ClientConnection, session: _Session) -> None:
        return None


class BrokenLeavesItsLoop(ResilientClient):
    """``close()`` closes the socket but leaves the reconnect loop running."""

    async def close(self) -> None:
        self._runner = None
        conn = self._conn
        if conn is not None:
            await conn.close()


def broken(kind: type[ResilientClient]) -> Callable[[RunningSim], ResilientClient]:
    def make(sim: RunningSim) -> ResilientClient:
        client = kind(
            sim.url,
            config=CONFIG,
            subscriptions=sorted(SUBSCRIBED),
            open_transport=sim.open_transport,
            seed=0,
        )
        if isinstance(client, BrokenGivesUp):
            client.listen_failures()
        return client

    return make


OUTAGE = (PlannedFault(5 * S, FaultKind.OUTAGE, duration_ns=10 * S),)
RESETS = (
    PlannedFault(5 * S, FaultKind.RESET, conn=0),
    PlannedFault(10 * S, FaultKind.RESET, conn=1),
    PlannedFault(15 * S, FaultKind.RESET, conn=2),
)
DUPLICATES = (
    PlannedFault(2 * S, FaultKind.DUPLICATE, conn=0, duration_ns=5 * S, params=(("copies", 1),)),
)
STALL = (PlannedFault(5 * S, FaultKind.STALL, conn=0, duration_ns=20 * S),)


@pytest.mark.parametrize(
    ("broken_kind", "plan", "prop"),
    [
        (BrokenGivesUp, OUTAGE, comes_back),
        (BrokenDeliversDuplicates, DUPLICATES, exactly_once_and_gaps_explained),
        (BrokenForgetsSubscriptions, RESETS, subscriptions_restored),
        (BrokenNoHeartbeat, STALL, stalls_detected),
        (BrokenLeavesItsLoop, RESETS, nothing_left),
    ],
    ids=["a-gives-up", "b-duplicates", "c-forgets-subscriptions", "d-no-heartbeat", "f-leaks"],
)
def test_each_property_fails_on_a_client_broken_for_it(
    broken_kind: type[ResilientClient],
    plan: FlatPlan,
    prop: Callable[[Run], None],
) -> None:
    # The plan is one the reference client passes ...
    prop(run_client(plan))
    # ... and the broken client fails.
    with pytest.raises(AssertionError):
        prop(run_client(plan, broken(broken_kind)))


class BrokenNoJitter(ResilientClient):
    """Waits the whole window every time: every client at the same instant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backoff = _Fixed(self.config.backoff)


class _Fixed(Backoff):
    def next_delay_s(
        self, draw: float, *, uptime_s: float | None, retry_after_s: float | None = None
    ) -> float:
        return super().next_delay_s(0.999, uptime_s=uptime_s, retry_after_s=retry_after_s)


def test_the_herd_property_fails_on_a_client_without_jitter() -> None:
    def make(sim: RunningSim, i: int) -> ResilientClient:
        return BrokenNoJitter(sim.url, config=CONFIG, seed=i, open_transport=sim.open_transport)

    with pytest.raises(AssertionError):
        spread_enough(*reconnect_spread_s(make))


class BrokenIgnoresTheCap(ResilientClient):
    """Doubles its delay for ever: no cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backoff = _Uncapped(self.config.backoff)


class _Uncapped(Backoff):
    def next_delay_s(
        self, draw: float, *, uptime_s: float | None, retry_after_s: float | None = None
    ) -> float:
        self.attempt += 1
        return 0.999 * self.policy.base_s * self.policy.factor ** (self.attempt - 1)


#: A server down for a minute: a client retrying through it reaches the cap.
LONG_OUTAGE = (PlannedFault(2 * S, FaultKind.OUTAGE, duration_ns=60 * S),)


def test_the_delay_bounds_fail_on_a_client_without_a_cap() -> None:
    delays_within_bounds(run_client(LONG_OUTAGE))
    with pytest.raises(AssertionError):
        delays_within_bounds(run_client(LONG_OUTAGE, broken(BrokenIgnoresTheCap)))


def test_a_failure_reproduces_from_its_printed_plan_and_seed() -> None:
    """What a failure prints — the plan as [[fault]] TOML, and the seed — is enough to
    run the same example again, event for event."""
    from simulator.core.flat_plan import from_faults
    from simulator.scenario import parse_faults
    from simulator.testing.strategies import plan_report

    plan, seed = OUTAGE, 77
    report = plan_report(plan, seed)
    toml = report[report.index("\n[[fault]]") : report.index("To run it again")]
    again = from_faults(parse_faults(toml, []).faults)
    assert f"seed {seed}" in report and again == plan

    def timeline(run: Run) -> list[tuple[str, float]]:
        return [(type(e).__name__, e.at) for e in run.events if not isinstance(e, Message)]

    first = run_client(plan, broken(BrokenGivesUp), seed=seed)
    second = run_client(again, broken(BrokenGivesUp), seed=seed)
    with pytest.raises(AssertionError) as failure:
        comes_back(first)
    with pytest.raises(AssertionError) as same:
        comes_back(second)
    assert str(failure.value) == str(same.value)
    assert timeline(first) == timeline(second)
