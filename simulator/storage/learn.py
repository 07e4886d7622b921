"""`sim learn`: a scenario inferred from a recording of a feed.

:func:`learn` reads the server's text messages of one connection (the first that has
any) with a lazy polars scan, so only the needed columns of the needed rows are read,
and groups them into streams: by the recorded ``stream`` column (rows without one are
then replies to the client, and left out), else by the message's ``type``. For each
stream it fits the schedule to the inter-arrival times and each field of ``data`` to
its values (:mod:`.learn_fit`), detects derived relations between
numeric fields and string fields that always go together (learned as one spread choice),
and writes a scenario with a comment on every fit stating its quality. What a scenario
cannot hold as it was recorded (a type that is no stream name or no string, a member
with an empty name or one named like a generator key, a null, an integer beyond 64
bits, a list longer or a value nested deeper than a scenario holds, a member missing
from some messages, an object that is always empty) is written in a form it can,
shortened or left out, and said in a comment: never a scenario that does not load,
never silently.

Messages are expected in the default envelope (``type``, ``seq``, ``timestamp``,
``data``); a message without a ``data`` object is learned as if its other keys were
its data.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias

import orjson
import polars as pl

from simulator.core.expr import KEYWORDS
from simulator.core.field_keys import GENERATOR_KEYS, close_generator_key
from simulator.core.model import JSON
from simulator.core.scenario_limits import MAX_DEPTH, MAX_LIST_LEN
from simulator.core.stream_names import STREAM_NAME, stream_name_from, unique_name
from simulator.core.toml_text import toml_key, toml_value
from simulator.errors import RecordingError, UsageError
from simulator.storage.learn_fit import (
    AS_FLOATS,
    CLOCK_JITTER_NS,
    MAX_CHOICES,
    NO_NULL,
    TOO_DEEP,
    Fit,
    choice_fit,
    fit_change,
    fit_numeric,
    fit_running_sum,
    fit_schedule,
    fit_strings,
    floats_beyond_int64,
    hashable,
    leave_out,
    nested_deeper,
    unhashable,
)
from simulator.storage.reader import read_metadata, scan_recording

_ENVELOPE = ("type", "seq", "timestamp")
#: A name an expression reads as a field (simulator.core.expr's NAME token).
_EXPRESSION_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: What a TOML comment may not hold: control characters other than tab.
_NOT_IN_COMMENT: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_EMPTY_NAME: Final = "a member with an empty name (a field needs a name)"
_ALWAYS_NULL: Final = f"null in every message, {NO_NULL}"
#: Why a list is left out; a list of such lists is left out for the same reason.
_DEEP_ITEMS: Final = f"its items would be {TOO_DEEP}"
#: How many objects :func:`_keys` reads for their members (the rest only when needed).
_FIRST_ROWS: Final = 1000
#: What a member missing from an object is read as.
_MISSING: Final = object()
#: What messages are grouped by: their recorded stream, their type when it is a
#: string, else the JSON text of their type (bytes, so that 3 and "3" are two types).
_Key: TypeAlias = str | bytes
#: The key of types nested deeper than a scenario holds: no JSON text, so no type's.
_DEEP_TYPE: Final = b"nested-too-deep"


@dataclass(slots=True)
class LearnedField:
    path: tuple[str, ...]
    fit: Fit


@dataclass(slots=True)
class LearnedStream:
    name: str
    #: The type its messages are sent with: what most of them had, as a scenario can
    #: send it (None: none; see _sent_type).
    type: JSON
    messages: int
    schedule: Fit
    fields: list[LearnedField] = field(default_factory=list)
    #: What the scenario says differently from the recording (a name made valid).
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TimeScale:
    """How recorded times become scenario times: multiplied by ``factor`` (the speed
    the recording was made at); ``note`` says so, or why not, for the learned file
    and the summary (empty when there is nothing to say)."""

    factor: float = 1.0
    note: str = ""

    @property
    def jitter_ns(self) -> float:
        """What a recorded time may be off by, in scenario time: the recording clock's
        jitter, made ``factor`` times longer with the times."""
        return CLOCK_JITTER_NS * self.factor


@dataclass(slots=True)
class Learned:
    source: str
    connection: int
    streams: list[LearnedStream]
    scale: TimeScale = field(default_factory=TimeScale)

    def toml(self, name: str, seed: int = 1) -> str:
        """The scenario, with a comment on each fit."""
        lines = [
            _comment(f"Learned by `sim learn` from {self.source} (connection {self.connection})."),
            _comment("Each comment says what was fitted and how well (KS D: smaller is closer)."),
            *([_comment(f"Schedules: {self.scale.note}.")] if self.scale.note else []),
            "",
            "[scenario]",
            f"name = {toml_value(name)}",
            f"seed = {seed}",
        ]
        for s in self.streams:
            lines += ["", _comment(f"{s.messages} messages; schedule: {s.schedule.quality}")]
            lines += [_comment(note) for note in s.notes]
            lines += ["[[stream]]", f"name = {toml_value(s.name)}", *_type_lines(s)]
            lines += s.schedule.toml.splitlines()
            lines.append("[stream.fields]")
            for f in s.fields:
                lines += _field_lines(f)
        return "\n".join(lines) + "\n"

    def summary(self) -> list[str]:
        """A table for stderr: each stream's schedule and each field's kind."""
        out = [f"schedules: {self.scale.note}"] if self.scale.note else []
        out.append(f"{'stream':<20} {'messages':>8}  {'schedule':<9} field kinds")
        for s in self.streams:
            kinds = Counter(f.fit.kind for f in s.fields)
            text = ", ".join(f"{k} {n}" if n > 1 else k for k, n in kinds.items())
            out.append(f"{s.name:<20} {s.messages:>8}  {s.schedule.kind:<9} {text}")
            out += [f"  {note}" for note in s.notes]
            for f in s.fields:
                out.append(f"  {_dotted(f.path):<26} {f.fit.kind:<12} {f.fit.quality}")
        return out


def _field_lines(f: LearnedField) -> list[str]:
    """A field and the comment on its fit; a comment only for a field left out, or for
    a note on the fields that follow (an object that was sometimes null)."""
    key = _dotted(f.path)
    if f.fit.left_out:
        return [_comment(f"{key}: left out: {f.fit.quality}")]
    if not f.fit.toml:
        return [_comment(f"{key}: {f.fit.quality}")]
    return [_comment(f"{key}: {f.fit.quality}"), f"{key} = {f.fit.toml}"]


def _comment(text: str) -> str:
    """``text`` as a TOML comment line. What a comment may not hold (TOML: control
    characters other than tab, a line break among them), which a feed's names and
    values may, is written as a ``\\uXXXX`` escape."""
    return "# " + _NOT_IN_COMMENT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _type_lines(stream: LearnedStream) -> list[str]:
    """How ``stream`` sends its type: by its name, by ``type``, or, for a blank type
    or one that is no string (which ``type`` refuses), as a constant of its envelope
    (the default one else), which has no type for none."""
    kind = stream.type
    if kind == stream.name:
        return []
    if isinstance(kind, str) and kind.strip():
        return [f"type = {toml_value(kind)}"]
    envelope: dict[str, JSON] = {"seq": "$seq", "timestamp": "$timestamp", "data": "$data"}
    if kind is not None:
        envelope = {"type": kind, **envelope}
    return [f"envelope = {toml_value(envelope)}"]


def _dotted(path: Sequence[str]) -> str:
    """A field's path as TOML writes it: ``location.city``, ``m."cpu load"``."""
    return ".".join(toml_key(p) for p in path)


def learn(path: str | Path, speed: float | None = None) -> Learned:
    """Learn a scenario from the recording at ``path`` (a file, or a directory of parts
    as ``sim run --workers --record`` writes); :class:`RecordingError` when it cannot be
    read or holds no server text message.

    Schedules are learned in scenario time: the recorded times multiplied by ``speed``,
    the speed the recording was made at (by default the one its metadata records, as
    ``sim run --speed 20 --record`` does; pass ``1.0`` to take them as recorded).
    """
    source = str(path)
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise UsageError(f"speed={speed!r}: must be a number > 0")
    scale = _time_scale(read_metadata(path)["extra"], speed)
    try:
        scan = scan_recording(path)  # a file, or a --workers directory of parts
        texts = scan.filter((pl.col("kind") == "text") & (pl.col("sender") == "server"))
        first = texts.select(pl.col("conn").min()).collect().item()
        if first is None:
            raise RecordingError(source, "no text message from the server to learn from")
        rows = (
            texts.filter(pl.col("conn") == first)
            .select("seq", "t_ns", "stream", "payload")
            .sort("seq")
            .collect()
        )
        opened = (
            scan.filter((pl.col("kind") == "open") & (pl.col("conn") == first))
            .select(pl.col("t_ns").min())
            .collect()
            .item()
        )
    except (OSError, pl.exceptions.PolarsError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RecordingError(source, f"cannot read: {reason}") from e
    groups: dict[_Key, tuple[list[int], list[dict[str, Any]]]] = {}
    columns = (rows["t_ns"].to_list(), rows["stream"].to_list(), rows["payload"].to_list())
    # Rows with no stream where others have one are replies to the client (pongs,
    # acknowledgements), not part of the feed.
    named = any(stream is not None for stream in columns[1])
    for t, stream, payload in zip(*columns, strict=True):
        if named and stream is None:
            continue
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue  # a corrupted message: nothing to learn from it
        if not isinstance(message, dict):
            continue
        key = stream or _type_key(message.get("type", "messages"))
        times, messages = groups.setdefault(key, ([], []))
        times.append(int(t))
        messages.append(message)
    if not groups:
        raise RecordingError(source, "no JSON object message to learn from")
    # Times count from the connection's open (the server's start, for `sim generate`).
    t0 = opened if opened is not None else min(times[0] for times, _ in groups.values())
    names = _stream_names(groups)
    offsets = {
        key: [round((t - t0) * scale.factor) for t in times] for key, (times, _) in groups.items()
    }
    streams = [
        _stream(key, names[key], offsets[key], msgs, by_type=not named, jitter=scale.jitter_ns)
        for key, (_, msgs) in groups.items()
    ]
    return Learned(source, int(first), streams, scale)


def _time_scale(extra: Mapping[str, Any], speed: float | None) -> TimeScale:
    """What to multiply recorded times by: ``speed`` when given, else the speed the
    metadata records (``sim run --record`` writes it in ``extra``; what another
    writer put there is used only if it is a positive number)."""
    if speed is not None:
        return TimeScale(speed, f"times multiplied by {speed:g} (--speed)" if speed != 1 else "")
    if "speed" not in extra:
        return TimeScale()
    recorded = extra["speed"]
    number = isinstance(recorded, int | float) and not isinstance(recorded, bool)
    if not (number and math.isfinite(recorded) and recorded > 0):
        shown = json.dumps(recorded)  # extra is JSON
        return TimeScale(
            1.0, f"times taken as recorded: the recording's speed {shown} is not a number > 0"
        )
    if recorded == 1:
        return TimeScale()
    return TimeScale(
        float(recorded),
        f"times multiplied by {recorded:g} (the speed the recording was made at)"
        " to give scenario time; --speed 1 keeps them as recorded",
    )


def _type_key(kind: object) -> _Key:
    """The key (:data:`_Key`) of messages of the type ``kind``."""
    if isinstance(kind, str):
        return kind
    # orjson writes no more than 254 levels; a scenario holds 32.
    return _DEEP_TYPE if nested_deeper(kind, MAX_DEPTH) else orjson.dumps(kind)


def _key_text(key: _Key) -> str:
    return key if isinstance(key, str) else key.decode()


def _shown(key: _Key) -> str:
    """A key as a comment quotes it: a string quoted, another type's JSON text as it is."""
    return toml_value(key) if isinstance(key, str) else key.decode()


def _stream_names(keys: Iterable[_Key]) -> dict[_Key, str]:
    """A valid, unique stream name for each recorded stream name or message type: the
    key itself when it is one, else the key's text with what a name cannot hold made
    ``_`` (``price update`` → ``price_update``, ``[1,2]`` → ``_1_2_``; ``_2``, ``_3``...
    once taken: a type 3 next to a type "3" is named ``3_2``)."""
    keys = list(keys)
    valid = {k for k in keys if isinstance(k, str) and STREAM_NAME.fullmatch(k)}
    taken = set(valid)
    names: dict[_Key, str] = {}
    for key in keys:
        if isinstance(key, str) and key in valid:
            names[key] = key
            continue
        names[key] = stream_name_from(_key_text(key), taken)
        taken.add(names[key])
    return names


def _stream(
    key: _Key,
    name: str,
    offsets: list[int],
    messages: list[dict[str, Any]],
    *,
    by_type: bool,
    jitter: float,
) -> LearnedStream:
    """The stream of ``messages``, sent at ``offsets`` (scenario time, off by up to
    ``jitter`` ns), grouped under ``key`` (their recorded stream, or their type when
    ``by_type``) and named ``name``."""
    untyped = _key_text(key)  # the type of a message without one: its stream's, or "messages"
    types = Counter(_type_key(m.get("type", untyped)) for m in messages)
    data = [
        m["data"] if isinstance(m.get("data"), dict) else _without_envelope(m) for m in messages
    ]
    seqs = [m["seq"] if isinstance(m.get("seq"), int) else i + 1 for i, m in enumerate(messages)]
    schedule = fit_schedule(offsets, jitter)
    top = types.most_common(1)[0][0]
    sent, why = _sent_type(top)
    learned = LearnedStream(name, sent, len(messages), schedule)
    if isinstance(key, str) and name != key:
        source = "type" if by_type else "recorded stream"
        learned.notes.append(
            f"name: {source} {toml_value(key)} is not a stream name (letters, digits,"
            f" '_', '.', ':' or '-'): named {name}"
            + (", and the type kept" if isinstance(sent, str) and sent != name else "")
        )
    if why:  # by type, its stream is named after its text: say so where it is not
        named = "" if name == _key_text(key) else f"; the stream is named {name}"
        learned.notes.append(f"{why}{named}")
    if len(types) > 1:
        learned.notes.append(_types_note(types, top))
    learned.fields = _object(data, seqs, ())
    return learned


def _sent_type(key: _Key) -> tuple[JSON, str]:
    """The type messages of the type ``key`` are sent with (``None``: none, for a type a
    scenario cannot send), and why, when it is no string (a stream's ``type`` is one:
    another is a constant of its envelope); ``""`` for a string."""
    if isinstance(key, str):
        return key, ""
    no_type = "the stream's envelope sends no type"
    if key == _DEEP_TYPE:
        return None, f"type: {TOO_DEEP}: {no_type}"
    kind = orjson.loads(key)
    if kind is None:
        return None, f"type: null, {NO_NULL}: {no_type}"
    sendable = floats_beyond_int64(kind)
    try:
        text = toml_value(sendable)
    except ValueError:  # it holds a null
        return None, f"type: {key.decode()} holds a null, {NO_NULL}: {no_type}"
    wide = "" if sendable is kind else f" (integers beyond 64 bits {AS_FLOATS})"
    return sendable, (
        f"type: {key.decode()} is not a string, which a stream's type is:"
        f" the stream's envelope sends it as {text}{wide}"
    )


def _types_note(types: Counter[_Key], top: _Key) -> str:
    """That the messages of a stream had the ``types`` (counted), all sent as ``top``."""
    seen = ", ".join(f"{_shown(k)} in {n}" for k, n in types.most_common(5))
    more = f" and {len(types) - 5} more" if len(types) > 5 else ""
    return (
        f"types: {len(types)} in {types.total()} messages ({seen}{more}):"
        f" all sent as if of the most common, {_shown(top)}"
    )


def _without_envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in _ENVELOPE}


def _object(
    rows: Sequence[dict[str, Any]], seqs: Sequence[int], path: tuple[str, ...]
) -> list[LearnedField]:
    """The fields of the objects ``rows`` (one a message) at ``path``: each member on its
    own, then relations between them and string members that go together. A member
    missing from some rows is left out, and said."""
    fields: list[LearnedField] = []
    numeric: dict[str, tuple[list[float], bool]] = {}
    strings: dict[str, list[str]] = {}
    keys = _keys(rows)
    held = 0  # members of `keys` the rows hold: fewer than they have means later ones
    missing = _MISSING  # a local: the comprehension below reads it once a row
    for key in keys:
        at = (*path, key)
        values = [row.get(key, missing) for row in rows]
        absent = values.count(missing)
        held += len(rows) - absent
        if not key or absent:
            fields.append(LearnedField(at, _left_out_member(key, absent, len(rows))))
            continue
        present, present_seqs = _without_nulls(values, seqs)
        nulls = len(values) - len(present)
        types = {type(v) for v in present}
        if not present:
            fields.append(LearnedField(at, leave_out(_ALWAYS_NULL)))
        elif types == {dict}:
            if nulls:
                note = f"{_nulls(nulls, len(values))}: its members are learned from the others"
                fields.append(LearnedField(at, Fit("object", "", note)))
            fields.extend(_nested(present, present_seqs, at))
        else:
            # Relations and spread choices compare fields message by message.
            if not nulls and types <= {int, float}:
                numeric[key] = (values, types == {int})
            elif not nulls and types == {str}:
                strings[key] = values
            fit = _with_nulls(_values_fit(present, present_seqs, len(at)), nulls, len(values))
            fields.append(LearnedField(at, _unmistakable(key, fit, len(at)) if path else fit))
    fields += [
        LearnedField((*path, key), _left_out_member(key, len(rows) - n, len(rows)))
        for key, n in _later_keys(rows, keys, held).items()
    ]
    _relations(fields, numeric, path)
    return _spread(fields, strings, path)


def _left_out_member(key: str, absent: int, n: int) -> Fit:
    """Why the member ``key`` of ``n`` objects is no field: its name is empty, or it is
    missing from ``absent`` of them."""
    return leave_out(_missing(absent, n) if key else _EMPTY_NAME)


def _missing(absent: int, n: int, of: str = "messages") -> str:
    return f"missing from {absent} of {n} {of} (a scenario sends a field every time)"


def _without_nulls(values: Sequence[Any], seqs: Sequence[int]) -> tuple[list[Any], list[int]]:
    """``values`` that are not null, with their ``seqs``."""
    if None not in values:  # the usual case, without a pass in Python
        return list(values), list(seqs)
    kept = [(v, seq) for v, seq in zip(values, seqs, strict=True) if v is not None]
    return [v for v, _ in kept], [seq for _, seq in kept]


def _nulls(nulls: int, n: int, of: str = "messages") -> str:
    return f"null in {nulls} of {n} {of}, {NO_NULL}"


def _with_nulls(fit: Fit, nulls: int, n: int, of: str = "messages") -> Fit:
    """``fit``, learned from the values that were not null, saying how many were."""
    if not nulls or fit.left_out:
        return fit
    note = f"{_nulls(nulls, n, of)}: learned from the other {n - nulls}"
    return Fit(fit.kind, fit.toml, f"{note}; {fit.quality}")


def _keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The members of the first :data:`_FIRST_ROWS` objects of ``rows``, in the order
    first seen; the caller asks :func:`_later_keys` for the others."""
    keys: dict[str, None] = {}
    for row in rows[:_FIRST_ROWS]:
        keys.update(dict.fromkeys(row))
    return list(keys)


def _later_keys(rows: Sequence[dict[str, Any]], known: Sequence[str], held: int) -> dict[str, int]:
    """The members of the objects ``rows`` first seen after those :func:`_keys` read
    (``known``), each with the number of objects that hold it, in the order first
    seen. ``held`` is how many members of ``known`` the objects hold: they are looked
    for only when the objects hold more (one pass of ``len`` in the usual case)."""
    if sum(map(len, rows)) == held:
        return {}
    seen = set(known)
    later: Counter[str] = Counter()
    for row in rows[_FIRST_ROWS:]:
        later.update(k for k in row if k not in seen)
    return dict(later)


def _nested(
    rows: Sequence[dict[str, Any]], seqs: Sequence[int], path: tuple[str, ...]
) -> list[LearnedField]:
    """A nested object: its members as fields (``meta.x = ...``), unless one is named
    like a generator key: a table holding ``dist`` or ``list`` is a generator, so the
    objects are then sent as seen (a choice of them). Sent as ``{}`` when it has no
    member that can be sent; left out, and said, where its members would nest deeper
    than a scenario holds."""
    depth = len(path)  # a field's depth is its path's length
    if not any(rows):
        return [LearnedField(path, _empty_object(depth, "always {}"))]
    if depth >= MAX_DEPTH:
        return [LearnedField(path, leave_out(f"its members would be {TOO_DEEP}"))]
    reserved = _generator_named(rows)
    if reserved is not None:
        return [LearnedField(path, _as_seen(rows, reserved, depth))]
    fields = _object(rows, seqs, path)
    if any(f.fit.toml for f in fields):
        return fields
    # Every member is left out (each says why): the object is still in every message.
    return [LearnedField(path, _empty_object(depth, "no member of it can be sent")), *fields]


def _empty_object(depth: int, why: str) -> Fit:
    """``{}``, for an object field at ``depth`` none of whose members can be sent
    (``why``). Written ``{ const = {} }``: an empty table of fields is an object of no
    fields, which sim generate makes no message with at all."""
    if _room(depth) < 0:
        return leave_out(f"{why}, and {{ const = {{}} }} would be {TOO_DEEP}")
    return Fit("const", "{ const = {} }", f"{why}: sent as {{}}")


def _generator_named(rows: Sequence[dict[str, Any]]) -> str | None:
    return next((k for k in _keys(rows) if k in GENERATOR_KEYS), None)


def _as_seen(rows: Sequence[dict[str, Any]], reserved: str, depth: int) -> Fit:
    """Objects that cannot be written as fields, as a weighted choice of themselves
    (the values of a choice are sent as they are, whatever their keys), for a field
    at ``depth``."""
    fit = choice_fit(rows, room=_room(depth))
    if fit.left_out:
        return fit
    why = f"{reserved!r} would read as a generator key, so the objects are sent as seen"
    return Fit(fit.kind, fit.toml, f"{why}: {fit.quality}")


def _unmistakable(name: str, fit: Fit, depth: int) -> Fit:
    """``fit`` for the member ``name`` (at ``depth``) of a nested object, written so
    that the loader does not take it for a misspelt generator key (``weight = "5kg"``
    for ``weights``): such a string or array constant is wrapped in ``{ const = ...
    }``, or left out where that would nest too deep."""
    bare = fit.kind == "const" and fit.toml.startswith(('"', "["))
    if not bare or close_generator_key(name) is None:
        return fit
    if _room(depth) < 0:
        why = "its name reads as a misspelt generator key, and { const = ... } would be"
        return leave_out(f"{why} {TOO_DEEP}")
    return Fit(fit.kind, f"{{ const = {fit.toml} }}", fit.quality)


def _room(depth: int) -> int:
    """How many levels a value of a choice, cycle or ``const`` of a field at ``depth``
    may nest (-1: not even a scalar fits): the values sit one level below the field."""
    return MAX_DEPTH - depth - 1


def _relations(
    fields: list[LearnedField], numeric: dict[str, tuple[list[float], bool]], path: tuple[str, ...]
) -> None:
    """Replace a numeric field's fit by a relation to a sibling where one holds, whatever
    distribution fitted it (a relation that holds is what made the values). Running
    sums first (a total is what accumulates), but none of a field's own percentage
    change (the change is the relation), then changes of consecutive values; a field
    a relation reads stays drawn, so relations never chain. Only names an
    expression can read take part (a running sum reads its own ``prev.``)."""
    by_name = {f.path[-1]: f for f in fields if f.path[:-1] == path}
    drawn = {
        k: v
        for k, (v, _) in numeric.items()
        if by_name[k].fit.kind not in ("const", "counter") and _readable(k)
    }
    read: set[str] = set()
    for fit_relation in (fit_running_sum, fit_change):
        for key, (values, is_int) in numeric.items():
            f = by_name[key]
            if key in read or f.fit.kind in (*_DERIVED, "const", "counter"):
                continue
            if fit_relation is fit_running_sum and not _readable(key):
                continue  # it reads its own prev.
            others = {
                k: v for k, v in drawn.items() if k != key and by_name[k].fit.kind not in _DERIVED
            }
            relation = fit_relation(key, values, others, is_int)
            if relation is not None:
                f.fit = relation
                read.update(k for k in others if _reads(relation.toml, k))


def _readable(name: str) -> bool:
    """Whether an expression reads ``name`` as a field: ``last-price`` would read as
    ``last - price``, and ``and`` or ``prev`` as a keyword."""
    return _EXPRESSION_NAME.fullmatch(name) is not None and name not in KEYWORDS


def _reads(toml: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", toml.split('"')[1]) is not None


_DERIVED = ("difference", "percentage", "running sum")


def _spread(
    fields: list[LearnedField], strings: dict[str, list[str]], path: tuple[str, ...]
) -> list[LearnedField]:
    """String choices that always go together (one determines the others, like a
    notification's level and message) become one spread choice of objects, where
    those objects nest no deeper than a scenario holds."""
    if _room(len(path) + 1) < 1:
        return fields  # the strings are learned each on its own: a choice of them fits
    # Only categories (values that repeat) group: unique ids would pair with anything.
    names = [k for k, v in strings.items() if 1 < len(set(v)) <= min(MAX_CHOICES, len(v) // 4)]
    group: list[str] = []
    for name in names:
        candidate = [*group, name]
        combos = set(zip(*(strings[k] for k in candidate), strict=True))
        if len(combos) == max(len(set(strings[k])) for k in candidate):
            group = candidate
        elif len(group) < 2:
            group = [name]
    if len(group) < 2:
        return fields
    rows = [
        dict(zip(group, combo, strict=True))
        for combo in zip(*(strings[k] for k in group), strict=True)
    ]
    fit = choice_fit(rows, room=_room(len(path) + 1))
    spread = Fit(
        "spread choice",
        fit.toml.replace("{ choice", "{ spread = true, choice", 1),
        f"{', '.join(toml_key(k) for k in group)} always go together: {fit.quality}",
    )
    # The spread field's own name is never sent, but must be no sibling's.
    name = unique_name("_".join(group), {f.path[-1] for f in fields if f.path[:-1] == path})
    out: list[LearnedField] = []
    for f in fields:
        if f.path[:-1] == path and f.path[-1] in group:
            if f.path[-1] == group[0]:
                out.append(LearnedField((*path, name), spread))
            continue
        out.append(f)
    return out


def _list(values: Sequence[list[Any]], depth: int) -> Fit:
    """The lists ``values`` of a field at ``depth``: their lengths, at most what a
    scenario's list holds, and their item; left out where the item would nest deeper
    than a scenario holds."""
    if depth + 1 > MAX_DEPTH:
        return leave_out(_DEEP_ITEMS)
    lengths = [len(v) for v in values]
    lo, hi = min(lengths), max(lengths)
    size, shortened = _list_size(lo, hi)
    items = [item for v in values for item in v]
    if not items:
        return Fit("list", "{ list = 0, item = 0 }", "always empty")
    present = [item for item in items if item is not None]
    if not present:
        return leave_out(f"every item is null, {NO_NULL}")
    if all(isinstance(i, dict) for i in present):
        lists = [[i for i in v if i is not None] for v in values]
        item = _item_object(lists, present, hi, depth + 1)
    else:
        item = _values_fit(present, list(range(len(present))), depth + 1)
    if item.left_out:
        return item if item.quality == _DEEP_ITEMS else leave_out(f"its items: {item.quality}")
    item = _with_nulls(item, len(items) - len(present), len(items), "items")
    return Fit(
        "list",
        f"{{ list = {size}, item = {item.toml} }}",
        f"{lo}..{hi} items{shortened}: {item.quality}",
    )


def _list_size(lo: int, hi: int) -> tuple[str, str]:
    """The ``list`` of lists of ``lo`` to ``hi`` items, shortened to what a scenario's
    list holds, and a note saying so (else empty)."""
    short, long = min(lo, MAX_LIST_LEN), min(hi, MAX_LIST_LEN)
    size = str(short) if short == long else f"{{ min = {short}, max = {long} }}"
    if hi <= MAX_LIST_LEN:
        return size, ""
    return size, f", shortened to {MAX_LIST_LEN} (the longest list a scenario makes)"


def _item_object(
    lists: Sequence[list[Any]], items: Sequence[dict[str, Any]], longest: int, depth: int
) -> Fit:
    """The item (at ``depth``) of lists of objects: an object of the members every
    item has, each learned on its own (as a field of a nested object is; the others
    are left out, and said), ``{}`` when none is, or the items as seen when one is
    named like a generator key."""
    if depth + 1 > MAX_DEPTH:
        return leave_out(f"its members would be {TOO_DEEP}")
    reserved = _generator_named(items)
    if reserved is not None:
        return _as_seen(items, reserved, depth)
    parts: list[str] = []
    kinds: list[str] = []
    keys = _keys(items)
    held = 0  # members of `keys` the items hold: fewer than they have means later ones
    for key in keys:
        have = sum(key in item for item in items)
        held += have
        if not key or have < len(items):
            kinds.append(_item_member_left_out(key, len(items) - have, len(items)))
            continue
        fit = _unmistakable(key, _list_item_field(lists, key, longest, depth + 1), depth + 1)
        if fit.left_out:
            kinds.append(f"{toml_key(key)} left out: {fit.quality}")
            continue
        nulls = sum(item[key] is None for item in items)
        note = f" ({_nulls(nulls, len(items), 'items')})" if nulls else ""
        if AS_FLOATS in fit.quality:  # the list's comment names only kinds: say this too
            note += f" (integers beyond 64 bits {AS_FLOATS})"
        kinds.append(f"{toml_key(key)} {fit.kind}{note}")
        parts.append(f"{toml_key(key)} = {fit.toml}")
    for key, n in _later_keys(items, keys, held).items():
        kinds.append(_item_member_left_out(key, len(items) - n, len(items)))
    if parts:
        return Fit("object", "{ " + ", ".join(parts) + " }", "; ".join(kinds))
    # An item with no member: {}, as a constant (see _empty_object; depth allows it).
    return Fit(
        "object", "{ const = {} }", "; ".join(kinds) + "; sent as {}" if kinds else "always {}"
    )


def _item_member_left_out(key: str, absent: int, n: int) -> str:
    """Why the member ``key`` of ``n`` list items is no member of the item: its name is
    empty, or it is missing from ``absent`` of them."""
    if not key:
        return f"left out {_EMPTY_NAME}"
    return f"{toml_key(key)} left out: {_missing(absent, n, 'items')}"


def _list_item_field(lists: Sequence[list[Any]], key: str, longest: int, depth: int) -> Fit:
    """One key of list items, a field at ``depth``: a cycle when each position always
    has the same value (never null), else learned from its values that are not null."""
    cycle = _cycle(_one_per_position(lists, key, longest, _room(depth)))
    if cycle is not None:
        return cycle
    values = [row[j][key] for row in lists for j in range(len(row))]
    present = [v for v in values if v is not None]
    if not present:
        return leave_out(f"null in every item, {NO_NULL}")
    fit = _values_fit(present, list(range(len(present))), depth)
    return _with_nulls(fit, len(values) - len(present), len(values), "items")


def _one_per_position(
    lists: Sequence[list[Any]], key: str, longest: int, room: int
) -> list[Any] | None:
    """The value of ``key`` at each position of the lists (of items), when it is the
    same in every list that reaches it, compared by content and type (objects by their
    members, not as the Python objects they are; 1 is not true); ``None`` when it is
    not, or a value nests deeper than ``room`` levels (what a cycle's values may)."""
    if room < 0:
        return None
    unseen = object()
    seen: list[Any] = [unseen] * longest
    for row in lists:
        for j, item in enumerate(row):
            value = item[key]
            if isinstance(value, dict | list) and nested_deeper(value, room):
                return None  # too deep for a cycle (and maybe for hashable's recursion)
            mark = hashable(value)
            if seen[j] is unseen:
                seen[j] = mark
            elif seen[j] != mark:
                return None
    return [unhashable(mark) for mark in seen if mark is not unseen]


def _cycle(firsts: list[Any] | None) -> Fit | None:
    """The values ``firsts`` of the positions of a list, as a cycle; ``None`` when there
    are none, they are all one, or one cannot be written (a null, or one holding one)."""
    if not firsts or None in firsts or len({hashable(v) for v in firsts}) < 2:
        return None
    sendable = [floats_beyond_int64(v) for v in firsts]
    try:
        cycle = "{ cycle = [" + ", ".join(toml_value(v) for v in sendable) + "] }"
    except ValueError:  # a value holds a null
        return None
    wide = any(a is not b for a, b in zip(sendable, firsts, strict=True))
    note = f"; integers beyond 64 bits {AS_FLOATS}" if wide else ""
    return Fit("cycle", cycle, f"one value per position{note}")


def _values_fit(values: Sequence[Any], seqs: Sequence[int], depth: int) -> Fit:
    """What the values of one field (or list item) at ``depth`` are, when they are
    not objects."""
    types = {type(v) for v in values}
    if types == {list}:
        return _list(values, depth)
    if types == {bool}:
        p = sum(values) / len(values)
        return Fit("bool", f'{{ dist = "bool", p = {p:.4f} }}', f"true in {p:.2%}")
    if types <= {int, float}:
        return fit_numeric(values, types == {int})
    if types == {str}:
        return fit_strings(values, seqs, room=_room(depth))
    return choice_fit(values, room=_room(depth))
