"""What every part of the network layer shares: close codes, the timed wait, and the
warning for a server reachable from other hosts."""

from __future__ import annotations

import asyncio

from websockets.frames import CloseCode

from simulator.net.log import EventKind, EventLog

CLOSE_NORMAL = CloseCode.NORMAL_CLOSURE
CLOSE_GOING_AWAY = CloseCode.GOING_AWAY
CLOSE_ABNORMAL = CloseCode.ABNORMAL_CLOSURE
CLOSE_POLICY_VIOLATION = CloseCode.POLICY_VIOLATION
CLOSE_TRY_AGAIN_LATER = CloseCode.TRY_AGAIN_LATER
CLOSE_NO_STATUS = CloseCode.NO_STATUS_RCVD
#: Seconds a peer has to complete a closing handshake before its socket is dropped: no
#: close, and so no stop, waits longer on a peer that reads nothing.
CLOSE_TIMEOUT_S = 2.0
#: Close codes that are never sent in a close frame (RFC 6455 §7.4.1): a recorded one
#: means the connection ended without a closing handshake.
NOT_ON_THE_WIRE = frozenset({1005, 1006, 1015})


def sendable(code: int) -> bool:
    """Whether ``code`` may stand in a close frame (RFC 6455 §7.4)."""
    return code not in NOT_ON_THE_WIRE and 1000 <= code <= 4999


#: The selector sleeps in whole milliseconds, rounded up, so a timer fires up to a
#: millisecond after its time. A server that sends when it wakes therefore aims early,
#: and sends what falls due up to AHEAD_S after the moment it woke. With passes at
#: least MIN_PASS_GAP_S apart (about 1.6 ms with the rounding: simulator.net.pump), a
#: message due just past a pass's reach waits for the next: 0.8 ms centres the error,
#: so that a message leaves up to 0.8 ms early and, on an idle machine, seldom more
#: than that late (0.5 ms left it up to 1.1 ms late: a p99 at the client 0.35 ms
#: higher, docs/performance.md, #14).
AHEAD_S = 0.0008
#: How early a sender of one step at a time wakes (a replay: no pass waits for the next
#: one): half the selector's rounding up, which centres a step on its time.
STEP_EARLY_S = 0.0005
#: A pass (one write per client) comes at least this long after the one before woke,
#: so that a fast stream's messages go out together rather than one write each.
MIN_PASS_GAP_S = 0.001
#: How close to a deadline :func:`sleep_until` stops sleeping and yields instead, in
#: precise timing.
SPIN_S = 0.001


#: Linux ends a sleep of t seconds up to t/1000 late (the timer slack of poll and
#: epoll, 0.1% of the timeout): a 5 s sleep, 5 ms. A long wait is therefore slept in
#: steps that each stop short of the deadline by 1% of what is left, down to this.
LONG_SLEEP_S = 0.02


async def _sleep_to(when: float) -> None:
    """Sleep until about loop time ``when`` (a timer's granularity late at most)."""
    loop = asyncio.get_running_loop()
    while (delay := when - loop.time()) > LONG_SLEEP_S:
        await asyncio.sleep(delay - max(delay / 100, LONG_SLEEP_S / 2))
    if delay > 0:
        await asyncio.sleep(delay)


async def sleep_until(when: float, *, precise: bool = False, early: float = AHEAD_S) -> bool:
    """Wait until about loop time ``when``: up to ``early`` before it (the pump then
    sends what is due by ``loop.time() + ahead_s(precise)``), or later if the loop is
    busy. A sender of one step at a time (a replay) gives STEP_EARLY_S. With
    ``precise``, sleep to within SPIN_S of ``when``, then yield to the loop (which goes
    on serving I/O) until it is reached: on time, at the cost of a busy core for that
    last millisecond. Returns whether it gave the loop a turn (a caller that keeps
    the loop must yield itself when it did not)."""
    loop = asyncio.get_running_loop()
    delay = when - loop.time()
    if exact_timers():
        # A virtual clock fires timers exactly on time, and does not move while tasks
        # yield: spinning there would never end.
        if delay > 0:
            await asyncio.sleep(delay)
        return delay > 0
    if not precise:
        if delay > early:
            await _sleep_to(when - early)
        return delay > early
    if delay > SPIN_S:
        await _sleep_to(when - SPIN_S)
    yielded = delay > SPIN_S
    while loop.time() < when:
        await asyncio.sleep(0)
        yielded = True
    return yielded


def ahead_s(precise: bool) -> float:
    """How far past now a woken sender may take messages (see AHEAD_S): nothing is
    sent early with ``precise`` timing or on a virtual clock."""
    if precise or exact_timers():
        return 0.0
    return AHEAD_S


def warn_if_public(host: str, log: EventLog) -> None:
    """Log a warning when ``host`` binds every interface (the default is loopback)."""
    if host in ("0.0.0.0", "::", ""):
        log.emit(
            EventKind.WARNING,
            message=f"listening on all interfaces ({host!r}): reachable from other hosts",
        )


def on_whole_ms(wall_ns: int) -> int:
    """``wall_ns`` rounded down to a whole millisecond. A clock whose time 0 falls there
    has every scheduled time written exactly by a timestamp in milliseconds; anywhere
    else, each one reads up to a millisecond early, which a client measuring how old a
    message is counts as lateness."""
    return wall_ns - wall_ns % 1_000_000


def exact_timers() -> bool:
    """Whether the running loop is a virtual clock, whose timers fire exactly on time
    (:mod:`simulator.testing.virtual_time`)."""
    return bool(getattr(asyncio.get_running_loop(), "exact_timers", False))


class ScenarioClock:
    """Scenario time on the event loop's clock: ``speed`` scenario seconds pass per
    second of loop time, from :meth:`start` on. (The loop's clock is the real one, or
    the virtual one of :mod:`simulator.testing.virtual_time`.)"""

    __slots__ = ("speed", "start_at")

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.start_at = 0.0

    def start(self, elapsed_s: float = 0.0) -> None:
        """Scenario time 0 is now, or was ``elapsed_s`` seconds (of wall time) ago."""
        self.start_at = asyncio.get_running_loop().time() - elapsed_s

    def virtual_ns(self) -> int:
        """Scenario time now, in ns since :meth:`start`."""
        elapsed = asyncio.get_running_loop().time() - self.start_at
        # round, not int: a float just under a whole ns is that ns (asyncio runs a timer
        # due within its clock resolution, so an instant may be read 1 ns early).
        return round(elapsed * self.speed * 1e9)

    def loop_time(self, virtual_ns: int) -> float:
        """The loop time at which scenario time ``virtual_ns`` falls."""
        return self.start_at + virtual_ns / 1e9 / self.speed


def address_text(address: object) -> str | None:
    """A peer's address (``transport.get_extra_info("peername")``) as ``host:port``
    (another kind as its text); ``None`` when there is none (an in-memory transport)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return None if address is None else str(address)
