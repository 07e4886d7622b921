"""The server's lateness samples: the newest ``capacity`` of them, in one array."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.net.stats import Counters, LatenessSamples

samples_ns = st.lists(st.integers(-(2**62), 2**62), max_size=60)


@given(st.integers(1, 20), samples_ns, st.integers(0, 30) | st.none())
def test_the_newest_samples_are_the_last_appended_oldest_first(
    capacity: int, appended: list[int], n: int | None
) -> None:
    samples = LatenessSamples(capacity)
    for ns in appended:
        samples.append(ns)
    held = appended[-capacity:]
    assert len(samples) == len(held)
    expected = held if n is None else held[len(held) - min(n, len(held)) :]
    assert samples.newest(n).tolist() == expected


@given(st.integers(1, 20), samples_ns, samples_ns)
def test_after_clear_only_what_comes_next_is_held(
    capacity: int, before: list[int], after: list[int]
) -> None:
    samples = LatenessSamples(capacity)
    for ns in before:
        samples.append(ns)
    samples.clear()
    for ns in after:
        samples.append(ns)
    assert samples.newest().tolist() == after[-capacity:]


def test_percentiles_are_of_the_newest_samples_and_none_without_any() -> None:
    counters = Counters()
    assert counters.lateness_ms() == (None, None)
    for ms in range(1, 101):
        counters.lateness_ns.append(ms * 1_000_000)
    p50, p99 = counters.lateness_ms()
    assert p50 == 50.5 and p99 is not None and 99 < p99 < 100
    assert counters.lateness_ms(newest=1) == (100.0, 100.0)
