"""The ``[[fault]]`` loader: what it builds, and what it says when a fault is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.fault_report import plan_report
from simulator.core.faults import plan_faults
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
    Fault,
    FaultAt,
    FaultEvery,
    FaultKind,
    FaultLevel,
    FaultPoisson,
    FaultSchedule,
    FaultTarget,
    FaultWindow,
    FixedLatency,
    MassDisconnect,
    NormalLatency,
    Outage,
    ParetoLatency,
    Reject,
    Reorder,
    Reset,
    Respond,
    Stall,
    Throttle,
    UniformLatency,
)
from simulator.errors import ScenarioError
from simulator.scenario import load_scenario, parse_faults, parse_scenario

S = 1_000_000_000
MS = 1_000_000

# Lines 1-8: a valid scenario with streams 'a' and 'b'; a fault appended starts on line 9.
HEAD = (
    '[scenario]\nname = "t"\n'
    '[[stream]]\nname = "a"\nevery = "1s"\n'
    '[[stream]]\nname = "b"\nevery = "1s"\n'
)


def faulty(body: str) -> str:
    """``[[fault]]`` on line 9, then ``body`` from line 10."""
    return HEAD + "[[fault]]\n" + body


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.toml")
    return str(info.value).splitlines()


def one_fault(body: str) -> Fault:
    faults = parse_scenario(faulty(body), "x.toml").faults
    assert len(faults) == 1
    return faults[0]


# ============================================================================ invalid input

KINDS = (
    "drop, delay, duplicate, reorder, corrupt, burst_loss, disconnect, reset, stall,"
    " throttle, outage, reject, mass_disconnect"
)
MESSAGE_KINDS = "drop, delay, duplicate, reorder, corrupt, burst_loss"
DURATIONS = "a duration like '250ms', '5s', '2m', '1h30m' (units ns, us, ms, s, m, h, d)"

INVALID: list[tuple[str, str, str]] = [
    # -- the array itself
    (
        "single_table",
        HEAD + '[fault]\nkind = "drop"\n',
        "x.toml:9: fault: a single [fault] table: write [[fault]] for each fault",
    ),
    (
        "not_tables",
        "fault = 3\n" + HEAD,
        "x.toml:1: fault = 3: must be one or more [[fault]] tables",
    ),
    (
        "not_a_table_in_the_array",
        "fault = [1]\n" + HEAD,
        "x.toml:1: fault[0] = 1: must be a table ([[fault]])",
    ),
    # -- kind and name
    ("kind_missing", faulty(""), f"x.toml:9: fault[0].kind: missing: required (one of {KINDS})"),
    (
        "kind_misspelt",
        faulty('kind = "dorp"\n'),
        f"x.toml:10: fault[0].kind = 'dorp': unknown kind; did you mean 'drop'? (allowed: {KINDS})",
    ),
    (
        "kind_not_a_string",
        faulty("kind = 3\n"),
        f"x.toml:10: fault[0].kind = 3: must be a string, one of {KINDS}",
    ),
    (
        "name_empty",
        faulty('kind = "drop"\nname = ""\n'),
        "x.toml:11: fault[0].name = '': must not be empty",
    ),
    (
        "name_twice",
        faulty('kind = "drop"\nname = "x"\n[[fault]]\nkind = "reset"\nname = "x"\n'),
        "x.toml:14: fault[1].name = 'x': already the name of fault[0]: fault names must be unique",
    ),
    (
        "name_equal_to_a_default_name",
        faulty('kind = "drop"\n[[fault]]\nkind = "reset"\nname = "fault[0]"\n'),
        "x.toml:13: fault[1].name = 'fault[0]': already the name of fault[0]:"
        " fault names must be unique",
    ),
    # -- keys
    (
        "unknown_key_suggests_closest",
        faulty('kind = "drop"\nprobabilty = 0.5\n'),
        "x.toml:11: fault[0].probabilty: unknown key; did you mean 'probability'? (allowed: kind,"
        " name, streams, connections, after_connections, probability, every_nth, match, at,"
        " every, window, poisson, duration, limit)",
    ),
    (
        "key_of_another_level",
        faulty('kind = "disconnect"\nprobability = 0.5\n'),
        "x.toml:11: fault[0].probability: not for kind 'disconnect'"
        " (only for drop, delay, duplicate, reorder, corrupt)",
    ),
    (
        "probability_on_burst_loss",
        faulty('kind = "burst_loss"\nloss = 0.1\nburst = 2\nprobability = 0.5\n'),
        "x.toml:13: fault[0].probability: not for kind 'burst_loss'"
        " (only for drop, delay, duplicate, reorder, corrupt)",
    ),
    (
        "duration_on_an_instant_fault",
        faulty('kind = "disconnect"\nduration = "1s"\n'),
        "x.toml:11: fault[0].duration: not for kind 'disconnect' (only for drop, delay,"
        " duplicate, reorder, corrupt, burst_loss, stall, throttle, outage, reject)",
    ),
    (
        "streams_on_a_server_fault",
        faulty('kind = "reject"\nstatus = 503\nstreams = ["a"]\n'),
        f"x.toml:12: fault[0].streams: not for kind 'reject' (only for {MESSAGE_KINDS})",
    ),
    (
        "connections_on_a_server_fault",
        faulty('kind = "mass_disconnect"\nat = "1s"\nconnections = [1]\n'),
        f"x.toml:12: fault[0].connections: not for kind 'mass_disconnect' (only for"
        f" {MESSAGE_KINDS}, disconnect, reset, stall, throttle)",
    ),
    # -- targets
    (
        "probability_above_one",
        faulty('kind = "drop"\nprobability = 1.5\n'),
        "x.toml:11: fault[0].probability = 1.5: must be between 0 and 1",
    ),
    (
        "unknown_stream",
        faulty('kind = "drop"\nstreams = ["c"]\n'),
        "x.toml:11: fault[0].streams[0] = 'c': unknown stream (allowed: a, b)",
    ),
    (
        "misspelt_stream",
        faulty('kind = "drop"\nstreams = ["b", "aa"]\n'),
        "x.toml:11: fault[0].streams[1] = 'aa': unknown stream; did you mean 'a'? (allowed: a, b)",
    ),
    (
        "streams_empty",
        faulty('kind = "drop"\nstreams = []\n'),
        "x.toml:11: fault[0].streams = []: must be an array of stream names, like ['trades']"
        " (leave it out for all)",
    ),
    (
        "stream_twice",
        faulty('kind = "drop"\nstreams = ["a", "a"]\n'),
        "x.toml:11: fault[0].streams[1] = 'a': listed twice (first as streams[0])",
    ),
    (
        "connection_index_negative",
        faulty('kind = "drop"\nconnections = [0, -1]\n'),
        "x.toml:11: fault[0].connections[1] = -1: must be >= 0",
    ),
    (
        "connection_index_twice",
        faulty('kind = "reset"\nconnections = [2, 2]\n'),
        "x.toml:11: fault[0].connections[1] = 2: listed twice",
    ),
    (
        "connections_fraction_zero",
        faulty('kind = "drop"\nconnections = { fraction = 0 }\n'),
        "x.toml:11: fault[0].connections.fraction = 0: must be > 0",
    ),
    (
        "connections_fraction_above_one",
        faulty('kind = "drop"\nconnections = { fraction = 1.5 }\n'),
        "x.toml:11: fault[0].connections.fraction = 1.5: must be <= 1",
    ),
    (
        "connections_every_zero",
        faulty('kind = "drop"\nconnections = { every = 0 }\n'),
        "x.toml:11: fault[0].connections.every = 0: must be >= 1",
    ),
    (
        "connections_misspelt_key",
        faulty('kind = "drop"\nconnections = { evry = 2 }\n'),
        "x.toml:11: fault[0].connections.evry: unknown key; did you mean 'every'?"
        " (allowed: fraction, every)",
    ),
    (
        "connections_fraction_and_every",
        faulty('kind = "drop"\nconnections = { fraction = 0.5, every = 2 }\n'),
        "x.toml:11: fault[0].connections.every: together with 'fraction': use one of fraction"
        " or every",
    ),
    (
        "connections_a_string",
        faulty('kind = "drop"\nconnections = "all"\n'),
        "x.toml:11: fault[0].connections = 'all': must be an array of connection indexes like"
        " [0, 2], or { fraction = 0.5 }, or { every = 3 }",
    ),
    (
        "after_connections_negative",
        faulty('kind = "stall"\nafter_connections = -1\n'),
        "x.toml:11: fault[0].after_connections = -1: must be >= 0",
    ),
    (
        "every_nth_zero",
        faulty('kind = "drop"\nevery_nth = 0\n'),
        "x.toml:11: fault[0].every_nth = 0: must be >= 1",
    ),
    (
        "match_empty",
        faulty('kind = "drop"\nmatch = {}\n'),
        "x.toml:11: fault[0].match = {}: must be a non-empty table of dotted paths and values,"
        " like { 'data.level' = 'warning' }",
    ),
    (
        "match_empty_path_segment",
        faulty('kind = "drop"\nmatch = { "data..x" = 1 }\n'),
        'x.toml:11: fault[0].match."data..x": empty segment in a dotted path: write keys like'
        " 'data.level'",
    ),
    (
        "match_empty_table_value",
        faulty('kind = "drop"\nmatch = { data = {} }\n'),
        "x.toml:11: fault[0].match.data = {}: an empty table matches nothing: compare with a value",
    ),
    (
        "match_nan",
        faulty('kind = "drop"\nmatch = { x = nan }\n'),
        "x.toml:11: fault[0].match.x = nan: must be a finite number",
    ),
    # -- schedules
    (
        "two_triggers",
        faulty('kind = "drop"\nat = "1s"\nevery = "2s"\n'),
        "x.toml:12: fault[0].every: together with 'at': a fault has at most one of at, every,"
        " window or poisson",
    ),
    (
        "at_negative",
        faulty('kind = "stall"\nat = "-1s"\n'),
        "x.toml:11: fault[0].at = '-1s': must be >= 0",
    ),
    (
        "poisson_without_unit",
        faulty('kind = "reset"\npoisson = 30\n'),
        "x.toml:11: fault[0].poisson = 30: a duration needs a unit, like '30s'",
    ),
    (
        "every_zero",
        faulty('kind = "reset"\nevery = "0s"\n'),
        "x.toml:11: fault[0].every = '0s': must be > 0",
    ),
    (
        "message_fault_every_without_duration",
        faulty('kind = "drop"\nevery = "2s"\n'),
        "x.toml:9: fault[0].duration: missing: required with 'every' (how long each occurrence"
        " lasts)",
    ),
    (
        "message_fault_limit_without_repeating_schedule",
        faulty('kind = "drop"\nlimit = 3\n'),
        "x.toml:11: fault[0].limit = 3: only allowed with every or poisson on a message-level"
        " fault (it counts their occurrences)",
    ),
    (
        "limit_zero",
        faulty('kind = "reset"\nevery = "1s"\nlimit = 0\n'),
        "x.toml:12: fault[0].limit = 0: must be >= 1",
    ),
    (
        "window_ends_before_it_starts",
        faulty('kind = "drop"\nwindow = { start = "10s", end = "5s" }\n'),
        "x.toml:11: fault[0].window.end = '5s': must be after start ('10s')",
    ),
    (
        "window_not_a_table",
        faulty('kind = "drop"\nwindow = "10s"\n'),
        "x.toml:11: fault[0].window = '10s': must be a table like { start = '10s', end = '40s' }",
    ),
    (
        "window_without_end",
        faulty('kind = "drop"\nwindow = { start = "1s" }\n'),
        "x.toml:11: fault[0].window.end: missing: required (a duration > start)",
    ),
    (
        "window_with_duration",
        faulty('kind = "stall"\nwindow = { start = "1s", end = "2s" }\nduration = "1s"\n'),
        "x.toml:12: fault[0].duration: together with 'window': the window's end is when it ends",
    ),
    # -- message kinds
    (
        "delay_without_latency",
        faulty('kind = "delay"\n'),
        "x.toml:9: fault[0].latency: missing: required (a duration like '200ms',"
        " or { dist = ... })",
    ),
    (
        "latency_without_unit",
        faulty('kind = "delay"\nlatency = 200\n'),
        "x.toml:11: fault[0].latency = 200: a duration needs a unit, like '200s'",
    ),
    (
        "latency_unknown_dist",
        faulty('kind = "delay"\nlatency = { dist = "normall", mean = "1s", std = "1s" }\n'),
        "x.toml:11: fault[0].latency.dist = 'normall': unknown distribution; did you mean"
        " 'normal'? (allowed: uniform, normal, pareto)",
    ),
    (
        "latency_table_without_dist",
        faulty('kind = "delay"\nlatency = { min = "1s", max = "2s" }\n'),
        "x.toml:11: fault[0].latency.dist: missing: required (one of uniform, normal, pareto)",
    ),
    (
        "latency_key_of_another_dist",
        faulty(
            'kind = "delay"\nlatency = { dist = "normal", mean = "1s", std = "1s", max = "2s" }\n'
        ),
        "x.toml:11: fault[0].latency.max: unknown key (allowed: dist, mean, std)",
    ),
    (
        "uniform_latency_min_above_max",
        faulty('kind = "delay"\nlatency = { dist = "uniform", min = "2s", max = "1s" }\n'),
        "x.toml:11: fault[0].latency.min = '2s': must be <= max ('1s')",
    ),
    (
        "normal_latency_without_std",
        faulty('kind = "delay"\nlatency = { dist = "normal", mean = "1s" }\n'),
        "x.toml:11: fault[0].latency.std: missing: required (a duration >= 0)",
    ),
    (
        "pareto_shape_zero",
        faulty('kind = "delay"\nlatency = { dist = "pareto", scale = "10ms", shape = 0 }\n'),
        "x.toml:11: fault[0].latency.shape = 0: must be > 0",
    ),
    (
        "pareto_max_below_scale",
        faulty(
            'kind = "delay"\n'
            'latency = { dist = "pareto", scale = "10ms", shape = 1, max = "1ms" }\n'
        ),
        "x.toml:11: fault[0].latency.scale = '10ms': must be <= max ('1ms')",
    ),
    (
        "keep_order_not_a_boolean",
        faulty('kind = "delay"\nlatency = "1s"\nkeep_order = "yes"\n'),
        "x.toml:12: fault[0].keep_order = 'yes': must be true or false",
    ),
    (
        "copies_too_many",
        faulty('kind = "duplicate"\ncopies = 11\n'),
        "x.toml:11: fault[0].copies = 11: must be an integer from 1 to 10",
    ),
    (
        "depth_zero",
        faulty('kind = "reorder"\ndepth = 0\n'),
        "x.toml:11: fault[0].depth = 0: must be an integer from 1 to 100",
    ),
    (
        "corrupt_mode_unknown",
        faulty('kind = "corrupt"\nmode = "truncated"\n'),
        "x.toml:11: fault[0].mode = 'truncated': unknown mode; did you mean 'truncate'?"
        " (allowed: invalid_json, truncate, wrong_types)",
    ),
    (
        "burst_loss_rate_of_one",
        faulty('kind = "burst_loss"\nloss = 1\nburst = 2\n'),
        "x.toml:11: fault[0].loss = 1: must be between 0 and 1, both excluded",
    ),
    (
        "burst_loss_bursts_too_short_for_the_rate",
        faulty('kind = "burst_loss"\nloss = 0.9\nburst = 2\n'),
        "x.toml:12: fault[0].burst = 2: must be >= 9 (loss / (1 - loss)) for a mean loss rate"
        " of 0.9",
    ),
    (
        "burst_loss_burst_below_one",
        faulty('kind = "burst_loss"\nloss = 0.1\nburst = 0.5\n'),
        "x.toml:12: fault[0].burst = 0.5: must be >= 1",
    ),
    # -- connection kinds
    (
        "close_code_reserved",
        faulty('kind = "disconnect"\ncode = 1005\n'),
        "x.toml:11: fault[0].code = 1005: must be a close code a server may send: 1000-1003,"
        " 1007-1014 or 3000-4999",
    ),
    (
        "close_code_too_high",
        faulty('kind = "mass_disconnect"\nat = "1s"\ncode = 5000\n'),
        "x.toml:12: fault[0].code = 5000: must be a close code a server may send: 1000-1003,"
        " 1007-1014 or 3000-4999",
    ),
    (
        "close_code_a_string",
        faulty('kind = "disconnect"\ncode = "1000"\n'),
        "x.toml:11: fault[0].code = '1000': must be an integer",
    ),
    (
        "close_reason_too_long_in_utf8",
        faulty('kind = "disconnect"\nreason = "' + "é" * 62 + '"\n'),
        "x.toml:11: fault[0].reason = '" + "é" * 58 + "…: is 124 bytes in UTF-8:"
        " a close reason has at most 123",
    ),
    (
        "stall_duration_not_a_duration",
        faulty('kind = "stall"\nduration = "never"\n'),
        f"x.toml:11: fault[0].duration = 'never': must be 'forever' or {DURATIONS}",
    ),
    (
        "throttle_without_rate",
        faulty('kind = "throttle"\n'),
        "x.toml:9: fault[0].bytes_per_s: missing: required (a number of bytes per second > 0)",
    ),
    (
        "throttle_rate_zero",
        faulty('kind = "throttle"\nbytes_per_s = 0\n'),
        "x.toml:11: fault[0].bytes_per_s = 0: must be > 0",
    ),
    # -- server kinds
    (
        "outage_without_duration",
        faulty('kind = "outage"\nat = "1s"\n'),
        "x.toml:9: fault[0].duration: missing: required (how long the outage lasts), or a window",
    ),
    (
        "outage_without_schedule",
        faulty('kind = "outage"\nduration = "1s"\n'),
        "x.toml:9: fault[0]: no schedule: needs one of at, every, window or poisson",
    ),
    (
        "outage_retry_after_negative",
        faulty('kind = "outage"\nat = "1s"\nduration = "1s"\nretry_after = "-1s"\n'),
        "x.toml:13: fault[0].retry_after = '-1s': must be >= 0",
    ),
    (
        "mass_disconnect_without_schedule",
        faulty('kind = "mass_disconnect"\n'),
        "x.toml:9: fault[0]: no schedule: needs one of at, every, window or poisson",
    ),
    (
        "reject_neither_status_nor_delay",
        faulty('kind = "reject"\n'),
        "x.toml:9: fault[0].status: missing: required (401, 403, 429 or 503), or a delay",
    ),
    (
        "reject_status_not_allowed",
        faulty('kind = "reject"\nstatus = 500\n'),
        "x.toml:11: fault[0].status = 500: must be one of 401, 403, 429, 503",
    ),
    (
        "reject_status_and_delay",
        faulty('kind = "reject"\nstatus = 429\ndelay = "1s"\n'),
        "x.toml:12: fault[0].delay: together with 'status': a reject refuses (status) or delays"
        " (delay)",
    ),
    (
        "reject_retry_after_with_401",
        faulty('kind = "reject"\nstatus = 401\nretry_after = "1s"\n'),
        "x.toml:12: fault[0].retry_after = '1s': only allowed with status 429 or 503",
    ),
    (
        "reject_retry_after_with_delay",
        faulty('kind = "reject"\ndelay = "1s"\nretry_after = "1s"\n'),
        "x.toml:12: fault[0].retry_after = '1s': only allowed with status 429 or 503",
    ),
    (
        "respond_unknown",
        faulty('kind = "outage"\nat = "1s"\nduration = "1s"\nrespond = "ws"\n'),
        "x.toml:13: fault[0].respond = 'ws': unknown respond (allowed: http, close)",
    ),
    (
        "respond_on_a_delay",
        faulty('kind = "reject"\ndelay = "1s"\nrespond = "close"\n'),
        "x.toml:12: fault[0].respond = 'close': only allowed with status: a delayed handshake"
        " is accepted, not refused",
    ),
    (
        "close_code_without_respond_close",
        faulty('kind = "reject"\nstatus = 401\nclose_code = 4401\n'),
        "x.toml:12: fault[0].close_code = 4401: only allowed with respond = 'close' (an HTTP"
        " refusal has a status, not a close code)",
    ),
    (
        "close_code_reserved",
        faulty('kind = "reject"\nstatus = 401\nrespond = "close"\nclose_code = 1006\n'),
        "x.toml:13: fault[0].close_code = 1006: must be a close code a server may send:"
        " 1000-1003, 1007-1014 or 3000-4999",
    ),
    (
        "close_code_on_an_outage",
        faulty('kind = "outage"\nat = "1s"\nduration = "1s"\nclose_code = 4000\n'),
        "x.toml:13: fault[0].close_code: not for kind 'outage' (only for reject)",
    ),
    (
        "reject_every_without_duration",
        faulty('kind = "reject"\nstatus = 503\nevery = "1m"\n'),
        "x.toml:9: fault[0].duration: missing: required with 'every' (how long each occurrence"
        " lasts)",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_fault_gives_one_exact_message(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_every_problem_of_every_fault_is_reported() -> None:
    text = faulty(
        'kind = "drop"\nprobability = 2\n'
        '[[fault]]\nkind = "disconnect"\ncode = 1\n'
        '[[fault]]\nkind = "nope"\n'
    )
    assert [p.split(":")[1] for p in problems_of(text)] == ["11", "14", "16"]


def test_a_misspelt_kind_still_checks_the_other_keys() -> None:
    assert problems_of(faulty('kind = "dorp"\nprobabilty = 1\n'))[1].startswith(
        "x.toml:11: fault[0].probabilty: unknown key; did you mean 'probability'?"
    )


def test_an_unknown_stream_is_reported_with_a_mistake_in_the_streams() -> None:
    """All at once: a stream that fails for another reason still has its name, and a
    fault naming no stream is told so in the same run."""
    text = '[scenario]\nname = "t"\n[[stream]]\nname = "a"\n'
    text += '[[fault]]\nkind = "drop"\nstreams = ["zz"]\n'
    assert problems_of(text) == [
        "x.toml:3: stream[0]: no schedule: needs one of every, rate, at or burst",
        "x.toml:7: fault[0].streams[0] = 'zz': unknown stream (allowed: a)",
    ]


def test_unknown_streams_are_not_reported_when_a_stream_has_no_name() -> None:
    text = '[scenario]\nname = "t"\n[[stream]]\nevery = "1s"\n'
    text += '[[fault]]\nkind = "drop"\nstreams = ["zz"]\n'
    assert [p for p in problems_of(text) if "fault" in p] == []


# ============================================================================ valid input


def test_a_scenario_without_faults_has_none() -> None:
    assert parse_scenario(HEAD).faults == ()


NO = FaultSchedule()
ALL = FaultTarget()

VALID: list[tuple[str, Fault]] = [
    ('kind = "drop"\n', Fault("fault[0]", Drop())),
    ('kind = "drop"\nname = "lossy"\n', Fault("lossy", Drop())),
    ('kind = "delay"\nlatency = "200ms"\n', Fault("fault[0]", Delay(FixedLatency(200 * MS)))),
    (
        'kind = "delay"\nlatency = { dist = "uniform", min = "50ms", max = "300ms" }\n'
        "keep_order = true\n",
        Fault("fault[0]", Delay(UniformLatency(50 * MS, 300 * MS), keep_order=True)),
    ),
    (
        'kind = "delay"\nlatency = { dist = "normal", mean = "100ms", std = "20ms" }\n',
        Fault("fault[0]", Delay(NormalLatency(100 * MS, 20 * MS))),
    ),
    (
        'kind = "delay"\nlatency = { dist = "pareto", scale = "20ms", shape = 1.5 }\n',
        Fault("fault[0]", Delay(ParetoLatency(20 * MS, 1.5))),
    ),
    (
        'kind = "delay"\nlatency = { dist = "pareto", scale = "20ms", shape = 2, max = "5s" }\n',
        Fault("fault[0]", Delay(ParetoLatency(20 * MS, 2.0, 5 * S))),
    ),
    ('kind = "duplicate"\n', Fault("fault[0]", Duplicate(1))),
    ('kind = "duplicate"\ncopies = 10\n', Fault("fault[0]", Duplicate(10))),
    ('kind = "reorder"\ndepth = 100\n', Fault("fault[0]", Reorder(100))),
    ('kind = "corrupt"\n', Fault("fault[0]", Corrupt(CorruptMode.INVALID_JSON))),
    (
        'kind = "corrupt"\nmode = "wrong_types"\n',
        Fault("fault[0]", Corrupt(CorruptMode.WRONG_TYPES)),
    ),
    ('kind = "burst_loss"\nloss = 0.9\nburst = 9\n', Fault("fault[0]", BurstLoss(0.9, 9.0))),
    ('kind = "disconnect"\n', Fault("fault[0]", Disconnect(1000, ""))),
    (
        'kind = "disconnect"\ncode = 4999\nreason = "' + "é" * 61 + '"\nat = "30s"\n',
        Fault("fault[0]", Disconnect(4999, "é" * 61), FaultSchedule(FaultAt(30 * S))),
    ),
    (
        'kind = "reset"\npoisson = "5m"\n',
        Fault("fault[0]", Reset(), FaultSchedule(FaultPoisson(300 * S))),
    ),
    ('kind = "stall"\n', Fault("fault[0]", Stall())),
    ('kind = "stall"\nduration = "forever"\n', Fault("fault[0]", Stall())),
    (
        'kind = "stall"\nat = "1m"\nduration = "45s"\n',
        Fault("fault[0]", Stall(), FaultSchedule(FaultAt(60 * S), 45 * S)),
    ),
    (
        'kind = "throttle"\nbytes_per_s = 2048\nwindow = { start = "30s", end = "90s" }\n',
        Fault("fault[0]", Throttle(2048.0), FaultSchedule(FaultWindow(30 * S, 90 * S))),
    ),
    (
        'kind = "outage"\nevery = "10m"\nduration = "20s"\n',
        Fault("fault[0]", Outage(20 * S), FaultSchedule(FaultEvery(600 * S), 20 * S)),
    ),
    (
        'kind = "outage"\nwindow = { end = "1m" }\nretry_after = "0s"\n',
        Fault("fault[0]", Outage(0), FaultSchedule(FaultWindow(0, 60 * S))),
    ),
    (
        'kind = "outage"\nwindow = { start = "10s", end = "1m" }\n',
        Fault("fault[0]", Outage(50 * S), FaultSchedule(FaultWindow(10 * S, 60 * S))),
    ),
    (
        'kind = "reject"\nstatus = 401\nafter_connections = 3\nlimit = 2\n',
        Fault("fault[0]", Reject(401), FaultSchedule(limit=2), FaultTarget(after_connections=3)),
    ),
    (
        'kind = "reject"\nstatus = 429\nretry_after = "10s"\n',
        Fault("fault[0]", Reject(429, retry_after_ns=10 * S)),
    ),
    (
        'kind = "outage"\nat = "1s"\nduration = "5s"\nrespond = "close"\n',
        Fault("fault[0]", Outage(5 * S, Respond.CLOSE), FaultSchedule(FaultAt(S), 5 * S)),
    ),
    (
        'kind = "reject"\nstatus = 403\nrespond = "close"\n',
        Fault("fault[0]", Reject(403, respond=Respond.CLOSE, close_code=4403)),
    ),
    (
        'kind = "reject"\nstatus = 503\nrespond = "close"\n',
        Fault("fault[0]", Reject(503, respond=Respond.CLOSE, close_code=1013)),
    ),
    (
        'kind = "reject"\nstatus = 401\nrespond = "close"\nclose_code = 1008\n',
        Fault("fault[0]", Reject(401, respond=Respond.CLOSE, close_code=1008)),
    ),
    (
        'kind = "reject"\nstatus = 401\nrespond = "http"\n',
        Fault("fault[0]", Reject(401)),
    ),
    (
        'kind = "reject"\ndelay = "3s"\npoisson = "1m"\nduration = "10s"\n',
        Fault("fault[0]", Reject(delay_ns=3 * S), FaultSchedule(FaultPoisson(60 * S), 10 * S)),
    ),
    (
        'kind = "mass_disconnect"\nat = "3m"\n',
        Fault("fault[0]", MassDisconnect(1001, ""), FaultSchedule(FaultAt(180 * S))),
    ),
    # -- targets
    (
        'kind = "drop"\nstreams = ["b"]\nconnections = [0, 2]\nafter_connections = 1\n'
        "probability = 0.25\nevery_nth = 3\n",
        Fault("fault[0]", Drop(), NO, FaultTarget(("b",), ConnectionList((0, 2)), 1, 0.25, 3)),
    ),
    (
        'kind = "drop"\nconnections = { fraction = 0.5 }\n',
        Fault("fault[0]", Drop(), NO, FaultTarget(connections=ConnectionFraction(0.5))),
    ),
    (
        'kind = "stall"\nconnections = { every = 3 }\n',
        Fault("fault[0]", Stall(), NO, FaultTarget(connections=ConnectionEvery(3))),
    ),
    (
        'kind = "drop"\nmatch = { "data.level" = "warning", type = "a", data = { n = [1, 2] } }\n',
        Fault(
            "fault[0]",
            Drop(),
            NO,
            FaultTarget(
                match=((("data", "level"), "warning"), (("type",), "a"), (("data", "n"), [1, 2]))
            ),
        ),
    ),
    # -- schedules of message faults
    (
        'kind = "drop"\nevery = "1m"\nduration = "5s"\nlimit = 3\n',
        Fault("fault[0]", Drop(), FaultSchedule(FaultEvery(60 * S), 5 * S, 3)),
    ),
    ('kind = "drop"\nat = "1m"\n', Fault("fault[0]", Drop(), FaultSchedule(FaultAt(60 * S)))),
]


@pytest.mark.parametrize(
    ("body", "expected"), VALID, ids=[b.split("\n")[0] + f"-{i}" for i, (b, _) in enumerate(VALID)]
)
def test_valid_fault_builds_its_model(body: str, expected: Fault) -> None:
    assert one_fault(body) == expected


def test_each_kind_has_its_level() -> None:
    levels = {kind: kind.level for kind in FaultKind}
    assert [k.value for k, v in levels.items() if v is FaultLevel.MESSAGE] == MESSAGE_KINDS.split(
        ", "
    )
    assert [k.value for k, v in levels.items() if v is FaultLevel.SERVER] == [
        "outage",
        "reject",
        "mass_disconnect",
    ]


def test_faults_keep_their_file_order_and_reach_the_planner() -> None:
    text = faulty(
        'kind = "drop"\nname = "one"\n[[fault]]\nkind = "reset"\nname = "two"\n'
        '[[fault]]\nkind = "outage"\nat = "1s"\nduration = "1s"\n'
    )
    scenario = parse_scenario(text)
    assert [f.name for f in scenario.faults] == ["one", "two", "fault[2]"]
    plan = plan_faults(scenario)
    assert [f.name for f in plan.message_faults] == ["one"]
    assert [f.name for f in plan.connection_faults] == ["two"]
    assert [f.name for f in plan.server_faults] == ["fault[2]"]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["drop", "reset", "stall", "outage", "reject", "delay", "nope"]),
    st.dictionaries(
        st.sampled_from(
            [
                "probability",
                "at",
                "every",
                "duration",
                "limit",
                "code",
                "status",
                "streams",
                "connections",
                "latency",
                "window",
                "match",
                "loss",
            ]
        ),
        st.one_of(
            st.integers(-2, 5000),
            st.floats(allow_nan=False),
            st.text(max_size=5),
            st.sampled_from(["1s", "0s", "forever", "-1s"]),
            st.lists(st.integers(0, 3), max_size=2),
            st.just({"end": "1s"}),
        ),
        max_size=4,
    ),
)
def test_any_fault_table_gives_a_fault_or_one_line_problems(
    kind: str, keys: dict[str, object]
) -> None:
    body = f"kind = {kind!r}\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())
    try:
        parse_scenario(faulty(body), "x.toml")
    except ScenarioError as e:
        for problem in e.problems:
            assert len(str(problem).splitlines()) == 1
            if problem.message.startswith("not a text file"):
                continue  # a NUL in a value: the whole file is refused, with no line
            assert problem.line is not None and problem.line >= 9


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.5"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


# ============================================================================ docs


DOCS = Path(__file__).resolve().parents[1] / "docs" / "faults.md"
DOC_STREAMS = (
    '[scenario]\nname = "docs"\n'
    '[[stream]]\nname = "trades"\nevery = "1s"\n'
    '[[stream]]\nname = "alerts"\nevery = "5s"\n'
)


def doc_examples() -> list[str]:
    """The scenarios in docs/faults.md (fault tables alone get DOC_STREAMS); faults files
    for `sim replay --faults` (a [scenario] but no stream) are left to the test below."""
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [
        b if "[scenario]" in b else DOC_STREAMS + b
        for b in blocks
        if "[[stream]]" in b or "[scenario]" not in b
    ]


def test_the_docs_have_an_example_of_every_kind() -> None:
    kinds = {f.kind for text in doc_examples() for f in parse_scenario(text).faults}
    assert kinds == set(FaultKind)


@pytest.mark.parametrize("text", doc_examples())
def test_every_toml_example_in_the_docs_is_valid(text: str) -> None:
    scenario = parse_scenario(text, "docs.toml")
    assert scenario.faults
    assert plan_report(scenario, None, 60 * S, 2)


def test_the_docs_faults_file_example_is_valid_for_a_recording_of_the_dashboard() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)
    files = [b for b in blocks if "[scenario]" in b and "[[stream]]" not in b]
    dashboard_file = DOCS.parents[1] / "scenarios" / "energy-dashboard.toml"
    dashboard = [s.name for s in load_scenario(dashboard_file).streams]
    assert files
    for text in files:
        assert parse_faults(text, dashboard, "faults.toml").faults


def test_the_plan_report_and_the_summary_show_a_fault_as_its_file_would() -> None:
    """``match`` as the TOML writes it (not a Python repr), and ``--max-hits 0`` as
    counts only."""
    from simulator.cli.summary import describe_faults

    text = doc_examples()[0]
    scenario = parse_scenario(text, "docs.toml")
    matched = [line for line in describe_faults(scenario.faults) if "match=" in line]
    assert matched and all('match={ "' in line and "[[" not in line for line in matched)
    report = plan_report(scenario, None, 60 * S, 1, max_hits=0)
    hit_lines = [line for line in report if line.startswith("    conn ")]
    assert hit_lines and all(line.endswith("messages hit") for line in hit_lines)
