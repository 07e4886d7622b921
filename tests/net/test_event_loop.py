"""The event loop of `sim`'s servers (issue #13). It hands asyncio at most ``max_reads``
sockets ready to read per turn: 2,000 clients closing at once are found closed over many
turns, each short, with the feed's ticks in between, and none is starved. Sockets ready
to be written are never held back (the fan-out drains at full speed). And a closed
connection's transport is freed at once, not by the garbage collector. Real sockets on
127.0.0.1 and socketpairs; turns are counted, not timed."""

from __future__ import annotations

import asyncio
import collections
import gc
import selectors
import socket
import struct
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.net import event_loop
from simulator.net.server import serve
from tests.e2e import attackers
from tests.e2e.conftest import scenario

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll only")

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


@contextmanager
def readable_pairs(n: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """``n`` socketpairs whose first socket has a byte to read (and room to write)."""
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        for ours, theirs in pairs:
            ours.setblocking(False)
            theirs.send(b"x")
        yield pairs
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def reported(selector: selectors.BaseSelector) -> dict[int, int]:
    return {key.fd: events for key, events in selector.select(0)}


def test_at_most_max_reads_sockets_ready_to_read_are_reported_per_select() -> None:
    with readable_pairs(20) as pairs, event_loop.FairSelector(max_reads=5) as selector:
        for ours, _ in pairs:
            selector.register(ours, READ)
        for _ in range(6):
            assert len(reported(selector)) == 5


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), max_reads=st.integers(1, 12))
def test_no_socket_ready_to_read_waits_longer_than_a_round_of_selects(
    n: int, max_reads: int
) -> None:
    """None starves: with n sockets always ready, every run of ceil(n / max_reads)
    selects reports each of them, and each select reports max_reads (or all n)."""
    per_round = -(-n // max_reads)
    with readable_pairs(n) as pairs, event_loop.FairSelector(max_reads) as selector:
        for ours, _ in pairs:
            selector.register(ours, READ)
        fds = {ours.fileno() for ours, _ in pairs}
        selects = [set(reported(selector)) for _ in range(4 * per_round)]
        assert all(len(s) == min(n, max_reads) for s in selects)
        for start in range(len(selects) - per_round + 1):
            assert set().union(*selects[start : start + per_round]) == fds


def test_a_socket_ready_to_write_is_never_held_back() -> None:
    with readable_pairs(30) as pairs, event_loop.FairSelector(max_reads=4) as selector:
        for ours, _ in pairs:
            selector.register(ours, READ | WRITE)
        for _ in range(3):
            events = reported(selector)
            assert set(events) == {ours.fileno() for ours, _ in pairs}
            assert sum(1 for e in events.values() if e & READ) == 4
            assert all(e & WRITE for e in events.values())


def test_a_reset_socket_held_back_is_not_reported_writable_either() -> None:
    """A socket reset by its peer is reported as readable and writable: asyncio's write
    callback would find it closed as its read callback does, so both wait their turn."""
    with readable_pairs(10) as pairs, event_loop.FairSelector(max_reads=2) as selector:
        for ours, _ in pairs:
            selector.register(ours, READ | WRITE)
        for _, theirs in pairs:
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            theirs.close()
        events = reported(selector)
        assert len(events) == 2


def test_a_descriptor_unregistered_while_held_back_loses_its_place() -> None:
    with readable_pairs(6) as pairs, event_loop.FairSelector(max_reads=2) as selector:
        for ours, _ in pairs:
            selector.register(ours, READ)
        first = reported(selector)
        held = [ours for ours, _ in pairs if ours.fileno() not in first]
        selector.unregister(held[0])
        second = reported(selector)
        assert held[0].fileno() not in second
        assert set(second) == {s.fileno() for s in held[1:3]}


def test_max_reads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        event_loop.FairSelector(max_reads=0)


class Lost(asyncio.Protocol):
    """A server connection that writes until the peer's buffers are full (so asyncio
    waits to write to it, as for a client that reads nothing) and notes in ``lost_in``
    the turn (the count of polls) its connection was lost in."""

    def __init__(self, poll: event_loop.FairPoll, opened: list[Lost], lost_in: list[int]):
        self.poll, self.opened, self.lost_in = poll, opened, lost_in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"x" * 1_000_000)
        self.opened.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_in.append(self.poll.polls)


def test_a_wave_of_resets_is_found_over_many_turns_at_most_max_reads_a_turn() -> None:
    """200 clients that read nothing reset their connections at once: asyncio's loop on a
    FairSelector loses at most max_reads of them per turn, and loses them all."""
    n, max_reads = 200, 8
    selector = event_loop.FairSelector(max_reads)
    poll = selector._selector  # type: ignore[attr-defined]  # the FairPoll it made
    opened: list[Lost] = []
    lost_in: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Lost(poll, opened, lost_in), "127.0.0.1", 0, backlog=n
        )
        port = server.sockets[0].getsockname()[1]
        clients = []
        for _ in range(n):
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await loop.sock_connect(client, ("127.0.0.1", port))
            clients.append(client)
        while len(opened) < n:
            await asyncio.sleep(0.01)
        for client in clients:  # unread bytes in its buffer: close() sends a reset
            client.close()
        for _ in range(500):
            if len(lost_in) == n:
                break
            await asyncio.sleep(0.01)
        server.close()

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        runner.run(main())
    assert len(lost_in) == n
    per_turn = collections.Counter(lost_in)
    assert max(per_turn.values()) <= max_reads
    assert len(per_turn) >= n // max_reads


def test_sim_serves_on_a_fair_selector() -> None:
    async def selector_kind() -> type:
        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    assert event_loop.run(selector_kind()) is event_loop.FairSelector


FEED = """\
[scenario]
name = "one tick"
[[stream]]
name = "tick"
every = "10ms"
"""


def test_a_closed_connection_is_freed_without_the_garbage_collector() -> None:
    """No reference cycle is left for the collector: asyncio's socket transport makes
    one with itself, and when hundreds of closed connections were collected together
    their finalizers held the loop for milliseconds."""

    async def main() -> tuple[weakref.ref[Any], weakref.ref[Any]]:
        async with serve(scenario(FEED), port=0) as server:
            raw = await attackers.open_raw(server.url)
            while not server.clients:
                await asyncio.sleep(0.01)
            (client,) = server.clients.values()
            refs = weakref.ref(client.transport), weakref.ref(client.protocol)
            del client
            raw.close()
            while server.clients:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # asyncio closes the socket a turn later
            return refs

    gc.collect()
    gc.disable()
    try:
        transport, protocol = asyncio.run(asyncio.wait_for(main(), 30))
        assert transport() is None
        assert protocol() is None
    finally:
        gc.enable()
