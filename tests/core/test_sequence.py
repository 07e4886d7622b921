"""Gap and duplicate detection from per-stream seqs: exactly-once delivery, gaps that
cover exactly what never arrived, bounded memory, and agreement with a set-based model.

How it was checked that these tests fail: delivering a seq older than the window instead
of dropping it made ``test_no_seq_is_delivered_twice_whatever_the_memory`` fail (memory
1, seqs 1..56 then 1 again: 1 delivered twice) and the model checks fail; marking a seq
below the first as ``late`` made the gap-cover property fail; ``missing()`` stopping one
short of the first seq and a gap that starts one seq early each failed the gap and model
tests. Each was reverted.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from simulator.core.sequence import Seen, SequenceTracker
from simulator.errors import UsageError


class Model:
    """The reference: an unbounded set of seen seqs per stream, and the window rule
    (a seq ``memory`` or more below the highest is too old) stated directly."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.streams: dict[str, tuple[int, int, set[int]]] = {}  # first, high, seen

    def observe(self, stream: str, seq: int) -> Seen:
        if stream not in self.streams:
            self.streams[stream] = (seq, seq, {seq})
            return Seen(True, None, False, False)
        first, high, seen = self.streams[stream]
        if seq > high:
            seen.add(seq)
            self.streams[stream] = (first, seq, seen)
            gap = (high + 1, seq - 1) if seq > high + 1 else None
            return Seen(True, gap, False, False)
        if seq <= high - self.memory:
            return Seen(False, None, False, False, too_old=True)
        if seq in seen:
            return Seen(False, None, True, False)
        seen.add(seq)
        return Seen(True, None, False, seq > first)

    def missing(self, stream: str) -> list[tuple[int, int]]:
        if stream not in self.streams:
            return []
        first, high, seen = self.streams[stream]
        return runs(s for s in range(max(first, high - self.memory) + 1, high) if s not in seen)

    def remembered(self, stream: str) -> int:
        if stream not in self.streams:
            return 0
        _, high, seen = self.streams[stream]
        return sum(1 for s in seen if s > high - self.memory)


def runs(seqs: object) -> list[tuple[int, int]]:
    """Ascending inclusive runs of consecutive ints."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):  # type: ignore[call-overload]
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def expand(gaps: list[tuple[int, int]]) -> list[int]:
    return [s for first, last in gaps for s in range(first, last + 1)]


@st.composite
def feeds(draw: st.DrawFn, max_n: int = 120) -> list[int]:
    """A permutation of 1..n with some seqs removed and some repeated: what a feed
    delivers after loss, duplication and reordering."""
    n = draw(st.integers(1, max_n))
    kept = [s for s in range(1, n + 1) if not draw(st.booleans()) or s == 1]
    repeated = draw(st.lists(st.sampled_from(kept), max_size=n // 2))
    return draw(st.permutations(kept + repeated))


@given(feeds(), st.integers(1, 200))
def test_no_seq_is_delivered_twice_whatever_the_memory(feed: list[int], memory: int) -> None:
    tracker = SequenceTracker(memory)
    delivered = [s for s in feed if tracker.observe("a", s).deliver]
    assert Counter(delivered).most_common(1)[0][1] == 1


@given(feeds())
def test_within_memory_every_seq_is_delivered_exactly_once(feed: list[int]) -> None:
    tracker = SequenceTracker(memory=max(feed) + 1)
    seen = [tracker.observe("a", s) for s in feed]
    delivered = [s for s, r in zip(feed, seen, strict=True) if r.deliver]
    assert sorted(delivered) == sorted(set(feed))
    assert [r.duplicate for r in seen] == [s in feed[:i] for i, s in enumerate(feed)]


@given(feeds())
def test_gaps_reported_cover_exactly_the_seqs_that_arrived_late_or_never(feed: list[int]) -> None:
    tracker = SequenceTracker(memory=max(feed) + 1)
    seen = [tracker.observe("a", s) for s in feed]
    reported = expand([r.gap for r in seen if r.gap is not None])
    assert len(reported) == len(set(reported))  # each missing seq is reported once
    first, high = feed[0], max(feed)
    never = {s for s in range(first + 1, high) if s not in feed}
    late = {s for s, r in zip(feed, seen, strict=True) if r.late}
    assert set(reported) == never | late
    assert never.isdisjoint(late)
    assert expand(tracker.missing("a")) == sorted(never)


@given(feeds(), st.integers(1, 64))
def test_memory_stays_bounded(feed: list[int], memory: int) -> None:
    tracker = SequenceTracker(memory)
    for s in feed:
        tracker.observe("a", s)
        assert tracker.remembered("a") <= memory
        assert len(expand(tracker.missing("a"))) < memory


@given(
    st.lists(st.tuples(st.sampled_from("ab"), st.integers(-3, 40)), max_size=200),
    st.integers(1, 50),
)
def test_agrees_with_a_set_based_model(events: list[tuple[str, int]], memory: int) -> None:
    tracker, model = SequenceTracker(memory), Model(memory)
    for stream, seq in events:
        assert tracker.observe(stream, seq) == model.observe(stream, seq)
    for stream in "ab":
        assert tracker.missing(stream) == model.missing(stream)
        assert tracker.remembered(stream) == model.remembered(stream)


class TrackerMachine(RuleBasedStateMachine):
    """Observe, jump ahead, replay and restart streams in any order: the tracker and
    the model agree on every answer and on what is missing."""

    @initialize(memory=st.integers(1, 40))
    def start(self, memory: int) -> None:
        self.tracker, self.model = SequenceTracker(memory), Model(memory)
        self.highs: dict[str, int] = {}

    def check(self, stream: str, seq: int) -> None:
        assert self.tracker.observe(stream, seq) == self.model.observe(stream, seq)
        self.highs[stream] = max(self.highs.get(stream, seq), seq)

    @rule(stream=st.sampled_from("abc"), seq=st.integers(1, 30))
    def any_seq(self, stream: str, seq: int) -> None:
        self.check(stream, seq)

    @precondition(lambda self: self.highs)
    @rule(data=st.data(), ahead=st.integers(-60, 1000))
    def near_the_highest(self, data: st.DataObject, ahead: int) -> None:
        stream = data.draw(st.sampled_from(sorted(self.highs)))
        self.check(stream, self.highs[stream] + ahead)

    @rule(stream=st.none() | st.sampled_from("abc"))
    def restart(self, stream: str | None) -> None:
        self.tracker.restart(stream)
        if stream is None:
            self.model.streams.clear()
            self.highs.clear()
        else:
            self.model.streams.pop(stream, None)
            self.highs.pop(stream, None)

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "tracker"):
            return
        for stream in "abc":
            assert self.tracker.missing(stream) == self.model.missing(stream)
            assert self.tracker.remembered(stream) == self.model.remembered(stream)
            assert self.tracker.remembered(stream) <= self.tracker.memory
            assert self.tracker.highest(stream) == self.highs.get(stream)


TestTrackerMachine = TrackerMachine.TestCase
TestTrackerMachine.settings = settings(max_examples=200, stateful_step_count=40)


def test_the_first_seq_seen_is_not_a_gap() -> None:
    """A client that joins a broadcast at seq 100 has missed nothing it can know of."""
    tracker = SequenceTracker()
    assert tracker.observe("a", 100) == Seen(True, None, False, False)
    assert tracker.missing("a") == []


def test_a_jump_reports_the_gap_once_and_a_late_seq_fills_it() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe("a", s).gap for s in (1, 2, 5)] == [None, None, (3, 4)]
    assert tracker.missing("a") == [(3, 4)]
    assert tracker.observe("a", 3) == Seen(True, None, False, late=True)
    assert tracker.missing("a") == [(4, 4)]
    assert tracker.observe("a", 6).gap is None  # 4 is still missing, but not new
    assert tracker.observe("a", 3) == Seen(False, None, duplicate=True, late=False)


def test_a_seq_below_the_first_is_delivered_once_and_is_not_late() -> None:
    tracker = SequenceTracker()
    tracker.observe("a", 10)
    assert tracker.observe("a", 9) == Seen(True, None, False, False)
    assert tracker.observe("a", 9).duplicate
    assert tracker.missing("a") == []


def test_streams_are_independent() -> None:
    tracker = SequenceTracker()
    tracker.observe("a", 1)
    assert tracker.observe("b", 1).deliver
    assert tracker.observe("b", 3).gap == (2, 2)
    assert tracker.missing("a") == [] and tracker.missing("b") == [(2, 2)]


def test_restart_forgets_a_stream_so_a_new_connection_counts_from_one_again() -> None:
    tracker = SequenceTracker()
    for s in (1, 2, 3):
        tracker.observe("a", s)
    tracker.observe("b", 1)
    assert tracker.observe("a", 1).duplicate
    tracker.restart("a")
    assert tracker.observe("a", 1) == Seen(True, None, False, False)
    assert tracker.observe("b", 1).duplicate  # only "a" was forgotten
    tracker.restart()
    assert tracker.observe("b", 1).deliver
    tracker.restart("never seen")  # forgetting an unknown stream is fine


def test_a_seq_older_than_memory_is_not_delivered() -> None:
    tracker = SequenceTracker(memory=4)
    for s in (1, 2, 3, 4, 5, 6, 7, 8):
        tracker.observe("a", s)
    assert tracker.observe("a", 4) == Seen(False, None, False, False, too_old=True)
    assert tracker.observe("a", 5).duplicate  # 5..8 are remembered
    assert tracker.remembered("a") == 4


def test_a_huge_jump_is_one_gap_and_costs_no_memory() -> None:
    tracker = SequenceTracker(memory=4096)
    tracker.observe("a", 1)
    assert tracker.observe("a", 10**18).gap == (2, 10**18 - 1)
    assert tracker.remembered("a") == 1
    assert tracker.missing("a") == [(10**18 - 4095, 10**18 - 1)]  # the remembered part
    assert tracker.highest("a") == 10**18


def test_unknown_streams_have_nothing_missing_or_remembered() -> None:
    tracker = SequenceTracker()
    assert (tracker.missing("x"), tracker.remembered("x"), tracker.highest("x")) == ([], 0, None)


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        (0, "memory=0: must be an integer >= 1"),
        (-1, "memory=-1: must be an integer >= 1"),
        (1.5, "memory=1.5: must be an integer >= 1"),
        (True, "memory=True: must be an integer >= 1"),
    ],
)
def test_invalid_memory_raises_usage_error_naming_it(memory: object, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        SequenceTracker(memory)  # type: ignore[arg-type]
    assert message in str(caught.value)
