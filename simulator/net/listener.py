"""What every server of `sim` shares (the live server, the replay server, the recording
proxy): a :class:`~simulator.net.wire_server.WireServer` on a listening socket (or on
in-memory transports), its URL, and the background tasks it must cancel on stop."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.net.common import warn_if_public
from simulator.net.log import EventLog
from simulator.net.memory import open_pipe
from simulator.net.wire_server import HttpRouter, ServerHandler, WireConfig, WireServer

logger = logging.getLogger(__name__)


class Listener(ServerHandler):
    """Base of a server: subclasses answer the wire's callbacks, call :meth:`_listen`
    when they start and :meth:`_close` when they stop."""

    def __init__(self, host: str, log: EventLog) -> None:
        self.host = host
        self.log = log
        #: Serve ``wss://`` with this context (set it before starting; ``None``: ``ws://``).
        self.tls: ssl.SSLContext | None = None
        #: Share the port with other processes listening on it with this flag too
        #: (``SO_REUSEPORT``: the kernel spreads connections among them; set it before
        #: starting). ``sim run --workers`` does.
        self.reuse_port = False
        self._wire: WireServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _listen(self, config: WireConfig, port: int | None) -> None:
        """Serve on ``host``:``port`` (``0``: a free one), or with ``port=None`` on no
        socket at all: connect with :meth:`open_transport`."""
        self._wire = WireServer(self, config)
        if port is None:
            self._wire.start()
            return
        await self._wire.listen(self.host, port, self.tls, reuse_port=self.reuse_port)
        warn_if_public(self.host, self.log)

    def serve_http(self, router: HttpRouter | None) -> None:
        """Answer plain HTTP requests (not WebSocket handshakes) on the same port with
        ``router`` from now on (``None``: stop); ``GET /healthz`` stays the server's."""
        assert self._wire is not None, "not started"
        self._wire.http = router

    @property
    def serving(self) -> bool:
        return self._wire is not None and self._wire.serving

    @property
    def port(self) -> int:
        assert self._wire is not None, "not started"
        return int(self._wire.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The ``ws://`` (``wss://`` with :attr:`tls`) URL of the listening socket;
        without one, ``ws://memory.invalid/``: reachable only through
        :meth:`open_transport` (a client that opens its own socket to it fails at once,
        naming a host that never resolves, RFC 6761, rather than waiting on DNS)."""
        assert self._wire is not None, "not started"
        if not self._wire.listening:
            return "ws://memory.invalid/"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "ws" if self.tls is None else "wss"
        return f"{scheme}://{host}:{self.port}"

    async def open_transport(
        self, factory: Callable[[], asyncio.Protocol]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        """Connect ``factory``'s protocol to this server through an in-memory pipe: pass
        it as ``open_transport`` to :func:`simulator.net.wire_client.connect`."""
        assert self._wire is not None, "not started"
        return await open_pipe(self._wire.connection, factory)

    async def _close(self, code: int) -> None:
        """Stop listening and close every connection with ``code``, bounded by the close
        timeout; cancel the background tasks."""
        self._cancel_tasks()
        if self._wire is not None:
            await self._wire.close(code)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the background until it ends or the server stops."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        # A bug of ours: say so, with its traceback, rather than go on serving a feed
        # whose pump is dead.
        logger.error("a background task of the server failed", exc_info=error)
        self.failed(error)  # type: ignore[arg-type]

    def failed(self, error: BaseException) -> None:
        """A background task failed (see :meth:`_spawn`); the sides decide what then."""

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
