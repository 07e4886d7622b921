"""Does a scenario keep a contract? Render N messages of each stream in virtual time
and check each against the payload schema of its message in an AsyncAPI document.

A stream is matched with a message by, in order: the message's ``x-sim-stream``, its
``name`` equal to the stream's ``type``, or a payload whose ``type`` property is that
``const``. The rendering is the clean feed (no faults), a pure function of the scenario
and seed, exactly what `sim run` and `sim generate` send.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import jsonschema
import orjson
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from simulator.contracts.spec import Spec, SpecMessage
from simulator.core.live import LiveState, fill
from simulator.core.model import Scenario, Stream
from simulator.core.timeline import DEFAULT_EPOCH_NS, StreamCursor

__all__ = ["Violation", "check_scenario", "render_messages", "schema_checker"]

_SPEC_URI: Final = "urn:sim:asyncapi"
_CHUNK: Final = 256
_ANYTHING: Final = ""


@dataclass(frozen=True, slots=True)
class Violation:
    """One message (or stream) that breaks the contract. ``seq`` is ``None`` for a
    stream with no message in the document; ``path`` is a JSON path (``$.data.cpu``)."""

    stream: str
    seq: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.stream} seq {self.seq}" if self.seq is not None else self.stream
        return f"{where}: {self.path}: {self.message}"


def render_messages(
    stream: Stream, count: int, *, seed: int, epoch_ns: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """The first ``count`` messages of ``stream`` (fewer if it ends), as ``(seq, JSON
    text)``, for the broadcast timeline; pure, in virtual time. Live values are those
    of one client connected from 0 s (as ``sim generate`` fills them)."""
    cursor = StreamCursor(stream, seed, None, epoch_ns or DEFAULT_EPOCH_NS, _CHUNK)
    sent = 0
    while sent < count:
        t = cursor.peek_time()
        if t is None:
            return
        _, seqs, payloads = cursor.take_until(t + 1)
        for seq, payload in zip(seqs.tolist(), payloads, strict=True):
            if sent == count:
                return
            yield seq, fill(payload, LiveState(connection=0, connected=1, sent=sent, t_ns=t))
            sent += 1


def _date_time(value: object) -> bool:
    """RFC 3339 ``date-time``: a date, ``T``, a time and an offset (``Z`` or ``+01:00``)."""
    if not isinstance(value, str):
        return True  # formats constrain strings only
    if "T" not in value.upper():
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _format_checker() -> jsonschema.FormatChecker:
    # jsonschema checks date-time only with an optional package installed: a contract
    # check that silently skips formats would pass broken timestamps, so check it here.
    checker = jsonschema.FormatChecker(["uuid", "date", "time", "email", "ipv4", "ipv6"])
    checker.checks("date-time")(_date_time)
    return checker


def schema_checker(spec: Spec, pointer: str) -> jsonschema.protocols.Validator:
    """A validator for the schema at JSON ``pointer`` of ``spec``; its own ``$ref`` are
    resolved against the whole document."""
    if pointer == _ANYTHING:
        return jsonschema.Draft7Validator({})
    resource = Resource.from_contents(dict(spec.doc), default_specification=DRAFT7)
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    return jsonschema.Draft7Validator(
        {"$ref": f"{_SPEC_URI}{pointer}"}, registry=registry, format_checker=_format_checker()
    )


def match_message(stream: Stream, messages: Iterable[SpecMessage]) -> SpecMessage | None:
    """The message of the document that ``stream``'s messages are checked against."""
    candidates = list(messages)
    for found in (
        [m for m in candidates if m.stream == stream.name],
        [m for m in candidates if m.name == stream.type],
        [m for m in candidates if _type_const(m) == stream.type],
    ):
        if found:
            return found[0]
    return None


def _type_const(message: SpecMessage) -> object:
    prop = (message.payload.get("properties") or {}).get("type")
    return prop.get("const") if isinstance(prop, dict) else None


def check_scenario(
    spec: Spec, scenario: Scenario, per_stream: int, *, seed: int | None = None
) -> tuple[int, list[Violation]]:
    """Render ``per_stream`` messages of each stream and check them against ``spec``.

    Returns how many messages were checked and every violation, by stream, then seq,
    then the place in the message.
    """
    messages = spec.messages()
    checked = 0
    violations: list[Violation] = []
    for stream in scenario.streams:
        message = match_message(stream, messages)
        if message is None:
            violations.append(
                Violation(
                    stream.name, None, "$", f"no message in {spec.source} for type {stream.type!r}"
                )
            )
            continue
        # A message without a payload schema allows any payload.
        validator = schema_checker(spec, message.payload_pointer)
        rendered = render_messages(
            stream,
            per_stream,
            seed=scenario.seed if seed is None else seed,
            epoch_ns=scenario.epoch_ns,
        )
        for seq, payload in rendered:
            checked += 1
            value = orjson.loads(payload)
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            for error in errors:
                violations.append(
                    Violation(stream.name, seq, json_path(error.absolute_path), error.message)
                )
    return checked, violations


def json_path(parts: Iterable[str | int]) -> str:
    """``["data", "suppliers", 2]`` → ``$.data.suppliers[2]`` (odd keys quoted)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{orjson.dumps(part).decode()}]"
    return out
