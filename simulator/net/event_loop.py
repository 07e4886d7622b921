"""The event loop `sim`'s servers run on: asyncio's, with reads bounded per turn.

asyncio runs, in one turn, the callback of every socket the selector reports ready, and
only then the timers that fell due meanwhile: the feed's next tick among them. When
2,000 clients close their sockets at once, that is 2,000 reads that find the end of the
stream in one turn and 2,000 ``connection_lost`` calls in the next, about 40 us each:
the tick waits 40 to 70 ms (issue #13, "2,000 non-readers", measured in-process).

:class:`FairSelector` hands asyncio at most ``max_reads`` read-ready sockets per
``select``; the others wait for the next turns, those held longest first, so none is
starved. It never holds back a socket that is ready to be *written*: a fan-out to
thousands of clients drains at full speed (bounding every event instead, through
epoll's ``maxevents``, held writable sockets too and cost the C = 1,000 fan-out its
sustainable load). The selector is level-triggered, so a socket held back is simply
reported again.

Run a server's coroutine with :func:`run` (in place of :func:`asyncio.run`). And a
protocol's ``connection_lost`` calls :func:`release_transport`, so that a closed
connection is freed at once rather than by the garbage collector.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Read-ready sockets handed to asyncio in one turn, at most. A read that finds the end
#: of the stream costs about 40 us in all (this turn and the next): 32 of them, about
#: 1.5 ms. With 64, a wave of 2,000 resets still made turns of 5-7 ms back to back
#: (a feed's ticks 10-13 ms late while it lasted). A connection's bytes read are parsed
#: under their own per-turn budget (:mod:`simulator.net.parse_budget`), so this bounds
#: only the reads themselves.
MAX_READS_PER_TURN = 32

if sys.platform == "linux":  # epoll: elsewhere, asyncio's own loop (see new_event_loop)
    #: What makes asyncio run a socket's read callback, or find it closed: held back
    #: together. (``EPOLLERR`` and ``EPOLLHUP`` are reported whatever was asked for, and
    #: asyncio's selector reads them as "ready to read" *and* "ready to write": a socket
    #: reset by its peer is found closed by either callback.)
    _READ_LIKE = (
        select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
    )
    _BROKEN = select.EPOLLERR | select.EPOLLHUP

    class FairPoll:
        """An ``epoll`` object whose :meth:`poll` reports at most ``max_reads`` sockets
        ready to read (or broken) per call, and every socket only ready to write. Sockets
        held back are reported first next time, oldest first."""

        def __init__(self, epoll: select.epoll, max_reads: int) -> None:
            if max_reads < 1:
                raise ValueError("max_reads must be at least 1")
            self._epoll = epoll
            self.max_reads = max_reads
            #: Descriptors held back, with the count of polls at which each was first held
            #: back: the order they are served in.
            self._held: dict[int, int] = {}
            self.polls = 0  # calls of poll so far: one per turn of an event loop

        def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
            ready = self._epoll.poll(timeout, maxevents)
            self.polls += 1
            reads = [i for i, (_, event) in enumerate(ready) if event & _READ_LIKE]
            if len(reads) <= self.max_reads:
                self._held.clear()
                return ready
            held, now = self._held, self.polls
            reads.sort(key=lambda i: held.get(ready[i][0], now))  # stable: else epoll's order
            waiting = reads[self.max_reads :]
            self._held = {ready[i][0]: held.get(ready[i][0], now) for i in waiting}
            out = ready.copy()
            for i in waiting:
                fd, event = ready[i]
                # Still written to if it can be; found closed (or read) in a later turn.
                writable = event & select.EPOLLOUT and not event & _BROKEN
                out[i] = (fd, select.EPOLLOUT if writable else 0)
            return [item for item in out if item[1]]

        def register(self, fd: int, eventmask: int) -> None:
            self._epoll.register(fd, eventmask)

        def modify(self, fd: int, eventmask: int) -> None:
            self._epoll.modify(fd, eventmask)

        def unregister(self, fd: int) -> None:
            try:
                self._epoll.unregister(fd)
            finally:
                # A descriptor number is reused by the next socket: it must not inherit
                # a place (even when epoll had dropped it already, with the socket).
                self._held.pop(fd, None)

        def fileno(self) -> int:
            return self._epoll.fileno()

        def close(self) -> None:
            self._epoll.close()

    class FairSelector(selectors.EpollSelector):
        """asyncio's selector on Linux, on a :class:`FairPoll`."""

        def __init__(self, max_reads: int = MAX_READS_PER_TURN) -> None:
            self.max_reads = max_reads
            super().__init__()

        def _selector_cls(self) -> FairPoll:
            # The hook the selectors module creates its epoll object through.
            return FairPoll(select.epoll(), self.max_reads)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio event loop on a :class:`FairSelector` (on a system without epoll,
    asyncio's own)."""
    if sys.platform == "linux":
        return asyncio.SelectorEventLoop(FairSelector())
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on a loop from :func:`new_event_loop`: what every `sim`
    command that serves runs its coroutine with."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def release_transport(transport: asyncio.BaseTransport) -> None:
    """Break the reference cycle an asyncio socket transport makes with itself (its
    ``_read_ready_cb``, a bound method of its own, in CPython 3.11): call it from a
    protocol's ``connection_lost``, after which asyncio reads no more. (Over TLS the
    protocol sees asyncio's TLS transport, which has no such cycle; the socket transport
    under it keeps its own, out of reach: ``wss://`` connections still wait for the
    collector.)

    Without it every closed connection waits for the garbage collector, which then
    finalizes hundreds at once (each transport has a ``__del__``): under a churn of
    1,500 connections a second, a young collection held the loop 4-8 ms. With it, a
    transport is freed as its connection ends, its cost spread with the closes."""
    if getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]
