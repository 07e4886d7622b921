"""Faults triggered now, from outside the scenario's plan (the inspector's control
endpoint): a disconnect, reset, stall, throttle, outage, handshake refusal or delay, or
mass disconnect carried out at once on the live connections.

The plan (:mod:`simulator.net.faulting`) stays what the seed makes it; these come on
top (a handshake refused here is not the plan's to decide: :meth:`OnDemandFaults.decide`),
are reported the same way (a ``fault`` event with ``source="control"``, a count in
the stats, a row in the recording) and are kept in :attr:`OnDemandFaults.injected`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from simulator.core.faults import OUTAGE_CLOSE_CODE, HandshakeDecision
from simulator.core.model import (
    ConnectionList,
    Disconnect,
    Fault,
    FaultKind,
    MassDisconnect,
    Outage,
    Reject,
    Reset,
    Stall,
    Throttle,
)
from simulator.net.faulting import Injected
from simulator.net.log import EventKind, EventLog
from simulator.net.recorder import Recorder
from simulator.net.send_path import Client

#: The kinds that can be triggered now (message kinds act per message: they belong in
#: a plan, where their schedule says which messages).
NOW_KINDS = (
    FaultKind.DISCONNECT,
    FaultKind.RESET,
    FaultKind.STALL,
    FaultKind.THROTTLE,
    FaultKind.OUTAGE,
    FaultKind.REJECT,
    FaultKind.MASS_DISCONNECT,
)


class OnDemandFaults:
    """Carries out faults given while the server runs. ``clients()`` lists the open
    clients; ``recorder()`` the server's recorder, if it records."""

    def __init__(
        self,
        log: EventLog,
        *,
        virtual_ns: Callable[[], int],
        clients: Callable[[], list[Client]],
        speed: float,
        recorder: Callable[[], Recorder | None] = lambda: None,
    ) -> None:
        self.log = log
        self.injected: list[Injected] = []
        self.counts: Counter[str] = Counter()
        self._virtual_ns = virtual_ns
        self._clients = clients
        self._speed = speed
        self._recorder = recorder
        self._in_force: _InForce | None = None
        self._handles: list[asyncio.TimerHandle] = []

    def trigger(self, fault: Fault) -> list[int]:
        """Carry out ``fault`` now (its kind must be in :data:`NOW_KINDS`; its trigger is
        ignored: now is when). Returns the connections it hit."""
        action = fault.action
        duration_ns = fault.schedule.duration_ns
        if isinstance(action, (Outage, Reject)):
            return self._refuse(fault, action, duration_ns)
        targets = self._targets(fault)
        if isinstance(action, MassDisconnect):
            self._report(
                action.kind.value, fault.name, None, code=action.code, connections=len(targets)
            )
            for client in targets:
                client.close(action.code, action.reason)
            return [c.index for c in targets]
        for client in targets:
            self._on_connection(fault, client, duration_ns)
        return [c.index for c in targets]

    def not_open(self, indexes: tuple[int, ...]) -> list[int]:
        """Those of ``indexes`` that name no open connection now (each once, in order):
        a fault given for them alone would hit nothing."""
        open_now = {c.index for c in self._clients() if c.open}
        return [i for i in dict.fromkeys(indexes) if i not in open_now]

    def disconnect(self, indexes: list[int] | None, code: int, reason: str) -> list[int]:
        """Close the open connections ``indexes`` (``None``: all) with ``code`` now."""
        hit = [c for c in self._clients() if indexes is None or c.index in indexes]
        for client in hit:
            self._report("disconnect", "control", client.index, code=code)
            client.close(code, reason)
        return [c.index for c in hit]

    def decide(self, attempt: int) -> HandshakeDecision | None:
        """How handshake ``attempt`` (its connection index), arriving now, is refused or
        delayed while an outage or reject given here is in force and applies to it;
        ``None`` when none does.

        The answer is reported here, on ``attempt``, as the plan reports its own. The
        caller must give the client :func:`~simulator.net.handshake.fault_answer` of a
        refusal, and not let the plan decide the attempt too (the plan would report and
        count a refusal nobody got): see
        :meth:`~simulator.net.faulting.FaultInjector.number_handshake`. A delay
        (``accept``) holds the handshake: the plan's answer comes after it.
        """
        in_force = self._in_force
        if in_force is None:
            return None
        if asyncio.get_running_loop().time() >= in_force.until:
            self._in_force = None
            return None
        if attempt < in_force.after_connections:
            return None
        decision = replace(in_force.answer, attempt=attempt)
        kind, detail = decision.report(self._speed)
        self._report(kind, decision.faults[0], attempt, **detail)
        return decision

    def close(self) -> None:
        for handle in self._handles:
            handle.cancel()

    # ------------------------------------------------------------------ inside

    def _targets(self, fault: Fault) -> list[Client]:
        chosen = fault.target.connections
        after = fault.target.after_connections
        return [
            c
            for c in self._clients()
            if c.open
            and c.index >= after
            and (not isinstance(chosen, ConnectionList) or c.index in chosen.indexes)
        ]

    def _on_connection(self, fault: Fault, client: Client, duration_ns: int | None) -> None:
        action = fault.action
        if isinstance(action, Disconnect):
            self._report(action.kind.value, fault.name, client.index, code=action.code)
            client.close(action.code, action.reason)
        elif isinstance(action, Reset):
            self._report(action.kind.value, fault.name, client.index)
            client.reset()
        elif isinstance(action, Stall):
            end = self._end_ns(duration_ns)
            self._report(action.kind.value, fault.name, client.index, end_ns=end)
            client.faults().stall(client)
            if duration_ns is not None:
                self._later(duration_ns, self._unstall, fault.name, client)
        elif isinstance(action, Throttle):
            bps = action.bytes_per_s
            end = self._end_ns(duration_ns)
            self._report(action.kind.value, fault.name, client.index, bytes_per_s=bps, end_ns=end)
            client.faults().throttle(client, bps)
            if duration_ns is not None:
                self._later(duration_ns, client.faults().unthrottle, client, bps)

    def _unstall(self, name: str, client: Client) -> None:
        if client.open:
            self._report("stall_end", name, client.index, **client.faults().stall_left())
            client.faults().unstall(client)

    def _refuse(self, fault: Fault, action: Outage | Reject, duration_ns: int | None) -> list[int]:
        assert duration_ns is not None, "the control endpoint requires a duration"
        until = asyncio.get_running_loop().time() + duration_ns / 1e9 / self._speed
        after = fault.target.after_connections
        answer = _answer(fault.name, action)
        self._in_force = _InForce(until, after, answer)
        targets = self._targets(fault) if isinstance(action, Outage) else []
        delayed = {"delay_ns": answer.delay_ns} if answer.delay_ns else {}
        spared = {"after_connections": after} if after else {}
        # An outage resets the open connections (how many, as the plan reports its
        # own); a reject leaves them be: it has no such count.
        hit = {"connections": len(targets)} if isinstance(action, Outage) else {}
        self._report(
            action.kind.value,
            fault.name,
            None,
            end_ns=self._end_ns(duration_ns),
            status=answer.status,
            **delayed,
            **spared,
            **hit,
        )
        for client in targets:
            client.reset()
        return [c.index for c in targets]

    def _end_ns(self, duration_ns: int | None) -> int | None:
        return None if duration_ns is None else self._virtual_ns() + duration_ns

    def _later(self, duration_ns: int, callback: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        self._handles.append(loop.call_later(duration_ns / 1e9 / self._speed, callback, *args))

    def _report(self, kind: str, fault: str, conn: int | None, **detail: Any) -> None:
        t = self._virtual_ns()
        self.injected.append(Injected(t, kind, fault, conn, detail))
        self.counts[kind] += 1
        self.log.emit(
            EventKind.FAULT,
            conn=conn,
            injected=kind,
            fault=fault,
            t_ns=t,
            source="control",
            **detail,
        )
        recorder = self._recorder()
        if recorder is not None:
            recorder.fault(conn, {"kind": kind, "fault": fault, "t_ns": t, **detail})


@dataclass(frozen=True, slots=True)
class _InForce:
    """An outage or reject given on demand: the loop time it ends, the first connection
    number it applies to, and its answer (``attempt`` filled in per handshake)."""

    until: float
    after_connections: int
    answer: HandshakeDecision


def _answer(name: str, action: Outage | Reject) -> HandshakeDecision:
    """How an outage or reject given on demand answers a handshake, as the plan's
    would (``Handshakes.answer``): an outage refuses with 503, a reject refuses with its
    status or, with a delay, holds the handshake that long. Told to clients as the
    plan's answers are (``fault_answer``: wall time at the server's speed)."""
    status: int | None
    close_code: int | None
    if isinstance(action, Outage):
        status, close_code, delay_ns = 503, OUTAGE_CLOSE_CODE, 0
    else:
        status, close_code, delay_ns = action.status, action.close_code, action.delay_ns or 0
    return HandshakeDecision(
        attempt=0,
        status=status,
        delay_ns=delay_ns,
        faults=(name,),
        retry_after_ns=action.retry_after_ns,
        respond=action.respond,
        close_code=close_code,
    )
