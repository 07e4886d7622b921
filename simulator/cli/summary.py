"""One-line descriptions of scenarios for people: what `sim validate` prints."""

from __future__ import annotations

from simulator.core.durations import format_duration
from simulator.core.model import At, Burst, Every, Poisson, Scenario, Schedule, UniformInterval
from simulator.core.rates import mean_rate_per_s


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
    """A header line, then one line per stream with its schedule and mean rate."""
    s = scenario
    total = sum(mean_rate_per_s(st.schedule, s.duration_ns) for st in s.streams)
    lines = [
        f"{s.source}: ok: {s.name!r}, {len(s.streams)} stream(s), {s.server.mode.value}, "
        f"seed {s.seed}, {total:.3g} msg/s in all"
    ]
    width = max(len(st.name) for st in s.streams)
    for st in s.streams:
        rate = mean_rate_per_s(st.schedule, s.duration_ns)
        lines.append(
            f"  {st.name:<{width}}  {describe_schedule(st.schedule):<28}  {rate:.3g} msg/s"
        )
    return lines
