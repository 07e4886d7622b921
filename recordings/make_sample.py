"""Re-make recordings/energy-dashboard-sample.parquet: `python recordings/make_sample.py`.

A real session of scenarios/energy-dashboard.toml served by `sim run` at 100x speed (two
minutes of scenario time, a seed and an epoch fixed): one client pings, subscribes to two
streams, later to everything, and closes. Used by the docs and the tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import websockets

from simulator.net.server import serve
from simulator.scenario import load_scenario

HERE = Path(__file__).parent
OUT = HERE / "energy-dashboard-sample.parquet"
EPOCH_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


async def read_for(ws: websockets.ClientConnection, seconds: float) -> None:
    """Read (and drop) what arrives for ``seconds``: a client that stops reading would
    hold up its own closing handshake."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in ws:
                pass
    except TimeoutError:
        pass


async def session() -> None:
    scenario = load_scenario(HERE.parent / "scenarios" / "energy-dashboard.toml")
    OUT.unlink(missing_ok=True)
    async with serve(scenario, port=0, speed=100, epoch_ns=EPOCH_NS, record=OUT) as server:
        async with websockets.connect(server.url) as ws:
            await ws.send('{"type": "ping", "id": 1}')
            await ws.send('{"type": "subscribe", "streams": ["energy_market", "transaction"]}')
            await read_for(ws, 0.6)
            await ws.send('{"type": "subscribe", "streams": "*"}')
            await read_for(ws, 0.6)
            await ws.close()
        while server.clients:
            await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(session())
    print(f"wrote {OUT}")
