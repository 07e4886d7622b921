"""Test clients on the in-memory transport, for tests on the virtual clock.

* :class:`Inbox` records what arrives, with the virtual time it arrived at, and how the
  connection ended; :func:`memory_client` connects one.
* :class:`MemoryWebSocket` adds the part of websockets' asyncio client that tests use
  (``await recv()``, ``send()``, ``close()``, ``ping()``, ``close_code``), so that a test
  written for a real socket reads the same here; :func:`memory_websocket` and
  :func:`connected` connect one, :func:`frames_until_closed` reads one to its end.

A refused handshake raises :class:`~simulator.errors.ConnectError` (``status``,
``headers``) where websockets' client raises ``InvalidStatus``.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections import deque
from typing import Any

from websockets.frames import Close, Frame, Opcode

from simulator.net.listener import Listener
from simulator.net.log import EventKind
from simulator.net.server import SimServer
from simulator.net.wire import Connection, Handler, WireConfig, close_of
from simulator.net.wire_client import ClientConnection, connect
from tests.e2e.conftest import expect_event


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


def _config(config: dict[str, Any]) -> WireConfig:
    """A test client's settings: no keepalive unless asked for, then ``config``."""
    return WireConfig(**{"ping_interval": None, "ping_timeout": None, **config})


async def memory_client(
    server: Listener, path: str = "/", **config: Any
) -> tuple[ClientConnection, Inbox]:
    """Connect an :class:`Inbox` client to ``server`` in memory (``config``: WireConfig
    fields, e.g. ``open_timeout``)."""
    inbox = Inbox()
    ws = await connect(
        f"ws://memory{path}",
        inbox,
        config=_config(config),
        open_transport=server.open_transport,
    )
    return ws, inbox


class Closed(Exception):
    """Raised by :meth:`MemoryWebSocket.recv` once the connection is closed and every
    message has been read; like websockets' ``ConnectionClosed``, ``rcvd`` and ``sent``
    are the close frames received and sent (``None`` for none: a reset has neither)."""

    def __init__(self, rcvd: Close | None, sent: Close | None) -> None:
        self.rcvd = rcvd
        self.sent = sent
        super().__init__(f"connection closed: received {rcvd}, sent {sent}")


class MemoryWebSocket(Inbox):
    """A client connection read the way websockets' asyncio client is: messages wait in
    a queue (unbounded) until :meth:`recv` takes them. Made by :func:`memory_websocket`."""

    def __init__(self) -> None:
        super().__init__()
        self.conn: ClientConnection  # set once connected
        self._queue: deque[str | bytes] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._pongs: dict[bytes, tuple[float, asyncio.Future[float]]] = {}
        self._ping_ids = itertools.count(1)

    # ------------------------------------------------------------------ Handler

    def message(self, conn: Connection, message: str | bytes) -> None:
        super().message(conn, message)
        self._queue.append(message)
        self._wake()

    def control(self, conn: Connection, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG and bytes(frame.data) in self._pongs:
            sent_at, waiter = self._pongs.pop(bytes(frame.data))
            if not waiter.done():
                waiter.set_result(asyncio.get_running_loop().time() - sent_at)

    def closed(self, conn: Connection) -> None:
        super().closed(conn)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # ------------------------------------------------------------------ websockets-like

    @property
    def protocol(self) -> Any:
        """The sans-I/O protocol (``.state``, ``.close_rcvd``, ...)."""
        return self.conn.protocol

    @property
    def transport(self) -> asyncio.Transport:
        return self.conn.transport

    @property
    def close_code(self) -> int | None:
        """As websockets: ``None`` while open, then the code received, 1006 if none."""
        code: int | None = self.conn.protocol.close_code
        return code

    def closed_error(self) -> Closed:
        p = self.conn.protocol
        return Closed(p.close_rcvd, p.close_sent)

    async def recv(self) -> str | bytes:
        """The next message; :class:`Closed` once the connection is closed and none is
        left."""
        while not self._queue:
            if self.end is not None:
                raise self.closed_error()
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        return self._queue.popleft()

    async def send(self, message: str | bytes) -> None:
        if self.end is not None:
            raise self.closed_error()
        self.conn.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake (bounded by the close timeout)."""
        await self.conn.close(code, reason)

    async def ping(self) -> asyncio.Future[float]:
        """Send a WebSocket ping; the future is its pong's latency in loop seconds."""
        data = struct.pack("!I", next(self._ping_ids))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[float] = loop.create_future()
        self._pongs[data] = (loop.time(), waiter)
        self.conn.send_ping(data)
        return waiter


async def memory_websocket(server: Listener, path: str = "/", **config: Any) -> MemoryWebSocket:
    """Connect a :class:`MemoryWebSocket` to ``server`` in memory (``config``:
    WireConfig fields). Raises :class:`~simulator.errors.ConnectError` if refused."""
    ws = MemoryWebSocket()
    ws.conn = await connect(
        f"ws://memory{path}",
        ws,
        config=_config(config),
        open_transport=server.open_transport,
    )
    return ws


async def connected(server: SimServer, **config: Any) -> tuple[int, MemoryWebSocket]:
    """Connect a client and wait until the server has registered it; its index and socket."""
    registered = expect_event(server, EventKind.CONNECTED)
    ws = await memory_websocket(server, **config)
    event = await registered
    assert event.conn is not None
    return event.conn, ws


async def frames_until_closed(ws: MemoryWebSocket) -> tuple[list[str], Closed]:
    """Every frame until the connection ends, and the :class:`Closed` that ended it."""
    got: list[str] = []
    try:
        while True:
            got.append(str(await ws.recv()))
    except Closed as closed:
        return got, closed
