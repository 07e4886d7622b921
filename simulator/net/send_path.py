"""One served client as the server sees it: its subscriptions, its bounded send path,
its counters.

Frames are written pre-serialised: a server-side text frame is the same bytes for every
client (no mask, no compression), so a message is framed once and the frames due in
one loop tick go out to each client in one write, straight to its socket while its
transport holds nothing (:func:`write_now`), else through the transport.
When a client stops reading, its socket buffer fills, then its transport holds what
the socket did not take, up to ``transport_room`` (by default ``send_buffer_bytes``;
`sim run` gives 1 KiB: about the tail of one write); after that frames queue here,
bounded by ``send_buffer_bytes``, and past that the policy decides: drop the oldest
queued frames (counted), or close with 1013. The transport copies what it buffers, one
copy per client, while the queue holds the frames themselves, shared by every client
they were sent to: a small ``transport_room`` keeps a client that reads nothing cheap
(issue #13). A frame that has waited here longer than ``max_queue_s`` (the server's
``max_lateness``) is dropped (counted) when the socket drains or as new frames queue,
rather than sent that late.

Injected faults act on this path through :class:`~simulator.net.fault_effects.FaultEffects`
(``client.faulted``, created on the first fault): a stall holds frames back, a throttle
drains the queue at its own pace. So do batches a client asked for (``?sim_batch=``).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.protocol import State

from simulator.core.model import SlowConsumerPolicy
from simulator.core.protocol import Subscriptions
from simulator.core.rates import TokenBucket
from simulator.net.common import CLOSE_TRY_AGAIN_LATER
from simulator.net.fault_effects import FaultEffects
from simulator.net.wire_server import ServerConnection

#: What a drained socket is offered at once from the queue (one write): about what the
#: kernel takes in one go, so that a queue is flushed in a few writes, not one a frame.
FLUSH_BYTES = 16 * 1024

#: Queue times within this many seconds of each other are one (see SharedTime).
QUEUE_TIME_GRAIN_S = 0.001


class SharedTime:
    """Times as float objects shared by every caller within ``QUEUE_TIME_GRAIN_S`` of
    each other, for the times frames are queued at. A client that reads nothing queues a
    time per batch: 2,000 of them, each with a float of its own per 10 ms tick, filled
    9 MB of the allocator's smallest pools, and once they had gone the few objects
    allocated among them kept those pools, hence their arenas, from being freed (RSS
    stayed 24 MB up; issue #13). One float per tick for all of them leaves little to pin."""

    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest = float("-inf")

    def at(self, now: float) -> float:
        """``now``, or the float given out last if it is within the grain of it."""
        # abs: a test's event loop may keep a clock of its own, behind another's.
        if abs(now - self.latest) >= QUEUE_TIME_GRAIN_S:
            self.latest = now
        return self.latest


_queue_times = SharedTime()


def queued_at() -> float:
    """The running loop's time, shared (:class:`SharedTime`)."""
    return _queue_times.at(asyncio.get_running_loop().time())


def socket_fd(transport: asyncio.BaseTransport) -> int:
    """The descriptor of the TCP socket under ``transport``, when frames may be written
    to it directly (:func:`write_now`); -1 over TLS (the transport encrypts), where
    writing to a socket is not ``write(2)`` (Windows), or without a socket."""
    if os.name != "posix" or transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


def write_now(transport: asyncio.WriteTransport, fd: int, data: bytes) -> None:
    """Write ``data`` to a client whose transport holds nothing and is open: to its
    socket ``fd`` with one system call, and what the socket did not take (or all of it,
    when the call failed) to the transport, which sends it as the socket drains, or
    finds the error and closes the connection.

    asyncio's ``transport.write`` does the same after checks in Python; a broadcast
    makes one write per client per tick, and without those checks its user time is
    about two thirds of what it was (1,000 clients x 100 msg/s; the kernel's time is
    the same; docs/performance.md, #14). The caller checks what matters of them: the
    connection is open (asyncio closes the socket only after ``connection_lost``, which
    ends that), the transport is not closing (an abort drops what it holds: a frame
    written now would follow a truncated one) and holds nothing (else its bytes would
    go out after these)."""
    try:
        written = os.write(fd, data)
    except OSError:  # EAGAIN, or a broken connection: the transport's to handle
        written = 0
    if written < len(data):
        transport.write(data[written:])


def text_frame(payload: bytes) -> bytes:
    """The wire bytes of an unmasked, uncompressed text frame (RFC 6455 §5.2): the bytes
    websockets' ``Frame(Opcode.TEXT, payload).serialize(mask=False)`` gives, written
    here directly (several times quicker: every message and reply is framed)."""
    return _header(0x81, len(payload)) + payload


def binary_frame(payload: bytes) -> bytes:
    """The wire bytes of an unmasked binary frame (see :func:`text_frame`)."""
    return _header(0x82, len(payload)) + payload


def _header(first: int, length: int) -> bytes:
    # FIN + opcode, then the length in 7 bits, or 126 + 16 bits, or 127 + 64 bits.
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


class Client:
    """Server-side state of one connection. Create it once the handshake is done."""

    __slots__ = (
        "closing",
        "connected_at",
        "corked",
        "epoch_ns",
        "error_budget",
        "errors",
        "faulted",
        "fd",
        "frames_dropped",
        "frames_sent",
        "inbound",
        "index",
        "limit",
        "live_sent",
        "max_queue_s",
        "next_age_check",
        "on_slow",
        "pending",
        "pending_bytes",
        "pending_since",
        "policy",
        "protocol",
        "remote",
        "room",
        "subscriptions",
        "transport",
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
        inbound: TokenBucket | None = None,
        max_queue_s: float = float("inf"),
        transport_room: int | None = None,
    ) -> None:
        self.index = index
        self.ws = ws
        # Read on every send: kept here rather than looked up through ws each time.
        self.protocol = ws.protocol
        self.transport = ws.transport
        self.fd = socket_fd(ws.transport)  # -1: write through the transport only
        self.subscriptions: Subscriptions = None
        self.limit = send_buffer_bytes  # what the queue holds at most
        # What is written to the transport, past which frames queue: give the transport
        # the same high-water mark (WireConfig.write_limit), so that it calls back
        # (flush_pending) once it has room again.
        self.room = send_buffer_bytes if transport_room is None else transport_room
        self.policy = policy
        # Created on first use: most clients never queue, and an empty deque is ~760 bytes.
        self.pending: deque[bytes] | None = None
        self.pending_since: deque[float] | None = None  # loop time each one was queued
        self.pending_bytes = 0
        self.max_queue_s = max_queue_s
        self.next_age_check = 0.0  # loop time: see queue_for_later
        self.frames_sent = 0
        self.frames_dropped = 0
        self.live_sent = 0  # timeline messages handed to it (the live value messages_sent)
        self.closing = False
        # While set, what is sent queues (see cork): answers to one read go out together.
        self.corked = False
        self.faulted: FaultEffects | None = None  # injected faults in force, once there is any
        self.connected_at = connected_at
        self.epoch_ns = epoch_ns  # wall time of this client's virtual time 0 (per-connection)
        self.remote: Any = ws.remote_address
        self.on_slow = on_slow
        self.inbound = inbound  # the limit on what the client sends, if any
        self.errors = 0  # invalid messages it sent
        self.error_budget: TokenBucket | None = None  # created on its first error
        ws.on_resume = self.flush_pending

    @property
    def open(self) -> bool:
        return not self.closing and self.protocol.state is State.OPEN

    def deliver(self, data: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` (``data`` is them joined), or queue them if the socket is full."""
        # The hot path of a broadcast: once per client per batch.
        if self.closing or self.protocol.state is not State.OPEN:
            return
        faulted = self.faulted
        if faulted is not None and faulted.holds(self, data, frames):
            return
        transport = self.transport
        # Queue only once the buffer is over the limit: asyncio has then paused us, and
        # will call resume_writing (hence flush_pending) when it drains.
        if not self.pending and not self.corked:
            held = transport.get_write_buffer_size()
            if held <= self.room:
                if held == 0 and self.fd >= 0 and not transport.is_closing():
                    write_now(transport, self.fd, data)
                else:
                    transport.write(data)
                self.frames_sent += len(frames)
                return
        self.queue_for_later(data, frames)

    def cork(self) -> None:
        """Queue what is sent from now until :meth:`uncork` (the answers to one read of
        the client's), to write it in one go: a client that sends 20 messages in one
        write gets its 20 answers in one, not 20 system calls. Frames broadcast in
        between queue behind them: the order is kept."""
        self.corked = True

    def uncork(self) -> None:
        """Write what was queued since :meth:`cork` (as far as the socket takes it)."""
        if self.corked:
            self.corked = False
            if self.pending:
                self.flush_pending()

    def queue_for_later(self, data: bytes, frames: list[bytes]) -> None:
        """Queue what the socket cannot take now, and drop what has waited past
        ``max_queue_s``: a client that reads nothing never drains, so its queue would
        otherwise keep ``send_buffer_bytes`` of frames that can never be sent in time
        (2,000 of them: 16 MB of queue entries). Looked at twice per ``max_queue_s``
        at most, so that the drops (each logged and recorded) come in a few batches."""
        self.queue(data, frames)
        if not self.late_frames_dropped:
            return  # what a fault held back is the fault's to deliver late
        now = asyncio.get_running_loop().time()
        if now >= self.next_age_check:
            self.next_age_check = now + self.max_queue_s / 2
            self.drop_late()

    @property
    def late_frames_dropped(self) -> bool:
        """Whether frames queued past ``max_queue_s`` are dropped: unless a stall or a
        throttle in force paces this client's frames (they are the fault's to deliver
        late). A message a delay or a reorder held back joins the queue when it is
        released, as young as any."""
        return self.faulted is None or not self.faulted.paces_sends

    def queue(self, data: bytes, frames: list[bytes]) -> None:
        """Queue ``frames`` behind what is queued; past the limit, the slow-consumer
        policy decides: drop the oldest queued frames, or close the client."""
        if self.pending is None or self.pending_since is None:
            self.pending, self.pending_since = deque(), deque()
        self.pending.extend(frames)
        self.pending_since.extend([queued_at()] * len(frames))
        self.pending_bytes += len(data)
        if self.corked:
            # Answers held back for one write (see cork), not a client that fell behind:
            # the policy looks at the queue again once they are written.
            return
        if self.pending_bytes > self.limit and self.policy is SlowConsumerPolicy.CLOSE:
            self.close_slow()
            return
        dropped = 0
        while self.pending_bytes > self.limit and self.pending:
            self.pending_bytes -= len(self.pending.popleft())
            self.pending_since.popleft()
            dropped += 1
        if dropped:
            self.frames_dropped += dropped
            self.on_slow(self, "dropped", dropped)

    def requeue_as_new(self) -> None:
        """Count what is queued as queued now: frames a stall or a throttle held were the
        fault's to deliver late, and once it ends they join the queue like new ones
        (``max_queue_s`` counts from then)."""
        if self.pending_since:
            self.pending_since = deque([queued_at()] * len(self.pending_since))

    def drop_late(self) -> None:
        """Drop the queued frames that have waited longer than ``max_queue_s``."""
        pending, since = self.pending, self.pending_since
        if not pending or since is None:
            return
        oldest_allowed = asyncio.get_running_loop().time() - self.max_queue_s
        dropped = 0
        while pending and since[0] < oldest_allowed:
            self.pending_bytes -= len(pending.popleft())
            since.popleft()
            dropped += 1
        if dropped:
            self.frames_dropped += dropped
            self.on_slow(self, "late", dropped)

    def take(self, budget: int, whole: bool) -> list[bytes]:
        """Dequeue frames worth at most ``budget`` bytes; with ``whole=False`` the last
        one may cross it (it is the socket's room, not a hard cap)."""
        batch: list[bytes] = []
        pending, since = self.pending, self.pending_since
        while pending and since and (len(pending[0]) <= budget if whole else budget > 0):
            frame = pending.popleft()
            since.popleft()
            self.pending_bytes -= len(frame)
            budget -= len(frame)
            batch.append(frame)
        return batch

    def write(self, batch: list[bytes]) -> None:
        """Write dequeued frames to the socket."""
        if batch:
            self.transport.write(b"".join(batch))
            self.frames_sent += len(batch)

    def flush_pending(self) -> None:
        """Move queued frames to the socket while it takes them (called when it drains).

        It goes on until the queue is empty or the transport holds more than ``room``,
        when asyncio has paused writing and will call this again once it drains: were
        it to stop with frames queued and writing not paused, nothing would call it
        again, and every later frame would join the queue (a client starved while the
        others are served: seen at 1,000 clients x 1,600 msg/s)."""
        if not self.pending or not self.open:
            return
        if self.faulted is not None and self.faulted.paces_sends:
            return  # a stall sends nothing; a throttle drains at its own pace
        if self.late_frames_dropped:
            self.drop_late()
        transport = self.transport
        while self.pending and not self.closing and not transport.is_closing():
            held = transport.get_write_buffer_size()
            if held > self.room:
                return  # paused: resume_writing calls again
            self.write(self.take(max(self.room - held, FLUSH_BYTES), False))

    def close_slow(self) -> None:
        """Close with 1013: the client could not keep up."""
        if self.closing:
            return
        self.on_slow(self, "closed", 0)
        self.close(CLOSE_TRY_AGAIN_LATER, "slow consumer")

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; nothing more is sent to this client. It ends
        within the close timeout (aborted if the client does not answer)."""
        if self.closing:
            return
        self.uncork()  # the answers before the close go out before it
        self.closing = True
        self.ws.start_close(code, reason)

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7), for a client that broke the rules: a
        close frame, then the TCP connection is closed without waiting for its answer,
        and nothing more it sends is parsed (a flood costs nothing after this)."""
        if self.closing:
            return
        self.uncork()
        self.closing = True
        self.ws.fail(code, reason)

    def reset(self) -> None:
        """Drop the TCP connection with no close frame: the client sees 1006."""
        self.closing = True
        self.ws.abort()

    def faults(self) -> FaultEffects:
        """The client's fault effects (created on first use)."""
        if self.faulted is None:
            self.faulted = FaultEffects()
        return self.faulted
