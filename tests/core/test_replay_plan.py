"""Properties of the pure replay plan: recorded order kept, replies gated on the client
message they answer, times scaled by speed, and the client-message matching rule."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.jsonvalues import json_equal, json_key
from simulator.core.replay_plan import (
    Close,
    ExpectClient,
    ExpectedIndex,
    Frame,
    Push,
    Refusal,
    Reply,
    Row,
    match,
    plan_connection,
    same_message,
)
from simulator.errors import UsageError

MS = 1_000_000
PING = b'{"type":"ping","id":1}'
PONG = b'{"type":"pong","id":1}'


def tick(n: int) -> bytes:
    return b'{"type":"tick","n":%d}' % n


RECORDED = [
    Row(100 * MS, "server", "open"),
    Row(110 * MS, "server", "text", "tick", tick(1)),
    Row(112 * MS, "client", "text", None, PING),
    Row(113 * MS, "server", "text", None, PONG),
    Row(130 * MS, "server", "text", "tick", tick(2)),
    Row(140 * MS, "server", "close", close_code=1001, close_reason="going away"),
    Row(150 * MS, "server", "text", "tick", tick(3)),
]


def test_reply_is_gated_on_the_client_message_it_follows() -> None:
    plan = plan_connection(RECORDED, speed=1.0)
    assert plan.steps == (
        Push(10 * MS, tick(1), stream="tick"),
        ExpectClient(0, PING),
        Reply(0, 1 * MS, PONG),
        Push(30 * MS, tick(2), stream="tick"),
        Close(40 * MS, 1001, "going away"),
    )
    assert plan.duration_ns == 40 * MS


def test_speed_divides_times_and_none_removes_waiting() -> None:
    fast = plan_connection(RECORDED, speed=10.0)
    assert fast.steps[0] == Push(1 * MS, tick(1), stream="tick")
    assert fast.steps[2] == Reply(0, MS // 10, PONG)
    assert fast.duration_ns == 4 * MS
    instant = plan_connection(RECORDED, speed=None)
    assert [getattr(s, "at_ns", 0) for s in instant.steps] == [0] * 5
    assert instant.steps[2] == Reply(0, 0, PONG)


def test_ungated_plans_push_every_server_message_at_its_offset() -> None:
    plan = plan_connection(RECORDED, speed=1.0, gated=False)
    assert plan.steps == (
        Push(10 * MS, tick(1), stream="tick"),
        Push(13 * MS, PONG),
        Push(30 * MS, tick(2), stream="tick"),
        Close(40 * MS, 1001, "going away"),
    )


def test_client_close_is_no_step_and_later_rows_are_ignored() -> None:
    rows = [*RECORDED[:3], Row(120 * MS, "client", "close", close_code=1000), *RECORDED[3:]]
    assert plan_connection(rows).steps == (
        Push(10 * MS, tick(1), stream="tick"),
        ExpectClient(0, PING),
    )


def test_null_stream_message_not_after_a_client_message_is_a_push() -> None:
    rows = [
        Row(0, "server", "open"),
        Row(5 * MS, "server", "text", None, b"hello"),
        Row(6 * MS, "client", "text", None, PING),
        Row(7 * MS, "server", "text", "tick", tick(1)),
        Row(9 * MS, "server", "text", None, PONG),  # after a stream message: a push
        Row(10 * MS, "server", "binary", "blob", b"\x00\x01"),
    ]
    assert plan_connection(rows).steps == (
        Push(5 * MS, b"hello"),
        ExpectClient(0, PING),
        Push(7 * MS, tick(1), stream="tick"),
        Push(9 * MS, PONG),
        Push(10 * MS, b"\x00\x01", Frame.BINARY, "blob"),
    )


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan])
def test_speed_must_be_positive_or_none(speed: float) -> None:
    with pytest.raises(UsageError, match="speed="):
        plan_connection(RECORDED, speed=speed)


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 50 * MS),
        st.sampled_from(["server", "client"]),
        st.sampled_from(["text", "binary", "ping", "fault"]),
        st.sampled_from([None, "tick"]),
        st.binary(max_size=4),
    ),
    max_size=30,
)


def _rows(raw: list[tuple[int, str, str, str | None, bytes]]) -> list[Row]:
    rows, t = [Row(0, "server", "open")], 0
    for gap, sender, kind, stream, payload in raw:
        t += gap
        rows.append(Row(t, sender, kind, stream, payload))
    return rows


@settings(deadline=None)
@given(rows_strategy, st.sampled_from([None, 0.5, 1.0, 7.0]))
def test_server_messages_keep_their_recorded_order(
    raw: list[tuple[int, str, str, str | None, bytes]], speed: float | None
) -> None:
    rows = _rows(raw)
    plan = plan_connection(rows, speed)
    sent = [s.payload for s in plan.steps if isinstance(s, Push | Reply)]
    assert sent == [
        r.payload for r in rows if r.sender == "server" and r.kind in ("text", "binary")
    ]
    expected = [s.payload for s in plan.steps if isinstance(s, ExpectClient)]
    assert expected == [
        r.payload for r in rows if r.sender == "client" and r.kind in ("text", "binary")
    ]


@settings(deadline=None)
@given(rows_strategy, st.sampled_from([None, 1.0, 3.0]))
def test_every_reply_comes_after_the_message_it_answers_and_pushes_never_go_back(
    raw: list[tuple[int, str, str, str | None, bytes]], speed: float | None
) -> None:
    plan = plan_connection(_rows(raw), speed)
    seen: set[int] = set()
    last_push = 0
    for step in plan.steps:
        if isinstance(step, ExpectClient):
            seen.add(step.index)
        elif isinstance(step, Reply):
            assert step.answers in seen and step.delay_ns >= 0
        elif isinstance(step, Push):
            assert last_push <= step.at_ns <= plan.duration_ns
            last_push = step.at_ns


@pytest.mark.parametrize(
    ("recorded", "got", "frame", "same"),
    [
        (PING, PING, Frame.TEXT, True),
        (PING, b'{ "id": 1, "type": "ping" }', Frame.TEXT, True),  # key order, spacing
        (PING, b'{"type":"ping","id":1.0}', Frame.TEXT, True),  # numbers by value
        (PING, b'{"type":"ping","id":true}', Frame.TEXT, False),  # true is not 1
        (PING, b'{"type":"ping","id":2}', Frame.TEXT, False),
        (b"not json", b"not json", Frame.TEXT, True),  # byte-equal fallback
        (b"not json", b"not  json", Frame.TEXT, False),
        (PING, PING, Frame.BINARY, False),  # a text message is not a binary one
    ],
)
def test_client_message_matching(recorded: bytes, got: bytes, frame: Frame, same: bool) -> None:
    assert same_message(ExpectClient(0, recorded), got, frame) is same


def test_match_takes_the_earliest_unmatched_expectation() -> None:
    expected = (ExpectClient(0, PING), ExpectClient(1, b"x"), ExpectClient(2, PING))
    assert match(expected, set(), PING, Frame.TEXT) == 0
    assert match(expected, {0}, PING, Frame.TEXT) == 2
    assert match(expected, {0, 2}, PING, Frame.TEXT) is None
    assert match(expected, set(), b"y", Frame.TEXT) is None


JSON_LEAVES = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.5])
JSON_VALUES = st.recursive(
    JSON_LEAVES | st.sampled_from(["a", "b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner),
    max_leaves=6,
)


@given(JSON_VALUES, JSON_VALUES)
def test_json_keys_are_equal_exactly_when_the_values_are_json_equal(a: object, b: object) -> None:
    assert (json_key(a) == json_key(b)) is json_equal(a, b)


MESSAGES = st.one_of(
    JSON_VALUES.map(lambda v: (json.dumps(v).encode(), Frame.TEXT)),
    st.sampled_from([b"not json", b"{", b"\x00"]).map(lambda p: (p, Frame.TEXT)),
    st.sampled_from([b"1", b"\x00", b"x"]).map(lambda p: (p, Frame.BINARY)),
)


@settings(deadline=None)
@given(st.lists(MESSAGES, max_size=12), st.lists(MESSAGES, max_size=12))
def test_the_index_matches_as_match_does(
    recorded: list[tuple[bytes, Frame]], arriving: list[tuple[bytes, Frame]]
) -> None:
    """ExpectedIndex (a dict lookup) picks the same expectation as match() (a scan),
    message after message, over the whole of a round."""
    expected = tuple(ExpectClient(i, p, f) for i, (p, f) in enumerate(recorded))
    index = ExpectedIndex(expected)
    cursors: dict[Hashable, int] = {}
    matched: set[int] = set()
    for payload, frame in arriving:
        want = match(expected, matched, payload, frame)
        assert index.match(cursors, payload, frame) == want
        if want is not None:
            matched.add(want)


def test_plan_module_imports_no_io() -> None:
    probe = (
        "import sys; before = set(sys.modules); import simulator.core.replay_plan; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [m for m in ("asyncio", "websockets", "polars", "random") if m in loaded] == []


def refused_open(handshake: dict[str, object]) -> list[Row]:
    """A handshake the recording proxy's upstream refused, as the proxy records it."""
    return [
        Row(0, "server", "open", payload=json.dumps(handshake).encode()),
        Row(1 * MS, "server", "error", payload=b"upstream: 503 Service Unavailable"),
        Row(2 * MS, "server", "close", close_code=1006, close_reason="upstream: 503"),
    ]


def test_a_refused_handshake_plans_its_status_and_retry_after_and_no_steps() -> None:
    headers = [["Retry-After", "9"], ["Content-Length", "8"]]
    plan = plan_connection(refused_open({"path": "/", "status": 503, "response_headers": headers}))
    assert plan.refused == Refusal(503, retry_after_s=9)
    assert plan.steps == ()
    # No Retry-After, or one given as a date (a moment of the recorded session): none.
    assert plan_connection(refused_open({"status": 502})).refused == Refusal(502)
    dated = [["retry-after", "Fri, 04 Dec 2026 22:30:01 GMT"]]
    later = plan_connection(refused_open({"status": 429, "response_headers": dated}))
    assert later.refused == Refusal(429)
    # An accepted handshake has no status.
    assert plan_connection(RECORDED).refused is None
