"""An in-memory connection: two :class:`MemoryTransport` objects joined back to back, so
that a server protocol and a client protocol talk with no socket and no real time.

:func:`open_pipe` is the in-memory counterpart of ``loop.create_connection``. What the
protocols see is what asyncio's TCP transport (``_SelectorSocketTransport``) shows them:

* bytes written on one side reach the other side's ``data_received`` in order, from a
  later loop callback (never from inside ``write()``), at most 256 KiB per call (the
  size asyncio reads at once), and with no message boundaries: writes made in the same
  callback usually arrive as one chunk;
* ``write_eof()`` and ``close()`` send an EOF after what was written before them; the
  peer's ``eof_received`` decides, as in asyncio, whether its transport stays open
  (truthy) or closes (falsy);
* ``abort()`` is a TCP reset: what is in flight in both directions is discarded, this
  side's protocol gets ``connection_lost(None)`` and the peer's gets
  ``connection_lost(ConnectionResetError)``;
* ``connection_lost`` is called exactly once per side, from a loop callback;
* an exception raised by ``data_received`` or ``eof_received`` goes to the loop's
  exception handler and closes that side with ``connection_lost(exc)``, as asyncio does;
  the peer then sees an EOF.

What is knowingly simpler than TCP:

* There is no kernel in between. The write buffer holds every byte written and not yet
  passed to the peer's ``data_received``; a side that pauses reading takes nothing, so
  the writer's buffer grows by exactly what it writes and ``pause_writing()`` comes at
  exactly the high-water mark. Over a socket, kernel buffers first absorb some hundreds
  of KiB. This is how a client that reads nothing is simulated.
* Bytes written to a side that is closing or closed are dropped as if read (the writer's
  buffer empties). A real kernel would keep them and answer with a reset once the
  socket closes unread; the writer would then get ``connection_lost`` with an error.
* A reset reaches the peer at once, even if it has paused reading (a real peer would
  notice only on its next read or write), and ``abort()`` always resets (asyncio's
  ``abort()`` closes the socket, which sends a FIN, or a reset only if unread data
  remains in the kernel).
* ``asyncio.BufferedProtocol`` is not supported; nor are ``sendfile`` or TLS.
"""

from __future__ import annotations

import asyncio
import errno
import weakref
from collections.abc import Callable
from itertools import count
from typing import Any, TypeVar, cast

__all__ = ["MemoryTransport", "open_pipe"]

P = TypeVar("P", bound=asyncio.Protocol)

#: Largest chunk given to one ``data_received`` call (asyncio's ``recv()`` size).
READ_SIZE = 256 * 1024

#: asyncio's default high-water mark; the low-water mark defaults to a quarter of it.
DEFAULT_HIGH_WATER = 64 * 1024

#: Where the client of :func:`open_pipe` connects when no address is given.
DEFAULT_SERVER_ADDRESS = ("127.0.0.1", 8765)

# Each event loop numbers its client ports from the start of Linux's ephemeral range, so
# the addresses a test sees depend only on what that test did.
_EPHEMERAL_START = 32768
_client_ports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, count[int]] = (
    weakref.WeakKeyDictionary()
)


async def open_pipe(
    server_factory: Callable[[], asyncio.Protocol],
    client_factory: Callable[[], P],
    *,
    client_address: tuple[str, int] | None = None,
    server_address: tuple[str, int] = DEFAULT_SERVER_ADDRESS,
) -> tuple[MemoryTransport, P]:
    """Connect a new server protocol to a new client protocol in memory; return the
    client's transport and protocol, like ``loop.create_connection``.

    The server's ``connection_made`` runs, then the client's, each from a loop callback
    (an exception there goes to the loop's exception handler, as with a socket), and both
    have run when this returns. ``client_address`` is the server's ``peername`` and the
    client's ``sockname``; by default it is ``127.0.0.1`` with the next port of this
    event loop, from 32768 up. Close the client with ``transport.close()`` or
    ``abort()``; the server's side closes when its protocol closes its transport or
    when it receives the client's EOF and its ``eof_received`` returns a falsy value.
    """
    loop = asyncio.get_running_loop()
    if client_address is None:
        ports = _client_ports.setdefault(loop, count(_EPHEMERAL_START))
        client_address = ("127.0.0.1", next(ports))
    server_protocol = server_factory()
    client_protocol = client_factory()
    server = MemoryTransport(
        loop, server_protocol, sockname=server_address, peername=client_address
    )
    client = MemoryTransport(
        loop, client_protocol, sockname=client_address, peername=server_address
    )
    server._peer = client
    client._peer = server
    made = loop.create_future()
    loop.call_soon(server_protocol.connection_made, server)
    loop.call_soon(client_protocol.connection_made, client)
    loop.call_soon(_set_result_unless_done, made)
    try:
        await made
    except asyncio.CancelledError:
        client.abort()  # nobody will get the client: do not leave the pair open
        raise
    return client, client_protocol


def _set_result_unless_done(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled while waiting
        future.set_result(None)


class MemoryTransport(asyncio.Transport):
    """One side of an in-memory connection; made in pairs by :func:`open_pipe`. The
    protocol drives it like an asyncio TCP transport (see the module docstring for what
    it models and what it does not)."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_closing",
        "_eof",
        "_fin_sent",
        "_high_water",
        "_loop",
        "_lost",
        "_low_water",
        "_paused",
        "_peer",
        "_protocol",
        "_protocol_paused",
        "_pushing",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.BaseProtocol,
        *,
        sockname: tuple[str, int],
        peername: tuple[str, int],
    ) -> None:
        super().__init__({"peername": peername, "sockname": sockname, "socket": None})
        self._loop = loop
        self._protocol = protocol
        self._peer: MemoryTransport  # set by open_pipe
        self._buffer = bytearray()  # written, not yet taken by the peer
        self._pushing: asyncio.Handle | None = None  # a scheduled _push
        self._eof = False  # write_eof() was called
        self._fin_sent = False  # the peer was given (or can no longer take) our EOF
        self._closing = False  # close() or abort() was called, or an error closed us
        self._lost = False  # connection_lost is scheduled (asyncio's _conn_lost)
        self._closed = False  # connection_lost has run: the "socket" is closed
        self._paused = False  # reading is paused
        self._protocol_paused = False  # pause_writing() was called, resume_writing() not yet
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        address = self.get_extra_info("sockname")
        return f"<MemoryTransport {state} {address} bufsize={len(self._buffer)}>"

    # --------------------------------------------------------------- the protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    # --------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Queue ``data`` for the peer; it reaches the peer's ``data_received`` from a
        later loop callback. Ignored once the connection is lost (as asyncio does, minus
        its warning); a ``RuntimeError`` after :meth:`write_eof`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._lost:
            return
        self._buffer.extend(data)
        self._schedule_push()
        self._maybe_pause_protocol()

    def write_eof(self) -> None:
        """Send an EOF after what was written; the peer's ``eof_received`` runs once it
        has taken that. Writing afterwards raises ``RuntimeError``."""
        if self._closing or self._eof:
            return
        self._eof = True
        self._schedule_push()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the peer."""
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the marks as asyncio does: ``high`` defaults to 64 KiB (or ``4 * low``),
        ``low`` to ``high // 4``. ``pause_writing()`` is called when the buffer goes over
        ``high``, ``resume_writing()`` when it is back to ``low`` or below."""
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    # --------------------------------------------------------------- reading

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Take nothing more from the peer until :meth:`resume_reading`: what it writes
        stays in its write buffer (its EOF waits too)."""
        if not self.is_reading():
            return
        self._paused = True

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._peer._schedule_push()

    # --------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, pass on what was written, then send an EOF; the protocol's
        ``connection_lost(None)`` runs once the buffer is empty. If the peer is paused
        and never resumes, that is never (as with a socket whose peer reads nothing)."""
        if self._closing:
            return
        self._closing = True
        self._peer._schedule_push()  # what the peer sends us from now on is dropped
        if not self._buffer:
            self._lost = True
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Reset the connection: discard what is in flight both ways; this protocol's
        ``connection_lost(None)`` and the peer's ``connection_lost(ConnectionResetError)``
        run from loop callbacks (unless they were already due)."""
        if self._lost:
            return
        self._force_close(None)
        peer = self._peer
        if not peer._lost:
            peer._force_close(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))

    # --------------------------------------------------------------- internals

    def _force_close(self, exc: Exception | None) -> None:
        # asyncio's _force_close: the buffer goes without resume_writing().
        if self._lost:
            return
        self._buffer.clear()
        self._closing = True
        self._lost = True
        self._peer._schedule_push()  # what the peer sends us from now on is dropped
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._closed = True
            self._schedule_push()  # the EOF that closing the socket sends

    def _fatal_error(self, exc: Exception, message: str) -> None:
        # As asyncio: an OSError is the network's doing and is not reported; anything
        # else is a bug in the protocol and goes to the exception handler.
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _fin_due(self) -> bool:
        # After a reset the peer is closing too, so _push drops this EOF.
        return (self._eof or self._closed) and not self._fin_sent

    def _schedule_push(self) -> None:
        if self._pushing is None and (self._buffer or self._fin_due()):
            self._pushing = self._loop.call_soon(self._push)

    def _push(self) -> None:
        """Move what this side wrote one step towards the peer: one chunk, or the EOF.
        Runs from a loop callback, so the peer's protocol is never called from inside
        this side's ``write()``."""
        self._pushing = None
        peer = self._peer
        if self._buffer:
            if peer._closing:
                self._buffer.clear()  # nobody will read it: dropped (see module docstring)
            elif peer._paused:
                return  # peer.resume_reading() schedules us again
            else:
                chunk = bytes(self._buffer[:READ_SIZE])
                del self._buffer[:READ_SIZE]
                peer._take_data(chunk)
                if self._lost:
                    return  # the peer's protocol reset the connection
            self._maybe_resume_protocol()  # may write more
            if self._buffer:
                self._schedule_push()  # the rest in a later callback, as a socket would
                return
            if self._closing and not self._lost:
                # close() was waiting for the buffer to empty (asyncio's _write_ready).
                self._lost = True
                self._call_connection_lost(None)
                return
        if self._fin_due():
            if peer._closing:
                self._fin_sent = True  # nobody will read it
            elif not peer._paused:
                self._fin_sent = True
                peer._take_eof()

    def _take_data(self, data: bytes) -> None:
        try:
            # Cast: asyncio only ever gives data to a Protocol; BufferedProtocol is not
            # supported here (module docstring). asyncio also catches BaseException here;
            # a CancelledError out of a protocol callback goes to the exception handler
            # instead, and leaves the transport open.
            cast(asyncio.Protocol, self._protocol).data_received(data)
        except Exception as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _take_eof(self) -> None:
        try:
            keep_open = cast(asyncio.Protocol, self._protocol).eof_received()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except Exception as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.pause_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    def _maybe_resume_protocol(self) -> None:
        if not self._protocol_paused or len(self._buffer) > self._low_water:
            return
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except Exception as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.resume_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
