"""The drop-late policy: a message the server gets to more than its stream's
``max_lateness`` after its scheduled time is dropped (and counted), not sent late.

A pure function of the batch, the time now and the limits, so that what a server does
when it has fallen behind can be tested without a clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.core.model import Scenario
from simulator.core.timeline import Batch


@dataclass(frozen=True, slots=True)
class Limits:
    """Each stream's lateness limit in scenario ns, and the tightest of them."""

    per_stream: npt.NDArray[np.int64]
    tightest: int


def stream_limits_ns(scenario: Scenario, speed: float) -> Limits:
    """Each stream's ``max_lateness`` (its own, else the server's) in scenario ns at
    ``speed``: the limit is wall time, and scenario time runs ``speed`` times as fast."""
    server = scenario.server.max_lateness_ns
    limits: Sequence[int] = [
        server if s.max_lateness_ns is None else s.max_lateness_ns for s in scenario.streams
    ]
    scaled = [min(round(ns * speed), 2**62) for ns in limits]
    return Limits(np.array(scaled, dtype=np.int64), min(scaled, default=2**62))


def split_late(batch: Batch, now_ns: int, limits: Limits) -> tuple[Batch | None, Batch]:
    """``(late, on_time)``: the messages of ``batch`` (times in the same scenario ns as
    ``now_ns``) more than their stream's limit before ``now_ns``, and the others, each
    in timeline order. ``late`` is ``None`` when there are none (the usual case, found
    without looking at every message)."""
    if not len(batch) or now_ns - int(batch.t_ns[0]) <= limits.tightest:
        return None, batch  # even the oldest is within the tightest limit
    late = batch.t_ns < now_ns - limits.per_stream[batch.stream]
    if not late.any():
        return None, batch
    return batch.pick(late), batch.pick(~late)
