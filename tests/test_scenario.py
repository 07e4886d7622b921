"""The TOML scenario loader: what it builds, and what it says when a file is wrong."""

from __future__ import annotations

import json
import os
import textwrap
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.core.draws import Draws
from simulator.core.model import (
    NEVER_LATE_NS,
    At,
    Bool,
    Burst,
    Choice,
    Const,
    Counter,
    Cycle,
    Envelope,
    Every,
    Exponential,
    ListOf,
    LogNormal,
    Mode,
    Normal,
    Numeric,
    Object,
    Poisson,
    Protocol,
    RandInt,
    Rule,
    Scenario,
    Schedule,
    Server,
    Slot,
    SlowConsumerPolicy,
    Stream,
    Template,
    TimeFormat,
    Timestamp,
    Timing,
    Uniform,
    UniformInterval,
    Uuid,
    Walk,
)
from simulator.core.schedules import ScheduleCursor
from simulator.errors import Problem, ScenarioError
from simulator.scenario import (
    MAX_RATE_PER_S,
    load_scenario,
    mean_rate_per_s,
    parse_scenario,
)
from simulator.scenario.lines import LineIndex
from simulator.scenario.messages import SHOW_LIMIT, show

HEAD = '[scenario]\nname = "t"\n'  # two lines: streams appended below start on line 3


def toml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def stream(body: str) -> str:
    """A valid [scenario] (lines 1-2), then ``[[stream]]`` on line 3 and ``body`` from line 4."""
    return HEAD + "[[stream]]\n" + toml(body)


def fields(body: str) -> str:
    """A valid stream whose ``[stream.fields]`` table is ``body``, from line 7."""
    return stream('name = "s"\nevery = "1s"\n[stream.fields]\n' + toml(body))


def problems(text: str | bytes) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.toml")
    return info.value.problems


def problems_of(text: str | bytes) -> list[str]:
    """The error as the user reads it: one line per problem."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.toml")
    return str(info.value).splitlines()


# ============================================================================ invalid input

INVALID: list[tuple[str, str | bytes, str]] = [
    # -- not a scenario at all
    (
        "not_toml",
        '[scenario\nname = "x"\n',
        "x.toml:1: invalid TOML: Expected ']' at the end of a table declaration",
    ),
    (
        "toml_error_on_a_later_line",
        stream('name = "s"\nevery = "1s"\nevery = "2s"\n'),
        "x.toml:6: invalid TOML: Cannot overwrite a value",
    ),
    (
        "empty_file",
        "",
        "x.toml: empty scenario: needs a [scenario] table and at least one [[stream]]",
    ),
    (
        "comments_only",
        "# nothing yet\n\n   \n",
        "x.toml: empty scenario: needs a [scenario] table and at least one [[stream]]",
    ),
    (
        "binary_garbage",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "x.toml: not a text file (binary data at byte 0)",
    ),
    (
        "nul_byte_in_text",
        b'[scenario]\nname = "a\x00"\n',
        "x.toml: not a text file (binary data at byte 20)",
    ),
    (
        "number_with_thousands_of_digits",
        HEAD + "seed = " + "9" * 5000 + "\n",
        "x.toml:3: invalid TOML: a number has too many digits",
    ),
    # -- top level
    (
        "unknown_top_level_table",
        stream('name = "s"\nevery = "1s"\n') + '[[faults]]\nkind = "drop"\n',
        "x.toml:6: faults: unknown table; did you mean 'fault'? "
        "(allowed: scenario, server, envelope, protocol, stream, fault)",
    ),
    (
        "scenario_key_outside_its_table",
        'name = "t"\n[scenario]\nname = "t"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:1: name: not inside a table; did you mean to put it under [scenario]?",
    ),
    (
        "missing_scenario_table",
        '[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml: scenario: missing: required (a [scenario] table with at least a name)",
    ),
    (
        "missing_streams",
        HEAD,
        "x.toml: stream: missing: required (at least one [[stream]])",
    ),
    (
        "single_stream_table",
        HEAD + '[stream]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: stream: a single [stream] table: write [[stream]] for each stream",
    ),
    # -- [scenario]
    (
        "empty_scenario_name",
        '[scenario]\nname = ""\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:2: scenario.name = '': must not be empty",
    ),
    (
        "negative_seed",
        HEAD + "seed = -1\n[[stream]]\nname = \"s\"\nevery = '1s'\n",
        "x.toml:3: scenario.seed = -1: must be an integer from 0 to 2**63-1",
    ),
    (
        "seed_of_wrong_type",
        HEAD + 'seed = "42"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.seed = '42': must be an integer",
    ),
    (
        "integer_too_big_to_print",
        HEAD + "seed = 0x" + "f" * 4000 + '\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.seed = 0x" + "f" * 57 + "…: must fit in 64 bits",
    ),
    (
        "naive_epoch",
        HEAD + 'epoch = "2026-01-01T00:00:00"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.epoch = '2026-01-01T00:00:00': has no UTC offset:"
        " add 'Z' or an offset like '+01:00'",
    ),
    (
        "naive_toml_datetime_epoch",
        HEAD + "epoch = 2026-01-01T00:00:00\n[[stream]]\nname = \"s\"\nevery = '1s'\n",
        "x.toml:3: scenario.epoch = 2026-01-01T00:00:00: has no UTC offset:"
        " add 'Z' or an offset like '+01:00'",
    ),
    (
        "malformed_epoch",
        HEAD + 'epoch = "yesterday"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.epoch = 'yesterday': must be an ISO 8601 date-time with offset,"
        " like '2026-01-01T00:00:00Z'",
    ),
    (
        "negative_duration",
        HEAD + 'duration = "-5m"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.duration = '-5m': must be > 0",
    ),
    (
        "malformed_duration",
        HEAD + 'duration = "10 minutes"\n[[stream]]\nname = "s"\nevery = "1s"\n',
        "x.toml:3: scenario.duration = '10 minutes': must be a duration like '250ms', '5s',"
        " '2m', '1h30m' (units ns, us, ms, s, m, h, d)",
    ),
    # -- [[stream]] and schedules
    (
        "unknown_stream_key",
        stream('name = "s"\nevry = "5s"\n'),
        "x.toml:5: stream[0].evry: unknown key; did you mean 'every'? (allowed: name, type,"
        " every, rate, at, burst, repeat, start, stop, first, envelope, fields, max_lateness)",
    ),
    (
        "stream_name_of_wrong_type",
        stream('name = 5\nevery = "1s"\n'),
        "x.toml:4: stream[0].name = 5: must be a string",
    ),
    (
        "stream_name_with_spaces",
        stream('name = "cpu load"\nevery = "1s"\n'),
        "x.toml:4: stream[0].name = 'cpu load': must be letters, digits, '_', '.', ':' or '-'",
    ),
    (
        "duplicate_stream_names",
        stream('name = "s"\nevery = "1s"\n[[stream]]\nname = "s"\nrate = 1\n'),
        "x.toml:7: stream[1].name = 's': already the name of stream[0]:"
        " stream names must be unique",
    ),
    (
        "no_schedule",
        stream('name = "s"\n'),
        "x.toml:3: stream[0]: no schedule: needs one of every, rate, at or burst",
    ),
    (
        "two_schedules",
        stream('name = "s"\nevery = "1s"\nrate = 2\n'),
        "x.toml:6: stream[0].rate: together with 'every': a stream has exactly one schedule",
    ),
    (
        "duration_without_unit",
        stream('name = "s"\nevery = 5\n'),
        "x.toml:5: stream[0].every = 5: a duration needs a unit, like '5s'",
    ),
    (
        "zero_interval",
        stream('name = "s"\nevery = "0s"\n'),
        "x.toml:5: stream[0].every = '0s': must be > 0",
    ),
    (
        "interval_min_above_max",
        stream('name = "s"\nevery = { min = "30s", max = "15s" }\n'),
        "x.toml:5: stream[0].every.min = '30s': must be <= max ('15s')",
    ),
    (
        "absurd_interval",
        stream('name = "s"\nevery = "5us"\n'),
        "x.toml:5: stream[0].every = '5us': 200000 msg/s"
        " would exceed what can be served (max 100000 msg/s per stream)",
    ),
    (
        "absurd_poisson_rate",
        stream('name = "s"\nrate = 1e6\n'),
        "x.toml:5: stream[0].rate = 1000000.0: 1000000 msg/s"
        " would exceed what can be served (max 100000 msg/s per stream)",
    ),
    (
        "absurd_burst",
        stream('name = "s"\nburst = { count = 1000, every = "1ms" }\n'),
        "x.toml:5: stream[0].burst = { count = 1000, every = '1ms' }: 1000000 msg/s"
        " would exceed what can be served (max 100000 msg/s per stream)",
    ),
    (
        "nan_rate",
        stream('name = "s"\nrate = nan\n'),
        "x.toml:5: stream[0].rate = nan: must be a finite number",
    ),
    (
        "overlapping_bursts",
        stream('name = "s"\nburst = { count = 5, spacing = "1s", every = "2s" }\n'),
        "x.toml:5: stream[0].burst = { count = 5, spacing = '1s', every = '2s' }:"
        " 5 messages '1s' apart take longer than every ('2s'): bursts must not overlap",
    ),
    (
        "decreasing_offsets",
        stream('name = "s"\nat = ["1s", "3s", "2s"]\n'),
        "x.toml:5: stream[0].at[2] = '2s': must not be before at[1] ('3s')",
    ),
    (
        "repeat_shorter_than_offsets",
        stream('name = "s"\nat = ["1s", "3s"]\nrepeat = "2s"\n'),
        "x.toml:6: stream[0].repeat = '2s': must be longer than the last offset at[1] ('3s')",
    ),
    (
        "repeat_without_at",
        stream('name = "s"\nevery = "1s"\nrepeat = "2s"\n'),
        "x.toml:6: stream[0].repeat = '2s': only allowed with 'at'",
    ),
    (
        "first_with_at",
        stream('name = "s"\nat = ["1s", "2s"]\nfirst = "0s"\n'),
        "x.toml:6: stream[0].first = '0s': only allowed with every, rate or burst:"
        " 'at' gives each message its offset",
    ),
    (
        "negative_first",
        stream('name = "s"\nrate = 1\nfirst = "-1s"\n'),
        "x.toml:6: stream[0].first = '-1s': must be >= 0",
    ),
    (
        "stop_before_start",
        stream('name = "s"\nevery = "1s"\nstart = "5m"\nstop = "1m"\n'),
        "x.toml:7: stream[0].stop = '1m': must be after start ('5m')",
    ),
    # -- fields
    (
        "unknown_distribution",
        stream('name = "s"\nevery = "1s"\nfields.cpu = { dist = "normall", mean = 1, std = 2 }\n'),
        "x.toml:6: stream[0].fields.cpu.dist = 'normall': unknown distribution;"
        " did you mean 'normal'? (allowed: uniform, normal, lognormal, exponential, randint,"
        " bool, walk, counter, uuid, timestamp)",
    ),
    (
        "unknown_distribution_parameter",
        fields('cpu = { dist = "normal", mean = 1, sd = 2 }\n'),
        "x.toml:7: stream[0].fields.cpu.sd: unknown key; did you mean 'std'?"
        " (allowed: dist, mean, std, min, max, round, bounds)",
    ),
    (
        "negative_std",
        fields('cpu = { dist = "normal", mean = 1, std = -3 }\n'),
        "x.toml:7: stream[0].fields.cpu.std = -3: must be > 0",
    ),
    (
        "uniform_min_above_max",
        fields('x = { dist = "uniform", min = 5, max = 1 }\n'),
        "x.toml:7: stream[0].fields.x.min = 5: must be <= max (1)",
    ),
    (
        "randint_of_floats",
        fields('n = { dist = "randint", min = 0.5, max = 9 }\n'),
        "x.toml:7: stream[0].fields.n.min = 0.5: must be an integer",
    ),
    (
        "probability_above_one",
        fields('up = { dist = "bool", p = 1.5 }\n'),
        "x.toml:7: stream[0].fields.up.p = 1.5: must be between 0 and 1",
    ),
    (
        "round_out_of_range",
        fields('x = { dist = "exponential", mean = 2, round = 13 }\n'),
        "x.toml:7: stream[0].fields.x.round = 13: must be an integer from 0 to 12",
    ),
    (
        "walk_starting_outside_its_bounds",
        fields('p = { dist = "walk", start = 150, step = 1, max = 100 }\n'),
        "x.toml:7: stream[0].fields.p.start = 150: must be <= max (100)",
    ),
    (
        "unknown_time_format",
        fields('t = { dist = "timestamp", format = "isoo" }\n'),
        "x.toml:7: stream[0].fields.t.format = 'isoo': unknown format; did you mean 'iso'?"
        " (allowed: iso, ms, s)",
    ),
    (
        "weights_length_mismatch",
        fields('level = { choice = ["a", "b", "c"], weights = [1, 2] }\n'),
        "x.toml:7: stream[0].fields.level.weights = [1, 2]: 2 weights for 3 choices:"
        " needs one weight per choice",
    ),
    (
        "all_weights_zero",
        fields('level = { choice = ["a", "b"], weights = [0, 0.0] }\n'),
        "x.toml:7: stream[0].fields.level.weights = [0, 0.0]: must not all be 0",
    ),
    (
        "negative_weight",
        fields('level = { choice = ["a", "b"], weights = [1, -2] }\n'),
        "x.toml:7: stream[0].fields.level.weights[1] = -2: must be >= 0",
    ),
    (
        "empty_choice",
        fields("level = { choice = [] }\n"),
        "x.toml:7: stream[0].fields.level.choice = []: must be a non-empty array of values",
    ),
    (
        "template_naming_no_sibling",
        fields('amount = 5\nid = { template = "tx_{amout}" }\n'),
        "x.toml:8: stream[0].fields.id.template = 'tx_{amout}': {amout} is not a sibling field;"
        " did you mean {amount}? (allowed: {amount}, {seq}, {index})",
    ),
    (
        "template_with_format_spec",
        fields('id = { template = "tx_{seq:05d}" }\n'),
        "x.toml:7: stream[0].fields.id.template = 'tx_{seq:05d}':"
        " format specs and conversions are not supported: write {name}",
    ),
    (
        "list_too_long",
        fields("xs = { list = 20000, item = 1 }\n"),
        "x.toml:7: stream[0].fields.xs.list = 20000: must be an integer from 0 to 10000",
    ),
    (
        "list_without_item",
        fields("xs = { list = { min = 1, max = 3 } }\n"),
        "x.toml:7: stream[0].fields.xs.item: missing:"
        " required (the field each list item is drawn from)",
    ),
    (
        "misspelt_generator_key",
        fields('cpu = { dsit = "normal", mean = 1 }\n'),
        "x.toml:7: stream[0].fields.cpu.dsit: unknown key; did you mean 'dist'?"
        " (for a field called 'dsit', write dsit = { const = ... })",
    ),
    (
        "two_generators_in_one_field",
        fields("x = { choice = [1], cycle = [2] }\n"),
        "x.toml:7: stream[0].fields.x.cycle: together with 'choice': a field has one generator"
        " (one of dist, choice, cycle, const, template, list, expr, live)",
    ),
    (
        "infinite_constant",
        fields("x = [1.0, inf]\n"),
        "x.toml:7: stream[0].fields.x[1] = inf: must be a finite number",
    ),
    (
        "long_value_is_cut_short",
        stream('name = "' + "a b" * 40 + '"\nevery = "1s"\n'),
        "x.toml:4: stream[0].name = '" + "a b" * 19 + "a…:"
        " must be letters, digits, '_', '.', ':' or '-'",
    ),
    (
        "table_value_is_shown_inline",
        stream('name = "s"\nevery = "1s"\nenvelope = { }\n'),
        "x.toml:6: stream[0].envelope = {}: must have at least one key",
    ),
    (
        "array_value_is_shown_inline",
        fields('x = { list = [1, "2", { a = 3 }], item = 1 }\n'),
        "x.toml:7: stream[0].fields.x.list = [1, '2', { a = 3 }]:"
        " must be a length from 0 to 10000, or { min = 1, max = 5 }",
    ),
    (
        "fields_not_a_table",
        stream('name = "s"\nevery = "1s"\nfields = 3\n'),
        "x.toml:6: stream[0].fields = 3: must be a table of fields ([stream.fields])",
    ),
    # -- envelope, server, protocol
    (
        "bad_envelope_slot",
        stream('name = "s"\nevery = "1s"\n') + '[envelope]\ntype = "$typ"\n',
        "x.toml:7: envelope.type = '$typ': unknown slot; did you mean '$type'? (allowed: $type,"
        " $seq, $timestamp, $timestamp_ms, $timestamp_s, $data, $stream);"
        " write '$$' for a literal '$'",
    ),
    (
        "bad_stream_envelope_slot",
        stream('name = "s"\nevery = "1s"\nenvelope = { t = "$type", d = "$dta" }\n'),
        "x.toml:6: stream[0].envelope.d = '$dta': unknown slot; did you mean '$data'?"
        " (allowed: $type, $seq, $timestamp, $timestamp_ms, $timestamp_s, $data, $stream);"
        " write '$$' for a literal '$'",
    ),
    (
        "bad_server_mode",
        stream('name = "s"\nevery = "1s"\n') + '[server]\nmode = "per_connection"\n',
        "x.toml:7: server.mode = 'per_connection': unknown mode; did you mean 'per-connection'?"
        " (allowed: broadcast, per-connection)",
    ),
    (
        "bad_server_port",
        stream('name = "s"\nevery = "1s"\n') + "[server]\nport = 70000\n",
        "x.toml:7: server.port = 70000: must be an integer from 0 to 65535",
    ),
    (
        "server_frame_limit_too_small",
        stream('name = "s"\nevery = "1s"\n') + "[server]\nmax_frame_bytes = 100\n",
        "x.toml:7: server.max_frame_bytes = 100: must be an integer from 125 to 16777216",
    ),
    (
        "unknown_slow_consumer_policy",
        stream('name = "s"\nevery = "1s"\n') + '[server]\nslow_consumer = "drop"\n',
        "x.toml:7: server.slow_consumer = 'drop': unknown policy; did you mean 'drop-oldest'?"
        " (allowed: drop-oldest, close)",
    ),
    (
        "max_lateness_neither_duration_nor_off",
        stream('name = "s"\nevery = "1s"\n') + '[server]\nmax_lateness = "never"\n',
        "x.toml:7: server.max_lateness = 'never': must be 'off' or a duration like '250ms',"
        " '5s', '2m', '1h30m' (units ns, us, ms, s, m, h, d)",
    ),
    (
        "stream_max_lateness_zero",
        stream('name = "s"\nevery = "1s"\nmax_lateness = "0s"\n'),
        "x.toml:6: stream[0].max_lateness = '0s': must be > 0",
    ),
    (
        "unknown_timing",
        stream('name = "s"\nevery = "1s"\n') + '[server]\ntiming = "exact"\n',
        "x.toml:7: server.timing = 'exact': unknown timing (allowed: efficient, precise)",
    ),
    (
        "rule_without_match",
        stream('name = "s"\nevery = "1s"\n') + '[[protocol.rule]]\nreply = "pong"\n',
        "x.toml:6: protocol.rule[0].match: missing: required"
        " (a table of the fields a request must have, like { type = 'get' })",
    ),
    (
        "protocol_errors_not_bool",
        stream('name = "s"\nevery = "1s"\n') + '[protocol]\nerrors = "yes"\n',
        "x.toml:7: protocol.errors = 'yes': must be true or false",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_scenario_gives_one_exact_message(text: str | bytes, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = (
        stream(
            """
        name = "s"
        every = "1s"
        [stream.fields]
        a = { dist = "normal", mean = 1, std = 0 }
        b = { dist = "uniform", min = 2, max = 1 }
        """
        )
        + '[server]\nport = -1\nmode = "x"\n'
    )
    assert [(p.line, p.path, p.found) for p in problems(text)] == [
        (7, "stream[0].fields.a.std", "0"),
        (8, "stream[0].fields.b.min", "2"),
        (10, "server.port", "-1"),
        (11, "server.mode", "'x'"),
    ]


def test_unknown_stream_key_suggests_closest() -> None:
    [message] = problems_of(stream('name = "s"\nevery = "1s"\nstrat = "5s"\n'))
    assert "stream[0].strat: unknown key; did you mean 'start'?" in message


def test_misspelt_required_key_is_not_also_reported_missing() -> None:
    [message] = problems_of(stream('nme = "s"\nevery = "1s"\n'))
    assert "did you mean 'name'?" in message


def test_quoted_keys_are_quoted_in_the_path() -> None:
    text = fields('"cpu load" = { dist = "normal", mean = 1, std = 0 }\n')
    assert problems_of(text) == ['x.toml:7: stream[0].fields."cpu load".std = 0: must be > 0']


def test_each_problem_is_one_line_even_with_newlines_in_keys_and_values() -> None:
    text = fields('"a\\nb" = { dist = "x\\ny" }\n')
    [message] = problems_of(text)
    assert message.startswith("x.toml:7: stream[0].fields.\"a\\nb\".dist = 'x\\ny': unknown")


def test_missing_file_raises_scenario_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


@pytest.mark.parametrize("name", [".", "bad\0name.toml"])
def test_unreadable_path_raises_scenario_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path) + "/" + name)


# ============================================================================ how a problem reads


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (
            Problem("x.toml", 14, "stream[2].fields.cpu.std", "must be > 0", "-3"),
            "x.toml:14: stream[2].fields.cpu.std = -3: must be > 0",
        ),
        (
            Problem("x.toml", 2, "scenario.name", "must not be empty", "''"),
            "x.toml:2: scenario.name = '': must not be empty",
        ),
        (
            Problem("x.toml", 3, "stream[0].evry", "unknown key; did you mean 'every'?"),
            "x.toml:3: stream[0].evry: unknown key; did you mean 'every'?",
        ),
        (
            Problem("x.toml", None, "scenario", "missing: required"),
            "x.toml: scenario: missing: required",
        ),
        (Problem("x.toml", 1, "", "invalid TOML: oops"), "x.toml:1: invalid TOML: oops"),
        (Problem("x.toml", None, "", "cannot read: denied"), "x.toml: cannot read: denied"),
    ],
)
def test_problem_reads_file_line_path_found_then_message(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_problem_is_a_frozen_value() -> None:
    problem = Problem("x.toml", 1, "a", "must be > 0", "0")
    assert problem == Problem("x.toml", 1, "a", "must be > 0", found="0")
    with pytest.raises(AttributeError):
        problem.found = "1"  # type: ignore[misc]
    assert not hasattr(problem, "__dict__")


def _nested_lists(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        ("5s", "'5s'"),
        ("it's", '"it\'s"'),
        ("a\nb", "'a\\nb'"),
        (-3, "-3"),
        (1.5, "1.5"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (date(2026, 1, 2), "2026-01-02"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05"),
        ([], "[]"),
        ({}, "{}"),
        ([1, "2", [3.0]], "[1, '2', [3.0]]"),
        ({"a b": 1, "c": {"d": True}}, '{ "a b" = 1, c = { d = true } }'),
        ("x" * 100, "'" + "x" * 58 + "…"),
        (2**5000, "14124670321394260368352096670161473336688961751845411168136…"),
        (2**16000, "0x1" + "0" * 56 + "…"),  # too many digits for repr(): tomllib read hex
        (list(range(10**6)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, …"),
        (_nested_lists(10_000), "[" * 59 + "…"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_a_found_value_is_shown_as_toml_writes_it_and_cut_short(value: object, text: str) -> None:
    assert show(value) == text
    assert len(show(value)) <= SHOW_LIMIT


# ============================================================================ line numbers


def test_line_of_a_key_in_a_sub_table() -> None:
    text = toml(
        """
        [scenario]
        name = "t"

        [[stream]]
        name = "s"
        every = "1s"

        [stream.fields]
        ok = 1
        # a comment

        cpu.dist = "normal"
        cpu.mean = 1
        cpu.std = -1
        """
    )
    assert problems_of(text) == ["x.toml:14: stream[0].fields.cpu.std = -1: must be > 0"]


def test_line_of_a_key_in_an_inline_table_is_the_line_of_the_table() -> None:
    text = stream('name = "s"\n\n\nburst = { count = 0, every = "1s" }\n')
    assert problems_of(text) == [
        "x.toml:7: stream[0].burst.count = 0: must be an integer from 1 to 100000"
    ]
    text = stream(
        'name = "s"\nevery = "1s"\nfields = { a = { b = { dist = "lognormal", mu = 0 } } }\n'
    )
    assert problems_of(text) == [
        "x.toml:6: stream[0].fields.a.b.sigma: missing: required (a number > 0)"
    ]


def test_line_of_an_element_in_a_multiline_array() -> None:
    text = toml(
        """
        [scenario]
        name = "t"
        [[stream]]
        name = "s"
        at = [
            "1s",
            "2s",  # a comment
            "1.5s",
        ]
        """
    )
    assert problems_of(text) == [
        "x.toml:8: stream[0].at[2] = '1.5s': must not be before at[1] ('2s')"
    ]


def test_line_of_a_key_in_the_third_stream() -> None:
    text = toml(
        '''
        [scenario]
        name = "t"
        description = """
        [[stream]]
        name = "not a stream, a string"
        """

        [[stream]]
        name = "a"
        every = "1s"
        [stream.fields]
        x = 1

        [[stream]]
        name = "b"
        rate = 1

        [[stream]]
        name = "c"
        every = "1s"
        [stream.fields]
        n = { dist = "randint", min = 9, max = 1 }
        '''
    )
    assert problems_of(text) == ["x.toml:22: stream[2].fields.n.min = 9: must be <= max (1)"]


def test_missing_key_points_at_its_table_header() -> None:
    text = stream(
        'name = "a"\nevery = "1s"\n[[stream]]\nname = "b"\nevery = "1s"\n[[stream]]\nevery = "1s"\n'
    )
    assert problems_of(text) == [
        "x.toml:9: stream[2].name: missing:"
        " required (a name of letters, digits, '_', '.', ':' or '-')"
    ]


FIELD_NAMES = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(st.lists(FIELD_NAMES, min_size=1, max_size=5, unique=True), st.integers(1, 3))
def test_line_index_finds_every_field_whatever_its_name(names: list[str], streams: int) -> None:
    lines = ["[scenario]", 'name = "t"']
    expected: dict[tuple[str | int, ...], int] = {}
    for i in range(streams):
        lines += ["[[stream]]", f'name = "s{i}"', 'every = "1s"', "[stream.fields]"]
        for name in names:
            lines.append(f"{json.dumps(name, ensure_ascii=False)} = {{ const = 1 }}")
            expected[("stream", i, "fields", name, "const")] = len(lines)
    index = LineIndex("\n".join(lines))
    assert {path: index.line_of(path) for path in expected} == expected


def test_line_numbers_survive_crlf_line_endings() -> None:
    text = fields('x = { dist = "bool", p = 2 }\n')
    [message] = problems_of(text.replace("\n", "\r\n"))
    assert message == "x.toml:7: stream[0].fields.x.p = 2: must be between 0 and 1"


# ============================================================================ valid input


def one_stream(body: str, top: str = "") -> tuple[Scenario, Stream]:
    scenario = parse_scenario(HEAD + top + "[[stream]]\n" + toml(body), "x.toml")
    return scenario, scenario.streams[0]


def test_minimal_scenario_takes_documented_defaults() -> None:
    scenario, s = one_stream('name = "s"\nevery = "1s"\n')
    assert (scenario.name, scenario.seed, scenario.description) == ("t", 0, "")
    assert (scenario.epoch_ns, scenario.duration_ns, scenario.source) == (None, None, "x.toml")
    assert scenario.server == Server() and scenario.protocol == Protocol()
    assert s == Stream("s", Schedule(Every(10**9)), Object(()), "s", Envelope())


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ('every = "5s"', Every(5 * 10**9)),
        ('every = "1h30m"', Every(5400 * 10**9)),
        ('every = { min = "15s", max = "30s" }', UniformInterval(15 * 10**9, 30 * 10**9)),
        ('every = { min = "0s", max = "1ms" }', UniformInterval(0, 10**6)),
        ("rate = 2.5", Poisson(2.5)),
        ("rate = 3", Poisson(3.0)),
        ('at = ["1s", "2.5s", "2.5s"]', At((10**9, 25 * 10**8, 25 * 10**8))),
        ('at = ["0s", "1s"]\nrepeat = "10s"', At((0, 10**9), 10 * 10**9)),
        (
            'burst = { count = 5, spacing = "100ms", every = "10s" }',
            Burst(5, 100 * 10**6, 10 * 10**9),
        ),
        ('burst = { count = 3, every = "1s" }', Burst(3, 0, 10**9)),
    ],
)
def test_each_schedule_kind_builds_its_pattern(body: str, pattern: object) -> None:
    _, s = one_stream(f'name = "s"\n{body}\n')
    assert s.schedule == Schedule(pattern)  # type: ignore[arg-type]


def test_schedule_window_and_first_offset() -> None:
    _, s = one_stream('name = "s"\nevery = "1s"\nstart = "10s"\nstop = "5m"\nfirst = "0s"\n')
    assert s.schedule == Schedule(Every(10**9), 10 * 10**9, 300 * 10**9, 0)


@pytest.mark.parametrize(
    "pattern",
    [
        'every = "5s"',
        'every = { min = "1s", max = "2s" }',
        "rate = 2",
        'burst = { count = 3, spacing = "1s", every = "10s" }',
    ],
)
def test_first_is_the_offset_from_start_of_the_first_message(pattern: str) -> None:
    _, s = one_stream(f'name = "s"\n{pattern}\nstart = "1m"\nfirst = "250ms"\n')
    assert (s.schedule.start_ns, s.schedule.first_ns) == (60 * 10**9, 250 * 10**6)
    first_time = ScheduleCursor(s.schedule, Draws(0, "s")).next(1)[0]
    assert first_time == 60 * 10**9 + 250 * 10**6


def test_rate_of_exactly_the_maximum_is_allowed() -> None:
    _, s = one_stream('name = "s"\nevery = "10us"\n')
    assert mean_rate_per_s(s.schedule) == MAX_RATE_PER_S


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("42", Const(42)),
        ('"on"', Const("on")),
        ("[1, { a = 2 }]", Const([1, {"a": 2}])),
        ("1979-05-27T07:32:00Z", Const("1979-05-27T07:32:00+00:00")),
        ("{ const = { a = 1 } }", Const({"a": 1})),
        (
            '{ dist = "uniform", min = 1, max = 2, round = 0 }',
            Uniform(1.0, 2.0, Numeric(round_to=0)),
        ),
        (
            '{ dist = "normal", mean = 45, std = 12, min = 0, max = 100, round = 1 }',
            Normal(45.0, 12.0, Numeric(0.0, 100.0, 1)),
        ),
        ('{ dist = "lognormal", mu = 0, sigma = 0.5 }', LogNormal(0.0, 0.5)),
        ('{ dist = "exponential", mean = 3, max = 10 }', Exponential(3.0, Numeric(max=10.0))),
        ('{ dist = "randint", min = -5, max = 5 }', RandInt(-5, 5)),
        ('{ dist = "bool" }', Bool(0.5)),
        ('{ dist = "bool", p = 0.9 }', Bool(0.9)),
        (
            '{ dist = "walk", start = 80, step = 1.5, min = 0, revert = 0.1, mean = 80, round = 2}',
            Walk(80.0, 1.5, 0.1, 80.0, Numeric(0.0, None, 2)),
        ),
        ('{ dist = "counter" }', Counter(1, 1)),
        ('{ dist = "counter", start = 100, step = -2 }', Counter(100, -2)),
        ('{ dist = "uuid" }', Uuid()),
        ('{ dist = "timestamp" }', Timestamp(TimeFormat.ISO)),
        ('{ dist = "timestamp", format = "ms" }', Timestamp(TimeFormat.EPOCH_MS)),
        ('{ choice = ["a", { b = 1 }] }', Choice(("a", {"b": 1}))),
        ('{ choice = ["a", "b"], weights = [0.9, 0.1] }', Choice(("a", "b"), (0.9, 0.1))),
        ('{ choice = ["a", "b"], weights = [0, 1] }', Choice(("a", "b"), (0.0, 1.0))),
        ("{ cycle = [1, 2, 3] }", Cycle((1, 2, 3))),
        ('{ template = "tx_{seq}-{{x}}" }', Template("tx_{seq}-{{x}}", ("seq",))),
        ("{ list = 3, item = 1 }", ListOf(Const(1), 3, 3)),
        (
            '{ list = { min = 0, max = 5 }, item = { dist = "uuid" } }',
            ListOf(Uuid(), 0, 5),
        ),
        (
            '{ list = 2, item = { id = { template = "i{index}" } } }',
            ListOf(Object((("id", Template("i{index}", ("index",))),)), 2, 2),
        ),
        (
            '{ city = "Oslo", temp = { dist = "normal", mean = 5, std = 1 } }',
            Object((("city", Const("Oslo")), ("temp", Normal(5.0, 1.0)))),
        ),
        ('{ item = "apple", qty = 2 }', Object((("item", Const("apple")), ("qty", Const(2))))),
    ],
)
def test_each_field_kind_builds_its_spec(spec: str, expected: object) -> None:
    _, s = one_stream(f'name = "s"\nevery = "1s"\n[stream.fields]\nx = {spec}\n')
    assert s.fields == Object((("x", expected),))  # type: ignore[arg-type]


def test_fields_keep_their_order_and_templates_see_siblings() -> None:
    _, s = one_stream(
        """
        name = "s"
        every = "1s"
        [stream.fields]
        z = 1
        id = { template = "{z}/{a}/{seq}" }
        a = { dist = "uuid" }
        """
    )
    assert [name for name, _ in s.fields.fields] == ["z", "id", "a"]
    assert s.fields.fields[1][1] == Template("{z}/{a}/{seq}", ("z", "a", "seq"))


def test_nested_fields_path_in_errors_follows_list_items() -> None:
    text = stream(
        'name = "s"\nevery = "1s"\n[stream.fields]\n'
        'suppliers = { list = 3, item = { status = { choice = ["on"], weights = [-1] } } }\n'
    )
    assert problems_of(text) == [
        "x.toml:7: stream[0].fields.suppliers.item.status.weights[0] = -1: must be >= 0"
    ]


def test_stream_envelope_overrides_file_envelope_which_overrides_default() -> None:
    scenario = parse_scenario(
        toml(
            """
            [scenario]
            name = "t"
            [envelope]
            kind = "$type"
            payload = "$data"
            price = "$$5"
            [[stream]]
            name = "a"
            every = "1s"
            [[stream]]
            name = "b"
            type = "bee"
            every = "1s"
            envelope = { t = "$stream", at = "$timestamp_s", v = 2 }
            """
        )
    )
    a, b = scenario.streams
    assert a.envelope == Envelope((("kind", Slot.TYPE), ("payload", Slot.DATA), ("price", "$5")))
    assert b.envelope == Envelope((("t", Slot.STREAM), ("at", Slot.TIMESTAMP_S), ("v", 2)))
    assert (a.type, b.type) == ("a", "bee")


def test_scenario_header_server_and_protocol_values() -> None:
    scenario = parse_scenario(
        toml(
            """
            [scenario]
            name = "energy"
            description = "demo"
            seed = 9223372036854775807
            epoch = "2026-01-01T01:00:00+01:00"
            duration = "10m"
            [server]
            host = "0.0.0.0"
            port = 0
            mode = "per-connection"
            max_connections = 5
            max_frame_bytes = 125
            send_buffer_bytes = 1024
            slow_consumer = "close"
            keepalive_interval = "5s"
            keepalive_timeout = "1s"
            timing = "precise"
            max_lateness = "off"
            [protocol]
            ping = "hb"
            errors = false
            [[protocol.rule]]
            match = { type = "get_balance", account = { id = 1 } }
            reply = { type = "balance", data = { amount = 100 } }
            delay = "50ms"
            [[protocol.rule]]
            name = "echo"
            match = { type = "echo" }
            reply = ["{request.text}"]
            [[stream]]
            name = "s"
            every = "1s"
            """
        )
    )
    assert (scenario.name, scenario.description, scenario.seed) == ("energy", "demo", 2**63 - 1)
    assert scenario.epoch_ns == 1_767_225_600 * 10**9
    assert scenario.duration_ns == 600 * 10**9
    assert scenario.server == Server(
        "0.0.0.0",
        0,
        Mode.PER_CONNECTION,
        5,
        125,
        1024,
        SlowConsumerPolicy.CLOSE,
        5 * 10**9,
        10**9,
        Timing.PRECISE,
        NEVER_LATE_NS,
    )
    assert scenario.protocol == Protocol(
        ping_type="hb",
        errors=False,
        rules=(
            Rule(
                "rule[0]",
                (("type", "get_balance"), ("account", {"id": 1})),
                {"type": "balance", "data": {"amount": 100}},
                50 * 10**6,
            ),
            Rule("echo", (("type", "echo"),), ["{request.text}"], 0),
        ),
    )


@pytest.mark.parametrize(
    "epoch",
    ['"2026-01-01T00:00:00Z"', '"2026-01-01T00:00:00.000+00:00"', "2026-01-01T00:00:00Z"],
)
def test_epoch_as_string_or_toml_datetime(epoch: str) -> None:
    scenario, _ = one_stream('name = "s"\nevery = "1s"\n', top=f"epoch = {epoch}\n")
    assert scenario.epoch_ns == 1_767_225_600 * 10**9


def test_utf8_bom_and_crlf_are_accepted() -> None:
    text = (HEAD + '[[stream]]\nname = "s"\nevery = "1s"\n').replace("\n", "\r\n")
    assert parse_scenario(b"\xef\xbb\xbf" + text.encode()).streams[0].name == "s"
    assert parse_scenario("\ufeff" + text).streams[0].name == "s"


def test_load_scenario_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_bytes((HEAD + '[[stream]]\nname = "s"\nevery = "1s"\n').encode())
    assert load_scenario(path).source == str(path)
    path.write_text(HEAD, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(info.value).startswith(f"{path}: stream: missing")


@pytest.mark.parametrize(
    ("pattern", "duration_ns", "rate"),
    [
        (Every(200 * 10**6), None, 5.0),
        (UniformInterval(10**9, 3 * 10**9), None, 0.5),
        (Poisson(2.5), None, 2.5),
        (Burst(5, 10**6, 10 * 10**9), None, 0.5),
        (At((0, 1, 2, 3), 2 * 10**9), None, 2.0),
        (At((0, 1, 2, 3)), 8 * 10**9, 0.5),
        (At((0, 1, 2, 3)), None, 0.0),
    ],
)
def test_mean_rate_per_s_of_each_pattern(
    pattern: object, duration_ns: int | None, rate: float
) -> None:
    schedule = Schedule(pattern)  # type: ignore[arg-type]
    assert mean_rate_per_s(schedule, duration_ns) == pytest.approx(rate)


# ============================================================================ properties

VALID = toml(
    '''
    [scenario]
    name = "energy-dashboard"
    description = """multi
    line"""
    seed = 42
    epoch = "2026-01-01T00:00:00Z"
    duration = "10m"

    [server]
    port = 3002
    mode = "broadcast"
    keepalive_interval = "20s"

    [envelope]
    type = "$type"
    seq = "$seq"
    data = "$data"

    [protocol]
    ping = "ping"
    [[protocol.rule]]
    match = { type = "get_balance" }
    reply = { type = "balance", data = { amount = 100 } }
    delay = "50ms"

    [[stream]]
    name = "system_stats"
    every = "5s"
    start = "1s"
    stop = "5m"
    [stream.fields]
    cpu = { dist = "normal", mean = 45, std = 12, min = 0, max = 100, round = 1 }
    n = { dist = "randint", min = 0, max = 500 }
    up = { dist = "bool", p = 0.9 }

    [[stream]]
    name = "market"
    every = { min = "15s", max = "30s" }
    envelope = { t = "$type", d = "$data" }
    [stream.fields]
    price = { dist = "walk", start = 80.0, step = 1.5, min = 0, round = 2 }
    suppliers.list = { min = 1, max = 3 }
    suppliers.item.name = { choice = ["solar", "wind"] }
    suppliers.item.status = { choice = ["on", "off"], weights = [0.9, 0.1] }
    id = { template = "tx_{seq}_{price}" }
    level = { cycle = ["a", "b"] }

    [[stream]]
    name = "trades"
    rate = 2.5
    [stream.fields]
    when = { dist = "timestamp", format = "ms" }
    uid = { dist = "uuid" }
    k = { dist = "counter", start = 10 }
    size = { dist = "lognormal", mu = 1, sigma = 0.5 }
    gap = { dist = "exponential", mean = 3 }
    u = { dist = "uniform", min = 1, max = 2 }

    [[stream]]
    name = "alerts"
    at = ["1s", "2s"]
    repeat = "1m"

    [[stream]]
    name = "bursty"
    burst = { count = 5, spacing = "100ms", every = "10s" }
    '''
)


def test_the_valid_base_scenario_of_the_mutation_tests_is_valid() -> None:
    assert len(parse_scenario(VALID).streams) == 5


def parses_or_scenario_error(text: str | bytes) -> None:
    """The loader's contract: a Scenario, or a ScenarioError whose problems are one line each."""
    try:
        parse_scenario(text, "x.toml")
    except ScenarioError as e:
        for problem in e.problems:
            assert "\n" not in str(problem) and len(str(problem).splitlines()) == 1
            assert problem.line is None or problem.line >= 1


# 300 examples keep the file under a few seconds; SIM_FUZZ_EXAMPLES=20000 digs deeper.
FAST = settings(
    max_examples=int(os.environ.get("SIM_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TOMLISH = st.text(alphabet="[]{}=\"'.,#\n\t abcdefs0123456789-_$:", max_size=60)


@FAST
@given(st.text() | TOMLISH)
def test_arbitrary_text_raises_nothing_but_scenario_error(text: str) -> None:
    parses_or_scenario_error(text)


@FAST
@given(st.binary())
def test_arbitrary_bytes_raise_nothing_but_scenario_error(data: bytes) -> None:
    parses_or_scenario_error(data)


def _swap_values(text: str, i: int, j: int) -> str:
    lines = text.split("\n")
    assigned = [k for k, line in enumerate(lines) if " = " in line]
    a, b = assigned[i % len(assigned)], assigned[j % len(assigned)]
    (ka, va), (kb, vb) = lines[a].split(" = ", 1), lines[b].split(" = ", 1)
    lines[a], lines[b] = f"{ka} = {vb}", f"{kb} = {va}"
    return "\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["replace", "delete", "insert", "swap", "drop_line"]))
        if op == "replace":
            text = text[:pos] + draw(st.characters()) + text[pos + 1 :]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)) :]
        elif op == "insert":
            text = text[:pos] + draw(TOMLISH | st.text(max_size=5)) + text[pos:]
        elif op == "swap":
            text = _swap_values(text, draw(st.integers(0, 99)), draw(st.integers(0, 99)))
        else:
            lines = text.split("\n")
            del lines[pos % len(lines)]
            text = "\n".join(lines)
    return text


@FAST
@given(mutated())
def test_mutations_of_a_valid_scenario_raise_nothing_but_scenario_error(text: str) -> None:
    parses_or_scenario_error(text)


KNOWN_KEYS = sorted(
    {
        *("scenario", "server", "envelope", "protocol", "stream", "rule", "fields", "item"),
        *("name", "description", "seed", "epoch", "duration", "type", "every", "rate", "at"),
        *("repeat", "burst", "start", "stop", "first", "count", "spacing", "min", "max"),
        *("dist", "mean", "std", "mu", "sigma", "round", "p", "step", "revert", "format"),
        *("choice", "weights", "cycle", "const", "template", "list", "match", "reply"),
        *("delay", "host", "port", "mode", "errors", "ping"),
    }
)
SCALARS = (
    st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.just(2**5000)  # written in hex: too long for repr()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["1s", "0s", "-2m", "1us", "$type", "$x", "{seq}", "{a}", "normal", "walk"])
)


def _nested(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=3)
    return SCALARS | st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4)


VALUES = _nested(_nested(_nested(SCALARS)))  # three levels deep: tables in tables in tables
TABLES = st.dictionaries(st.sampled_from(KNOWN_KEYS), VALUES, max_size=6)


@FAST
@given(VALUES)
def test_a_shown_value_is_one_printable_line_of_at_most_60_characters(value: object) -> None:
    text = show(value)
    assert len(text) <= SHOW_LIMIT and text.isprintable()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else repr(value)
    if isinstance(value, int) and value > 2**64:
        return hex(value)
    if isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
    return "{ " + ", ".join(pairs) + " }"


@FAST
@given(
    st.fixed_dictionaries(
        {"scenario": TABLES, "stream": st.lists(TABLES, min_size=1, max_size=3)},
        optional={"server": TABLES, "envelope": TABLES, "protocol": TABLES, "fault": TABLES},
    )
)
def test_well_formed_toml_with_wrong_values_raises_nothing_but_scenario_error(
    doc: dict[str, object],
) -> None:
    parses_or_scenario_error("\n".join(f"{k} = {_toml_value(v)}" for k, v in doc.items()))
