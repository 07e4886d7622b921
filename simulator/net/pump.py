"""The timing loop of `sim run`: a timeline's messages handed to a send function on
time, on the event loop's clock.

One pump reads the shared timeline in broadcast mode; each connection has its own in
per-connection mode. The pump decides only *when* (and, once it has fallen behind,
what is too late to send at all); what is sent to whom is the caller's (see
:mod:`simulator.net.fanout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from simulator.core.lateness import Limits, split_late
from simulator.core.timeline import Batch, Timeline
from simulator.net.common import MIN_PASS_GAP_S, ScenarioClock, ahead_s, sleep_until

#: Messages sent per event-loop iteration at most (see pump).
MAX_TICK = 256


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a pump keeps time: ``precise`` timing (see
    :func:`~simulator.net.common.sleep_until`), and each stream's lateness limit in
    scenario ns (:func:`~simulator.core.lateness.stream_limits_ns`); the messages past
    it go to ``dropped_late`` instead of being sent."""

    precise: bool
    limits: Limits
    dropped_late: Callable[[Batch], None]


async def pump(
    timeline: Timeline,
    clock: ScenarioClock,
    send: Callable[[Batch], None],
    pacing: Pacing,
    *,
    origin_ns: int = 0,
    end_ns: int | None = None,
) -> None:
    """Hand ``timeline``'s messages to ``send`` when they are due, in batches of those
    due together, until the timeline ends or scenario time ``end_ns`` is reached.
    ``origin_ns`` is the scenario time at which the timeline's time 0 falls."""
    loop = asyncio.get_running_loop()
    carry: Batch | None = None
    # Messages due up to this far past the wake-up go in the same pass (scenario ns).
    ahead = ahead_s(pacing.precise)
    ahead_ns = round(ahead * clock.speed * 1e9)
    # The next pass comes a timer tick (MIN_PASS_GAP_S) after this one woke, at the
    # earliest, so that a fast stream's messages go out together, one write per client
    # per tick, not one per message (precise timing: as they fall due). Counted from the
    # wake, not from when the pass was due: with the selector's rounding up, that is a
    # pass about every 1.6 ms at 1,000 msg/s, and a pass every 1 ms (paced from the due
    # time) cost a third more CPU for 0.6 ms of p99 at the client (performance.md, #14).
    next_pass = 0.0
    while True:
        waited = False
        if carry is not None:
            batch = carry
        else:
            nxt = timeline.next_time()
            if nxt is None or (end_ns is not None and origin_ns + nxt >= end_ns):
                return
            due = max(clock.loop_time(origin_ns + nxt), next_pass + ahead)
            waited = await sleep_until(due, precise=pacing.precise)
            next_pass = loop.time() + (MIN_PASS_GAP_S if ahead else 0.0)
            now_virtual = clock.virtual_ns() - origin_ns
            limit = now_virtual + ahead_ns + 1
            if end_ns is not None:
                limit = min(limit, end_ns - origin_ns)
            batch = timeline.take_until(max(limit, nxt + 1))
        # A server that has fallen behind sends at most MAX_TICK messages per loop
        # iteration and then yields: accepting connections, answering pings and
        # draining sockets must go on even when the scenario asks for more than the
        # machine can send. What is later than its limit by then is dropped, not sent.
        late, batch = split_late(batch, clock.virtual_ns() - origin_ns, pacing.limits)
        if late is not None:
            pacing.dropped_late(late)
        if len(batch) > MAX_TICK:
            batch, carry = batch.slice(0, MAX_TICK), batch.slice(MAX_TICK, len(batch))
        else:
            carry = None
        if len(batch):
            send(batch)
        if not waited:
            # Behind schedule, nothing gave the loop a turn since the last pass: give it
            # one now (on time, the wait for the next message does).
            await asyncio.sleep(0)
