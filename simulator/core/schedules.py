"""When a stream sends: message times as integer nanoseconds, chunk by chunk.

A :class:`ScheduleCursor` turns a :class:`~simulator.core.model.Schedule` into the
times of messages ``0, 1, 2, ...`` of one scope (the broadcast timeline or one
connection). Random intervals draw one word per message from the stream's own
``schedule`` draws, so a stream's times never depend on its fields or on other streams.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulator.core.draws import Draws, unit
from simulator.core.model import At, Burst, Every, Poisson, Schedule, UniformInterval

Times = npt.NDArray[np.int64]
_NS_PER_S = 1_000_000_000


class ScheduleCursor:
    """The times of a stream's messages, in order; stops for good at ``stop_ns``.

    Call :meth:`next` repeatedly; an empty array means the stream has ended.
    """

    def __init__(self, schedule: Schedule, draws: Draws) -> None:
        self._schedule = schedule
        self._draws = draws
        self._index = 0  # index of the next message
        self._last = 0  # time of the previous message (random intervals)
        self.ended = False

    def next(self, n: int) -> Times:
        """The times of the next ``n`` messages (fewer, or none, once the stream ends)."""
        if self.ended or n <= 0:
            return np.zeros(0, dtype=np.int64)
        k = np.arange(self._index, self._index + n, dtype=np.int64)
        times = self._times(k)
        self._index += n
        stop = self._schedule.stop_ns
        if stop is not None and len(times) and times[-1] >= stop:
            times = times[: int(np.searchsorted(times, stop, side="left"))]
            self.ended = True
        return times

    def _times(self, k: Times) -> Times:
        s = self._schedule
        p = s.pattern
        if isinstance(p, Every):
            first = s.first_ns if s.first_ns is not None else p.interval_ns
            return s.start_ns + first + k * p.interval_ns
        if isinstance(p, Burst):
            first = s.first_ns if s.first_ns is not None else p.every_ns
            return s.start_ns + first + (k // p.count) * p.every_ns + (k % p.count) * p.spacing_ns
        if isinstance(p, At):
            return self._at(p, k)
        return self._random(k)

    def _at(self, p: At, k: Times) -> Times:
        offsets = np.asarray(p.offsets_ns, dtype=np.int64)
        count = len(offsets)
        if p.repeat_ns is None:
            k = k[k < count]
            if len(k) == 0 or k[-1] == count - 1:
                self.ended = True
            return self._schedule.start_ns + offsets[k]
        return self._schedule.start_ns + (k // count) * p.repeat_ns + offsets[k % count]

    def _random(self, k: Times) -> Times:
        s = self._schedule
        p = s.pattern
        u = unit(self._draws.words(len(k), 1)[:, 0])
        if isinstance(p, UniformInterval):
            span = p.max_ns - p.min_ns
            gaps = p.min_ns + np.floor(u * (span + 1)).astype(np.int64)
        else:
            assert isinstance(p, Poisson)
            gaps = np.rint(-np.log1p(-u) * (_NS_PER_S / p.rate_per_s)).astype(np.int64)
        if self._index == 0:
            base = s.start_ns
            if s.first_ns is not None:
                # The first message is pinned; its drawn gap is spent but not used.
                gaps[0] = s.first_ns
        else:
            base = self._last
        times = base + np.cumsum(gaps)
        self._last = int(times[-1])
        return times
