"""What every server of `sim` shares (the live server and the replay server): the
listening socket and its URL, the background tasks it must cancel on stop, and how a
connection ended."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection

CLOSE_ABNORMAL = 1006


class Listener:
    """Base of a server built on ``websockets.asyncio.server.serve``: subclasses store
    the websockets server in ``self._ws`` when they start."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._ws: WsServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._ws is not None, "not started"
        return int(next(iter(self._ws.sockets)).getsockname()[1])

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


def close_of(ws: ServerConnection) -> tuple[int, str, str]:
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
