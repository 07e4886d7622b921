"""One WebSocket connection pump for both sides: an ``asyncio.Protocol`` driving
websockets' sans-I/O protocol, with no task per connection.

websockets keeps one protocol core (bytes in, events and bytes out) under thin I/O
layers; so does `sim`. :class:`Connection` is the pump both sides share: it feeds what
the transport reads to the sans-I/O protocol, writes what the protocol has to send,
joins fragments, decodes text (invalid UTF-8 closes with 1007), watches the closing
handshake (aborted after ``close_timeout``: no close, and so no stop, waits on a peer
that reads nothing) and tells a :class:`Handler` what happened, by callbacks. The two
sides differ only in their opening handshake:

* :mod:`simulator.net.wire_server`: ``ServerConnection`` answers a request (the
  handler may hold it), and ``WireServer`` listens and pings its connections;
* :mod:`simulator.net.wire_client`: ``ClientConnection`` sends a request and waits for
  the response; ``connect`` opens one.

The transport is anything that behaves like asyncio's TCP transport: a socket's, or
the in-memory pair of :mod:`simulator.net.memory`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State

from simulator.core.rates import CREDIT_S
from simulator.net.common import CLOSE_ABNORMAL
from simulator.net.event_loop import release_transport
from simulator.net.parse_budget import (
    FRAME_CHARGE_BYTES,
    SLICE_BYTES,
    TurnBudget,
    turn_budget,
)

logger = logging.getLogger(__name__)

#: First byte of a whole pong / close frame (FIN, opcode), masked or not.
_PONG_FIN = 0x80 | Opcode.PONG.value
_CLOSE_FIN = 0x80 | Opcode.CLOSE.value


#: Checks a fragmented text message fragment by fragment (see Connection._utf8_checked).
_UTF8 = codecs.getincrementaldecoder("utf-8")

#: The biggest read parsed as it comes (when the turn's parse budget allows): about 85
#: of the smallest frames. A bigger one joins the backlog, parsed a slice per turn (see
#: parse_budget); a client of a feed sends far less at once (a subscribe, a ping).
READ_SLICE_BYTES = 512
#: What a connection to a server (the proxy's upstream leg, ``sim connect``) parses in
#: one go: its peer is the feed it asked for, not a client to be kept fair to others.
FEED_SLICE_BYTES = 64 * 1024
#: What a fragment counts against ``max_size`` at least, in bytes: so a message of
#: endless empty continuation frames meets the limit too (by number of fragments).
FRAGMENT_MIN_CHARGE = 64
#: Close code and reason for a peer over its frame budget.
FRAME_FLOOD_REASON = "frame rate limit exceeded"
#: The frame budget servers give each client, per second (``WireConfig.max_frames_per_s``):
#: far above what a client of a feed sends (a few subscribes and pings a second), far
#: below a flood.
CLIENT_FRAMES_PER_S = 1000
#: Connections whose opening request has not arrived, at most (``WireConfig.max_handshakes``).
MAX_HANDSHAKES = 1000
#: What a client whose handshake's answer is held (an injected delay, the proxy's
#: upstream) may send meanwhile, at most: it must wait for the answer before it sends
#: anything (RFC 6455 §4.1). What it sends is kept unparsed, parsed after the open and
#: counted against its frame budget then; past this, the connection is dropped (a read
#: can bring far more than it: kept, it would be what a hostile client costs while
#: held). Reading goes on meanwhile, so a client that gives up is let go at once.
EARLY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class WireConfig:
    """Limits and timers, in bytes and seconds (``None`` turns one off).

    ``max_frames_per_s`` is the peer's frame budget: every frame it sends counts (data,
    continuation, ping, pong, close), in windows of one second; past it, the connection
    is failed with 1008. Servers set it; a client reading a feed does not.

    ``max_handshakes`` (servers only) caps the connections whose opening request has not
    arrived yet: past it, the oldest of them is dropped, so that TCP connections that
    never finish their request (slowloris) cannot keep new clients out."""

    max_size: int | None = 2**20
    write_limit: int = 2**16  # high-water mark of the transport's write buffer
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    close_timeout: float = 10.0
    max_frames_per_s: int | None = None
    max_handshakes: int | None = MAX_HANDSHAKES
    #: Servers only: subprotocols to agree to, in order of preference, when a client
    #: offers one of them (a client offering none is served without one).
    subprotocols: tuple[str, ...] = ()


class Handler:
    """What a connection tells about itself. Callbacks run on the event loop and must
    not block; they may send on the connection or close it. Override what you need:
    the defaults do nothing."""

    def opened(self, conn: Connection) -> None:
        """The opening handshake succeeded: ``conn`` is open."""

    def message(self, conn: Connection, message: str | bytes) -> None:
        """A complete message arrived (text as ``str``, binary as ``bytes``)."""

    def control(self, conn: Connection, frame: Frame) -> None:
        """A ping, pong or close frame arrived (the sans-I/O protocol has already
        answered a ping and a close)."""

    def closing(self, conn: Connection) -> None:
        """This side began closing an opened ``conn``: its close frame is on the way
        (:meth:`Connection.start_close`, or a limit the peer broke: ``fail``, websockets'
        own checks, the keepalive). Nothing more is delivered; :meth:`closed` follows,
        up to ``close_timeout`` later if the peer does not answer."""

    def closed(self, conn: Connection) -> None:
        """An opened connection is gone (read how with :func:`close_of`)."""

    def read_done(self, conn: Connection) -> None:
        """Every message of one read (or of one slice of a backlog) has been handed to
        :meth:`message`: a handler that held back its answers may send them now, in
        one write."""


class Connection(asyncio.Protocol):
    """One connection, either side. Read ``index``, ``remote_address`` and ``protocol``
    (its state and close frames); send with :meth:`send`; end it with
    :meth:`start_close` or :meth:`close`."""

    #: Parse within the loop turn's budget shared with the other connections (see
    #: parse_budget): a server's, whose peers must not hold up one another. A client's
    #: connection reads the feed it asked for in FEED_SLICE_BYTES slices, on its own.
    shares_parsing = True

    __slots__ = (
        "_acting",
        "_backlog",
        "_budget",
        "_close_timer",
        "_closing_due",
        "_credit_until",
        "_drained",
        "_early",
        "_ended",
        "_failed",
        "_fails",
        "_fragment_charge",
        "_fragments",
        "_frame_credit",
        "_frames_in_window",
        "_held_at",
        "_held_pong",
        "_open_timer",
        "_paused",
        "_read_at",
        "_read_holds",
        "_utf8",
        "_waiter",
        "_window_ends",
        "config",
        "dropped_here",
        "handler",
        "index",
        "keepalive",
        "lost",
        "on_resume",
        "opened",
        "ping",
        "protocol",
        "transport",
    )

    def __init__(self, protocol: Protocol, handler: Handler, config: WireConfig) -> None:
        self.protocol = protocol
        self.handler = handler
        self.config = config
        self.transport: asyncio.Transport
        self.index: int | None = None  # the connection's number, given by its owner
        self.opened = False
        self.lost = False  # connection_lost has run
        #: This side ended the TCP connection without a close frame (abort,
        #: end_without_close): a 1006 that is ours, not the peer's or the network's.
        self.dropped_here = False
        #: Called when the transport's write buffer drains below its low-water mark.
        self.on_resume: Any = None  # Callable[[], None] | None (a slot cannot be annotated)
        self.keepalive = True  # pinged by the keepalive timer (off while stalled)
        self.ping: bytes | None = None  # payload of the keepalive ping awaiting its pong
        self._fragments: list[bytes] | None = None  # b"t" or b"b" (text or binary), then payloads
        self._utf8: codecs.IncrementalDecoder | None = None  # checks a fragmented text
        self._open_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None  # created by wait_closed
        self._paused = False  # writing: the transport's buffer is over its high-water mark
        self._drained: asyncio.Future[None] | None = None  # created by drain
        self._ended = False  # end_without_close: nothing more is written
        self._failed = False  # fail: nothing more is parsed
        self._fails = 0  # fail() calls, whatever state they found (see _hand_over)
        self._fragment_charge = 0  # what the fragments so far count against max_size
        self._read_holds: set[str] = set()  # why reading is paused (see hold_reading)
        self._backlog = bytearray()  # read, not yet parsed (see READ_SLICE_BYTES)
        self._budget: TurnBudget | None = None  # the loop's, if shares_parsing
        self._held_pong: bytes | None = None  # the latest pong, while writing is paused
        self._read_at = 0.0  # loop time of the latest read (frames count as of then)
        self._window_ends = 0.0  # end of the current frame-budget window (loop time)
        self._frames_in_window = 0
        # Frames the peer sent while we held its reading, read at once when we let go:
        # allowed on top of the budget in the next window (see release_reading).
        self._frame_credit = 0.0
        self._credit_until = 0.0  # loop time it is gone, spent or not
        self._held_at = 0.0  # loop time we began holding reading (not for parsing)
        self._acting = False  # in _act_on: handing a read's events over
        self._closing_due = False  # handler.closing, once those events are handed over
        # While a request's answer is held (see EARLY_BYTES): the frames parsed with
        # the request, and whether to deliver their messages.
        self._early: tuple[Sequence[Request | Response | Frame], bool] | None = None

    # ------------------------------------------------------------------ public

    @property
    def remote_address(self) -> Any:
        return self.transport.get_extra_info("peername")

    @property
    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    def send(self, message: str | bytes) -> None:
        """Send ``message`` (text for ``str``, binary for ``bytes``) if the connection is
        open; it is buffered by the transport (wait for room with :meth:`drain`)."""
        if self.protocol.state is not State.OPEN:
            return
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self.flush()

    def send_ping(self, data: bytes) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_ping(data)
            self.flush()

    def start_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (if the connection is open): ``code=None`` sends one with
        no status, which the peer reads as 1005. The transport is aborted if the peer has
        not completed the closing handshake within ``close_timeout``. Before the opening
        handshake is over, the connection is dropped."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.flush()
        elif self.protocol.state is State.CONNECTING:
            self.transport.abort()

    async def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake; return once the TCP connection is closed (at
        most ``close_timeout`` after the close frame was written)."""
        self.start_close(code, reason)
        await self.wait_closed()

    def abort(self) -> None:
        """Drop the TCP connection with no close frame: the peer sees 1006."""
        self.dropped_here = True
        self.transport.abort()

    def end_without_close(self) -> None:
        """End the connection with no close frame (the peer sees 1006), but after what
        was already written: half-close the TCP connection (an abort would reset it,
        and the peer's kernel would discard what it had not yet read). Nothing more is
        written, automatic answers included; a peer that keeps its half open is dropped
        after ``close_timeout``."""
        self._ended = True
        self.dropped_here = True
        if self.transport.can_write_eof():
            with contextlib.suppress(OSError):  # reset by the peer: connection_lost follows
                self.transport.write_eof()
        else:
            self.transport.close()
        asyncio.get_running_loop().call_later(self.config.close_timeout, self.transport.abort)

    async def wait_closed(self) -> None:
        """Return once the TCP connection is closed."""
        if self.lost:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    async def drain(self) -> None:
        """Return once the transport's write buffer is below its low-water mark (or the
        connection is gone)."""
        if not self._paused or self.lost:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)

    def hold_reading(self, reason: str) -> None:
        """Read nothing more from the peer until :meth:`release_reading` with the same
        ``reason`` (a fault's stall, backpressure from another connection...). Holds
        with different reasons stack: reading resumes when the last one is released."""
        if not self._read_holds and not self.lost:
            self.transport.pause_reading()
        if reason != "parse" and not self._read_holds - {"parse"}:
            self._held_at = asyncio.get_running_loop().time()
        self._read_holds.add(reason)

    def release_reading(self, reason: str, *, forgive: bool = False) -> float:
        """Release the hold ``reason`` (no effect if it is not held). Returns how long
        reading was held, in seconds, when this ends the last hold (parsing aside); else
        0. With ``forgive``, what the peer sent meanwhile is not taken for a flood (see
        _credit_held_frames): for a hold of ours that the peer did not cause (a stall),
        not for backpressure (a peer that sends faster than it can be relayed is what
        the limit is for)."""
        if reason not in self._read_holds:
            return 0.0
        self._read_holds.discard(reason)
        held_s = 0.0
        if reason != "parse" and not self._read_holds - {"parse"}:
            held_s = asyncio.get_running_loop().time() - self._held_at
            if forgive:
                self._credit_held_frames(held_s)
        self._resume_reading()
        return held_s

    def _credit_held_frames(self, held_s: float) -> None:
        """What the peer sent while held (by a stall) comes in at once now,
        which it did not do: allow the frame budget's rate for that long on top of the
        budget, for CREDIT_S (the next read starts a window). It cannot be saved."""
        limit = self.config.max_frames_per_s
        if limit is not None:
            self._frame_credit = held_s * limit
            self._credit_until = asyncio.get_running_loop().time() + CREDIT_S
            self._window_ends = 0.0

    def release_all_reading(self) -> None:
        """Release every hold: the peer's close frame must be read whatever held it.
        What was read and not yet parsed is parsed first (the parse hold stays)."""
        parsing = "parse" in self._read_holds
        self._read_holds.clear()
        if parsing:
            self._read_holds.add("parse")
        self._resume_reading()

    def stop_keepalive(self) -> None:
        """Send no keepalive ping (and forget the one in flight) until :meth:`start_keepalive`."""
        self.keepalive = False
        self.ping = None

    def start_keepalive(self) -> None:
        self.keepalive = True

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a close frame with ``code`` and
        ``reason``, then discard whatever the peer sends."""
        self._fails += 1
        if self.protocol.state is State.OPEN:
            # The answers to what was read before the fault (held back until the read
            # is done, see Handler.read_done) go out before the close frame.
            self._read_done()
            self.protocol.fail(code, reason)
            # The protocol discards what comes next: so is what was read and not yet
            # parsed, at once rather than a slice a turn, and what is read from now on
            # (a failed flooder costs nothing).
            self._failed = True
            self._backlog.clear()
            self.flush()

    def flush(self) -> None:
        """Write what the sans-I/O protocol has to send; arm the close timer when it
        expects the TCP connection to end. Call it after every ``protocol.send_*``."""
        protocol, transport = self.protocol, self.transport
        if self._ended or transport.is_closing():
            # Discarded: the TCP connection is half-closed, or reset by the peer (its
            # connection_lost comes a loop turn later: a write now only warns).
            protocol.data_to_send()
            return
        for data in protocol.data_to_send():
            if data:
                if self._paused and data[0] == _PONG_FIN:
                    # The peer reads nothing of ours: answer only its latest ping, once
                    # it reads again (RFC 6455 §5.5.3 allows that), or a ping flood
                    # piles pongs up in memory.
                    self._held_pong = data
                    continue
                if data[0] == _CLOSE_FIN:
                    self._held_pong = None  # a close ends the connection: no pong after it
                transport.write(data)
            elif transport.can_write_eof():
                # Half-close: the peer closes the TCP connection. A peer that reset
                # already makes it fail (ENOTCONN; connection_lost follows): raised, it
                # would end this read's handling, and the frames read with it be lost.
                with contextlib.suppress(OSError):
                    transport.write_eof()
            else:
                transport.close()
        if self._close_timer is None and protocol.close_expected():
            self._cancel_open_timer()
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(self.config.close_timeout, transport.abort)
            if self.opened and protocol.close_sent is not None and protocol.close_rcvd is None:
                if self._acting:
                    # The read's frames before the one that failed it come first.
                    self._closing_due = True
                else:
                    self._tell_closing()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self.config.write_limit)
        if self.shares_parsing:
            self._budget = turn_budget()
        timeout = self.config.open_timeout
        if timeout is not None:
            self._open_timer = asyncio.get_running_loop().call_later(timeout, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return  # the protocol would discard it (see fail)
        self._read_at = asyncio.get_running_loop().time()
        if self._early is not None:  # kept for when the handshake is answered
            self._backlog += data
            self._bound_early()
            return
        budget = self._budget
        if budget is None:  # a client: its feed, in big slices, on its own
            if self._backlog or len(data) > FEED_SLICE_BYTES:
                self._backlog += data
                self._hold_for_parsing()
            else:
                self._receive(data)
        elif self._backlog or len(data) > READ_SLICE_BYTES or not budget.allows():
            self._backlog += data
            self._hold_for_parsing()
        else:
            budget.charge(len(data), self._receive(data))

    def _hold_for_parsing(self) -> None:
        """Read no more until the backlog is parsed (by slices, in later turns)."""
        if "parse" not in self._read_holds:
            self.hold_reading("parse")
            self._parse_later()

    def _parse_later(self) -> None:
        if self._budget is not None:
            self._budget.enqueue(self)
        else:
            asyncio.get_running_loop().call_soon(self._parse_feed_slice)

    def parse_slice(self, size: int) -> bool:
        """Parse about ``size`` bytes of the backlog, each frame charged at least
        FRAME_CHARGE_BYTES (see parse_budget.Parser): in pieces of SLICE_BYTES / 2, so
        that 2 KiB of empty frames (341 of them) is not handled in one go."""
        budget = self._budget
        piece = size if budget is None else SLICE_BYTES // 2
        charged = 0
        try:
            while (
                charged < size
                and self._backlog
                and not self.lost
                and len(self._read_holds) <= 1
                and self._early is None
            ):
                chunk = bytes(self._backlog[:piece])
                del self._backlog[:piece]
                frames = self._receive(chunk)
                charged += max(len(chunk), frames * FRAME_CHARGE_BYTES)
        except Exception:
            # A bug of ours (the handlers' own errors are caught where they are called):
            # this connection is dropped, the others are parsed on.
            logger.exception("parsing a backlog failed")
            self._backlog.clear()
            self.abort()
            return False
        finally:
            if budget is not None:
                budget.charge(charged, 0)
        if self.lost or len(self._read_holds) > 1 or self._early is not None:
            return False  # gone, another hold (a stall...) or an answer: its end parses on
        if self._backlog:
            return True
        self.release_reading("parse")
        return False

    def _parse_feed_slice(self) -> None:
        if self.parse_slice(FEED_SLICE_BYTES):
            asyncio.get_running_loop().call_soon(self._parse_feed_slice)

    def _resume_reading(self) -> None:
        if self.lost:
            return
        if self._read_holds == {"parse"}:
            self._parse_later()
        elif not self._read_holds:
            self.transport.resume_reading()

    def _over_frame_budget(self, frames: int) -> bool:
        """Count ``frames`` against the peer's budget; True once it is spent. They count
        as of when they were read, not parsed: a flood parsed slowly (slices shared with
        other flooders) is still a flood."""
        limit = self.config.max_frames_per_s
        if limit is None:
            return False
        now = self._read_at
        if now >= self._window_ends:
            # An allowance lasts to the end of the window it began (which started with
            # the first read after it was given); first used later, it is gone.
            if self._frame_credit and now >= self._credit_until:
                self._frame_credit = 0.0
            self._window_ends = now + 1.0
            self._frames_in_window = 0
        self._frames_in_window += frames
        return self._frames_in_window > limit + self._frame_credit

    def _receive(self, data: bytes) -> int:
        """Parse ``data`` and act on what it holds; return the number of frames (or
        handshake messages) it held."""
        protocol = self.protocol
        # Messages are delivered until a close: the peer's (in this data) or ours
        # (before it). Parsing the whole read first moves the protocol to CLOSING, so
        # its state cannot tell a message sent before the peer's close frame.
        deliver = protocol.close_sent is None
        protocol.receive_data(data)
        events = protocol.events_received()
        self._act_on(events, deliver)
        return len(events)

    def _act_on(self, events: Sequence[Request | Response | Frame], deliver: bool) -> None:
        """Act on what the peer sent, in order; ``deliver`` says whether its messages
        are still wanted (not once we have sent a close). A close this side begins
        meanwhile is told to the handler after them."""
        acting, self._acting = self._acting, True
        try:
            self._hand_over(events, deliver)
        finally:
            self._acting = acting
        if self._closing_due and not acting:
            self._closing_due = False
            self._tell_closing()

    def _tell_closing(self) -> None:
        try:
            self.handler.closing(self)
        except Exception:
            logger.exception("closing handler failed")

    def _hand_over(self, events: Sequence[Request | Response | Frame], deliver: bool) -> None:
        protocol = self.protocol
        if self.opened and self._over_frame_budget(len(events)) and protocol.state is State.OPEN:
            # A flood, whatever kind of frame: nothing of this batch is delivered.
            self._backlog.clear()
            protocol.data_to_send()  # the automatic answers to the flood: not sent
            self.fail(CloseCode.POLICY_VIOLATION, FRAME_FLOOD_REASON)
            return
        if not (events and isinstance(events[0], Request)):
            # Automatic answers: pongs, the close frame echoed. (Not with a request:
            # the answer to the request goes first; see ServerConnection.respond.)
            self.flush()
        # A frame that fails one of our checks while they are handed over (or a
        # handler that fails) ends the hand-over: nothing after it is handled (RFC 6455
        # §7.1.7), even when websockets had already failed a later frame of the read
        # as it parsed (its close then came after the frames parsed before the bad one:
        # those are handled).
        sent_before, fails_before = protocol.close_sent, self._fails
        for index, event in enumerate(events):
            if protocol.close_sent is not sent_before or self._fails != fails_before:
                break
            if isinstance(event, Frame):
                if event.opcode is Opcode.CLOSE:
                    deliver = False
                self._frame(event, deliver)
            else:
                self._handshake(event)
                if self._early is not None:
                    # Its answer is held: what came with the request waits for it, as
                    # what comes after does, unparsed.
                    self._early = (events[index + 1 :], deliver)
                    self._bound_early()
                    break
                if not self.opened:
                    break  # refused, or dropped: what came with it is for no one
        if events:
            self._read_done()

    def _hold_for_answer(self) -> None:
        """The handshake's answer is held: keep what the peer sends until :meth:`_answered`."""
        self._early = ((), True)

    def _bound_early(self) -> None:
        """Drop a peer that has sent more than EARLY_BYTES before its answer; else read
        on (a request that came through the backlog paused reading: see EARLY_BYTES)."""
        if len(self._backlog) > EARLY_BYTES:
            logger.info("dropped a client that sent over %d bytes before its answer", EARLY_BYTES)
            self._backlog = bytearray()
            self.abort()
        elif "parse" in self._read_holds:
            self.release_reading("parse")  # what is left is kept until the answer

    def _answered(self) -> None:
        """The held handshake is answered: act on the frames that came with the request
        (if it opened), then parse what came after it, a slice a turn."""
        early, self._early = self._early, None
        if early is None or self.lost:
            return
        if early[0] and self.opened:
            self._act_on(*early)
        if self._backlog:
            self._hold_for_parsing()

    def _read_done(self) -> None:
        if not self.opened:
            return
        try:
            self.handler.read_done(self)
        except Exception:
            logger.exception("read_done handler failed")

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.flush()
        return None  # the WebSocket closing handshake is over: let asyncio close the socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state is now CLOSED
        # websockets' parser is a generator of the protocol's, which it holds: a cycle
        # that outlives the connection when the parser ends suspended (after an error,
        # or in the middle of a frame); so is the error it kept, whose traceback holds
        # the parser's frame. Broken here, the protocol is freed with the connection
        # instead of by the garbage collector (see release_transport).
        self.protocol.parser.close()
        if self.protocol.parser_exc is not None:
            self.protocol.parser_exc.__traceback__ = None
        self._cancel_open_timer()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.lost = True
        self.ping = None
        # A callback of the owner's (a bound method) makes a cycle with it: broken
        # here, what the owner holds (a queue of frames for a slow client) is freed now
        # rather than at the next full garbage collection.
        self.on_resume = None
        release_transport(self.transport)
        self._paused = False
        self._held_pong = None
        self._backlog = bytearray()
        if self._budget is not None:
            self._budget.discard(self)
        for waiter in (self._waiter, self._drained):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._waiter = self._drained = None
        self._lost()
        if self.opened:
            try:
                self.handler.closed(self)
            except Exception:
                logger.exception("closed handler failed")

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._held_pong is not None and not self._ended:
            self.transport.write(self._held_pong)
            self._held_pong = None
        if self._drained is not None:
            self._drained.set_result(None)
            self._drained = None
        if self.on_resume is not None:
            self.on_resume()

    # ------------------------------------------------------------------ for the sides

    def _handshake(self, event: Request | Response) -> None:
        """The peer's half of the opening handshake arrived (each side overrides this)."""
        raise NotImplementedError

    def _lost(self) -> None:
        """The TCP connection is gone (before ``handler.closed``); sides may override."""

    def _utf8_checked(self, data: bytes | bytearray | memoryview, fin: bool) -> bool:
        """Check one fragment of a text message as it arrives: a sequence that can
        never be valid UTF-8 fails the connection now (1007), not once the rest of the
        message has come, which may be never (Autobahn 6.4.x, "fail fast")."""
        assert self._utf8 is not None
        try:
            # Checked only: the message is decoded whole when complete.
            self._utf8.decode(data, final=fin)
        except UnicodeDecodeError as exc:
            self._fragments = self._utf8 = None
            self.fail(CloseCode.INVALID_DATA, f"{exc.reason} in a fragment")
            return False
        if fin:
            self._utf8 = None
        return True

    def _open(self) -> None:
        """The opening handshake is over: tell the handler."""
        self._cancel_open_timer()
        self.opened = True
        try:
            self.handler.opened(self)
        except Exception:
            logger.exception("opened handler failed")
            self.fail(CloseCode.INTERNAL_ERROR, "")

    def _cancel_open_timer(self) -> None:
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None

    def _frame(self, frame: Frame, deliver: bool) -> None:
        opcode = frame.opcode
        if opcode is Opcode.CONT:
            if self._fragments is None:
                return  # the protocol has already failed the connection
            if self._utf8 is not None and not self._utf8_checked(frame.data, frame.fin):
                return
            self._fragments.append(bytes(frame.data))
            self._fragment_charge += max(len(frame.data), FRAGMENT_MIN_CHARGE)
            limit = self.config.max_size
            if limit is not None and self._fragment_charge > limit:
                # websockets counts bytes only: endless empty fragments never meet it.
                self._fragments = self._utf8 = None
                self.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
            if not frame.fin:
                return
            text = self._fragments[0] == b"t"
            data = b"".join(self._fragments[1:])
            self._fragments = None
        elif opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                # A marker first: one list, no second slot for the message's opcode.
                if opcode is Opcode.TEXT:
                    self._utf8 = _UTF8()
                    if not self._utf8_checked(frame.data, False):
                        return
                self._fragments = [b"t" if opcode is Opcode.TEXT else b"b", bytes(frame.data)]
                self._fragment_charge = max(len(frame.data), FRAGMENT_MIN_CHARGE)
                return
            text = opcode is Opcode.TEXT
            data = bytes(frame.data)
        else:
            if opcode is Opcode.PONG and self.ping is not None and frame.data == self.ping:
                self.ping = None
            try:
                self.handler.control(self, frame)
            except Exception:
                logger.exception("control handler failed")
            return
        if not deliver:
            return  # we are closing: what is still in flight is dropped
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                # RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8
                # but finds that the byte stream is not, in fact, a valid UTF-8 stream,
                # that endpoint MUST _Fail the WebSocket Connection_" (1007, §7.4.1).
                self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        try:
            self.handler.message(self, message)
        except Exception:
            # A bug of ours, not the peer's: this connection gets 1011, the others go on.
            logger.exception("message handler failed")
            self.fail(CloseCode.INTERNAL_ERROR, "")


class Keepalive:
    """Pings a set of connections every ``interval`` and fails with 1011 those whose
    pong has not come within ``timeout``: one timer for all of them."""

    def __init__(
        self, connections: Iterable[Connection], interval: float, timeout: float | None
    ) -> None:
        self._connections = connections
        self._interval = interval
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self.pings = 0

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._ping_all)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ping_all(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._interval, self._ping_all)
        self.pings += 1
        data = struct.pack("!I", self.pings & 0xFFFFFFFF)
        sent = False
        for conn in self._connections:
            if conn.keepalive and conn.ping is None and conn.protocol.state is State.OPEN:
                conn.ping = data
                conn.protocol.send_ping(data)
                conn.flush()
                sent = True
        if sent and self._timeout is not None:
            loop.call_later(self._timeout, self._expire, data)

    def _expire(self, data: bytes) -> None:
        for conn in [c for c in self._connections if c.ping == data]:
            conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")


def close_of(conn: Connection) -> tuple[int, str, str]:
    """The close code and reason that ended ``conn``, and who sent them first
    (``server`` or ``client``, or ``network`` for 1006 when no close frame was
    exchanged, as RFC 6455 §7.1.5 says)."""
    p = conn.protocol
    local, peer = ("server", "client") if p.side is Side.SERVER else ("client", "server")
    sent, rcvd = p.close_sent, p.close_rcvd
    if sent is not None and (rcvd is None or not p.close_rcvd_then_sent):
        return sent.code, sent.reason, local
    if rcvd is not None:
        return rcvd.code, rcvd.reason, peer
    return CLOSE_ABNORMAL, "", "network"
