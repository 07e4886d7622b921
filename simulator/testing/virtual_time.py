"""An asyncio event loop whose clock is virtual: whenever nothing is ready to run, the
clock jumps to the next timer, like trio's ``MockClock(autojump_threshold=0)``. Ten
minutes of ``asyncio.sleep``, ``call_later``, ``wait_for`` and ``asyncio.timeout`` run in
milliseconds, and always in the same order.

From a synchronous test::

    def test_reconnects_after_a_minute() -> None:
        result = run(scenario())  # scenario() is a coroutine; run() returns its result

The loop is an ordinary ``asyncio.SelectorEventLoop`` given a selector of our own; only
public asyncio API is used. Each time the loop polls for I/O:

1. the real selector is polled without waiting, so the loop's self-pipe (and with it
   ``call_soon_threadsafe`` from worker threads, signals) and real sockets keep working.
   While the self-pipe is all that is registered (in-memory transports only), it is
   polled every 64th time only: a callback from a thread is queued before the pipe is
   written to, so it runs anyway, and a signal handler added with
   ``loop.add_signal_handler`` runs at most 64 iterations late;
2. if nothing was ready and the loop has a timer, the clock jumps to it at once;
3. if the loop has no timer at all, the real selector is waited on, in real time: a
   worker thread or a socket may be about to wake the loop. If nothing ever will, this is
   where a test hangs, until the real-time limit of :func:`run` ends it.

Know before using it:

* Work done outside the loop (an executor thread, a real socket's round trip) takes no
  virtual time, and a pending timer is not held back for it: ``wait_for(to_thread(f),
  5)`` times out at once if ``f`` is still running when the loop goes idle. Keep tests on
  in-memory transports (:mod:`simulator.net.memory`) and off threads.
* A loop that never waits (``while True: await asyncio.sleep(0)``) or a timer chain that
  never ends runs forever in virtual time, as fast as the CPU allows: :func:`run` stops it
  after ``timeout_real_s`` seconds of real time with :class:`RealTimeExceeded`.
* The clock lands exactly on the ``when`` of the timer it jumps to, or, in the rare case
  where rounding makes two instants indistinguishable to the loop, one float step after
  it; never before it. So after ``await asyncio.sleep(d)`` begun at ``t``,
  ``loop.time() >= t + d``.
* Below 2**24 s (194 virtual days) the clock stands still while callbacks are ready.
  From there on, a float step is too wide for asyncio to see a timer due at ``time()``
  itself, so each poll that does not wait lets one step (a few nanoseconds) pass, and
  timers run one step after their ``when``.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from simulator.errors import SimError, UsageError

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["RealTimeExceeded", "VirtualClockLoop", "run"]

T = TypeVar("T")


class RealTimeExceeded(SimError):
    """A virtual-time run went on for longer than its real-time limit: most likely a task
    that never waits (a zero-delay loop spins the CPU), a timer chain that never ends, or
    a wait, with no timer left, on something that never comes."""

    def __init__(self, limit_s: float, virtual_s: float) -> None:
        self.limit_s = limit_s
        self.virtual_s = virtual_s
        super().__init__(
            f"timeout_real_s={limit_s!r}: exceeded with the virtual clock at {virtual_s!r} s "
            "(a task that never waits, a timer chain that never ends, or a wait on "
            "something that never comes)"
        )


class _AutojumpSelector(selectors.BaseSelector):
    """A real selector whose waits are virtual: see the module docstring. Holds the
    virtual clock and the real-time deadline."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self._registered = 0  # file objects registered with _real
        self._polls = 0
        self.now = 0.0
        #: Called with (from, to) before each jump of the clock (VirtualClockLoop.watch).
        self.watchers: list[Callable[[float, float], None]] = []
        self.limit_s: float | None = None
        self.deadline: float | None = None  # on time.monotonic()

    # Registration is the real selector's.

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self._registered += 1
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._registered -= 1
        return key

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    # Waiting is virtual.

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._exceeded()
        self._polls += 1
        # Polling is about a fifth of an idle iteration; with nothing registered but
        # the loop's self-pipe (the first registration, made with the loop) it can wait.
        if self._registered > 1 or timeout is None or not self._polls % _POLL_EVERY:
            ready = self._real.select(0)
            if ready:
                return ready
        if timeout is None:
            return self._wait_for_real_events()
        if timeout > 0:
            self.move_to(_land(self.now, timeout))
        elif self.now + _RESOLUTION <= self.now:
            # The loop runs a timer once `when < time() + resolution`. From 2**24 s (194
            # days) on, a float step is wider than twice the resolution, that sum rounds
            # back to time(), and a timer due now would never run: let a step pass.
            self.move_to(math.nextafter(self.now, math.inf))
        return []

    def move_to(self, new: float) -> None:
        for watcher in self.watchers:
            watcher(self.now, new)
        self.now = new

    def _wait_for_real_events(self) -> list[tuple[selectors.SelectorKey, int]]:
        # No timer: only a thread, a signal or a socket can wake the loop, in real time.
        if self.deadline is None:
            return self._real.select(None)
        ready = self._real.select(max(0.0, self.deadline - time.monotonic()))
        if not ready and time.monotonic() >= self.deadline:
            self._exceeded()
        return ready

    def _exceeded(self) -> None:
        assert self.limit_s is not None
        self.deadline = None  # so that whoever catches this can still run the loop
        raise RealTimeExceeded(self.limit_s, self.now)


def _land(now: float, timeout: float) -> float:
    """The instant the loop means by ``timeout`` from ``now``.

    The loop computed ``timeout = when - now``, rounded, so ``now + timeout`` can fall one
    float step short of ``when``; a timer would then see ``loop.time() < when``. Step to
    the last float whose difference from ``now`` still rounds to ``timeout``: that is
    ``when`` or, where rounding merges two candidates, the one just after it.
    """
    target = now + timeout
    while target - now < timeout:
        target = math.nextafter(target, math.inf)
    while (later := math.nextafter(target, math.inf)) - now == timeout:
        target = later
    return target


#: With only the self-pipe registered, the real selector is polled once per this many
#: loop iterations (see the module docstring).
_POLL_EVERY = 64

# The resolution asyncio's loop adds to time() when it looks for due timers (it reads
# the same public value in BaseEventLoop.__init__).
_RESOLUTION = time.get_clock_info("monotonic").resolution


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at 0.0 and jumps to the next
    timer whenever nothing is ready (module docstring). Use it through :func:`run`, or
    pass the class as ``asyncio.Runner(loop_factory=...)``."""

    #: Timers fire exactly when due, so code that would spin for the last millisecond
    #: before a deadline must not (see :func:`simulator.net.common.sleep_until`).
    exact_timers = True

    def __init__(self) -> None:
        self._autojump = _AutojumpSelector()
        super().__init__(self._autojump)

    def time(self) -> float:
        """The virtual clock, in seconds since the loop was made."""
        return self._autojump.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` now, as if that much time had passed
        while the current callback ran; timers that fall due run at the loop's next
        iteration."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise UsageError(f"seconds={seconds!r}: must be a finite number >= 0")
        self._autojump.move_to(self._autojump.now + seconds)

    def watch(self, watcher: Callable[[float, float], None]) -> Callable[[], None]:
        """Call ``watcher(start, end)`` each time the clock is about to move from
        ``start`` to ``end``, before anything due at ``end`` runs; return a function
        that stops the calls.

        Nothing runs on the loop from ``start`` to ``end``, so whatever state the
        watcher reads held over the whole span: this observes state at regular
        instants (every 100 ms, say) without a timer, and without the loop iteration
        each timer costs. The watcher runs inside the loop's poll for I/O: it must be
        quick, must not raise, and must not schedule anything.
        """
        watchers = self._autojump.watchers
        watchers.append(watcher)

        def unwatch() -> None:
            if watcher in watchers:
                watchers.remove(watcher)

        return unwatch

    def limit_real_time(self, seconds: float | None) -> None:
        """From now on, make the loop raise :class:`RealTimeExceeded` (out of
        ``run_until_complete``) once ``seconds`` of real time have passed; ``None``
        lifts the limit. After it is raised the limit is lifted: set a new one before
        running the loop again if it should still hold."""
        _check_limit(seconds)
        self._autojump.limit_s = seconds
        self._autojump.deadline = None if seconds is None else time.monotonic() + seconds


def run(main: Coroutine[Any, Any, T], *, timeout_real_s: float | None = 30.0) -> T:
    """Run ``main`` to completion on a new :class:`VirtualClockLoop` and return its
    result (or raise its exception); then cancel what is left and close the loop, like
    ``asyncio.run``. Call it from a synchronous test, never from a running loop.

    ``timeout_real_s`` bounds the real (wall-clock) time: past it, :class:`RealTimeExceeded`
    is raised. On a virtual clock a task that never waits is a CPU spin and a timer chain
    that never ends is an endless run, so the default is 30 s rather than none; ``None``
    turns the limit off. Tasks left over are cancelled under a fresh limit of the same
    length.
    """
    try:
        _check_limit(timeout_real_s)
        _check_no_running_loop()
    except (UsageError, RuntimeError):
        main.close()  # never to be run: no "never awaited" warning on top of the error
        raise
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualClockLoop)
        loop.limit_real_time(timeout_real_s)
        result: list[T] = []
        try:
            runner.run(_keep(main, result))
            return result[0]
        except RealTimeExceeded:
            loop.limit_real_time(timeout_real_s)  # for the runner's clean-up on exit
            raise


async def _keep(main: Coroutine[Any, Any, T], into: list[T]) -> None:
    """Run ``main`` and keep its result aside. The main task itself returns ``None``:
    on leaving, ``asyncio.Runner`` restores the SIGINT handler, and the message built
    on the way holds the task, whose result would be turned into text (a large result
    took milliseconds)."""
    into.append(await main)


def _check_limit(seconds: float | None) -> None:
    if seconds is not None and not seconds > 0:
        raise UsageError(f"timeout_real_s={seconds!r}: must be > 0, or None")


def _check_no_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # none: as it should be
    raise RuntimeError("run() cannot be called from a running event loop: await the coroutine")
