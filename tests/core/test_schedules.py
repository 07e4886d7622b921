"""Properties of schedule cursors: exact times, gap bounds, rates, stops and order.

Cursors are driven directly (no timeline) with the draws of a fixed seed. Rate tests
use fixed seeds over tens of thousands of messages, so they are deterministic; their
tolerances are several standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simulator.core.draws import Draws
from simulator.core.model import At, Burst, Every, Pattern, Poisson, Schedule, UniformInterval
from simulator.core.rates import mean_rate_per_s
from simulator.core.schedules import ScheduleCursor

MS = 1_000_000
S = 1_000_000_000


def cursor(schedule: Schedule, seed: int = 0) -> ScheduleCursor:
    return ScheduleCursor(schedule, Draws(seed, "s"))


def read(schedule: Schedule, chunks: list[int], seed: int = 0) -> list[int]:
    """The times of a fresh cursor, read ``chunks`` at a time."""
    c = cursor(schedule, seed)
    return [t for size in chunks for t in c.next(size).tolist()]


def read_to_end(c: ScheduleCursor, chunk: int, limit: int = 100_000) -> list[int]:
    """Every time up to the end of the stream (which must come within ``limit``)."""
    out: list[int] = []
    while not c.ended:
        times = c.next(chunk).tolist()
        out.extend(times)
        assert len(out) <= limit, "the stream did not end"
    return out


seeds = st.integers(0, 2**32)
chunk_lists = st.lists(st.integers(0, 64), min_size=1, max_size=8)
intervals = st.integers(MS, 10 * S)  # at least 1 ms, so runs stay small

patterns: st.SearchStrategy[Pattern] = st.one_of(
    st.builds(Every, intervals),
    st.tuples(intervals, intervals).map(lambda t: UniformInterval(min(t), max(t))),
    st.floats(0.1, 1000).map(Poisson),
    st.tuples(st.integers(1, 20), st.integers(0, 100 * MS), st.integers(MS, 10 * S)).map(
        lambda t: Burst(t[0], t[1], (t[0] - 1) * t[1] + t[2])  # bursts never overlap
    ),
    st.lists(st.integers(0, 10 * S), min_size=1, max_size=10).flatmap(
        lambda offs: st.builds(
            At,
            st.just(tuple(sorted(offs))),
            st.none() | st.integers(max(offs) + MS, max(offs) + 10 * S),
        )
    ),
)

schedules = st.builds(
    Schedule,
    patterns,
    start_ns=st.integers(0, 100 * S),
    stop_ns=st.none() | st.integers(0, 200 * S),
    first_ns=st.none() | st.integers(0, 10 * S),
)


# ----------------------------------------------------------------------------- every


@settings(max_examples=100, deadline=None)
@given(
    interval=intervals,
    start=st.integers(0, 10**12),
    first=st.none() | st.integers(0, 10 * S),
    chunks=chunk_lists,
)
def test_every_gives_exact_times_from_start_plus_first(
    interval: int, start: int, first: int | None, chunks: list[int]
) -> None:
    times = read(Schedule(Every(interval), start_ns=start, first_ns=first), chunks)
    offset = interval if first is None else first
    assert times == [start + offset + k * interval for k in range(sum(chunks))]


def test_every_first_message_comes_one_interval_after_start() -> None:
    assert read(Schedule(Every(250 * MS), start_ns=S), [4]) == [
        1250 * MS,
        1500 * MS,
        1750 * MS,
        2 * S,
    ]


def test_every_with_first_zero_sends_at_start() -> None:
    assert read(Schedule(Every(S), start_ns=5 * S, first_ns=0), [3]) == [5 * S, 6 * S, 7 * S]


# ----------------------------------------------------------------------------- stop


@settings(max_examples=150, deadline=None)
@given(schedule=schedules, run=st.integers(0, S), chunk=st.integers(1, 64), seed=seeds)
@example(schedule=Schedule(Every(S)), run=5 * S, chunk=64, seed=0)  # stop lands on a message
def test_stop_excludes_times_at_or_after_stop_then_ends(
    schedule: Schedule, run: int, chunk: int, seed: int
) -> None:
    stop = schedule.start_ns + run  # at most a second: 20k messages at the fastest
    schedule = Schedule(schedule.pattern, schedule.start_ns, stop, schedule.first_ns)
    times = read_to_end(cursor(schedule, seed), chunk)
    assert all(t < stop for t in times)
    # The stop only cuts: the times before it are the unstopped stream's.
    unstopped = Schedule(schedule.pattern, schedule.start_ns, None, schedule.first_ns)
    reference = read(unstopped, [len(times) + 1], seed)
    assert times == reference[: len(times)]
    assert len(reference) == len(times) or reference[len(times)] >= stop


def test_stop_inside_a_chunk_ends_the_cursor_at_once() -> None:
    c = cursor(Schedule(Every(S), stop_ns=3 * S))
    assert c.next(10).tolist() == [S, 2 * S]
    assert c.ended
    assert c.next(10).tolist() == []


def test_stop_exactly_after_a_chunk_ends_on_the_next_read() -> None:
    c = cursor(Schedule(Every(S), stop_ns=3 * S))
    assert c.next(2).tolist() == [S, 2 * S]
    assert not c.ended  # nothing told it yet that the next message is past the stop
    assert c.next(2).tolist() == []
    assert c.ended


def test_stop_at_or_before_the_first_message_sends_nothing() -> None:
    c = cursor(Schedule(Every(S), first_ns=S, stop_ns=S))
    assert c.next(5).tolist() == []
    assert c.ended


# ----------------------------------------------------------------------------- uniform


@settings(max_examples=100, deadline=None)
@given(
    bounds=st.tuples(st.integers(0, 10 * S), st.integers(0, 10 * S)),
    start=st.integers(0, 100 * S),
    chunks=chunk_lists,
    seed=seeds,
)
@example(bounds=(5 * MS, 5 * MS), start=0, chunks=[10], seed=0)  # a fixed gap
def test_uniform_interval_gaps_are_within_min_max(
    bounds: tuple[int, int], start: int, chunks: list[int], seed: int
) -> None:
    lo, hi = sorted(bounds)
    times = read(Schedule(UniformInterval(lo, hi), start_ns=start), chunks, seed)
    gaps = np.diff([start, *times])
    assert ((gaps >= lo) & (gaps <= hi)).all()


def test_uniform_interval_gaps_reach_both_ends() -> None:
    times = read(Schedule(UniformInterval(3, 7)), [5000], seed=1)
    assert set(np.diff([0, *times]).tolist()) == {3, 4, 5, 6, 7}


def test_uniform_interval_mean_rate_is_two_over_min_plus_max() -> None:
    n = 50_000
    times = read(Schedule(UniformInterval(MS, 9 * MS)), [n], seed=2)
    rate = n / (times[-1] / S)
    # Gap std is (9-1)/sqrt(12) ms ~ 2.3 ms on a 5 ms mean: 0.2% standard error over 50k.
    assert rate == pytest.approx(2 * S / (MS + 9 * MS), rel=0.01)


# ----------------------------------------------------------------------------- poisson


@pytest.mark.parametrize("rate", [0.5, 20.0, 5000.0])
def test_poisson_rate_matches_the_declared_rate(rate: float) -> None:
    n = 50_000
    times = read(Schedule(Poisson(rate)), [n], seed=3)
    gaps = np.diff([0, *times])
    # Exponential gaps: the mean's standard error is 1/sqrt(n) = 0.45%.
    assert n / (times[-1] / S) == pytest.approx(rate, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # coefficient of variation


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(0.1, 1000), first=st.integers(0, 10 * S), chunks=chunk_lists, seed=seeds)
def test_random_patterns_pin_the_first_message_at_first_ns(
    rate: float, first: int, chunks: list[int], seed: int
) -> None:
    times = read(Schedule(Poisson(rate), start_ns=S, first_ns=first), chunks, seed)
    if times:
        assert times[0] == S + first
        unpinned = read(Schedule(Poisson(rate), start_ns=S), chunks, seed)
        # The first gap is spent, so the later gaps are the unpinned stream's gaps.
        assert np.diff(times).tolist() == np.diff(unpinned).tolist()


# ----------------------------------------------------------------------------- burst


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(1, 20),
    spacing=st.integers(0, 100 * MS),
    slack=st.integers(1, 10 * S),
    start=st.integers(0, 100 * S),
    first=st.none() | st.integers(0, 10 * S),
    groups=st.integers(1, 10),
)
def test_burst_sends_groups_of_count_spacing_apart_every_period(
    count: int, spacing: int, slack: int, start: int, first: int | None, groups: int
) -> None:
    every = (count - 1) * spacing + slack
    schedule = Schedule(Burst(count, spacing, every), start_ns=start, first_ns=first)
    times = np.asarray(read(schedule, [count * groups])).reshape(groups, count)
    offset = every if first is None else first
    assert (times[:, 0] == start + offset + every * np.arange(groups)).all()
    assert (np.diff(times, axis=1) == spacing).all()


# ----------------------------------------------------------------------------- at


@settings(max_examples=100, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 10 * S), min_size=1, max_size=10).map(sorted),
    extra=st.integers(1, 10 * S),
    start=st.integers(0, 100 * S),
    cycles=st.integers(1, 5),
    chunks=chunk_lists,
)
def test_at_repeats_its_offsets_every_period(
    offsets: list[int], extra: int, start: int, cycles: int, chunks: list[int]
) -> None:
    repeat = offsets[-1] + extra
    times = read(Schedule(At(tuple(offsets), repeat), start_ns=start), [*chunks, 64])
    count = len(offsets)
    assert times == [start + (k // count) * repeat + offsets[k % count] for k in range(len(times))]


@settings(max_examples=100, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 10 * S), min_size=1, max_size=20).map(sorted),
    start=st.integers(0, 100 * S),
    chunk=st.integers(1, 30),
)
def test_at_without_repeat_sends_each_offset_once_then_ends(
    offsets: list[int], start: int, chunk: int
) -> None:
    c = cursor(Schedule(At(tuple(offsets)), start_ns=start))
    assert read_to_end(c, chunk, limit=len(offsets)) == [start + o for o in offsets]
    assert c.next(5).tolist() == []


def test_at_without_repeat_ends_as_soon_as_the_last_offset_is_read() -> None:
    c = cursor(Schedule(At((S, 2 * S, 2 * S))))
    assert c.next(2).tolist() == [S, 2 * S]
    assert not c.ended
    assert c.next(1).tolist() == [2 * S]
    assert c.ended


def test_at_offsets_ignore_first_ns() -> None:
    # The schedule's docstring: "At offsets are taken from start_ns as they are".
    assert read(Schedule(At((0, S)), start_ns=S, first_ns=5 * S), [5]) == [S, 2 * S]


# ----------------------------------------------------------------------------- all patterns


@settings(max_examples=200, deadline=None)
@given(schedule=schedules, chunks=chunk_lists, seed=seeds)
def test_times_are_non_decreasing_for_every_pattern(
    schedule: Schedule, chunks: list[int], seed: int
) -> None:
    times = read(schedule, chunks, seed)
    assert times == sorted(times)
    assert all(t >= schedule.start_ns for t in times)


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, chunks=chunk_lists, seed=seeds)
def test_a_cursor_never_returns_more_than_asked(
    schedule: Schedule, chunks: list[int], seed: int
) -> None:
    c = cursor(schedule, seed)
    for size in chunks:
        got = len(c.next(size))
        assert got <= size
        assert got == size or c.ended  # short reads only at the end


RATE_CASES = [
    Schedule(Every(7 * MS)),
    Schedule(UniformInterval(MS, 9 * MS)),
    Schedule(Poisson(200.0)),
    Schedule(Burst(5, MS, 50 * MS)),
    Schedule(At((MS, 4 * MS, 4 * MS, 9 * MS), repeat_ns=20 * MS)),
]


@pytest.mark.parametrize("schedule", RATE_CASES, ids=lambda s: type(s.pattern).__name__)
def test_mean_rate_per_s_agrees_with_the_empirical_rate(schedule: Schedule) -> None:
    horizon = 300 * S  # 10k to 60k messages
    c = cursor(schedule, seed=4)
    times: list[int] = []
    while not times or times[-1] < horizon:
        times.extend(c.next(4096).tolist())
    sent = sum(t < horizon for t in times)
    assert sent / (horizon / S) == pytest.approx(mean_rate_per_s(schedule), rel=0.02)


def test_mean_rate_per_s_spreads_a_one_shot_at_over_the_duration() -> None:
    schedule = Schedule(At((MS, 4 * MS, 9 * MS)))
    assert mean_rate_per_s(schedule, duration_ns=10 * MS) == pytest.approx(300.0)
    assert mean_rate_per_s(schedule) == 0.0
