"""Fault plans as flat data: a tuple of :class:`PlannedFault`, each one fault at one
time on one connection (or on the server, or on one connection as it opens), that
generators can draw and shrink, and that turns into ``[[fault]]`` tables and back.

A flat fault is a ``[[fault]]`` of a restricted shape: one ``at`` trigger (with a
``duration`` where the kind lasts), or, for a connection kind, none (it happens when
its connection opens); ``connections = [i]`` for connection and message kinds; nothing
random (no probability, no fraction, no Poisson), no ``limit``. So the planner's draws
play no part and the seed does not change what it does::

    plan = (
        PlannedFault(0, FaultKind.RESET, conn=0),
        PlannedFault(1_500_000_000, FaultKind.OUTAGE, duration_ns=2_000_000_000),
    )
    faults = to_faults(plan)          # Fault values named p0-reset, p1-outage
    text = to_toml(plan)              # the same as [[fault]] tables
    from_faults(faults) == plan       # and back

Pure: no clock, no I/O, no random. ``docs/faults.md`` ("Fault plans as flat data")
documents the format; :mod:`simulator.testing.strategies` draws plans for hypothesis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeGuard

from simulator.core.durations import format_duration
from simulator.core.model import (
    ConnectionList,
    Disconnect,
    Duplicate,
    Fault,
    FaultAction,
    FaultAt,
    FaultKind,
    FaultLevel,
    FaultSchedule,
    FaultTarget,
    FaultWindow,
    MassDisconnect,
    Outage,
    Reject,
    Reset,
    Respond,
    Stall,
    Throttle,
)
from simulator.core.model import Drop as DropAction

__all__ = [
    "FLAT_KINDS",
    "FlatPlan",
    "PlannedFault",
    "duration_text",
    "from_fault",
    "from_faults",
    "plan_table",
    "to_faults",
    "to_toml",
]

#: The kinds a flat plan may hold, simplest first (generators draw them in this order,
#: so a plan shrinks towards the kinds at the front).
FLAT_KINDS: Final = (
    FaultKind.RESET,
    FaultKind.DISCONNECT,
    FaultKind.STALL,
    FaultKind.THROTTLE,
    FaultKind.DROP,
    FaultKind.DUPLICATE,
    FaultKind.MASS_DISCONNECT,
    FaultKind.OUTAGE,
    FaultKind.REJECT,
)

_NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000
# The limits the scenario loader enforces (simulator/scenario/faults.py): checked here
# too, so that a plan is refused when it is made rather than when its TOML is read.
_MAX_COPIES: Final = 10
_MAX_REASON_BYTES: Final = 123  # RFC 6455 5.5: a control frame's payload is at most 125 bytes
_REJECT_STATUSES: Final = (401, 403, 429, 503)
_RETRY_STATUSES: Final = (429, 503)

#: Kinds that may happen when their connection opens (``on_open``): the connection level.
_ON_OPEN: Final = frozenset(
    {FaultKind.RESET, FaultKind.DISCONNECT, FaultKind.STALL, FaultKind.THROTTLE}
)
#: Kinds that never last: ``duration_ns`` must be ``None``.
_INSTANT: Final = frozenset({FaultKind.RESET, FaultKind.DISCONNECT, FaultKind.MASS_DISCONNECT})
#: Kinds for which ``duration_ns=None`` means "for good" (from ``at_ns`` on).
_FOR_GOOD: Final = frozenset(
    {FaultKind.STALL, FaultKind.THROTTLE, FaultKind.DROP, FaultKind.DUPLICATE, FaultKind.REJECT}
)
#: Kinds for which a ``window`` does the same as ``at`` + ``duration`` (for stall and
#: throttle it does not: a window also hits connections that open inside it).
_WINDOW_IS_AT: Final = frozenset(
    {FaultKind.DROP, FaultKind.DUPLICATE, FaultKind.OUTAGE, FaultKind.REJECT}
)
#: Each kind's parameters, in the order they are kept and written.
_PARAMS: Final[dict[FaultKind, tuple[str, ...]]] = {
    FaultKind.DISCONNECT: ("code", "reason"),
    FaultKind.MASS_DISCONNECT: ("code", "reason"),
    FaultKind.THROTTLE: ("bytes_per_s",),
    FaultKind.DUPLICATE: ("copies",),
    FaultKind.OUTAGE: ("retry_after_ns",),
    FaultKind.REJECT: ("status", "retry_after_ns"),
}


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """One fault of a flat plan.

    - ``at_ns``: scenario time (ns since the server started) at which it happens or
      starts;
    - ``kind``: one of :data:`FLAT_KINDS`;
    - ``conn``: the connection index (= handshake attempt number) for connection kinds
      (disconnect, reset, stall, throttle) and message kinds (drop, duplicate: every
      message of that connection sent in ``[at_ns, at_ns + duration_ns)``); ``None`` for
      server kinds (outage, reject, mass_disconnect);
    - ``duration_ns``: how long it lasts. Required for outage; ``None`` means "for good"
      for stall, throttle, drop, duplicate and reject; always ``None`` for reset,
      disconnect and mass_disconnect;
    - ``params``: the kind's parameters, as ``(name, value)`` pairs: ``code`` and
      ``reason`` (disconnect, mass_disconnect), ``bytes_per_s`` (throttle, required),
      ``copies`` (duplicate), ``retry_after_ns`` (outage; reject with status 429 or 503),
      ``status`` (reject, required: 401, 403, 429 or 503);
    - ``on_open``: for a connection kind, it happens when connection ``conn`` opens,
      whenever that is, instead of at ``at_ns`` (which must be 0): a server that
      accepts and then drops (reset, disconnect), or stalls or throttles from the start
      (for ``duration_ns`` from the open, or for good). A fault at a time hits its
      connection only if it is open then; one on open always hits it, if it opens.

    ``params`` are kept in one canonical form, so that two faults that do the same thing
    are equal: the kind's keys in the order above, values that equal the default left
    out (``code`` 1000 for disconnect and 1001 for mass_disconnect, ``reason`` ``""``,
    ``copies`` 1, an outage's ``retry_after_ns`` equal to its duration), ``bytes_per_s``
    as a float. Anything the scenario loader would refuse raises :class:`ValueError`
    naming the field.
    """

    at_ns: int
    kind: FaultKind
    conn: int | None = None
    duration_ns: int | None = None
    params: tuple[tuple[str, Any], ...] = ()
    on_open: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind) or self.kind not in FLAT_KINDS:
            allowed = ", ".join(k.value for k in FLAT_KINDS)
            raise ValueError(f"PlannedFault.kind={self.kind!r}: must be one of {allowed}")
        kind = self.kind.value
        if not _is_int(self.at_ns) or self.at_ns < 0:
            raise ValueError(f"PlannedFault.at_ns={self.at_ns!r}: must be an integer >= 0")
        if self.on_open is not False:
            if self.on_open is not True:
                raise ValueError(f"PlannedFault.on_open={self.on_open!r}: must be True or False")
            if self.kind not in _ON_OPEN:
                allowed = ", ".join(k.value for k in FLAT_KINDS if k in _ON_OPEN)
                raise ValueError(
                    f"PlannedFault.on_open=True: not for kind {kind!r} (only {allowed})"
                )
            if self.at_ns != 0:
                raise ValueError(
                    f"PlannedFault.at_ns={self.at_ns!r}: must be 0 with on_open=True"
                    " (it happens when the connection opens)"
                )
        if self.kind.level is FaultLevel.SERVER:
            if self.conn is not None:
                raise ValueError(
                    f"PlannedFault.conn={self.conn!r}: must be None for kind {kind!r}"
                    " (a server fault hits every connection)"
                )
        elif not _is_int(self.conn) or self.conn < 0:
            raise ValueError(
                f"PlannedFault.conn={self.conn!r}: kind {kind!r} needs a connection index >= 0"
            )
        duration = self.duration_ns
        if duration is None:
            if self.kind is FaultKind.OUTAGE:
                raise ValueError("PlannedFault.duration_ns=None: required for kind 'outage'")
        elif self.kind in _INSTANT:
            raise ValueError(
                f"PlannedFault.duration_ns={duration!r}: must be None for kind {kind!r}"
                " (it does not last)"
            )
        elif not _is_int(duration) or duration <= 0:
            raise ValueError(f"PlannedFault.duration_ns={duration!r}: must be an integer > 0")
        object.__setattr__(self, "params", _canonical(self.kind, self.params, duration))

    @property
    def end_ns(self) -> int | None:
        """When it stops being in force: ``at_ns + duration_ns``, or ``None`` (for
        good, or on open: then ``duration_ns`` counts from the connection's open)."""
        if self.duration_ns is None or self.on_open:
            return None
        return self.at_ns + self.duration_ns

    def param(self, name: str) -> Any:
        """The value of parameter ``name``, its default when left out (``None`` when it
        has none, like a reject's ``retry_after_ns``)."""
        if name not in _PARAMS.get(self.kind, ()):
            raise KeyError(f"{name!r} is not a parameter of kind {self.kind.value!r}")
        found = dict(self.params)
        if name in found:
            return found[name]
        return _default(self.kind, name, self.duration_ns)


FlatPlan: TypeAlias = tuple[PlannedFault, ...]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _default(kind: FaultKind, name: str, duration_ns: int | None) -> Any:
    if name == "code":
        return 1001 if kind is FaultKind.MASS_DISCONNECT else 1000
    if name == "reason":
        return ""
    if name == "copies":
        return 1
    if name == "retry_after_ns" and kind is FaultKind.OUTAGE:
        return duration_ns  # a client is told to come back when the outage is over
    return None


def _canonical(
    kind: FaultKind, params: Iterable[tuple[str, Any]], duration_ns: int | None
) -> tuple[tuple[str, Any], ...]:
    """``params`` checked, in the kind's order, without the values that are defaults."""
    allowed = _PARAMS.get(kind, ())
    given: dict[str, Any] = {}
    for pair in params:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValueError(f"PlannedFault.params: {pair!r} is not a (name, value) pair")
        name, value = pair
        if name not in allowed:
            keys = ", ".join(allowed) if allowed else "none"
            raise ValueError(
                f"PlannedFault.params: {name!r} is not a parameter of kind {kind.value!r}"
                f" (its parameters: {keys})"
            )
        if name in given:
            raise ValueError(f"PlannedFault.params: {name!r} given twice")
        given[name] = _checked(kind, name, value)
    for name in ("bytes_per_s", "status"):
        if name in allowed and name not in given:
            raise ValueError(f"PlannedFault.params: {name!r} is required for kind {kind.value!r}")
    retry = given.get("retry_after_ns")
    if kind is FaultKind.REJECT and retry is not None and given["status"] not in _RETRY_STATUSES:
        raise ValueError(
            f"PlannedFault.params: 'retry_after_ns' only with status 429 or 503,"
            f" not {given['status']}"
        )
    return tuple(
        (name, given[name])
        for name in allowed
        if name in given and given[name] != _default(kind, name, duration_ns)
    )


def _checked(kind: FaultKind, name: str, value: Any) -> Any:
    """``value`` for parameter ``name``, normalised; :class:`ValueError` if refused."""
    bad = f"PlannedFault.params: {name}={value!r}"
    if name == "code":
        if not _is_int(value) or not (
            1000 <= value <= 1003 or 1007 <= value <= 1014 or 3000 <= value <= 4999
        ):
            raise ValueError(
                f"{bad}: must be a close code a server may send: 1000-1003, 1007-1014 or 3000-4999"
            )
        return value
    if name == "reason":
        if not isinstance(value, str) or len(value.encode("utf-8")) > _MAX_REASON_BYTES:
            raise ValueError(f"{bad}: must be a string of at most {_MAX_REASON_BYTES} bytes")
        return value
    if name == "bytes_per_s":
        if not (_is_int(value) or isinstance(value, float)) or not (
            math.isfinite(value) and value > 0
        ):
            raise ValueError(f"{bad}: must be a finite number > 0")
        return float(value)
    if name == "copies":
        if not _is_int(value) or not 1 <= value <= _MAX_COPIES:
            raise ValueError(f"{bad}: must be an integer from 1 to {_MAX_COPIES}")
        return value
    if name == "status":
        if value not in _REJECT_STATUSES or not _is_int(value):
            raise ValueError(f"{bad}: must be one of {', '.join(map(str, _REJECT_STATUSES))}")
        return value
    assert name == "retry_after_ns"
    if not _is_int(value) or value < 0:
        raise ValueError(f"{bad}: must be an integer >= 0")
    return value


# ============================================================================ to faults


def to_faults(plan: Sequence[PlannedFault]) -> tuple[Fault, ...]:
    """The plan as scenario faults, in plan order: entry ``i`` becomes the fault named
    ``p<i>-<kind>`` with an ``at`` trigger, or none when ``on_open`` (and the entry's
    duration), hitting ``connections = [conn]`` (server kinds: everyone). They equal
    what the scenario loader makes of :func:`to_toml`'s text."""
    return tuple(_fault(i, p) for i, p in enumerate(plan))


def _name(i: int, p: PlannedFault) -> str:
    return f"p{i}-{p.kind.value}"


def _fault(i: int, p: PlannedFault) -> Fault:
    schedule = FaultSchedule(None if p.on_open else FaultAt(p.at_ns), p.duration_ns)
    target = FaultTarget() if p.conn is None else FaultTarget(connections=ConnectionList((p.conn,)))
    return Fault(_name(i, p), _action(p), schedule, target)


def _action(p: PlannedFault) -> FaultAction:
    kind = p.kind
    if kind is FaultKind.RESET:
        return Reset()
    if kind is FaultKind.DISCONNECT:
        return Disconnect(p.param("code"), p.param("reason"))
    if kind is FaultKind.MASS_DISCONNECT:
        return MassDisconnect(p.param("code"), p.param("reason"))
    if kind is FaultKind.STALL:
        return Stall()
    if kind is FaultKind.THROTTLE:
        return Throttle(p.param("bytes_per_s"))
    if kind is FaultKind.DROP:
        return DropAction()
    if kind is FaultKind.DUPLICATE:
        return Duplicate(p.param("copies"))
    if kind is FaultKind.OUTAGE:
        return Outage(p.param("retry_after_ns"))
    assert kind is FaultKind.REJECT
    return Reject(p.param("status"), p.param("retry_after_ns"), None)


# ============================================================================ to TOML


def to_toml(plan: Sequence[PlannedFault]) -> str:
    """The plan as ``[[fault]]`` tables, one blank line apart (``""`` for an empty plan):
    append them to a scenario file, or give them to ``sim replay --faults``. The
    scenario loader makes of them exactly :func:`to_faults`'s faults.

    Times are written exactly, as readably as they allow (``"1.5s"``, ``"250ms"``,
    ``"1m30s"``)."""
    return "\n".join(_table(i, p) for i, p in enumerate(plan))


def _table(i: int, p: PlannedFault) -> str:
    lines = [
        "[[fault]]",
        f"name = {_string(_name(i, p))}",
        f"kind = {_string(p.kind.value)}",
    ]
    if not p.on_open:  # on open: no schedule at all
        lines.append(f"at = {_string(duration_text(p.at_ns))}")
    if p.duration_ns is not None:
        lines.append(f"duration = {_string(duration_text(p.duration_ns))}")
    if p.conn is not None:
        lines.append(f"connections = [{p.conn}]")
    for name, value in p.params:
        if name == "retry_after_ns":
            lines.append(f"retry_after = {_string(duration_text(value))}")
        elif isinstance(value, str):
            lines.append(f"{name} = {_string(value)}")
        else:
            lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n"


def duration_text(ns: int) -> str:
    """``ns`` as a duration the scenario loader reads back exactly: ``"1.5s"`` for whole
    milliseconds past a second, else as :func:`format_duration` writes it."""
    if ns < _NS_PER_S or ns % _NS_PER_S == 0 or ns % _NS_PER_MS:
        return format_duration(ns)
    whole, rest = divmod(ns, _NS_PER_S)
    return f"{whole}.{rest // _NS_PER_MS:03d}".rstrip("0") + "s"


def _string(text: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's, except that TOML also wants DEL
    (U+007F) escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


# ============================================================================ from faults


def from_faults(faults: Sequence[Fault]) -> FlatPlan:
    """The flat plan of ``faults``, in their order: the inverse of :func:`to_faults`
    (names are not kept). Raises :class:`ValueError` naming the first fault that has no
    flat form, and why."""
    return tuple(from_fault(f) for f in faults)


def from_fault(fault: Fault) -> PlannedFault:
    """The flat form of one fault; :class:`ValueError` (``fault '<name>': why``) if it
    has none: a kind outside :data:`FLAT_KINDS`, a trigger other than ``at`` (or a
    ``window`` where it means the same, or none for a connection kind: on open), a
    ``limit``, a target other than one listed
    connection (server kinds: none), anything drawn at random."""
    kind = fault.kind
    if kind not in FLAT_KINDS:
        allowed = ", ".join(k.value for k in FLAT_KINDS)
        raise _not_flat(fault, f"kind {kind.value!r} has no flat form (flat kinds: {allowed})")
    at_ns, duration_ns = _when(fault)
    conn = _conn(fault)
    params = _params_of(fault)
    on_open = fault.schedule.trigger is None
    try:
        return PlannedFault(at_ns, kind, conn, duration_ns, params, on_open)
    except ValueError as e:
        raise _not_flat(fault, str(e)) from None


def _not_flat(fault: Fault, why: str) -> ValueError:
    return ValueError(f"fault {fault.name!r}: {why}")


def _when(fault: Fault) -> tuple[int, int | None]:
    schedule = fault.schedule
    trigger = schedule.trigger
    if schedule.limit is not None:
        raise _not_flat(fault, f"limit = {schedule.limit}: a flat fault happens once")
    if isinstance(trigger, FaultAt):
        return trigger.t_ns, schedule.duration_ns
    if isinstance(trigger, FaultWindow) and fault.kind in _WINDOW_IS_AT:
        return trigger.start_ns, trigger.end_ns - trigger.start_ns
    if trigger is None and fault.kind in _ON_OPEN:
        return 0, schedule.duration_ns  # on open
    if trigger is None:
        raise _not_flat(
            fault,
            f"no schedule: a flat {fault.kind.value} happens at one 'at' time"
            " (only connection kinds may happen on open)",
        )
    if isinstance(trigger, FaultWindow):
        what = "a window (for this kind it also hits connections that open inside it)"
    else:
        what = f"'{type(trigger).__name__.removeprefix('Fault').lower()}'"
    raise _not_flat(fault, f"{what}: a flat fault happens at one 'at' time")


def _conn(fault: Fault) -> int | None:
    target = fault.target
    extra = [
        why
        for why, present in (
            ("streams", bool(target.streams)),
            ("after_connections", target.after_connections != 0),
            ("probability", target.probability != 1.0),
            ("every_nth", target.every_nth is not None),
            ("match", bool(target.match)),
        )
        if present
    ]
    if extra:
        raise _not_flat(
            fault, f"{', '.join(extra)}: a flat fault hits every message of one connection"
        )
    chosen = target.connections
    if fault.level is FaultLevel.SERVER:
        return None
    if isinstance(chosen, ConnectionList) and len(chosen.indexes) == 1:
        return chosen.indexes[0]
    raise _not_flat(fault, "a flat fault targets exactly one connection: connections = [i]")


def _params_of(fault: Fault) -> tuple[tuple[str, Any], ...]:
    action = fault.action
    if isinstance(action, Disconnect | MassDisconnect):
        return (("code", action.code), ("reason", action.reason))
    if isinstance(action, Throttle):
        return (("bytes_per_s", action.bytes_per_s),)
    if isinstance(action, Duplicate):
        return (("copies", action.copies),)
    if isinstance(action, Outage | Reject) and action.respond is not Respond.HTTP:
        raise _not_flat(fault, "respond = 'close' (flat outages and rejects answer in HTTP)")
    if isinstance(action, Outage):
        return (("retry_after_ns", action.retry_after_ns),)
    if isinstance(action, Reject):
        if action.status is None:
            raise _not_flat(fault, "a reject that delays handshakes (flat rejects refuse them)")
        retry = (
            () if action.retry_after_ns is None else (("retry_after_ns", action.retry_after_ns),)
        )
        return (("status", action.status), *retry)
    return ()


# ============================================================================ as a table


def plan_table(plan: Sequence[PlannedFault]) -> list[str]:
    """The plan as lines of a table, one fault a line, in plan order::

    #  at      kind        conn  duration  params
    0  0s      reset       0     -
    1  open    disconnect  2     -         code=4000
    2  1.5s    outage      -     2s        retry_after=1s

    (``open``: when the connection opens.)
    """
    rows = [["#", "at", "kind", "conn", "duration", "params"]]
    for i, p in enumerate(plan):
        rows.append(
            [
                str(i),
                "open" if p.on_open else duration_text(p.at_ns),
                p.kind.value,
                "-" if p.conn is None else str(p.conn),
                _duration_cell(p),
                " ".join(_param_text(name, value) for name, value in p.params),
            ]
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]
        ).rstrip()
        for row in rows
    ]


def _duration_cell(p: PlannedFault) -> str:
    if p.duration_ns is not None:
        return duration_text(p.duration_ns)
    return "forever" if p.kind in _FOR_GOOD else "-"


def _param_text(name: str, value: Any) -> str:
    if name.endswith("_ns"):
        return f"{name.removesuffix('_ns')}={duration_text(value)}"
    return f"{name}={value!r}"
