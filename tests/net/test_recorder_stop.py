"""A recorder stopped while a batch waits for its worker thread still writes the batch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import polars as pl

from simulator.net.log import EventLog
from simulator.net.recorder import FLUSH_EVERY_S, Recorder
from simulator.storage.schema import new_metadata
from simulator.testing.virtual_time import run


def test_stopping_while_a_batch_waits_for_the_thread_loses_no_row(tmp_path: Path) -> None:
    """The flush task is cancelled (the server stops) after it handed a batch to the
    worker thread but before the thread started it: close() must still write it.
    (Unshielded, the cancel cancelled the queued work item and its rows were lost.)"""
    out = tmp_path / "rec.parquet"
    gate = threading.Event()

    async def main() -> None:
        recorder = Recorder(out, new_metadata(sim_version="t", scenario="s", seed=1), EventLog())
        # Keep the one worker thread busy, so the next batch stays queued.
        recorder._executor.submit(gate.wait)
        flushing = asyncio.create_task(recorder.run())
        for i in range(10):
            recorder.sent(0, ["tick"], [b'{"n":%d}' % i])
        await asyncio.sleep(FLUSH_EVERY_S * 1.5)  # the batch is taken and queued
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
        gate.set()
        recorder.close()

    run(main())
    assert pl.read_parquet(out)["payload"].to_list() == [b'{"n":%d}' % i for i in range(10)]
