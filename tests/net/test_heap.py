"""Memory is given back once the attackers leave (issue #13): the servers trim the heap
after a wave of closes (:mod:`simulator.net.heap`), and a client that reads nothing
holds little of its own (its queue shares the frames). On the virtual clock, but for
the one test of glibc's ``malloc_trim`` itself, which runs in a child process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simulator.net.heap import HeapTrimmer, glibc_malloc_trim
from simulator.net.server import TRANSPORT_ROOM, serve
from tests.e2e.conftest import scenario
from tests.net.conftest import virtual_test
from tests.net.memory_client import connected


class Counted:
    """A trim that only counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def at_once(work: object) -> None:
    assert callable(work)
    work()


def trimmer(trim: Counted, min_closed: int = 3) -> HeapTrimmer:
    return HeapTrimmer(trim, run=at_once, min_closed=min_closed, quiet_s=1.0, max_wait_s=10.0)


@virtual_test
async def test_a_wave_of_closes_is_trimmed_once_when_it_is_over() -> None:
    trim = Counted()
    heap = trimmer(trim)
    for _ in range(5):  # 0 - 0.4 s: five closes
        heap.closed()
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.8)  # 1.3 s: the last close was 0.9 s ago
    assert trim.calls == 0
    await asyncio.sleep(0.2)  # 1.5 s: more than 1 s of quiet
    assert trim.calls == 1
    await asyncio.sleep(30)
    assert trim.calls == 1


@virtual_test
async def test_fewer_closes_than_the_minimum_are_not_worth_a_trim() -> None:
    trim = Counted()
    heap = trimmer(trim, min_closed=10)
    for _ in range(9):
        heap.closed()
    await asyncio.sleep(30)
    assert trim.calls == 0


@virtual_test
async def test_a_steady_churn_is_trimmed_every_max_wait() -> None:
    """A close every 0.5 s never leaves 1 s of quiet: trimmed 10 s after the first close
    of each wave (at 10 s and at 20.5 s, by 25 s)."""
    trim = Counted()
    heap = trimmer(trim)
    for _ in range(50):
        heap.closed()
        await asyncio.sleep(0.5)
    assert trim.calls == 2


@virtual_test
async def test_a_stopped_trimmer_trims_no_more() -> None:
    trim = Counted()
    heap = trimmer(trim)
    for _ in range(5):
        heap.closed()
    heap.stop()
    for _ in range(5):
        heap.closed()  # the connections closed by the server's own stop
    await asyncio.sleep(30)
    assert trim.calls == 0


FEED = """\
[scenario]
name = "bulk"
[[stream]]
name = "bulk"
every = "10ms"
[stream.fields]
pad = "{pad}"
""".format(pad="x" * 1000)


@virtual_test
async def test_the_server_trims_once_its_closed_connections_are_gone() -> None:
    async with serve(scenario(FEED), in_memory=True) as server:
        trim = Counted()
        assert server._wire is not None
        server._wire.heap = trimmer(trim)
        for _ in range(3):
            _, ws = await connected(server)
            await ws.close()
        await asyncio.sleep(2.0)
        assert trim.calls == 1


@virtual_test
async def test_a_client_that_reads_nothing_holds_little_its_queue_shares_the_frames() -> None:
    """Two clients stop reading a 100 KB/s feed for 5 s (500 KB each, past the 256 KiB
    send buffer): each transport holds at most TRANSPORT_ROOM and a tick's frames (its
    own copy); the rest is queued (up to the send buffer, none much older than
    max_lateness), the oldest dropped, and the two queues hold the same frame objects
    (one copy for all)."""
    async with serve(scenario(FEED), in_memory=True) as server:
        clients = []
        for _ in range(2):
            index, ws = await connected(server)
            ws.transport.pause_reading()
            clients.append(server.clients[index])
        await asyncio.sleep(5.0)
        limit = server.scenario.server.send_buffer_bytes
        for client in clients:
            assert client.ws.transport.get_write_buffer_size() <= TRANSPORT_ROOM + 2048
            assert 0 < client.pending_bytes <= limit
            assert client.frames_dropped > 0
        first, second = (c.pending for c in clients)
        assert first is not None and second is not None
        assert first[-1] is second[-1]


FRAGMENTED_HEAP = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from simulator.net.heap import glibc_malloc_trim

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    # What 1,000 non-readers leave: buffers grown a KB at a time, with long-lived
    # objects allocated in between that pin the heap once the buffers are freed.
    buffers = [bytearray() for _ in range(1000)]
    kept = []
    for _ in range(100):
        for b in buffers:
            b.extend(b"x" * 1100)
        kept.append([bytes(600) for _ in range(50)])
    del buffers
    before = rss_mb()
    glibc_malloc_trim()()
    print(before, rss_mb())
    """
)


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="glibc's malloc_trim only")
def test_glibc_malloc_trim_gives_a_freed_fragmented_heap_back() -> None:
    """A heap of about 100 MB freed but pinned: RSS stays up until the trim, which gives
    most of it back."""
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENTED_HEAP.format(root=root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    before, after = map(float, done.stdout.split())
    assert before > 60, f"the freed heap was already returned ({before:.0f} MB)"
    assert after < before - 40, f"{before:.0f} MB -> {after:.0f} MB"


def test_once_serving_what_is_loaded_is_frozen_and_full_collections_are_rarer() -> None:
    """In a child process: the garbage collector's state is the whole process's."""
    script = textwrap.dedent(
        """
        import gc
        from simulator.net.heap import MIDDLE_COLLECTIONS_PER_FULL, freeze_what_is_loaded
        young, middle, full = gc.get_threshold()
        loaded = len(gc.get_objects())
        freeze_what_is_loaded()
        assert gc.get_threshold() == (young, middle, MIDDLE_COLLECTIONS_PER_FULL)
        assert full < MIDDLE_COLLECTIONS_PER_FULL
        assert gc.get_freeze_count() >= loaded // 2, (gc.get_freeze_count(), loaded)
        assert len(gc.get_objects()) < loaded // 10
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
