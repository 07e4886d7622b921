"""Faults whose effect is a matter of seconds (handshake delays, throttles), on the
virtual clock over in-memory transports: exact where real sockets could only give a
band, and in milliseconds where they took seconds.

The same faults over real sockets are in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from simulator.net.server import SimServer, serve
from simulator.testing.virtual_time import run
from tests.e2e.conftest import EPOCH_NS, scenario
from tests.e2e.test_faults import fault, feed, injected
from tests.net.memory_client import Inbox, memory_client

PAD = "x" * 1000
# About 1.08 kB a frame, 100 frames a second: ~108 kB/s.
BLOBS = f"""\
[scenario]
name = "throttle"
[[stream]]
name = "blob"
every = "10ms"
[stream.fields]
pad = "{PAD}"
"""
FRAME_BYTES = len(
    orjson.dumps(
        {"type": "blob", "seq": 100, "timestamp": "2026-01-01T00:00:01.000Z", "data": {"pad": PAD}}
    )
)


def rate(inbox: Inbox, server: SimServer, start_s: float, end_s: float) -> float:
    """Bytes per second received between two scenario times (at speed 1)."""
    origin = server.clock.start_at
    total = sum(len(m) for t, m in inbox.messages if start_s <= (t - origin) < end_s)
    return total / (end_s - start_s)


def test_reject_with_a_delay_longer_than_10_s_of_wall_time_still_lets_the_client_in() -> None:
    """``delay = "21s"`` at speed 2 holds the handshake exactly 10.5 s, past the default
    10 s opening timeout; the docs say: hold it this long, then go on."""

    async def main() -> tuple[float, int | None]:
        sc = feed(fault("slowgate", "reject", delay="21s", limit=1))
        async with serve(sc, speed=2, epoch_ns=EPOCH_NS, in_memory=True) as server:
            loop = asyncio.get_running_loop()
            began = loop.time()
            ws, _ = await memory_client(server, open_timeout=30)
            held = loop.time() - began
            await ws.close()
            return held, ws.index

    held, _ = run(main())
    assert held == pytest.approx(10.5, abs=1e-6)


def test_throttled_connection_gets_its_byte_rate_while_another_gets_the_full_feed() -> None:
    """Capped at 10 kB/s, connection 0 receives 10 kB/s (within a frame) from 0.5 s to
    2.5 s; connection 1, uncapped, gets the whole ~100 frames/s feed."""

    async def main() -> tuple[float, float, SimServer]:
        sc = scenario(BLOBS + fault("narrow", "throttle", bytes_per_s=10_000, connections=[0]))
        async with serve(sc, speed=1, epoch_ns=EPOCH_NS, in_memory=True) as server:
            ws0, capped = await memory_client(server)
            ws1, full = await memory_client(server)
            await asyncio.sleep(2.6)
            await ws0.close()
            await ws1.close()
        return rate(capped, server, 0.5, 2.5), rate(full, server, 0.5, 2.5), server

    capped, full, server = run(main())
    assert capped == pytest.approx(10_000, abs=FRAME_BYTES / 2)
    assert full == pytest.approx(100 * FRAME_BYTES, rel=0.02)
    [record] = injected(server, "throttle")
    assert record.conn == 0 and record.detail["bytes_per_s"] == 10_000


def test_throttle_stays_in_force_after_an_overlapping_one_ends() -> None:
    """A 10 kB/s cap for good and a 50 kB/s one from 0.5 s to 1 s: from 1.5 s to 3 s the
    rate is back to 10 kB/s (the shorter one ending does not lift the other)."""

    async def main() -> tuple[float, SimServer]:
        sc = scenario(
            BLOBS
            + fault("cap", "throttle", bytes_per_s=10_000)
            + fault("spike", "throttle", bytes_per_s=50_000, window={"start": "500ms", "end": "1s"})
        )
        async with serve(sc, speed=1, epoch_ns=EPOCH_NS, in_memory=True) as server:
            ws, got = await memory_client(server)
            await asyncio.sleep(3.1)
            await ws.close()
        return rate(got, server, 1.5, 3.0), server

    got, server = run(main())
    assert [i.fault for i in injected(server, "throttle", 0)] == ["cap", "spike"]
    assert got == pytest.approx(10_000, abs=FRAME_BYTES / 1.5)
