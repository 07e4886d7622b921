"""Raw-socket attackers for the hostile-client suite (issue #13) and ``bench/hostile.py``.

Each attacker opens a real TCP connection to 127.0.0.1, performs a real opening
handshake (websockets' sans-I/O client writes the request and checks the response), and
then writes frames it builds itself with ``Frame(...).serialize(mask=True)``: what no
well-behaved client library would send. Server frames are parsed by the same sans-I/O
client, so the attacker learns the close code the server sent.

Every attack is bounded: a fixed number of frames or connections, and every wait has a
timeout. Nothing here talks to anything but the URL it is given (a loopback server).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

#: What a garbage text frame says (not JSON: every server kind must cope).
GARBAGE = b"{not json"
#: The receive buffer asked for by an attacker that reads nothing: small, so the
#: server's writes back up quickly (the kernel rounds it up to its minimum).
SMALL_RCVBUF = 4096


def frame(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    """One frame as a client sends it: masked (RFC 6455 §5.3)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def pings(n: int, size: int = 125) -> bytes:
    """``n`` pings of ``size`` bytes (125 is the most a control frame may carry)."""
    return frame(Opcode.PING, b"p" * size) * n


def endless_fragments(n: int, data: bytes = b"") -> bytes:
    """The start of a text message and ``n - 1`` continuations, none of them final."""
    return frame(Opcode.TEXT, data, fin=False) + frame(Opcode.CONT, data, fin=False) * (n - 1)


def one_message_in_fragments(n: int) -> bytes:
    """One text message of ``n`` bytes, sent one byte a fragment."""
    return (
        frame(Opcode.TEXT, b"a", fin=False)
        + frame(Opcode.CONT, b"a", fin=False) * (n - 2)
        + frame(Opcode.CONT, b"a", fin=True)
    )


def garbage(n: int) -> bytes:
    return frame(Opcode.TEXT, GARBAGE) * n


class Refused(Exception):
    """The server answered the handshake with something other than 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with {status}")
        self.status = status


@dataclass
class Raw:
    """One attacker's connection after its handshake. Write with :meth:`send`; read
    with :meth:`close_code` (everything else the server sends is counted)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: ClientProtocol
    texts: list[str] = field(default_factory=list)  # text messages the server sent

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False if the server has already dropped the connection."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def close_code(self, timeout: float) -> int | None:
        """Read until the server's close frame: its code (and answer it), or ``None`` if
        the connection ended without one or none came within ``timeout`` seconds."""
        protocol = self.protocol
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(timeout):
                while protocol.close_rcvd is None:
                    data = await self.reader.read(65536)
                    if not data:
                        break
                    protocol.receive_data(data)
                    for event in protocol.events_received():
                        if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                            self.texts.append(event.data.decode(errors="replace"))
        rcvd = protocol.close_rcvd
        if rcvd is not None:
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write(b"".join(protocol.data_to_send()))  # our close, in answer
        return None if rcvd is None else rcvd.code

    def reset(self) -> None:
        """Drop the TCP connection with a reset (RST), no close frame."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.transport.abort()


def _socket(rcvbuf: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    return sock


async def open_raw(
    url: str, *, rcvbuf: int | None = None, timeout: float = 10.0, before_answer: bytes = b""
) -> Raw:
    """Connect to ``url`` (``ws://127.0.0.1:PORT/...``) and complete the opening
    handshake. ``rcvbuf`` shrinks the socket's receive buffer (for attackers that read
    nothing: they also buffer at most a few KiB in the stream reader). ``before_answer``
    is written right after the request, without waiting for the answer (RFC 6455 §4.1
    forbids it). Raises :class:`Refused` for a non-101 answer."""
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost"), "attackers are loopback only"
    sock = _socket(rcvbuf)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        try:
            await loop.sock_connect(sock, (parts.hostname, parts.port or 80))
        except BaseException:
            sock.close()
            raise
        limit = 2048 if rcvbuf is not None else 2**16
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        protocol = ClientProtocol(parse_uri(url), max_size=None)
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()) + before_answer)
        while protocol.state is State.CONNECTING:
            data = await reader.read(4096)
            if not data:
                break
            protocol.receive_data(data)
    events = protocol.events_received()
    response = next((e for e in events if isinstance(e, Response)), None)
    if protocol.state is not State.OPEN:
        writer.transport.abort()
        raise Refused(response.status_code if response is not None else 0)
    return Raw(reader, writer, protocol)


async def tcp_open_and_reset(url: str, n: int, *, concurrency: int = 50) -> int:
    """Open ``n`` TCP connections to ``url``; every other one sends its handshake
    request first; reset each one (RST). Returns how many connected."""
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost"), "attackers are loopback only"
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    request = ClientProtocol(parse_uri(url))
    request.send_request(request.connect())
    handshake = b"".join(request.data_to_send())
    connected = 0

    async def one(k: int) -> None:
        nonlocal connected
        async with gate:
            sock = _socket(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            try:
                async with asyncio.timeout(5):
                    await loop.sock_connect(sock, (parts.hostname, parts.port or 80))
                    connected += 1
                    if k % 2:
                        await loop.sock_sendall(sock, handshake)
                        await asyncio.sleep(0)
            except (TimeoutError, OSError):
                pass
            finally:
                sock.close()  # SO_LINGER 0: a reset

    await asyncio.gather(*(one(k) for k in range(n)))
    return connected
