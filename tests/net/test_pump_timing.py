"""When the pump sends, on a clock whose timers fire as the OS fires asyncio's: a wait is
rounded up to whole milliseconds (epoll's timeout), then ends a little late (the
kernel's timer slack), and each pass takes time to write. On the virtual clock, so the
figures are exact and nothing sleeps."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.lateness import stream_limits_ns
from simulator.core.timeline import Batch, Timeline
from simulator.net.common import AHEAD_S, MIN_PASS_GAP_S, ScenarioClock
from simulator.net.pump import Pacing, pump
from simulator.scenario import parse_scenario
from simulator.testing.virtual_time import VirtualClockLoop, _AutojumpSelector


class _EpollTimers(_AutojumpSelector):
    """Virtual waits as epoll makes them: whole milliseconds, rounded up, plus slack.
    (The virtual clock's own selector, whose waits are exact, is private to it: this
    model of a real one is only for the pump's tests.)"""

    def __init__(self, slack_s: float) -> None:
        super().__init__()
        self.slack_s = slack_s

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout > 0:
            timeout = math.ceil(timeout * 1000 - 1e-6) / 1000 + self.slack_s
        return super().select(timeout)


class _EpollTimersLoop(VirtualClockLoop):
    # Timers are late here, as on a real loop: the pump aims AHEAD_S early.
    exact_timers = False

    def __init__(self, slack_s: float) -> None:
        self._autojump = _EpollTimers(slack_s)
        asyncio.SelectorEventLoop.__init__(self, self._autojump)


def passes(every_us: int, slack_us: int, pass_us: int) -> list[tuple[float, list[float]]]:
    """One second of a stream sent every ``every_us``, each pass taking ``pass_us``: for
    each pass, the loop time it began and how late each of its messages was (ms)."""
    scenario = parse_scenario(
        f'[scenario]\nname = "t"\nseed = 1\nepoch = "2026-01-01T00:00:00Z"\n'
        f'[[stream]]\nname = "a"\nevery = "{every_us}us"\n',
        "x.toml",
    )

    async def main() -> list[tuple[float, list[float]]]:
        loop = asyncio.get_running_loop()
        clock = ScenarioClock(1.0)
        clock.start()
        sent: list[tuple[float, list[float]]] = []

        def send(batch: Batch) -> None:
            now = clock.virtual_ns()
            sent.append((loop.time(), [(now - t) / 1e6 for t in batch.t_ns.tolist()]))
            loop.advance(pass_us / 1e6)  # writing to every client takes this long

        timeline = Timeline(scenario, 1, scope=None, epoch_ns=0)
        pacing = Pacing(False, stream_limits_ns(scenario, 1.0), lambda batch: None)
        await pump(timeline, clock, send, pacing, end_ns=10**9)
        return sent

    with asyncio.Runner(loop_factory=lambda: _EpollTimersLoop(slack_us / 1e6)) as runner:
        return runner.run(main())


@settings(max_examples=40, deadline=None)
@given(
    every_us=st.integers(250, 5000),
    slack_us=st.integers(0, 200),
    pass_us=st.integers(0, 450),
)
def test_passes_come_a_tick_apart_and_each_message_leaves_within_a_pass_of_its_time(
    every_us: int, slack_us: int, pass_us: int
) -> None:
    """A pass begins a timer tick (MIN_PASS_GAP_S) after the previous one at the
    earliest, so a fast stream's messages go out a tick's worth at a time (one write per
    client per tick); and each message is handed over no earlier than AHEAD_S before its
    time and no later than the tick less AHEAD_S (what the pass before could not
    reach), plus the timer's slack and one pass. Pacing passes
    from when they were due instead of when they began gives a pass every millisecond
    even when the previous one ran late: p99 0.6 ms lower at the client, a third more
    CPU (docs/performance.md, #14)."""
    sent = passes(every_us, slack_us, pass_us)
    began = [t for t, _ in sent]
    lateness = [late for _, batch in sent for late in batch]
    assert len(lateness) == 10**9 // (every_us * 1000) - (10**9 % (every_us * 1000) == 0)
    assert min(b - a for a, b in itertools.pairwise(began)) >= MIN_PASS_GAP_S - 1e-9
    assert min(lateness) >= -AHEAD_S * 1e3 - 1e-6
    reach = max(MIN_PASS_GAP_S - AHEAD_S, 0.0)  # what the pass before could not take
    assert max(lateness) <= (reach + (slack_us + pass_us) / 1e6) * 1e3 + 1e-6
