"""Properties of the pure client-message handling: total on any input, subscription set
algebra, reply templates, and the ``errors`` switch."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.model import JSON, Protocol, Rule
from simulator.core.protocol import (
    Outcome,
    Reply,
    Subscriptions,
    binary_refused,
    handle_text,
    render_reply,
)

TYPES = ("alpha", "beta", "gamma")
ALL = frozenset(TYPES)
NOW = "2026-01-01T00:00:00.000Z"
PROTOCOL = Protocol(
    rules=(
        Rule("echo", (("type", "echo"),), {"type": "echoed", "value": "{request.value}"}),
        Rule("slow", (("type", "slow"), ("fast", False)), "later", 5_000_000),
    )
)
QUIET = dataclasses.replace(PROTOCOL, errors=False)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Reachable states: "every stream" is always None, never the full set.
subscriptions = st.none() | st.frozensets(st.sampled_from(TYPES)).filter(lambda s: s != ALL)
stream_lists = st.lists(st.sampled_from(TYPES), max_size=4)
# Messages that look like what clients send: known types, plausible and odd fields.
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["ping", "subscribe", "unsubscribe", "echo", "slow", "x"])
        | json_values,
        "streams": st.just("*") | stream_lists | json_values,
        "id": json_values,
        "value": json_values,
        "fast": json_values,
    },
)
frames = (
    st.text()
    | st.binary()
    | json_values.map(orjson.dumps)
    | messages.map(orjson.dumps)
    | messages.map(lambda m: orjson.dumps(m).decode())
)


def handle(message: dict[str, JSON], subs: Subscriptions = None) -> Outcome:
    return handle_text(PROTOCOL, orjson.dumps(message), subs, TYPES, NOW)


def subscribe(streams: JSON, subs: Subscriptions) -> Subscriptions:
    outcome = handle({"type": "subscribe", "streams": streams}, subs)
    assert outcome.error is None, outcome
    return outcome.subscriptions


def unsubscribe(streams: JSON, subs: Subscriptions) -> Subscriptions:
    outcome = handle({"type": "unsubscribe", "streams": streams}, subs)
    assert outcome.error is None, outcome
    return outcome.subscriptions


# ----------------------------------------------------------------------------- totality


@given(frames, subscriptions)
def test_handle_text_never_raises_and_replies_are_sendable(
    frame: str | bytes, subs: Subscriptions
) -> None:
    outcome = handle_text(PROTOCOL, frame, subs, TYPES, NOW)
    for reply in outcome.replies:
        orjson.dumps(reply.message)  # what the server sends must serialise
        assert reply.delay_ns >= 0
    if outcome.error is not None:
        assert outcome.subscriptions == subs
        (reply,) = outcome.replies
        assert isinstance(reply.message, dict)
        assert reply.message["type"] == "error"
        assert reply.message["error"] == outcome.error
    assert outcome.subscriptions is None or outcome.subscriptions <= ALL


@given(subscriptions)
def test_binary_frame_is_refused_without_changing_subscriptions(subs: Subscriptions) -> None:
    outcome = binary_refused(PROTOCOL, subs)
    assert outcome.error == "binary_frame"
    assert outcome.subscriptions == subs
    assert len(outcome.replies) == 1


INVALID = [
    pytest.param(b'{"type": "ping"', "invalid_json", id="truncated"),
    pytest.param(b"\xff\xfe", "invalid_json", id="not-utf8"),
    pytest.param("", "invalid_json", id="empty"),
    pytest.param("NaN", "invalid_json", id="nan"),
    pytest.param("[" * 2000 + "]" * 2000, "invalid_json", id="too-deep"),
    pytest.param("[]", "not_an_object", id="array"),
    pytest.param("3", "not_an_object", id="number"),
    pytest.param('{"type": "nope"}', "unknown_type", id="unknown-type"),
    pytest.param('{"type": ["ping"]}', "unknown_type", id="unhashable-type"),
    pytest.param("{}", "unknown_type", id="no-type"),
    pytest.param('{"type": "subscribe", "streams": "alpha"}', "bad_streams", id="streams-str"),
    pytest.param('{"type": "subscribe", "streams": [1]}', "bad_streams", id="streams-int"),
    pytest.param('{"type": "unsubscribe", "streams": {}}', "bad_streams", id="streams-obj"),
    pytest.param('{"type": "subscribe", "streams": ["zeta"]}', "unknown_stream", id="unknown"),
    pytest.param('{"type": "unsubscribe", "streams": ["zeta"]}', "unknown_stream", id="unsub"),
]


@pytest.mark.parametrize(("frame", "code"), INVALID)
def test_invalid_message_is_refused_with_its_code(frame: str | bytes, code: str) -> None:
    outcome = handle_text(PROTOCOL, frame, frozenset({"beta"}), TYPES, NOW)
    assert outcome.error == code
    assert outcome.kind == "error"
    assert outcome.subscriptions == frozenset({"beta"})
    (reply,) = outcome.replies
    assert isinstance(reply.message, dict)
    assert reply.message["type"] == "error"
    assert reply.message["error"] == code


@given(
    kind=st.sampled_from(["subscribe", "unsubscribe"]),
    known=st.lists(st.sampled_from(sorted(TYPES)), unique=True),
    unknown=st.lists(st.text(min_size=1).filter(lambda s: s not in TYPES), min_size=1),
)
def test_an_unknown_stream_refusal_names_exactly_the_unknown_streams(
    kind: str, known: list[str], unknown: list[str]
) -> None:
    outcome = handle({"type": kind, "streams": [*known, *unknown]}, frozenset({"beta"}))
    assert outcome.error == "unknown_stream"
    assert outcome.subscriptions == frozenset({"beta"})
    (reply,) = outcome.replies
    assert isinstance(reply.message, dict)
    assert reply.message["streams"] == sorted(set(unknown))


@pytest.mark.parametrize(("frame", "code"), INVALID)
def test_errors_disabled_means_no_error_replies(frame: str | bytes, code: str) -> None:
    outcome = handle_text(QUIET, frame, None, TYPES, NOW)
    assert outcome.error == code
    assert outcome.replies == ()


@given(frames, subscriptions)
def test_errors_switch_only_silences_error_replies(frame: str | bytes, subs: Subscriptions) -> None:
    loud = handle_text(PROTOCOL, frame, subs, TYPES, NOW)
    quiet = handle_text(QUIET, frame, subs, TYPES, NOW)
    assert quiet.error == loud.error
    assert quiet.subscriptions == loud.subscriptions
    assert quiet.replies == (() if loud.error is not None else loud.replies)


# ----------------------------------------------------------------------------- ping


@given(json_values, subscriptions)
def test_ping_gets_a_pong_echoing_its_id(ping_id: JSON, subs: Subscriptions) -> None:
    outcome = handle({"type": "ping", "id": ping_id}, subs)
    (reply,) = outcome.replies
    assert reply.message == {"type": "pong", "timestamp": NOW, "id": ping_id}
    assert reply.delay_ns == 0
    assert outcome.subscriptions == subs


def test_ping_without_id_gets_a_pong_without_id() -> None:
    (reply,) = handle({"type": "ping"}).replies
    assert reply.message == {"type": "pong", "timestamp": NOW}


# ----------------------------------------------------------------------------- subscriptions


@given(st.frozensets(st.sampled_from(TYPES), min_size=1).filter(lambda s: s != ALL))
def test_first_subscribe_narrows_everything_to_what_was_asked(wanted: frozenset[str]) -> None:
    assert subscribe(sorted(wanted), None) == wanted


def test_subscribe_after_reaching_every_stream_keeps_every_stream() -> None:
    """Subscribing alpha, then beta and gamma, then alpha again still has all three."""
    subs = subscribe(["alpha"], None)
    subs = subscribe(["beta", "gamma"], subs)
    assert subs == ALL  # every stream, explicitly: no longer the narrowing default
    assert subscribe(["alpha"], subs) == ALL


@given(subscriptions, stream_lists)
def test_unsubscribe_removes(subs: Subscriptions, unwanted: list[str]) -> None:
    current = ALL if subs is None else subs
    left = current - set(unwanted)
    assert unsubscribe(unwanted, subs) == left


@given(subscriptions)
def test_star_restores_every_stream(subs: Subscriptions) -> None:
    assert subscribe("*", subs) == ALL
    outcome = handle({"type": "subscribe"}, subs)  # "streams" defaults to "*"
    assert outcome.subscriptions == ALL


@given(subscriptions)
def test_unsubscribe_star_silences_everything(subs: Subscriptions) -> None:
    assert unsubscribe("*", subs) == frozenset()


# A client's view: "subscribed" is every stream until its first subscribe, which narrows;
# after that subscribes add and unsubscribes remove; "*" goes back to the start.
operations = st.lists(
    st.tuples(st.sampled_from(["subscribe", "unsubscribe"]), st.just("*") | stream_lists),
    max_size=8,
)


@given(operations)
def test_subscription_sequence_matches_the_set_model(ops: list[tuple[str, JSON]]) -> None:
    subs: Subscriptions = None
    model, narrowing = set(TYPES), True
    for kind, streams in ops:
        wanted = set(TYPES) if streams == "*" else set(streams)  # type: ignore[arg-type]
        outcome = handle({"type": kind, "streams": streams}, subs)
        if kind == "subscribe" and streams == "*":
            model, narrowing = set(TYPES), False
        elif kind == "subscribe":
            model, narrowing = (wanted if narrowing else model | wanted), False
        else:
            model, narrowing = model - wanted, False
        subs = outcome.subscriptions
        assert subs == frozenset(model), (kind, streams)
        (ack,) = outcome.replies
        kind_ack = "subscribed" if kind == "subscribe" else "unsubscribed"
        assert ack.message == {"type": kind_ack, "streams": sorted(model)}


# ----------------------------------------------------------------------------- rules


@given(json_values)
def test_whole_string_reference_keeps_the_json_type(value: JSON) -> None:
    request: dict[str, JSON] = {"type": "echo", "value": value}
    assert render_reply("{request.value}", request, NOW) == value
    template: JSON = {"a": ["{request.value}", {"b": "{request.value}"}], "n": 1}
    assert render_reply(template, request, NOW) == {"a": [value, {"b": value}], "n": 1}


@given(json_values)
def test_reference_inside_text_is_formatted_as_text(value: JSON) -> None:
    text = render_reply("v={request.value};", {"value": value}, NOW)
    if value is None:
        expected = ""
    elif isinstance(value, str):
        expected = value
    else:
        expected = orjson.dumps(value).decode()
    assert text == f"v={expected};"


def test_missing_reference_is_null_alone_and_empty_in_text() -> None:
    assert render_reply("{request.missing}", {}, NOW) is None
    assert render_reply("[{request.missing}]", {}, NOW) == "[]"


def test_now_is_the_time_passed_in() -> None:
    assert render_reply({"at": "{now}", "s": "at {now}"}, {}, NOW) == {"at": NOW, "s": f"at {NOW}"}


@given(json_values)
def test_matching_rule_replies_with_its_rendered_template(value: JSON) -> None:
    outcome = handle({"type": "echo", "value": value})
    assert outcome.rule == "echo"
    (reply,) = outcome.replies
    assert reply.message == {"type": "echoed", "value": value}


def test_rule_needs_every_match_field_equal_and_keeps_its_delay() -> None:
    (reply,) = handle({"type": "slow", "fast": False}).replies
    assert reply == Reply("later", 5_000_000)
    # JSON false is not the number 0 (though Python says False == 0).
    assert handle({"type": "slow", "fast": 0}).error == "unknown_type"
    assert handle({"type": "slow"}).error == "unknown_type"
