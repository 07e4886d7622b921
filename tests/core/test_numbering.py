"""Connection numbering across workers (``sim run --workers``): worker w of n hands out
w, w+n, w+2n, ..., and the handshake faults see those indices."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.faults import FaultPlan, Handshakes
from simulator.core.model import Fault, FaultSchedule, FaultTarget, FaultWindow, Reject
from simulator.core.numbering import Numbering

S = 1_000_000_000


@given(st.integers(1, 64), st.integers(0, 500))
def test_the_workers_hand_out_every_index_exactly_once(workers: int, per_worker: int) -> None:
    handed = [Numbering(w, workers).index(k) for w in range(workers) for k in range(per_worker)]
    assert sorted(handed) == list(range(workers * per_worker))
    assert all(Numbering(0, workers).worker_of(i) == i % workers for i in handed)


def test_one_server_alone_numbers_0_1_2() -> None:
    assert [Numbering().index(k) for k in range(4)] == [0, 1, 2, 3]


@pytest.mark.parametrize(("worker", "workers"), [(2, 2), (-1, 2), (0, 0)])
def test_a_worker_outside_its_count_is_refused(worker: int, workers: int) -> None:
    with pytest.raises(ValueError, match="worker"):
        Numbering(worker, workers)


def _reject(name: str, **target: object) -> Fault:
    return Fault(
        name,
        Reject(status=429),
        FaultSchedule(FaultWindow(0, 100 * S), limit=target.pop("limit", None)),  # type: ignore[arg-type]
        FaultTarget(**target),  # type: ignore[arg-type]
    )


def test_a_workers_handshake_attempts_are_its_connection_indices() -> None:
    gate = Handshakes(FaultPlan((), 1), Numbering(1, 3))
    assert [gate.decide(0).attempt for _ in range(4)] == [1, 4, 7, 10]


def test_after_connections_compares_the_index_across_workers() -> None:
    """Worker 1 of 2 hands out 1, 3, 5, 7: `after_connections = 4` spares 1 and 3 only,
    as one server would spare connections 0 to 3."""
    plan = FaultPlan((_reject("busy", after_connections=4),), 1)
    gate = Handshakes(plan, Numbering(1, 2))
    answers = [gate.decide(S) for _ in range(4)]
    assert [(a.attempt, a.status) for a in answers] == [(1, None), (3, None), (5, 429), (7, 429)]


def test_limit_counts_each_workers_refusals() -> None:
    """`limit` is counted by each worker: two workers refuse up to twice as many."""
    plan = FaultPlan((_reject("busy", limit=2),), 1)
    refused = 0
    for worker in range(2):
        gate = Handshakes(plan, Numbering(worker, 2))
        refused += sum(gate.decide(S).status == 429 for _ in range(5))
    assert refused == 4
