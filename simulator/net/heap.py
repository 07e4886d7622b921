"""Giving memory back to the system once many connections have closed (issue #13:
"memory returned after the attackers leave").

When a connection closes, what it held (the transport's write buffer above all: up to
``send_buffer_bytes`` for a client that reads nothing) is freed, but glibc's ``malloc``
keeps the pages: long-lived objects allocated in between pin the heap, and only its top
is trimmed on its own. So after 1,500 clients that read nothing were gone, `sim run`
stayed at 496 MB RSS (72 MB before they came); ``malloc_trim(0)``, which hands every
free page back (``madvise``), brought it to 99 MB, in 50 ms (docs/performance.md,
"Memory after the attackers leave").

:class:`HeapTrimmer` calls it once a wave of closes is over: after at least
``min_closed`` connections have closed, once none has closed for ``quiet_s`` (or
``max_wait_s`` after the first, so that a steady churn is trimmed too). The call runs in
a thread: ctypes releases the GIL, so the event loop goes on serving (50 ms of trimming
held it up 10 ms at most, against 53 ms when called on the loop). Without glibc (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import sys
import threading
from collections.abc import Callable

#: Connections closed before a trim is worth its cost (tens of ms of a thread's time).
MIN_CLOSED = 64
#: A trim waits until no connection has closed for this long: the wave is over.
QUIET_S = 1.0
#: ... but no longer than this after the first close of the wave.
MAX_WAIT_S = 10.0

Trim = Callable[[], object]


def glibc_malloc_trim() -> Trim | None:
    """``malloc_trim(0)`` of the C library, if it is glibc's (Linux); else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # By its soname: ctypes.util.find_library would run ldconfig in a subprocess.
        trim = ctypes.CDLL("libc.so.6").malloc_trim  # glibc's: musl has no libc.so.6
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def _in_a_thread(work: Trim) -> None:
    threading.Thread(target=work, name="malloc_trim", daemon=True).start()


class HeapTrimmer:
    """Call :meth:`closed` on the event loop each time a connection is gone; the heap is
    trimmed once a wave of closes is over. Servers take :meth:`for_this_system` (glibc's
    ``malloc_trim``); tests give their own ``trim`` and ``run`` (default: in a new
    thread). With ``trim=None`` nothing is ever done."""

    def __init__(
        self,
        trim: Trim | None = None,
        *,
        run: Callable[[Trim], None] = _in_a_thread,
        min_closed: int = MIN_CLOSED,
        quiet_s: float = QUIET_S,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self._trim = trim
        self._run = run
        self.min_closed = min_closed
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._closed = 0  # since the last trim
        self._first = 0.0  # loop time of the first of them
        self._last = 0.0  # and of the latest
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self.trims = 0  # how many times it has trimmed

    @classmethod
    def for_this_system(cls) -> HeapTrimmer:
        """One that trims with glibc's ``malloc_trim``, or does nothing without it."""
        return cls(_system_trim())

    def closed(self) -> None:
        """A connection is gone."""
        if self._trim is None or self._stopped:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._closed == 0:
            self._first = now
        self._closed += 1
        self._last = now
        if self._closed >= self.min_closed and self._timer is None:
            self._timer = loop.call_at(self._due(), self._maybe_trim)

    def stop(self) -> None:
        """Trim no more (the server is closing)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> float:
        return min(self._last + self.quiet_s, self._first + self.max_wait_s)

    def _maybe_trim(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._due()
        if loop.time() < due:  # closes went on: wait for the wave to end
            self._timer = loop.call_at(due, self._maybe_trim)
            return
        self._timer = None
        self._closed = 0
        self.trims += 1
        assert self._trim is not None
        self._run(self._trim)


@functools.cache
def _system_trim() -> Trim | None:
    return glibc_malloc_trim()


#: Collections of the middle generation (1) between two full ones, at least (CPython's
#: default: 10; each comes after 10 of the youngest). See freeze_what_is_loaded.
MIDDLE_COLLECTIONS_PER_FULL = 100


def freeze_what_is_loaded() -> None:
    """Move every object alive now (the modules, the scenario, the server) out of the
    garbage collector's reach, and make full collections rarer: call it once a server
    is up, before it serves.

    What is loaded lives as long as the process, yet each full collection walked it all
    again: under a churn of thousands of connections a second, a collection of the
    oldest generation held the event loop 31 ms (9 ms once frozen), and a feed's tick
    with it. What is already garbage is collected first, not frozen with the rest.

    A full collection also walks every connection (about 37 tracked objects each): with
    2,000 clients connecting, one held the loop 27-37 ms. Connections leave no reference
    cycles (simulator.net.event_loop.release_transport, Connection.connection_lost; but
    for the socket under a TLS connection), so a full collection finds little to free:
    at most one per MIDDLE_COLLECTIONS_PER_FULL collections of the middle generation
    (instead of 10) makes those pauses ten times rarer, at the cost of cyclic garbage
    that outlives the younger generations waiting longer to be freed."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, MIDDLE_COLLECTIONS_PER_FULL)
