"""The servers the conformance cases run against, each on 127.0.0.1 in a thread of its
own (one per test module, so that 100+ cases do not each start a server):

* ``wire``: our pump (:class:`~simulator.net.wire_server.WireServer`) with an echo
  handler, configured as `sim`'s servers are (frame budget, message limit);
* ``proxy``: the recording proxy (:func:`~simulator.net.proxy.record_proxy`) in front of
  the reference echo server;
* ``reference``: websockets' own server (``websockets.asyncio.server``) echoing: what
  the others are compared with (a dev/test-only reference, never imported by
  ``simulator``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from websockets.asyncio.server import ServerConnection as ReferenceConnection
from websockets.asyncio.server import serve as reference_serve

from simulator.net.proxy import record_proxy
from simulator.net.wire import CLIENT_FRAMES_PER_S, Connection, WireConfig
from simulator.net.wire_server import ServerHandler, WireServer
from tests.conformance.cases import MAX_SIZE

TARGETS = ["wire", "proxy", "reference"]


class Echo(ServerHandler):
    def message(self, conn: Connection, message: str | bytes) -> None:
        conn.send(message)


@contextlib.asynccontextmanager
async def wire_echo() -> AsyncIterator[str]:
    config = WireConfig(
        max_size=MAX_SIZE,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=2.0,
        max_frames_per_s=CLIENT_FRAMES_PER_S,
    )
    server = WireServer(Echo(), config)
    await server.listen("127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        await server.close()


async def _echo(ws: ReferenceConnection) -> None:
    async for message in ws:
        await ws.send(message)


@contextlib.asynccontextmanager
async def reference_echo() -> AsyncIterator[str]:
    async with reference_serve(
        _echo, "127.0.0.1", 0, max_size=MAX_SIZE, ping_interval=None, compression=None
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@contextlib.asynccontextmanager
async def proxy_echo() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            reference_echo() as upstream,
            record_proxy(upstream, Path(tmp) / "conformance.parquet", max_size=MAX_SIZE) as proxy,
        ):
            yield proxy.url + "/"


FACTORIES: dict[str, Callable[[], AbstractAsyncContextManager[str]]] = {
    "wire": wire_echo,
    "proxy": proxy_echo,
    "reference": reference_echo,
}


@contextlib.contextmanager
def in_thread(name: str) -> Iterator[str]:
    """Run the target ``name`` on an event loop in a thread; yield its URL."""
    ready: concurrent.futures.Future[str] = concurrent.futures.Future()
    stopping: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        stopping.append((asyncio.get_running_loop(), stop))
        try:
            async with FACTORIES[name]() as url:
                ready.set_result(url)
                await stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name=f"target-{name}")
    thread.start()
    try:
        yield ready.result(timeout=30)
    finally:
        if stopping:
            loop, stop = stopping[0]
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
