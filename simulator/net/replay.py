"""`sim replay`: serve a recording back to new clients.

The plan of each recorded connection comes from :mod:`simulator.core.replay_plan`; this
module reads the recording, maps each client that connects to a recorded connection,
and pumps that plan on the real clock. Use :func:`replay` from code and tests::

    async with replay("session.parquet", port=0, speed=None) as server:
        async with websockets.connect(server.url) as ws: ...

The recording is read, and checked, before anything listens: a missing, truncated or
foreign file raises :class:`~simulator.errors.RecordingError`.

With ``faults`` (``sim replay --faults``), each client is a
:class:`~simulator.net.connection.Client` and every recorded server message (pushes
and replies alike) goes through the live server's
:class:`~simulator.net.faulting.FaultInjector`: the same planner decides from (seed,
fault, connection, stream, message index), where the stream is the recorded one (else
the message's JSON ``type``) and the index counts that stream's messages on the
connection from 1, on across ``loop`` rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from websockets.http11 import Request, Response
from websockets.protocol import State

from simulator.core.faults import FaultPlan, retry_after_at_speed
from simulator.core.model import SlowConsumerPolicy
from simulator.core.redact import MARKER
from simulator.core.replay_plan import (
    Close,
    ExpectClient,
    ExpectedIndex,
    Frame,
    Plan,
    PlanBuilder,
    Push,
    Reply,
    Row,
    check_speed,
    stream_of,
)
from simulator.errors import RecordingError, UsageError
from simulator.net.common import (
    CLOSE_GOING_AWAY,
    CLOSE_NO_STATUS,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TIMEOUT_S,
    STEP_EARLY_S,
    ScenarioClock,
    address_text,
    sendable,
    sleep_until,
)
from simulator.net.faulting import FaultInjector, Injected
from simulator.net.handshake import fault_answer, is_upgrade, refusal, too_many_connections
from simulator.net.listener import Listener
from simulator.net.log import EventKind, EventLog
from simulator.net.send_path import Client, binary_frame, text_frame
from simulator.net.wire import (
    CLIENT_FRAMES_PER_S,
    MAX_HANDSHAKES,
    Connection,
    WireConfig,
    close_of,
)
from simulator.net.wire_server import CloseAtOnce, HandshakeAnswer, Immediate, ServerConnection
from simulator.storage.reader import read_metadata, scan_recording
from simulator.storage.schema import RecordingMetadata, error_reason

#: Rows read from a recording at a time.
_LOAD_ROWS = 50_000
_NS_PER_S = 1_000_000_000
#: Unexpected client messages kept in ``server.unexpected`` (all are counted).
MAX_UNEXPECTED_KEPT = 1000
#: Unexpected messages logged one by one per connection; the rest are counted in its
#: ``disconnected`` line (a garbage flood makes a few log lines, not thousands).
UNEXPECTED_LOGGED = 5
#: Client messages up to this size are accepted, and any as large as a recorded one.
MIN_MESSAGE_LIMIT = 2**20
#: Frames written straight to a socket while its buffer holds less than this.
_ROOM = 256 * 1024
#: Yield to the event loop after this many frames written without waiting.
_YIELD_EVERY = 64
#: How often a recorded close looks again at what its client's faults still hold (s).
_SETTLE_POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class Replayed:
    """One message as a client was sent it (kept when ``log_sends`` is on)."""

    conn: int  # the client's connection index in this replay
    recorded_conn: int  # the recorded connection it replays
    payload: bytes
    frame: Frame


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A client message that the recorded connection does not have (or not again)."""

    conn: int
    recorded_conn: int
    payload: bytes
    frame: Frame


@dataclass
class _Session:
    """One client's progress through its plan; expectations reset on every loop."""

    conn: ServerConnection
    recorded: int  # the recorded connection it replays
    plan: Plan
    expected: ExpectedIndex
    cursors: dict[Hashable, int] = field(default_factory=dict)  # see ExpectedIndex.match
    #: The expectations met this round, and the loop time each was met at.
    arrived: dict[int, float] = field(default_factory=dict)
    signal: asyncio.Event = field(default_factory=asyncio.Event)  # set when one is met
    closing: bool = False  # a strict close is under way
    client: Client | None = None  # with faults: the send path they act on
    seqs: Counter[str] = field(default_factory=Counter)  # pushes so far, by stream
    unexpected: int = 0  # client messages not in the recorded connection
    sent: int = 0  # recorded server messages sent (without faults; else client's)
    pump: asyncio.Task[None] | None = None
    # Where the replay stands (what the inspector shows): the loop time the current
    # round's offsets count from, the step under way, and the round (from 0).
    origin: float = 0.0
    step: int = 0
    round: int = 0

    @property
    def index(self) -> int:
        return self.conn.index if self.conn.index is not None else -1

    def restart(self) -> None:
        self.cursors = {}
        self.arrived = {}

    def met(self, index: int) -> None:
        self.arrived[index] = asyncio.get_running_loop().time()
        self.signal.set()

    async def wait_for(self, index: int) -> None:
        """Return once expectation ``index`` has been met (this round)."""
        while index not in self.arrived:
            self.signal.clear()
            await self.signal.wait()


class ReplayServer(Listener):
    """A running replay. Build it with :func:`replay`; read it, don't construct it."""

    def __init__(
        self,
        plans: dict[int, Plan],
        *,
        host: str,
        port: int | None,
        loop: bool,
        conn: int | None,
        strict: bool,
        log_sends: bool,
        faults: FaultPlan | None = None,
        speed: float | None = 1.0,
        max_connections: int = 1000,
        max_frames_per_s: int = CLIENT_FRAMES_PER_S,
        max_message_bytes: int = MIN_MESSAGE_LIMIT,
        max_handshakes: int = MAX_HANDSHAKES,
    ) -> None:
        super().__init__(host, EventLog())
        self.max_connections = max_connections
        self.max_frames_per_s = max_frames_per_s
        self.max_handshakes = max_handshakes
        self._max_size = max_message_bytes  # raised to the largest recorded client message
        self.plans = plans
        self.order = sorted(plans)
        self.requested_port = port
        self.loop = loop
        self.conn = conn
        self.strict = strict
        self.sent: list[Replayed] | None = [] if log_sends else None
        self._written = 0  # frames written on the fast path (for yielding)
        self.sent_by_stream: Counter[str] = Counter()  # pushes sent, by recorded stream
        self.unexpected: list[Unexpected] = []  # the first MAX_UNEXPECTED_KEPT of them
        self.unexpected_count = 0
        # Applied to client messages before matching, as they were when recorded.
        self.redact: Callable[[bytes], bytes] | None = None
        # Removes the fields matching ignores, from recorded and live client messages.
        self.ignore: Callable[[bytes], bytes] | None = None
        self.free_run = False  # client messages are not waited for, nor matched
        self._expected: dict[int, ExpectedIndex] = {}  # by recorded conn
        self._sends: dict[int, bool] = {}  # whether the recorded conn has server messages
        self._next_index = 0  # connection indices, by handshake attempt
        self._next_client = 0  # clients served, in order: which recording each replays
        self._accepted = 0  # clients whose handshake was accepted (the others were refused)
        #: Handshakes refused by the replay itself: past max_connections, or as recorded.
        self.rejected = 0
        self._sessions: dict[int, _Session] = {}  # by connection index
        self.clients: dict[int, Client] = {}
        self.speed = speed
        # Scenario time runs at `speed` (at --speed max, at the wall clock's pace).
        self.clock = ScenarioClock(1.0 if speed is None else speed)
        self.faults: FaultInjector | None = None
        if faults is not None:
            self.faults = FaultInjector(
                faults,
                self.log,
                virtual_ns=self.clock.virtual_ns,
                loop_time=self.clock.loop_time,
                clients=lambda: list(self.clients.values()),
                speed=self.clock.speed,
            )

    @property
    def injected(self) -> list[Injected]:
        """Every fault carried out so far, in order (empty without faults)."""
        return [] if self.faults is None else self.faults.injected

    def virtual_ns(self) -> int:
        """Scenario time now, in ns since the replay started."""
        return self.clock.virtual_ns()

    def _prepare(self) -> None:
        """What every connection of a recorded one needs, computed once before listening:
        walking a plan takes milliseconds, and a connection must start on time."""
        ignore = self.ignore
        for conn, plan in self.plans.items():
            expected = plan.expected
            if ignore is not None:
                expected = tuple(
                    ExpectClient(e.index, ignore(e.payload), e.frame)
                    if e.frame is Frame.TEXT
                    else e
                    for e in expected
                )
            self._expected[conn] = ExpectedIndex(expected)
            self._sends[conn] = len(expected) < len(plan.steps)
            for e in plan.expected:
                self._max_size = max(self._max_size, len(e.payload))

    async def start(self) -> None:
        self._prepare()
        self.clock.start()
        config = WireConfig(
            max_size=self._max_size,
            write_limit=_ROOM,
            open_timeout=10,  # for the request: its answer may then be held by a fault
            close_timeout=CLOSE_TIMEOUT_S,
            max_frames_per_s=self.max_frames_per_s,
            max_handshakes=self.max_handshakes,
            subprotocols=self._recorded_subprotocols(),
        )
        await self._listen(config, self.requested_port)
        self.log.emit(EventKind.LISTENING, url=self.url, mode="replay")
        if self.faults is not None:
            self._spawn(self.faults.run())

    def _recorded_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the recorded server chose, most often chosen first: a client
        that offers one is answered with it, as it was (browsers and most libraries
        refuse an answer without the one they asked for). One recorded as a token
        (``[redacted]``) cannot be: said once."""
        chosen = Counter(p.subprotocol for p in self.plans.values() if p.subprotocol is not None)
        if MARKER in chosen:
            self.log.emit(
                EventKind.WARNING,
                message=(
                    "the recorded server chose a subprotocol that was a token (redacted"
                    " in the recording): clients that need it are answered without one"
                ),
            )
        return tuple(name for name, _ in chosen.most_common() if name != MARKER)

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop listening; a client that
        does not complete the closing handshake is aborted after CLOSE_TIMEOUT_S."""
        if not self.serving:
            return
        self.log.emit(EventKind.STOPPING)
        if self.faults is not None:
            self.faults.close()
        await self._close(CLOSE_GOING_AWAY)

    def positions(self) -> list[dict[str, object]]:
        """Where each client's replay stands: connection, recorded connection, its
        address, messages sent, step (of how many), round, and seconds into the round
        (wall time, at speed)."""
        now = asyncio.get_running_loop().time()
        return [
            {
                "conn": s.index,
                "recorded_conn": s.recorded,
                "remote": address_text(s.conn.remote_address),
                "sent": s.sent if s.client is None else s.client.frames_sent,
                "step": s.step,
                "steps": len(s.plan.steps),
                "round": s.round,
                "position_s": max(0.0, now - s.origin),
                "duration_s": s.plan.duration_ns / 1e9,
            }
            for s in list(self._sessions.values())
        ]

    @property
    def connections_total(self) -> int:
        """Clients that have connected (each replays one recorded connection)."""
        return self._accepted

    @property
    def frames_sent(self) -> int:
        """Recorded server messages sent so far, to all clients."""
        return self._written

    def recorded_conn_for(self, index: int) -> int:
        """The recorded connection that the ``index``-th client replays."""
        if self.conn is not None:
            return self.conn
        return self.order[index % len(self.order)]

    # ------------------------------------------------------------------ connections
    # Called by the WireServer (see simulator.net.wire_server.ServerHandler).

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        """Number the connection by handshake attempt and, with faults, let the fault
        plan refuse or delay it, as the live server does; then answer as the recorded
        server did (:meth:`_as_recorded`). Past ``max_connections`` clients, 503."""
        if len(self._sessions) >= self.max_connections:
            self.rejected += 1
            self.log.emit(EventKind.REJECTED, reason="max_connections", limit=self.max_connections)
            return too_many_connections(conn.protocol)
        if self.faults is None:
            conn.index = self._next_index
            self._next_index += 1
            return self._as_recorded(conn, request)
        decision = self.faults.handshake()
        conn.index = decision.attempt
        answer = fault_answer(conn.protocol, decision, self.clock.speed)
        if answer is None:
            return self._as_recorded(conn, request)
        if isinstance(answer, Response | CloseAtOnce):
            return answer  # refused by the faults: it takes no recorded connection
        return self._as_recorded_after(conn, request, answer)

    async def _as_recorded_after(
        self, conn: ServerConnection, request: Request, held: Awaitable[Immediate]
    ) -> Immediate:
        """The answer of a handshake a fault holds: the fault's, or if it accepts, the
        recorded one, decided once the hold is over."""
        answer = await held
        return self._as_recorded(conn, request) if answer is None else answer

    def _as_recorded(self, conn: ServerConnection, request: Request) -> Immediate:
        """Answer a handshake as the recorded server answered the connection the client
        is to replay (the next one): accept it (``None``: the client takes that
        connection as it opens, which the WireServer does at once), or refuse it with
        the recorded status and ``Retry-After`` (in wall seconds at the speed, as a
        fault's), which takes the recorded connection now.

        Call it when the handshake is answered, not before a hold: the recorded
        connection a client replays is the next one when it gets its answer."""
        if not is_upgrade(request) or conn.transport.is_closing():
            return None  # websockets refuses it, or nobody is left to answer: no client
        recorded = self.recorded_conn_for(self._next_client)
        refused = self.plans[recorded].refused
        if refused is None:
            return None
        self._next_client += 1
        self.rejected += 1
        self.log.emit(
            EventKind.REJECTED,
            conn=conn.index,
            recorded_conn=recorded,
            status=refused.status,
            reason="refused when recorded",
        )
        retry_after = refused.retry_after_s
        if retry_after is not None:
            retry_after = retry_after_at_speed(retry_after * _NS_PER_S, self.clock.speed)
        extra = [] if retry_after is None else [("Retry-After", str(retry_after))]
        if refused.location is not None:  # a 3xx must say where (the client may follow it)
            extra.append(("Location", refused.location))
        return refusal(refused.status, extra)

    def opened(self, conn: Connection) -> None:
        assert isinstance(conn, ServerConnection)
        loop = asyncio.get_running_loop()
        origin = loop.time()  # recorded offsets count from here
        recorded = self.recorded_conn_for(self._next_client)
        self._next_client += 1
        self._accepted += 1
        session = _Session(conn, recorded, self.plans[recorded], self._expected[recorded])
        index = session.index
        self._sessions[index] = session
        self.log.emit(EventKind.CONNECTED, conn=index, recorded_conn=recorded)
        if self.faults is not None:
            session.client = Client(
                index,
                conn,
                send_buffer_bytes=_ROOM,
                policy=SlowConsumerPolicy.DROP_OLDEST,  # never reached: the pump waits
                connected_at=loop.time(),
                epoch_ns=0,
                on_slow=lambda client, what, count: None,
            )
            self.clients[index] = session.client
            self.faults.connected(session.client, self.virtual_ns())
        session.pump = self._spawn(self._pump(session, origin))

    def closed(self, conn: Connection) -> None:
        index = conn.index if conn.index is not None else -1
        session = self._sessions.pop(index, None)
        if session is None:
            return
        if session.pump is not None:
            session.pump.cancel()
        if session.client is not None and self.faults is not None:
            self.faults.disconnected(session.client)
            del self.clients[index]
        code, reason, by = close_of(conn)
        unlogged = session.unexpected > UNEXPECTED_LOGGED
        self.log.emit(
            EventKind.DISCONNECTED,
            conn=index,
            code=code,
            reason=reason,
            by=by,
            **({"unexpected": session.unexpected} if unlogged else {}),
        )

    def message(self, conn: Connection, message: str | bytes) -> None:
        session = self._sessions.get(conn.index if conn.index is not None else -1)
        if session is None or session.closing or conn.protocol.close_sent is not None:
            return  # the server is closing: what is still in flight is drained
        if self.free_run:
            return  # nothing is waited for, so nothing is unexpected
        if isinstance(message, str):
            payload, frame = message.encode(), Frame.TEXT
        else:
            payload, frame = bytes(message), Frame.BINARY
        compared = payload if self.redact is None else self.redact(payload)
        if self.ignore is not None and frame is Frame.TEXT:
            compared = self.ignore(compared)
        found = session.expected.match(session.cursors, compared, frame)
        if found is not None:
            session.met(found)
            return
        self.unexpected_count += 1
        session.unexpected += 1
        index, recorded = session.index, session.recorded
        if len(self.unexpected) < MAX_UNEXPECTED_KEPT:
            self.unexpected.append(Unexpected(index, recorded, payload, frame))
        if session.unexpected <= UNEXPECTED_LOGGED:
            self.log.emit(
                EventKind.CLIENT_ERROR,
                conn=index,
                error="unexpected message: not in the recorded connection",
                recorded_conn=recorded,
                payload=payload[:200].decode(errors="replace"),
            )
        if self.strict:
            session.closing = True
            conn.start_close(CLOSE_POLICY_VIOLATION, "unexpected message")

    # ------------------------------------------------------------------ pumping

    async def _pump(self, session: _Session, origin: float) -> None:
        loop = asyncio.get_running_loop()
        plan = session.plan
        sends = self._sends[session.recorded]
        while True:
            session.origin = origin
            for i, step in enumerate(plan.steps):
                session.step = i
                if isinstance(step, Push):
                    await sleep_until(origin + step.at_ns / 1e9, early=STEP_EARLY_S)
                    await self._send(session, step)
                elif isinstance(step, ExpectClient):
                    await session.wait_for(step.index)
                elif isinstance(step, Reply):
                    # At its recorded distance from the message it answers, not from the
                    # step before it: a proxy records no streams, so everything the
                    # server sent after a client message answers it, and delays taken
                    # one after another would add up (replies later and later).
                    await sleep_until(
                        session.arrived[step.answers] + step.delay_ns / 1e9, early=STEP_EARLY_S
                    )
                    await self._send(session, step)
                elif isinstance(step, Close):
                    await sleep_until(origin + step.at_ns / 1e9, early=STEP_EARLY_S)
                    if session.client is not None:
                        await _delivered(session.client)
                    if sendable(step.code):
                        await session.conn.close(step.code, step.reason)
                    elif step.code == CLOSE_NO_STATUS:
                        await session.conn.close(None)  # a close frame without a status
                    else:
                        session.conn.abort()  # recorded as a dropped socket
                    return
                if session.conn.protocol.state is not State.OPEN:
                    return
            if not self.loop or not sends:
                return
            # The next round starts where the recording ended, or now if late.
            origin = max(origin + plan.duration_ns / 1e9, loop.time())
            session.round += 1
            session.restart()
            await asyncio.sleep(0)

    async def _send(self, session: _Session, step: Push | Reply) -> None:
        """Send one recorded server message; a replay waits for a slow client (or one
        under a throttle) rather than dropping what it was not sent."""
        if session.client is not None:
            await self._send_through_faults(session, step)
        else:
            conn = session.conn
            if conn.transport.get_write_buffer_size() >= _ROOM:
                await conn.drain()
            # A transport reset by the peer is closing before the protocol hears of it
            # (connection_lost comes a loop turn later): writing to it only warns.
            if conn.protocol.state is State.OPEN and not conn.transport.is_closing():
                # No compression is negotiated, so the frame's bytes are fixed: framed
                # here, written straight to the transport.
                framed = text_frame if step.frame is Frame.TEXT else binary_frame
                conn.transport.write(framed(step.payload))
                session.sent += 1
        if self.sent is not None:
            self.sent.append(Replayed(session.index, session.recorded, step.payload, step.frame))
        if isinstance(step, Push) and step.stream is not None:
            self.sent_by_stream[step.stream] += 1
        self._written += 1
        if self._written % _YIELD_EVERY == 0:
            await asyncio.sleep(0)

    async def _send_through_faults(self, session: _Session, push: Push | Reply) -> None:
        """Hand one server message to the fault injector, once the client's socket has
        room."""
        assert self.faults is not None and session.client is not None
        client = session.client
        await _room(client)
        stream = stream_of(push)
        session.seqs[stream] += 1
        self.faults.deliver(
            client,
            self.virtual_ns(),
            stream,
            session.seqs[stream],
            push.payload,
            binary=push.frame is Frame.BINARY,
        )


async def _delivered(client: Client) -> None:
    """Wait until ``client`` has been written everything its faults were handed, or is
    gone: await it before a recorded close, which must not overtake what the server
    sent before it (on one TCP connection nothing does). Else the frames a delay held
    past the close were lost, and at ``--speed max``, where the close is due with the
    last message, nearly all of them: the speed, not the faults, decided what was lost.

    Delays are not made 0 at ``--speed max`` instead (as recorded times are): a delay
    would then neither delay nor reorder anything, which is not what the faults say.
    Frames held back for reordering are let go now (no message comes after the close to
    count for them); delayed ones and a throttle's queue are waited for. A stall sends
    nothing: what it catches is lost, as on a half-open connection, and nothing is
    waited for while it lasts."""
    while client.open:
        effects = client.faulted
        if effects is not None:
            effects.release_held(client)
        settled = effects is None or effects.settled
        stalled = effects is not None and effects.stalled
        if settled and (not client.pending or stalled):
            return
        await asyncio.sleep(_SETTLE_POLL_S)


async def _room(client: Client) -> None:
    """Wait until ``client`` can take a frame without queueing (or is gone)."""
    ws = client.ws
    while client.open:
        if ws.transport.get_write_buffer_size() > client.limit:
            await ws.drain()  # the transport is paused past write_limit (= client.limit)
        elif client.pending:
            await asyncio.sleep(0.01)  # a throttle drains its queue on its own ticks
        else:
            return


def load_plans(
    path: str | os.PathLike[str], speed: float | None, *, gated: bool = True
) -> dict[int, Plan]:
    """The plan of every recorded connection in ``path``, by connection index (see
    :func:`~simulator.core.replay_plan.plan_connection` for ``gated``).

    Raises :class:`RecordingError` if the file cannot be read or has no connection.
    """
    return _load(path, speed, gated)[0]


def _load(
    path: str | os.PathLike[str], speed: float | None, gated: bool = True
) -> tuple[dict[int, Plan], RecordingMetadata]:
    """Plans from the recording, read a slice at a time: only the steps stay in memory
    (a whole recording as a frame, then as rows, took three times as much)."""
    check_speed(speed)
    file = os.fspath(path)
    metadata = read_metadata(path)
    columns = ("seq", "conn", "t_ns", "sender", "kind", "stream", "payload")
    lazy = (
        scan_recording(path)
        .filter(pl.col("conn") >= 0)
        .select(
            *(pl.col(c).cast(pl.String) if c in ("sender", "kind") else pl.col(c) for c in columns),
            "close_code",
            "close_reason",
        )
    )
    builders: dict[int, PlanBuilder] = {}
    names: dict[str, str] = {}
    last_seq = -1
    try:
        for batch in lazy.collect_batches(chunk_size=_LOAD_ROWS):
            for seq, conn, t, sender, kind, stream, payload, code, reason in batch.iter_rows():
                if seq <= last_seq:  # writers keep seq order; a file that does not is odd
                    return _load_sorted(lazy, speed, gated), metadata
                last_seq = seq
                builder = builders.get(conn)
                if builder is None:
                    builder = builders[conn] = PlanBuilder(speed, gated=gated)
                if stream is not None:
                    stream = names.setdefault(stream, stream)  # one str per stream name
                builder.add(Row(t, sender, kind, stream, payload, code, reason))
    except pl.exceptions.PolarsError as e:
        raise RecordingError(file, f"corrupt recording: {error_reason(e)}") from e
    if not builders:
        raise RecordingError(file, "has no connections to replay")
    return {conn: b.plan() for conn, b in builders.items()}, metadata


def _load_sorted(lazy: pl.LazyFrame, speed: float | None, gated: bool) -> dict[int, Plan]:
    builders: dict[int, PlanBuilder] = {}
    for _, conn, t, sender, kind, stream, payload, code, reason in (
        lazy.sort("seq").collect().iter_rows()
    ):
        builders.setdefault(conn, PlanBuilder(speed, gated=gated)).add(
            Row(t, sender, kind, stream, payload, code, reason)
        )
    return {conn: b.plan() for conn, b in builders.items()}


def ignoring(paths: Sequence[str]) -> Callable[[bytes], bytes] | None:
    """A function removing the fields at ``paths`` from a JSON message (``None`` for no
    paths). Raises :class:`UsageError` for a path that does not parse."""
    if not paths:
        return None
    from simulator.core.redact import Redactor

    specs = []
    for path in paths:
        if "=" in path.rsplit("]", 1)[-1]:
            raise UsageError(f"--ignore {path!r}: a JSONPath only, like $.id or $..ts")
        specs.append(f"{path}=remove")
    # Removal uses no key; the redactor only insists on having one.
    return Redactor.from_specs(specs, key=bytes(32)).redact


def client_redactor(
    metadata: RecordingMetadata, key: bytes | None, log: EventLog
) -> Callable[[bytes], bytes] | None:
    """How to redact a live client message so it compares with the recorded ones: the
    recording's ``--redact`` rules under ``key`` (``None`` when it has no rules).

    Without the key the rules cannot be applied: logged as a warning (a wrong key too),
    and client messages with hashed fields will not match.
    """
    description = metadata["extra"].get("redaction") or {}
    if not description.get("rules"):
        return None
    if key is None:
        log.emit(
            EventKind.WARNING,
            message="the recording's client messages were redacted with a key: give the "
            "same key (SIM_REDACT_KEY or --redact-key-file) or hashed messages will not match",
        )
        return None
    from simulator.core.redact import Redactor

    try:
        return Redactor.from_description(description, key).redact
    except UsageError as e:
        # A key set for other recordings ($SIM_REDACT_KEY) must not stop a replay.
        log.emit(EventKind.WARNING, message=f"{e}; client messages are compared unhashed")
        return None


@contextlib.asynccontextmanager
async def replay(
    path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    in_memory: bool = False,
    speed: float | None = 1.0,
    loop: bool = False,
    conn: int | None = None,
    strict: bool = False,
    log_sends: bool = False,
    faults: FaultPlan | Callable[[list[str]], FaultPlan] | None = None,
    redact_key: bytes | None = None,
    ignore: Sequence[str] = (),
    free_run: bool = False,
    max_connections: int = 1000,
    tls: ssl.SSLContext | None = None,
    max_frames_per_s: int = CLIENT_FRAMES_PER_S,
    max_message_bytes: int = MIN_MESSAGE_LIMIT,
    max_handshakes: int = MAX_HANDSHAKES,
) -> AsyncIterator[ReplayServer]:
    """Serve the recording at ``path`` until the block ends.

    Each client that connects replays one recorded connection: the i-th client the i-th
    one (wrapping around), or always ``conn`` when given; one whose handshake was
    refused (a recording proxy's upstream refused it) refuses its client with the
    recorded HTTP status and ``Retry-After``. ``speed`` divides recorded
    times (``None``: send as fast as possible, keeping the recorded order). ``loop``
    starts a connection's recording over when it ends. Client messages the recording
    does not have are collected in ``server.unexpected``; with ``strict`` they close
    the connection with 1008. ``log_sends`` keeps every message sent in ``server.sent``.
    ``faults`` injects faults as ``sim run`` does: a :class:`FaultPlan`, or a function
    given the recording's stream names (see :func:`recorded_streams`) that returns one
    (the CLI loads a faults file that way, checking the streams it names). What was
    injected is in ``server.injected``. ``in_memory`` opens no socket: clients connect
    with ``open_transport=server.open_transport``.

    A recording made with ``--redact`` rules has hashed client messages: with the same
    ``redact_key``, live client messages are hashed the same way before they are
    compared (docs/redaction.md). ``ignore`` lists JSONPaths (``$.id``, ``$..ts``) of
    fields left out of the comparison of client messages, on both sides. ``free_run``
    waits for no client message: every recorded server message, replies included, is
    sent at its recorded offset, and what clients send is ignored. ``tls`` serves
    ``wss://`` (a server context: :func:`simulator.net.tls.server_context`).

    At most ``max_connections`` clients at once: further handshakes get 503 with
    ``Retry-After: 1``. A client message larger than the largest recorded one (and
    than ``max_message_bytes``, 1 MiB) closes its connection with 1009; more than
    ``max_frames_per_s`` frames in a second, with 1008. Past ``max_handshakes``
    connections whose request has not arrived, the oldest is dropped (docs/limits.md).

    Raises :class:`RecordingError` (bad file) or :class:`UsageError` (bad argument)
    before listening.
    """
    if free_run and strict:
        raise UsageError("free_run: no client message is expected, so strict has nothing to do")
    plans, metadata = _load(path, speed, gated=not free_run)
    if callable(faults):
        faults = faults(recorded_streams(plans))
    if conn is not None and conn not in plans:
        raise UsageError(
            f"conn={conn}: not in {os.fspath(path)} (connections: {_ranges(sorted(plans))})"
        )
    server = ReplayServer(
        plans,
        host=host,
        port=None if in_memory else port,
        loop=loop,
        conn=conn,
        strict=strict,
        log_sends=log_sends,
        faults=faults,
        speed=speed,
        max_connections=max_connections,
        max_frames_per_s=max_frames_per_s,
        max_message_bytes=max_message_bytes,
        max_handshakes=max_handshakes,
    )
    server.redact = client_redactor(metadata, redact_key, server.log)
    server.ignore = ignoring(ignore)
    server.free_run = free_run
    server.tls = tls
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def recorded_streams(plans: dict[int, Plan]) -> list[str]:
    """The streams of the recorded server messages (see
    :func:`~simulator.core.replay_plan.stream_of`), sorted: what faults may target."""
    names = {
        stream_of(step)
        for plan in plans.values()
        for step in plan.steps
        if isinstance(step, Push | Reply)
    }
    return sorted(names - {""})


def _ranges(values: list[int]) -> str:
    if len(values) <= 10:
        return ", ".join(map(str, values))
    return f"{', '.join(map(str, values[:10]))}, … ({len(values)} in all)"
