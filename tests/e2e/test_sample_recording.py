"""The sample in recordings/ is a valid recording that replays to the same bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import websockets

from simulator.net.replay import replay
from simulator.storage.analysis import inspect
from simulator.storage.reader import read_recording
from tests.e2e.conftest import async_test
from tests.e2e.test_run_cli import sim_serving

SAMPLE = Path(__file__).parents[2] / "recordings" / "energy-dashboard-sample.parquet"


def test_sample_has_every_dashboard_stream_and_a_clean_close() -> None:
    summary = inspect(SAMPLE)
    streams = {s.stream for s in summary.streams if s.stream is not None}
    assert streams == {
        "system_stats",
        "dashboard_stats",
        "energy_market",
        "notification",
        "transaction",
    }
    assert [c.close_code for c in summary.connections] == [1000]


@async_test(timeout=30)
async def test_sample_replays_to_a_client_sending_the_recorded_messages() -> None:
    """Sending the recorded client messages in order yields the recorded server messages."""
    frame = read_recording(SAMPLE).frame.filter(pl.col("kind") == "text")
    client = frame.filter(pl.col("sender") == "client")["payload"].to_list()
    server = frame.filter(pl.col("sender") == "server")["payload"].to_list()
    got: list[bytes] = []
    async with replay(SAMPLE, port=0, speed=None) as replayer:  # noqa: SIM117 (url needed)
        async with websockets.connect(replayer.url, max_queue=None) as ws:
            for message in client:
                await ws.send(message.decode())
            while len(got) < len(server):
                got.append((await asyncio.wait_for(ws.recv(), 5)).encode())  # type: ignore[union-attr]
    assert got == server


@async_test(timeout=60)
async def test_sim_replay_free_run_feeds_a_client_that_sends_nothing() -> None:
    """`sim replay SAMPLE --free-run`, as a real process: a client that only listens
    (a dashboard pinging with other ids, say) gets every recorded server message."""
    frame = read_recording(SAMPLE).frame.filter(pl.col("kind") == "text")
    server = frame.filter(pl.col("sender") == "server")["payload"].to_list()
    args = ("replay", SAMPLE, "--port", "0", "--speed", "max", "--free-run", "--quiet")
    async with sim_serving(*args) as replayer:  # noqa: SIM117 (url needed)
        async with websockets.connect(replayer.url, max_queue=None) as ws:
            got = [(await asyncio.wait_for(ws.recv(), 5)) for _ in server]
    assert [m.encode() if isinstance(m, str) else m for m in got] == server
