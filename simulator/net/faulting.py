"""Faults applied on the real clock: the server's side of :mod:`simulator.core.faults`.

The planner decides (purely, from seed, fault, connection and message index); this
module only carries decisions out at the right moment and reports each one:

- message faults: :meth:`FaultInjector.deliver` is called per (client, message) instead
  of writing the frame directly; it drops, corrupts, duplicates, delays or holds back
  (reorders) it;
- connection faults (disconnect, reset, stall, throttle) and server faults (outage,
  mass_disconnect) are timers set from the planner's schedules, window by window;
- handshake faults (outage, reject) answer :meth:`FaultInjector.handshake`.

Every fault carried out is an :class:`Injected` record in ``injector.injected``, a
``fault`` event in the server log, and a count in the stats.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.core.faults import (
    FaultEvent,
    FaultPlan,
    HandshakeDecision,
    Handshakes,
    connection_schedule,
    server_schedule,
)
from simulator.core.model import FaultKind
from simulator.core.numbering import Numbering
from simulator.net.log import EventKind, EventLog
from simulator.net.recorder import Recorder
from simulator.net.send_path import Client, binary_frame, text_frame

#: Connection and server faults are planned this much scenario time ahead at a time.
WINDOW_NS = 60_000_000_000


@dataclass(frozen=True, slots=True)
class Injected:
    """One fault carried out: scenario time, connection (None: server-wide), what."""

    t_ns: int
    kind: str
    fault: str
    conn: int | None
    detail: dict[str, Any] = field(default_factory=dict)


class FaultInjector:
    """Carries out ``plan`` for one server. The server calls it; it never calls back
    into the server except through ``clients()`` and the clock functions given."""

    def __init__(
        self,
        plan: FaultPlan,
        log: EventLog,
        *,
        virtual_ns: Callable[[], int],
        loop_time: Callable[[int], float],
        clients: Callable[[], list[Client]],
        speed: float,
        numbering: Numbering | None = None,
    ) -> None:
        self.plan = plan
        self.log = log
        self.injected: list[Injected] = []
        self.counts: Counter[str] = Counter()
        self.has_message_faults = bool(plan.message_faults)
        self._handshakes = Handshakes(plan, numbering)
        self._virtual_ns = virtual_ns
        self._loop_time = loop_time
        self._clients = clients
        self._speed = speed
        self._faults: dict[int, Any] = {}  # conn -> ConnectionFaults
        self._opened: dict[int, int] = {}
        #: Scenario time up to which each connection's faults are planned (excluded).
        self._conn_planned: dict[int, int] = {}
        self._planned_until = 0
        self._timers: list[asyncio.TimerHandle] = []
        self._mass_windows: list[FaultEvent] = []
        self.recorder: Recorder | None = None  # set by the server when it records

    # ------------------------------------------------------------------ reporting

    def _report(self, kind: str, fault: str, conn: int | None, **detail: Any) -> None:
        t = self._virtual_ns()
        self.injected.append(Injected(t, kind, fault, conn, detail))
        self.counts[kind] += 1
        self.log.emit(EventKind.FAULT, conn=conn, injected=kind, fault=fault, t_ns=t, **detail)
        if self.recorder is not None:
            self.recorder.fault(conn, {"kind": kind, "fault": fault, "t_ns": t, **detail})

    # ------------------------------------------------------------------ handshakes

    def number_handshake(self) -> int:
        """Number the next handshake attempt (its connection index) without deciding it.
        Then either call :meth:`handshake` with it, or answer it otherwise (a refusal on
        demand): the plan then neither reports it nor counts it against a ``limit``."""
        return self._handshakes.number()

    def handshake(self, attempt: int | None = None) -> HandshakeDecision:
        """Decide handshake ``attempt`` (from :meth:`number_handshake`; ``None``: the next
        one, numbered now) and report what the plan does to it. The decision's
        ``attempt`` is the connection index."""
        if attempt is None:
            attempt = self._handshakes.number()
        decision = self._handshakes.answer(attempt, self._virtual_ns())
        if decision.faults:
            kind, detail = decision.report(self._speed)
            self._report(kind, ",".join(decision.faults), decision.attempt, **detail)
        return decision

    # ------------------------------------------------------------------ connections

    def connected(self, client: Client, opened_ns: int) -> None:
        """Plan ``client``'s faults from now to the end of the current window."""
        self._faults[client.index] = self.plan.connection(client.index)
        self._opened[client.index] = opened_ns
        for window in self._mass_windows:
            if window.t_ns <= opened_ns and (window.end_ns is None or opened_ns < window.end_ns):
                self._apply_server(window, [client])
        horizon = max(self._planned_until, opened_ns + 1)
        self._conn_planned[client.index] = horizon
        for event in connection_schedule(self.plan, client.index, horizon, opened_ns=opened_ns):
            self._at(event.t_ns, self._apply_connection, event, client)

    def disconnected(self, client: Client) -> None:
        self._faults.pop(client.index, None)
        self._opened.pop(client.index, None)
        self._conn_planned.pop(client.index, None)

    async def run(self) -> None:
        """Plan server and connection faults window by window, for as long as it runs."""
        loop = asyncio.get_running_loop()
        start = 0
        while True:
            end = start + WINDOW_NS
            self._planned_until = end
            for event in server_schedule(self.plan, end):
                if event.t_ns >= start:
                    self._at(event.t_ns, self._apply_server, event, None)
            for client in self._clients():
                opened = self._opened.get(client.index)
                if opened is None:
                    continue
                # From where this connection's plan stands: one that opened after the
                # window began (before this loop woke) has its first events already.
                planned = self._conn_planned.get(client.index, start)
                if planned >= end:
                    continue
                events = connection_schedule(self.plan, client.index, end, opened_ns=opened)
                for event in events:
                    if event.t_ns >= planned:
                        self._at(event.t_ns, self._apply_connection, event, client)
                self._conn_planned[client.index] = end
            await asyncio.sleep(max(0.0, self._loop_time(end) - loop.time()))
            start = end

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _at(self, t_ns: int, callback: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_at(self._loop_time(t_ns), callback, *args))

    def _apply_connection(self, event: FaultEvent, client: Client) -> None:
        if client.index not in self._faults or not client.open:
            return
        kind = event.kind
        if kind is FaultKind.DISCONNECT:
            self._report(kind.value, event.fault, client.index, code=event.params["code"])
            client.close(int(event.params["code"]), str(event.params["reason"]))
        elif kind is FaultKind.RESET:
            self._report(kind.value, event.fault, client.index)
            client.reset()
        elif kind is FaultKind.STALL:
            self._report(kind.value, event.fault, client.index, end_ns=event.end_ns)
            client.faults().stall(client)
            if event.end_ns is not None:
                self._at(event.end_ns, self._end_stall, event, client)
        elif kind is FaultKind.THROTTLE:
            bps = float(event.params["bytes_per_s"])
            self._report(
                kind.value, event.fault, client.index, bytes_per_s=bps, end_ns=event.end_ns
            )
            client.faults().throttle(client, bps)
            if event.end_ns is not None:
                self._at(event.end_ns, client.faults().unthrottle, client, bps)

    def _end_stall(self, event: FaultEvent, client: Client) -> None:
        if client.open:
            self._report("stall_end", event.fault, client.index, **client.faults().stall_left())
            client.faults().unstall(client)

    def _apply_server(self, event: FaultEvent, only: list[Client] | None) -> None:
        kind = event.kind
        targets = self._clients() if only is None else only
        if kind is FaultKind.OUTAGE:
            self._report(
                kind.value, event.fault, None, end_ns=event.end_ns, connections=len(targets)
            )
            for client in targets:
                client.reset()
        elif kind is FaultKind.MASS_DISCONNECT:
            if only is None and event.end_ns is not None:
                self._mass_windows.append(event)
            self._report(
                kind.value, event.fault, None, code=event.params["code"], connections=len(targets)
            )
            for client in targets:
                client.close(int(event.params["code"]), str(event.params["reason"]))
        # reject is answered at handshake time (see handshake()).

    # ------------------------------------------------------------------ messages

    def deliver(
        self,
        client: Client,
        t_ns: int,
        stream: str,
        seq: int,
        payload: bytes,
        *,
        binary: bool = False,
    ) -> None:
        """Send one message to ``client`` through its message faults.

        ``t_ns`` is the message's scenario time since server start (per-connection
        timelines add their connection's start); ``seq`` its index in ``stream``, from 1.
        ``binary`` sends it in a binary frame (replayed recordings have them).
        """
        framed = binary_frame if binary else text_frame
        faults = self._faults.get(client.index)
        decision = None if faults is None else faults.decide(stream, seq, payload, t_ns)
        if decision is None or decision.clean:
            if self.recorder is not None:
                self.recorder.sent(client.index, [stream], [payload])
            if client.faulted is None:
                client.deliver(framed(payload), [framed(payload)])
            else:
                client.faulted.send_frames(client, [framed(payload)])
            return
        name = ",".join(decision.faults)
        if decision.drop:
            self._report("drop", name, client.index, stream=stream, seq=seq)
            return
        body = payload
        if decision.corrupt is not None:
            self._report("corrupt", name, client.index, stream=stream, seq=seq)
            body = decision.corrupt
        frame = framed(body)
        frames = [frame] * (1 + decision.copies)
        if self.recorder is not None:
            self.recorder.sent(client.index, [stream] * len(frames), [body] * len(frames))
        if decision.copies:
            self._report(
                "duplicate", name, client.index, stream=stream, seq=seq, copies=decision.copies
            )
        if decision.hold:
            self._report("reorder", name, client.index, stream=stream, seq=seq, hold=decision.hold)
            if decision.delay_ns:
                # Delayed, then held back: it joins the reorder queue when its delay ends.
                self._report(
                    "delay", name, client.index, stream=stream, seq=seq, delay_ns=decision.delay_ns
                )
                client.faults().hold_later(
                    frames, decision.hold, decision.delay_ns / 1e9 / self._speed
                )
            else:
                client.faults().hold(frames, decision.hold)
            return
        if decision.delay_ns:
            self._report(
                "delay", name, client.index, stream=stream, seq=seq, delay_ns=decision.delay_ns
            )
            client.faults().send_later(
                client, frames, decision.delay_ns / 1e9 / self._speed, decision.keep_order
            )
            return
        client.faults().send_frames(client, frames)
