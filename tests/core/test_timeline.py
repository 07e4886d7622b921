"""Properties of the pure timeline: determinism, chunk invariance, independence, order."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.model import (
    At,
    Burst,
    Choice,
    Counter,
    Envelope,
    Every,
    ListOf,
    Normal,
    Numeric,
    Object,
    Poisson,
    RandInt,
    Scenario,
    Schedule,
    Stream,
    Template,
    UniformInterval,
    Uuid,
    Walk,
)
from simulator.core.timeline import Batch, Timeline

S = 1_000_000_000


def stream(name: str, schedule: Schedule, **fields: object) -> Stream:
    spec = Object(tuple(fields.items()))  # type: ignore[arg-type]
    return Stream(name, schedule, spec, name, Envelope())


def scenario(*streams: Stream, seed: int = 7) -> Scenario:
    return Scenario(name="t", seed=seed, streams=streams)


FIELDS = {
    "cpu": Normal(45, 12, Numeric(0, 100, 1)),
    "n": RandInt(0, 500),
    "level": Choice(("info", "warning"), (0.8, 0.2)),
    "price": Walk(80, 1.5, 0.1, None, Numeric(0, None, 2)),
    "id": Uuid(),
    "c": Counter(),
    "t": Template("tx_{c}_{seq}", ("c", "seq")),
    "items": ListOf(Object((("v", RandInt(0, 9)),)), 0, 4),
}

MIXED = scenario(
    stream("fixed", Schedule(Every(5 * S)), **FIELDS),
    stream("uniform", Schedule(UniformInterval(S, 3 * S)), **FIELDS),
    stream("poisson", Schedule(Poisson(2.0)), x=Normal(0, 1)),
    stream("burst", Schedule(Burst(3, 100_000_000, 10 * S)), x=RandInt(1, 6)),
    stream("at", Schedule(At((S, 2 * S, 2 * S), repeat_ns=7 * S)), x=Counter()),
)

schedules = st.one_of(
    st.integers(S // 100, 10 * S).map(lambda i: Schedule(Every(i))),
    st.tuples(st.integers(0, 5 * S), st.integers(S // 100, 5 * S)).map(
        lambda t: Schedule(UniformInterval(min(t), max(t)))
    ),
    st.floats(0.01, 1000).map(lambda r: Schedule(Poisson(r))),
    st.tuples(st.integers(1, 20), st.integers(0, S), st.integers(1, 100)).map(
        lambda t: Schedule(Burst(t[0], t[1], t[0] * t[1] + t[2] * S))
    ),
)


def read_all(timeline: Timeline, until: int, step: int) -> tuple[list[int], list[bytes]]:
    times: list[int] = []
    payloads: list[bytes] = []
    for t in range(step, until + step, step):
        batch = timeline.take_until(min(t, until))
        times.extend(batch.t_ns.tolist())
        payloads.extend(batch.payloads)
    return times, payloads


def test_same_seed_gives_identical_payloads_and_times() -> None:
    a = read_all(Timeline(MIXED), 120 * S, 7 * S)
    b = read_all(Timeline(MIXED), 120 * S, 7 * S)
    assert a == b
    assert len(a[1]) > 100


def test_different_seed_gives_different_payloads() -> None:
    a = read_all(Timeline(MIXED, seed=1), 60 * S, 60 * S)
    b = read_all(Timeline(MIXED, seed=2), 60 * S, 60 * S)
    assert a[1] != b[1]


@settings(max_examples=40, deadline=None)
@given(chunk=st.integers(1, 300), step=st.integers(S // 10, 40 * S), seed=st.integers(0, 2**63 - 1))
def test_chunk_size_and_read_pattern_never_change_output(chunk: int, step: int, seed: int) -> None:
    reference = read_all(Timeline(MIXED, seed=seed, chunk=512), 90 * S, 90 * S)
    assert read_all(Timeline(MIXED, seed=seed, chunk=chunk), 90 * S, step) == reference


@settings(max_examples=30, deadline=None)
@given(schedule=schedules, seed=st.integers(0, 1000))
def test_adding_a_stream_never_changes_another_streams_messages(
    schedule: Schedule, seed: int
) -> None:
    base = scenario(stream("a", Schedule(Poisson(3.0)), **FIELDS), seed=seed)
    extended = scenario(
        stream("b", schedule, x=Normal(0, 1)),
        stream("a", Schedule(Poisson(3.0)), **FIELDS),
        seed=seed,
    )
    only_a = Timeline(base).take_until(60 * S).payloads
    batch = Timeline(extended).take_until(60 * S)
    a_index = 1
    streams = batch.stream.tolist()
    assert [p for p, s in zip(batch.payloads, streams, strict=True) if s == a_index] == only_a


def test_editing_a_streams_fields_never_changes_its_times() -> None:
    one = scenario(stream("a", Schedule(Poisson(5.0)), x=Normal(0, 1)))
    two = scenario(stream("a", Schedule(Poisson(5.0)), y=Uuid(), z=RandInt(0, 3)))
    times_one = Timeline(one).take_until(100 * S).t_ns
    assert (times_one == Timeline(two).take_until(100 * S).t_ns).all()


def test_connections_get_distinct_timelines_and_each_is_reproducible() -> None:
    a0 = Timeline(MIXED, scope=0).take_until(60 * S).payloads
    a1 = Timeline(MIXED, scope=1).take_until(60 * S).payloads
    assert a0 != a1
    assert Timeline(MIXED, scope=1).take_until(60 * S).payloads == a1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_events_come_in_time_then_stream_then_seq_order(seed: int) -> None:
    batch = Timeline(MIXED, seed=seed).take_until(200 * S)
    keys = list(zip(batch.t_ns.tolist(), batch.stream.tolist(), batch.seq.tolist(), strict=True))
    assert keys == sorted(keys)
    for i in range(len(MIXED.streams)):
        seqs = batch.seq[batch.stream == i]
        assert (seqs == np.arange(1, len(seqs) + 1)).all()


@settings(max_examples=30, deadline=None)
@given(step=st.integers(S // 10, 5 * S), seed=st.integers(0, 2**32))
def test_small_batches_merge_streams_as_large_ones_do(step: int, seed: int) -> None:
    """A few messages from several streams are merged in plain Python, many with numpy:
    the same rows (time, stream, seq, payload) and the same dtypes either way."""

    def rows(batches: list[Batch]) -> list[tuple[int, int, int, bytes]]:
        return [
            row
            for b in batches
            for row in zip(
                b.t_ns.tolist(), b.stream.tolist(), b.seq.tolist(), b.payloads, strict=True
            )
        ]

    large = Timeline(MIXED, seed=seed).take_until(60 * S)
    assert len(large) > 32  # the numpy path
    timeline = Timeline(MIXED, seed=seed)
    small = [timeline.take_until(min(t, 60 * S)) for t in range(step, 60 * S + step, step)]
    assert rows(small) == rows([large])
    for b in small:
        assert (b.t_ns.dtype, b.stream.dtype, b.seq.dtype) == (np.int64, np.int16, np.int64)


def test_a_stop_inside_a_chunk_ends_the_stream_and_keeps_earlier_messages() -> None:
    base = stream("a", Schedule(Every(S)), x=Normal(0, 1))
    stopped = dataclasses.replace(base, schedule=Schedule(Every(S), stop_ns=10 * S))
    full = Timeline(scenario(base)).take_until(100 * S)
    cut = Timeline(scenario(stopped), chunk=64).take_until(100 * S)
    assert cut.t_ns.tolist() == [k * S for k in range(1, 10)]
    assert cut.payloads == full.payloads[:9]
    assert Timeline(scenario(stopped)).ended is False  # nothing read yet
