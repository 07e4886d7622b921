"""Properties of the pure fault planner: determinism, random access, targeting, schedules."""

from __future__ import annotations

import ast
import importlib.util
import statistics
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.fault_report import plan_report
from simulator.core.faults import (
    NO_FAULT,
    FaultEvent,
    FaultPlan,
    Handshakes,
    MessageDecision,
    connection_schedule,
    decide,
    plan_faults,
    retry_after_at_speed,
    server_schedule,
)
from simulator.core.model import (
    BurstLoss,
    ConnectionEvery,
    ConnectionFraction,
    ConnectionList,
    Corrupt,
    CorruptMode,
    Delay,
    Disconnect,
    Drop,
    Duplicate,
    Envelope,
    Every,
    Fault,
    FaultAction,
    FaultAt,
    FaultEvery,
    FaultKind,
    FaultPoisson,
    FaultSchedule,
    FaultTarget,
    FaultWindow,
    FixedLatency,
    Latency,
    MassDisconnect,
    Mode,
    NormalLatency,
    Object,
    Outage,
    ParetoLatency,
    RandInt,
    Reject,
    Reorder,
    Reset,
    Scenario,
    Schedule,
    Server,
    Stall,
    Stream,
    Throttle,
    UniformLatency,
)

S = 1_000_000_000
MS = 1_000_000
FAST = settings(max_examples=50, deadline=None)
PAYLOAD = b'{"type":"a","seq":1,"data":{"level":"info","n":3}}'


def fault(
    action: FaultAction,
    name: str = "f",
    schedule: FaultSchedule | None = None,
    **target: object,
) -> Fault:
    return Fault(name, action, schedule or FaultSchedule(), FaultTarget(**target))  # type: ignore[arg-type]


def plan(*faults: Fault, seed: int = 7) -> FaultPlan:
    return FaultPlan(faults, seed)


def drops(p: FaultPlan, conn: int, stream: str, n: int, t_ns: int = 0) -> list[bool]:
    faults = p.connection(conn)
    return [faults.decide(stream, k, PAYLOAD, t_ns).drop for k in range(1, n + 1)]


# ============================================================================ determinism

MIXED = (
    fault(Drop(), "drop", probability=0.3),
    fault(Delay(NormalLatency(50 * MS, 20 * MS)), "delay", probability=0.5),
    fault(Duplicate(2), "dup", probability=0.2),
    fault(Reorder(3), "reorder", probability=0.1),
    fault(Corrupt(CorruptMode.INVALID_JSON), "corrupt", probability=0.1),
    fault(BurstLoss(0.2, 3), "burst"),
)
CONNECTION_LEVEL = (
    fault(Disconnect(4000, "x"), "kick", FaultSchedule(FaultPoisson(10 * S))),
    fault(
        Stall(), "stall", FaultSchedule(FaultEvery(7 * S), 2 * S), connections=ConnectionEvery(2)
    ),
    fault(Throttle(1000.0), "slow", FaultSchedule(FaultWindow(5 * S, 9 * S))),
    fault(Reset(), "reset", FaultSchedule(FaultAt(20 * S)), connections=ConnectionFraction(0.5)),
)
SERVER_LEVEL = (
    fault(Outage(3 * S), "down", FaultSchedule(FaultPoisson(30 * S), 3 * S, limit=3)),
    fault(MassDisconnect(1001, "bye"), "mass", FaultSchedule(FaultEvery(40 * S))),
    fault(Reject(status=429, retry_after_ns=S), "busy", FaultSchedule(FaultAt(S), 2 * S)),
)
EVERYTHING = MIXED + CONNECTION_LEVEL + SERVER_LEVEL


def decisions(seed: int, conn: int, n: int = 60) -> list[MessageDecision]:
    faults = FaultPlan(MIXED, seed).connection(conn)
    return [faults.decide("a", k, PAYLOAD, k * 100 * MS) for k in range(1, n + 1)]


@FAST
@given(st.integers(0, 2**63 - 1), st.integers(0, 1000))
def test_same_seed_gives_identical_decisions_and_schedules(seed: int, conn: int) -> None:
    assert decisions(seed, conn) == decisions(seed, conn)
    a, b = FaultPlan(EVERYTHING, seed), FaultPlan(EVERYTHING, seed)
    assert connection_schedule(a, conn, 120 * S) == connection_schedule(b, conn, 120 * S)
    assert server_schedule(a, 300 * S) == server_schedule(b, 300 * S)


@FAST
@given(st.integers(0, 2**62), st.integers(1, 2**62), st.integers(0, 100))
def test_different_seeds_give_different_decisions(seed: int, delta: int, conn: int) -> None:
    assert decisions(seed, conn, 200) != decisions(seed + delta, conn, 200)


def test_different_seeds_give_different_poisson_schedules() -> None:
    schedules = {
        tuple(e.t_ns for e in server_schedule(FaultPlan(SERVER_LEVEL, seed), 600 * S))
        for seed in range(10)
    }
    assert len(schedules) == 10


def test_connections_get_independent_decisions() -> None:
    assert decisions(7, 0, 200) != decisions(7, 1, 200)


# ============================================================================ random access


@FAST
@given(st.integers(0, 2**32), st.permutations(range(1, 41)))
def test_decision_for_message_k_does_not_depend_on_what_was_asked_before(
    seed: int, order: list[int]
) -> None:
    p = FaultPlan(MIXED, seed)
    in_order = decisions(seed, 3, 40)
    shared = p.connection(3)
    for k in order:
        t = k * 100 * MS
        assert shared.decide("a", k, PAYLOAD, t) == in_order[k - 1]
        assert decide(p, 3, "a", k, PAYLOAD, t) == in_order[k - 1]


@FAST
@given(st.integers(0, 2**32), st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_burst_loss_chain_skipping_messages_gives_the_same_states(
    seed: int, asked: list[int]
) -> None:
    p = plan(fault(BurstLoss(0.3, 4), "burst"), seed=seed)
    every = drops(p, 0, "a", 400)
    faults = p.connection(0)
    for k in sorted(asked):
        assert faults.decide("a", k, PAYLOAD, 0).drop == every[k - 1]


def test_seqs_start_at_one_and_connections_at_zero() -> None:
    p = plan(fault(Drop()))
    with pytest.raises(ValueError, match="seqs start at 1"):
        decide(p, 0, "a", 0, PAYLOAD, 0)
    with pytest.raises(ValueError, match="connection indexes start at 0"):
        p.connection(-1)


def test_fault_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan(fault(Drop(), "x"), fault(Reset(), "x"))


# ============================================================================ probabilities


@pytest.mark.parametrize("probability", [0.0, 0.05, 0.5, 0.9, 1.0])
def test_drop_rate_is_close_to_its_probability(probability: float) -> None:
    p = plan(fault(Drop(), probability=probability), seed=11)
    rate = sum(drops(p, 0, "a", 20_000)) / 20_000
    assert abs(rate - probability) < 0.015


def test_every_nth_hits_exactly_the_multiples() -> None:
    p = plan(fault(Drop(), every_nth=4))
    assert [k for k, hit in enumerate(drops(p, 0, "a", 20), 1) if hit] == [4, 8, 12, 16, 20]


@pytest.mark.parametrize(("loss", "burst"), [(0.1, 1.0), (0.05, 4.0), (0.3, 2.5), (0.5, 8.0)])
def test_burst_loss_has_its_declared_loss_rate_and_mean_burst_length(
    loss: float, burst: float
) -> None:
    p = plan(fault(BurstLoss(loss, burst)), seed=3)
    lost = drops(p, 0, "a", 100_000)
    runs: list[int] = []
    run = 0
    for x in [*lost, False]:
        if x:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert abs(sum(lost) / len(lost) - loss) < 0.2 * loss
    assert abs(statistics.mean(runs) - burst) < 0.1 * burst


def test_burst_loss_transition_probabilities_follow_the_documented_formulas() -> None:
    b = BurstLoss(0.2, 4)
    assert b.leave_bad == 0.25
    assert b.enter_bad == pytest.approx(0.2 / (4 * 0.8))
    assert b.enter_bad / (b.enter_bad + b.leave_bad) == pytest.approx(0.2)


# ============================================================================ targeting

ACTIONS: tuple[FaultAction, ...] = (
    Delay(FixedLatency(5 * MS)),
    Duplicate(1),
    Reorder(2),
    Corrupt(CorruptMode.TRUNCATE),
)


@FAST
@given(st.integers(0, 10_000), st.integers(0, 10**12))
def test_a_fault_on_one_stream_never_touches_another(seq: int, t: int) -> None:
    p = plan(*(fault(a, f"f{i}", streams=("a",)) for i, a in enumerate(ACTIONS)))
    assert decide(p, 0, "b", seq + 1, PAYLOAD, t) == NO_FAULT
    assert decide(p, 0, "a", seq + 1, PAYLOAD, t) != NO_FAULT


@FAST
@given(st.lists(st.integers(0, 30), max_size=5, unique=True), st.integers(1, 5), st.integers(0, 9))
def test_connection_targeting_is_respected(chosen: list[int], every: int, after: int) -> None:
    by_list = plan(fault(Drop(), connections=ConnectionList(tuple(chosen))))
    by_every = plan(fault(Drop(), connections=ConnectionEvery(every)))
    by_after = plan(fault(Drop(), after_connections=after))
    for conn in range(31):
        assert decide(by_list, conn, "a", 1, PAYLOAD, 0).drop == (conn in chosen)
        assert decide(by_every, conn, "a", 1, PAYLOAD, 0).drop == ((conn + 1) % every == 0)
        assert decide(by_after, conn, "a", 1, PAYLOAD, 0).drop == (conn >= after)


def test_connection_fraction_picks_about_that_share_of_connections_for_every_message() -> None:
    p = plan(fault(Drop(), connections=ConnectionFraction(0.25)))
    hit = [c for c in range(4000) if decide(p, c, "a", 1, PAYLOAD, 0).drop]
    assert abs(len(hit) / 4000 - 0.25) < 0.03
    for c in hit[:20]:
        assert all(drops(p, c, "a", 10))  # chosen once per connection, not per message


def test_connection_targeting_applies_to_connection_events() -> None:
    p = plan(fault(Reset(), schedule=FaultSchedule(FaultAt(S)), connections=ConnectionList((2,))))
    assert [c for c in range(5) if connection_schedule(p, c, 10 * S)] == [2]


@pytest.mark.parametrize(
    ("path", "value", "payload", "hit"),
    [
        (("data", "level"), "info", PAYLOAD, True),
        (("data", "level"), "warning", PAYLOAD, False),
        (("data", "n"), 3.0, PAYLOAD, True),  # JSON numbers: 3 == 3.0
        (("data", "n"), True, b'{"data":{"n":1}}', False),  # but true is not 1
        (("data", "missing"), None, PAYLOAD, False),  # a missing key is not null
        (("data", "x"), None, b'{"data":{"x":null}}', True),
        (("items", "1"), "b", b'{"items":["a","b"]}', True),  # list index
        (("data", "level"), "info", b"not json", False),
        (("data", "tags"), ["x", "y"], b'{"data":{"tags":["x","y"]}}', True),
    ],
)
def test_match_compares_the_value_at_a_dotted_path(
    path: tuple[str, ...], value: object, payload: bytes, hit: bool
) -> None:
    p = plan(fault(Drop(), match=((path, value),)))
    assert decide(p, 0, "a", 1, payload, 0).drop is hit


# ============================================================================ schedules of messages


@FAST
@given(st.integers(0, 100 * S), st.integers(1, 100 * S), st.integers(0, 250 * S))
def test_no_message_fault_outside_its_window(start: int, length: int, t: int) -> None:
    p = plan(
        *(
            fault(a, f"f{i}", FaultSchedule(FaultWindow(start, start + length)))
            for i, a in enumerate((Drop(), *ACTIONS))
        )
    )
    faults = p.connection(0)
    inside = start <= t < start + length
    assert faults.decide("a", 1, PAYLOAD, t).clean is not inside
    assert len(faults.hits("a", 1, PAYLOAD, t)) == (5 if inside else 0)


@FAST
@given(st.integers(1, 20 * S), st.integers(1, 20 * S), st.integers(1, 5), st.integers(0, 200 * S))
def test_every_with_duration_and_limit_is_active_only_inside_its_first_occurrences(
    interval: int, duration: int, limit: int, t: int
) -> None:
    p = plan(fault(Drop(), schedule=FaultSchedule(FaultEvery(interval), duration, limit)))
    starts = [k * interval for k in range(1, limit + 1)]
    expected = any(s <= t < s + duration for s in starts)
    assert decide(p, 0, "a", 1, PAYLOAD, t).drop is expected


def test_at_without_duration_switches_a_message_fault_on_for_good() -> None:
    p = plan(fault(Drop(), schedule=FaultSchedule(FaultAt(5 * S))))
    assert [decide(p, 0, "a", 1, PAYLOAD, t * S).drop for t in (0, 4, 5, 6, 10**6)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_poisson_windows_of_a_message_fault_cover_about_their_share_of_time() -> None:
    # Mean interval 10 s, each occurrence 1 s: about 10% of the time is covered.
    p = plan(fault(Drop(), schedule=FaultSchedule(FaultPoisson(10 * S), S)))
    faults = p.connection(0)
    covered = sum(faults.decide("a", 1, PAYLOAD, t * 100 * MS).drop for t in range(100_000))
    assert abs(covered / 100_000 - 0.1) < 0.02


# ============================================================================ effects


@FAST
@given(st.integers(0, 2**32), st.integers(1, 10**6))
def test_latencies_stay_within_their_distribution(seed: int, seq: int) -> None:
    uniform = plan(fault(Delay(UniformLatency(10 * MS, 30 * MS))), seed=seed)
    normal = plan(fault(Delay(NormalLatency(5 * MS, 50 * MS))), seed=seed)
    pareto = plan(fault(Delay(ParetoLatency(20 * MS, 0.2, 3 * S))), seed=seed)
    assert 10 * MS <= decide(uniform, 0, "a", seq, PAYLOAD, 0).delay_ns <= 30 * MS
    assert decide(normal, 0, "a", seq, PAYLOAD, 0).delay_ns >= 0
    assert 20 * MS <= decide(pareto, 0, "a", seq, PAYLOAD, 0).delay_ns <= 3 * S


def test_latency_samples_have_the_declared_mean() -> None:
    cases: list[tuple[Latency, int]] = [
        (FixedLatency(7 * MS), 7 * MS),
        (UniformLatency(10 * MS, 30 * MS), 20 * MS),
        (NormalLatency(100 * MS, 10 * MS), 100 * MS),
        (ParetoLatency(10 * MS, 3.0), 15 * MS),  # scale * shape / (shape - 1)
    ]
    for latency, mean in cases:
        faults = plan(fault(Delay(latency))).connection(0)
        delays = [faults.decide("a", k, PAYLOAD, 0).delay_ns for k in range(1, 20_001)]
        assert abs(statistics.mean(delays) - mean) < 0.03 * mean


def test_decision_fields_of_each_action() -> None:
    def one(action: FaultAction) -> MessageDecision:
        return decide(plan(fault(action, "x")), 0, "a", 1, PAYLOAD, 0)

    assert one(Drop()) == MessageDecision(drop=True, faults=("x",))
    assert one(Delay(FixedLatency(MS), keep_order=True)) == MessageDecision(
        delay_ns=MS, keep_order=True, faults=("x",)
    )
    assert one(Duplicate(3)) == MessageDecision(copies=3, faults=("x",))
    assert one(Reorder(5)) == MessageDecision(hold=5, faults=("x",))
    assert one(Corrupt(CorruptMode.TRUNCATE)).corrupt is not None


def test_a_drop_wins_over_other_faults_and_delays_add_up() -> None:
    delays = [fault(Delay(FixedLatency(k * MS)), f"d{k}") for k in (1, 2)]
    both = decide(plan(*delays, fault(Duplicate(1), "dup")), 0, "a", 1, PAYLOAD, 0)
    assert both == MessageDecision(delay_ns=3 * MS, copies=1, faults=("d1", "d2", "dup"))
    dropped = decide(plan(*delays, fault(Drop(), "drop")), 0, "a", 1, PAYLOAD, 0)
    assert dropped == MessageDecision(drop=True, faults=("drop",))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def corrupted(payload: bytes, mode: CorruptMode, seed: int, seq: int) -> bytes:
    result = decide(plan(fault(Corrupt(mode)), seed=seed), 0, "a", seq, payload, 0).corrupt
    assert result is not None
    return result


@FAST
@given(JSON_VALUES, st.integers(0, 2**32), st.integers(1, 1000))
def test_invalid_json_never_parses_and_stays_utf8(value: object, seed: int, seq: int) -> None:
    payload = orjson.dumps(value)
    out = corrupted(payload, CorruptMode.INVALID_JSON, seed, seq)
    out.decode("utf-8")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(out)
    assert out == corrupted(payload, CorruptMode.INVALID_JSON, seed, seq)


@FAST
@given(JSON_VALUES, st.integers(0, 2**32), st.integers(1, 1000))
def test_truncate_gives_a_shorter_utf8_prefix(value: object, seed: int, seq: int) -> None:
    payload = orjson.dumps({"v": value})
    out = corrupted(payload, CorruptMode.TRUNCATE, seed, seq)
    out.decode("utf-8")
    assert payload.startswith(out) and len(out) < len(payload)


def leaves(doc: object) -> list[object]:
    if isinstance(doc, dict) and doc:
        return [x for v in doc.values() for x in leaves(v)]
    if isinstance(doc, list) and doc:
        return [x for v in doc for x in leaves(v)]
    return [doc]


def json_type(value: object) -> str:
    return "number" if type(value) in (int, float) else type(value).__name__


@FAST
@given(JSON_VALUES, st.integers(0, 2**32), st.integers(1, 1000))
def test_wrong_types_changes_the_type_of_exactly_one_value(
    value: object, seed: int, seq: int
) -> None:
    payload = orjson.dumps({"type": "a", "data": value})
    before = leaves(orjson.loads(payload))
    after = leaves(orjson.loads(corrupted(payload, CorruptMode.WRONG_TYPES, seed, seq)))
    assert len(before) == len(after)  # empty containers swap ([] <-> {}): still one leaf
    changed = [(a, b) for a, b in zip(before, after, strict=True) if json_type(a) != json_type(b)]
    assert len(changed) == 1


# ============================================================================ connection events


def kinds_at(events: list[FaultEvent]) -> list[tuple[int, str]]:
    return [(e.t_ns // S, e.kind.value) for e in events]


def test_connection_schedule_of_each_trigger() -> None:
    p = plan(
        fault(Disconnect(4001, "r"), "d", FaultSchedule(FaultAt(3 * S))),
        fault(Stall(), "s", FaultSchedule(FaultEvery(4 * S), S)),
        fault(Throttle(512.0), "t", FaultSchedule(FaultWindow(2 * S, 5 * S))),
        fault(Reset(), "r"),  # no schedule: at connect
    )
    events = connection_schedule(p, 0, 10 * S)
    assert events == [
        FaultEvent(0, FaultKind.RESET, "r", 0, {}, None, 0),
        FaultEvent(2 * S, FaultKind.THROTTLE, "t", 0, {"bytes_per_s": 512.0}, 5 * S, 0),
        FaultEvent(3 * S, FaultKind.DISCONNECT, "d", 0, {"code": 4001, "reason": "r"}, None, 0),
        FaultEvent(4 * S, FaultKind.STALL, "s", 0, {}, 5 * S, 0),
        FaultEvent(8 * S, FaultKind.STALL, "s", 0, {}, 9 * S, 1),
    ]


def test_a_connection_opened_late_gets_no_past_event_but_an_open_window_at_once() -> None:
    p = plan(
        fault(Disconnect(), "d", FaultSchedule(FaultAt(3 * S))),
        fault(Stall(), "s", FaultSchedule(FaultWindow(2 * S, 8 * S))),
        fault(Reset(), "r"),
    )
    events = connection_schedule(p, 1, 20 * S, opened_ns=5 * S)
    assert [(e.t_ns, e.fault, e.end_ns) for e in events] == [
        (5 * S, "s", 8 * S),
        (5 * S, "r", None),
    ]


@FAST
@given(st.integers(0, 2**32), st.integers(1, 6), st.integers(0, 100 * S))
def test_limit_caps_events_per_connection_from_its_open(seed: int, limit: int, opened: int) -> None:
    p = plan(
        fault(Reset(), "every", FaultSchedule(FaultEvery(3 * S), limit=limit)),
        fault(Reset(), "poisson", FaultSchedule(FaultPoisson(2 * S), limit=limit)),
        seed=seed,
    )
    events = connection_schedule(p, 0, opened + 60 * S, opened_ns=opened)
    for name in ("every", "poisson"):
        assert len([e for e in events if e.fault == name]) == limit


@FAST
@given(st.integers(0, 2**32), st.integers(0, 50), st.integers(1, 300 * S), st.integers(0, 300 * S))
def test_schedules_are_sorted_and_inside_their_bounds(
    seed: int, conn: int, horizon: int, opened: int
) -> None:
    p = FaultPlan(EVERYTHING, seed)
    events = connection_schedule(p, conn, horizon, opened_ns=opened)
    assert all(opened <= e.t_ns < horizon and e.conn == conn for e in events)
    assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)
    server = server_schedule(p, horizon)
    assert all(0 <= e.t_ns < horizon and e.conn is None for e in server)
    assert [e.t_ns for e in server] == sorted(e.t_ns for e in server)


def test_poisson_occurrences_have_the_declared_mean_interval() -> None:
    p = plan(fault(Reset(), schedule=FaultSchedule(FaultPoisson(5 * S))))
    times = [e.t_ns for e in connection_schedule(p, 0, 50_000 * S)]
    gaps = [b - a for a, b in zip([0, *times], times, strict=False)]
    assert abs(statistics.mean(gaps) / S - 5) < 0.25


def test_stall_without_duration_lasts_for_ever() -> None:
    p = plan(fault(Stall(), schedule=FaultSchedule(FaultAt(S))))
    assert connection_schedule(p, 0, 10 * S)[0].end_ns is None


# ============================================================================ server events


def test_server_schedule_limits_occurrences_in_all() -> None:
    p = plan(
        fault(Outage(2 * S), "down", FaultSchedule(FaultEvery(10 * S), 2 * S, limit=2)),
        fault(MassDisconnect(1001, "bye"), "mass", FaultSchedule(FaultAt(15 * S))),
    )
    assert server_schedule(p, 100 * S) == [
        FaultEvent(10 * S, FaultKind.OUTAGE, "down", None, {"retry_after_s": 2}, 12 * S, 0),
        FaultEvent(
            15 * S, FaultKind.MASS_DISCONNECT, "mass", None, {"code": 1001, "reason": "bye"}
        ),
        FaultEvent(20 * S, FaultKind.OUTAGE, "down", None, {"retry_after_s": 2}, 22 * S, 1),
    ]


def test_handshakes_are_refused_during_an_outage_with_retry_after() -> None:
    p = plan(fault(Outage(1500 * MS), "down", FaultSchedule(FaultAt(10 * S), 3 * S)))
    gate = Handshakes(p)
    answers = [gate.decide(t * S) for t in (0, 10, 12, 13)]
    assert [(a.attempt, a.status, a.retry_after_s) for a in answers] == [
        (0, None, None),
        (1, 503, 2),
        (2, 503, 2),
        (3, None, None),
    ]


def test_reject_counts_handshakes_from_after_connections_up_to_limit() -> None:
    p = plan(
        fault(
            Reject(status=429, retry_after_ns=S),
            "busy",
            FaultSchedule(limit=2),
            after_connections=1,
        ),
        fault(Reject(delay_ns=300 * MS), "slow", FaultSchedule(FaultWindow(5 * S, 6 * S))),
    )
    gate = Handshakes(p)
    answers = [gate.decide(t * S) for t in (0, 1, 2, 3, 5)]
    assert [(a.status, a.retry_after_s, a.delay_ns, a.faults) for a in answers] == [
        (None, None, 0, ()),
        (429, 1, 0, ("busy",)),
        (429, 1, 0, ("busy",)),
        (None, None, 0, ()),
        (None, None, 300 * MS, ("slow",)),
    ]


# ============================================================================ report


def scenario(*faults: Fault, mode: Mode = Mode.BROADCAST) -> Scenario:
    stream = Stream("a", Schedule(Every(S)), Object((("x", RandInt(0, 9)),)), "a", Envelope())
    other = Stream("b", Schedule(Every(3 * S)), Object(()), "b", Envelope())
    return Scenario("t", 5, (stream, other), server=Server(mode=mode), faults=faults)


def test_plan_report_lists_events_and_hits_in_order() -> None:
    s = scenario(
        fault(Drop(), "lossy", FaultSchedule(FaultWindow(2 * S, 5 * S)), streams=("a",)),
        fault(
            Disconnect(4000, "x"),
            "kick",
            FaultSchedule(FaultAt(4 * S)),
            connections=ConnectionList((1,)),
        ),
        fault(Outage(S), "down", FaultSchedule(FaultAt(7 * S), S)),
    )
    assert plan_report(s, None, 10 * S, 2) == [
        "fault plan of 't', seed 5: 10s of scenario time, 2 connections open from 0s",
        "server",
        "          7s  server  outage  'down'  until 8s  retry_after_s=1",
        "connections",
        "          4s  conn 1  disconnect  'kick'  code=4000  reason='x'",
        "messages",
        "  drop 'lossy': 6 of 18 messages (33.3%)",
        "    conn 0 a: seq 2, 3, 4",
        "    conn 1 a: seq 2, 3, 4",
    ]


@pytest.mark.parametrize("mode", list(Mode))
def test_plan_report_is_the_same_for_the_same_seed_and_changes_with_it(mode: Mode) -> None:
    s = scenario(
        fault(Delay(UniformLatency(0, 100 * MS)), "slow", probability=0.3),
        fault(BurstLoss(0.2, 2), "burst"),
        fault(Reset(), "r", FaultSchedule(FaultPoisson(20 * S))),
        mode=mode,
    )
    report = plan_report(s, 1, 60 * S, 3)
    assert report == plan_report(s, 1, 60 * S, 3)
    assert report != plan_report(s, 2, 60 * S, 3)


def test_plan_report_without_faults_says_so() -> None:
    assert plan_report(scenario(), 0, S, 1)[1:] == ["no faults"]


def test_plan_faults_takes_the_scenario_seed_unless_overridden() -> None:
    s = scenario(fault(Drop()))
    assert plan_faults(s).seed == 5 and plan_faults(s, 9).seed == 9


# ============================================================================ layering


def imported_modules(module: str) -> set[str]:
    """Every module ``module`` imports, following imports of ``simulator.core`` modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for imported in names:
                if imported not in seen:
                    seen.add(imported)
                    if imported.startswith("simulator.core."):
                        todo.append(imported)
    return seen


def test_the_fault_planner_imports_only_the_pure_core() -> None:
    modules = imported_modules("simulator.core.faults")
    roots = {m.split(".")[0] for m in modules}
    assert not roots & {"asyncio", "websockets", "polars", "time", "random", "socket"}
    assert {m for m in modules if m.startswith("simulator.")} <= {
        m for m in modules if m.startswith("simulator.core.")
    }


# ----------------------------------------------------------------------------- Retry-After


@given(
    ns=st.integers(min_value=0, max_value=10**6 * S),
    speed=st.floats(min_value=0.001, max_value=1000.0),
)
def test_retry_after_at_speed_is_the_wall_wait_rounded_up_to_a_whole_second(
    ns: int, speed: float
) -> None:
    """Never shorter than the scenario wait takes in wall time (to the nanosecond), never
    a whole second longer; a wait of more than 0 is at least 1 s, and 0 stays 0."""
    told = retry_after_at_speed(ns, speed)
    wall_ns = ns / speed
    assert told * S >= wall_ns - 1
    if ns == 0:
        assert told == 0
    else:
        assert told >= 1
        assert told == 1 or (told - 1) * S < wall_ns + 1


@pytest.mark.parametrize(
    ("ns", "speed", "told"),
    [(10 * S, 20, 1), (10 * S, 1, 10), (10 * S, 4, 3), (3 * S, 0.5, 6), (2500 * MS, 1, 3)],
)
def test_retry_after_at_speed_examples_of_the_docs(ns: int, speed: float, told: int) -> None:
    assert retry_after_at_speed(ns, speed) == told
