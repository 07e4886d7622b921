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
import http
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from websockets.http11 import Request, Response

from simulator.core.faults import plan_faults
from simulator.core.model import Mode, Scenario, TimeFormat
from simulator.core.protocol import Outcome, Reply, binary_refused, handle_text
from simulator.core.redact import Redactor, redact_url
from simulator.core.timeline import Batch, Timeline
from simulator.core.values import format_times
from simulator.errors import UsageError
from simulator.net.connection import Client, text_frame
from simulator.net.faulting import FaultInjector, Injected, longest_handshake_delay_s
from simulator.net.listener import Listener, close_of
from simulator.net.log import EventKind, EventLog
from simulator.net.recorder import Recorder
from simulator.net.wire import HandshakeAnswer, WireConfig, WireConnection, WireServer
from simulator.storage.schema import new_metadata
from simulator.version import __version__

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
#: Messages a client may send per second (and at once) before it is closed with 1008.
CLIENT_RATE_PER_S = 200.0
CLIENT_BURST = 400.0
LATENESS_SAMPLES = 100_000
SPIN_S = 0.001
#: Messages sent per event-loop iteration at most (see _pump).
MAX_TICK = 256
#: Rendering a timeline chunk blocks the loop: keep chunks small on a live server.
LIVE_MAX_CHUNK = 256
#: Seconds a client has to complete the closing handshake before it is aborted.
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Sent:
    """One message as a client was sent it (kept when ``log_sends`` is on)."""

    conn: int
    t_ns: int  # virtual time the timeline planned it for
    stream: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the server's counters (what the live status shows)."""

    uptime_s: float
    virtual_s: float
    connections_open: int
    connections_total: int
    messages_by_stream: dict[str, int]
    frames_sent: int
    frames_dropped: int
    slow_closed: int
    client_errors: int
    rejected: int
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    faults_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _Counters:
    connections_total: int = 0
    messages_by_stream: Counter[str] = field(default_factory=Counter)
    frames_dropped_closed: int = 0  # dropped by clients that have since gone
    frames_sent_closed: int = 0
    slow_closed: int = 0
    client_errors: int = 0
    rejected: int = 0


class SimServer(Listener):
    """A running simulator. Build it with :func:`serve`; read it, don't construct it."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str,
        port: int,
        seed: int,
        speed: float,
        duration_ns: int | None,
        epoch_ns: int | None,
        log_sends: bool,
        record: str | Path | None = None,
        redact: Redactor | None = None,
    ) -> None:
        if speed <= 0:
            raise UsageError(f"speed={speed}: must be > 0")
        self.scenario = scenario
        super().__init__(host)
        self.requested_port = port
        self.seed = seed
        self.speed = speed
        self.duration_ns = duration_ns
        self.epoch_ns = epoch_ns if epoch_ns is not None else scenario.epoch_ns
        self.log = EventLog()
        self.sent: list[Sent] | None = [] if log_sends else None
        self.clients: dict[int, Client] = {}
        self.lateness_ns: deque[int] = deque(maxlen=LATENESS_SAMPLES)
        self._counters = _Counters()
        self._wire: WireServer | None = None
        self._pumps: dict[int, asyncio.Task[None]] = {}  # per-connection mode
        self._types = [s.type for s in scenario.streams]
        self._names = [s.name for s in scenario.streams]
        self._next_index = 0
        self._slow_logged: dict[int, float] = {}
        self._start = 0.0
        self._wall_start = 0.0
        self._done = asyncio.Event()
        self.record_path = record
        self.redactor = redact
        self.recorder: Recorder | None = None
        self.faults: FaultInjector | None = None
        if scenario.faults:
            self.faults = FaultInjector(
                plan_faults(scenario, seed),
                self.log,
                virtual_ns=self.virtual_ns,
                loop_time=self._loop_time,
                clients=lambda: list(self.clients.values()),
                speed=speed,
            )

    @property
    def injected(self) -> list[Injected]:
        """Every fault carried out so far, in order (empty without faults)."""
        return [] if self.faults is None else self.faults.injected

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.scenario.server
        self._wire = WireServer(
            self,
            WireConfig(
                max_size=cfg.max_frame_bytes,
                write_limit=cfg.send_buffer_bytes,
                ping_interval=cfg.keepalive_interval_ns / 1e9,
                ping_timeout=cfg.keepalive_timeout_ns / 1e9,
                # The opening handshake includes waiting out injected handshake delays:
                # allow for the longest one.
                open_timeout=10 + longest_handshake_delay_s(self.scenario.faults, self.speed),
                close_timeout=CLOSE_TIMEOUT_S,
            ),
        )
        await self._wire.listen(self.host, self.requested_port)
        try:
            self._open_recorder()
        except BaseException:
            await self._wire.close()  # an unwritable path: stop listening, then fail
            raise
        self._start = loop.time()
        self._wall_start = time.time()
        if self.epoch_ns is None:
            self.epoch_ns = time.time_ns()
        if self.host in ("0.0.0.0", "::", ""):
            self.log.emit(
                EventKind.WARNING,
                message=f"listening on all interfaces ({self.host!r}): reachable from other hosts",
            )
        self.log.emit(EventKind.LISTENING, url=self.url, mode=self.scenario.server.mode.value)
        if self.scenario.server.mode is Mode.BROADCAST:
            self._spawn(self._pump_broadcast())
        if self.faults is not None:
            self._spawn(self.faults.run())
        if self.duration_ns is not None:
            loop.call_at(self._loop_time(self.duration_ns), self._done.set)

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
                    },
                ),
                self.log,
                redact=None if self.redactor is None else self.redactor.redact,
            )
            self._spawn(self.recorder.run())
            if self.faults is not None:
                self.faults.recorder = self.recorder

    def _sockets(self) -> tuple[socket.socket, ...]:
        assert self._wire is not None, "not started"
        return self._wire.sockets

    async def stop(self) -> None:
        """Close every client with 1001 (going away) and stop listening. Clients that do
        not complete the closing handshake are aborted after CLOSE_TIMEOUT_S, all at once."""
        if self._wire is None or not self._wire.serving:
            return
        self.log.emit(EventKind.STOPPING, connections=len(self.clients))
        self._cancel_tasks()
        if self.faults is not None:
            self.faults.close()
        await self._wire.close(CLOSE_GOING_AWAY)
        if self.recorder is not None:
            self.recorder.close()
        self._done.set()

    async def wait(self) -> None:
        """Wait until the scenario's duration has elapsed (forever without one)."""
        await self._done.wait()

    # ------------------------------------------------------------------ clocks

    def virtual_ns(self) -> int:
        """Scenario time now, in ns since the server started."""
        return int((asyncio.get_running_loop().time() - self._start) * self.speed * 1e9)

    def _loop_time(self, virtual_ns: int) -> float:
        return self._start + virtual_ns / 1e9 / self.speed

    def now_iso(self) -> str:
        assert self.epoch_ns is not None
        wall = np.array([self.epoch_ns + self.virtual_ns()], dtype=np.int64)
        return str(format_times(wall, TimeFormat.ISO)[0])

    # ------------------------------------------------------------------ pumps

    async def _pump_broadcast(self) -> None:
        assert self.epoch_ns is not None
        timeline = Timeline(
            self.scenario,
            self.seed,
            scope=None,
            epoch_ns=self.epoch_ns,
            max_chunk=LIVE_MAX_CHUNK,
        )
        await self._pump(timeline, origin_ns=0, clients=None)

    async def _pump(self, timeline: Timeline, origin_ns: int, clients: list[Client] | None) -> None:
        """Send ``timeline``'s messages on time. ``origin_ns`` is the virtual time at which
        the timeline's time 0 falls; ``clients=None`` means every connected client."""
        loop = asyncio.get_running_loop()
        # Broadcast: a client connecting late sees the feed from now on, so the shared
        # timeline runs whether anyone listens or not.
        end = self.duration_ns
        carry: Batch | None = None
        while True:
            if carry is not None:
                batch = carry
            else:
                nxt = timeline.next_time()
                if nxt is None or (end is not None and origin_ns + nxt >= end):
                    return
                due = self._loop_time(origin_ns + nxt)
                delay = due - loop.time()
                # The selector sleeps in whole milliseconds (rounded up), so a plain sleep
                # is up to 1 ms late. Sleep coarsely to within SPIN_S of the deadline, then
                # yield to the loop (which keeps serving I/O) until it is reached.
                if delay > SPIN_S:
                    await asyncio.sleep(delay - SPIN_S)
                while loop.time() < due:
                    await asyncio.sleep(0)
                now_virtual = self.virtual_ns() - origin_ns
                limit = now_virtual + 1 if end is None else min(now_virtual + 1, end - origin_ns)
                batch = timeline.take_until(max(limit, nxt + 1))
            # A server that has fallen behind sends at most MAX_TICK messages per loop
            # iteration and then yields: accepting connections, answering pings and
            # draining sockets must go on even when the scenario asks for more than the
            # machine can send. Nothing is skipped; it is sent late (and counted so).
            if len(batch) > MAX_TICK:
                batch, carry = batch.slice(0, MAX_TICK), batch.slice(MAX_TICK, len(batch))
            else:
                carry = None
            self._send_batch(batch, origin_ns, clients)
            await asyncio.sleep(0)

    def _send_batch(self, batch: Batch, origin_ns: int, clients: list[Client] | None) -> None:
        loop_now = asyncio.get_running_loop().time()
        frames = [text_frame(p) for p in batch.payloads]
        streams = batch.stream.tolist()
        for i, n in zip(*np.unique(batch.stream, return_counts=True), strict=True):
            self._counters.messages_by_stream[self._names[i]] += int(n)
        planned = batch.t_ns.tolist()
        for t in planned:
            late = loop_now - self._loop_time(origin_ns + t)
            self.lateness_ns.append(int(late * 1e9))
        targets = list(self.clients.values()) if clients is None else clients
        if self.faults is not None and self.faults.has_message_faults:
            self._send_through_faults(batch, origin_ns, targets)
            return
        groups: dict[frozenset[str] | None, list[Client]] = {}
        for client in targets:
            groups.setdefault(client.subscriptions, []).append(client)
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
            if self.recorder is not None:
                sent_streams = [self._names[streams[k]] for k in picked]
                sent_payloads = [batch.payloads[k] for k in picked]
            for client in members:
                client.deliver(data, chosen)
                if self.recorder is not None:
                    self.recorder.sent(client.index, sent_streams, sent_payloads)
                if self.sent is not None:
                    self.sent.extend(
                        Sent(client.index, planned[k], self._names[streams[k]], batch.payloads[k])
                        for k in picked
                    )

    def _send_through_faults(self, batch: Batch, origin_ns: int, targets: list[Client]) -> None:
        """The slow path: one decision per (client, message), made by the fault planner."""
        assert self.faults is not None
        deliver = self.faults.deliver
        types, names = self._types, self._names
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
                    deliver(client, origin_ns + t, names[s], seq, payload)
                    if self.sent is not None:
                        self.sent.append(Sent(client.index, t, names[s], payload))

    # ------------------------------------------------------------------ connections

    # Called by the WireServer (see simulator.net.wire.Handler).

    def handshake(self, conn: WireConnection, request: Request) -> HandshakeAnswer:
        """Answer a handshake: health check, connection limit, then injected faults."""
        if request.path.split("?")[0] == "/healthz":
            body = orjson.dumps(
                {"status": "ok", "scenario": self.scenario.name, "connections": len(self.clients)}
            ).decode()
            response = conn.protocol.reject(http.HTTPStatus.OK, body + "\n")
            del response.headers["Content-Type"]  # reject() set text/plain
            response.headers["Content-Type"] = "application/json"
            return response
        if len(self.clients) >= self.scenario.server.max_connections:
            self._counters.rejected += 1
            self.log.emit(
                EventKind.REJECTED,
                reason="max_connections",
                limit=self.scenario.server.max_connections,
            )
            response = conn.protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n"
            )
            response.headers["Retry-After"] = "1"
            return response
        # Connections are numbered by handshake attempt, so that fault targeting (which
        # counts attempts, refused ones included) and connection indices agree.
        if self.faults is None:
            conn.index = self._next_index
            self._next_index += 1
            return None
        decision = self.faults.handshake()
        conn.index = decision.attempt
        refusal = None
        if decision.status is not None:
            phrase = http.HTTPStatus(decision.status).phrase
            refusal = conn.protocol.reject(decision.status, f"{phrase}\n")
            if decision.retry_after_s is not None:
                refusal.headers["Retry-After"] = str(decision.retry_after_s)
        if decision.delay_ns:
            # Held in a task of its own: other handshakes go on meanwhile.
            return _after(decision.delay_ns / 1e9 / self.speed, refusal)
        return refusal

    def opened(self, conn: WireConnection) -> None:
        loop = asyncio.get_running_loop()
        assert self.epoch_ns is not None
        index = conn.index if conn.index is not None else -1
        per_connection = self.scenario.server.mode is Mode.PER_CONNECTION
        origin = self.virtual_ns()
        client = Client(
            index,
            conn,
            send_buffer_bytes=self.scenario.server.send_buffer_bytes,
            policy=self.scenario.server.slow_consumer,
            connected_at=loop.time(),
            epoch_ns=self.epoch_ns + origin if per_connection else self.epoch_ns,
            on_slow=self._on_slow,
        )
        client.tokens, client.tokens_at = CLIENT_BURST, loop.time()
        if self.recorder is not None:
            self.recorder.opened(index, {"path": redact_url(conn.path or "/")})
        self.clients[index] = client
        self._counters.connections_total += 1
        self.log.emit(
            EventKind.CONNECTED,
            conn=index,
            remote=_address(client.remote),
            path=None if conn.path is None else redact_url(conn.path),
        )
        if self.faults is not None:
            self.faults.connected(client, origin)
        if per_connection:
            timeline = Timeline(
                self.scenario,
                self.seed,
                scope=index,
                epoch_ns=client.epoch_ns,
                max_chunk=LIVE_MAX_CHUNK,
            )
            self._pumps[index] = self._spawn(self._pump(timeline, origin, [client]))

    def message(self, conn: WireConnection, message: str | bytes) -> None:
        client = self.clients.get(conn.index if conn.index is not None else -1)
        if client is None or client.closing:
            return  # drop what is in flight so the closing handshake completes
        now = asyncio.get_running_loop().time()
        if not client.allow_message(now, CLIENT_RATE_PER_S, CLIENT_BURST):
            self.log.emit(EventKind.RATE_LIMITED, conn=client.index, limit=CLIENT_RATE_PER_S)
            client.close(CLOSE_POLICY_VIOLATION, "message rate limit exceeded")
            return
        self._on_message(client, message)

    def closed(self, conn: WireConnection) -> None:
        index = conn.index if conn.index is not None else -1
        client = self.clients.pop(index, None)
        if client is None:
            return
        pump = self._pumps.pop(index, None)
        if pump is not None:
            pump.cancel()
        if self.faults is not None:
            self.faults.disconnected(client)
        self._slow_logged.pop(index, None)
        self._counters.frames_sent_closed += client.frames_sent
        self._counters.frames_dropped_closed += client.frames_dropped
        code, reason, by = close_of(conn)
        if self.recorder is not None:
            self.recorder.closed(index, code, reason, by)
        self.log.emit(
            EventKind.DISCONNECTED,
            conn=index,
            code=code,
            reason=reason,
            by=by,
            sent=client.frames_sent,
            dropped=client.frames_dropped,
        )

    def _on_message(self, client: Client, message: str | bytes) -> None:
        protocol = self.scenario.protocol
        if self.recorder is not None:
            self.recorder.received(client.index, message)
        if isinstance(message, bytes):
            outcome = binary_refused(protocol, client.subscriptions)
        else:
            outcome = handle_text(
                protocol, message, client.subscriptions, self._types, self.now_iso()
            )
        client.subscriptions = outcome.subscriptions
        if outcome.error is not None:
            self._counters.client_errors += 1
            self.log.emit(EventKind.CLIENT_ERROR, conn=client.index, error=outcome.error)
        self._reply(client, outcome)

    def _reply(self, client: Client, outcome: Outcome) -> None:
        loop = asyncio.get_running_loop()
        for reply in outcome.replies:
            if reply.delay_ns:
                loop.call_later(reply.delay_ns / 1e9 / self.speed, self._send_reply, client, reply)
            else:
                self._send_reply(client, reply)

    def _send_reply(self, client: Client, reply: Reply) -> None:
        payload = orjson.dumps(reply.message)
        if self.recorder is not None:
            self.recorder.sent(client.index, [None], [payload])
        frame = text_frame(payload)
        client.deliver(frame, [frame])

    def _on_slow(self, client: Client, what: str, count: int) -> None:
        if what == "closed":
            self._counters.slow_closed += 1
            self.log.emit(EventKind.SLOW_CONSUMER, conn=client.index, action=what, frames=count)
            return
        # Drops can happen thousands of times a second: log them at most once a second
        # per client, with the running total (the exact count is in the stats).
        now = asyncio.get_running_loop().time()
        if now - self._slow_logged.get(client.index, -1.0) >= 1.0:
            self._slow_logged[client.index] = now
            self.log.emit(
                EventKind.SLOW_CONSUMER,
                conn=client.index,
                action=what,
                dropped_total=client.frames_dropped,
            )

    # ------------------------------------------------------------------ status

    def stats(self) -> Stats:
        c = self._counters
        lateness = np.fromiter(self.lateness_ns, dtype=np.int64)
        p50, p99 = (
            (float(np.percentile(lateness, 50)) / 1e6, float(np.percentile(lateness, 99)) / 1e6)
            if len(lateness)
            else (None, None)
        )
        loop_now = asyncio.get_running_loop().time()
        return Stats(
            uptime_s=loop_now - self._start,
            virtual_s=(loop_now - self._start) * self.speed,
            connections_open=len(self.clients),
            connections_total=c.connections_total,
            messages_by_stream=dict(c.messages_by_stream),
            frames_sent=c.frames_sent_closed + sum(x.frames_sent for x in self.clients.values()),
            frames_dropped=c.frames_dropped_closed
            + sum(x.frames_dropped for x in self.clients.values()),
            slow_closed=c.slow_closed,
            client_errors=c.client_errors,
            rejected=c.rejected,
            lateness_p50_ms=p50,
            lateness_p99_ms=p99,
            faults_by_kind={} if self.faults is None else dict(self.faults.counts),
        )


async def _after(delay_s: float, response: Response | None) -> Response | None:
    await asyncio.sleep(delay_s)
    return response


def _address(remote: Any) -> str | None:
    if isinstance(remote, tuple) and len(remote) >= 2:
        return f"{remote[0]}:{remote[1]}"
    return None if remote is None else str(remote)


def load(scenario: Scenario | str | Path) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    from simulator.scenario_toml import load_scenario

    return load_scenario(scenario)


@contextlib.asynccontextmanager
async def serve(
    scenario: Scenario | str | Path,
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
) -> AsyncIterator[SimServer]:
    """Serve ``scenario`` (a :class:`Scenario` or a TOML path) until the block ends.

    ``host``/``port`` default to the scenario's ``[server]`` (``port=0`` picks a free
    one: read ``server.url``). ``epoch_ns`` fixes the wall time of virtual time 0
    (default: the scenario's epoch, else now). ``log_sends`` keeps every message sent
    in ``server.sent``: for tests, not for long runs. ``record`` writes the session to
    that Parquet file (crash-safe segments, compacted when the block ends); ``redact``
    is applied to every message before it is recorded (what clients send may hold
    secrets; see :class:`simulator.core.redact.Redactor`).
    """
    sc = load(scenario)
    server = SimServer(
        sc,
        host=host if host is not None else sc.server.host,
        port=port if port is not None else sc.server.port,
        seed=sc.seed if seed is None else seed,
        speed=speed,
        duration_ns=duration_ns if duration_ns is not None else sc.duration_ns,
        epoch_ns=epoch_ns,
        log_sends=log_sends,
        record=record,
        redact=redact,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
