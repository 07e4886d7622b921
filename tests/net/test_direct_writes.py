"""Frames written straight to a client's socket (``send_path.write_now``, the
broadcast's hot path) on real connected sockets: what the socket does not take goes
through the transport, in order, and a broken connection is the transport's to close."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from simulator.net.send_path import socket_fd, write_now
from simulator.net.server import serve
from simulator.scenario import parse_scenario


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[Exception | None] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


async def connected_transport() -> tuple[asyncio.Transport, Recorder, socket.socket]:
    """An asyncio transport over one end of a TCP connection on 127.0.0.1, and the
    other end (non-blocking)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    # A small send buffer, so that a large write is taken in part.
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setblocking(False)
    transport, protocol = await asyncio.get_running_loop().create_connection(Recorder, sock=ours)
    return transport, protocol, theirs


async def read_all(sock: socket.socket, size: int, timeout_s: float = 10.0) -> bytes:
    """``size`` bytes from ``sock`` while the loop flushes the transport's buffer."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    async with asyncio.timeout(timeout_s):
        while len(got) < size:
            got += await loop.sock_recv(sock, 65536)
    return bytes(got)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 20_000), min_size=1, max_size=40))
def test_what_the_socket_does_not_take_follows_through_the_transport_in_order(
    sizes: list[int],
) -> None:
    """Writes of any sizes, past what the socket holds: the peer reads every byte once,
    in the order written, whether a write went to the socket, in part to the transport,
    or (the transport holding something) to the transport alone, as the fan-out does."""

    got, sent, _ = asyncio.run(write_and_read(sizes))
    assert got == sent


def test_a_write_bigger_than_the_socket_takes_is_finished_by_the_transport() -> None:
    """The case the fallback exists for, made certain: the socket takes part of the first
    write, the transport holds the rest, and the later writes queue behind it."""
    got, sent, held = asyncio.run(write_and_read([200_000, 10, 50_000]))
    assert held > 0
    assert got == sent


async def write_and_read(sizes: list[int]) -> tuple[bytes, bytes, int]:
    """Write ``sizes`` bytes as the fan-out does (straight to the socket while the
    transport holds nothing, else through it); what the peer read, what was written,
    and what the transport held after the last write."""
    transport, _, theirs = await connected_transport()
    fd = socket_fd(transport)
    sent = bytearray()
    for k, size in enumerate(sizes):
        data = bytes([k % 251]) * size
        if transport.get_write_buffer_size():
            transport.write(data)
        else:
            write_now(transport, fd, data)
        sent += data
    held = transport.get_write_buffer_size()
    got = await read_all(theirs, len(sent))
    transport.close()
    theirs.close()
    return got, bytes(sent), held


def test_a_write_the_socket_refuses_leaves_the_closing_to_the_transport() -> None:
    """The peer has gone (reset): the failed system call is not raised to the fan-out;
    the transport gets the bytes, finds the error, and the protocol is told the
    connection is lost."""

    async def main() -> tuple[int, list[Any]]:
        transport, protocol, theirs = await connected_transport()
        transport.pause_reading()  # so that the write, not a read, finds the reset
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        theirs.close()  # a reset: SO_LINGER with a zero timeout
        await asyncio.sleep(0.05)
        fd = socket_fd(transport)
        writes = 0
        for _ in range(3):
            if transport.is_closing():
                break
            write_now(transport, fd, b"x" * 1000)
            writes += 1
            await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            while not protocol.lost:
                await asyncio.sleep(0.01)
        return writes, protocol.lost

    writes, [error] = asyncio.run(main())
    assert writes >= 1  # the loss was found by a write_now, not before one
    assert isinstance(error, OSError)


def test_only_a_plain_socket_is_written_directly() -> None:
    """A TCP transport gives its socket's descriptor; a transport with no socket, or over
    TLS (whose bytes must be encrypted first), gives -1: the fan-out then writes through
    it. (An end-to-end TLS feed is tests/e2e/test_tls.py.)"""

    class Fake(asyncio.Transport):
        def __init__(self, extra: dict[str, Any]) -> None:
            super().__init__(extra)

    async def main() -> tuple[int, int, int, int]:
        transport, _, theirs = await connected_transport()
        sock = transport.get_extra_info("socket")
        plain = socket_fd(transport)
        tls = socket_fd(Fake({"socket": sock, "sslcontext": object()}))
        none = socket_fd(Fake({}))
        transport.close()
        theirs.close()
        return plain, sock.fileno(), tls, none

    plain, fileno, tls, none = asyncio.run(main())
    assert plain == fileno >= 0
    assert tls == none == -1


def test_a_client_that_reads_slowly_gets_whole_frames_in_order() -> None:
    """A real server broadcasting large frames every millisecond, with a small socket
    buffer, to a client that reads a message every 5 ms: writes are taken in part, the
    transport holds the rest and the queue the next ones, and every frame the client
    gets is whole, and later than the one before (some are dropped: drop-oldest). A
    frame written to the socket while the transport still held the tail of another
    would break the stream (a protocol error) or the order."""
    scenario = parse_scenario(
        '[scenario]\nname = "t"\nseed = 1\n[server]\nsocket_buffer_bytes = 4096\n'
        'send_buffer_bytes = 65536\nslow_consumer = "drop-oldest"\n'
        '[[stream]]\nname = "big"\nevery = "1ms"\n'
        '[stream.fields]\npad = { choice = ["' + "x" * 3000 + '", "' + "y" * 700 + '", "z"] }\n',
        "x.toml",
    )

    async def main() -> list[int]:
        seen: list[int] = []
        async with serve(scenario, port=0) as server:  # noqa: SIM117 (url needed)
            # The client stops reading when it holds 2 messages, and its close does not
            # resume reading (websockets): it would wait 10 s for the server's close.
            async with connect(server.url, max_queue=2, close_timeout=0.2) as ws:
                for _ in range(150):
                    seen.append(json.loads(await ws.recv())["seq"])
                    await asyncio.sleep(0.005)
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 150
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert seen[-1] - seen[0] > 150  # it read slower than it was sent: frames were dropped
