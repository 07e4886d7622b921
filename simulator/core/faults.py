"""Fault decisions: what each ``[[fault]]`` of a scenario does to which message, connection
and handshake, as pure functions of ``(plan, connection, stream, seq, time)``.

Nothing here sleeps, reads a clock or touches a socket: the server asks and applies.

- **Message level** (drop, delay, duplicate, reorder, corrupt, burst_loss): :func:`decide`
  answers for one outgoing message with a :class:`MessageDecision`. Its draws are a hash
  of ``(seed, "fault", name, conn, stream, seq)``: blake2b-256 of the derivation key of
  :func:`~simulator.core.draws.derive_key` followed by ``seq`` as 8 little-endian bytes,
  read as four 64-bit words. So the decision for message ``k`` is the same whichever
  messages were asked about before, and in which order: random access.
  ``burst_loss`` is a Markov chain, whose state at ``seq`` depends on the messages before
  it: it runs from message 1 on ``Draws(seed, "fault", name, conn, stream)``, one word
  per message (skipped messages included). :class:`ConnectionFaults` keeps the chain
  between calls, so a caller that asks in seq order pays O(1) a message; asked out of
  order, it starts the chain again: slower, same answer.
- **Connection level** (disconnect, reset, stall, throttle): :func:`connection_schedule`.
- **Server level** (outage, reject, mass_disconnect): :func:`server_schedule`, and
  :class:`Handshakes` for the answer to each handshake.

Times are scenario time: nanoseconds since the server started, on its (virtual) clock,
in every server mode. In per-connection mode a timeline's times count from the
connection's start: add the connect time before asking.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeAlias

from simulator.core.corrupt import corrupt
from simulator.core.draws import Draws, derive_key, unit
from simulator.core.jsonvalues import MISSING, json_equal, parse
from simulator.core.model import (
    JSON,
    BurstLoss,
    ConnectionEvery,
    ConnectionFraction,
    ConnectionList,
    Corrupt,
    Delay,
    Disconnect,
    Drop,
    Duplicate,
    Fault,
    FaultAt,
    FaultEvery,
    FaultKind,
    FaultLevel,
    FaultPoisson,
    FaultWindow,
    FixedLatency,
    Latency,
    MassDisconnect,
    NormalLatency,
    Outage,
    ParetoLatency,
    Reject,
    Reorder,
    Respond,
    Scenario,
    Throttle,
    Trigger,
    UniformLatency,
)
from simulator.core.numbering import Numbering

__all__ = [
    "NO_FAULT",
    "ConnectionFaults",
    "FaultEvent",
    "FaultPlan",
    "HandshakeDecision",
    "Handshakes",
    "MessageDecision",
    "connection_schedule",
    "decide",
    "plan_faults",
    "retry_after_at_speed",
    "server_schedule",
]

_NS_PER_S: Final = 1_000_000_000
_MAX_NS: Final = 36_500 * 86_400 * _NS_PER_S  # 100 years: the longest duration a file may write
_DOUBLE_SCALE: Final = 2.0**-53
_CHUNK: Final = 256  # words drawn at a time by chains and Poisson schedules (no effect on output)

Params: TypeAlias = Mapping[str, int | float | str]

#: What an outage with ``respond = "close"`` closes with: 1013, Try Again Later.
OUTAGE_CLOSE_CODE: Final = 1013


# ============================================================================ the plan


class FaultPlan:
    """A scenario's faults for one seed, split by level; share it between connections.

    Faults keep their file order within each level; that order breaks ties.
    """

    __slots__ = ("connection_faults", "faults", "message_faults", "seed", "server_faults")

    def __init__(self, faults: Sequence[Fault], seed: int) -> None:
        names = [f.name for f in faults]
        if len(set(names)) != len(names):
            raise ValueError(f"fault names must be unique (they seed the draws): {names}")
        self.seed = seed
        self.faults = tuple(faults)
        self.message_faults = tuple(f for f in faults if f.level is FaultLevel.MESSAGE)
        self.connection_faults = tuple(f for f in faults if f.level is FaultLevel.CONNECTION)
        self.server_faults = tuple(f for f in faults if f.level is FaultLevel.SERVER)

    def connection(self, conn: int) -> ConnectionFaults:
        """The message-level faults of connection ``conn``; make one per connection."""
        return ConnectionFaults(self, conn)


def plan_faults(scenario: Scenario, seed: int | None = None) -> FaultPlan:
    """The plan of ``scenario``'s faults; ``seed`` (``--seed``) overrides the file's."""
    return FaultPlan(scenario.faults, scenario.seed if seed is None else seed)


# ============================================================================ draws


def _key(seed: int, *parts: str | int) -> bytes:
    words = derive_key(seed, *parts)
    return struct.pack(f"<{len(words)}I", *words)


def _hash_words(prefix: bytes, index: int) -> tuple[int, int, int, int]:
    """Four 64-bit words for item ``index`` under ``prefix`` (a :func:`_key`)."""
    digest = hashlib.blake2b(prefix + index.to_bytes(8, "little"), digest_size=32).digest()
    words: tuple[int, int, int, int] = struct.unpack("<4Q", digest)
    return words


def _unit(word: int) -> float:
    """A word as a double in [0, 1): its top 53 bits, as :func:`~simulator.core.draws.unit`."""
    return (word >> 11) * _DOUBLE_SCALE


class _Occurrences:
    """The start times of one fault's occurrences in one scope, in order.

    Each start is computed (``at``, ``every``, ``window``) or drawn (``poisson``, one word
    each from ``Draws(seed, "fault", name, scope, "poisson")``) from time 0 on, so the
    ``k``-th occurrence is the same whatever was asked before. ``limit`` is not applied
    here: what it counts depends on the level.
    """

    __slots__ = ("_draws", "_mean_ns", "_starts", "trigger")

    def __init__(self, trigger: Trigger | None, seed: int, name: str, scope: str | int) -> None:
        self.trigger = trigger
        self._starts: list[int] = []
        self._draws: Draws | None = None
        self._mean_ns = 0
        if isinstance(trigger, FaultPoisson):
            self._draws = Draws(seed, "fault", name, scope, "poisson")
            self._mean_ns = trigger.mean_ns
        elif isinstance(trigger, FaultAt):
            self._starts = [trigger.t_ns]
        elif isinstance(trigger, FaultWindow):
            self._starts = [trigger.start_ns]
        elif trigger is None:
            self._starts = [0]

    def latest(self, t: int, limit: int | None) -> tuple[int, int] | None:
        """``(index, start)`` of the last occurrence starting at or before ``t`` among the
        first ``limit``, or ``None``."""
        trig = self.trigger
        if isinstance(trig, FaultEvery):
            k = t // trig.interval_ns
            if limit is not None:
                k = min(k, limit)
            return (k - 1, k * trig.interval_ns) if k >= 1 else None
        self._extend_past(t)
        i = bisect.bisect_right(self._starts, t) - 1
        if limit is not None:
            i = min(i, limit - 1)
        return (i, self._starts[i]) if i >= 0 else None

    def between(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """``(index, start)`` of every occurrence starting in ``[lo, hi)``, in order."""
        trig = self.trigger
        if isinstance(trig, FaultEvery):
            step = trig.interval_ns
            for k in range(max(1, -(-lo // step)), (hi - 1) // step + 1):
                yield k - 1, k * step
            return
        self._extend_past(hi)
        first = bisect.bisect_left(self._starts, lo)
        for i in range(first, bisect.bisect_left(self._starts, hi)):
            yield i, self._starts[i]

    def _extend_past(self, t: int) -> None:
        """Draw Poisson starts until one lies after ``t``."""
        if self._draws is None:
            return
        while not self._starts or self._starts[-1] <= t:
            if self._starts and self._starts[-1] > _MAX_NS:
                return
            u = unit(self._draws.words(_CHUNK, 1)[:, 0]).tolist()
            last = self._starts[-1] if self._starts else 0
            for x in u:
                last += max(1, round(-math.log1p(-x) * self._mean_ns))
                self._starts.append(last)


def _span_end(fault: Fault, start: int) -> int | None:
    """When an occurrence that started at ``start`` ends: the window's end, else after
    the fault's duration, else never."""
    trig = fault.schedule.trigger
    if isinstance(trig, FaultWindow):
        return trig.end_ns
    duration = fault.schedule.duration_ns
    return None if duration is None else start + duration


def _active(fault: Fault, occurrences: _Occurrences, t: int) -> bool:
    """Whether an occurrence of ``fault`` (among the first ``limit``) covers time ``t``."""
    found = occurrences.latest(t, fault.schedule.limit)
    if found is None:
        return False
    end = _span_end(fault, found[1])
    return end is None or t < end


def _targets(fault: Fault, conn: int, seed: int) -> bool:
    """Whether ``fault`` may hit connection ``conn`` at all."""
    target = fault.target
    if conn < target.after_connections:
        return False
    chosen = target.connections
    if chosen is None:
        return True
    if isinstance(chosen, ConnectionList):
        return conn in chosen.indexes
    if isinstance(chosen, ConnectionEvery):
        return (conn + 1) % chosen.n == 0
    assert isinstance(chosen, ConnectionFraction)
    word = _hash_words(_key(seed, "fault", fault.name, conn, "connection"), 0)[0]
    return _unit(word) < chosen.fraction


# ============================================================================ messages


@dataclass(frozen=True, slots=True)
class MessageDecision:
    """What to do with one outgoing message.

    The server must, in this order:

    - not send it at all if ``drop``;
    - send ``corrupt`` instead of the message if it is not ``None`` (still valid UTF-8,
      so still a text frame);
    - send it ``delay_ns`` later; with ``keep_order`` the messages behind it on the
      connection wait for it, else they overtake it;
    - hold it back until ``hold`` later messages of the connection were sent (or the
      connection closes: then it is lost);
    - send it ``1 + copies`` times, back to back.

    ``faults`` names the faults that applied, for logs and recordings; empty when none.
    """

    drop: bool = False
    delay_ns: int = 0
    copies: int = 0
    corrupt: bytes | None = None
    hold: int = 0
    keep_order: bool = False
    faults: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """Whether no fault applies: send the message as it is, now."""
        return not self.faults


NO_FAULT: Final = MessageDecision()


class ConnectionFaults:
    """The message-level faults of one connection, with what is worth keeping between
    messages (hash keys, Poisson schedules, burst-loss chains).

    Its answers equal :func:`decide`'s whatever the order of the questions; asking each
    stream in seq order is what keeps burst-loss chains O(1) a message. Make one per
    connection when it opens and drop it when it closes.
    """

    __slots__ = ("_chains", "_faults", "_occurrences", "_prefixes", "conn", "plan")

    def __init__(self, plan: FaultPlan, conn: int) -> None:
        if conn < 0:
            raise ValueError(f"connection indexes start at 0, got {conn}")
        self.plan = plan
        self.conn = conn
        self._faults = tuple(f for f in plan.message_faults if _targets(f, conn, plan.seed))
        self._occurrences = tuple(
            _Occurrences(f.schedule.trigger, plan.seed, f.name, conn) for f in self._faults
        )
        self._prefixes: dict[tuple[int, str], bytes] = {}
        self._chains: dict[tuple[int, str], _LossChain] = {}

    def decide(self, stream: str, seq: int, payload: bytes, t_ns: int) -> MessageDecision:
        """What to do with message ``seq`` (from 1) of ``stream``, sent at scenario time
        ``t_ns``; ``payload`` is the message as it would be sent."""
        if not self._faults:
            return NO_FAULT
        return _merge([d for _, d in self.hits(stream, seq, payload, t_ns)])

    def hits(
        self, stream: str, seq: int, payload: bytes, t_ns: int
    ) -> list[tuple[Fault, MessageDecision]]:
        """Each fault that applies to the message, with its own decision, in file order."""
        if seq < 1:
            raise ValueError(f"message seqs start at 1, got {seq}")
        out: list[tuple[Fault, MessageDecision]] = []
        doc: object = _UNPARSED
        for i, fault in enumerate(self._faults):
            target = fault.target
            if target.streams and stream not in target.streams:
                continue
            if target.every_nth is not None and seq % target.every_nth:
                continue
            if not _active(fault, self._occurrences[i], t_ns):
                continue
            if target.match:
                if doc is _UNPARSED:
                    doc = parse(payload)
                if not _matches(doc, target.match):
                    continue
            action = fault.action
            if isinstance(action, BurstLoss):
                if self._chain(i, stream, action).bad(seq):
                    out.append((fault, MessageDecision(drop=True, faults=(fault.name,))))
                continue
            words = _hash_words(self._prefix(i, stream), seq)
            if not _unit(words[0]) < target.probability:
                continue
            out.append((fault, _effect(fault, payload, words)))
        return out

    def _prefix(self, i: int, stream: str) -> bytes:
        prefix = self._prefixes.get((i, stream))
        if prefix is None:
            prefix = _key(self.plan.seed, "fault", self._faults[i].name, self.conn, stream)
            self._prefixes[i, stream] = prefix
        return prefix

    def _chain(self, i: int, stream: str, action: BurstLoss) -> _LossChain:
        chain = self._chains.get((i, stream))
        if chain is None:
            args = (self.plan.seed, self._faults[i].name, self.conn, stream)
            chain = self._chains[i, stream] = _LossChain(action, *args)
        return chain


def decide(
    plan: FaultPlan, conn: int, stream: str, seq: int, payload: bytes, t_ns: int
) -> MessageDecision:
    """What to do with message ``seq`` (from 1) of ``stream`` on connection ``conn``, sent
    at scenario time ``t_ns``: a pure function of its arguments.

    This builds the connection's state afresh (burst-loss chains run from message 1):
    servers should keep one :meth:`FaultPlan.connection` per connection instead, which
    gives the same answers.
    """
    return ConnectionFaults(plan, conn).decide(stream, seq, payload, t_ns)


def _effect(fault: Fault, payload: bytes, words: tuple[int, int, int, int]) -> MessageDecision:
    action = fault.action
    names = (fault.name,)
    if isinstance(action, Drop):
        return MessageDecision(drop=True, faults=names)
    if isinstance(action, Delay):
        delay = _latency(action.latency, words[1], words[2])
        return MessageDecision(delay_ns=delay, keep_order=action.keep_order, faults=names)
    if isinstance(action, Duplicate):
        return MessageDecision(copies=action.copies, faults=names)
    if isinstance(action, Reorder):
        return MessageDecision(hold=action.depth, faults=names)
    assert isinstance(action, Corrupt)
    corrupted = corrupt(payload, action.mode, words[1], words[2], words[3])
    return MessageDecision(corrupt=corrupted, faults=names)


def _merge(decisions: list[MessageDecision]) -> MessageDecision:
    """One decision from several faults' decisions on the same message: a drop wins
    (and names only the faults that dropped); delays and copies add up; the longest
    hold wins; the first corruption is sent."""
    if not decisions:
        return NO_FAULT
    if len(decisions) == 1:
        return decisions[0]
    drops = [d for d in decisions if d.drop]
    if drops:
        return MessageDecision(drop=True, faults=tuple(n for d in drops for n in d.faults))
    corrupt = next((d.corrupt for d in decisions if d.corrupt is not None), None)
    return MessageDecision(
        delay_ns=sum(d.delay_ns for d in decisions),
        copies=sum(d.copies for d in decisions),
        corrupt=corrupt,
        hold=max(d.hold for d in decisions),
        keep_order=any(d.keep_order for d in decisions),
        faults=tuple(n for d in decisions for n in d.faults),
    )


def _latency(latency: Latency, w1: int, w2: int) -> int:
    """A delay in ns from two words."""
    if isinstance(latency, FixedLatency):
        return latency.ns
    if isinstance(latency, UniformLatency):
        span = latency.max_ns - latency.min_ns
        return latency.min_ns + min(span, int(_unit(w1) * (span + 1)))
    if isinstance(latency, NormalLatency):
        u1 = 1.0 - _unit(w1)  # in (0, 1]: the log is finite
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * _unit(w2))
        return max(0, min(_MAX_NS, round(latency.mean_ns + latency.std_ns * z)))
    assert isinstance(latency, ParetoLatency)
    cap = _MAX_NS if latency.max_ns is None else latency.max_ns
    # scale * (1 - u) ** (-1 / shape), computed in logs: a small shape overflows floats.
    log_x = math.log(latency.scale_ns) - math.log1p(-_unit(w1)) / latency.shape
    return cap if log_x >= math.log(cap) else min(cap, round(math.exp(log_x)))


class _LossChain:
    """The Gilbert chain of one (fault, connection, stream): whether message ``seq`` falls
    in a loss burst. Message 1 starts Bad with probability ``loss`` (the stationary
    distribution), each later message moves with its own word; one word a message."""

    __slots__ = ("_args", "_bad", "_draws", "_seq", "_units", "action")

    def __init__(self, action: BurstLoss, seed: int, name: str, conn: int, stream: str) -> None:
        self.action = action
        self._args = (seed, "fault", name, conn, stream)
        self._restart()

    def _restart(self) -> None:
        self._draws = Draws(*self._args)
        self._seq = 0  # messages the chain has run through
        self._bad = False
        self._units: list[float] = []

    def bad(self, seq: int) -> bool:
        if seq < self._seq:
            self._restart()
        enter, leave = self.action.enter_bad, self.action.leave_bad
        bad = self._bad
        while self._seq < seq:
            if not self._units:
                self._units = unit(self._draws.words(_CHUNK, 1)[:, 0]).tolist()[::-1]
            u = self._units.pop()
            self._seq += 1
            if self._seq == 1:
                bad = u < self.action.loss
            elif bad:
                bad = u >= leave
            else:
                bad = u < enter
        self._bad = bad
        return bad


# ----------------------------------------------------------------------------- match


_UNPARSED: Final = object()


def _matches(doc: object, match: tuple[tuple[tuple[str, ...], JSON], ...]) -> bool:
    return all(json_equal(_lookup(doc, path), want) for path, want in match)


def _lookup(doc: object, path: tuple[str, ...]) -> object:
    for key in path:
        if isinstance(doc, dict):
            doc = doc.get(key, MISSING)
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return MISSING
    return doc


# ============================================================================ connections


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A connection- or server-level fault happening at scenario time ``t_ns``.

    ``conn`` is ``None`` for server-level events. ``end_ns`` is when a lasting fault
    (stall, throttle, outage, reject, a mass_disconnect in a window) ends, ``None`` for
    an instant one or one that never ends. ``params`` are the kind's parameters:
    ``code`` and ``reason`` (disconnect, mass_disconnect), ``bytes_per_s`` (throttle),
    ``retry_after_s`` (outage, reject with a status), ``status``, ``delay_ns`` and
    ``limit`` (reject), ``respond`` (``"close"``, only when not HTTP: outage, reject)
    and ``close_code`` (reject with ``respond = "close"``). ``occurrence`` counts the
    fault's occurrences from 0.
    """

    t_ns: int
    kind: FaultKind
    fault: str
    conn: int | None
    params: Params = field(default_factory=dict)
    end_ns: int | None = None
    occurrence: int = 0


def _retry_after_s(ns: int) -> int:
    """``Retry-After`` is whole seconds: round up, so a client never comes back too early."""
    return -(-ns // _NS_PER_S)


def retry_after_at_speed(ns: int, speed: float) -> int:
    """The whole seconds of wall time to tell a client to wait for ``ns`` of scenario time
    when the server runs at ``speed``: ``ns / speed``, rounded up to a whole second
    (``Retry-After`` is whole seconds, RFC 9110 §10.2.3, and a client must never come
    back too early). A wait of more than 0 is at least 1 s; 0 stays 0 ("at once")."""
    if ns <= 0:
        return 0
    wall_ns = round(ns / speed)
    return max(1, -(-wall_ns // _NS_PER_S))


def _params(fault: Fault) -> dict[str, int | float | str]:
    action = fault.action
    if isinstance(action, Disconnect | MassDisconnect):
        return {"code": action.code, "reason": action.reason}
    if isinstance(action, Throttle):
        return {"bytes_per_s": action.bytes_per_s}
    if isinstance(action, Outage):
        params: dict[str, int | float | str] = {
            "retry_after_s": _retry_after_s(action.retry_after_ns)
        }
        if action.respond is Respond.CLOSE:
            params["respond"] = action.respond.value
        return params
    if isinstance(action, Reject):
        params = {}
        if action.status is not None:
            params["status"] = action.status
        if action.retry_after_ns is not None:
            params["retry_after_s"] = _retry_after_s(action.retry_after_ns)
        if action.delay_ns is not None:
            params["delay_ns"] = action.delay_ns
        if fault.schedule.limit is not None:
            params["limit"] = fault.schedule.limit
        if action.respond is Respond.CLOSE and action.close_code is not None:
            params["respond"] = action.respond.value
            params["close_code"] = action.close_code
        return params
    return {}


_LASTING: Final = frozenset({FaultKind.STALL, FaultKind.THROTTLE})


def connection_schedule(
    plan: FaultPlan, conn: int, horizon_ns: int, *, opened_ns: int = 0
) -> list[FaultEvent]:
    """The connection-level events of connection ``conn``, opened at scenario time
    ``opened_ns``, from then until ``horizon_ns`` (excluded), sorted by time (ties in file
    order). A pure function of its arguments.

    A fault with no schedule happens at ``opened_ns``; one whose window is open then
    happens at ``opened_ns`` too; ``at``, ``every`` and ``poisson`` occurrences before
    ``opened_ns`` are not delivered late. ``limit`` counts the events of this connection.
    """
    events: list[FaultEvent] = []
    for fault in plan.connection_faults:
        if not _targets(fault, conn, plan.seed):
            continue
        trig = fault.schedule.trigger
        starts: Iterator[tuple[int, int]]
        if trig is None:
            starts = iter([(0, opened_ns)])
        elif isinstance(trig, FaultWindow):
            t = max(trig.start_ns, opened_ns)
            starts = iter([(0, t)] if t < trig.end_ns else [])
        else:
            starts = _Occurrences(trig, plan.seed, fault.name, conn).between(opened_ns, horizon_ns)
        limit = fault.schedule.limit
        params = _params(fault)
        for count, (index, t) in enumerate(starts):
            if t >= horizon_ns or (limit is not None and count >= limit):
                break
            end = _span_end(fault, t) if fault.kind in _LASTING else None
            events.append(FaultEvent(t, fault.kind, fault.name, conn, dict(params), end, index))
    events.sort(key=lambda e: e.t_ns)
    return events


def server_schedule(plan: FaultPlan, horizon_ns: int) -> list[FaultEvent]:
    """The server-level events until ``horizon_ns`` (excluded), sorted by time (ties in
    file order). A pure function of its arguments.

    ``outage``: every connection is dropped at ``t_ns`` and handshakes are refused until
    ``end_ns``. ``mass_disconnect``: every connection is closed at ``t_ns`` (and, in a
    window, every one that opens before ``end_ns``). ``reject``: handshakes are refused or
    delayed from ``t_ns`` to ``end_ns``; :class:`Handshakes` applies its ``limit`` and
    ``after_connections``.
    """
    events: list[FaultEvent] = []
    for fault in plan.server_faults:
        occurrences = _Occurrences(fault.schedule.trigger, plan.seed, fault.name, "server")
        limit = None if fault.kind is FaultKind.REJECT else fault.schedule.limit
        lasting = fault.kind is not FaultKind.MASS_DISCONNECT or isinstance(
            fault.schedule.trigger, FaultWindow
        )
        params = _params(fault)
        for index, t in occurrences.between(0, horizon_ns):
            if limit is not None and index >= limit:
                break
            end = _span_end(fault, t) if lasting else None
            events.append(FaultEvent(t, fault.kind, fault.name, None, dict(params), end, index))
    events.sort(key=lambda e: e.t_ns)
    return events


@dataclass(frozen=True, slots=True)
class HandshakeDecision:
    """The answer to handshake ``attempt`` (counted from 0, refused ones included).

    Wait ``delay_ns``, then accept when ``status`` is ``None``, else refuse. A refusal
    with ``respond`` HTTP is an HTTP ``status`` response, with a ``Retry-After`` header
    when ``retry_after_ns`` is not ``None``; with ``respond`` CLOSE the handshake is
    accepted and the connection closed at once with ``close_code`` (its reason carries
    the retry-after). ``retry_after_ns`` is scenario time: a server running at a speed
    tells clients :func:`retry_after_at_speed` of it. ``retry_after_s`` is it in whole
    scenario seconds, rounded up (what ``sim plan`` shows).
    """

    attempt: int
    status: int | None = None
    retry_after_s: int | None = None
    delay_ns: int = 0
    faults: tuple[str, ...] = ()
    retry_after_ns: int | None = None
    respond: Respond = Respond.HTTP
    close_code: int | None = None

    @property
    def accept(self) -> bool:
        return self.status is None

    def held(self, delay_ns: int) -> HandshakeDecision:
        """This answer given ``delay_ns`` later: after a delay that came first (given on
        demand), as a delaying ``reject`` comes before the next one in :class:`Handshakes`."""
        return replace(self, delay_ns=self.delay_ns + delay_ns)

    def report(self, speed: float) -> tuple[str, dict[str, Any]]:
        """What a recording holds of this decision (when it has ``faults``): its kind
        (``handshake_refused`` or ``handshake_delayed``) and details, with the wait the
        client is told at ``speed``. The live server and ``sim generate`` both write it."""
        retry = self.retry_after_ns
        detail: dict[str, Any] = {
            "status": self.status,
            "retry_after_s": None if retry is None else retry_after_at_speed(retry, speed),
            "delay_ns": self.delay_ns,
        }
        if self.status is not None and self.respond is not Respond.HTTP:
            detail |= {"respond": self.respond.value, "close_code": self.close_code}
        return "handshake_" + ("delayed" if self.status is None else "refused"), detail


class Handshakes:
    """Answers handshake attempts in the order they arrive: accept, delay or refuse.

    During an ``outage`` every attempt is refused with 503 and the outage's
    ``Retry-After``. A ``reject`` in force applies to attempts from ``after_connections``
    on, at most ``limit`` times (delays count). Call :meth:`decide` once per attempt, in
    arrival order; the answers are a pure function of the attempts' times in that order.
    An attempt that something else answers (a refusal given on demand) is numbered with
    :meth:`number` and not decided: it takes its connection index, but no ``limit``
    counts it. :meth:`answer` then decides a numbered attempt the plan does answer.
    If the server numbers connections, it should number attempts (so that connection
    ``i`` is attempt ``i``), which keeps connection targeting and this counting aligned.

    One of several workers (``numbering``) numbers its attempts ``worker + k*workers``:
    ``after_connections`` compares that index; ``limit`` counts this worker's refusals.
    """

    __slots__ = ("_occurrences", "_used", "attempts", "numbering", "plan")

    def __init__(self, plan: FaultPlan, numbering: Numbering | None = None) -> None:
        self.plan = plan
        self.numbering = numbering if numbering is not None else Numbering()
        self.attempts = 0
        self._used = [0] * len(plan.server_faults)
        self._occurrences = tuple(
            _Occurrences(f.schedule.trigger, plan.seed, f.name, "server")
            for f in plan.server_faults
        )

    def decide(self, t_ns: int) -> HandshakeDecision:
        """The answer to the next attempt, arriving at scenario time ``t_ns``; its
        ``attempt`` is the connection index (see :class:`Numbering`)."""
        return self.answer(self.number(), t_ns)

    def number(self) -> int:
        """Number the next attempt: its connection index. Then call :meth:`answer` with
        it, unless the attempt is answered otherwise."""
        attempt = self.numbering.index(self.attempts)
        self.attempts += 1
        return attempt

    def answer(self, attempt: int, t_ns: int) -> HandshakeDecision:
        """The answer to ``attempt`` (the last :meth:`number` gave), arriving at scenario
        time ``t_ns``. Refusals and delays given here count against ``limit``."""
        faults = self.plan.server_faults
        for fault, occurrences in zip(faults, self._occurrences, strict=True):
            action = fault.action
            if isinstance(action, Outage) and _active(fault, occurrences, t_ns):
                retry = _retry_after_s(action.retry_after_ns)
                return HandshakeDecision(
                    attempt,
                    503,
                    retry,
                    0,
                    (fault.name,),
                    retry_after_ns=action.retry_after_ns,
                    respond=action.respond,
                    close_code=OUTAGE_CLOSE_CODE if action.respond is Respond.CLOSE else None,
                )
        delay = 0
        names: list[str] = []
        for i, (fault, occurrences) in enumerate(zip(faults, self._occurrences, strict=True)):
            action = fault.action
            if not isinstance(action, Reject) or attempt < fault.target.after_connections:
                continue
            limit = fault.schedule.limit
            if (limit is not None and self._used[i] >= limit) or not self._in_force(
                fault, occurrences, t_ns
            ):
                continue
            self._used[i] += 1
            names.append(fault.name)
            if action.status is not None:
                after = action.retry_after_ns
                retry_s = None if after is None else _retry_after_s(after)
                return HandshakeDecision(
                    attempt,
                    action.status,
                    retry_s,
                    delay,
                    tuple(names),
                    retry_after_ns=after,
                    respond=action.respond,
                    close_code=action.close_code,
                )
            delay += action.delay_ns or 0
        return HandshakeDecision(attempt, None, None, delay, tuple(names))

    @staticmethod
    def _in_force(fault: Fault, occurrences: _Occurrences, t: int) -> bool:
        # limit counts handshakes here, not occurrences: look at every occurrence.
        found = occurrences.latest(t, None)
        if found is None:
            return False
        end = _span_end(fault, found[1])
        return end is None or t < end
