"""The fault injector plans connection faults a window (60 s of scenario time) at a
time: a connection that opens just after a window boundary, before the injector's loop
has woken for the new window, still gets each of its faults exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

from simulator.core.faults import FaultPlan
from simulator.core.model import Disconnect, Fault, FaultSchedule, FaultTarget
from simulator.net.common import ScenarioClock
from simulator.net.faulting import WINDOW_NS, FaultInjector
from simulator.net.log import EventLog
from simulator.testing.virtual_time import run


class StubClient:
    """What the injector touches of a served client when it disconnects it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.open = True
        self.closes: list[int] = []

    def close(self, code: int, reason: str) -> None:
        self.closes.append(code)


def test_a_connection_opening_between_the_boundary_and_the_loop_gets_its_fault_once() -> None:
    # Every connection is closed with 4000 as soon as it opens (a fault with no trigger).
    kick = Fault("kick", Disconnect(code=4000), FaultSchedule(), FaultTarget())

    async def main() -> list[int]:
        clock = ScenarioClock(1.0)
        clock.start()
        clients: list[Any] = []
        injector = FaultInjector(
            FaultPlan([kick], 1),
            EventLog(),
            virtual_ns=clock.virtual_ns,
            loop_time=clock.loop_time,
            clients=lambda: clients,
            speed=1.0,
        )
        loop = asyncio.get_running_loop()
        late = StubClient(0)

        def open_late() -> None:
            # At the boundary, before the injector's loop (its timer was set after this
            # one) has planned the new window.
            clients.append(late)
            injector.connected(late, clock.virtual_ns())  # type: ignore[arg-type]

        loop.call_at(clock.loop_time(WINDOW_NS), open_late)
        planner = asyncio.ensure_future(injector.run())
        await asyncio.sleep(WINDOW_NS / 1e9 + 1)
        planner.cancel()
        injector.close()
        return late.closes

    assert run(main()) == [4000]
