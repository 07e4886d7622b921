"""`sim run`: a scenario served over WebSocket on the real clock.

The pure timeline decides what is sent and when; this module only pumps it. In
broadcast mode one pump reads the shared timeline and writes each tick's frames to
every subscribed client; in per-connection mode each client has its own pump and
timeline (scope = its connection index) starting at its connect time.

Virtual time is ``(loop.time() - start) * speed``; message timestamps are
``epoch + virtual time``, so with ``speed = 10`` they advance ten times faster than
the wall clock, as they would in a ten-times-faster world.

Use :func:`serve` from code and tests::

    async with serve(scenario, port=0, seed=7, speed=10) as server:
        async with websockets.connect(server.url) as ws: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from websockets.http11 import Request

from simulator.core.faults import HandshakeDecision, plan_faults
from simulator.core.lateness import stream_limits_ns
from simulator.core.live import PER_CLIENT
from simulator.core.model import Mode, Scenario, Timing
from simulator.core.numbering import Numbering
from simulator.core.protocol import Outcome, Reply, binary_refused, handle_text
from simulator.core.rates import TokenBucket
from simulator.core.redact import Redactor, redact_url
from simulator.core.timeline import Batch, Timeline
from simulator.core.values import format_time_iso
from simulator.errors import UsageError
from simulator.net.client_options import batch_asked
from simulator.net.common import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TIMEOUT_S,
    ScenarioClock,
    address_text,
    exact_timers,
    on_whole_ms,
)
from simulator.net.fanout import Fanout, Sent
from simulator.net.faulting import FaultInjector, Injected
from simulator.net.handshake import (
    fault_answer,
    health_response,
    is_health_check,
    too_many_connections,
)
from simulator.net.listener import Listener
from simulator.net.log import EventKind, EventLog
from simulator.net.on_demand import OnDemandFaults
from simulator.net.pump import Pacing, pump
from simulator.net.recorder import Recorder
from simulator.net.send_path import Client, text_frame
from simulator.net.stats import Counters, LatenessSamples, Stats
from simulator.net.wire import Connection, WireConfig, close_of
from simulator.net.wire_server import HandshakeAnswer, ServerConnection
from simulator.storage.schema import new_metadata
from simulator.version import __version__

# The defaults of [server]'s admission keys (simulator.core.model.Server), which a
# scenario may change; docs/limits.md lists them all.
#: Messages a client may send per second (and at once) before it is closed with 1008.
CLIENT_RATE_PER_S = 200.0
CLIENT_BURST = 400.0
#: Invalid messages a client may send (each answered with an error reply): this many at
#: once, then this many a second; past that it is closed with 1008. A client that sends
#: garbage gets a few answers, not thousands.
CLIENT_ERROR_BURST = 20.0
CLIENT_ERROR_RATE_PER_S = 2.0
#: Errors logged per connection; the rest are counted, and the count is logged when it
#: disconnects (a summary, not thousands of lines).
CLIENT_ERRORS_LOGGED = 5
#: Bytes left in a client's transport (not yet taken by its socket) past which frames
#: queue (send_path.Client): room for a burst of replies written at once (pongs,
#: subscribe answers: a few hundred bytes), no more. The transport copies what it
#: holds, one copy per client, while queued frames are shared by every client they
#: went to, and the kernel's socket buffer (socket_buffer_bytes) is what keeps a
#: reading client's pipe full. So a client that reads nothing costs about the tail of
#: one write (2,000 of them: +41 MB RSS with their queues aged, against +87 MB with
#: 16 KiB, +574 MB with 256 KiB).
TRANSPORT_ROOM = 1024
#: Lines about slow clients' dropped frames, per second for all clients together (and
#: at once): each client has at most one a second, but 2,000 clients that read nothing
#: made 2,000 lines a second. Past it, a line says how many were left out since the
#: last such line, written when one is left out a second or more after it (the exact
#: counts are in the stats: frames_dropped, late_dropped).
SLOW_LINES_PER_S = 10.0
SLOW_LINES_BURST = 20.0
#: Rendering a timeline chunk blocks the loop: keep chunks small on a live server.
LIVE_MAX_CHUNK = 256


class SimServer(Listener):
    """A running simulator. Build it with :func:`serve`; read it, don't construct it."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str,
        port: int | None,
        seed: int,
        speed: float,
        duration_ns: int | None,
        epoch_ns: int | None,
        log_sends: bool,
        record: str | Path | None = None,
        redact: Redactor | None = None,
        numbering: Numbering | None = None,
        origin_wall_ns: int | None = None,
        overwrite_record: bool = False,
    ) -> None:
        if speed <= 0:
            raise UsageError(f"speed={speed}: must be > 0")
        super().__init__(host, EventLog())
        self.scenario = scenario
        self.requested_port = port
        self.seed = seed
        self.speed = speed
        self.duration_ns = duration_ns
        self.epoch_ns = epoch_ns if epoch_ns is not None else scenario.epoch_ns
        self.clients: dict[int, Client] = {}
        #: Which connection indices this server hands out (one of several workers).
        self.numbering = numbering if numbering is not None else Numbering()
        #: Wall time (ns) of scenario time 0, when fixed (workers share it); else the
        #: last whole millisecond at start.
        self.origin_wall_ns = origin_wall_ns
        self.clock = ScenarioClock(speed)
        self._counters = Counters()
        self._pumps: dict[int, asyncio.Task[None]] = {}  # per-connection mode
        self._next_index = 0
        self._slow_logged: dict[int, float] = {}
        self._slow_lines = TokenBucket(SLOW_LINES_PER_S, SLOW_LINES_BURST, 0.0)
        self._slow_left_out = 0  # lines not logged since the last summary
        self._slow_summarized = -1.0  # loop time of the last summary
        self._late_logged = -1.0
        self._subprotocols_hinted = False
        self._late_limits = stream_limits_ns(scenario, speed)
        self._done = asyncio.Event()
        #: The error that stopped the feed (a bug of ours), if one did.
        self.failure: BaseException | None = None
        self.record_path = record
        self.overwrite_record = overwrite_record
        self.redactor = redact
        self.recorder: Recorder | None = None
        self.faults: FaultInjector | None = None
        if scenario.faults:
            self.faults = FaultInjector(
                plan_faults(scenario, seed),
                self.log,
                virtual_ns=self.clock.virtual_ns,
                loop_time=self.clock.loop_time,
                clients=lambda: list(self.clients.values()),
                speed=speed,
                numbering=self.numbering,
            )
        #: Faults triggered while it runs (the inspector's control endpoint).
        self.on_demand = OnDemandFaults(
            self.log,
            virtual_ns=self.clock.virtual_ns,
            clients=lambda: list(self.clients.values()),
            speed=speed,
            recorder=lambda: self.recorder,
        )
        self._types = [s.type for s in scenario.streams]
        #: With ``log_sends`` (tests): the scenario time, in ns, at which every handshake
        #: attempt arrived (health checks aside), accepted or not, delayed or not.
        self.attempts_ns: list[int] | None = [] if log_sends else None
        self._fanout = Fanout(
            [s.name for s in scenario.streams],
            self._types,
            self.clock,
            self._counters,
            self.faults,
            log_sends,
            connected=(lambda: len(self.clients)) if scenario.has_live else None,
            per_client_live=bool(scenario.live_kinds & PER_CLIENT),
        )

    @property
    def injected(self) -> list[Injected]:
        """Every fault carried out so far, in order (empty without faults)."""
        return [] if self.faults is None else self.faults.injected

    @property
    def sent(self) -> list[Sent] | None:
        """Every message sent so far, with ``log_sends`` (else ``None``)."""
        return self._fanout.sent

    @property
    def lateness_ns(self) -> LatenessSamples:
        """How late the recent messages were handed to the send path, in ns (the live
        samples: clear them to start a new measurement)."""
        return self._counters.lateness_ns

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.scenario.server
        config = WireConfig(
            max_size=cfg.max_frame_bytes,
            write_limit=TRANSPORT_ROOM,
            ping_interval=cfg.keepalive_interval_ns / 1e9,
            ping_timeout=cfg.keepalive_timeout_ns / 1e9,
            # For the request: its answer may then be held by an injected delay.
            open_timeout=cfg.handshake_timeout_ns / 1e9,
            close_timeout=CLOSE_TIMEOUT_S,
            max_frames_per_s=cfg.max_frames_per_s,
            max_handshakes=cfg.max_handshakes,
            subprotocols=cfg.subprotocols,
        )
        await self._listen(config, self.requested_port)
        try:
            self._open_recorder()
        except BaseException:
            await self._close(CLOSE_GOING_AWAY)  # an unwritable path: stop, then fail
            raise
        # Workers start a little apart: each sets its clock to the shared origin, so
        # that they send the same message at the same moment. Alone, scenario time 0 is
        # the last whole millisecond (see on_whole_ms); on a virtual clock, now.
        now_ns = time.time_ns()
        origin_ns = self.origin_wall_ns
        if origin_ns is None:
            origin_ns = now_ns if exact_timers() else on_whole_ms(now_ns)
        self.clock.start(max((now_ns - origin_ns) / 1e9, 0.0))
        if self.epoch_ns is None:
            self.epoch_ns = origin_ns
        self.log.emit(EventKind.LISTENING, url=self.url, mode=self.scenario.server.mode.value)
        if self.scenario.server.mode is Mode.BROADCAST:
            self._spawn(self._pump_broadcast())
        if self.faults is not None:
            self._spawn(self.faults.run())
        if self.duration_ns is not None:
            loop.call_at(self.clock.loop_time(self.duration_ns), self._done.set)

    def _open_recorder(self) -> None:
        """Open the recording, if any, before serving: an unwritable path fails here."""
        if self.record_path is not None:
            self.recorder = Recorder(
                self.record_path,
                new_metadata(
                    sim_version=__version__,
                    scenario=self.scenario.name,
                    seed=self.seed,
                    extra={
                        "speed": self.speed,
                        "mode": self.scenario.server.mode.value,
                        "redaction": {} if self.redactor is None else self.redactor.describe(),
                        "worker": self.numbering.worker,
                        "workers": self.numbering.workers,
                    },
                ),
                self.log,
                redact=None if self.redactor is None else self.redactor.redact,
                overwrite=self.overwrite_record,
            )
            self._spawn(self.recorder.run())
            self._fanout.recorder = self.recorder
            if self.faults is not None:
                self.faults.recorder = self.recorder

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop listening. Clients that do
        not complete the closing handshake are aborted after CLOSE_TIMEOUT_S, all at once."""
        if not self.serving:
            return
        self.log.emit(EventKind.STOPPING, connections=len(self.clients))
        if self.faults is not None:
            self.faults.close()
        self.on_demand.close()
        for client in self.clients.values():
            if client.faulted is not None:
                client.faulted.send_batch_now(client)  # a batch's last, before the close
        await self._close(CLOSE_GOING_AWAY)
        if self.recorder is not None:
            self.recorder.close()
        self._done.set()

    async def wait(self) -> None:
        """Wait until the scenario's duration has elapsed (forever without one), or
        until the server failed (then :attr:`failure` says how)."""
        await self._done.wait()

    def failed(self, error: BaseException) -> None:
        """Its pump (or another background task) failed: the feed cannot go on, so
        :meth:`wait` returns and :attr:`failure` holds the error."""
        if self.failure is None:
            self.failure = error
        self._done.set()

    # ------------------------------------------------------------------ clocks

    def virtual_ns(self) -> int:
        """Scenario time now, in ns since the server started."""
        return self.clock.virtual_ns()

    def now_iso(self) -> str:
        return self.iso_in(0)

    def iso_in(self, ns: int) -> str:
        """The scenario time ``ns`` from now, as a reply writes it."""
        assert self.epoch_ns is not None
        return format_time_iso(self.epoch_ns + self.virtual_ns() + ns)

    # ------------------------------------------------------------------ pumps

    async def _pump_broadcast(self) -> None:
        # Broadcast: a client connecting late sees the feed from now on, so the shared
        # timeline runs whether anyone listens or not.
        assert self.epoch_ns is not None
        timeline = Timeline(
            self.scenario, self.seed, scope=None, epoch_ns=self.epoch_ns, max_chunk=LIVE_MAX_CHUNK
        )

        def send(batch: Batch) -> None:
            self._fanout.send(batch, 0, list(self.clients.values()))

        await pump(timeline, self.clock, send, self._pacing(None), end_ns=self.duration_ns)

    async def _pump_connection(self, client: Client, origin_ns: int) -> None:
        timeline = Timeline(
            self.scenario,
            self.seed,
            scope=client.index,
            epoch_ns=client.epoch_ns,
            max_chunk=LIVE_MAX_CHUNK,
        )
        targets = [client]

        def send(batch: Batch) -> None:
            self._fanout.send(batch, origin_ns, targets)

        await pump(
            timeline,
            self.clock,
            send,
            self._pacing(client.index),
            origin_ns=origin_ns,
            end_ns=self.duration_ns,
        )

    def _pacing(self, conn: int | None) -> Pacing:
        """How the pump of connection ``conn`` (of every connection: ``None``) keeps time."""
        return Pacing(
            precise=self.scenario.server.timing is Timing.PRECISE,
            limits=self._late_limits,
            dropped_late=lambda batch: self._dropped_late(batch, conn),
        )

    def _dropped_late(self, batch: Batch, conn: int | None) -> None:
        """The pump fell so far behind that ``batch`` is past its lateness limit: count
        it (status), record it (one fault row) and log it (at most once a second)."""
        names = self._fanout.names
        by_stream = Counter(names[i] for i in batch.stream.tolist())
        self._counters.late_by_stream.update(by_stream)
        if self.recorder is not None:
            self.recorder.fault(
                conn, {"kind": "late", "messages": len(batch), "streams": dict(by_stream)}
            )
        now = asyncio.get_running_loop().time()
        if now - self._late_logged >= 1.0:
            self._late_logged = now
            self.log.emit(
                EventKind.LATE,
                conn=conn,
                dropped=len(batch),
                dropped_total=self._counters.late_by_stream.total(),
            )

    # ------------------------------------------------------------------ connections
    # Called by the WireServer (see simulator.net.wire_server.ServerHandler).

    def handshake(self, conn: ServerConnection, request: Request) -> HandshakeAnswer:
        """Answer a handshake: health check, connection limit, then injected faults."""
        protocol = conn.protocol
        self._hint_subprotocols(request)
        if is_health_check(request):
            return health_response(
                protocol,
                {
                    "scenario": self.scenario.name,
                    "connections": len(self.clients),
                    "worker": self.numbering.worker,
                    "workers": self.numbering.workers,
                },
            )
        if self.attempts_ns is not None:
            self.attempts_ns.append(self.virtual_ns())
        if len(self.clients) >= self.scenario.server.max_connections:
            self._counters.rejected += 1
            self.log.emit(
                EventKind.REJECTED,
                reason="max_connections",
                limit=self.scenario.server.max_connections,
            )
            return too_many_connections(protocol)
        # Connections are numbered by handshake attempt, so that fault targeting (which
        # counts attempts, refused ones included) and connection indices agree; a
        # worker numbers its k-th attempt worker + k*workers (simulator.core.numbering).
        conn.index = attempt = self._number_attempt()
        # A refusal given on demand answers in the plan's place: the plan does not
        # decide that attempt, so it neither reports nor counts a refusal nobody got.
        # A delay given on demand holds the handshake, then the plan answers it.
        control = self.on_demand.decide(attempt)
        if control is not None and not control.accept:
            return fault_answer(protocol, control, self.speed)
        plan = HandshakeDecision(attempt) if self.faults is None else self.faults.handshake(attempt)
        if control is not None:
            plan = plan.held(control.delay_ns)
        return fault_answer(protocol, plan, self.speed)

    def _number_attempt(self) -> int:
        """The next handshake attempt's connection index (the plan's numbering, which
        ``after_connections`` counts, when there is a plan)."""
        if self.faults is not None:
            return self.faults.number_handshake()
        index = self.numbering.index(self._next_index)
        self._next_index += 1
        return index

    def _hint_subprotocols(self, request: Request) -> None:
        """Say once what to do when clients offer subprotocols the scenario does not
        list: sim then answers without one, and a browser fails such a connection."""
        offered = request.headers.get_all("Sec-WebSocket-Protocol")
        if not offered or self._subprotocols_hinted:
            return
        names = [n.strip() for value in offered for n in value.split(",") if n.strip()]
        if any(name in self.scenario.server.subprotocols for name in names):
            return
        self._subprotocols_hinted = True
        listed = ", ".join(f'"{n}"' for n in names)
        self.log.emit(
            EventKind.WARNING,
            message=(
                f"a client offered subprotocols {listed}: answered without one, which"
                f" browsers refuse; add [server] subprotocols = [{listed}] to agree"
            ),
        )

    def opened(self, conn: Connection) -> None:
        assert isinstance(conn, ServerConnection)
        loop = asyncio.get_running_loop()
        limit_socket_buffer(conn, self.scenario.server.socket_buffer_bytes)
        assert self.epoch_ns is not None
        index = conn.index if conn.index is not None else -1
        per_connection = self.scenario.server.mode is Mode.PER_CONNECTION
        opened_ns = self.virtual_ns()  # when it opened: what faults at a time go by
        # Per connection, the client's timeline starts at its connect taken down to a
        # whole millisecond, so that its messages' timestamps are exact.
        origin = on_whole_ms(opened_ns) if per_connection and not exact_timers() else opened_ns
        client = Client(
            index,
            conn,
            send_buffer_bytes=self.scenario.server.send_buffer_bytes,
            transport_room=TRANSPORT_ROOM,
            policy=self.scenario.server.slow_consumer,
            connected_at=loop.time(),
            epoch_ns=self.epoch_ns + origin if per_connection else self.epoch_ns,
            on_slow=self._on_slow,
            inbound=TokenBucket(
                self.scenario.server.max_messages_per_s,
                self.scenario.server.message_burst,
                loop.time(),
            ),
            max_queue_s=self.scenario.server.max_lateness_ns / 1e9,
        )
        if self.recorder is not None:
            handshake: dict[str, Any] = {"path": redact_url(conn.path or "/")}
            if conn.protocol.subprotocol is not None:
                # One of [server] subprotocols (the scenario's names, no secret): a
                # replay answers with it.
                handshake["subprotocol"] = conn.protocol.subprotocol
            self.recorder.opened(index, handshake)
        self.clients[index] = client
        self._counters.connections_total += 1
        self.log.emit(
            EventKind.CONNECTED,
            conn=index,
            remote=address_text(client.remote),
            path=None if conn.path is None else redact_url(conn.path),
        )
        self._batch_if_asked(client, conn.path)
        if self.faults is not None:
            self.faults.connected(client, opened_ns)
        if per_connection:
            self._pumps[index] = self._spawn(self._pump_connection(client, origin))

    def _batch_if_asked(self, client: Client, path: str | None) -> None:
        """Send ``client`` its frames in batches if its URL asks (client_options)."""
        try:
            batch_s = batch_asked(path)
        except ValueError as problem:
            self.log.emit(EventKind.WARNING, conn=client.index, message=str(problem))
            return
        if batch_s:
            client.faults().batch(batch_s)

    def message(self, conn: Connection, message: str | bytes) -> None:
        client = self.clients.get(conn.index if conn.index is not None else -1)
        if client is None or client.closing:
            return  # drop what is in flight so the closing handshake completes
        assert client.inbound is not None
        if not client.inbound.allow(asyncio.get_running_loop().time()):
            limit = self.scenario.server.max_messages_per_s
            self.log.emit(EventKind.RATE_LIMITED, conn=client.index, limit=limit)
            client.fail(CLOSE_POLICY_VIOLATION, "message rate limit exceeded")
            return
        if client.faulted is None:  # a fault's pacing and batches decide for the others
            client.cork()
        self._on_message(client, message)

    def read_done(self, conn: Connection) -> None:
        client = self.clients.get(conn.index if conn.index is not None else -1)
        if client is not None:
            client.uncork()

    def closed(self, conn: Connection) -> None:
        index = conn.index if conn.index is not None else -1
        client = self.clients.pop(index, None)
        if client is None:
            return
        pump_task = self._pumps.pop(index, None)
        if pump_task is not None:
            pump_task.cancel()
        if self.faults is not None:
            self.faults.disconnected(client)
        self._slow_logged.pop(index, None)
        self._counters.frames_sent_closed += client.frames_sent
        self._counters.frames_dropped_closed += client.frames_dropped
        code, reason, by = close_of(conn)
        logged = self.scenario.server.errors_logged
        if self.recorder is not None:
            # No close frame either way: ours if we dropped it (a fault), else the
            # client's (replay then keeps its client open, as for a proxy's recording).
            dropped_by = "server" if conn.dropped_here else "client"
            self.recorder.closed(index, code, reason, dropped_by if by == "network" else by)
        self.log.emit(
            EventKind.DISCONNECTED,
            conn=index,
            code=code,
            reason=reason,
            by=by,
            sent=client.frames_sent,
            dropped=client.frames_dropped,
            **({"errors": client.errors} if client.errors > logged else {}),
        )

    def _on_message(self, client: Client, message: str | bytes) -> None:
        protocol = self.scenario.protocol
        if self.recorder is not None:
            self.recorder.received(client.index, message)
        if isinstance(message, bytes):
            outcome = binary_refused(protocol, client.subscriptions)
        else:
            outcome = handle_text(
                protocol, message, client.subscriptions, self._types, self.now_iso(), self.iso_in
            )
        client.subscriptions = outcome.subscriptions
        if outcome.error is not None and self._over_error_budget(client, outcome.error):
            return
        self._reply(client, outcome)

    def _over_error_budget(self, client: Client, error: str) -> bool:
        """Count an invalid message; close the client with 1008 (and say True) once it
        has sent too many."""
        limits = self.scenario.server
        self._counters.client_errors += 1
        client.errors += 1
        if client.errors <= limits.errors_logged:
            self.log.emit(EventKind.CLIENT_ERROR, conn=client.index, error=error)
        now = asyncio.get_running_loop().time()
        if client.error_budget is None:
            client.error_budget = TokenBucket(limits.max_errors_per_s, limits.error_burst, now)
        if client.error_budget.allow(now):
            return False
        self.log.emit(EventKind.RATE_LIMITED, conn=client.index, limit=limits.max_errors_per_s)
        client.fail(CLOSE_POLICY_VIOLATION, "too many invalid messages")
        return True

    def _reply(self, client: Client, outcome: Outcome) -> None:
        loop = asyncio.get_running_loop()
        for reply in outcome.replies:
            if reply.delay_ns:
                loop.call_later(reply.delay_ns / 1e9 / self.speed, self._send_reply, client, reply)
            else:
                self._send_reply(client, reply)

    def _send_reply(self, client: Client, reply: Reply) -> None:
        if not client.open:
            return  # a delayed reply due after its client left (or began to): never sent
        payload = orjson.dumps(reply.message)
        if self.recorder is not None:
            self.recorder.sent(client.index, [None], [payload])
        frame = text_frame(payload)
        client.deliver(frame, [frame])
        if client.faulted is not None:
            client.faulted.send_batch_now(client)

    def _on_slow(self, client: Client, what: str, count: int) -> None:
        if what == "late" and self.recorder is not None:
            # Frames that waited longer than max_lateness for a slow client, dropped
            # when its socket drained (at most once per drain).
            self.recorder.fault(client.index, {"kind": "late", "frames": count})
        if what == "closed":
            self._counters.slow_closed += 1
            self.log.emit(EventKind.SLOW_CONSUMER, conn=client.index, action=what, frames=count)
            return
        # Drops can happen thousands of times a second: log them at most once a second
        # per client, with the running total (the exact count is in the stats), and at
        # most SLOW_LINES_PER_S lines for all clients together.
        now = asyncio.get_running_loop().time()
        if now - self._slow_logged.get(client.index, -1.0) < 1.0:
            return
        self._slow_logged[client.index] = now
        if self._slow_lines.allow(now):
            self.log.emit(
                EventKind.SLOW_CONSUMER,
                conn=client.index,
                action=what,
                dropped_total=client.frames_dropped,
            )
            return
        self._slow_left_out += 1
        if now - self._slow_summarized >= 1.0:
            self._slow_summarized = now
            self.log.emit(
                EventKind.SLOW_CONSUMER,
                action="not_logged",
                clients_not_logged=self._slow_left_out,
                message="more slow clients dropped frames than are logged one by one",
            )
            self._slow_left_out = 0

    # ------------------------------------------------------------------ status

    def stats(self, lateness_newest: int | None = None) -> Stats:
        """The counters now; lateness over the ``lateness_newest`` newest messages only,
        if given (all the recent samples take milliseconds to sort)."""
        c = self._counters
        p50, p99 = c.lateness_ms(lateness_newest)
        uptime = asyncio.get_running_loop().time() - self.clock.start_at
        clients = self.clients.values()
        return Stats(
            uptime_s=uptime,
            virtual_s=uptime * self.speed,
            connections_open=len(self.clients),
            connections_total=c.connections_total,
            messages_by_stream=dict(c.messages_by_stream),
            frames_sent=c.frames_sent_closed + sum(x.frames_sent for x in clients),
            frames_dropped=c.frames_dropped_closed + sum(x.frames_dropped for x in clients),
            slow_closed=c.slow_closed,
            client_errors=c.client_errors,
            rejected=c.rejected,
            late_dropped=c.late_by_stream.total(),
            lateness_p50_ms=p50,
            lateness_p99_ms=p99,
            faults_by_kind=dict(
                self.on_demand.counts + (Counter() if self.faults is None else self.faults.counts)
            ),
        )


def limit_socket_buffer(conn: Connection, size: int) -> None:
    """Set the kernel's send buffer of ``conn``'s socket to ``size`` bytes (Linux
    doubles it for its own bookkeeping); 0, or no socket (in memory), leaves it be."""
    sock = conn.transport.get_extra_info("socket")
    if size and sock is not None:
        with contextlib.suppress(OSError):  # the connection may already be gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


@contextlib.asynccontextmanager
async def serve(
    scenario: Scenario,
    *,
    host: str | None = None,
    port: int | None = None,
    seed: int | None = None,
    speed: float = 1.0,
    duration_ns: int | None = None,
    epoch_ns: int | None = None,
    log_sends: bool = False,
    record: str | Path | None = None,
    redact: Redactor | None = None,
    in_memory: bool = False,
    tls: ssl.SSLContext | None = None,
    numbering: Numbering | None = None,
    origin_wall_ns: int | None = None,
    reuse_port: bool = False,
    overwrite_record: bool = False,
) -> AsyncIterator[SimServer]:
    """Serve ``scenario`` (load a file with :func:`simulator.scenario.load_scenario`)
    until the block ends.

    ``host``/``port`` default to the scenario's ``[server]`` (``port=0`` picks a free
    one: read ``server.url``); ``in_memory`` opens no socket: clients connect with
    ``open_transport=server.open_transport`` (see :mod:`simulator.net.wire_client`).
    ``epoch_ns`` fixes the wall time of virtual time 0 (default: the scenario's epoch,
    else the wall time of scenario time 0: see ``origin_wall_ns``). ``log_sends`` keeps
    every message sent in ``server.sent``: for tests, not for long runs. ``record``
    writes the session to that Parquet file (crash-safe segments, compacted when the
    block ends; an existing file, or segments a killed recorder left, only with
    ``overwrite_record``, and only once listening succeeded);
    ``redact`` is applied to every message
    before it is recorded (what clients send may hold secrets; see
    :class:`simulator.core.redact.Redactor`). ``tls`` serves ``wss://`` (a server
    context: :func:`simulator.net.tls.server_context`).

    Several processes serve one feed on one port (``sim run --workers``) with
    ``reuse_port`` (``SO_REUSEPORT``), each with its ``numbering`` (worker ``w`` of ``n``
    numbers its connections ``w, w+n, ...``), the same ``seed`` and ``epoch_ns``, and
    the same ``origin_wall_ns``: the wall time (``time.time_ns()``) of scenario time 0,
    so that their clocks agree (default: the last whole millisecond when it starts, so
    that a timestamp in milliseconds is a message's scheduled time exactly; on a
    virtual clock, when it starts).
    """
    if not isinstance(scenario, Scenario):
        raise UsageError(f"serve() takes a loaded Scenario, not {type(scenario).__name__}")
    server = SimServer(
        scenario,
        host=host if host is not None else scenario.server.host,
        port=None if in_memory else (port if port is not None else scenario.server.port),
        seed=scenario.seed if seed is None else seed,
        speed=speed,
        duration_ns=duration_ns if duration_ns is not None else scenario.duration_ns,
        epoch_ns=epoch_ns,
        log_sends=log_sends,
        record=record,
        redact=redact,
        numbering=numbering,
        origin_wall_ns=origin_wall_ns,
        overwrite_record=overwrite_record,
    )
    server.tls = tls
    server.reuse_port = reuse_port
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
