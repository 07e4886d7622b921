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
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import State

from simulator.core.model import SlowConsumerPolicy
from simulator.core.protocol import Subscriptions
from simulator.net.wire import WireConnection

CLOSE_TRY_AGAIN_LATER = 1013


def text_frame(payload: bytes) -> bytes:
    """The wire bytes of an unmasked, uncompressed text frame (RFC 6455 §5.2)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class Peer(Protocol):
    """The connection under a :class:`Client`: exactly what Client and
    ``listener.close_of`` use. Both the live server's :class:`WireConnection` and
    websockets' ``ServerConnection`` (the replay server's) are peers."""

    @property
    def transport(self) -> asyncio.Transport: ...

    @property
    def protocol(self) -> WsProtocol: ...  # state, close_sent, close_rcvd, ...

    @property
    def remote_address(self) -> Any: ...

    def close(self, code: int, reason: str) -> Awaitable[None]: ...

    def drain(self) -> Awaitable[None]:
        """Wait until the transport's write buffer is below its low-water mark."""
        ...

    def start_keepalive(self) -> None: ...


def stop_keepalive(ws: Peer) -> None:
    """Send ``ws`` no keepalive pings until its ``start_keepalive`` is called."""
    if isinstance(ws, WireConnection):
        ws.stop_keepalive()
        return
    keepalive = getattr(ws, "keepalive_task", None)  # websockets.asyncio's
    if keepalive is not None:
        keepalive.cancel()


class SimConnection(ServerConnection):
    """websockets' server connection (the replay server's), telling its :class:`Client`
    when the socket drains."""

    on_resume: Callable[[], None] | None = None
    index: int | None = None  # the connection index, given at handshake time

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
        "faulted",
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
        ws: Peer,
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
        # Created on first use: most clients never queue, and an empty deque is ~760 bytes.
        self.pending: deque[bytes] | None = None
        self.pending_bytes = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.closing = False
        self.close_task: asyncio.Future[None] | None = None
        self.faulted: Faulted | None = None  # state of injected faults, once there is any
        self.connected_at = connected_at
        self.epoch_ns = epoch_ns  # wall time of this client's virtual time 0 (per-connection)
        self.remote: Any = ws.remote_address
        self.on_slow = on_slow
        self.tokens = 0.0
        self.tokens_at = 0.0
        if isinstance(ws, (SimConnection, WireConnection)):
            ws.on_resume = self.flush_pending

    @property
    def open(self) -> bool:
        return not self.closing and self.ws.protocol.state is State.OPEN

    def deliver(self, data: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` (``data`` is them joined), or queue them if the socket is full."""
        if not self.open:
            return
        if self.faulted is not None:
            if self.faulted.stalled:
                self.faulted.stalled_frames += len(frames)
                return
            if self.faulted.bytes_per_s is not None:
                self._queue(data, frames)
                self.faulted.schedule_drain(self)
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
        self._queue(data, frames)

    def _queue(self, data: bytes, frames: list[bytes]) -> None:
        if self.pending is None:
            self.pending = deque()
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
        if self.faulted is not None and (
            self.faulted.stalled or self.faulted.bytes_per_s is not None
        ):
            return  # a stall sends nothing; a throttle drains at its own pace
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

    # ------------------------------------------------------------------ injected faults
    # Called by simulator.net.faulting; the decisions are made by the pure planner.

    def _faults(self) -> Faulted:
        if self.faulted is None:
            self.faulted = Faulted()
        return self.faulted

    def send_frames(self, frames: list[bytes]) -> None:
        """Send one message's frames now (or behind an order-keeping delay), then let
        frames held back for reordering count it."""
        f = self._faults()
        if f.ordered:
            f.ordered[-1][1].extend(frames)
        else:
            self.deliver(b"".join(frames), frames)
        due: list[bytes] = []
        for entry in f.held:
            entry[0] -= 1
            if entry[0] <= 0:
                due.extend(entry[1])
        f.held = [e for e in f.held if e[0] > 0]
        if due:
            self.deliver(b"".join(due), due)

    def hold(self, frames: list[bytes], after: int) -> None:
        """Hold ``frames`` back until ``after`` more messages have been sent."""
        self._faults().held.append([after, frames])

    def send_later(self, frames: list[bytes], delay_s: float, keep_order: bool) -> None:
        """Send ``frames`` after ``delay_s``; with ``keep_order`` later messages wait too."""
        loop = asyncio.get_running_loop()
        f = self._faults()
        if not keep_order:
            loop.call_later(delay_s, self.deliver, b"".join(frames), frames)
            return
        release = loop.time() + delay_s
        if f.ordered:
            release = max(release, f.ordered[-1][0])
        f.ordered.append((release, list(frames)))
        loop.call_at(release, self._release_ordered)

    def _release_ordered(self) -> None:
        f = self._faults()
        now = asyncio.get_running_loop().time()
        while f.ordered and f.ordered[0][0] <= now:
            _, frames = f.ordered.popleft()
            self.deliver(b"".join(frames), frames)

    def stall(self) -> None:
        """Half-open: send nothing, read nothing (so pings go unanswered). Stalls nest:
        the connection wakes only when every stall in force has ended."""
        f = self._faults()
        f.stalls += 1
        if f.stalls > 1:
            return
        f.stalled = True
        self.ws.transport.pause_reading()
        stop_keepalive(self.ws)

    def unstall(self) -> None:
        f = self._faults()
        f.stalls = max(0, f.stalls - 1)
        if f.stalls:
            return
        f.stalled = False
        self.ws.transport.resume_reading()
        self.ws.start_keepalive()

    def throttle(self, bytes_per_s: float) -> None:
        """Cap what is sent to ``bytes_per_s`` of wall-clock time; with several caps in
        force the lowest applies."""
        f = self._faults()
        f.caps.append(bytes_per_s)
        f.bytes_per_s = min(f.caps)
        f.schedule_drain(self)

    def unthrottle(self, bytes_per_s: float) -> None:
        """End one cap set by :meth:`throttle`; the others stay in force."""
        f = self._faults()
        if bytes_per_s in f.caps:
            f.caps.remove(bytes_per_s)
        f.bytes_per_s = min(f.caps) if f.caps else None
        if f.bytes_per_s is None:
            self.flush_pending()

    def reset(self) -> None:
        """Drop the TCP connection with no close frame: the client sees 1006."""
        self.closing = True
        self.ws.transport.abort()


class Faulted:
    """A client's state under injected faults (absent on clients without any)."""

    __slots__ = (
        "bytes_per_s",
        "caps",
        "credit",
        "draining",
        "held",
        "ordered",
        "stalled",
        "stalled_frames",
        "stalls",
    )

    TICK_S = 0.01

    def __init__(self) -> None:
        self.stalled = False
        self.stalls = 0  # stalls in force (they nest)
        self.stalled_frames = 0
        self.caps: list[float] = []  # throttles in force; the lowest applies
        self.bytes_per_s: float | None = None
        self.credit = 0.0
        self.draining = False
        self.held: list[list[Any]] = []
        self.ordered: deque[tuple[float, list[bytes]]] = deque()

    def schedule_drain(self, client: Client) -> None:
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().call_later(self.TICK_S, self._drain, client)

    def _drain(self, client: Client) -> None:
        """Write what the byte budget allows, every tick, while frames are queued."""
        self.draining = False
        if self.bytes_per_s is None or not client.open:
            return
        self.credit = min(self.credit + self.bytes_per_s * self.TICK_S, self.bytes_per_s)
        batch: list[bytes] = []
        while client.pending and len(client.pending[0]) <= self.credit:
            frame = client.pending.popleft()
            client.pending_bytes -= len(frame)
            self.credit -= len(frame)
            batch.append(frame)
        if batch:
            client.ws.transport.write(b"".join(batch))
            client.frames_sent += len(batch)
        if client.pending:
            self.schedule_drain(client)
