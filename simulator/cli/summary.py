"""One-line descriptions of scenarios and their faults for people: what `sim validate`
prints."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

from simulator.core.durations import format_duration
from simulator.core.model import (
    At,
    Burst,
    ConnectionEvery,
    ConnectionFraction,
    ConnectionList,
    Every,
    Fault,
    FaultAt,
    FaultEvery,
    FaultLevel,
    FaultSchedule,
    FaultTarget,
    FaultWindow,
    Poisson,
    Scenario,
    Schedule,
    UniformInterval,
)
from simulator.core.rates import mean_rate_per_s
from simulator.core.toml_text import toml_value

if TYPE_CHECKING:
    from simulator.scenario import FaultSet


def describe_schedule(schedule: Schedule) -> str:
    """``every 5s``, ``every 15s-30s``, ``poisson 2.5/s``, ``burst 5 x 100ms every 10s``,
    ``at 3 offsets, repeat 10s``; with ``from``/``until`` for a window."""
    p = schedule.pattern
    if isinstance(p, Every):
        text = f"every {format_duration(p.interval_ns)}"
    elif isinstance(p, UniformInterval):
        text = f"every {format_duration(p.min_ns)}-{format_duration(p.max_ns)}"
    elif isinstance(p, Poisson):
        text = f"poisson {p.rate_per_s:g}/s"
    elif isinstance(p, Burst):
        text = (
            f"burst {p.count} x {format_duration(p.spacing_ns)} every {format_duration(p.every_ns)}"
        )
    else:
        assert isinstance(p, At)
        text = f"at {len(p.offsets_ns)} offsets"
        if p.repeat_ns is not None:
            text += f", repeat {format_duration(p.repeat_ns)}"
    if schedule.start_ns:
        text += f", from {format_duration(schedule.start_ns)}"
    if schedule.stop_ns is not None:
        text += f", until {format_duration(schedule.stop_ns)}"
    return text


def describe_scenario(scenario: Scenario) -> list[str]:
    """A header line, then one line per stream with its schedule and mean rate, then one
    per fault (:func:`describe_faults`)."""
    s = scenario
    total = sum(mean_rate_per_s(st.schedule, s.duration_ns) for st in s.streams)
    lines = [
        f"{s.source}: ok: {s.name!r}, {len(s.streams)} stream(s), {s.server.mode.value}, "
        f"seed {s.seed}, {total:.3g} msg/s in all"
        + (f", {len(s.faults)} fault{'s' * (len(s.faults) != 1)}" if s.faults else "")
    ]
    width = max(len(st.name) for st in s.streams)
    for st in s.streams:
        rate = mean_rate_per_s(st.schedule, s.duration_ns)
        lines.append(
            f"  {st.name:<{width}}  {describe_schedule(st.schedule):<28}  {rate:.3g} msg/s"
        )
    return lines + describe_faults(s.faults)


def describe_faults(faults: Sequence[Fault]) -> list[str]:
    """One line per fault: its name, kind, parameters, when, and whom it hits."""
    if not faults:
        return []
    width = max(len(repr(f.name)) for f in faults)
    return [f"  fault {f.name!r:<{width}}  {_fault_text(f)}" for f in faults]


def describe_fault_set(source: str, faults: FaultSet) -> list[str]:
    """What `sim validate` prints for a faults-only file (one to give to --faults)."""
    count = len(faults.faults)
    header = (
        f"{source}: ok: faults file (for --faults), {count} fault{'s' * (count != 1)}, "
        f"seed {faults.seed}"
    )
    return [header, *describe_faults(faults.faults)]


def _fault_text(fault: Fault) -> str:
    parts = [fault.kind.value]
    parts += [f"{name}={text}" for name, text in _fields(fault.action)]
    parts.append(_when(fault.schedule, fault.level))
    parts += _whom(fault.target)
    return "  ".join(p for p in parts if p)


def _fields(value: object) -> list[tuple[str, str]]:
    """The fields of a dataclass that differ from their defaults, as ``name, text``;
    ``*_ns`` durations without the suffix and as durations."""
    shown: list[tuple[str, str]] = []
    for f in dataclasses.fields(value):  # type: ignore[arg-type]
        v = getattr(value, f.name)
        if v is None or (f.default is not dataclasses.MISSING and v == f.default):
            continue
        name = f.name.removesuffix("_ns")
        shown.append((name, format_duration(v) if f.name.endswith("_ns") else _value(v)))
    return shown


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"  # as TOML writes it
    if isinstance(v, enum.Enum):
        return str(v.value)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_value(item) for item in v) + "]"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        kind = type(v).__name__.removesuffix("Latency").lower()
        return f"{kind}({', '.join(f'{k}={t}' for k, t in _fields(v))})"
    return str(v)


def _when(s: FaultSchedule, level: FaultLevel) -> str:
    t = s.trigger
    if t is None:
        text = "always" if level is FaultLevel.MESSAGE else "at connect"
    elif isinstance(t, FaultAt):
        text = f"at {format_duration(t.t_ns)}"
    elif isinstance(t, FaultEvery):
        text = f"every {format_duration(t.interval_ns)}"
    elif isinstance(t, FaultWindow):
        text = f"from {format_duration(t.start_ns)} to {format_duration(t.end_ns)}"
    else:
        text = f"poisson mean {format_duration(t.mean_ns)}"
    if s.duration_ns is not None:
        text += f" for {format_duration(s.duration_ns)}"
    if s.limit is not None:
        text += f" (at most {s.limit})"
    return text


def _whom(t: FaultTarget) -> list[str]:
    parts = [f"{name}={text}" for name, text in _fields(t) if name not in ("connections", "match")]
    if t.match:
        # As the scenario file writes it: { "data.level" = "warning" }.
        parts.append("match=" + toml_value({".".join(path): v for path, v in t.match}))
    c = t.connections
    if isinstance(c, ConnectionList):
        parts.append("connections=" + ",".join(map(str, c.indexes)))
    elif isinstance(c, ConnectionFraction):
        parts.append(f"connections={c.fraction:g} of all")
    elif isinstance(c, ConnectionEvery):
        parts.append(f"connections=every {c.n}th")
    return parts
