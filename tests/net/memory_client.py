"""A test client on the in-memory transport: records what arrives, with the virtual
time it arrived at, and how the connection ended."""

from __future__ import annotations

import asyncio
from typing import Any

from simulator.net.listener import Listener
from simulator.net.wire import Connection, Handler, WireConfig, close_of
from simulator.net.wire_client import ClientConnection, connect


class Inbox(Handler):
    """Everything a client received: ``(loop time, message)``, and its end."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str | bytes]] = []
        self.ended = asyncio.Event()
        self.end: tuple[int, str, str] | None = None

    def message(self, conn: Connection, message: str | bytes) -> None:
        self.messages.append((asyncio.get_running_loop().time(), message))

    def closed(self, conn: Connection) -> None:
        self.end = close_of(conn)
        self.ended.set()


async def memory_client(
    server: Listener, path: str = "/", **config: Any
) -> tuple[ClientConnection, Inbox]:
    """Connect an :class:`Inbox` client to ``server`` in memory (``config``: WireConfig
    fields, e.g. ``open_timeout``)."""
    inbox = Inbox()
    ws = await connect(
        f"ws://memory{path}",
        inbox,
        config=WireConfig(ping_interval=None, ping_timeout=None, **config),
        open_transport=server.open_transport,
    )
    return ws, inbox
