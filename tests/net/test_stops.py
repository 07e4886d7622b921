"""Every server kind stops within its close timeout, however its peer behaves: a client
that reads nothing (live, replay, proxy) or a server that reads nothing (capture) never
holds a stop.

These run on the virtual clock over in-memory transports: "within the close timeout"
is a statement about virtual time, exact and the same on every run, and a hang shows
as ``RealTimeExceeded`` rather than as a slow test.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
from pathlib import Path

import pytest

from simulator.core.model import Scenario
from simulator.errors import ConnectError
from simulator.net import capture as capture_module
from simulator.net import proxy as proxy_module
from simulator.net import replay as replay_module
from simulator.net import server as server_module
from simulator.net.capture import capture
from simulator.net.proxy import record_proxy
from simulator.net.replay import replay
from simulator.net.server import serve
from simulator.net.wire import Connection, Handler
from simulator.net.wire_client import ClientConnection, OpenTransport, connect
from simulator.scenario import parse_scenario
from simulator.storage.generate import Plan, generate
from simulator.testing.virtual_time import run

#: A message every millisecond: what a client that reads nothing leaves unread piles up
#: in the server's buffer, ahead of any close frame.
FLOOD = """
[scenario]
name = "flood"
seed = 1

[[stream]]
name = "blob"
every = "1ms"
[stream.fields]
pad = { choice = ["PAD"] }
"""

#: A counter every 100 ms, and the faults appended to it.
TICKS = """
[scenario]
name = "ticks"
seed = 1

[[stream]]
name = "tick"
every = "100ms"
[stream.fields]
n = { dist = "counter" }
"""

#: Half-open from the start: the server reads nothing and sends nothing for an hour.
STALLED = (
    TICKS
    + """
[[fault]]
kind = "stall"
at = "0s"
duration = "1h"
"""
)


def scenario(text: str) -> Scenario:
    return parse_scenario(text, "test.toml")


class _Deaf(Handler):
    """A client that takes in nothing: its transport stops reading once it is open."""

    def opened(self, conn: Connection) -> None:
        conn.transport.pause_reading()


async def deaf_client(open_transport: OpenTransport, url: str = "ws://memory/") -> ClientConnection:
    return await connect(url, _Deaf(), open_transport=open_transport)


async def stop_time(stop: asyncio.Future[None] | asyncio.Task[None]) -> float:
    """Virtual seconds ``stop`` takes."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    await stop
    return loop.time() - began


def test_live_server_stops_within_its_close_timeout_with_a_client_that_reads_nothing() -> None:
    async def main() -> float:
        block = serve(scenario(FLOOD), in_memory=True)
        server = await block.__aenter__()
        ws = await deaf_client(server.open_transport)
        await asyncio.sleep(1.0)  # a second of the feed backs up
        assert server.stats().frames_sent > 0
        took = await stop_time(asyncio.ensure_future(block.__aexit__(None, None, None)))
        assert ws.transport.is_closing()
        return took

    # Exactly the close timeout: the close frame never got through, and nothing waited longer.
    assert run(main()) == pytest.approx(server_module.CLOSE_TIMEOUT_S, abs=0.01)


def test_replay_stops_within_its_close_timeout_with_a_client_that_reads_nothing(
    tmp_path: Path,
) -> None:
    # A recording of the flood, rendered offline: replayed as fast as possible and in a
    # loop, it fills the deaf client's buffers.
    flood = tmp_path / "flood.parquet"
    generate(Plan.of(scenario(FLOOD), duration_ns=2 * 10**9), flood)

    async def main() -> float:
        block = replay(flood, speed=None, loop=True, free_run=True, in_memory=True)
        server = await block.__aenter__()
        await deaf_client(server.open_transport)
        await asyncio.sleep(1.0)  # the pump is stuck waiting for room
        return await stop_time(asyncio.ensure_future(block.__aexit__(None, None, None)))

    assert run(main()) == pytest.approx(replay_module.CLOSE_TIMEOUT_S, abs=0.01)


def test_proxy_stops_within_its_close_timeout_with_a_client_that_reads_nothing(
    tmp_path: Path,
) -> None:
    async def main() -> float:
        async with serve(scenario(FLOOD), in_memory=True) as upstream:
            block = record_proxy(
                "ws://upstream.test/",
                tmp_path / "stuck.parquet",
                in_memory=True,
                open_upstream=upstream.open_transport,
            )
            proxy = await block.__aenter__()
            await deaf_client(proxy.open_transport)
            await asyncio.sleep(1.0)  # the relayed feed backs up toward the client
            assert proxy.connections == 1
            took = await stop_time(asyncio.ensure_future(block.__aexit__(None, None, None)))
            assert proxy.connections == 0
            return took

    # The client leg's close timeout; the upstream's close runs meanwhile.
    assert run(main()) == pytest.approx(proxy_module.CLOSE_TIMEOUT_S, abs=0.01)


def test_capture_stops_within_its_close_timeout_with_a_server_that_reads_nothing(
    tmp_path: Path,
) -> None:
    async def main() -> tuple[float, int | None]:
        async with serve(scenario(STALLED), in_memory=True) as server:
            loop = asyncio.get_running_loop()
            began = loop.time()
            captured = await capture(
                "ws://feed.test/",
                tmp_path / "capture.parquet",
                duration_s=5.0,
                open_transport=server.open_transport,
            )
            return loop.time() - began - 5.0, captured.close_code

    took, code = run(main())
    # The server never answered the close: the socket was dropped after the close timeout.
    assert took == pytest.approx(capture_module.CLOSE_TIMEOUT_S, abs=0.01)
    assert code == 1000  # the close the capture sent


def test_no_module_of_sim_uses_websockets_asyncio_or_subclasses_websockets() -> None:
    """Every socket of `sim` is on its own sans-I/O pumps: nothing imports
    ``websockets.asyncio`` (or the legacy or sync layers), nothing imports a private
    module or name of websockets, and no class of `sim` subclasses one of websockets'
    (overriding its methods is how private behaviour gets relied on)."""
    root = Path(__file__).parents[2] / "simulator"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent)
        tree = ast.parse(path.read_text())
        from_websockets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("websockets"):
                module = node.module or ""
                names = [alias.name for alias in node.names]
                from_websockets.update(alias.asname or alias.name for alias in node.names)
                parts = module.split(".") + names
                if module.split(".")[1:2] in (["asyncio"], ["legacy"], ["sync"]) or any(
                    p.startswith("_") for p in parts
                ):
                    offenders.append(f"{where}: from {module} import {', '.join(names)}")
            elif isinstance(node, ast.Import):
                offenders.extend(
                    f"{where}: import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("websockets.")
                )
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & from_websockets:
                    offenders.append(f"{where}: class {node.name} subclasses websockets")
    assert offenders == []


#: Every handshake held for a minute before it is accepted.
SLOW_GATE = (
    TICKS
    + """
[[fault]]
kind = "reject"
delay = "60s"
"""
)


def test_stopping_the_proxy_during_an_upstream_handshake_leaves_no_upstream_socket(
    tmp_path: Path,
) -> None:
    """A client's handshake waits on its upstream's; the proxy stops meanwhile: the
    client gets 503 and the upstream socket is dropped, not left open."""

    async def main() -> tuple[int | None, int]:
        async with serve(scenario(SLOW_GATE), in_memory=True) as upstream:
            block = record_proxy(
                "ws://upstream.test/",
                tmp_path / "gate.parquet",
                in_memory=True,
                open_upstream=upstream.open_transport,
            )
            proxy = await block.__aenter__()
            attempt = asyncio.ensure_future(deaf_client(proxy.open_transport))
            await asyncio.sleep(1.0)  # the upstream holds the proxy's handshake
            assert upstream._wire is not None and len(upstream._wire.connections) == 1
            await block.__aexit__(None, None, None)
            with contextlib.suppress(ConnectError):
                await attempt
            refusal = attempt.exception()
            status = refusal.status if isinstance(refusal, ConnectError) else None
            await asyncio.sleep(0.1)
            return status, len(upstream._wire.connections)

    status, upstream_sockets = run(main())
    assert status == 503
    assert upstream_sockets == 0
