"""`sim run` honours the admission keys of ``[server]`` (docs/limits.md): each test
lowers one limit and shows a client past it is treated as the key says, where the
default would have let it be. In memory, on the virtual clock."""

from __future__ import annotations

import asyncio

from websockets.frames import CloseCode

from simulator.net.log import EventKind
from simulator.net.server import SLOW_LINES_BURST, SLOW_LINES_PER_S, SimServer, serve
from simulator.net.wire import FRAME_FLOOD_REASON
from tests.e2e.conftest import expect_event, scenario
from tests.net.conftest import virtual_test
from tests.net.memory_client import Closed, MemoryWebSocket, connected, frames_until_closed

FEED = """\
[scenario]
name = "limits"
[[stream]]
name = "tick"
every = "1h"
"""


def with_server(keys: str) -> str:
    return FEED + "[server]\n" + keys


async def flood_of_pings(ws: MemoryWebSocket, n: int) -> None:
    """``n`` pings at one instant: one window of the frame budget."""
    for _ in range(n):
        await ws.ping()


async def close_of_client(ws: MemoryWebSocket) -> Closed:
    _, closed = await frames_until_closed(ws)
    return closed


@virtual_test
async def test_a_lower_max_frames_per_s_closes_a_ping_flood_the_default_lets_through() -> None:
    """30 pings at once: within the default budget (1000), past ``max_frames_per_s = 20``
    (closed with 1008, the frame-flood reason)."""
    async with serve(scenario(FEED), in_memory=True) as server:
        _, ws = await connected(server)
        await flood_of_pings(ws, 30)
        answered = await (await ws.ping())  # a pong: still open
        assert answered >= 0 and ws.close_code is None
        await ws.close()
    async with serve(scenario(with_server("max_frames_per_s = 20\n")), in_memory=True) as server:
        _, ws = await connected(server)
        await flood_of_pings(ws, 30)
        closed = await close_of_client(ws)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (
            CloseCode.POLICY_VIOLATION,
            FRAME_FLOOD_REASON,
        )


async def send_pings(server: SimServer, n: int) -> tuple[list[str], Closed | None]:
    """Send ``n`` protocol pings at once; the replies, and the close if it came."""
    _, ws = await connected(server)
    for k in range(n):
        await ws.send(f'{{"type": "ping", "id": {k}}}')
    await ws.send('{"type": "ping", "id": "fence"}')
    replies: list[str] = []
    try:
        while '"fence"' not in (reply := str(await ws.recv())):
            replies.append(reply)
    except Closed as closed:
        return replies, closed
    await ws.close()
    return replies, None


@virtual_test
async def test_message_burst_closes_a_client_past_it_with_1008() -> None:
    """Nine messages at once (and the fence): answered by default (burst 400); past
    ``message_burst = 5``, the sixth closes the client with 1008 and the rest go
    unanswered."""
    async with serve(scenario(FEED), in_memory=True) as server:
        replies, closed = await send_pings(server, 9)
        assert closed is None and len(replies) == 9
    keys = "message_burst = 5\nmax_messages_per_s = 1\n"
    async with serve(scenario(with_server(keys)), in_memory=True) as server:
        limited = expect_event(server, EventKind.RATE_LIMITED)
        replies, closed = await send_pings(server, 9)
        assert closed is not None and closed.rcvd is not None
        assert closed.rcvd.code == CloseCode.POLICY_VIOLATION
        assert closed.rcvd.reason == "message rate limit exceeded"
        assert len(replies) == 5
        assert (await limited).detail["limit"] == 1


@virtual_test
async def test_max_messages_per_s_refills_the_burst_at_its_rate() -> None:
    """``message_burst = 2``, ``max_messages_per_s = 4``: two messages at once, then one
    every 0.25 s goes on for ever (each finds the token refilled)."""
    keys = "message_burst = 2\nmax_messages_per_s = 4\n"
    async with serve(scenario(with_server(keys)), in_memory=True) as server:
        _, ws = await connected(server)
        for k in range(12):
            await ws.send(f'{{"type": "ping", "id": {k}}}')
            assert f'"id":{k}' in str(await ws.recv())
            await asyncio.sleep(0.25)
        assert ws.close_code is None
        await ws.close()


@virtual_test
async def test_error_burst_bounds_the_error_replies_and_errors_logged_the_log_lines() -> None:
    """``error_burst = 3``: three invalid messages are answered, the fourth closes the
    client (1008, ``too many invalid messages``); ``errors_logged = 1``: one error is
    logged one by one, the ``disconnected`` line counts the four."""
    keys = "error_burst = 3\nmax_errors_per_s = 0\nerrors_logged = 1\n"
    async with serve(scenario(with_server(keys)), in_memory=True) as server:
        logged: list[object] = []
        server.log.listen(lambda e: logged.append(e) if e.kind is EventKind.CLIENT_ERROR else None)
        gone = expect_event(server, EventKind.DISCONNECTED)
        _, ws = await connected(server)
        for _ in range(10):
            await ws.send("{not json")
        replies, closed = await frames_until_closed(ws)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (
            CloseCode.POLICY_VIOLATION,
            "too many invalid messages",
        )
        assert len(replies) == 3 and all("invalid_json" in r for r in replies)
        assert len(logged) == 1
        assert (await gone).detail["errors"] == 4


@virtual_test
async def test_max_errors_per_s_refills_the_error_budget_at_its_rate() -> None:
    """``error_burst = 1``: an invalid message every 0.25 s is answered for ever with
    ``max_errors_per_s = 4``; at the default 2 a second the second one closes (1008)."""

    async def garbage_every_quarter_second(keys: str) -> tuple[int, int | None]:
        async with serve(scenario(with_server(keys)), in_memory=True) as server:
            _, ws = await connected(server)
            answered = 0
            try:
                for _ in range(12):
                    await ws.send("{not json")
                    assert "invalid_json" in str(await ws.recv())
                    answered += 1
                    await asyncio.sleep(0.25)
            except Closed as closed:
                assert closed.rcvd is not None
                return answered, closed.rcvd.code
            await ws.close()
            return answered, None

    assert await garbage_every_quarter_second("error_burst = 1\nmax_errors_per_s = 4\n") == (
        12,
        None,
    )
    assert await garbage_every_quarter_second("error_burst = 1\n") == (
        1,
        CloseCode.POLICY_VIOLATION,
    )


class Silent(asyncio.Protocol):
    """A TCP connection that never sends its opening request."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def silent(server: SimServer) -> Silent:
    _, protocol = await server.open_transport(Silent)
    assert isinstance(protocol, Silent)
    return protocol


@virtual_test
async def test_max_handshakes_drops_the_oldest_silent_connection() -> None:
    """``max_handshakes = 2``: a third connection without its request drops the first;
    the second and third wait (until the handshake timeout)."""
    async with serve(scenario(with_server("max_handshakes = 2\n")), in_memory=True) as server:
        first, second, third = [await silent(server) for _ in range(3)]
        await asyncio.wait_for(first.lost, 1.0)
        await asyncio.sleep(0.5)
        assert not second.lost.done() and not third.lost.done()


@virtual_test
async def test_handshake_timeout_drops_a_connection_that_never_sends_its_request() -> None:
    """``handshake_timeout = "1s"``: a silent connection is gone 2 s later; with the
    default (10 s) it is still waiting then."""
    async with serve(scenario(FEED), in_memory=True) as server:
        waiting = await silent(server)
        await asyncio.sleep(2.0)
        assert not waiting.lost.done()
    keys = 'handshake_timeout = "1s"\n'
    async with serve(scenario(with_server(keys)), in_memory=True) as server:
        waiting = await silent(server)
        await asyncio.sleep(2.0)
        assert waiting.lost.done()


@virtual_test
async def test_slow_clients_lines_are_capped_for_all_clients_together() -> None:
    """Each slow client has one line a second at most; all of them together, a burst of
    SLOW_LINES_BURST then SLOW_LINES_PER_S a second, and one line a second saying how
    many were left out: 100 clients dropping frames do not make 100 lines a second."""
    async with serve(scenario(FEED), in_memory=True) as server:
        slow = [SlowClient(index, frames_dropped=3) for index in range(100)]
        for rounds in range(2):
            for client in slow:
                server._on_slow(client, "dropped", 3)  # type: ignore[arg-type]
            if not rounds:
                await asyncio.sleep(1.0)
        lines = server.log.of_kind(EventKind.SLOW_CONSUMER)
        one_by_one = [e for e in lines if e.conn is not None]
        summaries = [e.detail["clients_not_logged"] for e in lines if e.conn is None]
        assert len(one_by_one) == SLOW_LINES_BURST + SLOW_LINES_PER_S
        # First second: 20 lines, 80 left out; the first of them is summed up at once.
        # A second later: 10 lines, and the next left out is summed up with the 79
        # before it; the 89 after it wait for the next summary.
        assert summaries == [1, 80]
        assert len(one_by_one) + sum(summaries) + 89 == 2 * len(slow)


class SlowClient:
    """What the server's slow-client log reads of a client."""

    def __init__(self, index: int, frames_dropped: int) -> None:
        self.index = index
        self.frames_dropped = frames_dropped
