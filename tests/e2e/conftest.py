"""Helpers for the real-socket tests: a bounded asyncio runner, clients tuned for tests,
small scenarios, and waits on the server's event log instead of sleeps.

pytest-asyncio is not used: :func:`async_test` runs a coroutine test under
``asyncio.run`` inside one ``asyncio.timeout``, so no test can hang the suite.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import textwrap
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator.core.model import Scenario
from simulator.net.log import Event, EventKind
from simulator.net.server import SimServer
from simulator.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "scenarios" / "energy-dashboard.toml"
S = 1_000_000_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_NS = int(EPOCH.timestamp()) * S

Message = dict[str, Any]


def async_test(timeout: float = 30.0) -> Callable[[Callable[..., Awaitable[None]]], Any]:
    """Run an ``async def`` test with ``asyncio.run``, failing it after ``timeout`` s."""

    def decorate(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(timeout):
                    await fn(*args, **kwargs)

            asyncio.run(bounded())

        return wrapper

    return decorate


def scenario(text: str) -> Scenario:
    return parse_scenario(textwrap.dedent(text))


def dashboard() -> Scenario:
    return load_scenario(DASHBOARD)


def iso(virtual_ns: int, epoch: datetime = EPOCH) -> str:
    """The envelope's ``$timestamp`` for a virtual time: ISO 8601, milliseconds, ``Z``."""
    when = epoch + timedelta(microseconds=virtual_ns // 1000)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def client(url: str, **kwargs: Any) -> ClientConnection:
    """A client that reads everything the server sends (``max_queue=None``), so a close
    handshake is never stuck behind feed messages the test did not consume."""
    options: dict[str, Any] = {
        "proxy": None,
        "compression": None,
        "max_queue": None,
        "ping_interval": None,
        "close_timeout": 2,
        "open_timeout": 10,
    }
    options.update(kwargs)
    return await connect(url, **options)


async def receive(ws: ClientConnection) -> Message:
    message: Message = json.loads(await ws.recv())
    return message


async def receive_for(ws: ClientConnection, seconds: float) -> list[Message]:
    """Every message that arrives within ``seconds`` of wall time."""
    got: list[Message] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(await receive(ws))
    except TimeoutError:
        pass
    return got


async def receive_until(ws: ClientConnection, done: Callable[[Message], bool]) -> list[Message]:
    """Messages up to and including the first one for which ``done`` is true."""
    got: list[Message] = []
    while True:
        message = await receive(ws)
        got.append(message)
        if done(message):
            return got


async def reply_of_type(ws: ClientConnection, kind: str) -> Message:
    """The next message of ``type`` ``kind``, skipping feed messages before it."""
    return (await receive_until(ws, lambda m: m.get("type") == kind))[-1]


async def fence(ws: ClientConnection, ping_id: object = "fence") -> tuple[list[Message], Message]:
    """Send a ping; return what arrived before its pong, and the pong.

    The pong is written after every frame the server queued for ``ws`` before reading
    the ping, so this is a fence: anything sent earlier is in the returned list.
    """
    await ws.send(json.dumps({"type": "ping", "id": ping_id}))
    got = await receive_until(ws, lambda m: m.get("type") == "pong" and m.get("id") == ping_id)
    return got[:-1], got[-1]


async def feed_until_pong(ws: ClientConnection, ping_id: object = "fence") -> list[Message]:
    """What arrived before the pong of a :func:`fence` ping."""
    return (await fence(ws, ping_id))[0]


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes the connection; the code it closed with."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


def expect_event(
    server: SimServer, kind: EventKind, conn: int | None = None, **detail: object
) -> asyncio.Future[Event]:
    """A future for the next ``kind`` event (for ``conn``, with ``detail``) the server logs.

    Call it before the action that causes the event, then await it.
    """
    future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    def listener(event: Event) -> None:
        if (
            event.kind is kind
            and (conn is None or event.conn == conn)
            and all(event.detail.get(k) == v for k, v in detail.items())
            and not future.done()
        ):
            future.set_result(event)

    stop = server.log.listen(listener)
    future.add_done_callback(lambda _: stop())
    return future


async def connected(server: SimServer, url: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    """Connect a client and wait until the server has registered it; its index and socket."""
    registered = expect_event(server, EventKind.CONNECTED)
    ws = await client(url or server.url, **kwargs)
    event = await registered
    assert event.conn is not None
    return event.conn, ws


def seqs_contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


#: The dashboard's one live field: each server's own count of its connected clients
#: (`live = "connected_clients"`), the one thing that differs between servers that share
#: scenario, seed and epoch (docs/scale-out.md).
_LIVE_COUNT = re.compile(rb'"active_connections":(?:\d+|"[^"]*")')


def without_live_count(raw: bytes) -> bytes:
    """``raw`` with the dashboard's live count (or its placeholder) blanked out."""
    return _LIVE_COUNT.sub(b'"active_connections":null', raw)


def recorded_text(path: Path) -> str:
    """Everything a recording file holds, as text: every column of every row (payloads
    decoded) and the file's metadata. Look for a secret here, not in the file's bytes:
    its columns are compressed, so a secret in them would not show there."""
    cells = [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for row in pl.read_parquet(path).iter_rows()
        for value in row
    ]
    metadata = [f"{k}={v}" for k, v in pl.read_parquet_metadata(path).items()]
    return "\n".join([*cells, *metadata])
