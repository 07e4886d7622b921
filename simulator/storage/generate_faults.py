"""Offline rendering of a scenario that has ``[[fault]]``s: the rows a recording of
`sim run` would hold, for scripted clients, in virtual time.

Every decision is the live server's own: :class:`~simulator.core.faults.Handshakes`
answers each handshake attempt, :meth:`~simulator.core.faults.ConnectionFaults.decide`
each (connection, message), :func:`~simulator.core.faults.connection_schedule` and
:func:`~simulator.core.faults.server_schedule` say when connections and the server
fail. This module only plays them out, in time order, the way
:mod:`simulator.net.faulting` does on the real clock, and writes the rows
:class:`~simulator.net.recorder.Recorder` writes for each.

The client model (what the rows assume about clients; documented in
``docs/determinism.md``):

- ``connections`` clients each attempt a handshake at time 0, in client order;
  connections are numbered by handshake attempt, as the live server numbers them;
- a client sends nothing (no subscribe, no pings) and reads everything at once, so it
  never falls behind, and it does not notice a stall;
- when its connection ends (a disconnect, a reset, an outage, a mass disconnect) or its
  handshake is refused, it attempts again ``reconnect_after_ns`` later (a refusal
  that was delayed counts from when the refusal came);
- the run ends at ``duration``: no close rows are written for connections still open.

Rows (as a live recording holds them): ``open`` when a handshake is accepted; a ``fault``
row (``conn = -1`` for outage and mass_disconnect) with the fault as JSON for everything
injected, including ``handshake_refused``/``handshake_delayed`` on the attempt's
connection number (a refused attempt has no ``open`` row); a ``close`` row with the code
and reason (1006 and ``""`` for a reset or an outage). A close takes no time, except on
a stalled connection: the server does not read the client's answer, so the close
completes when the close timeout (2 s) drops it, and messages handed to it meanwhile
still have rows, as in a live recording. A message row is written when the
message is handed to the connection's send path, as the recorder does: a delayed or
held-back (reordered) message has its row at its scheduled time, beside its ``delay`` or
``reorder`` fault row; a corrupted one carries the corrupted bytes; a duplicated one has
one row per copy; a dropped one has only its ``drop`` fault row.

At one instant, events happen in this order: server faults, connection faults, stall
ends, closes completing (a connection being closed is still counted and fed until then),
handshake attempts (client order), then messages (to connections in the order they
opened). The live server does not plan the order of events at one instant (timers due
together), so a recording may interleave them differently; each connection's own rows
are in the same order unless two of its events fall on the same nanosecond.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from simulator.core.faults import (
    ConnectionFaults,
    FaultEvent,
    Handshakes,
    MessageDecision,
    connection_schedule,
    plan_faults,
    server_schedule,
)
from simulator.core.live import LiveState, fill
from simulator.core.model import FaultKind, Mode
from simulator.core.rates import mean_rate_per_s
from simulator.core.timeline import Timeline
from simulator.storage.schema import Kind

if TYPE_CHECKING:
    from simulator.core.model import Scenario
    from simulator.storage.generate import Plan

__all__ = ["DEFAULT_RECONNECT_AFTER_NS", "Rows", "render_faulted", "unrendered"]

#: How long a scripted client waits before it connects again (``--reconnect-after``).
DEFAULT_RECONNECT_AFTER_NS: Final = 1_000_000_000

#: The close code of a connection that ended without a close frame (RFC 6455 §7.1.5).
CLOSE_ABNORMAL: Final = 1006
#: How long the server waits for a client to answer its close frame before it drops the
#: connection: ``simulator.net.common.CLOSE_TIMEOUT_S`` (storage may not import net).
CLOSE_TIMEOUT_NS: Final = 2_000_000_000

#: Messages a feed reads from its timeline at a time (memory against speed; no effect
#: on the rows).
_FEED_WINDOW_MESSAGES: Final = 1024

# Order of events due at the same instant (see the module docstring). A close completes
# after the faults of its instant: on the live server the closing handshake takes a few
# loop iterations, and every timer due at that instant runs first, so a second fault at
# the same instant still finds the connection there (and counts it).
_SERVER, _CONNECTION, _STALL_END, _CLOSED, _HANDSHAKE = range(5)


def unrendered(scenario: Scenario) -> list[str]:
    """One line for each fault whose effect the rows cannot show in full, saying why;
    empty when the file holds everything a recording would. Print them on stderr."""
    notes = []
    for fault in scenario.faults:
        if fault.kind is FaultKind.STALL:
            notes.append(
                f"fault {fault.name!r} (stall): rendered for clients that send no pings; a "
                "client with its own keepalive would time out and reconnect during it, "
                "which depends on that client and is not in the file"
            )
    return notes


@dataclass
class Rows:
    """Recording columns being filled, one list per column (see :data:`SCHEMA`)."""

    t_ns: list[int] = field(default_factory=list)
    conn: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    stream: list[str | None] = field(default_factory=list)
    payload: list[bytes | None] = field(default_factory=list)
    close_code: list[int | None] = field(default_factory=list)
    close_reason: list[str | None] = field(default_factory=list)
    fault: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.t_ns)

    def add(
        self,
        t: int,
        conn: int,
        kind: Kind,
        *,
        stream: str | None = None,
        payload: bytes | None = None,
        code: int | None = None,
        reason: str | None = None,
        fault: str | None = None,
    ) -> None:
        self.t_ns.append(t)
        self.conn.append(conn)
        self.kind.append(kind.value)
        self.stream.append(stream)
        self.payload.append(payload)
        self.close_code.append(code)
        self.close_reason.append(reason)
        self.fault.append(fault)


@dataclass(eq=False)
class _Connection:
    index: int
    client: int
    faults: ConnectionFaults
    feed: _Feed | None  # per-connection mode only
    stalls: int = 0  # stalls in force (they nest)
    sent: int = 0  # messages handed to it so far (the live value messages_sent)
    #: The close code and reason once the server started closing it: it is still fed
    #: (and recorded) until the close completes, but no longer faulted.
    closing: tuple[int, str] | None = None


class _Feed:
    """A timeline whose time 0 falls at scenario time ``origin_ns``, read a window of
    about ``_FEED_WINDOW_MESSAGES`` messages at a time (reading it one instant at a time
    costs more than deciding the faults)."""

    __slots__ = ("_names", "_pending", "_pos", "_window_ns", "origin_ns", "timeline")

    def __init__(self, timeline: Timeline, origin_ns: int, names: list[str]) -> None:
        self.timeline = timeline
        self.origin_ns = origin_ns
        self._names = names
        rate = sum(mean_rate_per_s(s.schedule) for s in timeline.scenario.streams)
        self._window_ns = max(1_000_000, int(_FEED_WINDOW_MESSAGES / max(rate, 1e-9) * 1e9))
        self._pending: list[tuple[int, str, int, bytes]] = []  # (time, stream, seq, payload)
        self._pos = 0

    def next_ns(self) -> int | None:
        """When the next message is due (scenario time), ``None`` when none is left."""
        if self._pos >= len(self._pending):
            nxt = self.timeline.next_time()
            if nxt is None:
                return None
            batch = self.timeline.take_until(nxt + self._window_ns)
            names, origin = self._names, self.origin_ns
            self._pending = [
                (origin + t, names[s], q, p)
                for t, s, q, p in zip(
                    batch.t_ns.tolist(),
                    batch.stream.tolist(),
                    batch.seq.tolist(),
                    batch.payloads,
                    strict=True,
                )
            ]
            self._pos = 0
        return self._pending[self._pos][0]

    def take_at(self, t_ns: int) -> list[tuple[int, str, int, bytes]]:
        """The messages due at scenario time ``t_ns`` (the feed's next time)."""
        start = end = self._pos
        pending = self._pending
        while end < len(pending) and pending[end][0] == t_ns:
            end += 1
        self._pos = end
        return pending[start:end]


class _Session:
    """The server and its scripted clients, played out in virtual time."""

    def __init__(self, plan: Plan, reconnect_after_ns: int, rows: Callable[[], Rows]) -> None:
        self.plan = plan
        self.scenario = plan.scenario
        self.reconnect_ns = reconnect_after_ns
        self.faults = plan_faults(plan.scenario, plan.seed)
        self.handshakes = Handshakes(self.faults)
        self.per_connection = plan.scenario.server.mode is Mode.PER_CONNECTION
        self.names = [s.name for s in plan.scenario.streams]
        self.open: dict[int, _Connection] = {}  # in the order they opened
        self.mass_windows: list[FaultEvent] = []
        self.rows = rows  # the rows being filled (swapped by the caller)
        self._queue: list[tuple[int, int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self.broadcast = (
            None
            if self.per_connection
            else _Feed(
                Timeline(plan.scenario, plan.seed, scope=None, epoch_ns=plan.epoch_ns),
                0,
                self.names,
            )
        )

    # ------------------------------------------------------------------ scheduling

    def at(self, t: int, phase: int, action: Callable[..., None], *args: Any) -> None:
        if t < self.plan.duration_ns:
            heapq.heappush(self._queue, (t, phase, next(self._order), action, args))

    def run(self) -> Iterator[int]:
        """Play everything out; yields the scenario time reached after each step."""
        for client in range(self.plan.connections):
            self.at(0, _HANDSHAKE, self.attempt, client)
        for event in server_schedule(self.faults, self.plan.duration_ns):
            self.at(event.t_ns, _SERVER, self.server_fault, event)
        end = self.plan.duration_ns
        while True:
            t_msg, feeds = self._next_messages()
            if self._queue and (t_msg is None or self._queue[0][0] <= t_msg):
                t, _, _, action, args = heapq.heappop(self._queue)
                action(t, *args)
                yield t
                continue
            if t_msg is None or t_msg >= end:
                return
            for feed in feeds:
                self.messages(t_msg, feed)
            yield t_msg

    def _next_messages(self) -> tuple[int | None, list[_Feed]]:
        """When the next messages are due, and the feeds they come from (in the order
        their connections opened)."""
        if self.broadcast is not None:
            return self.broadcast.next_ns(), [self.broadcast]
        best: int | None = None
        feeds: list[_Feed] = []
        for c in self.open.values():
            assert c.feed is not None
            t = c.feed.next_ns()
            if t is None or (best is not None and t > best):
                continue
            if best is None or t < best:
                best, feeds = t, []
            feeds.append(c.feed)
        return best, feeds

    # ------------------------------------------------------------------ rows

    def fault_row(self, t: int, conn: int | None, kind: str, fault: str, **detail: Any) -> None:
        # The same JSON, keys in the same order, as FaultInjector._report records.
        text = orjson.dumps({"kind": kind, "fault": fault, "t_ns": t, **detail}, default=str)
        self.rows().add(t, -1 if conn is None else conn, Kind.FAULT, fault=text.decode())

    # ------------------------------------------------------------------ clients

    def attempt(self, t: int, client: int) -> None:
        """Client ``client`` attempts a handshake at ``t``."""
        if len(self.open) >= self.scenario.server.max_connections:
            # Refused with 503 before any fault is asked (no row, no connection number).
            self.at(t + self.reconnect_ns, _HANDSHAKE, self.attempt, client)
            return
        decision = self.handshakes.decide(t)
        if decision.faults:
            kind, detail = decision.report(1.0)  # virtual time: scenario seconds
            self.fault_row(t, decision.attempt, kind, ",".join(decision.faults), **detail)
        answered = t + decision.delay_ns
        if decision.status is not None:
            self.at(answered + self.reconnect_ns, _HANDSHAKE, self.attempt, client)
        elif answered == t:
            self.opened(t, client, decision.attempt)
        else:
            self.at(answered, _HANDSHAKE, self.opened, client, decision.attempt)

    def opened(self, t: int, client: int, index: int) -> None:
        self.rows().add(t, index, Kind.OPEN)
        feed = None
        if self.per_connection:
            timeline = Timeline(
                self.scenario, self.plan.seed, scope=index, epoch_ns=self.plan.epoch_ns + t
            )
            feed = _Feed(timeline, t, self.names)
        conn = _Connection(index, client, self.faults.connection(index), feed)
        self.open[index] = conn
        for window in self.mass_windows:
            if window.t_ns <= t and (window.end_ns is None or t < window.end_ns):
                self.server_fault(t, window, [conn])
        for event in connection_schedule(self.faults, index, self.plan.duration_ns, opened_ns=t):
            self.at(event.t_ns, _CONNECTION, self.connection_fault, event, conn)

    def close(self, t: int, conn: _Connection, code: int, reason: str) -> None:
        """The server starts closing ``conn`` at ``t`` (as ``Client.close``). The client
        answers at once, but a stalled server does not read the answer: then the close
        completes when the close timeout drops the connection."""
        if conn.closing is not None or self.open.get(conn.index) is not conn:
            return
        conn.closing = (code, reason)
        done = t + CLOSE_TIMEOUT_NS if conn.stalls else t
        self.at(done, _CLOSED, self.ended, conn)

    def reset(self, t: int, conn: _Connection) -> None:
        """The server drops ``conn`` with no close frame (as ``Client.reset``); one it
        was closing ends with the close frame it sent."""
        if conn.closing is None:
            conn.closing = (CLOSE_ABNORMAL, "")
        self.at(t, _CLOSED, self.ended, conn)

    def ended(self, t: int, conn: _Connection) -> None:
        """``conn`` is gone at ``t``; its client connects again after the reconnect delay."""
        if self.open.get(conn.index) is not conn:
            return
        del self.open[conn.index]
        code, reason = conn.closing or (CLOSE_ABNORMAL, "")
        self.rows().add(t, conn.index, Kind.CLOSE, code=code, reason=reason)
        self.at(t + self.reconnect_ns, _HANDSHAKE, self.attempt, conn.client)

    # ------------------------------------------------------------------ faults

    def connection_fault(self, t: int, event: FaultEvent, conn: _Connection) -> None:
        """As FaultInjector._apply_connection."""
        if self.open.get(conn.index) is not conn or conn.closing is not None:
            return
        kind, name, index = event.kind, event.fault, conn.index
        if kind is FaultKind.DISCONNECT:
            self.fault_row(t, index, kind.value, name, code=event.params["code"])
            self.close(t, conn, int(event.params["code"]), str(event.params["reason"]))
        elif kind is FaultKind.RESET:
            self.fault_row(t, index, kind.value, name)
            self.reset(t, conn)
        elif kind is FaultKind.STALL:
            self.fault_row(t, index, kind.value, name, end_ns=event.end_ns)
            conn.stalls += 1
            if event.end_ns is not None:
                self.at(event.end_ns, _STALL_END, self.stall_end, event, conn)
        elif kind is FaultKind.THROTTLE:
            bps = float(event.params["bytes_per_s"])
            self.fault_row(t, index, kind.value, name, bytes_per_s=bps, end_ns=event.end_ns)

    def stall_end(self, t: int, event: FaultEvent, conn: _Connection) -> None:
        if self.open.get(conn.index) is conn and conn.closing is None:
            # As FaultEffects.stall_left: nested stalls keep the connection stalled.
            others = {"still_stalled": conn.stalls - 1} if conn.stalls > 1 else {}
            self.fault_row(t, conn.index, "stall_end", event.fault, **others)
            conn.stalls -= 1

    def server_fault(
        self, t: int, event: FaultEvent, only: list[_Connection] | None = None
    ) -> None:
        """As FaultInjector._apply_server; ``only`` is a connection that opened inside a
        mass disconnect's window."""
        targets = list(self.open.values()) if only is None else only
        if event.kind is FaultKind.OUTAGE:
            end, n = event.end_ns, len(targets)
            self.fault_row(t, None, event.kind.value, event.fault, end_ns=end, connections=n)
            for conn in targets:
                self.reset(t, conn)
        elif event.kind is FaultKind.MASS_DISCONNECT:
            if only is None and event.end_ns is not None:
                self.mass_windows.append(event)
            code = event.params["code"]
            self.fault_row(
                t, None, event.kind.value, event.fault, code=code, connections=len(targets)
            )
            for conn in targets:
                self.close(t, conn, int(code), str(event.params["reason"]))
        # reject is answered at handshake time (see attempt()).

    # ------------------------------------------------------------------ messages

    def messages(self, t: int, feed: _Feed) -> None:
        """The messages ``feed`` has due at ``t``, to each connection it feeds."""
        due = feed.take_at(t)
        targets = (
            list(self.open.values())
            if self.broadcast is not None
            else [c for c in self.open.values() if c.feed is feed]
        )
        live = self.scenario.has_live
        for conn in targets:  # one connection's messages, then the next's, as the fanout
            for _, stream, seq, payload in due:
                if live:  # as the fanout fills them, before faults see the bytes
                    payload = fill(payload, LiveState(conn.index, len(self.open), conn.sent, t))
                    conn.sent += 1
                decision = conn.faults.decide(stream, seq, payload, t)
                self.message(t, conn.index, stream, seq, payload, decision)

    def message(
        self, t: int, index: int, stream: str, seq: int, payload: bytes, d: MessageDecision
    ) -> None:
        """The rows of one message through its decision, as FaultInjector.deliver
        records them."""
        rows = self.rows()
        if d.clean:
            rows.add(t, index, Kind.TEXT, stream=stream, payload=payload)
            return
        name = ",".join(d.faults)
        if d.drop:
            self.fault_row(t, index, "drop", name, stream=stream, seq=seq)
            return
        body = payload
        if d.corrupt is not None:
            self.fault_row(t, index, "corrupt", name, stream=stream, seq=seq)
            body = d.corrupt
        for _ in range(1 + d.copies):
            rows.add(t, index, Kind.TEXT, stream=stream, payload=body)
        if d.copies:
            self.fault_row(t, index, "duplicate", name, stream=stream, seq=seq, copies=d.copies)
        if d.hold:
            self.fault_row(t, index, "reorder", name, stream=stream, seq=seq, hold=d.hold)
        if d.delay_ns:
            self.fault_row(t, index, "delay", name, stream=stream, seq=seq, delay_ns=d.delay_ns)


def render_faulted(
    plan: Plan, reconnect_after_ns: int, rows_per_chunk: int
) -> Iterator[tuple[Rows, int]]:
    """``plan``'s rows under the client model above, about ``rows_per_chunk`` at a
    time, each chunk with the scenario time reached; memory stays flat."""
    current = Rows()
    session = _Session(plan, reconnect_after_ns, lambda: current)
    for t in session.run():
        if len(current) >= rows_per_chunk:
            yield current, t
            current = Rows()
    yield current, plan.duration_ns
