"""``[[stream]]`` tables → :class:`~simulator.core.model.Stream`: name, time window,
schedule (``every``, ``rate``, ``at`` or ``burst``) and envelope; fields are read by
:mod:`.fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from simulator.core.model import (
    JSON,
    At,
    Burst,
    Envelope,
    Every,
    Pattern,
    Poisson,
    Schedule,
    Slot,
    Stream,
    UniformInterval,
)
from simulator.core.rates import mean_rate_per_s
from simulator.core.scenario_limits import MAX_RATE_PER_S
from simulator.core.stream_names import STREAM_NAME
from simulator.scenario.fields import stream_fields
from simulator.scenario.lines import KeyPath
from simulator.scenario.messages import show, unknown
from simulator.scenario.reader import ABSENT, Context, Table, json_value
from simulator.scenario.server import max_lateness

__all__ = ["MAX_RATE_PER_S", "build_envelope", "build_streams"]

_MAX_AT_OFFSETS: Final = 100_000
_MAX_BURST_COUNT: Final = 100_000

_SCHEDULE_KEYS: Final = ("every", "rate", "at", "burst")
_STREAM_KEYS: Final = (
    "name",
    "type",
    *_SCHEDULE_KEYS,
    "repeat",
    "start",
    "stop",
    "first",
    "envelope",
    "fields",
    "max_lateness",
)
_TOO_FAST: Final = f"would exceed what can be served (max {MAX_RATE_PER_S} msg/s per stream)"


def build_streams(
    ctx: Context, raw: object, envelope: Envelope | None
) -> tuple[Stream, ...] | None:
    """All ``[[stream]]`` tables, with ``envelope`` (the file's) for those with none."""
    if raw is ABSENT:
        return None
    if isinstance(raw, dict):
        ctx.report(("stream",), "a single [stream] table: write [[stream]] for each stream")
        return None
    if not isinstance(raw, list) or not raw:
        ctx.bad(("stream",), raw, "must be one or more [[stream]] tables")
        return None
    mark = ctx.mark()
    streams: list[Stream] = []
    first_use: dict[str, int] = {}
    for i, stream_raw in enumerate(raw):
        stream = _stream(ctx, stream_raw, ("stream", i), envelope)
        name = stream_raw.get("name") if isinstance(stream_raw, dict) else None
        if isinstance(name, str):
            if name in first_use:
                first = ctx.name_of(("stream", first_use[name]), ("stream", i))
                ctx.bad(
                    ("stream", i, "name"),
                    name,
                    f"already the name of {first}: stream names must be unique",
                )
            else:
                first_use[name] = i
        if stream is not None:
            streams.append(stream)
    return None if ctx.failed_since(mark) else tuple(streams)


def _stream(ctx: Context, raw: object, path: KeyPath, envelope: Envelope | None) -> Stream | None:
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table ([[stream]])")
        return None
    t = Table(ctx, raw, path)
    mark = ctx.mark()
    t.only(_STREAM_KEYS)
    name = t.string("name", required="a name of letters, digits, '_', '.', ':' or '-'")
    if name is not None and not STREAM_NAME.fullmatch(name):
        ctx.bad(t.at("name"), name, "must be letters, digits, '_', '.', ':' or '-'")
    type_ = t.string("type", default=name)
    pattern = _pattern(t)
    start = t.duration("start", positive=False, default=0)
    stop = t.duration("stop", positive=True)
    if "first" in t and "at" in t:
        # ``first`` moves the first message of a recurring pattern; ``at`` places each one.
        allowed = "only allowed with every, rate or burst: 'at' gives each message its offset"
        ctx.bad(t.at("first"), raw["first"], allowed)
        first = None
    else:
        first = t.duration("first", positive=False)
    if start is not None and stop is not None and stop <= start:
        ctx.bad(t.at("stop"), raw["stop"], f"must be after start ({show(raw.get('start', '0s'))})")
    if "envelope" in t:
        envelope = build_envelope(ctx, raw["envelope"], t.at("envelope"))
    fields = stream_fields(t)
    lateness = max_lateness(t)
    if ctx.failed_since(mark) or name is None or type_ is None or pattern is None:
        return None
    if start is None or fields is None:
        return None
    return Stream(
        name=name,
        schedule=Schedule(pattern, start, stop, first),
        fields=fields,
        type=type_,
        envelope=envelope or Envelope(),
        max_lateness_ns=lateness,
    )


def _pattern(t: Table) -> Pattern | None:
    """Exactly one of ``every``, ``rate``, ``at``, ``burst``; and not too fast."""
    given = [k for k in t.data if k in _SCHEDULE_KEYS]  # in file order
    if "repeat" in t and given[:1] != ["at"]:
        t.ctx.bad(t.at("repeat"), t.data["repeat"], "only allowed with 'at'")
    if not given and t.suggested(_SCHEDULE_KEYS):
        return None  # a misspelt schedule key is reported already
    if not given:
        t.ctx.report(t.path, "no schedule: needs one of every, rate, at or burst")
        return None
    if len(given) > 1:
        for extra in given[1:]:
            t.ctx.report(
                t.at(extra), f"together with '{given[0]}': a stream has exactly one schedule"
            )
        return None
    key = given[0]
    pattern = _PATTERN_BUILDERS[key](t)
    if pattern is None:
        return None
    if not isinstance(pattern, At) or pattern.repeat_ns is not None:
        rate = mean_rate_per_s(Schedule(pattern))
        if rate > MAX_RATE_PER_S:
            t.ctx.bad(t.at(key), t.data[key], f"{_fmt_rate(rate)} msg/s {_TOO_FAST}")
            return None
    return pattern


def _fmt_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate < 1e12 else f"{rate:.3g}"


def _every(t: Table) -> Pattern | None:
    raw = t.data["every"]
    if not isinstance(raw, dict):
        if isinstance(raw, str | int | float):
            ns = t.duration("every", positive=True)
            return None if ns is None else Every(ns)
        t.ctx.bad(
            t.at("every"), raw, "must be a duration like '5s', or { min = '15s', max = '30s' }"
        )
        return None
    span = Table(t.ctx, raw, t.at("every"))
    mark = t.ctx.mark()
    span.only(("min", "max"))
    lo = span.duration("min", positive=False, required="a duration")
    hi = span.duration("max", positive=True, required="a duration > 0")
    span.ordered("min", lo, "max", hi)
    if t.ctx.failed_since(mark) or lo is None or hi is None:
        return None
    return UniformInterval(lo, hi)


def _rate(t: Table) -> Pattern | None:
    rate = t.number("rate", gt=0)
    return None if rate is None else Poisson(rate)


def _at(t: Table) -> Pattern | None:
    raw = t.data["at"]
    if not isinstance(raw, list) or not raw or len(raw) > _MAX_AT_OFFSETS:
        allowed = f"must be an array of 1 to {_MAX_AT_OFFSETS} durations, like ['1s', '2.5s']"
        t.ctx.bad(t.at("at"), raw, allowed)
        return None
    mark = t.ctx.mark()
    offsets: list[int] = []
    previous = ""  # how the last valid offset was written, for messages
    for i, value in enumerate(raw):
        ns = t.ctx.duration((*t.at("at"), i), value, positive=False)
        if ns is None:
            continue
        if offsets and ns < offsets[-1]:
            t.ctx.bad((*t.at("at"), i), value, f"must not be before {previous}")
        offsets.append(ns)
        previous = f"at[{i}] ({show(value)})"
    repeat = t.duration("repeat", positive=True)
    if repeat is not None and offsets and repeat <= offsets[-1]:
        t.ctx.bad(
            t.at("repeat"), t.data["repeat"], f"must be longer than the last offset {previous}"
        )
    if t.ctx.failed_since(mark):
        return None
    return At(tuple(offsets), repeat)


def _burst(t: Table) -> Pattern | None:
    raw = t.data["burst"]
    if not isinstance(raw, dict):
        t.ctx.bad(
            t.at("burst"),
            raw,
            "must be a table like { count = 5, spacing = '100ms', every = '10s' }",
        )
        return None
    b = Table(t.ctx, raw, t.at("burst"))
    mark = t.ctx.mark()
    b.only(("count", "spacing", "every"))
    count = b.integer("count", required="an integer >= 1", lo=1, hi=_MAX_BURST_COUNT)
    spacing = b.duration("spacing", positive=False, default=0)
    every = b.duration("every", positive=True, required="a duration > 0")
    if (
        count is not None
        and spacing is not None
        and every is not None
        and ((count - 1) * spacing >= every)
    ):
        b.ctx.bad(
            t.at("burst"),
            raw,
            f"{count} messages {show(raw['spacing'])} apart take longer than every"
            f" ({show(raw['every'])}): bursts must not overlap",
        )
    if t.ctx.failed_since(mark) or count is None or spacing is None or every is None:
        return None
    return Burst(count, spacing, every)


_PATTERN_BUILDERS: Final[dict[str, Callable[[Table], Pattern | None]]] = {
    "every": _every,
    "rate": _rate,
    "at": _at,
    "burst": _burst,
}


def build_envelope(ctx: Context, raw: object, path: KeyPath) -> Envelope | None:
    """Keys in order; ``"$seq"`` etc. are slots, ``"$$x"`` is the constant ``"$x"``."""
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table like { type = '$type', data = '$data' }")
        return None
    if not raw:
        ctx.bad(path, raw, "must have at least one key")
        return None
    slots = [s.value for s in Slot]
    mark = ctx.mark()
    keys: list[tuple[str, Slot | JSON]] = []
    for key, value in raw.items():
        at = (*path, key)
        if not key:
            ctx.report(at, "empty key: an envelope key needs a name")
        elif isinstance(value, str) and value.startswith("$$"):
            keys.append((key, value[1:]))
        elif isinstance(value, str) and value.startswith("$"):
            if value in slots:
                keys.append((key, Slot(value)))
            else:
                allowed = unknown("slot", value, slots)
                ctx.bad(at, value, f"{allowed}; write '$$' for a literal '$'")
        else:
            keys.append((key, json_value(ctx, at, value)))
    return None if ctx.failed_since(mark) else Envelope(tuple(keys))
