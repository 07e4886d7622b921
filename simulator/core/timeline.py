"""The timeline: every message a scenario sends, in time order, as a pure function of
``(scenario, seed, scope)``.

``scope`` is ``None`` for the one shared timeline of broadcast mode, or a connection
index in per-connection mode. Times are nanoseconds from the timeline's origin (the
scenario start, or the connection's start); wall-clock times are ``epoch_ns + t``.

Order: by time, then by the stream's position in the scenario, then by the stream's
``seq``. Same inputs give byte-identical payloads and times, whatever chunk sizes
were used to read them (each stream's draws are consumed a fixed width per message).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.core.draws import Draws
from simulator.core.encode import MessageEncoder
from simulator.core.model import Scenario, Stream
from simulator.core.rates import mean_rate_per_s
from simulator.core.schedules import ScheduleCursor, Times
from simulator.core.values import Context, compile_object

DEFAULT_EPOCH_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, when the scenario names none


def scope_key(scope: int | None) -> str | int:
    """The derivation part that names a scope: ``"broadcast"`` or the connection index."""
    return "broadcast" if scope is None else scope


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages in timeline order: parallel arrays and a list of encoded payloads."""

    t_ns: Times
    stream: npt.NDArray[np.int16]  # index into scenario.streams
    seq: npt.NDArray[np.int64]
    payloads: list[bytes]

    def __len__(self) -> int:
        return len(self.payloads)

    def slice(self, start: int, stop: int) -> Batch:
        """Messages ``start`` to ``stop`` (excluded), still in timeline order."""
        return Batch(
            self.t_ns[start:stop],
            self.stream[start:stop],
            self.seq[start:stop],
            self.payloads[start:stop],
        )

    def pick(self, mask: npt.NDArray[np.bool_]) -> Batch:
        """The messages where ``mask`` is true, still in timeline order."""
        return Batch(
            self.t_ns[mask],
            self.stream[mask],
            self.seq[mask],
            [p for p, keep in zip(self.payloads, mask.tolist(), strict=True) if keep],
        )


# Read-only, so that the cursors can hand out the same empty arrays every time.
_NO_TIMES: Times = np.zeros(0, np.int64)
_NO_TIMES.flags.writeable = False
_NO_SEQS: npt.NDArray[np.int64] = np.zeros(0, np.int64)
_NO_SEQS.flags.writeable = False


def empty_batch() -> Batch:
    return Batch(np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int64), [])


class StreamCursor:
    """One stream's messages for one scope, rendered ``chunk`` at a time, in order."""

    def __init__(
        self, stream: Stream, seed: int, scope: int | None, epoch_ns: int, chunk: int
    ) -> None:
        key = scope_key(scope)
        self.stream = stream
        self._times = ScheduleCursor(stream.schedule, Draws(seed, "schedule", stream.name, key))
        self._draws = Draws(seed, "fields", stream.name, key)
        self._fields = compile_object(stream.fields)
        self._encoder = MessageEncoder(stream, self._fields.keys)
        self._epoch_ns = epoch_ns
        self._chunk = chunk
        self._next_seq = 1
        # The rendered messages not yet taken: times, seqs and payloads from position _pos.
        self._t: Times = np.zeros(0, np.int64)
        # _t as a list: a live server takes one or two messages at a time, and bisect
        # on a list is several times quicker than numpy on so few.
        self._t_list: list[int] = []
        self._seq: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._payloads: list[bytes] = []
        self._pos = 0

    @property
    def ended(self) -> bool:
        return self._times.ended and self._pos >= len(self._t_list)

    def peek_time(self) -> int | None:
        """Time of the next message, or ``None`` when the stream has ended."""
        if self._pos >= len(self._t_list):
            self._render()
        return self._t_list[self._pos] if self._pos < len(self._t_list) else None

    def take_until(self, t_end: int) -> tuple[Times, npt.NDArray[np.int64], list[bytes]]:
        """Every message with time ``< t_end`` not taken yet."""
        pos, rendered = self._pos, len(self._t_list)
        if pos < rendered:
            stop = bisect_left(self._t_list, t_end, pos)
            if stop < rendered:  # the usual case: it all comes from the chunk at hand
                if stop == pos:
                    return _NO_TIMES, _NO_SEQS, []
                self._pos = stop
                return self._t[pos:stop], self._seq[pos:stop], self._payloads[pos:stop]
        ts: list[Times] = []
        seqs: list[npt.NDArray[np.int64]] = []
        payloads: list[bytes] = []
        while True:
            if self._pos >= len(self._t_list):
                self._render()
                if self._pos >= len(self._t_list):
                    break
            stop = bisect_left(self._t_list, t_end, self._pos)
            ts.append(self._t[self._pos : stop])
            seqs.append(self._seq[self._pos : stop])
            payloads.extend(self._payloads[self._pos : stop])
            self._pos = stop
            if stop < len(self._t_list):
                break
        if not ts:
            return _NO_TIMES, _NO_SEQS, []
        return np.concatenate(ts), np.concatenate(seqs), payloads

    def _render(self) -> None:
        times = self._times.next(self._chunk)
        n = len(times)
        first = self._next_seq
        self._next_seq += n
        # Draws are taken for the whole chunk asked for, used or not, so that message i
        # always sees the same words (a stop inside the chunk must not shift anything).
        words = self._draws.words(self._chunk, self._fields.width)[:n]
        self._t = times
        self._t_list = times.tolist()
        self._seq = np.arange(first, first + n, dtype=np.int64)
        self._payloads = self._encode(times, words) if n else []
        self._pos = 0

    def _encode(self, times: Times, words: npt.NDArray[np.uint64]) -> list[bytes]:
        n = len(times)
        wall = times + self._epoch_ns
        seqs = self._seq.tolist()
        ctx = Context(n, seqs, self._seq - 1, wall)
        return self._encoder.encode(seqs, wall, self._fields.columns(words, ctx))


def default_chunk(stream: Stream) -> int:
    """A chunk that renders about ten seconds of the stream ahead, from 32 to 4096 messages.

    Chunk sizes never change the output; they only trade memory for speed. Rendering a
    chunk costs about 100 us whatever its size up to a few dozen messages, so a slow
    stream renders 32 at a time (8 made a dashboard's two minutes cost 0.6 ms more).
    """
    rate = mean_rate_per_s(stream.schedule)
    return int(min(4096, max(32, rate * 10)))


class Timeline:
    """Every message of one scope of a scenario, in timeline order.

    Read it forward with :meth:`take_until`; it never goes back. ``chunk`` (messages
    rendered at a time per stream) is a memory/speed knob with no effect on output;
    ``max_chunk`` caps the default one (a live server keeps it small, since rendering
    a chunk holds up its event loop).
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        scope: int | None = None,
        epoch_ns: int | None = None,
        chunk: int | None = None,
        max_chunk: int = 4096,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.scope = scope
        if epoch_ns is None:
            epoch_ns = scenario.epoch_ns if scenario.epoch_ns is not None else DEFAULT_EPOCH_NS
        self.epoch_ns = epoch_ns
        self.cursors = [
            StreamCursor(
                s, self.seed, scope, self.epoch_ns, chunk or min(default_chunk(s), max_chunk)
            )
            for s in scenario.streams
        ]

    @property
    def ended(self) -> bool:
        return all(c.ended for c in self.cursors)

    def next_time(self) -> int | None:
        """Time of the next message of any stream, or ``None`` when every stream has ended."""
        first: int | None = None
        for c in self.cursors:
            t = c.peek_time()
            if t is not None and (first is None or t < first):
                first = t
        return first

    def take_until(self, t_end: int) -> Batch:
        """Every message with time ``< t_end`` not taken yet, in timeline order."""
        parts = []
        for i, c in enumerate(self.cursors):
            t, seq, payloads = c.take_until(t_end)
            if payloads:
                parts.append((i, t, seq, payloads))
        if not parts:
            return empty_batch()
        if len(parts) == 1:
            i, t, seq, payloads = parts[0]
            return Batch(t, np.full(len(t), i, np.int16), seq, payloads)
        if sum(len(p[3]) for p in parts) <= _SMALL:
            return _merge_small(parts)
        t = np.concatenate([p[1] for p in parts])
        stream = np.concatenate([np.full(len(p[1]), p[0], np.int16) for p in parts])
        seq = np.concatenate([p[2] for p in parts])
        payloads = [b for p in parts for b in p[3]]
        # Streams were concatenated in scenario order and each is in seq order, so a
        # stable sort on time alone gives (time, stream, seq) order.
        order = np.argsort(t, kind="stable")
        order_list = order.tolist()
        return Batch(t[order], stream[order], seq[order], [payloads[k] for k in order_list])


#: Up to this many messages, a batch from several streams is merged in plain Python:
#: a live server's tick holds a few, and numpy's fixed cost per call dominates there.
_SMALL = 32


def _merge_small(
    parts: list[tuple[int, Times, npt.NDArray[np.int64], list[bytes]]],
) -> Batch:
    """The messages of ``parts`` (stream index, times, seqs, payloads) in (time, stream,
    seq) order: what the stable argsort of the numpy path gives."""
    rows = sorted(
        (t, i, seq, payload)
        for i, ts, seqs, payloads in parts
        for t, seq, payload in zip(ts.tolist(), seqs.tolist(), payloads, strict=True)
    )  # (time, stream, seq) is unique: the payloads are never compared
    return Batch(
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], np.int16),
        np.array([r[2] for r in rows], np.int64),
        [r[3] for r in rows],
    )
