"""A scenario as an AsyncAPI 3.0 document: what `sim run` serves, for tools that speak it.

:func:`asyncapi_document` describes the application `sim run` is: one server (its
``ws://`` URL), one channel (``/``, the only path it serves, and any other), and

- a **send** operation and a message per stream, the payload a JSON Schema of the
  envelope and fields (:mod:`.payload_schema`), the schedule in ``x-sim-*`` extensions;
- a **receive** operation per message a client may send (ping, subscribe, unsubscribe,
  each ``[[protocol.rule]]``) with its ``reply``, and the ``error`` message bad frames get.

Extensions (all optional for readers; :mod:`.from_asyncapi` reads them back):
``x-sim-stream`` (the stream's name), ``x-sim-every`` (a duration, or ``{min, max}``),
``x-sim-rate`` (Poisson, per second), ``x-sim-at`` and ``x-sim-repeat``, ``x-sim-burst``
(``{count, spacing, every}``), ``x-sim-start``, ``x-sim-stop``, ``x-sim-first`` on a send
operation; ``x-sim-seed``, ``x-sim-mode`` and ``x-sim-duration`` on ``info``. Durations are
written as in scenario files (``"5s"``).
"""

from __future__ import annotations

import re
from typing import Final

from simulator.contracts.payload_schema import message_schema
from simulator.core.durations import format_duration
from simulator.core.model import (
    JSON,
    At,
    Burst,
    Every,
    Poisson,
    Protocol,
    Rule,
    Scenario,
    Schedule,
    Stream,
    UniformInterval,
)
from simulator.version import __version__

__all__ = ["ASYNCAPI_VERSION", "CHANNEL", "asyncapi_document", "component_name"]

ASYNCAPI_VERSION: Final = "3.0.0"
CHANNEL: Final = "feed"
SERVER: Final = "sim"
_COMPONENT_KEY = re.compile(r"[^A-Za-z0-9_.\-]")  # AsyncAPI: component keys match ^[\w.-]+$
_ERROR_CODES: Final = (
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "unknown_stream",
    "bad_streams",
    "binary_frame",
)

Doc = dict[str, JSON]


def component_name(name: str) -> str:
    """``name`` as an AsyncAPI component key (``:`` and the like become ``_``)."""
    return _COMPONENT_KEY.sub("_", name)


def asyncapi_document(scenario: Scenario) -> Doc:
    """The AsyncAPI 3.0 document of ``scenario``, as plain JSON values (dump it as YAML
    or JSON). Pure: the same scenario gives the same document."""
    messages: dict[str, JSON] = {}
    operations: dict[str, JSON] = {}
    for stream in scenario.streams:
        key = _unique(component_name(stream.name), messages)
        messages[key] = _stream_message(stream)
        operations[_unique(f"send_{key}", operations)] = _send_operation(stream, key)
    for key, reply_key, message, reply in _client_messages(scenario):
        request_key = _unique(key, messages)
        messages[request_key] = message
        reply_key = _unique(reply_key, messages)
        messages[reply_key] = reply
        operations[_unique(f"receive_{request_key}", operations)] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "messages": [_ref(request_key)],
            "reply": {"channel": {"$ref": f"#/channels/{CHANNEL}"}, "messages": [_ref(reply_key)]},
        }
    if scenario.protocol.errors:
        error_key = _unique("error", messages)
        messages[error_key] = _error_message(scenario.protocol)
        operations[_unique("send_error", operations)] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "summary": "The answer to a frame the server cannot understand",
            "messages": [_ref(error_key)],
        }
    server = scenario.server
    info: dict[str, JSON] = {
        "title": scenario.name,
        "version": __version__,
        "description": scenario.description or f"The feed of the sim scenario {scenario.name!r}",
        "x-sim-seed": scenario.seed,
        "x-sim-mode": server.mode.value,
    }
    if scenario.duration_ns is not None:
        info["x-sim-duration"] = format_duration(scenario.duration_ns)
    host = f"[{server.host}]" if ":" in server.host else server.host
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
        "servers": {
            SERVER: {
                "host": f"{host}:{server.port}",
                "protocol": "ws",
                "pathname": "/",
                "description": f"sim run {scenario.source}: one JSON object per text frame",
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/",
                "title": "The feed",
                "description": "Every message either way, on one WebSocket connection",
                "servers": [{"$ref": f"#/servers/{SERVER}"}],
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": operations,
        "components": {"messages": messages},
    }


def _unique(key: str, taken: dict[str, JSON]) -> str:
    candidate, n = key, 2
    while candidate in taken:
        candidate, n = f"{key}_{n}", n + 1
    return candidate


def _ref(message_key: str) -> JSON:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{message_key}"}


def _stream_message(stream: Stream) -> JSON:
    return {
        "name": stream.type,
        "title": stream.name,
        "summary": f"The stream {stream.name!r}",
        "contentType": "application/json",
        "payload": message_schema(stream),
        "x-sim-stream": stream.name,
    }


def _send_operation(stream: Stream, key: str) -> JSON:
    operation: dict[str, JSON] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "summary": f"{stream.name}: {_describe(stream.schedule)}",
        "messages": [_ref(key)],
    }
    operation.update(schedule_extensions(stream.schedule))
    return operation


def schedule_extensions(schedule: Schedule) -> dict[str, JSON]:
    """The ``x-sim-*`` keys that say when a stream sends."""
    out: dict[str, JSON] = {}
    pattern = schedule.pattern
    if isinstance(pattern, Every):
        out["x-sim-every"] = format_duration(pattern.interval_ns)
    elif isinstance(pattern, UniformInterval):
        out["x-sim-every"] = {
            "min": format_duration(pattern.min_ns),
            "max": format_duration(pattern.max_ns),
        }
    elif isinstance(pattern, Poisson):
        out["x-sim-rate"] = pattern.rate_per_s
    elif isinstance(pattern, At):
        out["x-sim-at"] = [format_duration(t) for t in pattern.offsets_ns]
        if pattern.repeat_ns is not None:
            out["x-sim-repeat"] = format_duration(pattern.repeat_ns)
    elif isinstance(pattern, Burst):
        out["x-sim-burst"] = {
            "count": pattern.count,
            "spacing": format_duration(pattern.spacing_ns),
            "every": format_duration(pattern.every_ns),
        }
    if schedule.start_ns:
        out["x-sim-start"] = format_duration(schedule.start_ns)
    if schedule.stop_ns is not None:
        out["x-sim-stop"] = format_duration(schedule.stop_ns)
    if schedule.first_ns is not None:
        out["x-sim-first"] = format_duration(schedule.first_ns)
    return out


def _describe(schedule: Schedule) -> str:
    pattern = schedule.pattern
    if isinstance(pattern, Every):
        return f"every {format_duration(pattern.interval_ns)}"
    if isinstance(pattern, UniformInterval):
        lo, hi = format_duration(pattern.min_ns), format_duration(pattern.max_ns)
        return f"every {lo} to {hi} (uniform)"
    if isinstance(pattern, Poisson):
        return f"{pattern.rate_per_s:g} per second on average (Poisson)"
    if isinstance(pattern, At):
        repeat = pattern.repeat_ns
        again = f", again every {format_duration(repeat)}" if repeat is not None else ""
        return f"at {len(pattern.offsets_ns)} fixed offsets{again}"
    return (
        f"bursts of {pattern.count}, {format_duration(pattern.spacing_ns)} apart,"
        f" every {format_duration(pattern.every_ns)}"
    )


def _typed(type_: str, properties: dict[str, JSON], required: list[str]) -> JSON:
    """An object with ``type`` = ``type_``; other keys are allowed (the server ignores them)."""
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "const": type_}, **properties},
        "required": ["type", *required],
    }


def _message(name: str, summary: str, payload: JSON) -> JSON:
    return {"name": name, "summary": summary, "contentType": "application/json", "payload": payload}


def _client_messages(scenario: Scenario) -> list[tuple[str, str, JSON, JSON]]:
    """(key, reply key, request message, reply message) for each message a client may
    send."""
    protocol = scenario.protocol
    types: list[JSON] = [*sorted({s.type for s in scenario.streams})]
    stream_list: JSON = {"type": "array", "items": {"type": "string", "enum": types}}
    ack_list: JSON = {"type": "array", "items": {"type": "string", "enum": types}}
    out: list[tuple[str, str, JSON, JSON]] = [
        (
            "ping",
            "pong",
            _message(
                protocol.ping_type,
                "An application-level ping; an id is echoed",
                _typed(protocol.ping_type, {"id": {}}, []),
            ),
            _message(
                protocol.pong_type,
                "The answer to a ping: the scenario time, and the ping's id if it had one",
                _typed(
                    protocol.pong_type,
                    {"timestamp": {"type": "string", "format": "date-time"}, "id": {}},
                    ["timestamp"],
                ),
            ),
        ),
        (
            "subscribe",
            "subscribed",
            _message(
                protocol.subscribe_type,
                'Receive only the listed streams (the first subscribe narrows "everything";'
                ' later ones add); "*" or no streams is everything',
                _typed(
                    protocol.subscribe_type,
                    {"streams": {"oneOf": [stream_list, {"const": "*"}]}},
                    [],
                ),
            ),
            _message(
                "subscribed",
                "The full set of streams now received",
                _typed("subscribed", {"streams": ack_list}, ["streams"]),
            ),
        ),
        (
            "unsubscribe",
            "unsubscribed",
            _message(
                protocol.unsubscribe_type,
                "Stop receiving the listed streams",
                _typed(
                    protocol.unsubscribe_type,
                    {"streams": {"oneOf": [stream_list, {"const": "*"}]}},
                    [],
                ),
            ),
            _message(
                "unsubscribed",
                "The streams still received",
                _typed("unsubscribed", {"streams": ack_list}, ["streams"]),
            ),
        ),
    ]
    for rule in protocol.rules:
        out.append(_rule_messages(rule))
    return out


def _rule_messages(rule: Rule) -> tuple[str, str, JSON, JSON]:
    request: JSON = {
        "type": "object",
        "properties": {key: {"const": value} for key, value in rule.match},
        "required": [key for key, _ in rule.match],
    }
    reply: JSON = _reply_schema(rule.reply)
    delay = f", after {format_duration(rule.delay_ns)}" if rule.delay_ns else ""
    name = next((str(v) for k, v in rule.match if k == "type" and isinstance(v, str)), rule.name)
    reply_name = rule.reply.get("type") if isinstance(rule.reply, dict) else None
    key = component_name(f"rule_{rule.name}")
    return (
        key,
        f"{key}_reply",
        _message(name, f"Request rule {rule.name!r}", request),
        _message(
            reply_name if isinstance(reply_name, str) else f"{rule.name} reply",
            f"The reply of rule {rule.name!r}{delay}",
            reply,
        ),
    )


def _reply_schema(template: JSON) -> JSON:
    """What a reply template becomes: constants stay constants; a string made of one
    ``{request.KEY}`` takes any JSON value, ``{now}`` is a date-time, other strings
    with references are strings."""
    if isinstance(template, str):
        if template == "{now}":
            return {"type": "string", "format": "date-time"}
        if re.fullmatch(r"\{request\.[A-Za-z0-9_\-]+\}", template):
            return {}
        if "{request." in template or "{now}" in template:
            return {"type": "string"}
        return {"const": template}
    if isinstance(template, dict):
        return {
            "type": "object",
            "properties": {k: _reply_schema(v) for k, v in template.items()},
            "required": list(template),
            "additionalProperties": False,
        }
    if isinstance(template, list):
        return {
            "type": "array",
            "items": [_reply_schema(item) for item in template],
            "minItems": len(template),
            "maxItems": len(template),
        }
    return {"const": template}


def _error_message(protocol: Protocol) -> JSON:
    return _message(
        protocol.error_type,
        "Sent back for a frame the server cannot understand; the connection stays up",
        _typed(
            protocol.error_type,
            {
                "error": {"type": "string", "enum": list(_ERROR_CODES)},
                "message": {"type": "string"},
                "streams": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "unknown_stream only: the streams this server does not send",
                },
            },
            ["error", "message"],
        ),
    )
