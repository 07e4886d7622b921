"""`sim learn` of what `sim run --speed N --record` wrote learns the scenario's times."""

from __future__ import annotations

import asyncio
from pathlib import Path

import websockets

from simulator.core.rates import mean_rate_per_s
from simulator.net.server import serve
from simulator.scenario import parse_scenario
from simulator.storage.learn import learn
from tests.e2e.conftest import async_test, scenario

TICK = """
[scenario]
name = "tick"
seed = 1

[[stream]]
name = "a"
every = "1s"
[stream.fields]
v = { dist = "randint", min = 1, max = 9 }
"""


@async_test(timeout=30)
async def test_a_run_recorded_at_speed_20_is_learned_at_its_scenario_rate(tmp_path: Path) -> None:
    """At --speed 20 a 1 s stream is sent every 50 ms of wall time; what is learned from
    the recording sends once a second again (the reviewer's case learned 20 a second)."""
    out = tmp_path / "run.parquet"
    async with (
        serve(scenario(TICK), port=0, speed=20, record=out) as server,
        websockets.connect(server.url) as ws,
    ):
        for _ in range(16):
            await asyncio.wait_for(ws.recv(), 5)
    learned = parse_scenario(learn(out).toml("learned"))
    (stream,) = learned.streams
    assert abs(mean_rate_per_s(stream.schedule) - 1.0) < 0.05
