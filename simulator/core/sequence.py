"""Gaps and duplicates in a feed, from the per-stream ``seq`` of each envelope.

Every message ``{"type", "seq", "timestamp", "data"}`` carries ``seq``, counting from 1
per stream. :class:`SequenceTracker` is told each one as it arrives and answers with a
:class:`Seen`: deliver it or not, and which seqs were newly found missing.

- The first seq seen on a stream is not a gap: a client may join a broadcast late.
- A seq above the highest so far reports the seqs it jumps over as a gap, once.
- A missing seq that arrives after all is ``late``: delivered, not a duplicate.
- A seq already delivered is a ``duplicate``: not delivered again.
- Memory is bounded: for each stream only the ``memory`` seqs ending at the highest
  are remembered, ``(highest - memory, highest]``. A seq older than that is
  ``too_old``: it cannot be told from a duplicate, so it is not delivered either. So no
  seq is ever delivered twice; the price is that a message more than ``memory`` seqs
  late is dropped (its gap was reported when it opened, and is forgotten by then).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import UsageError


@dataclass(frozen=True, slots=True)
class Seen:
    """What to do with one arrived message."""

    deliver: bool
    """Hand the message to the application. False for a duplicate or a too-old seq."""
    gap: tuple[int, int] | None
    """``(first, last)`` seqs, inclusive, newly found missing: report them (and resync
    if the application needs every message). ``None`` when there is no new gap."""
    duplicate: bool
    """A seq already delivered and still remembered."""
    late: bool
    """A seq reported missing earlier arrived after all. It is delivered; it fills
    (part of) an earlier gap."""
    too_old: bool = False
    """Older than the remembered window (more than ``memory`` below the highest seq):
    not delivered, as it cannot be told from a duplicate."""


_IN_ORDER = Seen(deliver=True, gap=None, duplicate=False, late=False)
_LATE = Seen(deliver=True, gap=None, duplicate=False, late=True)
_DUPLICATE = Seen(deliver=False, gap=None, duplicate=True, late=False)
_TOO_OLD = Seen(deliver=False, gap=None, duplicate=False, late=False, too_old=True)


class _Stream:
    """One stream's window: bit ``i`` of ``bits`` is set when seq ``high - i`` arrived."""

    __slots__ = ("bits", "first", "high")

    def __init__(self, seq: int) -> None:
        self.first = seq
        self.high = seq
        self.bits = 1


class SequenceTracker:
    """Duplicate and gap detection for the streams of one feed.

    Call :meth:`observe` for every message, in arrival order, before handing it to the
    application, and hand it over only if :attr:`Seen.deliver`. Call :meth:`restart`
    when a feed starts again from 1 (a per-connection feed on a new connection); do not
    call it for a feed that resumes where it left off (a broadcast), so that a replayed
    message is caught as a duplicate.
    """

    __slots__ = ("_mask", "_streams", "memory")

    def __init__(self, memory: int = 4096) -> None:
        """``memory``: how many seqs per stream, ending at the highest, are remembered
        for duplicate detection (``>= 1``). Costs ``memory`` bits per stream."""
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
            raise UsageError(f"SequenceTracker memory={memory!r}: must be an integer >= 1")
        self.memory = memory
        self._mask = (1 << memory) - 1
        self._streams: dict[str, _Stream] = {}

    def observe(self, stream: str, seq: int) -> Seen:
        """Record that message ``seq`` of ``stream`` arrived; say whether to deliver it
        and which seqs it shows missing."""
        s = self._streams.get(stream)
        if s is None:
            self._streams[stream] = _Stream(seq)
            return _IN_ORDER
        ahead = seq - s.high
        if ahead > 0:
            # Micro-optimization: the common case, next in order, first.
            s.bits = 1 if ahead >= self.memory else ((s.bits << ahead) | 1) & self._mask
            s.high = seq
            if ahead == 1:
                return _IN_ORDER
            return Seen(deliver=True, gap=(seq - ahead + 1, seq - 1), duplicate=False, late=False)
        behind = -ahead
        if behind >= self.memory:
            return _TOO_OLD
        bit = 1 << behind
        if s.bits & bit:
            return _DUPLICATE
        s.bits |= bit
        # Below the first seq seen nothing was expected, so nothing was reported missing.
        return _LATE if seq > s.first else _IN_ORDER

    def restart(self, stream: str | None = None) -> None:
        """Forget ``stream`` (every stream when ``None``): its next seq is a first seq
        again. Call it when a feed starts again from 1, e.g. on a new connection."""
        if stream is None:
            self._streams.clear()
        else:
            self._streams.pop(stream, None)

    def missing(self, stream: str) -> list[tuple[int, int]]:
        """The gaps of ``stream`` not filled, ``(first, last)`` inclusive, ascending:
        seqs between the first and the highest seen that never arrived, within the
        remembered window (older gaps are forgotten). ``[]`` for an unknown stream."""
        s = self._streams.get(stream)
        if s is None:
            return []
        # Bits 0 .. limit-1 are the seqs above `first` that are still remembered.
        limit = min(self.memory, s.high - s.first)
        holes = ~s.bits & ((1 << limit) - 1)
        gaps: list[tuple[int, int]] = []
        while holes:
            low = (holes & -holes).bit_length() - 1
            run = holes >> low
            length = (~run & (run + 1)).bit_length() - 1  # trailing ones of `run`
            gaps.append((s.high - low - length + 1, s.high - low))
            holes &= ~(((1 << length) - 1) << low)
        gaps.reverse()
        return gaps

    def highest(self, stream: str) -> int | None:
        """The highest seq seen on ``stream``, or ``None``: what to resume from."""
        s = self._streams.get(stream)
        return None if s is None else s.high

    def remembered(self, stream: str) -> int:
        """How many seqs of ``stream`` are remembered as delivered (``<= memory``)."""
        s = self._streams.get(stream)
        return 0 if s is None else s.bits.bit_count()
