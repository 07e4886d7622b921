"""The reference resilient client: the Python counterpart of a dashboard's
reconnecting WebSocket hook, with each behaviour a documented, tested promise.

* **Reconnects with full-jitter exponential backoff**, seeded; the attempt count resets
  only after a connection stayed open ``backoff.stable_s``, never on a bare handshake
  (a server that accepts and closes at once is not hammered).
* **Classifies why a connection ended** (:mod:`simulator.core.close_policy`): stops on
  1008, 4xxx, 401/403 and the like; retries on 1006, 1011, 1012, 1013, 5xx, 429, and
  honours ``Retry-After`` up to a cap. A failed first connect is retried too.
* **Detects a half-open connection** within ``heartbeat_interval_s +
  heartbeat_timeout_s``: it sends the feed's application ping each interval and drops
  the socket when nothing at all came back within the timeout. Heartbeat timers belong
  to one connection: a stale one never touches the next socket.
* **At most one live socket**, and :meth:`close` cancels any pending reconnect and
  leaves no task, timer or socket behind.
* **Resubscribes to exactly the active subscription set** after every reconnect, after
  re-sending the preamble (auth, session) messages. The set is either the streams
  subscribed to, or everything the server sends but those unsubscribed from. A stream
  the server refuses as unknown is skipped on that connection (a :class:`Refused`
  event; asked for again on the next, which may be another host), and what a refusal
  took down with it is asked for again, one stream a request.
* **Gaps and duplicates from each stream's ``seq``** (:mod:`simulator.core.sequence`):
  a duplicate is never delivered twice, every gap is reported with its range. A count
  that starts again on a new connection (a restarted server) is followed, not taken
  for duplicates (a :class:`Restarted` event; see ``ClientConfig.seq_across_connections``).
* **Messages sent while offline** wait in a bounded queue and are written once, in
  order, when the next connection opens (at most once: one written to a connection
  that drops at once is not sent again).
* **Observable**: every state change and event goes to the listeners
  (:meth:`listen`), see :mod:`simulator.client.events`.

Time is the event loop's (a virtual clock in tests) and randomness a seeded generator:
given a ``seed``, a run is a function of it and of what the server does. Without one
the seed is drawn at random, so that clients started together (a fleet of dashboards,
a page opened in many tabs) do not all draw the same jitter and come back together.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from simulator.client.events import (
    ClientEvent,
    Duplicate,
    Gap,
    Message,
    Refused,
    Restarted,
    Retry,
    State,
    StateChanged,
)
from simulator.core.backoff import Backoff, BackoffPolicy
from simulator.core.close_policy import CloseClass, ClosePolicy, Verdict
from simulator.core.sequence import SequenceTracker
from simulator.errors import ConnectError, SimError, UsageError
from simulator.net.wire import Connection, Handler, WireConfig, close_of
from simulator.net.wire_client import ClientConnection, OpenTransport, check_url, connect

logger = logging.getLogger(__name__)


#: How a stream's ``seq`` runs from one connection to the next (see ClientConfig).
SeqAcross = Literal["auto", "continues", "restarts"]
SEQ_ACROSS: tuple[SeqAcross, ...] = ("auto", "continues", "restarts")


class _HookFailed(Exception):
    """``before_connect`` raised (the cause): this attempt failed."""


class OfflineQueueFull(SimError):
    """:meth:`ResilientClient.send` while offline, with the queue at its limit."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How the client behaves; every time is in seconds of the event loop's clock."""

    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    close_policy: ClosePolicy = field(default_factory=ClosePolicy)
    #: Send ``ping_message`` this often; ``None``: no application heartbeat.
    heartbeat_interval_s: float | None = 10.0
    #: After a heartbeat ping, drop the connection if nothing arrived within this.
    heartbeat_timeout_s: float = 10.0
    ping_message: str = '{"type":"ping"}'
    subscribe_type: str = "subscribe"
    unsubscribe_type: str = "unsubscribe"
    #: The ``type`` of the server's error replies; one with ``"error":
    #: "unknown_stream"`` and a ``"streams"`` list refuses those streams.
    error_type: str = "error"
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    #: Messages kept while offline; more raise :class:`OfflineQueueFull`.
    queue_limit: int = 1000
    #: How each stream's ``seq`` runs across connections. ``"continues"``: one count (a
    #: broadcast feed): what was missed while away is a gap, a seq seen before is a
    #: duplicate. ``"restarts"``: each connection counts afresh (a per-connection feed).
    #: ``"auto"``: one count, unless a stream's first seq on a new connection is not
    #: above the highest seen before it: then that stream's count started again (a
    #: restarted server, another host behind a balancer), reported as
    #: :class:`Restarted`. (A server that replays messages already sent, the last one
    #: included, on reconnect needs ``"continues"``.)
    seq_across_connections: SeqAcross = "auto"
    max_size: int | None = 2**20

    def __post_init__(self) -> None:
        if self.seq_across_connections not in SEQ_ACROSS:
            raise UsageError(
                f"seq_across_connections={self.seq_across_connections!r}: "
                f"must be one of {', '.join(SEQ_ACROSS)}"
            )


class _Session(Handler):
    """One connection's events, handed to its client while it is the live one."""

    def __init__(self, client: ResilientClient) -> None:
        self.client = client
        self.ended = asyncio.Event()
        self.heartbeat_failed = False
        self.opened_at: float | None = None
        self.heard_at = 0.0
        #: Streams that have sent a message on this connection (the first may restart).
        self.streams: set[str] = set()
        #: Streams asked for in requests naming several, since the last resync: a
        #: refusal of one of them refused them all.
        self.batched: set[str] = set()
        #: Streams this server refused as unknown: not asked for again on this connection.
        self.unknown: set[str] = set()
        #: Whether the server's set is still its untouched default, which the first
        #: subscribe narrows (any request sent may have made it explicit).
        self.default = True
        # The heartbeat timers not run yet, by id (a TimerHandle hashes and compares by
        # its time: a beat and a check due together collide); in the order they were set.
        self.timers: dict[int, asyncio.TimerHandle] = {}

    def opened(self, conn: Connection) -> None:
        # Called from the read that completes the handshake, before any message that
        # came with it: the new connection becomes the live one first.
        assert isinstance(conn, ClientConnection)
        self.client._opened(conn, self)

    def message(self, conn: Connection, message: str | bytes) -> None:
        self.heard_at = asyncio.get_running_loop().time()
        self.client._received(self, message)

    def control(self, conn: Connection, frame: Any) -> None:
        self.heard_at = asyncio.get_running_loop().time()  # a pong is a sign of life too

    def closed(self, conn: Connection) -> None:
        self.stop_heartbeat()
        self.ended.set()

    def stop_heartbeat(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def later(self, delay: float, callback: Any, *args: Any) -> None:
        """A heartbeat timer of this connection (cancelled with it)."""
        # A timer leaves the dict when it runs: a run timer is not "cancelled", and
        # keeping those made every call walk all the beats of the session so far.

        def fire() -> None:
            self.timers.pop(key, None)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        key = id(handle)
        self.timers[key] = handle


class ResilientClient:
    """Keeps a connection to ``url`` open for as long as it runs. Start it with
    :meth:`start` (or ``async with``), stop it with :meth:`close`.

    ``subscriptions`` is the initial active set (``None``: whatever the server sends by
    default, less what :meth:`unsubscribe` removes); ``preamble`` messages (auth,
    session) are sent first on every connection; ``headers`` go with every handshake.
    ``url``, ``preamble`` and ``headers`` are read again for every attempt: assign new
    ones (a refreshed token) and the next attempt uses them, or let
    ``before_connect(client)`` (a function or a coroutine function) do it: it is called
    before every attempt, the first one included; if it raises, the attempt counts as
    failed and is retried after the backoff. ``ssl`` verifies a ``wss://`` server
    (default: the system's CAs). ``open_transport`` replaces the socket (tests: a
    server's in-memory transport). ``seed`` seeds the backoff's jitter (``None``: a
    random seed; give one for a reproducible run, in tests).
    """

    def __init__(
        self,
        url: str,
        *,
        config: ClientConfig | None = None,
        subscriptions: Sequence[str] | None = None,
        preamble: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
        seed: int | None = None,
        ssl: ssl_module.SSLContext | None = None,
        open_transport: OpenTransport | None = None,
        before_connect: Callable[[ResilientClient], Awaitable[None] | None] | None = None,
    ) -> None:
        check_url(url)
        self.url = url
        self.config = config if config is not None else ClientConfig()
        #: The streams subscribed to, or ``None``: everything the server sends by
        #: default except ``unsubscribed``.
        self.subscriptions: set[str] | None = None if subscriptions is None else set(subscriptions)
        self.unsubscribed: set[str] = set()
        self.preamble = tuple(preamble)
        self.headers = tuple(headers)
        self.state = State.STOPPED
        self.stop_reason: str | None = None
        self.connections = 0  # connections opened so far
        self._open_transport = open_transport
        self._before_connect = before_connect
        self._ssl = ssl
        # None: a seed from Python's global generator, so that clients differ from each
        # other, while a test that seeds it (hypothesis does, for each example) still
        # gets the same run again.
        self._rng = random.Random(random.getrandbits(64) if seed is None else seed)
        self._backoff = Backoff(self.config.backoff)
        self._tracker = SequenceTracker()
        self._outbox: deque[str] = deque()
        self._listeners: list[Callable[[ClientEvent], None]] = []
        self._conn: ClientConnection | None = None
        self._session: _Session | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closer: asyncio.Future[None] | None = None  # a close() under way
        self._closing = False

    # ------------------------------------------------------------------ public

    def listen(self, listener: Callable[[ClientEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns a function that stops it.
        Listeners run on the event loop and must not block."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def start(self) -> None:
        """Start connecting (and reconnecting) in the background; return at once. After
        a stop (``close()``, or the server's word) it starts afresh: a close still under
        way is waited for, ``stop_reason`` is cleared, the backoff starts over."""
        if self._closer is not None:
            await asyncio.shield(self._closer)
        if self._runner is not None and not self._runner.done():
            return
        self._closing = False
        self.stop_reason = None
        self._backoff.reset()
        self._runner = asyncio.ensure_future(self._run())

    async def __aenter__(self) -> ResilientClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_stopped(self) -> None:
        """Return once the client has stopped (closed, or told by the server to stop)."""
        if self._runner is not None:
            await asyncio.shield(self._runner)

    async def close(self) -> None:
        """Stop: cancel any pending reconnect, close the connection (bounded by the close
        timeout), and leave no task, timer or socket behind. Every caller returns once
        that is done."""
        if self._closer is None:
            self._closer = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        try:
            await self._stop_everything()
        finally:
            self._closer = None

    async def _stop_everything(self) -> None:
        self._closing = True
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self._drop_connection()
        if self.state is not State.STOPPED:
            self._set_state(State.STOPPED, reason=self.stop_reason or "closed")

    @property
    def is_open(self) -> bool:
        return self._conn is not None and self._conn.is_open

    def send(self, message: str) -> None:
        """Send ``message`` now, or once connected (queued while offline, in order).
        Each is written once, at most: one written to a connection that then drops is
        not sent again (the application resends what needs an answer, e.g. on a
        ``State.OPEN`` event). Raises :class:`OfflineQueueFull` past ``queue_limit``."""
        if self.state is State.OPEN and self._conn is not None and self._conn.is_open:
            self._conn.send(message)
            return
        if len(self._outbox) >= self.config.queue_limit:
            raise OfflineQueueFull(
                f"queue_limit={self.config.queue_limit}: the offline queue is full"
            )
        self._outbox.append(message)

    def subscribe(self, *types: str) -> None:
        """Add ``types`` to the active set (told to the server now if connected, and on
        every reconnect). As the server does, the first subscribe of a client on the
        default set narrows it to ``types``. No ``types``: nothing changes."""
        if not types:
            return
        if self.subscriptions is not None:
            self.subscriptions.update(types)
            self._ask(self.config.subscribe_type, types)
        elif self.unsubscribed:
            # Back to a stream unsubscribed from the default set, which a server still
            # at its default already sends (and would take a subscribe for a first one).
            self.unsubscribed.difference_update(types)
            conn, session = self._conn, self._session
            if (
                self.state is State.OPEN
                and conn is not None
                and session is not None
                and not session.default
            ):
                # Explicit, or still the default if what was sent was refused: a
                # subscribe would narrow the latter. Set it exactly either way.
                self._resync(conn, session)
        else:
            self.subscriptions = set(types)
            self._ask(self.config.subscribe_type, types, narrows=True)

    def unsubscribe(self, *types: str) -> None:
        """Remove ``types`` from the active set (told to the server now if connected,
        and on every reconnect), the default set included. No ``types``: nothing
        changes."""
        if not types:
            return
        if self.subscriptions is None:
            self.unsubscribed.update(types)
        else:
            self.subscriptions.difference_update(types)
        self._ask(self.config.unsubscribe_type, types)

    def _ask(self, kind: str, types: Sequence[str], *, narrows: bool = False) -> None:
        """Tell the server of a change of the active set. ``narrows``: a first subscribe
        on the default set."""
        conn, session = self._conn, self._session
        if self.state is not State.OPEN or conn is None or session is None:
            return  # asked for on the next connection
        wanted = set(types) - session.unknown
        if narrows and (not session.default or not wanted):
            # The server narrows only its untouched default: from an explicit set (or
            # to nothing but refused names), start from nothing.
            conn.send(self._subscription(self.config.unsubscribe_type, "*"))
            session.default = False
        if wanted:
            self._request(conn, session, kind, wanted, narrows=narrows)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._set_state(State.CONNECTING)
            session = _Session(self)
            uptime: float | None = None
            try:
                await self._prepare()
                if self._closing:  # a hook that swallowed close()'s cancellation
                    break
                conn = await connect(
                    self.url,
                    session,
                    config=WireConfig(
                        max_size=self.config.max_size,
                        ping_interval=None,
                        ping_timeout=None,
                        open_timeout=self.config.open_timeout_s,
                        close_timeout=self.config.close_timeout_s,
                    ),
                    headers=self.headers,
                    ssl=self._ssl,
                    open_transport=self._open_transport,
                )
            except ConnectError as e:
                # A Retry-After may be an HTTP-date: it counts from the wall clock.
                verdict = self.config.close_policy.on_refusal(
                    e.status, _retry_after(e), now=time.time()
                )
            except _HookFailed as e:
                verdict = CloseClass(Verdict.RETRY, f"before_connect failed: {e.__cause__!r}")
            except UsageError as e:  # a URL before_connect set that no retry will mend
                verdict = CloseClass(Verdict.STOP, str(e))
            else:
                await session.ended.wait()
                assert session.opened_at is not None
                # How long it was healthy: a half-open connection was not, from the last
                # sign of life on (else every accept-then-silence would reset the count).
                ended_at = session.heard_at if session.heartbeat_failed else loop.time()
                uptime = ended_at - session.opened_at
                self._conn = self._session = None
                code, reason, by = close_of(conn)
                if session.heartbeat_failed:
                    verdict = CloseClass(Verdict.RETRY, "heartbeat timeout: no sign of life")
                elif by == "client":
                    # This client failed the connection itself (a message over max_size,
                    # invalid UTF-8, a bug): not the server's word, so no reason to stop.
                    verdict = CloseClass(Verdict.RETRY, f"closed by this client ({code})")
                else:
                    verdict = self.config.close_policy.on_close(
                        None if by == "network" else code, reason
                    )
            if self._closing:
                break
            if verdict.verdict is Verdict.STOP:
                self.stop_reason = verdict.reason
                self._set_state(State.STOPPED, reason=verdict.reason)
                return
            attempt = self._backoff.attempt
            delay = self._backoff.next_delay_s(
                self._rng.random(), uptime_s=uptime, retry_after_s=verdict.retry_after_s
            )
            hint = self.config.backoff.retry_after_wait_s(verdict.retry_after_s)
            self._emit(Retry(loop.time(), delay, verdict.reason, attempt, hint))
            self._set_state(State.BACKOFF, delay_s=delay, reason=verdict.reason)
            await asyncio.sleep(delay)

    async def _prepare(self) -> None:
        """Run ``before_connect`` (the application's: its failure is a failed attempt,
        not the end of the client), within ``open_timeout_s`` (a token service that
        never answers must not hold the client for ever), then check the URL it may
        have changed."""
        if self._before_connect is not None:
            task = asyncio.current_task()
            try:
                async with asyncio.timeout(self.config.open_timeout_s):
                    result = self._before_connect(self)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError as e:
                if task is not None and task.cancelling():
                    raise  # close(): the client is stopping
                logger.exception("before_connect of the client was cancelled")
                raise _HookFailed from e  # its own cancellation: a failed attempt
            except Exception as e:
                logger.exception("before_connect of the client failed")
                raise _HookFailed from e
        check_url(self.url)

    def _opened(self, conn: ClientConnection, session: _Session) -> None:
        """A new connection is the live one: preamble, subscriptions, offline queue,
        heartbeat, in that order (before any message that came with the handshake)."""
        self._conn, self._session = conn, session
        session.opened_at = asyncio.get_running_loop().time()
        self.connections += 1
        if self.config.seq_across_connections == "restarts":
            self._tracker.restart()
        for message in self.preamble:
            conn.send(message)
        # A new connection starts from the server's default set: one request makes it
        # the active set.
        if self.subscriptions:
            self._request(
                conn, session, self.config.subscribe_type, self.subscriptions, narrows=True
            )
        elif self.subscriptions is not None:
            conn.send(self._subscription(self.config.unsubscribe_type, "*"))
            session.default = False
        elif self.unsubscribed:
            self._request(conn, session, self.config.unsubscribe_type, self.unsubscribed)
        while self._outbox and conn.is_open:
            conn.send(self._outbox.popleft())
        session.heard_at = asyncio.get_running_loop().time()
        self._set_state(State.OPEN)
        self._arm_heartbeat(conn, session)

    def _arm_heartbeat(self, conn: ClientConnection, session: _Session) -> None:
        if self.config.heartbeat_interval_s is not None:
            session.later(self.config.heartbeat_interval_s, self._beat, conn, session)

    def _beat(self, conn: ClientConnection, session: _Session) -> None:
        """Every interval: ping, and check after the timeout that something came back.
        Pings go out on their own clock, so a silent peer is found within interval +
        timeout whatever the two are."""
        if session.ended.is_set() or not conn.is_open:
            return
        interval = self.config.heartbeat_interval_s
        assert interval is not None
        conn.send(self.config.ping_message)
        sent_at = asyncio.get_running_loop().time()
        session.later(self.config.heartbeat_timeout_s, self._check, conn, session, sent_at)
        session.later(interval, self._beat, conn, session)

    def _check(self, conn: ClientConnection, session: _Session, sent_at: float) -> None:
        if session.ended.is_set() or session.heard_at >= sent_at:
            return
        # Half-open: nothing at all since the ping. Drop the socket (a close frame would
        # wait on a peer that is not there).
        session.heartbeat_failed = True
        session.stop_heartbeat()
        conn.abort()

    async def _drop_connection(self) -> None:
        conn, session = self._conn, self._session
        self._conn = self._session = None
        if session is not None:
            session.stop_heartbeat()
        if conn is not None and not conn.lost:
            self._set_state(State.CLOSING)
            await conn.close()

    # ------------------------------------------------------------------ messages

    def _received(self, session: _Session, raw: str | bytes) -> None:
        loop_time = asyncio.get_running_loop().time()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        stream = seq = None
        if isinstance(data, dict):
            kind, number = data.get("type"), data.get("seq")
            if isinstance(kind, str) and isinstance(number, int) and not isinstance(number, bool):
                stream, seq = kind, number
            elif kind == self.config.error_type and data.get("error") == "unknown_stream":
                self._refused(session, data, loop_time)
        late = False
        if stream is not None and seq is not None:
            if stream not in session.streams:
                session.streams.add(stream)
                self._follow_restart(stream, seq, loop_time)
            seen = self._tracker.observe(stream, seq)
            if seen.gap is not None:
                self._emit(Gap(loop_time, stream, seen.gap[0], seen.gap[1]))
            if seen.duplicate or seen.too_old:
                # Too old to tell from a duplicate: not delivered, reported as one.
                self._emit(Duplicate(loop_time, stream, seq))
            if not seen.deliver:
                return
            late = seen.late
        self._emit(Message(loop_time, raw, data, stream, seq, late))

    def _follow_restart(self, stream: str, seq: int, at: float) -> None:
        """The first message of ``stream`` on a connection: with ``"auto"``, a seq not
        above the highest seen before means the count started again (a feed that
        resumes sends what came after: a server that replays needs ``"continues"``)."""
        if self.config.seq_across_connections != "auto":
            return
        previous = self._tracker.highest(stream)
        if previous is not None and seq <= previous:
            self._tracker.restart(stream)
            self._emit(Restarted(at, stream, previous, seq))

    # ------------------------------------------------------------------ subscriptions

    def _request(
        self,
        conn: ClientConnection,
        session: _Session,
        kind: str,
        types: set[str],
        *,
        narrows: bool = False,
    ) -> None:
        """Ask the server to (un)subscribe ``types``. A refusal of a request naming
        several takes them all down, and one of a first subscribe (which ``narrows`` the
        server's default set) leaves the default: either way a resync follows it."""
        if len(types) > 1 or narrows:
            session.batched.update(types)
        session.default = False
        conn.send(self._subscription(kind, sorted(types)))

    def _refused(self, session: _Session, error: dict[str, Any], at: float) -> None:
        """The server refused a request naming streams it does not send: they are
        skipped on this connection (the active set keeps them: the next connection may
        reach a server that has them). The server refuses a whole request for one
        unknown name, so when it named several, the others did not take either (and a
        first subscribe left the default set): the active set is asked for again, one
        stream a request (none of which can take another down), from a known start."""
        names = error.get("streams")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return
        refused = set(names)
        session.unknown.update(refused)
        message = error.get("message")
        self._emit(Refused(at, tuple(sorted(refused)), message if isinstance(message, str) else ""))
        if self._session is not session or not refused & session.batched:
            return
        assert self._conn is not None  # set and cleared with the session
        self._resync(self._conn, session)

    def _resync(self, conn: ClientConnection, session: _Session) -> None:
        """Set the server's set to exactly the active set, whatever it is now: from all
        or nothing, one stream a request (none of which a refusal can take another
        down with). Everything sent before is set right by it: ``batched`` starts
        afresh."""
        session.batched.clear()
        session.default = False
        subscribe, unsubscribe = self.config.subscribe_type, self.config.unsubscribe_type
        if self.subscriptions is not None:  # from nothing, each wanted stream
            reset, each, names = unsubscribe, subscribe, self.subscriptions
        else:  # from everything, each unwanted one
            reset, each, names = subscribe, unsubscribe, self.unsubscribed
        conn.send(self._subscription(reset, "*"))
        for name in sorted(names - session.unknown):
            conn.send(self._subscription(each, [name]))

    # ------------------------------------------------------------------ reporting

    def _subscription(self, kind: str, streams: Sequence[str] | str) -> str:
        return orjson.dumps({"type": kind, "streams": streams}).decode()

    def _set_state(
        self, state: State, *, delay_s: float | None = None, reason: str | None = None
    ) -> None:
        self.state = state
        self._emit(StateChanged(state, asyncio.get_running_loop().time(), delay_s, reason))

    def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # The application's bug: logged, and the client goes on (a listener
                # must not be able to stop the reconnect loop or fail a connection).
                logger.exception("a listener of the client failed on %r", event)


def _retry_after(error: ConnectError) -> str | None:
    for name, value in error.headers:
        if name.lower() == "retry-after":
            return value
    return None
