"""What every server of `sim` shares (the live server and the replay server): the
listening socket and its URL, the background tasks it must cancel on stop, and how a
connection ended."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer

if TYPE_CHECKING:
    from simulator.net.connection import Peer

CLOSE_ABNORMAL = 1006


class Listener:
    """Base of a server: subclasses built on ``websockets.asyncio.server.serve`` store the
    websockets server in ``self._ws`` when they start; others override
    :meth:`_sockets`."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._ws: WsServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(next(iter(self._sockets())).getsockname()[1])

    def _sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        assert self._ws is not None, "not started"
        return self._ws.sockets

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the background until it ends or the server stops."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def close_of(ws: Peer) -> tuple[int, str, str]:
    """The close code and reason that ended ``ws``, and who sent them first
    (``server``, ``client``, or ``network`` for 1006 when no close frame was exchanged,
    as RFC 6455 §7.1.5 says)."""
    p = ws.protocol
    sent, rcvd = p.close_sent, p.close_rcvd
    if sent is not None and (rcvd is None or not p.close_rcvd_then_sent):
        return sent.code, sent.reason, "server"
    if rcvd is not None:
        return rcvd.code, rcvd.reason, "client"
    return CLOSE_ABNORMAL, "", "network"
