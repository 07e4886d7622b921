"""The drop-late policy (`simulator.core.lateness`): which messages a server that has
fallen behind drops instead of sending late."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.lateness import Limits, split_late, stream_limits_ns
from simulator.core.model import NEVER_LATE_NS
from simulator.core.timeline import Batch
from simulator.scenario import parse_scenario


@st.composite
def batches(draw: st.DrawFn) -> tuple[Batch, int, np.ndarray]:
    """A batch of messages of up to three streams in time order, a time now, and a
    lateness limit per stream."""
    times = sorted(draw(st.lists(st.integers(0, 10_000), max_size=40)))
    streams = draw(st.lists(st.integers(0, 2), min_size=len(times), max_size=len(times)))
    batch = Batch(
        np.array(times, np.int64),
        np.array(streams, np.int16),
        np.arange(1, len(times) + 1, dtype=np.int64),
        [f"m{i}".encode() for i in range(len(times))],
    )
    now = draw(st.integers(0, 12_000))
    limits = np.array(draw(st.lists(st.integers(1, 5_000), min_size=3, max_size=3)), np.int64)
    return batch, now, limits


@given(batches())
def test_split_late_parts_the_batch_by_each_streams_limit_keeping_order(
    case: tuple[Batch, int, np.ndarray],
) -> None:
    batch, now, limits = case
    late, on_time = split_late(batch, now, Limits(limits, int(limits.min())))
    late_payloads = [] if late is None else late.payloads
    expected_late = [
        p
        for p, t, s in zip(batch.payloads, batch.t_ns.tolist(), batch.stream.tolist(), strict=True)
        if t < now - limits[s]
    ]
    assert late_payloads == expected_late
    assert sorted(late_payloads + on_time.payloads, key=batch.payloads.index) == batch.payloads
    assert on_time.payloads == [p for p in batch.payloads if p not in expected_late]
    assert list(on_time.seq) == sorted(on_time.seq)


def test_limits_are_wall_time_so_scenario_time_scales_them_with_speed() -> None:
    scenario = parse_scenario(
        '[scenario]\nname = "t"\n[server]\nmax_lateness = "100ms"\n'
        '[[stream]]\nname = "a"\nevery = "1s"\n'
        '[[stream]]\nname = "b"\nevery = "1s"\nmax_lateness = "off"\n'
        '[[stream]]\nname = "c"\nevery = "1s"\nmax_lateness = "2s"\n',
        "x.toml",
    )
    at_1x = stream_limits_ns(scenario, 1.0)
    assert (at_1x.per_stream.tolist(), at_1x.tightest) == ([10**8, NEVER_LATE_NS, 2 * 10**9], 10**8)
    assert stream_limits_ns(scenario, 10.0).per_stream.tolist() == [10**9, 2**62, 2 * 10**10]
