"""The virtual clock jumps to the next timer whenever the loop is idle: asyncio's waits
all work on it, minutes pass in milliseconds, and runs that would never end are stopped.
No test here sleeps in real time except the two that check the real-time limit (50 ms)."""

from __future__ import annotations

import asyncio
import math
import selectors
import socket
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator.errors import UsageError
from simulator.net.memory import open_pipe
from simulator.testing.virtual_time import RealTimeExceeded, VirtualClockLoop, _land, run


def virtual_loop() -> VirtualClockLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    return loop


def set_to_time(future: asyncio.Future[float]) -> None:
    future.set_result(future.get_loop().time())


# ------------------------------------------------------------------- the clock


def test_the_clock_starts_at_zero_and_a_sleep_moves_it_by_exactly_its_delay() -> None:
    async def main() -> list[float]:
        seen = [virtual_loop().time()]
        await asyncio.sleep(600)
        seen.append(virtual_loop().time())
        await asyncio.sleep(0.25)
        seen.append(virtual_loop().time())
        return seen

    assert run(main()) == [0.0, 600.0, 600.25]


def test_call_later_fires_when_the_clock_reads_its_when() -> None:
    """Including delays that are not binary fractions, and one longer than the loop's
    longest wait (a day), which takes several jumps."""

    async def main() -> list[tuple[float, float]]:
        loop = virtual_loop()
        fired: list[tuple[float, float]] = []
        for delay in (0.1, 0.2, 1 / 3, 0.3, 7.77, 1e-7, 3 * 86400 + 0.5):
            done: asyncio.Future[float] = loop.create_future()
            handle = loop.call_later(delay, set_to_time, done)
            fired.append((handle.when(), await done))
        return fired

    for when, now in run(main()):
        assert now == when


def test_call_at_fires_at_its_instant_and_timers_run_in_order() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = virtual_loop()
        order: list[tuple[str, float]] = []
        done = loop.create_future()
        loop.call_at(42.5, lambda: order.append(("b", loop.time())))
        loop.call_at(2.0, lambda: order.append(("a", loop.time())))
        loop.call_at(42.5, lambda: order.append(("c", loop.time())))
        loop.call_at(100.0, done.set_result, None)
        await done
        return order

    order = run(main())
    assert order[0] == ("a", 2.0)
    # asyncio keeps timers in a heap: same-instant timers run in no promised order.
    assert sorted(order[1:]) == [("b", 42.5), ("c", 42.5)]


@settings(max_examples=300)
# The clock moved since the timer was set: now + (when - now) rounds below when.
@example(start=0.0002884629019208427, when=0.0009574970721535353)
@example(start=299.93616362420295, when=949.3227959760396)
# Past 2**24 s a float step is wider than twice the loop's resolution.
@example(start=33059934.0, when=33059935.0)
@example(start=29174980.0, when=29174980.0)
@given(
    start=st.floats(min_value=0, max_value=1e8),
    when=st.floats(min_value=0, max_value=1e8),
)
def test_a_timer_never_sees_the_clock_before_its_when(start: float, when: float) -> None:
    """The clock lands on the timer's when, or (where rounding merges two instants) one
    float step after it: never before."""
    start, when = min(start, when), max(start, when)

    async def main() -> float:
        loop = virtual_loop()
        loop.advance(start)
        done: asyncio.Future[float] = loop.create_future()
        loop.call_at(when, set_to_time, done)
        return await done

    now = run(main(), timeout_real_s=5)
    assert when <= now <= math.nextafter(when, math.inf)


@given(
    now=st.floats(min_value=0, max_value=1e9),
    timeout=st.floats(min_value=1e-12, max_value=86400),
)
def test_a_jump_never_comes_up_short_of_its_timeout(now: float, timeout: float) -> None:
    """Whatever the timeout (the loop clamps it to a day), the jump covers it: the loop,
    subtracting, sees at least that much time gone."""
    assert _land(now, timeout) - now >= timeout


def test_the_clock_stands_still_while_callbacks_are_ready() -> None:
    """Zero-delay waits take no virtual time even with a timer pending."""

    async def main() -> float:
        loop = virtual_loop()
        loop.call_later(1.0, lambda: None)
        for _ in range(1000):
            await asyncio.sleep(0)
        return loop.time()

    assert run(main()) == 0.0


def test_advance_moves_the_clock_now_and_due_timers_run_next() -> None:
    async def main() -> tuple[float, list[float]]:
        loop = virtual_loop()
        fired: list[float] = []
        loop.call_later(5.0, lambda: fired.append(loop.time()))
        loop.advance(10.0)
        at = loop.time()
        await asyncio.sleep(0)
        return at, fired

    assert run(main()) == (10.0, [10.0])


def test_a_watcher_sees_every_move_of_the_clock_before_what_is_due_runs() -> None:
    """The spans a watcher is given join up from the first move to the last (jumps to
    timers and advance() alike), each before the callbacks due at its end run; after
    unwatch() it is told nothing more."""

    async def main() -> tuple[list[tuple[float, float, list[str]]], float]:
        loop = virtual_loop()
        ran: list[str] = []
        spans: list[tuple[float, float, list[str]]] = []
        unwatch = loop.watch(lambda start, end: spans.append((start, end, list(ran))))
        loop.call_later(1.5, ran.append, "timer at 1.5")
        await asyncio.sleep(1)
        loop.advance(2)
        await asyncio.sleep(0)
        await asyncio.sleep(0.25)
        unwatch()
        unwatch()  # twice is harmless
        await asyncio.sleep(5)
        return spans, loop.time()

    spans, end = run(main())
    assert spans == [
        (0.0, 1.0, []),
        (1.0, 3.0, []),  # advance(2): the timer at 1.5 is due, it has not run yet
        (3.0, 3.25, ["timer at 1.5"]),
    ]
    assert end == 8.25


def test_sampling_from_a_watcher_sees_what_a_sampling_timer_sees() -> None:
    """Samples every 100 ms taken from the clock's moves equal those of a timer every
    100 ms, when the state changes between sampling instants."""

    async def main() -> tuple[list[int], list[int]]:
        loop = virtual_loop()
        state = [0]
        for k in range(1, 40):
            loop.call_at(k * 0.37 + 0.013, lambda: state.__setitem__(0, state[0] + 1))
        by_timer: list[int] = []
        by_watch: list[int] = []
        taken = [0]

        def watch(start: float, end: float) -> None:
            while 0.05 + taken[0] * 0.1 < end:
                by_watch.append(state[0])
                taken[0] += 1

        def tick(k: int) -> None:
            by_timer.append(state[0])
            if k < 100:
                loop.call_at(0.05 + (k + 1) * 0.1, tick, k + 1)

        loop.call_at(0.05, tick, 0)
        unwatch = loop.watch(watch)
        await asyncio.sleep(0.05 + 100 * 0.1 + 0.01)
        unwatch()
        return by_timer, by_watch

    by_timer, by_watch = run(main())
    assert len(by_timer) == 101
    assert by_watch == by_timer


def test_a_zero_delay_timer_runs_on_a_clock_past_194_days() -> None:
    """Past 2**24 s, time() + the loop's resolution rounds back to time(): a timer due
    now still runs, one float step later."""

    async def main() -> tuple[float, float]:
        loop = virtual_loop()
        loop.advance(2.0**25)
        done = loop.create_future()
        handle = loop.call_later(0, lambda: done.set_result(loop.time()))
        return handle.when(), await done

    when, now = run(main(), timeout_real_s=5)
    assert now == math.nextafter(when, math.inf)


# ------------------------------------------------------------------- asyncio's waits


def test_wait_for_times_out_at_its_timeout() -> None:
    async def main() -> float:
        never = virtual_loop().create_future()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(never, 5.0)
        return virtual_loop().time()

    assert run(main()) == 5.0


def test_asyncio_timeout_cancels_at_its_deadline() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(3600)
        return virtual_loop().time()

    assert run(main()) == 2.5


def test_tasks_waiting_on_each_other_see_the_times_they_were_woken() -> None:
    """A producer puts one item a second; the consumer gets each at that second; a third
    task waits for the consumer; gather returns when the last is done."""

    async def produce(queue: asyncio.Queue[int]) -> None:
        for i in range(10):
            await asyncio.sleep(1.0)
            await queue.put(i)

    async def consume(queue: asyncio.Queue[int]) -> list[tuple[int, float]]:
        return [(await queue.get(), virtual_loop().time()) for _ in range(10)]

    async def main() -> tuple[list[tuple[int, float]], float]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        consumer = asyncio.create_task(consume(queue))

        async def wait_for_consumer() -> float:
            await consumer
            return virtual_loop().time()

        _, got, finished = await asyncio.gather(produce(queue), consumer, wait_for_consumer())
        return got, finished

    got, finished = run(main())
    assert got == [(i, float(i + 1)) for i in range(10)]
    assert finished == 10.0


def test_a_worker_thread_wakes_the_loop_when_no_timer_is_due() -> None:
    """With no timer the loop waits on its real selector, so call_soon_threadsafe from a
    thread still wakes it; the work took no virtual time."""

    async def main() -> tuple[int, float]:
        result = await asyncio.to_thread(sum, range(1000))
        return result, virtual_loop().time()

    assert run(main()) == (499500, 0.0)


def test_real_sockets_are_read_before_the_clock_jumps() -> None:
    """With a timer an hour away, bytes already waiting on a real socket are read at
    once, at virtual time 0."""

    async def main() -> tuple[bytes, float]:
        loop = virtual_loop()
        left, right = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=left)
        loop.call_later(3600, lambda: None)
        right.setblocking(False)
        await loop.sock_sendall(right, b"over a real socket\n")
        line = await reader.readline()
        writer.close()
        right.close()
        return line, loop.time()

    assert run(main()) == (b"over a real socket\n", 0.0)


# ------------------------------------------------------------------- speed


def test_ten_virtual_minutes_of_a_10ms_timer_never_wait_on_the_real_selector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60,000 timers run, the clock reads 600 s, and the loop never asked the real
    selector to wait: every poll of it had a timeout of 0 (virtual time takes no real
    time by construction, not by being fast)."""
    timeouts: list[float | None] = []
    real_select = selectors.DefaultSelector.select

    def recorded(self: selectors.BaseSelector, timeout: float | None = None) -> Any:
        timeouts.append(timeout)
        return real_select(self, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(selectors.DefaultSelector, "select", recorded)

    async def main() -> tuple[int, float]:
        loop = virtual_loop()
        done = loop.create_future()
        ticks = 0

        def tick() -> None:
            nonlocal ticks
            ticks += 1
            if ticks < 60_000:
                loop.call_later(0.01, tick)
            else:
                done.set_result(None)

        loop.call_later(0.01, tick)
        await done
        return ticks, loop.time()

    ticks, now = run(main())
    assert ticks == 60_000
    assert now == pytest.approx(600.0)
    assert timeouts and set(timeouts) == {0}


def test_a_message_each_virtual_second_for_ten_minutes_arrives_600_times() -> None:
    """A server over an in-memory pipe writes a line every virtual second, then closes;
    the client counts 600 lines, at 1 s, 2 s, ... 600 s."""

    class Ticker(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.sent = 0
            asyncio.get_running_loop().call_later(1.0, self.tick)

        def tick(self) -> None:
            self.sent += 1
            self.transport.write(b"tick %d\n" % self.sent)
            if self.sent == 600:
                self.transport.close()
            else:
                asyncio.get_running_loop().call_later(1.0, self.tick)

    class Counter(asyncio.Protocol):
        def __init__(self) -> None:
            self.arrivals: list[float] = []
            self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            now = asyncio.get_running_loop().time()
            self.arrivals.extend(now for _ in range(data.count(b"\n")))

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(None)

    async def main() -> tuple[list[float], float]:
        _, counter = await open_pipe(Ticker, Counter)
        await counter.lost
        return counter.arrivals, virtual_loop().time()

    arrivals, end = run(main(), timeout_real_s=5)
    assert arrivals == [float(s) for s in range(1, 601)]
    assert end == 600.0


# ------------------------------------------------------------------- run()


def test_run_returns_the_result_or_raises_the_exception() -> None:
    async def answer() -> int:
        await asyncio.sleep(1)
        return 42

    async def fail() -> None:
        await asyncio.sleep(1)
        raise LookupError("from the coroutine")

    assert run(answer()) == 42
    with pytest.raises(LookupError, match="from the coroutine"):
        run(fail())


def test_run_cancels_the_tasks_left_over() -> None:
    cancelled: list[float] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        except asyncio.CancelledError:
            cancelled.append(virtual_loop().time())
            raise

    async def main() -> asyncio.Task[None]:
        task = asyncio.create_task(forever())
        await asyncio.sleep(3)
        return task

    task = run(main())
    assert task.cancelled()
    assert cancelled == [3.0]


def test_run_refuses_a_running_loop() -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        with pytest.raises(RuntimeError, match="from a running event loop: await the coroutine"):
            run(inner())

    asyncio.run(main())


def test_a_spinning_task_is_stopped_by_the_real_time_limit() -> None:
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    with pytest.raises(RealTimeExceeded, match=r"timeout_real_s=0\.05: exceeded") as info:
        run(spin(), timeout_real_s=0.05)
    assert info.value.virtual_s == 0.0


def test_an_endless_timer_chain_is_stopped_by_the_real_time_limit() -> None:
    async def tick_forever() -> None:
        while True:
            await asyncio.sleep(1)

    with pytest.raises(RealTimeExceeded) as info:
        run(tick_forever(), timeout_real_s=0.05)
    assert info.value.virtual_s > 100


def test_a_wait_on_something_that_never_comes_is_stopped_by_the_real_time_limit() -> None:
    """No timer at all: the loop waits on the real selector until the limit."""

    async def wait_forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(RealTimeExceeded):
        run(wait_forever(), timeout_real_s=0.05)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda loop: loop.advance(-1.0), "seconds=-1.0: must be a finite number >= 0"),
        (lambda loop: loop.advance(math.inf), "seconds=inf: must be a finite number >= 0"),
        (lambda loop: loop.advance(math.nan), "seconds=nan: must be a finite number >= 0"),
        (lambda loop: loop.limit_real_time(0), "timeout_real_s=0: must be > 0, or None"),
        (lambda loop: loop.limit_real_time(-2.5), "timeout_real_s=-2.5: must be > 0, or None"),
    ],
)
def test_invalid_arguments_are_named(call: object, message: str) -> None:
    loop = VirtualClockLoop()
    try:
        with pytest.raises(UsageError, match=f"^{message}$".replace(".", r"\.")):
            call(loop)  # type: ignore[operator]
    finally:
        loop.close()


def test_run_names_an_invalid_real_time_limit() -> None:
    async def main() -> None:
        pass

    with pytest.raises(UsageError, match=r"timeout_real_s=nan: must be > 0, or None"):
        run(main(), timeout_real_s=math.nan)
