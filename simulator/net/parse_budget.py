"""What a server's connections parse in one turn of the event loop, all together.

asyncio runs, in one turn, every callback of the reads that are ready and only then
the timers that fell due: a feed's next tick waits behind whatever those reads cost.
What a client sends costs by the frame (each is parsed and handled: an error reply, a
log line), so 50 clients flooding tiny frames held the tick 20 ms when each of them
was given its own slice per turn. Here the turn has one budget, in bytes, with each
frame charged at least :data:`FRAME_CHARGE_BYTES`: a read that finds it spent joins
its connection's backlog, and the backlogs are parsed a slice at a time (the budget
shared among them, :data:`SLICE_BYTES` each at least), round-robin, first thing in the
next turns, until the budget is spent again.
Every connection with a backlog gets a slice within a few turns; none is starved.

A connection hands its backlog over with :meth:`TurnBudget.enqueue` and is called back
through :meth:`Parser.parse_slice`.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

#: What all connections parse in one loop turn, together, about: a millisecond of the
#: smallest frames handled. A slice is parsed in pieces until it is spent, so the
#: budget can be overrun by one piece (256 bytes) or one read parsed as it came.
TURN_PARSE_BYTES = 2048
#: One connection's share of a turn, from its backlog, at least: the turn's budget is
#: shared among those waiting, so that one alone parses TURN_PARSE_BYTES a turn (a
#: big message is not parsed slower than it must), and fifty flooders 512 bytes each,
#: four of them a turn.
SLICE_BYTES = 512
#: What a frame costs of the budget at least: a 6-byte empty frame is as much work to
#: parse and handle as a 16-byte one.
FRAME_CHARGE_BYTES = 16


class Parser(Protocol):
    """A connection with a backlog of bytes read and not yet parsed."""

    def parse_slice(self, size: int) -> bool:
        """Parse up to ``size`` bytes of the backlog, charging them to the turn's
        budget (:meth:`TurnBudget.charge`); say whether some is left to parse now
        (``False`` also when reading is held for another reason: the connection
        enqueues itself again when it is released)."""
        ...


class TurnBudget:
    """One event loop's parsing budget. Get it with :func:`turn_budget`."""

    __slots__ = ("_armed", "_waiting", "spent")

    def __init__(self) -> None:
        # No reference to the loop: it is the key of _budgets, which must not keep it.
        self.spent = 0  # bytes charged in this turn
        self._armed = False  # the next turn's callback is scheduled
        # Connections with a backlog, in the order they are served (a dict: an ordered
        # set, so that one cannot be queued twice).
        self._waiting: dict[Parser, None] = {}

    def allows(self) -> bool:
        """Whether this turn has budget left for a read to be parsed as it comes."""
        return self.spent < TURN_PARSE_BYTES

    def charge(self, size: int, frames: int) -> None:
        """Count ``size`` bytes parsed into ``frames`` frames against this turn."""
        self.spent += max(size, frames * FRAME_CHARGE_BYTES)
        self._arm()

    def enqueue(self, parser: Parser) -> None:
        """Parse ``parser``'s backlog in the next turns, a slice per turn, after those
        already waiting. Queuing one that is already waiting changes nothing."""
        if parser not in self._waiting:
            self._waiting[parser] = None
            self._arm()

    def discard(self, parser: Parser) -> None:
        """Forget ``parser`` (its connection is gone)."""
        self._waiting.pop(parser, None)

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            # First thing in the next turn: the budget is the turn's, so the reads and
            # the due timers (a feed's tick) that follow wait for one budget at most.
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._armed = False
        self.spent = 0
        waiting = self._waiting
        size = max(SLICE_BYTES, TURN_PARSE_BYTES // max(1, len(waiting)))
        try:
            for _ in range(len(waiting)):  # one slice each at most, in order
                if self.spent >= TURN_PARSE_BYTES:
                    break
                parser = next(iter(waiting))
                del waiting[parser]
                if parser.parse_slice(size):
                    waiting[parser] = None  # to the back of the queue
        finally:
            if waiting:  # the others are served next turn, whatever one of them raised
                self._arm()


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnBudget] = (
    weakref.WeakKeyDictionary()
)


def turn_budget() -> TurnBudget:
    """The running loop's budget (one per loop: tests run many loops in turn)."""
    loop = asyncio.get_running_loop()
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = TurnBudget()
    return budget
