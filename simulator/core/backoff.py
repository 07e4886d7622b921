"""Reconnect delays: capped exponential backoff with full jitter, reset only by a stable
connection, and a server's ``Retry-After`` honoured up to a cap.

Pure: the caller passes the random draw (a float in ``[0, 1)`` from its own seeded
generator) and how long the connection that just ended stayed open (from its own
clock). Nothing here sleeps or reads a clock.

Two departures from ``websockets``' own reconnect loop, on purpose:

- **Full jitter on every attempt** ("AWS full jitter": the delay is drawn uniformly from
  ``[0, window)``), not only on the first one, so clients dropped together do not come
  back together. That holds after a ``Retry-After`` too: the draw is added to it, so
  clients refused together with the same hint do not all come back when it ends.
- **A bare handshake does not reset the count.** ``websockets`` resets its delays on
  every successful handshake, so a server that accepts and then closes at once is
  retried in a tight loop (reconnecting-websocket#200, pipecat PR #3824). Here only a
  connection that stayed open :attr:`BackoffPolicy.stable_s` resets it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.errors import UsageError

_FINITE = ("base_s", "factor", "cap_s")  # may not be infinite
_MAY_BE_INFINITE = ("stable_s", "retry_after_cap_s")  # inf: never reset, no cap


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How long to wait before reconnect attempt ``n`` (counted from 0).

    Attempt ``n`` waits ``draw * window_s(n)`` where the window is
    ``min(cap_s, base_s * factor**n)``; after a server's ``Retry-After`` it waits
    ``min(retry_after, retry_after_cap_s)`` plus that. Invalid values raise
    :class:`~simulator.errors.UsageError` naming the field.
    """

    base_s: float = 0.5
    """The first window: attempt 0 waits between 0 and this."""
    factor: float = 2.0
    """Each failed attempt multiplies the window by this."""
    cap_s: float = 30.0
    """No window grows above this (a ``Retry-After`` may ask for more)."""
    stable_s: float = 10.0
    """A connection that stayed open this long resets the attempt count."""
    retry_after_cap_s: float = 120.0
    """A server's ``Retry-After`` is honoured up to this."""

    def __post_init__(self) -> None:
        for name in (*_FINITE, *_MAY_BE_INFINITE):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"BackoffPolicy {name}={value!r}: must be a number")
            if math.isnan(value) or (name in _FINITE and math.isinf(value)):
                raise UsageError(f"BackoffPolicy {name}={value!r}: must be a finite number")
        if not self.base_s > 0:
            raise UsageError(f"BackoffPolicy base_s={self.base_s!r}: must be > 0")
        if not self.factor >= 1:
            raise UsageError(f"BackoffPolicy factor={self.factor!r}: must be >= 1")
        if not self.cap_s >= self.base_s:
            raise UsageError(
                f"BackoffPolicy: cannot have cap_s={self.cap_s!r} < base_s={self.base_s!r}"
            )
        if not self.stable_s >= 0:
            raise UsageError(f"BackoffPolicy stable_s={self.stable_s!r}: must be >= 0")
        if not self.retry_after_cap_s >= 0:
            raise UsageError(
                f"BackoffPolicy retry_after_cap_s={self.retry_after_cap_s!r}: must be >= 0"
            )

    def window_s(self, attempt: int) -> float:
        """The upper bound of attempt ``attempt``'s delay: ``min(cap_s, base_s *
        factor**attempt)``. Grows monotonically to ``cap_s``; any ``attempt >= 0``
        works, however large (no overflow)."""
        if attempt < 0:
            raise UsageError(f"attempt={attempt!r}: must be >= 0")
        if self.factor == 1:
            return self.base_s
        # Compare with the attempt that reaches the cap first: factor**attempt overflows
        # a float (and a huge int attempt cannot even become one) long before any count
        # of real attempts could, and past the cap the answer is known. Python compares
        # an int with a float exactly, whatever the int's size.
        if attempt >= math.log(self.cap_s / self.base_s) / math.log(self.factor):
            return self.cap_s
        return min(self.cap_s, self.base_s * self.factor**attempt)

    def retry_after_wait_s(self, retry_after_s: float | None) -> float | None:
        """The part of a server's ``Retry-After`` that is honoured: up to
        ``retry_after_cap_s`` (``None`` when there was none)."""
        return None if retry_after_s is None else min(retry_after_s, self.retry_after_cap_s)

    def delay_s(self, attempt: int, draw: float, retry_after_s: float | None = None) -> float:
        """The delay before attempt ``attempt``: ``draw * window_s(attempt)`` (full
        jitter), after ``min(retry_after_s, retry_after_cap_s)`` when the server sent a
        ``Retry-After`` (never before the time it asked for, and still jittered).

        ``draw`` is one uniform draw from the caller's seeded generator, in ``[0, 1)``
        (``random.Random.random()``; 1.0 is accepted and gives the whole window).
        ``retry_after_s`` is the parsed header (see
        :func:`simulator.core.close_policy.parse_retry_after`), ``>= 0``.
        """
        if not 0.0 <= draw <= 1.0:
            raise UsageError(f"draw={draw!r}: must be in [0, 1]")
        jittered = draw * self.window_s(attempt)
        if retry_after_s is None:
            return jittered
        if not retry_after_s >= 0:
            raise UsageError(f"retry_after_s={retry_after_s!r}: must be >= 0")
        wait = self.retry_after_wait_s(retry_after_s)
        assert wait is not None
        return wait + jittered


@dataclass(slots=True)
class Backoff:
    """The attempt counter of one client: what the reconnect loop asks after each failure.

    After every connection that ended (or never opened), the loop must call
    :meth:`next_delay_s` once, wait that long on its own clock, then make exactly one
    attempt. One :class:`Backoff` per client, never shared.
    """

    policy: BackoffPolicy
    attempt: int = 0
    """Failed attempts since the last reset: the exponent of the next window."""

    def __post_init__(self) -> None:
        if self.attempt < 0:
            raise UsageError(f"Backoff attempt={self.attempt!r}: must be >= 0")

    def next_delay_s(
        self, draw: float, *, uptime_s: float | None, retry_after_s: float | None = None
    ) -> float:
        """How long to wait before the next attempt; counts this failure.

        ``uptime_s`` is how long the connection that just ended was open, on the
        caller's clock, or ``None`` if it never opened (a refused or failed handshake).
        An uptime of at least :attr:`BackoffPolicy.stable_s` resets the count first, so
        the delay starts again from the first window; a shorter one (a server that
        accepts then closes at once) does not, and the delay keeps growing to the cap.
        ``draw`` and ``retry_after_s`` are as for :meth:`BackoffPolicy.delay_s`.
        """
        if uptime_s is not None:
            if not uptime_s >= 0:
                raise UsageError(f"uptime_s={uptime_s!r}: must be >= 0")
            if uptime_s >= self.policy.stable_s:
                self.attempt = 0
        delay = self.policy.delay_s(self.attempt, draw, retry_after_s)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from the first window: call it when the application knows the
        connection is healthy before :attr:`BackoffPolicy.stable_s` has passed (an
        application-level ack, a resumed subscription)."""
        self.attempt = 0
