"""Mean message rates of schedules, for summaries and for refusing absurd scenarios;
and the token bucket that limits what a client may send."""

from __future__ import annotations

from typing import Final

from simulator.core.model import At, Burst, Every, Poisson, Schedule, UniformInterval

_NS_PER_S = 1e9


def mean_rate_per_s(schedule: Schedule, duration_ns: int | None = None) -> float:
    """Long-run messages per second of ``schedule``.

    A one-shot ``at`` list has no long-run rate: it is spread over ``duration_ns`` when
    given, else reported as 0.
    """
    p = schedule.pattern
    if isinstance(p, Every):
        return _NS_PER_S / p.interval_ns if p.interval_ns else float("inf")
    if isinstance(p, UniformInterval):
        mean = (p.min_ns + p.max_ns) / 2
        return _NS_PER_S / mean if mean else float("inf")
    if isinstance(p, Poisson):
        return p.rate_per_s
    if isinstance(p, Burst):
        return p.count * _NS_PER_S / p.every_ns if p.every_ns else float("inf")
    assert isinstance(p, At)
    if p.repeat_ns:
        return len(p.offsets_ns) * _NS_PER_S / p.repeat_ns
    if duration_ns:
        return len(p.offsets_ns) * _NS_PER_S / duration_ns
    return 0.0


#: How long a :meth:`TokenBucket.credit` lasts, in the bucket's seconds.
CREDIT_S: Final = 1.0


class TokenBucket:
    """At most ``rate`` events a second on average and ``burst`` at once. Pure: the
    caller passes the time (seconds, any origin) of each event."""

    __slots__ = ("_at", "_credit_until", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst  # a new bucket is full
        self._at = now
        self._credit_until = now

    def allow(self, now: float) -> bool:
        """Whether an event at ``now`` is within the limit (it then takes a token)."""
        self._refill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def credit(self, seconds: float, now: float) -> None:
        """Allow, on top of what is in the bucket, ``seconds`` worth of events at the
        rate, for the next second (:data:`CREDIT_S`): for events that were held back
        (not read, by a fault) for that long and now arrive at once, which the sender did
        not do. What is left of it then is gone: it cannot be saved for a flood."""
        self._refill(now)
        self._tokens += seconds * self.rate
        self._credit_until = now + CREDIT_S

    def _refill(self, now: float) -> None:
        if self._tokens > self.burst and now >= self._credit_until:
            self._tokens = self.burst  # an unspent credit expires
        refilled = self._tokens + (now - self._at) * self.rate
        # Up to the burst; a credit above it is kept (not refilled) until spent.
        self._tokens = max(self._tokens, min(self.burst, refilled))
        self._at = now
