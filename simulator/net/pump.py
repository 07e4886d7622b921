"""The timing loop of `sim run`: a timeline's messages handed to a send function on
time, on the event loop's clock.

One pump reads the shared timeline in broadcast mode; each connection has its own in
per-connection mode. The pump decides only *when*; what is sent to whom is the
caller's (see :mod:`simulator.net.fanout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from simulator.core.timeline import Batch, Timeline
from simulator.net.common import ScenarioClock, sleep_until

#: Messages sent per event-loop iteration at most (see pump).
MAX_TICK = 256


async def pump(
    timeline: Timeline,
    clock: ScenarioClock,
    send: Callable[[Batch], None],
    *,
    origin_ns: int = 0,
    end_ns: int | None = None,
) -> None:
    """Hand ``timeline``'s messages to ``send`` when they are due, in batches of those
    due together, until the timeline ends or scenario time ``end_ns`` is reached.
    ``origin_ns`` is the scenario time at which the timeline's time 0 falls."""
    carry: Batch | None = None
    while True:
        if carry is not None:
            batch = carry
        else:
            nxt = timeline.next_time()
            if nxt is None or (end_ns is not None and origin_ns + nxt >= end_ns):
                return
            await sleep_until(clock.loop_time(origin_ns + nxt))
            now_virtual = clock.virtual_ns() - origin_ns
            limit = now_virtual + 1 if end_ns is None else min(now_virtual + 1, end_ns - origin_ns)
            batch = timeline.take_until(max(limit, nxt + 1))
        # A server that has fallen behind sends at most MAX_TICK messages per loop
        # iteration and then yields: accepting connections, answering pings and
        # draining sockets must go on even when the scenario asks for more than the
        # machine can send. Nothing is skipped; it is sent late (and counted so).
        if len(batch) > MAX_TICK:
            batch, carry = batch.slice(0, MAX_TICK), batch.slice(MAX_TICK, len(batch))
        else:
            carry = None
        send(batch)
        await asyncio.sleep(0)
