"""What the server does with a message from a client: a pure function from the text
received (and the client's subscriptions) to replies and a new subscription set.

The I/O layer sends the replies (after their delays) and stores the subscriptions;
nothing here touches a socket or a clock. Replies are JSON values; ``now`` is the
ISO time the I/O layer passes in, so tests can pin it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import orjson

from simulator.core.jsonvalues import json_equal
from simulator.core.model import JSON, Protocol, Rule

#: ``None`` means "every stream"; otherwise the set of stream types the client wants.
Subscriptions = frozenset[str] | None


#: The type of the answer to a subscribe, and to an unsubscribe.
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"


def answer_types(protocol: Protocol) -> frozenset[str]:
    """The types of the messages a server sends only in answer to a client's (a pong, a
    subscribe's acknowledgement, an error): no stream of the feed."""
    return frozenset({protocol.pong_type, protocol.error_type, SUBSCRIBED, UNSUBSCRIBED})


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to send back, ``delay_ns`` after the request arrived."""

    message: JSON
    delay_ns: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one client message decided."""

    replies: tuple[Reply, ...] = ()
    subscriptions: Subscriptions = None
    error: str | None = None  # a machine-readable code when the message was refused
    rule: str | None = None  # the name of the rule that matched, if any
    kind: str = "other"  # ping, subscribe, unsubscribe, rule, error: for counting
    extra: dict[str, JSON] = field(default_factory=dict)


def error_message(
    protocol: Protocol, code: str, detail: str, streams: Sequence[str] | None = None
) -> JSON:
    """The error reply; ``streams`` names the unknown streams of an ``unknown_stream``
    refusal (so that a client can drop them from what it asks for, and ask again)."""
    message: dict[str, JSON] = {"type": protocol.error_type, "error": code, "message": detail}
    if streams is not None:
        message["streams"] = list(streams)
    return message


def handle_text(
    protocol: Protocol,
    text: str | bytes,
    subscriptions: Subscriptions,
    stream_types: Collection[str],
    now: str,
    later: Callable[[int], str] | None = None,
) -> Outcome:
    """Decide what to do with one text frame from a client.

    ``stream_types`` are the ``type`` values the scenario's streams send. ``now`` is the
    scenario time as a reply writes it; ``later(ns)`` the same ``ns`` after now, for a
    rule's reply sent after its ``delay`` (without it, ``now``). The returned
    ``subscriptions`` are the client's new ones (unchanged unless it subscribed).
    Malformed input yields an ``error`` reply (if ``protocol.errors``), never an exception.
    """
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return _refuse(protocol, subscriptions, "invalid_json", f"not valid JSON: {e}")
    if not isinstance(message, dict):
        return _refuse(
            protocol, subscriptions, "not_an_object", "messages must be JSON objects with a type"
        )
    kind = message.get("type")
    for rule in protocol.rules:
        if _matches(rule, message):
            sent_at = now if later is None or not rule.delay_ns else later(rule.delay_ns)
            reply = render_reply(rule.reply, message, sent_at)
            return Outcome(
                (Reply(reply, rule.delay_ns),), subscriptions, rule=rule.name, kind="rule"
            )
    if kind == protocol.ping_type:
        pong: dict[str, JSON] = {"type": protocol.pong_type, "timestamp": now}
        if "id" in message:
            pong["id"] = message["id"]
        return Outcome((Reply(pong),), subscriptions, kind="ping")
    if kind in (protocol.subscribe_type, protocol.unsubscribe_type):
        return _subscription(protocol, message, subscriptions, stream_types)
    return _refuse(
        protocol,
        subscriptions,
        "unknown_type",
        f"unknown message type {kind!r}; this server answers "
        f"{protocol.ping_type!r}, {protocol.subscribe_type!r}, {protocol.unsubscribe_type!r}"
        + (" and its request rules" if protocol.rules else ""),
    )


def binary_refused(protocol: Protocol, subscriptions: Subscriptions) -> Outcome:
    """A binary frame where JSON text is expected."""
    return _refuse(
        protocol, subscriptions, "binary_frame", "binary frames are not accepted; send JSON text"
    )


def _refuse(
    protocol: Protocol,
    subscriptions: Subscriptions,
    code: str,
    detail: str,
    streams: Sequence[str] | None = None,
) -> Outcome:
    replies = (Reply(error_message(protocol, code, detail, streams)),) if protocol.errors else ()
    return Outcome(replies, subscriptions, error=code, kind="error")


def _subscription(
    protocol: Protocol,
    message: dict[str, JSON],
    subscriptions: Subscriptions,
    stream_types: Collection[str],
) -> Outcome:
    subscribe = message.get("type") == protocol.subscribe_type
    raw = message.get("streams", "*")
    if raw == "*":
        wanted: set[str] = set(stream_types)
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        wanted = {s for s in raw if isinstance(s, str)}
    else:
        return _refuse(
            protocol,
            subscriptions,
            "bad_streams",
            '"streams" must be a list of stream types, or "*"',
        )
    unknown = sorted(wanted - set(stream_types))
    if unknown:
        return _refuse(
            protocol,
            subscriptions,
            "unknown_stream",
            f"unknown stream(s) {', '.join(unknown)}; known: {', '.join(sorted(stream_types))}",
            unknown,
        )
    current = set(stream_types) if subscriptions is None else set(subscriptions)
    if subscribe:
        # The first subscribe narrows the default "everything" to what was asked for;
        # later ones add. ``None`` is only ever that untouched default: once a client
        # has subscribed, its set is explicit, even when it names every stream.
        new = wanted if subscriptions is None and raw != "*" else current | wanted
    else:
        new = current - wanted
    result: Subscriptions = frozenset(new)
    ack_type = SUBSCRIBED if subscribe else UNSUBSCRIBED
    streams: list[JSON] = [*sorted(new)]
    ack: dict[str, JSON] = {"type": ack_type, "streams": streams}
    return Outcome((Reply(ack),), result, kind="subscribe" if subscribe else "unsubscribe")


def _matches(rule: Rule, message: dict[str, JSON]) -> bool:
    return all(key in message and json_equal(message[key], value) for key, value in rule.match)


_REFERENCE = re.compile(r"\{(request\.[A-Za-z0-9_\-]+|now)\}")


def render_reply(template: JSON, request: dict[str, JSON], now: str) -> JSON:
    """Fill ``{request.<key>}`` and ``{now}`` in every string of ``template``.

    A string that is exactly one reference takes the referenced value with its JSON
    type (``"{request.id}"`` → ``7``); inside longer strings values are formatted as text.
    A reference to a key the request lacks becomes ``null`` (or empty text).
    """
    if isinstance(template, str):
        whole = _REFERENCE.fullmatch(template)
        if whole:
            return _lookup(whole.group(1), request, now)
        return _REFERENCE.sub(lambda m: _as_text(_lookup(m.group(1), request, now)), template)
    if isinstance(template, list):
        return [render_reply(item, request, now) for item in template]
    if isinstance(template, dict):
        return {k: render_reply(v, request, now) for k, v in template.items()}
    return template


def _lookup(name: str, request: dict[str, JSON], now: str) -> JSON:
    if name == "now":
        return now
    return request.get(name.removeprefix("request."))


def _as_text(value: JSON) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
