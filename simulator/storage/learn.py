"""`sim learn`: a scenario inferred from a recording of a feed.

:func:`learn` reads the server's text messages of one connection (the first that has
any) with a lazy polars scan, so only the needed columns of the needed rows are read,
and groups them into streams: by the recorded ``stream`` column (rows without one are
then replies to the client, and left out), else by the message's ``type``. For each
stream it fits the schedule to the inter-arrival times and each field of ``data`` to
its values (:mod:`.learn_fit`), detects derived relations between
numeric fields and string fields that always go together (learned as one spread choice),
and writes a scenario with a comment on every fit stating its quality.

Messages are expected in the default envelope (``type``, ``seq``, ``timestamp``,
``data``); a message without a ``data`` object is learned as if its other keys were
its data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from simulator.errors import RecordingError
from simulator.storage.learn_fit import (
    MAX_CHOICES,
    Fit,
    choice_fit,
    fit_change,
    fit_numeric,
    fit_running_sum,
    fit_schedule,
    fit_strings,
    toml_key,
    toml_value,
)
from simulator.storage.reader import scan_recording

_ENVELOPE = ("type", "seq", "timestamp")


@dataclass(slots=True)
class LearnedField:
    path: tuple[str, ...]
    fit: Fit


@dataclass(slots=True)
class LearnedStream:
    name: str
    type: str
    messages: int
    schedule: Fit
    fields: list[LearnedField] = field(default_factory=list)


@dataclass(slots=True)
class Learned:
    source: str
    connection: int
    streams: list[LearnedStream]

    def toml(self, name: str, seed: int = 1) -> str:
        """The scenario, with a comment on each fit."""
        lines = [
            f"# Learned by `sim learn` from {self.source} (connection {self.connection}).",
            "# Each comment says what was fitted and how well (KS D: smaller is closer).",
            "",
            "[scenario]",
            f"name = {toml_value(name)}",
            f"seed = {seed}",
        ]
        for s in self.streams:
            lines += ["", f"# {s.messages} messages; schedule: {s.schedule.quality}"]
            lines += ["[[stream]]", f"name = {toml_value(s.name)}"]
            if s.type != s.name:
                lines.append(f"type = {toml_value(s.type)}")
            lines += s.schedule.toml.splitlines()
            lines.append("[stream.fields]")
            for f in s.fields:
                lines.append(f"# {'.'.join(f.path)}: {f.fit.quality}")
                key = ".".join(toml_key(p) for p in f.path)
                lines.append(f"{key} = {f.fit.toml}")
        return "\n".join(lines) + "\n"

    def summary(self) -> list[str]:
        """A table for stderr: each stream's schedule and each field's kind."""
        out = [f"{'stream':<20} {'messages':>8}  {'schedule':<9} field kinds"]
        for s in self.streams:
            kinds = Counter(f.fit.kind for f in s.fields)
            text = ", ".join(f"{k} {n}" if n > 1 else k for k, n in kinds.items())
            out.append(f"{s.name:<20} {s.messages:>8}  {s.schedule.kind:<9} {text}")
            for f in s.fields:
                out.append(f"  {'.'.join(f.path):<26} {f.fit.kind:<12} {f.fit.quality}")
        return out


def learn(path: str | Path) -> Learned:
    """Learn a scenario from the recording at ``path`` (a file, or a directory of parts
    as ``sim run --workers --record`` writes); :class:`RecordingError` when it cannot be
    read or holds no server text message."""
    source = str(path)
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
    groups: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
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
        name = stream or str(message.get("type", "messages"))
        times, messages = groups.setdefault(name, ([], []))
        times.append(int(t))
        messages.append(message)
    if not groups:
        raise RecordingError(source, "no JSON object message to learn from")
    # Times count from the connection's open (the server's start, for `sim generate`).
    t0 = opened if opened is not None else min(times[0] for times, _ in groups.values())
    streams = [_stream(name, times, msgs, t0) for name, (times, msgs) in groups.items()]
    return Learned(source, int(first), streams)


def _stream(name: str, times: list[int], messages: list[dict[str, Any]], t0: int) -> LearnedStream:
    types = Counter(str(m.get("type", name)) for m in messages)
    data = [
        m["data"] if isinstance(m.get("data"), dict) else _without_envelope(m) for m in messages
    ]
    seqs = [m["seq"] if isinstance(m.get("seq"), int) else i + 1 for i, m in enumerate(messages)]
    schedule = fit_schedule([t - t0 for t in times])
    learned = LearnedStream(name, types.most_common(1)[0][0], len(messages), schedule)
    learned.fields = _object(data, seqs, ())
    return learned


def _without_envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in _ENVELOPE}


def _object(
    rows: Sequence[dict[str, Any]], seqs: Sequence[int], path: tuple[str, ...]
) -> list[LearnedField]:
    keys: list[str] = []
    for row in rows[:1000]:
        keys.extend(k for k in row if k not in keys)
    fields: list[LearnedField] = []
    numeric: dict[str, tuple[list[float], bool]] = {}
    strings: dict[str, list[str]] = {}
    for key in keys:
        missing = object()
        values = [row.get(key, missing) for row in rows]
        types = {type(v) for v in values}
        if object in types:
            continue  # not in every message: a scenario sends every field every time
        at = (*path, key)
        if types == {dict}:
            fields.extend(_object(values, seqs, at))
        elif types == {list}:
            fields.append(LearnedField(at, _list(values)))
        elif types == {bool}:
            p = sum(values) / len(values)
            fields.append(
                LearnedField(
                    at, Fit("bool", f'{{ dist = "bool", p = {p:.4f} }}', f"true in {p:.2%}")
                )
            )
        elif types <= {int, float}:
            is_int = types == {int}
            numeric[key] = (values, is_int)
            fields.append(LearnedField(at, fit_numeric(values, is_int)))
        elif types == {str}:
            strings[key] = values
            fields.append(LearnedField(at, fit_strings(values, seqs)))
        else:
            fields.append(LearnedField(at, choice_fit(values)))
    _relations(fields, numeric, path)
    return _spread(fields, strings, path)


def _relations(
    fields: list[LearnedField], numeric: dict[str, tuple[list[float], bool]], path: tuple[str, ...]
) -> None:
    """Replace a numeric field's fit by a relation to a sibling where one holds. Running
    sums first (a total is what accumulates), then changes of consecutive values; a
    field a relation reads stays drawn, so relations never chain."""
    by_name = {f.path[-1]: f for f in fields if f.path[:-1] == path}
    drawn = {
        k: v for k, (v, _) in numeric.items() if by_name[k].fit.kind not in ("const", "counter")
    }
    read: set[str] = set()
    for fit_relation in (fit_running_sum, fit_change):
        for key, (values, is_int) in numeric.items():
            f = by_name[key]
            if key not in drawn or key in read or f.fit.kind in _DERIVED:
                continue
            if fit_relation is fit_running_sum and f.fit.kind != "walk":
                continue  # only what wanders (accumulates) can be a total
            others = {
                k: v for k, v in drawn.items() if k != key and by_name[k].fit.kind not in _DERIVED
            }
            relation = fit_relation(key, values, others, is_int)
            if relation is not None:
                f.fit = relation
                read.update(k for k in others if _reads(relation.toml, k))


def _reads(toml: str, name: str) -> bool:
    import re

    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", toml.split('"')[1]) is not None


_DERIVED = ("difference", "percentage", "running sum")


def _spread(
    fields: list[LearnedField], strings: dict[str, list[str]], path: tuple[str, ...]
) -> list[LearnedField]:
    """String choices that always go together (one determines the others, like a
    notification's level and message) become one spread choice of objects."""
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
    fit = choice_fit(rows)
    spread = Fit(
        "spread choice",
        fit.toml.replace("{ choice", "{ spread = true, choice", 1),
        f"{', '.join(group)} always go together: {fit.quality}",
    )
    out: list[LearnedField] = []
    for f in fields:
        if f.path[:-1] == path and f.path[-1] in group:
            if f.path[-1] == group[0]:
                out.append(LearnedField((*path, "_".join(group)), spread))
            continue
        out.append(f)
    return out


def _list(values: Sequence[list[Any]]) -> Fit:
    lengths = [len(v) for v in values]
    lo, hi = min(lengths), max(lengths)
    size = str(lo) if lo == hi else f"{{ min = {lo}, max = {hi} }}"
    items = [item for v in values for item in v]
    if not items:
        return Fit("list", "{ list = 0, item = 0 }", "always empty")
    if all(isinstance(i, dict) for i in items):
        keys = [k for k in items[0] if all(k in i for i in items)]
        parts = []
        kinds = []
        for key in keys:
            fit = _list_item_field(values, key, hi)
            kinds.append(f"{key} {fit.kind}")
            parts.append(f"{toml_key(key)} = {fit.toml}")
        item = "{ " + ", ".join(parts) + " }"
        return Fit(
            "list", f"{{ list = {size}, item = {item} }}", f"{lo}..{hi} items: " + "; ".join(kinds)
        )
    fit = _values_fit(items, list(range(len(items))))
    return Fit(
        "list", f"{{ list = {size}, item = {fit.toml} }}", f"{lo}..{hi} items: {fit.quality}"
    )


def _list_item_field(lists: Sequence[list[Any]], key: str, longest: int) -> Fit:
    """One key of list items: a cycle when each position always has the same value."""
    by_position: list[set[Any]] = [set() for _ in range(longest)]
    for row in lists:
        for j, item in enumerate(row):
            if len(by_position[j]) < 2:
                value = item[key]
                by_position[j].add(value if not isinstance(value, dict | list) else id(value))
    if all(len(s) == 1 for s in by_position) and len({next(iter(s)) for s in by_position}) > 1:
        cycle = [toml_value(next(iter(s))) for s in by_position]
        return Fit("cycle", "{ cycle = [" + ", ".join(cycle) + "] }", "one value per position")
    values = [row[j][key] for row in lists for j in range(len(row))]
    return _values_fit(values, list(range(len(values))))


def _values_fit(values: Sequence[Any], seqs: Sequence[int]) -> Fit:
    types = {type(v) for v in values}
    if types == {bool}:
        p = sum(values) / len(values)
        return Fit("bool", f'{{ dist = "bool", p = {p:.4f} }}', f"true in {p:.2%}")
    if types <= {int, float}:
        return fit_numeric(values, types == {int})
    if types == {str}:
        return fit_strings(values, seqs)
    return choice_fit(values)
