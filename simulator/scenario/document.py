"""The whole TOML document → :class:`~simulator.core.model.Scenario`: the top-level
tables, ``[scenario]`` itself, and the parts built by :mod:`.server` and :mod:`.streams`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple

from simulator.core.model import Fault, Scenario
from simulator.scenario.faults import build_faults
from simulator.scenario.messages import unknown
from simulator.scenario.reader import ABSENT, Context, Table
from simulator.scenario.server import build_protocol, build_server
from simulator.scenario.streams import build_envelope, build_streams

__all__ = ["FaultSet", "build_fault_set", "build_scenario"]

_MAX_SEED: Final = 2**63 - 1
_UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_RANGE: Final = (_UNIX_EPOCH, datetime(2100, 1, 1, tzinfo=UTC))

_TOP_KEYS: Final = ("scenario", "server", "envelope", "protocol", "stream", "fault")
_SCENARIO_KEYS: Final = ("name", "description", "seed", "epoch", "duration", "extends")


def _stream_names(raw: object) -> tuple[str, ...] | None:
    """The names the ``[[stream]]`` tables give, when each gives one: what the faults'
    ``streams`` are checked against when a stream failed for another reason (a bad
    field), so that a mistake in a fault is reported with it, not after it is fixed."""
    if not isinstance(raw, list) or not raw:
        return None
    names = [t.get("name") if isinstance(t, dict) else None for t in raw]
    if not all(isinstance(n, str) for n in names):
        return None
    return tuple(n for n in names if isinstance(n, str))


def build_scenario(ctx: Context, doc: Mapping[str, object]) -> Scenario | None:
    """The scenario ``doc`` describes, or ``None`` with the reasons recorded in ``ctx``."""
    top = Table(ctx, doc, ())
    for key, value in doc.items():
        if key in _TOP_KEYS:
            continue
        if key in _SCENARIO_KEYS:
            ctx.report((key,), "not inside a table; did you mean to put it under [scenario]?")
        else:
            what = "table" if isinstance(value, dict | list) else "key"
            ctx.report((key,), unknown(what, key, _TOP_KEYS))
    meta = top.table("scenario", required="a [scenario] table with at least a name")
    header = _header(meta) if meta is not None else None
    server = build_server(top.table("server"))
    protocol = build_protocol(top.table("protocol"))
    envelope = build_envelope(ctx, doc["envelope"], ("envelope",)) if "envelope" in doc else None
    streams = build_streams(ctx, top.get("stream", "at least one [[stream]]"), envelope)
    names = _stream_names(top.get("stream")) if streams is None else tuple(s.name for s in streams)
    faults = build_faults(ctx, top.get("fault"), names)
    if header is None or server is None or protocol is None or streams is None:
        return None
    if faults is None:
        return None
    return Scenario(
        name=header.name,
        seed=header.seed,
        streams=streams,
        description=header.description,
        epoch_ns=header.epoch_ns,
        duration_ns=header.duration_ns,
        server=server,
        protocol=protocol,
        source=ctx.source,
        faults=faults,
    )


class FaultSet(NamedTuple):
    """The ``[[fault]]`` tables of a file, and the seed that plans them."""

    faults: tuple[Fault, ...]
    seed: int


def build_fault_set(
    ctx: Context,
    doc: Mapping[str, object],
    stream_names: Sequence[str],
    taken: Mapping[str, str] | None = None,
) -> FaultSet | None:
    """The faults ``doc`` declares, for a recording whose streams are ``stream_names``.

    ``doc`` is either a whole scenario (checked as one; its faults may name only
    streams the recording has too) or a faults file: an optional ``[scenario]`` (for
    its ``seed``) and one or more ``[[fault]]``. ``taken`` maps names of faults they
    join to the file that has them: a fault named the same is reported. ``None`` with
    the reasons in ``ctx``.
    """
    if "stream" in doc:
        scenario = build_scenario(ctx, doc)
        if scenario is None:
            return None
        mark = ctx.mark()
        for i, fault in enumerate(scenario.faults):
            for j, name in enumerate(fault.target.streams):
                if name not in stream_names:
                    what = "stream in the recording"
                    ctx.bad(("fault", i, "streams", j), name, unknown(what, name, stream_names))
        _check_taken(ctx, scenario.faults, taken or {})
        return None if ctx.failed_since(mark) else FaultSet(scenario.faults, scenario.seed)
    top = Table(ctx, doc, ())
    top.only(("scenario", "fault"))
    meta = top.table("scenario")
    seed: int | None = 0
    if meta is not None:
        meta.only(_SCENARIO_KEYS)
        seed = meta.integer("seed", default=0, lo=0, hi=_MAX_SEED)
    raw = top.get("fault", "one or more [[fault]] tables (or a whole scenario)")
    faults = build_faults(ctx, raw, tuple(stream_names)) if raw is not ABSENT else None
    if faults is None or seed is None:
        return None
    mark = ctx.mark()
    _check_taken(ctx, faults, taken or {})
    return None if ctx.failed_since(mark) else FaultSet(faults, seed)


def _check_taken(ctx: Context, faults: Sequence[Fault], taken: Mapping[str, str]) -> None:
    # Built faults are the file's [[fault]] tables one for one, in order.
    for i, fault in enumerate(faults):
        if fault.name in taken:
            ctx.bad(
                ("fault", i, "name"),
                fault.name,
                f"already the name of a fault of {taken[fault.name]}: fault names must be"
                " unique (a name seeds the fault's draws); give this one a name of its own",
            )


class _Header(NamedTuple):
    """What ``[scenario]`` holds."""

    name: str
    description: str
    seed: int
    epoch_ns: int | None
    duration_ns: int | None


def _header(t: Table) -> _Header | None:
    mark = t.ctx.mark()
    t.only(_SCENARIO_KEYS)
    name = t.string("name", required="a non-empty string")
    description = t.get("description")
    if description is not ABSENT and not isinstance(description, str):
        t.ctx.bad(t.at("description"), description, "must be a string")
    seed = t.integer("seed", default=0, lo=0, hi=_MAX_SEED)
    epoch = _epoch_ns(t)
    duration = t.duration("duration", positive=True)
    if t.ctx.failed_since(mark) or name is None or seed is None:
        return None
    text = description if isinstance(description, str) else ""
    return _Header(name, text, seed, epoch, duration)


def _epoch_ns(t: Table) -> int | None:
    raw = t.get("epoch")
    if raw is ABSENT:
        return None
    when: datetime | None = None
    if isinstance(raw, datetime):
        when = raw
    elif isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.strip())
        except ValueError:
            when = None
    if when is None:
        t.ctx.bad(
            t.at("epoch"),
            raw,
            "must be an ISO 8601 date-time with offset, like '2026-01-01T00:00:00Z'",
        )
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        t.ctx.bad(t.at("epoch"), raw, "has no UTC offset: add 'Z' or an offset like '+01:00'")
        return None
    if not _EPOCH_RANGE[0] <= when < _EPOCH_RANGE[1]:
        t.ctx.bad(t.at("epoch"), raw, "must be from 1970-01-01 to 2099-12-31")
        return None
    delta = when - _UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000
