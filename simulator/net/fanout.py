"""Fan-out for `sim run`: one batch of timeline messages to every client that should
have it. Each message is framed once; the frames a subscription set selects are
joined once and written to every client with that set. With message faults in force,
each (client, message) goes through the fault injector instead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.protocol import State

from simulator.core.live import LiveState, fill
from simulator.core.timeline import Batch
from simulator.net.common import ScenarioClock
from simulator.net.faulting import FaultInjector
from simulator.net.recorder import Recorder
from simulator.net.send_path import Client, text_frame, write_now
from simulator.net.stats import Counters


@dataclass(frozen=True, slots=True)
class Sent:
    """One message as a client was sent it (kept when ``log_sends`` is on)."""

    conn: int
    t_ns: int  # virtual time the timeline planned it for
    stream: str
    payload: bytes


def deliver_to_all(clients: Sequence[Client], data: bytes, frames: list[bytes]) -> None:
    """``client.deliver(data, frames)`` for each of ``clients``, with the common case
    inlined: a broadcast's time goes here, once per client per pass."""
    count, is_open = len(frames), State.OPEN
    for client in clients:
        if (
            client.faulted is None
            and not client.closing
            and not client.pending
            and client.protocol.state is is_open
            and client.fd >= 0
            and not client.transport.get_write_buffer_size()
            and not client.transport.is_closing()  # aborted: its buffer dropped, not sent
        ):
            write_now(client.transport, client.fd, data)
            client.frames_sent += count
        else:
            client.deliver(data, frames)  # buffered, queued, held by a fault, closing...


class Fanout:
    """Sends batches for one server. Set ``recorder`` to record what is sent."""

    def __init__(
        self,
        names: Sequence[str],
        types: Sequence[str],
        clock: ScenarioClock,
        counters: Counters,
        faults: FaultInjector | None,
        log_sends: bool,
        connected: Callable[[], int] | None = None,
        per_client_live: bool = True,
    ) -> None:
        """``connected`` (how many clients the server holds) turns on filling in live
        values (:mod:`simulator.core.live`). With ``per_client_live`` (a live value of
        :data:`~simulator.core.live.PER_CLIENT` is sent) each client gets its own bytes;
        without, a message is filled once and framed once for all, as without live values."""
        self.names = list(names)
        self._types = list(types)
        self._clock = clock
        self._counters = counters
        self._faults = faults if faults is not None and faults.has_message_faults else None
        self.recorder: Recorder | None = None
        self.sent: list[Sent] | None = [] if log_sends else None
        self._connected = connected
        self._per_client_live = per_client_live

    def send(self, batch: Batch, origin_ns: int, targets: Sequence[Client]) -> None:
        """Send ``batch`` (whose times count from scenario time ``origin_ns``) to each
        of ``targets`` that is subscribed to a message's type."""
        self._count(batch, origin_ns)
        if self._faults is not None:
            self._send_through_faults(batch, origin_ns, targets)
            return
        payloads = batch.payloads
        if self._connected is not None:
            if self._per_client_live:
                self._send_live(batch, origin_ns, targets)
                return
            connected = self._connected()
            times = batch.t_ns.tolist()
            payloads = [
                fill(p, LiveState(-1, connected, 0, origin_ns + t))
                for t, p in zip(times, payloads, strict=True)
            ]
        frames = [text_frame(p) for p in payloads]
        streams = batch.stream.tolist()
        planned = batch.t_ns.tolist()
        groups: dict[frozenset[str] | None, list[Client]] = {}
        for client in targets:
            groups.setdefault(client.subscriptions, []).append(client)
        recorder, sent, names = self.recorder, self.sent, self.names
        for subs, members in groups.items():
            if subs is None:
                picked = list(range(len(frames)))
            else:
                types = self._types
                picked = [k for k, s in enumerate(streams) if types[s] in subs]
            if not picked:
                continue
            chosen = [frames[k] for k in picked]
            data = b"".join(chosen)
            if recorder is None and sent is None:
                deliver_to_all(members, data, chosen)
                continue
            if recorder is not None:
                sent_streams: list[str | None] = [names[streams[k]] for k in picked]
                sent_payloads = [payloads[k] for k in picked]
            for client in members:
                client.deliver(data, chosen)
                if recorder is not None:
                    recorder.sent(client.index, sent_streams, sent_payloads)
                if sent is not None:
                    sent.extend(
                        Sent(client.index, planned[k], names[streams[k]], payloads[k])
                        for k in picked
                    )

    def _send_live(self, batch: Batch, origin_ns: int, targets: Sequence[Client]) -> None:
        """Live values: each client's own bytes (its index, its count of messages)."""
        assert self._connected is not None
        connected = self._connected()
        types, names = self._types, self.names
        rows = list(zip(batch.t_ns.tolist(), batch.stream.tolist(), batch.payloads, strict=True))
        for client in targets:
            subs = client.subscriptions
            streams: list[str | None] = []
            payloads: list[bytes] = []
            for t, s, payload in rows:
                if subs is None or types[s] in subs:
                    state = LiveState(client.index, connected, client.live_sent, origin_ns + t)
                    client.live_sent += 1
                    streams.append(names[s])
                    payloads.append(fill(payload, state))
                    if self.sent is not None:
                        self.sent.append(Sent(client.index, t, names[s], payloads[-1]))
            if not payloads:
                continue
            frames = [text_frame(p) for p in payloads]
            client.deliver(b"".join(frames), frames)
            if self.recorder is not None:
                self.recorder.sent(client.index, streams, payloads)

    def _count(self, batch: Batch, origin_ns: int) -> None:
        # The clock first: lateness is when the batch reached the send path, not after
        # the counting below.
        loop_now = asyncio.get_running_loop().time()
        counters = self._counters
        # A plain loop, not np.unique: a live batch holds one or two messages. Sorted,
        # so that new streams enter the counter in scenario order, as they did.
        by_stream, names = counters.messages_by_stream, self.names
        for i in sorted(batch.stream.tolist()):
            by_stream[names[i]] += 1
        loop_time = self._clock.loop_time
        for t in batch.t_ns.tolist():
            counters.lateness_ns.append(int((loop_now - loop_time(origin_ns + t)) * 1e9))

    def _send_through_faults(self, batch: Batch, origin_ns: int, targets: Sequence[Client]) -> None:
        """The slow path: one decision per (client, message), made by the fault planner."""
        assert self._faults is not None
        deliver = self._faults.deliver
        types, names = self._types, self.names
        connected = self._connected
        rows = list(
            zip(
                batch.t_ns.tolist(),
                batch.stream.tolist(),
                batch.seq.tolist(),
                batch.payloads,
                strict=True,
            )
        )
        for client in targets:
            subs = client.subscriptions
            for t, s, seq, payload in rows:
                if subs is None or types[s] in subs:
                    if connected is not None:  # before faults see (or corrupt) the bytes
                        state = LiveState(
                            client.index, connected(), client.live_sent, origin_ns + t
                        )
                        client.live_sent += 1
                        payload = fill(payload, state)
                    deliver(client, origin_ns + t, names[s], seq, payload)
                    if self.sent is not None:
                        self.sent.append(Sent(client.index, t, names[s], payload))
