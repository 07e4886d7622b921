"""``[[fault]]`` tables → :class:`~simulator.core.model.Fault`: the kind and its parameters,
when it happens (``at``, ``every``, ``window``, ``poisson``, ``duration``, ``limit``) and
whom it hits (``streams``, ``connections``, ``after_connections``, ``probability``,
``every_nth``, ``match``). ``docs/faults.md`` documents the language.

Each kind accepts its own keys only: a key of another kind is reported with the kinds
that take it, any other key with the closest allowed one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from simulator.core.model import (
    JSON,
    BurstLoss,
    ConnectionEvery,
    ConnectionFraction,
    ConnectionList,
    Connections,
    Corrupt,
    CorruptMode,
    Delay,
    Disconnect,
    Drop,
    Duplicate,
    Fault,
    FaultAction,
    FaultAt,
    FaultEvery,
    FaultKind,
    FaultLevel,
    FaultPoisson,
    FaultSchedule,
    FaultTarget,
    FaultWindow,
    FixedLatency,
    Latency,
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
    Trigger,
    UniformLatency,
)
from simulator.scenario.lines import KeyPath
from simulator.scenario.messages import names, show, unknown
from simulator.scenario.reader import ABSENT, Context, Table, json_value

__all__ = ["build_faults"]

MAX_COPIES: Final = 10
MAX_DEPTH: Final = 100
MAX_REASON_BYTES: Final = 123  # RFC 6455 5.5: a control frame's payload is at most 125 bytes
REJECT_STATUSES: Final = (401, 403, 429, 503)
RETRY_STATUSES: Final = (429, 503)
#: What a reject with ``respond = "close"`` closes with, by status, unless ``close_code``
#: says: 4000 + the status for auth refusals (a common convention, as in graphql-ws),
#: 1013 (Try Again Later) for those a client should retry.
REJECT_CLOSE_CODES: Final = {401: 4401, 403: 4403, 429: 1013, 503: 1013}

_TRIGGERS: Final = ("at", "every", "window", "poisson")
_SCHEDULE: Final = (*_TRIGGERS, "duration", "limit")
_LEVEL_KEYS: Final[dict[FaultLevel, tuple[str, ...]]] = {
    FaultLevel.MESSAGE: (
        "streams",
        "connections",
        "after_connections",
        "probability",
        "every_nth",
        "match",
        *_SCHEDULE,
    ),
    FaultLevel.CONNECTION: ("connections", "after_connections", *_TRIGGERS, "limit"),
    FaultLevel.SERVER: (*_TRIGGERS, "limit"),
}
_KIND_KEYS: Final[dict[FaultKind, tuple[str, ...]]] = {
    FaultKind.DROP: (),
    FaultKind.DELAY: ("latency", "keep_order"),
    FaultKind.DUPLICATE: ("copies",),
    FaultKind.REORDER: ("depth",),
    FaultKind.CORRUPT: ("mode",),
    FaultKind.BURST_LOSS: ("loss", "burst"),
    FaultKind.DISCONNECT: ("code", "reason"),
    FaultKind.RESET: (),
    FaultKind.STALL: ("duration",),
    FaultKind.THROTTLE: ("bytes_per_s", "duration"),
    FaultKind.OUTAGE: ("duration", "retry_after", "respond"),
    FaultKind.REJECT: (
        "status",
        "delay",
        "retry_after",
        "respond",
        "close_code",
        "duration",
        "after_connections",
    ),
    FaultKind.MASS_DISCONNECT: ("code", "reason"),
}


def _keys_of(kind: FaultKind) -> tuple[str, ...]:
    """The keys a fault of ``kind`` accepts, in the order the docs list them."""
    keys = ["kind", "name", *_KIND_KEYS[kind]]
    for key in _LEVEL_KEYS[kind.level]:
        # burst_loss draws its own losses: a probability on top would only blur its rate.
        if key not in keys and not (kind is FaultKind.BURST_LOSS and key == "probability"):
            keys.append(key)
    return tuple(keys)


_ALLOWED: Final = {kind: _keys_of(kind) for kind in FaultKind}
_ALL_KEYS: Final = tuple(dict.fromkeys(k for keys in _ALLOWED.values() for k in keys))


def fault_keys(kind: FaultKind) -> tuple[str, ...]:
    """The keys a ``[[fault]]`` table of ``kind`` may have, schedule keys included."""
    return _ALLOWED[kind]


_KINDS: Final = tuple(kind.value for kind in FaultKind)


def build_faults(
    ctx: Context, raw: object, stream_names: Sequence[str] | None
) -> tuple[Fault, ...] | None:
    """All ``[[fault]]`` tables (none when absent). ``stream_names`` are the streams that
    ``streams = [...]`` may name (the scenario's, or a recording's); ``None`` when they
    could not be read (then unchecked)."""
    if raw is ABSENT:
        return ()
    if isinstance(raw, dict):
        ctx.report(("fault",), "a single [fault] table: write [[fault]] for each fault")
        return None
    if not isinstance(raw, list):
        ctx.bad(("fault",), raw, "must be one or more [[fault]] tables")
        return None
    known = None if stream_names is None else tuple(stream_names)
    mark = ctx.mark()
    faults: list[Fault] = []
    first_use: dict[str, int] = {}
    for i, fault_raw in enumerate(raw):
        fault = _fault(ctx, fault_raw, ("fault", i), known)
        name = fault_raw.get("name", f"fault[{i}]") if isinstance(fault_raw, dict) else None
        if isinstance(name, str):
            if name in first_use:
                first = ctx.name_of(("fault", first_use[name]), ("fault", i))
                ctx.bad(
                    ("fault", i, "name"),
                    name,
                    f"already the name of {first}: fault names must be unique",
                )
            else:
                first_use[name] = i
        if fault is not None:
            faults.append(fault)
    return None if ctx.failed_since(mark) else tuple(faults)


def _fault(
    ctx: Context, raw: object, path: KeyPath, stream_names: tuple[str, ...] | None
) -> Fault | None:
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table ([[fault]])")
        return None
    t = Table(ctx, raw, path)
    mark = ctx.mark()
    kind_raw = t.get("kind", required=f"one of {', '.join(_KINDS)}")
    kind = None if kind_raw is ABSENT else ctx.choose(t.at("kind"), kind_raw, FaultKind, "kind")
    allowed = _ALL_KEYS if kind is None else _ALLOWED[kind]
    _only(t, kind, allowed)
    index = path[-1]
    name = t.string("name", default=f"fault[{index}]")
    if kind is None:
        return None
    schedule = _schedule(t, kind)
    action = _ACTIONS[kind](t, schedule)
    target = _target(t, kind, stream_names)
    if ctx.failed_since(mark) or name is None or schedule is None:
        return None
    if action is None or target is None:
        return None
    return Fault(name, action, schedule, target)


def _only(t: Table, kind: FaultKind | None, allowed: tuple[str, ...]) -> None:
    """Report keys of other kinds (with the kinds that take them), then unknown keys."""
    misplaced = [k for k in t.data if k not in allowed and k in _ALL_KEYS]
    for key in misplaced:
        assert kind is not None  # with no kind, every key of any kind is allowed
        takers = [k.value for k in FaultKind if key in _ALLOWED[k]]
        t.ctx.report(t.at(key), f"not for kind {kind.value!r} (only for {names(takers)})")
    t.only((*allowed, *misplaced))


# ============================================================================ schedule


def _schedule(t: Table, kind: FaultKind) -> FaultSchedule | None:
    """``at``, ``every``, ``window`` or ``poisson`` (at most one), ``duration``, ``limit``."""
    mark = t.ctx.mark()
    given = [k for k in t.data if k in _TRIGGERS]  # in file order
    for extra in given[1:]:
        t.ctx.report(
            t.at(extra),
            f"together with '{given[0]}': a fault has at most one of at, every, window or poisson",
        )
    trigger = _TRIGGER_BUILDERS[given[0]](t) if len(given) == 1 else None
    level = kind.level
    duration = _duration(t, kind) if "duration" in _ALLOWED[kind] else None
    limit = t.integer("limit", lo=1) if "limit" in t else None
    repeating = given[:1] in (["every"], ["poisson"])
    if "duration" in t and given[:1] == ["window"]:
        t.ctx.report(t.at("duration"), "together with 'window': the window's end is when it ends")
    elif (
        "duration" not in t
        and repeating
        and (level is FaultLevel.MESSAGE or kind is FaultKind.REJECT)
    ):
        t.ctx.report(
            t.at("duration"),
            f"missing: required with '{given[0]}' (how long each occurrence lasts)",
        )
    if kind is FaultKind.OUTAGE and "duration" not in t and given[:1] != ["window"]:
        t.ctx.report(t.at("duration"), "missing: required (how long the outage lasts), or a window")
    if level is FaultLevel.MESSAGE and "limit" in t and not repeating:
        t.ctx.bad(
            t.at("limit"),
            t.data["limit"],
            "only allowed with every or poisson on a message-level fault (it counts their"
            " occurrences)",
        )
    if not given and kind in (FaultKind.OUTAGE, FaultKind.MASS_DISCONNECT):
        t.ctx.report(t.path, "no schedule: needs one of at, every, window or poisson")
    if t.ctx.failed_since(mark):
        return None
    return FaultSchedule(trigger, duration, limit)


def _duration(t: Table, kind: FaultKind) -> int | None:
    """``duration``: > 0, or ``"forever"`` (the default) for stall and throttle."""
    if kind not in (FaultKind.STALL, FaultKind.THROTTLE):
        return t.duration("duration", positive=True)
    value = t.duration_or("duration", "forever")
    return None if isinstance(value, str) else value


def _at(t: Table) -> Trigger | None:
    ns = t.duration("at", positive=False)
    return None if ns is None else FaultAt(ns)


def _every(t: Table) -> Trigger | None:
    ns = t.duration("every", positive=True)
    return None if ns is None else FaultEvery(ns)


def _poisson(t: Table) -> Trigger | None:
    ns = t.duration("poisson", positive=True)
    return None if ns is None else FaultPoisson(ns)


def _window(t: Table) -> Trigger | None:
    raw = t.data["window"]
    if not isinstance(raw, dict):
        t.ctx.bad(t.at("window"), raw, "must be a table like { start = '10s', end = '40s' }")
        return None
    w = Table(t.ctx, raw, t.at("window"))
    mark = t.ctx.mark()
    w.only(("start", "end"))
    start = w.duration("start", positive=False, default=0)
    end = w.duration("end", positive=True, required="a duration > start")
    if start is not None and end is not None and end <= start:
        t.ctx.bad(w.at("end"), raw["end"], f"must be after start ({show(raw.get('start'))})")
    if t.ctx.failed_since(mark) or start is None or end is None:
        return None
    return FaultWindow(start, end)


_TRIGGER_BUILDERS: Final[dict[str, Callable[[Table], Trigger | None]]] = {
    "at": _at,
    "every": _every,
    "window": _window,
    "poisson": _poisson,
}


# ============================================================================ target


def _target(t: Table, kind: FaultKind, stream_names: tuple[str, ...] | None) -> FaultTarget | None:
    mark = t.ctx.mark()
    allowed = _ALLOWED[kind]
    streams = _streams(t, stream_names) if "streams" in t and "streams" in allowed else ()
    connections = _connections(t) if "connections" in t and "connections" in allowed else None
    after = t.integer("after_connections", default=0, lo=0) if "after_connections" in allowed else 0
    probability = (
        t.number("probability", default=1.0, ge=0, le=1) if "probability" in allowed else 1.0
    )
    every_nth = t.integer("every_nth", lo=1) if "every_nth" in allowed else None
    match = _match(t) if "match" in t and "match" in allowed else ()
    if t.ctx.failed_since(mark) or streams is None or after is None or probability is None:
        return None
    if match is None:
        return None
    return FaultTarget(streams, connections, after, probability, every_nth, match)


def _streams(t: Table, known: tuple[str, ...] | None) -> tuple[str, ...] | None:
    raw = t.data["streams"]
    if not isinstance(raw, list) or not raw:
        allowed = "must be an array of stream names, like ['trades'] (leave it out for all)"
        t.ctx.bad(t.at("streams"), raw, allowed)
        return None
    mark = t.ctx.mark()
    out: list[str] = []
    for i, value in enumerate(raw):
        path = (*t.at("streams"), i)
        name = t.ctx.string(path, value)
        if name is None:
            continue
        if known is not None and name not in known:
            t.ctx.bad(path, name, unknown("stream", name, known))
        elif name in out:
            t.ctx.bad(path, name, f"listed twice (first as streams[{out.index(name)}])")
        out.append(name)
    return None if t.ctx.failed_since(mark) else tuple(out)


_CONNECTIONS_ALLOWED: Final = (
    "must be an array of connection indexes like [0, 2], or { fraction = 0.5 }, or { every = 3 }"
)


def _connections(t: Table) -> Connections | None:
    raw = t.data["connections"]
    at = t.at("connections")
    if isinstance(raw, list) and raw:
        mark = t.ctx.mark()
        indexes: list[int] = []
        for i, value in enumerate(raw):
            index = t.ctx.integer((*at, i), value, lo=0)
            if index is not None and index in indexes:
                t.ctx.bad((*at, i), value, "listed twice")
            elif index is not None:
                indexes.append(index)
        return None if t.ctx.failed_since(mark) else ConnectionList(tuple(indexes))
    if not isinstance(raw, dict):
        t.ctx.bad(at, raw, _CONNECTIONS_ALLOWED)
        return None
    c = Table(t.ctx, raw, at)
    mark = t.ctx.mark()
    c.only(("fraction", "every"))
    given = [k for k in raw if k in ("fraction", "every")]
    if not given and not c.suggested(("fraction", "every")):
        t.ctx.bad(at, raw, _CONNECTIONS_ALLOWED)
    elif len(given) > 1:
        t.ctx.report(c.at(given[1]), f"together with '{given[0]}': use one of fraction or every")
    fraction = c.number("fraction", gt=0, le=1)
    every = c.integer("every", lo=1)
    if t.ctx.failed_since(mark):
        return None
    if fraction is not None:
        return ConnectionFraction(fraction)
    return None if every is None else ConnectionEvery(every)


def _match(t: Table) -> tuple[tuple[tuple[str, ...], JSON], ...] | None:
    raw = t.data["match"]
    if not isinstance(raw, dict) or not raw:
        allowed = (
            "must be a non-empty table of dotted paths and values,"
            " like { 'data.level' = 'warning' }"
        )
        t.ctx.bad(t.at("match"), raw, allowed)
        return None
    mark = t.ctx.mark()
    out: list[tuple[tuple[str, ...], JSON]] = []
    _flatten(t.ctx, raw, t.at("match"), (), out)
    return None if t.ctx.failed_since(mark) else tuple(out)


def _flatten(
    ctx: Context,
    raw: dict[str, object],
    path: KeyPath,
    prefix: tuple[str, ...],
    out: list[tuple[tuple[str, ...], JSON]],
) -> None:
    """``{ "data.level" = "x" }`` and ``{ data = { level = "x" } }`` both give
    ``(("data", "level"), "x")``: a table value is a deeper path, never a value."""
    for key, value in raw.items():
        at = (*path, key)
        segments = tuple(key.split("."))
        if not all(segments):
            ctx.report(at, "empty segment in a dotted path: write keys like 'data.level'")
            continue
        if ctx.too_deep(at, len(prefix) + len(segments)):
            continue
        if isinstance(value, dict):
            if not value:
                ctx.bad(at, value, "an empty table matches nothing: compare with a value")
            else:
                _flatten(ctx, value, at, (*prefix, *segments), out)
        else:
            out.append(((*prefix, *segments), json_value(ctx, at, value)))


# ============================================================================ actions


def _drop(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    return Drop()


def _delay(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    latency = _latency(t)
    keep_order = t.boolean("keep_order", default=False)
    return None if latency is None or keep_order is None else Delay(latency, keep_order)


_LATENCY_ALLOWED: Final = (
    "must be a duration like '200ms', or a table like { dist = 'uniform', min = '50ms',"
    " max = '300ms' }"
)
_LATENCY_DISTS: Final = {
    "uniform": ("dist", "min", "max"),
    "normal": ("dist", "mean", "std"),
    "pareto": ("dist", "scale", "shape", "max"),
}


def _latency(t: Table) -> Latency | None:
    raw = t.get("latency", required="a duration like '200ms', or { dist = ... }")
    if raw is ABSENT:
        return None
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        ns = t.duration("latency", positive=False)
        return None if ns is None else FixedLatency(ns)
    if not isinstance(raw, dict):
        t.ctx.bad(t.at("latency"), raw, _LATENCY_ALLOWED)
        return None
    d = Table(t.ctx, raw, t.at("latency"))
    dists = tuple(_LATENCY_DISTS)
    if "dist" not in d:
        d.only(tuple(dict.fromkeys(k for keys in _LATENCY_DISTS.values() for k in keys)))
        d.get("dist", required=f"one of {', '.join(dists)}")
        return None
    dist = raw["dist"]
    if not isinstance(dist, str):
        t.ctx.bad(d.at("dist"), dist, f"must be a string, one of {', '.join(dists)}")
        return None
    if dist not in _LATENCY_DISTS:
        t.ctx.bad(d.at("dist"), dist, unknown("distribution", dist, dists))
        return None
    mark = t.ctx.mark()
    d.only(_LATENCY_DISTS[dist])
    if dist == "uniform":
        lo = d.duration("min", positive=False, required="a duration >= 0")
        hi = d.duration("max", positive=True, required="a duration > 0")
        d.ordered("min", lo, "max", hi)
        if t.ctx.failed_since(mark) or lo is None or hi is None:
            return None
        return UniformLatency(lo, hi)
    if dist == "normal":
        mean = d.duration("mean", positive=False, required="a duration >= 0")
        std = d.duration("std", positive=False, required="a duration >= 0")
        if t.ctx.failed_since(mark) or mean is None or std is None:
            return None
        return NormalLatency(mean, std)
    scale = d.duration("scale", positive=True, required="a duration > 0")
    shape = d.number("shape", required="a number > 0", gt=0)
    cap = d.duration("max", positive=True)
    d.ordered("scale", scale, "max", cap)
    if t.ctx.failed_since(mark) or scale is None or shape is None:
        return None
    return ParetoLatency(scale, shape, cap)


def _duplicate(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    copies = t.integer("copies", default=1, lo=1, hi=MAX_COPIES)
    return None if copies is None else Duplicate(copies)


def _reorder(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    depth = t.integer("depth", default=1, lo=1, hi=MAX_DEPTH)
    return None if depth is None else Reorder(depth)


def _corrupt(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    mode = t.choose("mode", CorruptMode, "mode", default=CorruptMode.INVALID_JSON)
    return None if mode is None else Corrupt(mode)


def _burst_loss(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    loss = t.number("loss", required="the mean loss rate, a number between 0 and 1")
    if loss is not None and not 0 < loss < 1:
        t.ctx.bad(t.at("loss"), t.data["loss"], "must be between 0 and 1, both excluded")
        loss = None
    burst = t.number("burst", required="the mean burst length, a number >= 1", ge=1)
    if loss is None or burst is None:
        return None
    least = loss / (1 - loss)
    if least > burst * (1 + 1e-9):  # a little slack: 0.9 / 0.1 is 9.000000000000002
        t.ctx.bad(
            t.at("burst"),
            t.data["burst"],
            f"must be >= {least:.4g} (loss / (1 - loss)) for a mean loss rate of {loss:g}",
        )
        return None
    return BurstLoss(loss, burst)


def _close_code(t: Table, default: int | None, key: str = "code") -> int | None:
    code = t.integer(key, default=default)
    if code is not None and not (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    ):
        t.ctx.bad(
            t.at(key),
            code,
            "must be a close code a server may send: 1000-1003, 1007-1014 or 3000-4999",
        )
        return None
    return code


def _reason(t: Table) -> str | None:
    raw = t.get("reason")
    if raw is ABSENT:
        return ""
    if not isinstance(raw, str):
        t.ctx.bad(t.at("reason"), raw, "must be a string")
        return None
    size = len(raw.encode("utf-8"))
    if size > MAX_REASON_BYTES:
        t.ctx.bad(
            t.at("reason"),
            raw,
            f"is {size} bytes in UTF-8: a close reason has at most {MAX_REASON_BYTES}",
        )
        return None
    return raw


def _disconnect(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    code, reason = _close_code(t, 1000), _reason(t)
    return None if code is None or reason is None else Disconnect(code, reason)


def _mass_disconnect(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    code, reason = _close_code(t, 1001), _reason(t)
    return None if code is None or reason is None else MassDisconnect(code, reason)


def _reset(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    return Reset()


def _stall(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    return Stall()


def _throttle(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    rate = t.number("bytes_per_s", required="a number of bytes per second > 0", gt=0)
    return None if rate is None else Throttle(rate)


def _respond(t: Table) -> Respond | None:
    return t.choose("respond", Respond, "respond", default=Respond.HTTP)


def _outage(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    respond = _respond(t)
    retry = t.duration("retry_after", positive=False)
    if respond is None:
        return None
    if retry is not None:
        return Outage(retry, respond)
    if schedule is None or "retry_after" in t:
        return None
    # By default a client is told to come back when the outage is over.
    window = schedule.trigger
    if isinstance(window, FaultWindow):
        return Outage(window.end_ns - window.start_ns, respond)
    return None if schedule.duration_ns is None else Outage(schedule.duration_ns, respond)


def _reject(t: Table, schedule: FaultSchedule | None) -> FaultAction | None:
    mark = t.ctx.mark()
    if "status" in t and "delay" in t:
        t.ctx.report(
            t.at("delay"), "together with 'status': a reject refuses (status) or delays (delay)"
        )
        return None
    if "status" not in t and "delay" not in t and not t.suggested(("status", "delay")):
        t.ctx.report(t.at("status"), "missing: required (401, 403, 429 or 503), or a delay")
        return None
    status = t.integer("status")
    if status is not None and status not in REJECT_STATUSES:
        t.ctx.bad(t.at("status"), status, f"must be one of {', '.join(map(str, REJECT_STATUSES))}")
    delay = t.duration("delay", positive=True)
    retry = t.duration("retry_after", positive=False)
    if "retry_after" in t and status not in RETRY_STATUSES and not t.ctx.failed_since(mark):
        t.ctx.bad(t.at("retry_after"), t.data["retry_after"], "only allowed with status 429 or 503")
    respond = _respond(t)
    if "respond" in t and "delay" in t:
        t.ctx.bad(
            t.at("respond"),
            t.data["respond"],
            "only allowed with status: a delayed handshake is accepted, not refused",
        )
    close_code = _close_code(t, None, "close_code") if "close_code" in t else None
    if "close_code" in t and respond is not Respond.CLOSE:
        t.ctx.bad(
            t.at("close_code"),
            t.data["close_code"],
            "only allowed with respond = 'close' (an HTTP refusal has a status, not a close code)",
        )
    if t.ctx.failed_since(mark) or (status is None and delay is None) or respond is None:
        return None
    if respond is Respond.CLOSE and close_code is None and status is not None:
        close_code = REJECT_CLOSE_CODES[status]
    return Reject(status, retry, delay, respond, close_code)


_ACTIONS: Final[dict[FaultKind, Callable[[Table, FaultSchedule | None], FaultAction | None]]] = {
    FaultKind.DROP: _drop,
    FaultKind.DELAY: _delay,
    FaultKind.DUPLICATE: _duplicate,
    FaultKind.REORDER: _reorder,
    FaultKind.CORRUPT: _corrupt,
    FaultKind.BURST_LOSS: _burst_loss,
    FaultKind.DISCONNECT: _disconnect,
    FaultKind.RESET: _reset,
    FaultKind.STALL: _stall,
    FaultKind.THROTTLE: _throttle,
    FaultKind.OUTAGE: _outage,
    FaultKind.REJECT: _reject,
    FaultKind.MASS_DISCONNECT: _mass_disconnect,
}
