"""One client connection as the server sees it: its subscriptions, its bounded send
path, its counters.

Frames are written straight to the transport, pre-serialised: a server-side text frame
is the same bytes for every client (no mask, no compression), so a message is framed
once and the frames due in one loop tick go out to each client in one ``write``.
When a client stops reading, its socket buffer fills up to ``send_buffer_bytes``;
after that frames queue here, bounded by the same number of bytes, and the policy
decides: drop the oldest queued frames (counted), or close with 1013.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from simulator.core.model import SlowConsumerPolicy
from simulator.core.protocol import Subscriptions

CLOSE_TRY_AGAIN_LATER = 1013


def text_frame(payload: bytes) -> bytes:
    """The wire bytes of an unmasked, uncompressed text frame (RFC 6455 §5.2)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class SimConnection(ServerConnection):
    """websockets' server connection, telling its :class:`Client` when the socket drains."""

    on_resume: Callable[[], None] | None = None

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_resume is not None:
            self.on_resume()


class Client:
    """Server-side state of one connection. Create it once the handshake is done."""

    __slots__ = (
        "close_task",
        "closing",
        "connected_at",
        "epoch_ns",
        "frames_dropped",
        "frames_sent",
        "index",
        "limit",
        "on_slow",
        "pending",
        "pending_bytes",
        "policy",
        "remote",
        "subscriptions",
        "tokens",
        "tokens_at",
        "ws",
    )

    def __init__(
        self,
        index: int,
        ws: ServerConnection,
        *,
        send_buffer_bytes: int,
        policy: SlowConsumerPolicy,
        connected_at: float,
        epoch_ns: int,
        on_slow: Callable[[Client, str, int], None],
    ) -> None:
        self.index = index
        self.ws = ws
        self.subscriptions: Subscriptions = None
        self.limit = send_buffer_bytes
        self.policy = policy
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.closing = False
        self.close_task: asyncio.Future[None] | None = None
        self.connected_at = connected_at
        self.epoch_ns = epoch_ns  # wall time of this client's virtual time 0 (per-connection)
        self.remote: Any = ws.remote_address
        self.on_slow = on_slow
        self.tokens = 0.0
        self.tokens_at = 0.0
        if isinstance(ws, SimConnection):
            ws.on_resume = self.flush_pending

    @property
    def open(self) -> bool:
        return not self.closing and self.ws.protocol.state is State.OPEN

    def deliver(self, data: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` (``data`` is them joined), or queue them if the socket is full."""
        if not self.open:
            return
        transport = self.ws.transport
        # Queue only once the buffer is over the limit: asyncio has then paused us, and
        # will call resume_writing (hence flush_pending) when it drains.
        if not self.pending and transport.get_write_buffer_size() <= self.limit:
            transport.write(data)
            self.frames_sent += len(frames)
            return
        if self.policy is SlowConsumerPolicy.CLOSE:
            self.close_slow()
            return
        self.pending.extend(frames)
        self.pending_bytes += len(data)
        dropped = 0
        while self.pending_bytes > self.limit and self.pending:
            self.pending_bytes -= len(self.pending.popleft())
            dropped += 1
        if dropped:
            self.frames_dropped += dropped
            self.on_slow(self, "dropped", dropped)

    def flush_pending(self) -> None:
        """Move queued frames to the socket while it has room (called when it drains)."""
        if not self.pending or not self.open:
            return
        transport = self.ws.transport
        batch: list[bytes] = []
        room = self.limit - transport.get_write_buffer_size()
        while self.pending and room > 0:
            frame = self.pending.popleft()
            self.pending_bytes -= len(frame)
            room -= len(frame)
            batch.append(frame)
        if batch:
            transport.write(b"".join(batch))
            self.frames_sent += len(batch)

    def close_slow(self) -> None:
        """Close with 1013: the client could not keep up."""
        if self.closing:
            return
        self.on_slow(self, "closed", 0)
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer")

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; nothing more is sent to this client."""
        if self.closing:
            return
        self.closing = True
        # Keep a reference: the loop holds tasks weakly.
        self.close_task = asyncio.ensure_future(self.ws.close(code, reason))

    def allow_message(self, now: float, rate: float, burst: float) -> bool:
        """Token bucket for what the client sends: ``rate`` per second, ``burst`` at once."""
        self.tokens = min(burst, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
