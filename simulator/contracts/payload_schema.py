"""A stream's messages as a JSON Schema: what its field definitions and envelope allow.

:func:`message_schema` describes every message a stream can send, as tightly as the
definitions say: a constant is a ``const``, a ``choice``/``cycle`` an ``enum``, a bounded
distribution a ``minimum``/``maximum``, a timestamp a ``date-time`` string or a number,
every key ``required`` and no other key allowed. It is pure: a function of the
:class:`~simulator.core.model.Stream` alone.
"""

from __future__ import annotations

import math
import re
from typing import Final

from simulator.core.expr import VType
from simulator.core.live import LiveKind
from simulator.core.model import (
    JSON,
    Bool,
    Choice,
    Const,
    Counter,
    Cycle,
    Derived,
    Exponential,
    FieldSpec,
    ListOf,
    Live,
    LogNormal,
    Normal,
    Numeric,
    Object,
    RandInt,
    Slot,
    Spread,
    Stream,
    Template,
    TimeFormat,
    Timestamp,
    Uniform,
    Uuid,
    Walk,
)

__all__ = ["field_schema", "message_schema"]

Schema = dict[str, JSON]

_UUID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_TIME_SCHEMAS: Final[dict[TimeFormat, Schema]] = {
    TimeFormat.ISO: {"type": "string", "format": "date-time"},
    TimeFormat.EPOCH_MS: {"type": "integer", "description": "Unix time in milliseconds"},
    TimeFormat.EPOCH_S: {"type": "number", "description": "Unix time in seconds"},
}
_SLOT_TIMES: Final = {
    Slot.TIMESTAMP: TimeFormat.ISO,
    Slot.TIMESTAMP_MS: TimeFormat.EPOCH_MS,
    Slot.TIMESTAMP_S: TimeFormat.EPOCH_S,
}


def message_schema(stream: Stream) -> Schema:
    """The whole message of ``stream``: its envelope, with ``$data`` as its fields."""
    properties: dict[str, JSON] = {}
    for key, slot in stream.envelope.keys:
        properties[key] = _slot_schema(stream, slot)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _slot_schema(stream: Stream, slot: Slot | JSON) -> JSON:
    if not isinstance(slot, Slot):
        return {"const": slot}
    if slot is Slot.TYPE:
        return {"type": "string", "const": stream.type}
    if slot is Slot.STREAM:
        return {"type": "string", "const": stream.name}
    if slot is Slot.SEQ:
        return {"type": "integer", "minimum": 1, "description": "1, 2, 3, ... per stream"}
    if slot is Slot.DATA:
        return field_schema(stream.fields)
    return dict(_TIME_SCHEMAS[_SLOT_TIMES[slot]])


def field_schema(spec: FieldSpec) -> Schema:
    """The values one field definition can produce."""
    if isinstance(spec, Const):
        return {"const": spec.value}
    if isinstance(spec, Choice | Cycle):
        return {"enum": list(spec.values)}
    if isinstance(spec, Object):
        properties: dict[str, Schema] = {}
        for name, sub in spec.fields:
            if isinstance(sub, Spread):
                properties |= _spread_properties(sub)
            else:
                properties[name] = field_schema(sub)
        return {
            "type": "object",
            "properties": dict[str, JSON](properties),
            "required": list(properties),
            "additionalProperties": False,
        }
    if isinstance(spec, ListOf):
        return {
            "type": "array",
            "items": field_schema(spec.item),
            "minItems": spec.min_len,
            "maxItems": spec.max_len,
        }
    if isinstance(spec, Template):
        return {"type": "string", "pattern": _template_pattern(spec.text)}
    if isinstance(spec, RandInt):
        return {"type": "integer", "minimum": spec.low, "maximum": spec.high}
    if isinstance(spec, Counter):
        bound = "minimum" if spec.step >= 0 else "maximum"
        return {"type": "integer", bound: spec.start}
    if isinstance(spec, Bool):
        return {"type": "boolean"}
    if isinstance(spec, Uuid):
        return {"type": "string", "format": "uuid", "pattern": _UUID_PATTERN}
    if isinstance(spec, Timestamp):
        return dict(_TIME_SCHEMAS[spec.format])
    if isinstance(spec, Uniform):
        return _numeric(Numeric(spec.low, spec.high, spec.shape.round_to))
    if isinstance(spec, LogNormal | Exponential):
        # Both draw only positive numbers: 0 is the least a clip or a round can make.
        lo = 0.0 if spec.shape.min is None else max(0.0, spec.shape.min)
        return _numeric(Numeric(lo, spec.shape.max, spec.shape.round_to))
    if isinstance(spec, Normal | Walk):
        return _numeric(spec.shape)
    if isinstance(spec, Derived):
        if not spec.type.numeric:
            return {"type": spec.type.value}
        schema = _numeric(spec.shape)
        if spec.type is VType.INT:
            schema["type"] = "integer"
        return schema
    if isinstance(spec, Live):
        # The server's count, time or index at send time: never negative.
        return {"type": "number" if spec.kind is LiveKind.UPTIME_S else "integer", "minimum": 0}
    raise TypeError(f"no schema for field spec {spec!r}")  # pragma: no cover - all handled


def _spread_properties(spread: Spread) -> dict[str, Schema]:
    """The keys a spread field puts in its parent, each with the values it can take."""
    inner = spread.inner
    if isinstance(inner, Object):
        properties = field_schema(inner)["properties"]
        assert isinstance(properties, dict)
        return {key: value for key, value in properties.items()}  # type: ignore[misc]
    options = [value for value in inner.values if isinstance(value, dict)]
    return {
        key: {"enum": list({repr(o[key]): o[key] for o in options}.values())} for key in spread.keys
    }


def _numeric(shape: Numeric) -> Schema:
    """``round = 0`` sends integers; bounds are those of the clip (rounding keeps them)."""
    schema: Schema = {"type": "integer" if shape.round_to == 0 else "number"}
    if shape.min is not None:
        schema["minimum"] = _whole(shape.min) if shape.round_to == 0 else shape.min
    if shape.max is not None:
        schema["maximum"] = _whole(shape.max) if shape.round_to == 0 else shape.max
    return schema


def _whole(x: float) -> JSON:
    return int(x) if math.isfinite(x) and x == int(x) else x


def _template_pattern(text: str) -> str:
    """``"tx_{seq}"`` → ``^tx_.*$``: the literal parts, anything where a reference is."""
    out = ["^"]
    for literal, ref in re.findall(r"((?:[^{}]|\{\{|\}\})*)(\{[^{}]*\})?", text):
        out.append(_escape(literal.replace("{{", "{").replace("}}", "}")))
        if ref:
            out.append(".*")
    out.append("$")
    return "".join(out)


_SPECIAL: Final = frozenset("\\^$.|?*+()[]{}/")


def _escape(literal: str) -> str:
    # Only the characters special in ECMA 262 regexes: a validator with the unicode flag
    # (ajv) rejects needless escapes such as Python's re.escape gives for '-' or '#'.
    return "".join("\\" + c if c in _SPECIAL else c for c in literal)
