"""Flat fault plans: round trips through Fault values and ``[[fault]]`` TOML, the
canonical form of parameters, what is refused (naming the field or the fault), and
``sim plan --flat`` / ``--toml``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.core.durations import parse_duration
from simulator.core.faults import FaultPlan, Handshakes, server_schedule
from simulator.core.flat_plan import (
    FLAT_KINDS,
    FlatPlan,
    PlannedFault,
    duration_text,
    from_fault,
    from_faults,
    plan_table,
    to_faults,
    to_toml,
)
from simulator.core.model import ConnectionList, FaultKind
from simulator.scenario import parse_faults, parse_scenario
from simulator.testing.strategies import fault_plans

S = 1_000_000_000
MS = 1_000_000
K = FaultKind

HEAD = """\
[scenario]
name = "flat"
seed = 3

[[stream]]
name = "tick"
every = "100ms"
"""

# Plans on a millisecond grid (readable TOML) and on a nanosecond one (every digit).
PLANS = st.one_of(
    fault_plans(max_faults=6),
    fault_plans(max_faults=6, step=1, horizon=10**15),
)


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=200)
@given(plan=PLANS)
def test_toml_reads_back_as_the_same_faults_and_the_same_plan(plan: FlatPlan) -> None:
    """As a faults file (``sim replay --faults``), which needs at least one table."""
    assume(plan)
    parsed = parse_faults(to_toml(plan), ["tick"]).faults
    assert parsed == to_faults(plan)
    assert from_faults(parsed) == plan


@settings(max_examples=100)
@given(plan=PLANS)
def test_toml_appended_to_a_scenario_makes_its_faults(plan: FlatPlan) -> None:
    """What ``sim run`` and ``sim plan`` read: the scenario file with the tables at its end."""
    scenario = parse_scenario(HEAD + "\n" + to_toml(plan))
    assert scenario.faults == to_faults(plan)


@given(plan=PLANS)
def test_faults_read_back_as_the_plan(plan: FlatPlan) -> None:
    assert from_faults(to_faults(plan)) == plan


@given(plan=PLANS)
def test_each_fault_is_named_by_its_place_and_kind_and_hits_one_connection(
    plan: FlatPlan,
) -> None:
    for i, (p, fault) in enumerate(zip(plan, to_faults(plan), strict=True)):
        assert fault.name == f"p{i}-{p.kind.value}"
        assert fault.kind is p.kind
        chosen = fault.target.connections
        if p.conn is None:
            assert chosen is None
        else:
            assert isinstance(chosen, ConnectionList) and chosen.indexes == (p.conn,)


def test_an_empty_plan_is_no_tables() -> None:
    assert to_toml(()) == ""
    assert to_faults(()) == ()
    assert from_faults(()) == ()


def test_toml_is_readable() -> None:
    plan = (
        PlannedFault(1500 * MS, K.DISCONNECT, conn=2, params=(("code", 1012), ("reason", "bye"))),
        PlannedFault(90 * S, K.OUTAGE, duration_ns=250 * MS, params=(("retry_after_ns", 5 * S),)),
        PlannedFault(0, K.THROTTLE, conn=0, params=(("bytes_per_s", 2048),)),
    )
    assert to_toml(plan) == textwrap.dedent(
        """\
        [[fault]]
        name = "p0-disconnect"
        kind = "disconnect"
        at = "1.5s"
        connections = [2]
        code = 1012
        reason = "bye"

        [[fault]]
        name = "p1-outage"
        kind = "outage"
        at = "1m30s"
        duration = "250ms"
        retry_after = "5s"

        [[fault]]
        name = "p2-throttle"
        kind = "throttle"
        at = "0s"
        connections = [0]
        bytes_per_s = 2048.0
        """
    )


def test_reasons_with_quotes_controls_and_del_survive_toml() -> None:
    reason = 'a "b" \\ \t\n\x00\x7f é'
    plan = (PlannedFault(0, K.DISCONNECT, conn=0, params=(("reason", reason),)),)
    [fault] = parse_faults(to_toml(plan), []).faults
    assert from_fault(fault).param("reason") == reason


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (250 * MS, "250ms"),
        (1500 * MS, "1.5s"),
        (61_250 * MS, "61.25s"),
        (90 * S, "1m30s"),
        (1_000_001, "1000001ns"),
        (S + 1, "1000000001ns"),
    ],
)
def test_durations_are_written_exactly_and_readably(ns: int, text: str) -> None:
    assert duration_text(ns) == text
    assert parse_duration(text) == ns


@given(st.integers(0, 10**16))
def test_every_duration_reads_back(ns: int) -> None:
    assert parse_duration(duration_text(ns)) == ns


# ----------------------------------------------------------------------------- canonical form


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (dict(kind=K.DISCONNECT, conn=0, params=(("code", 1000), ("reason", ""))), ()),
        (dict(kind=K.DISCONNECT, conn=0, params=(("reason", "x"), ("code", 4000))),
         (("code", 4000), ("reason", "x"))),
        (dict(kind=K.MASS_DISCONNECT, params=(("code", 1001),)), ()),
        (dict(kind=K.MASS_DISCONNECT, params=(("code", 1000),)), (("code", 1000),)),
        (dict(kind=K.THROTTLE, conn=0, params=(("bytes_per_s", 10),)), (("bytes_per_s", 10.0),)),
        (dict(kind=K.DUPLICATE, conn=0, duration_ns=S, params=(("copies", 1),)), ()),
        (dict(kind=K.OUTAGE, duration_ns=S, params=(("retry_after_ns", S),)), ()),
        (dict(kind=K.OUTAGE, duration_ns=S, params=(("retry_after_ns", 0),)),
         (("retry_after_ns", 0),)),
        (dict(kind=K.REJECT, params=(("retry_after_ns", 0), ("status", 429))),
         (("status", 429), ("retry_after_ns", 0))),
    ],
)  # fmt: skip
def test_params_are_kept_in_one_form(given: dict[str, Any], canonical: tuple[Any, ...]) -> None:
    """Defaults are left out and keys put in order, so faults that do the same are equal."""
    assert PlannedFault(0, **given).params == canonical


def test_param_gives_the_default_when_left_out() -> None:
    outage = PlannedFault(0, K.OUTAGE, duration_ns=3 * S)
    assert outage.param("retry_after_ns") == 3 * S
    assert PlannedFault(0, K.MASS_DISCONNECT).param("code") == 1001
    assert PlannedFault(0, K.REJECT, params=(("status", 401),)).param("retry_after_ns") is None
    with pytest.raises(KeyError, match="'copies' is not a parameter of kind 'reset'"):
        PlannedFault(0, K.RESET, conn=0).param("copies")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(kind=K.DELAY, conn=0), "kind=<FaultKind.DELAY: 'delay'>: must be one of reset,"),
        (dict(kind="reset", conn=0), "kind='reset': must be one of"),
        (dict(at_ns=-1, kind=K.RESET, conn=0), "at_ns=-1: must be an integer >= 0"),
        (dict(at_ns=1.5, kind=K.RESET, conn=0), "at_ns=1.5: must be an integer >= 0"),
        (dict(kind=K.RESET), "conn=None: kind 'reset' needs a connection index >= 0"),
        (dict(kind=K.DROP, conn=-1), "conn=-1: kind 'drop' needs a connection index"),
        (dict(kind=K.OUTAGE, conn=0, duration_ns=S), "conn=0: must be None for kind 'outage'"),
        (dict(kind=K.OUTAGE), "duration_ns=None: required for kind 'outage'"),
        (dict(kind=K.RESET, conn=0, duration_ns=S), "duration_ns=1000000000: must be None"),
        (dict(kind=K.STALL, conn=0, duration_ns=0), "duration_ns=0: must be an integer > 0"),
        (
            dict(kind=K.DROP, conn=0, on_open=True),
            "on_open=True: not for kind 'drop' (only reset, disconnect, stall, throttle)",
        ),
        (dict(kind=K.OUTAGE, duration_ns=S, on_open=True), "not for kind 'outage'"),
        (dict(at_ns=S, kind=K.RESET, conn=0, on_open=True), "must be 0 with on_open=True"),
        (dict(kind=K.RESET, conn=0, on_open=1), "on_open=1: must be True or False"),
        (
            dict(kind=K.RESET, conn=0, params=(("code", 1000),)),
            "'code' is not a parameter of kind 'reset' (its parameters: none)",
        ),
        (
            dict(kind=K.DISCONNECT, conn=0, params=(("code", 1005),)),
            "code=1005: must be a close code",
        ),
        (
            dict(kind=K.DISCONNECT, conn=0, params=(("code", 1000), ("code", 1001))),
            "'code' given twice",
        ),
        (dict(kind=K.DISCONNECT, conn=0, params=(("reason", "é" * 62),)), "at most 123 bytes"),
        (dict(kind=K.DISCONNECT, conn=0, params=("code",)), "'code' is not a (name, value) pair"),
        (dict(kind=K.THROTTLE, conn=0), "'bytes_per_s' is required for kind 'throttle'"),
        (
            dict(kind=K.THROTTLE, conn=0, params=(("bytes_per_s", float("inf")),)),
            "must be a finite number > 0",
        ),
        (
            dict(kind=K.THROTTLE, conn=0, params=(("bytes_per_s", True),)),
            "must be a finite number > 0",
        ),
        (
            dict(kind=K.DUPLICATE, conn=0, params=(("copies", 11),)),
            "copies=11: must be an integer from 1 to 10",
        ),
        (dict(kind=K.REJECT), "'status' is required for kind 'reject'"),
        (
            dict(kind=K.REJECT, params=(("status", 500),)),
            "status=500: must be one of 401, 403, 429, 503",
        ),
        (
            dict(kind=K.REJECT, params=(("status", 401), ("retry_after_ns", 1))),
            "'retry_after_ns' only with status 429 or 503, not 401",
        ),
        (
            dict(kind=K.OUTAGE, duration_ns=S, params=(("retry_after_ns", -1),)),
            "retry_after_ns=-1: must be an integer >= 0",
        ),
    ],
)  # fmt: skip
def test_a_fault_the_loader_would_refuse_is_refused_when_made(
    fields: dict[str, Any], message: str
) -> None:
    fields.setdefault("at_ns", 0)
    with pytest.raises(ValueError, match=r"^PlannedFault") as info:
        PlannedFault(**fields)
    assert message in str(info.value)


# ----------------------------------------------------------------------------- from faults


@pytest.mark.parametrize(
    ("table", "why"),
    [
        (
            'kind = "delay"\nlatency = "1s"\nat = "1s"',
            "kind 'delay' has no flat form (flat kinds: reset, disconnect,",
        ),
        (
            'kind = "drop"\nconnections = [0]',
            "no schedule: a flat drop happens at one 'at' time"
            " (only connection kinds may happen on open)",
        ),
        (
            'kind = "reset"\nevery = "1s"\nconnections = [0]',
            "'every': a flat fault happens at one 'at' time",
        ),
        ('kind = "reset"\npoisson = "1s"\nconnections = [0]', "'poisson': a flat fault"),
        (
            'kind = "stall"\nwindow = { end = "1s" }\nconnections = [0]',
            "a window (for this kind it also hits connections that open inside it)",
        ),
        (
            'kind = "reset"\nat = "1s"\nlimit = 1\nconnections = [0]',
            "limit = 1: a flat fault happens once",
        ),
        (
            'kind = "reset"\nat = "1s"',
            "a flat fault targets exactly one connection: connections = [i]",
        ),
        ('kind = "reset"\nat = "1s"\nconnections = [0, 1]', "exactly one connection"),
        ('kind = "reset"\nat = "1s"\nconnections = { every = 2 }', "exactly one connection"),
        (
            'kind = "reset"\nat = "1s"\nconnections = [1]\nafter_connections = 1',
            "after_connections: a flat fault hits every message of one connection",
        ),
        (
            'kind = "drop"\nat = "1s"\nconnections = [0]\nprobability = 0.5',
            "probability: a flat fault",
        ),
        (
            'kind = "drop"\nat = "1s"\nconnections = [0]\nstreams = ["tick"]',
            "streams: a flat fault",
        ),
        ('kind = "drop"\nat = "1s"\nconnections = [0]\nevery_nth = 2', "every_nth: a flat fault"),
        ('kind = "drop"\nat = "1s"\nconnections = [0]\nmatch = { seq = 1 }', "match: a flat fault"),
        (
            'kind = "reject"\nat = "1s"\ndelay = "1s"',
            "a reject that delays handshakes (flat rejects refuse them)",
        ),
        (
            'kind = "reject"\nat = "1s"\nstatus = 401\nafter_connections = 2',
            "after_connections: a flat fault",
        ),
        (
            'kind = "outage"\nat = "1s"\nduration = "1s"\nrespond = "close"',
            "respond = 'close' (flat outages and rejects answer in HTTP)",
        ),
        ('kind = "reject"\nat = "1s"\nstatus = 401\nrespond = "close"', "respond = 'close'"),
    ],
)  # fmt: skip
def test_a_fault_of_another_shape_is_refused_by_name(table: str, why: str) -> None:
    [fault] = parse_faults(f'[[fault]]\nname = "odd"\n{table}\n', ["tick"]).faults
    with pytest.raises(ValueError) as info:
        from_faults([fault])
    assert str(info.value).startswith("fault 'odd': ")
    assert why in str(info.value)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('kind = "drop"\nwindow = { start = "1s", end = "2.5s" }\nconnections = [3]',
         PlannedFault(S, K.DROP, conn=3, duration_ns=1500 * MS)),
        ('kind = "duplicate"\nwindow = { end = "2s" }\nconnections = [0]\ncopies = 2',
         PlannedFault(0, K.DUPLICATE, conn=0, duration_ns=2 * S, params=(("copies", 2),))),
        ('kind = "outage"\nwindow = { start = "10s", end = "30s" }',
         PlannedFault(10 * S, K.OUTAGE, duration_ns=20 * S)),
        ('kind = "reject"\nwindow = { start = "1s", end = "2s" }\nstatus = 429\nretry_after = "5s"',
         PlannedFault(
             S, K.REJECT, duration_ns=S, params=(("status", 429), ("retry_after_ns", 5 * S))
         )),
        ('kind = "stall"\nat = "1s"\nconnections = [0]\nduration = "forever"',
         PlannedFault(S, K.STALL, conn=0)),
        ('kind = "reset"\nconnections = [2]',
         PlannedFault(0, K.RESET, conn=2, on_open=True)),
        ('kind = "stall"\nconnections = [0]\nduration = "2s"',
         PlannedFault(0, K.STALL, conn=0, duration_ns=2 * S, on_open=True)),
    ],
)  # fmt: skip
def test_a_window_is_read_as_at_and_duration_where_it_means_the_same(
    table: str, expected: PlannedFault
) -> None:
    [fault] = parse_faults(f"[[fault]]\n{table}\n", ["tick"]).faults
    assert from_fault(fault) == expected


def test_an_outage_or_reject_window_is_planned_as_its_flat_form() -> None:
    """The planner's server events and handshake answers are the same for the window and
    for ``at`` + ``duration`` (so reading a window as flat changes nothing)."""
    text = textwrap.dedent(
        """\
        [[fault]]
        name = "down"
        kind = "outage"
        window = { start = "1s", end = "2s" }

        [[fault]]
        name = "full"
        kind = "reject"
        status = 429
        window = { start = "2500ms", end = "3s" }
        """
    )
    windows = parse_faults(text, []).faults
    flat = to_faults(from_faults(windows))
    renamed = tuple(
        type(f)(w.name, f.action, f.schedule, f.target) for w, f in zip(windows, flat, strict=True)
    )
    assert server_schedule(FaultPlan(windows, 1), 10 * S) == server_schedule(
        FaultPlan(renamed, 1), 10 * S
    )
    times = range(0, 4 * S, 125 * MS)
    window_answers = Handshakes(FaultPlan(windows, 1))
    flat_answers = Handshakes(FaultPlan(renamed, 1))
    assert [window_answers.decide(t) for t in times] == [flat_answers.decide(t) for t in times]


def test_the_table_shows_each_fault_on_a_line() -> None:
    plan = (
        PlannedFault(0, K.RESET, conn=0),
        PlannedFault(0, K.DISCONNECT, conn=2, params=(("code", 4000),), on_open=True),
        PlannedFault(1500 * MS, K.OUTAGE, duration_ns=2 * S, params=(("retry_after_ns", S),)),
        PlannedFault(2 * S, K.STALL, conn=1),
    )
    assert plan_table(plan) == [
        "#  at    kind        conn  duration  params",
        "0  0s    reset       0     -",
        "1  open  disconnect  2     -         code=4000",
        "2  1.5s  outage      -     2s        retry_after=1s",
        "3  2s    stall       1     forever",
    ]


def test_a_fault_on_open_is_a_table_with_no_schedule() -> None:
    """No ``at``: the loader reads it as happening when the connection opens."""
    plan = (PlannedFault(0, K.STALL, conn=3, duration_ns=1500 * MS, on_open=True),)
    assert to_toml(plan) == textwrap.dedent(
        """\
        [[fault]]
        name = "p0-stall"
        kind = "stall"
        duration = "1.5s"
        connections = [3]
        """
    )
    assert plan[0].end_ns is None  # its duration counts from the open, not from 0


def test_flat_kinds_are_listed_simplest_first() -> None:
    assert FLAT_KINDS[0] is K.RESET
    assert set(FLAT_KINDS) == set(K) - {K.DELAY, K.REORDER, K.CORRUPT, K.BURST_LOSS}


# ----------------------------------------------------------------------------- sim plan


SCENARIO = HEAD + textwrap.dedent(
    """
    [[fault]]
    name = "lossy"
    kind = "drop"
    probability = 0.02

    [[fault]]
    name = "kick"
    kind = "disconnect"
    at = "3s"
    connections = [1]
    code = 4000

    [[fault]]
    name = "maintenance"
    kind = "outage"
    window = { start = "8s", end = "9.5s" }
    """
)


def sim_plan(tmp_path: Path, *args: str, text: str = SCENARIO) -> Any:
    from simulator.cli.scenario_commands import plan

    path = tmp_path / "s.toml"
    path.write_text(text)
    return CliRunner().invoke(plan, [str(path), *args])


def test_sim_plan_flat_prints_the_table_and_the_toml(tmp_path: Path) -> None:
    result = sim_plan(tmp_path, "--flat")
    assert result.exit_code == 0, result.output
    head, toml = result.output.split("\n\n", 1)
    assert head.splitlines() == [
        "flat plan of 'flat': 2 of 3 faults",
        "  #  at  kind        conn  duration  params",
        "  0  3s  disconnect  1     -         code=4000",
        "  1  8s  outage      -     1.5s",
        "  (#0 is 'kick', #1 is 'maintenance')",
        "left out (not of the flat shape):",
        "  fault 'lossy': no schedule: a flat drop happens at one 'at' time"
        " (only connection kinds may happen on open)",
    ]
    assert toml == to_toml(from_faults(parse_scenario(SCENARIO).faults[1:]))


def test_sim_plan_toml_prints_tables_that_sim_plan_reads_back(tmp_path: Path) -> None:
    """Only the tables on stdout (what is left out on stderr): a scenario with them at
    its end gives the same tables again."""
    result = sim_plan(tmp_path, "--toml")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("left out: fault 'lossy': no schedule")
    assert result.stdout.startswith("[[fault]]")
    again = sim_plan(tmp_path, "--toml", text=HEAD + "\n" + result.stdout)
    assert (again.stdout, again.stderr) == (result.stdout, "")


def test_sim_plan_without_flat_is_unchanged(tmp_path: Path) -> None:
    result = sim_plan(tmp_path, "--duration", "10s")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("fault plan of 'flat', seed 3: 10s of scenario time")


def test_sim_plan_flat_and_toml_together_is_a_usage_error(tmp_path: Path) -> None:
    result = sim_plan(tmp_path, "--flat", "--toml")
    assert result.exit_code == 2
    assert "--flat and --toml: give one" in result.output
