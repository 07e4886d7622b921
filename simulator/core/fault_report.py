"""`sim plan`: a fault plan as text, without serving anything."""

from __future__ import annotations

from typing import Final

from simulator.core.durations import format_duration
from simulator.core.faults import (
    FaultEvent,
    FaultPlan,
    MessageDecision,
    connection_schedule,
    plan_faults,
    server_schedule,
)
from simulator.core.model import Mode, Scenario
from simulator.core.timeline import Timeline

_NS_PER_S: Final = 1_000_000_000


def _when(ns: int) -> str:
    """A scenario time for people: ``30s`` when whole, else seconds to the millisecond."""
    return format_duration(ns) if ns % 1_000_000_000 == 0 else f"{ns / 1e9:.3f}s"


def plan_report(
    scenario: Scenario,
    seed: int | None,
    duration_ns: int,
    connections: int,
    *,
    max_hits: int = 20,
    workers: int = 1,
) -> list[str]:
    """The fault plan as lines of text: what ``sim plan`` prints.

    Every connection is taken to open at 0 and stay open for ``duration_ns``: the
    server and connection events in time order, then for each message-level fault the
    messages it hits, as ``conn <i> <stream>: seq ...`` (at most ``max_hits`` a line).
    Messages come from the timeline: in broadcast mode one for all connections, in
    per-connection mode one per connection. With ``workers`` (``sim run --workers``),
    each connection is shown with the worker that hands out its index (``conn 3 (w1)``:
    worker ``i % workers``, see :class:`~simulator.core.numbering.Numbering`).
    """
    if duration_ns <= 0 or connections < 1:
        raise ValueError("plan_report needs duration_ns > 0 and connections >= 1")
    plan = plan_faults(scenario, seed)
    lines = [
        f"fault plan of {scenario.name!r}, seed {plan.seed}: {format_duration(duration_ns)}"
        f" of scenario time, {connections} connection{'s' if connections > 1 else ''}"
        " open from 0s",
    ]
    if workers > 1:
        lines.append(
            f"{workers} workers: worker w numbers its connections w, w+{workers}, "
            f"w+{2 * workers}, ... (conn i is on worker i % {workers}, shown as wN)"
        )
    if not plan.faults:
        return [*lines, "no faults"]
    lines.append("server")
    server = server_schedule(plan, duration_ns)
    lines.extend(f"  {_event_line(e, workers)}" for e in server)
    if not server:
        lines.append("  nothing")
    lines.append("connections")
    events = [e for c in range(connections) for e in connection_schedule(plan, c, duration_ns)]
    events.sort(key=lambda e: e.t_ns)
    lines.extend(f"  {_event_line(e, workers)}" for e in events)
    if not events:
        lines.append("  nothing")
    lines.append("messages")
    if plan.message_faults:
        lines.extend(_message_lines(scenario, plan, duration_ns, connections, max_hits, workers))
    else:
        lines.append("  nothing")
    return lines


def _who(conn: int, workers: int) -> str:
    return f"conn {conn}" if workers == 1 else f"conn {conn} (w{conn % workers})"


def _event_line(e: FaultEvent, workers: int = 1) -> str:
    who = "server" if e.conn is None else _who(e.conn, workers)
    parts = [f"{_when(e.t_ns):>10}", who, e.kind.value, repr(e.fault)]
    if e.end_ns is not None:
        parts.append(f"until {_when(e.end_ns)}")
    parts.extend(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in e.params.items())
    return "  ".join(parts)


_REPORT_STEP_NS: Final = 10 * _NS_PER_S  # timeline read this much at a time


def _message_lines(
    scenario: Scenario,
    plan: FaultPlan,
    duration_ns: int,
    connections: int,
    max_hits: int,
    workers: int,
) -> list[str]:
    names = [s.name for s in scenario.streams]
    broadcast = scenario.server.mode is Mode.BROADCAST
    scopes: list[int | None] = [None] if broadcast else list(range(connections))
    timelines = [Timeline(scenario, plan.seed, scope) for scope in scopes]
    per_conn = [plan.connection(c) for c in range(connections)]
    index = {f.name: i for i, f in enumerate(plan.message_faults)}
    hits: list[dict[tuple[int, str], list[str]]] = [{} for _ in plan.message_faults]
    seen = [0] * len(plan.message_faults)  # messages each fault could have hit
    t = 0
    while t < duration_ns:
        t = min(t + _REPORT_STEP_NS, duration_ns)
        batches = [tl.take_until(t) for tl in timelines]
        for c, faults in enumerate(per_conn):
            batch = batches[0 if broadcast else c]
            times, streams, seqs = batch.t_ns.tolist(), batch.stream.tolist(), batch.seq.tolist()
            for k, payload in enumerate(batch.payloads):
                stream = names[streams[k]]
                for i, f in enumerate(plan.message_faults):
                    if not f.target.streams or stream in f.target.streams:
                        seen[i] += 1
                for fault, d in faults.hits(stream, seqs[k], payload, times[k]):
                    hits[index[fault.name]].setdefault((c, stream), []).append(
                        _hit_text(seqs[k], d)
                    )
    out: list[str] = []
    for i, fault in enumerate(plan.message_faults):
        total = sum(len(v) for v in hits[i].values())
        share = f" ({100 * total / seen[i]:.1f}%)" if seen[i] else ""
        out.append(f"  {fault.kind.value} {fault.name!r}: {total} of {seen[i]} messages{share}")
        for (c, stream), texts in sorted(hits[i].items()):
            if max_hits == 0:  # counts only
                out.append(f"    {_who(c, workers)} {stream}: {len(texts)} messages hit")
                continue
            more = f" … (+{len(texts) - max_hits} more)" if len(texts) > max_hits else ""
            seqs = ", ".join(texts[:max_hits])
            out.append(f"    {_who(c, workers)} {stream}: seq {seqs}{more}")
    return out


def _hit_text(seq: int, d: MessageDecision) -> str:
    if d.delay_ns:
        delay = d.delay_ns
        shown = format_duration(delay) if delay % 1_000_000 == 0 else f"{delay / 1e6:.1f}ms"
        return f"{seq} +{shown}"
    if d.copies:
        return f"{seq} x{d.copies + 1}"
    if d.hold:
        return f"{seq} hold {d.hold}"
    return str(seq)
