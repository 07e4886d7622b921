"""What injected faults do to one client's send path: hold frames back (reorder), send
them later (delay), stall the connection (half-open), throttle it, reset it. And one
thing a client asks for itself, which wraps the same path: its frames in batches
(``?sim_batch=``, see :meth:`FaultEffects.batch`).

The planner (:mod:`simulator.core.faults`) decides; :mod:`simulator.net.faulting`
carries decisions out at the right moment by calling these effects, which wrap the
plain send path of :class:`~simulator.net.send_path.Client`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.net.send_path import Client


class FaultEffects:
    """A client's state under injected faults (``client.faulted``; absent on clients
    without any)."""

    __slots__ = (
        "batch_s",
        "batching",
        "bytes_per_s",
        "caps",
        "credit",
        "draining",
        "held",
        "later",
        "ordered",
        "stalled",
        "stalled_frames",
        "stalls",
    )

    #: How often a throttled connection's queue is drained, in seconds.
    TICK_S = 0.01

    def __init__(self) -> None:
        self.stalled = False
        self.stalls = 0  # stalls in force (they nest)
        self.stalled_frames = 0
        self.caps: list[float] = []  # throttles in force; the lowest applies
        self.bytes_per_s: float | None = None
        self.credit = 0.0
        self.draining = False
        self.held: list[tuple[list[int], list[bytes]]] = []  # ([messages to wait], frames)
        self.ordered: deque[tuple[float, list[bytes]]] = deque()
        self.later = 0  # delays without keep_order still running (see settled)
        self.batch_s = 0.0  # the client's frames go out in batches this far apart
        self.batching = False  # a batch's release is scheduled

    @property
    def paces_sends(self) -> bool:
        """Whether frames leave only at this fault's pace (stalled or throttled)."""
        return self.stalled or self.bytes_per_s is not None

    def holds(self, client: Client, data: bytes, frames: list[bytes]) -> bool:
        """Called by the send path before it writes: take ``frames`` if a stall or a
        throttle is in force (and say so)."""
        if self.stalled:
            self.stalled_frames += len(frames)
            return True
        if self.bytes_per_s is not None:
            client.queue(data, frames)
            self._schedule_drain(client)
            return True
        if self.batch_s:
            client.queue_for_later(data, frames)
            if not self.batching:
                self.batching = True
                asyncio.get_running_loop().call_later(self.batch_s, self._release_batch, client)
            return True
        return False

    # ------------------------------------------------------------------ batches

    def batch(self, batch_s: float) -> None:
        """Send the client's frames in batches ``batch_s`` apart (what fell due since the
        last batch, in one write), rather than each as soon as it is due: for a viewer
        such as the inspector page, to which every arrival costs the same (a browser
        wakes for each, ~100 µs of its CPU) however many messages it brings."""
        self.batch_s = batch_s

    def send_batch_now(self, client: Client) -> None:
        """Send the batch held so far at once: an answer (a pong, a subscribe's reply)
        was just queued, so that a round trip is not measured a batch long; or the
        server is stopping. A stall or a throttle in force keeps it."""
        if self.batch_s and not self.paces_sends:
            client.flush_pending()

    def _release_batch(self, client: Client) -> None:
        self.batching = False
        if not self.paces_sends:  # else a stall's or a throttle's end releases them
            client.flush_pending()

    # ------------------------------------------------------------------ message faults

    def send_frames(self, client: Client, frames: list[bytes]) -> None:
        """Send one message's frames now (or behind an order-keeping delay), then let
        frames held back for reordering count it."""
        if self.ordered:
            self.ordered[-1][1].extend(frames)
        else:
            client.deliver(b"".join(frames), frames)
        due: list[bytes] = []
        for wait, held in self.held:
            wait[0] -= 1
            if wait[0] <= 0:
                due.extend(held)
        self.held = [entry for entry in self.held if entry[0][0] > 0]
        if due:
            client.deliver(b"".join(due), due)

    def hold(self, frames: list[bytes], after: int) -> None:
        """Hold ``frames`` back until ``after`` more messages have been sent."""
        self.held.append(([after], frames))

    def hold_later(self, frames: list[bytes], after: int, delay_s: float) -> None:
        """:meth:`hold` ``frames`` once ``delay_s`` has passed (a delay, then a reorder)."""
        self.later += 1
        asyncio.get_running_loop().call_later(delay_s, self._hold_late, frames, after)

    def _hold_late(self, frames: list[bytes], after: int) -> None:
        self.later -= 1
        self.hold(frames, after)

    def release_held(self, client: Client) -> None:
        """Send now every frame held back for reordering, in the order they were held:
        for a sender that will send nothing more (a replay about to close), after which
        they would never come."""
        due = [frame for _, frames in self.held for frame in frames]
        self.held = []
        if due:
            client.deliver(b"".join(due), due)

    @property
    def settled(self) -> bool:
        """Whether no delay is still running: every delayed frame has been handed on (to
        the socket, to the queue of a throttle, or to a stall, which loses it)."""
        return not self.ordered and not self.later

    def send_later(
        self, client: Client, frames: list[bytes], delay_s: float, keep_order: bool
    ) -> None:
        """Send ``frames`` after ``delay_s``; with ``keep_order`` later messages wait too."""
        loop = asyncio.get_running_loop()
        if not keep_order:
            self.later += 1
            loop.call_later(delay_s, self._deliver_late, client, frames)
            return
        release = loop.time() + delay_s
        if self.ordered:
            release = max(release, self.ordered[-1][0])
        self.ordered.append((release, list(frames)))
        loop.call_at(release, self._release_ordered, client)

    def _deliver_late(self, client: Client, frames: list[bytes]) -> None:
        self.later -= 1
        client.deliver(b"".join(frames), frames)

    def _release_ordered(self, client: Client) -> None:
        now = asyncio.get_running_loop().time()
        while self.ordered and self.ordered[0][0] <= now:
            _, frames = self.ordered.popleft()
            client.deliver(b"".join(frames), frames)

    # ------------------------------------------------------------------ connection faults

    def stall(self, client: Client) -> None:
        """Half-open: send nothing, read nothing (so pings go unanswered). Stalls nest:
        the connection wakes only when every stall in force has ended."""
        self.stalls += 1
        if self.stalls > 1:
            return
        self.stalled = True
        client.ws.hold_reading("stall")
        client.ws.stop_keepalive()

    def stall_left(self) -> dict[str, int]:
        """What a ``stall_end`` report adds when other stalls stay in force: the
        connection is still stalled (``still_stalled``: by how many), though this one ended."""
        others = self.stalls - 1
        return {"still_stalled": others} if others > 0 else {}

    def unstall(self, client: Client) -> None:
        self.stalls = max(0, self.stalls - 1)
        if self.stalls:
            return
        self.stalled = False
        held_s = client.ws.release_reading("stall", forgive=True)
        if client.inbound is not None:
            # What the client sent meanwhile was not read: it comes in at once now, and
            # is no flood of the client's making.
            client.inbound.credit(held_s, asyncio.get_running_loop().time())
        client.ws.start_keepalive()
        # What was queued before the stall (a batch, a full socket's backlog): nothing
        # else would send it, since the socket drained meanwhile and will not say so.
        client.requeue_as_new()
        if self.bytes_per_s is not None:
            self._schedule_drain(client)  # a throttle in force drains at its own pace
        client.flush_pending()

    def throttle(self, client: Client, bytes_per_s: float) -> None:
        """Cap what is sent to ``bytes_per_s`` of wall-clock time; with several caps in
        force the lowest applies."""
        self.caps.append(bytes_per_s)
        self.bytes_per_s = min(self.caps)
        self._schedule_drain(client)

    def unthrottle(self, client: Client, bytes_per_s: float) -> None:
        """End one cap set by :meth:`throttle`; the others stay in force."""
        if bytes_per_s in self.caps:
            self.caps.remove(bytes_per_s)
        self.bytes_per_s = min(self.caps) if self.caps else None
        if self.bytes_per_s is None:
            client.requeue_as_new()
            client.flush_pending()

    def _schedule_drain(self, client: Client) -> None:
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().call_later(self.TICK_S, self._drain, client)

    def _drain(self, client: Client) -> None:
        """Write what the byte budget allows, every tick, while frames are queued."""
        self.draining = False
        if self.bytes_per_s is None or not client.open or self.stalled:
            return  # a stall sends nothing, a throttle's queue included: unstall resumes
        self.credit = min(self.credit + self.bytes_per_s * self.TICK_S, self.bytes_per_s)
        batch = client.take(int(self.credit), whole=True)
        self.credit -= sum(len(f) for f in batch)
        client.write(batch)
        if client.pending:
            self._schedule_drain(client)
