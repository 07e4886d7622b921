"""The wire's frame budget after a stall: what a stall held back comes in at once and
is allowed for one window, the one the first read after the stall begins; an allowance
first used later is gone."""

from __future__ import annotations

import asyncio

import pytest

from simulator.net.wire import Connection, WireConfig


def floods(reads: list[tuple[float, int]], held_s: float = 1.5, limit: int = 12) -> list[bool]:
    """Whether each ``(seconds after the stall ended, frames)`` read is taken for a flood."""

    async def main() -> list[bool]:
        conn = Connection(None, None, WireConfig(max_frames_per_s=limit))  # type: ignore[arg-type]
        conn.lost = True  # no transport to pause: the holds' bookkeeping alone
        conn.hold_reading("stall")
        conn._held_at -= held_s  # a stall of held_s,
        assert conn.release_reading("stall", forgive=True) >= held_s  # ended now
        end = asyncio.get_running_loop().time()
        out = []
        for after, frames in reads:
            conn._read_at = end + after
            out.append(conn._over_frame_budget(frames))
        return out

    return asyncio.run(main())


def test_the_allowance_lasts_the_whole_window_the_first_read_after_the_stall_began() -> None:
    """The window runs from the first read (2 ms after the stall ended) for a second: a
    read at 1.001 s is still in it (the allowance had expired at 1 s, and a steady
    client was closed with 1008)."""
    assert floods([(0.002, 15), (0.5, 1), (0.9, 1), (1.001, 1)]) == [False] * 4


def test_an_allowance_first_used_after_a_second_is_gone() -> None:
    assert floods([(2.0, 15)]) == [True]


def test_only_a_hold_released_with_forgive_gives_an_allowance() -> None:
    """A stall's hold is forgiven; the proxy's backpressure is not (a client sending
    faster than its upstream drains is what the limit is for)."""

    async def allowance(forgive: bool) -> float:
        conn = Connection(None, None, WireConfig(max_frames_per_s=12))  # type: ignore[arg-type]
        conn.lost = True  # no transport to pause: the holds' bookkeeping alone
        conn.hold_reading("held")
        conn._held_at -= 1.5  # held for 1.5 s
        conn.release_reading("held", forgive=forgive)
        return conn._frame_credit

    assert asyncio.run(allowance(forgive=True)) == pytest.approx(1.5 * 12, abs=0.1)
    assert asyncio.run(allowance(forgive=False)) == 0.0
