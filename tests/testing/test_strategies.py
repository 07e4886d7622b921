"""The hypothesis strategies of ``simulator.testing.strategies``: every value they draw is
valid (plans within their bounds and sorted, schedules and scenarios the loader
accepts), a failing plan shrinks to the simplest one, and the failure report reruns."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from simulator.core.flat_plan import (
    FLAT_KINDS,
    FlatPlan,
    PlannedFault,
    from_faults,
    to_faults,
    to_toml,
)
from simulator.core.model import (
    At,
    Burst,
    Every,
    FaultKind,
    FaultLevel,
    Poisson,
    Scenario,
    Schedule,
    UniformInterval,
)
from simulator.core.timeline import Timeline
from simulator.scenario import parse_faults, parse_scenario
from simulator.testing.strategies import (
    _schedule_lines,
    fault_plans,
    plan_report,
    scenarios,
    schedules,
)

S = 1_000_000_000
MS = 1_000_000
K = FaultKind
# `find` must shrink afresh, not replay a stored example; and search the same way every
# run (a shrinker's result may depend on where it started).
NO_DATABASE = settings(database=None, derandomize=True)


# ----------------------------------------------------------------------------- fault plans


def check_plan(
    plan: FlatPlan,
    *,
    kinds: tuple[FaultKind, ...] = FLAT_KINDS,
    connections: int = 3,
    max_faults: int = 5,
    horizon: int = 60 * S,
    step: int = MS,
) -> None:
    assert isinstance(plan, tuple) and len(plan) <= max_faults
    assert [p.at_ns for p in plan] == sorted(p.at_ns for p in plan)
    for p in plan:
        assert isinstance(p, PlannedFault) and p.kind in kinds
        assert 0 <= p.at_ns < horizon and p.at_ns % step == 0
        if p.duration_ns is not None:
            assert 0 < p.duration_ns <= horizon and p.duration_ns % step == 0
        if p.kind.level is FaultLevel.SERVER:
            assert p.conn is None
        else:
            assert p.conn is not None and 0 <= p.conn < connections
        if p.on_open:
            assert p.kind.level is FaultLevel.CONNECTION and p.at_ns == 0


@given(fault_plans())
def test_plans_are_sorted_and_within_the_default_bounds(plan: FlatPlan) -> None:
    check_plan(plan)


@given(
    fault_plans(
        kinds=[K.THROTTLE, K.REJECT, K.DROP],
        connections=1,
        max_faults=8,
        min_faults=2,
        horizon="2s",
        step="250ms",
    )
)
def test_plans_are_sorted_and_within_the_bounds_given(plan: FlatPlan) -> None:
    assert len(plan) >= 2
    check_plan(
        plan,
        kinds=(K.THROTTLE, K.DROP, K.REJECT),
        connections=1,
        max_faults=8,
        horizon=2 * S,
        step=250 * MS,
    )


@given(fault_plans(horizon=7, step=3))
def test_a_horizon_of_a_few_steps_gives_times_before_it(plan: FlatPlan) -> None:
    assert {p.at_ns for p in plan} <= {0, 3, 6}


@given(fault_plans(min_faults=1))
def test_a_drawn_plan_reads_back_from_its_toml(plan: FlatPlan) -> None:
    assert from_faults(parse_faults(to_toml(plan), []).faults) == plan


def test_a_plan_that_fails_when_it_holds_a_reset_shrinks_to_one_reset_at_0() -> None:
    minimal = find(
        fault_plans(), lambda plan: any(p.kind is K.RESET for p in plan), settings=NO_DATABASE
    )
    assert minimal == (PlannedFault(0, K.RESET, conn=0),)


@pytest.mark.parametrize(
    ("fails", "minimal"),
    [
        (
            lambda plan: any(p.kind is K.REJECT for p in plan),
            (PlannedFault(0, K.REJECT, duration_ns=MS, params=(("status", 503),)),),
        ),
        (
            lambda plan: any(p.kind is K.THROTTLE for p in plan),
            (PlannedFault(0, K.THROTTLE, conn=0, duration_ns=MS, params=(("bytes_per_s", 1e3),)),),
        ),
        (
            # (conn None is a server-wide fault, not a connection: not counted)
            lambda plan: len({p.conn for p in plan if p.conn is not None}) >= 2,
            (PlannedFault(0, K.RESET, conn=0), PlannedFault(0, K.RESET, conn=1)),
        ),
        (
            lambda plan: any(p.at_ns >= 2 * S for p in plan),
            (PlannedFault(2 * S, K.RESET, conn=0),),
        ),
        (
            lambda plan: any((p.duration_ns or 0) > S for p in plan),
            (PlannedFault(0, K.STALL, conn=0, duration_ns=S + MS),),
        ),
        (
            lambda plan: sum(p.on_open for p in plan) >= 2,
            (
                PlannedFault(0, K.RESET, conn=0, on_open=True),
                PlannedFault(0, K.RESET, conn=0, on_open=True),
            ),
        ),
    ],
    ids=["a-reject", "a-throttle", "two-connections", "late", "long", "on-open"],
)
def test_plans_shrink_to_fewer_earlier_shorter_simpler_faults(
    fails: Any, minimal: FlatPlan
) -> None:
    """The simplest kind that fails, at 0, on connection 0, one step long, parameters at
    their defaults (status 503, 1000 bytes/s)."""
    assert find(fault_plans(), fails, settings=NO_DATABASE) == minimal


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": []}, "kinds=[]: must be a non-empty subset of"),
        ({"kinds": [K.DELAY]}, "kinds=[<FaultKind.DELAY: 'delay'>]: must be a non-empty subset"),
        ({"kinds": K.RESET}, "must be a sequence of kinds"),
        ({"connections": 0}, "connections=0: must be an integer >= 1"),
        ({"max_faults": -1}, "Cannot have max_faults=-1 < min_faults=0"),
        ({"min_faults": 3, "max_faults": 2}, "Cannot have max_faults=2 < min_faults=3"),
        ({"min_faults": -1}, "min_faults=-1: must be an integer >= 0"),
        ({"horizon": "soon"}, "horizon='soon': 'soon' is not a duration like"),
        ({"horizon": 0}, "horizon=0: must be > 0"),
        ({"step": 1.5}, "step=1.5: must be ns (an int) or a duration like '30s'"),
        ({"step": "2m", "horizon": "1m"}, "step='2m' is longer than horizon='1m'"),
    ],
)
def test_bad_arguments_are_refused_when_the_strategy_is_made(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        fault_plans(**kwargs)
    assert message in str(info.value)


# ----------------------------------------------------------------------------- schedules


def as_stream(schedule: Schedule) -> str:
    lines = "\n".join(_schedule_lines(schedule))
    return f'[scenario]\nname = "x"\n\n[[stream]]\nname = "s"\n{lines}\n'


@given(schedules())
def test_schedules_are_valid_streams(schedule: Schedule) -> None:
    """Written as a [[stream]], a schedule is accepted and read back as itself."""
    assert parse_scenario(as_stream(schedule)).streams[0].schedule == schedule


@given(schedules(max_interval="50ms"))
def test_schedules_keep_to_the_longest_interval(schedule: Schedule) -> None:
    p = schedule.pattern
    if isinstance(p, Every):
        assert p.interval_ns <= 50 * MS
    elif isinstance(p, UniformInterval):
        assert p.max_ns <= 50 * MS
    elif isinstance(p, Poisson):
        assert p.rate_per_s >= 20
    assert parse_scenario(as_stream(schedule)).streams[0].schedule == schedule


@pytest.mark.parametrize("pattern", [Every, UniformInterval, Poisson, At, Burst])
def test_every_kind_of_schedule_is_drawn(pattern: type) -> None:
    find(schedules(), lambda s: isinstance(s.pattern, pattern), settings=NO_DATABASE)


def test_bad_max_interval_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="max_interval='10us': must be at least 1ms"):
        schedules(max_interval="10us")


# ----------------------------------------------------------------------------- scenarios


@settings(max_examples=50)
@given(scenarios())
def test_scenarios_are_valid_and_render(scenario: Scenario) -> None:
    assert 1 <= len(scenario.streams) <= 3
    assert [s.name for s in scenario.streams] == [f"s{i}" for i in range(len(scenario.streams))]
    assert all(len(s.fields.fields) <= 3 for s in scenario.streams)
    assert scenario.faults == ()
    Timeline(scenario).take_until(10 * S)  # a scenario that runs, not just one that parses


@settings(max_examples=50)
@given(scenarios(streams=1, faults=fault_plans(connections=2)))
def test_scenarios_carry_the_faults_of_a_drawn_plan(scenario: Scenario) -> None:
    assert len(scenario.streams) == 1
    plan = from_faults(scenario.faults)
    assert to_faults(plan) == scenario.faults
    check_plan(plan, connections=2)


def test_bad_streams_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="streams=0: must be an integer >= 1"):
        scenarios(streams=0)


@given(st.data())
def test_every_strategy_is_callable_without_arguments(data: st.DataObject) -> None:
    assert isinstance(data.draw(fault_plans()), tuple)
    assert isinstance(data.draw(schedules()), Schedule)
    assert isinstance(data.draw(scenarios()), Scenario)


# ----------------------------------------------------------------------------- the report


def test_the_report_shows_the_plan_its_toml_and_how_to_rerun_it() -> None:
    plan = (
        PlannedFault(0, K.RESET, conn=0),
        PlannedFault(1500 * MS, K.OUTAGE, duration_ns=2 * S),
    )
    report = plan_report(plan, 7)
    assert report.splitlines()[:4] == [
        "fault plan: 2 faults, scenario seed 7",
        "  #  at    kind    conn  duration  params",
        "  0  0s    reset   0     -",
        "  1  1.5s  outage  -     2s",
    ]
    assert "sim plan SCENARIO --flat" in report
    assert "sim run SCENARIO --seed 7" in report
    toml = report[report.index("\n[[fault]]\n") : report.index("\n\nTo run it again")]
    assert from_faults(parse_faults(toml, []).faults) == plan


@given(fault_plans(min_faults=1), st.integers(0, 2**63 - 1))
def test_the_report_s_toml_is_the_plan(plan: FlatPlan, seed: int) -> None:
    report = plan_report(plan, seed)
    toml = report[report.index("\n[[fault]]\n") : report.index("\n\nTo run it again")]
    assert from_faults(parse_faults(toml, []).faults) == plan
    assert f"--seed {seed} " in report


def test_the_report_of_an_empty_plan_says_so() -> None:
    report = plan_report((), 3)
    assert report.startswith("fault plan: no faults, scenario seed 3\n")
    assert "sim run SCENARIO --seed 3" in report
    assert "[[fault]]" not in report
