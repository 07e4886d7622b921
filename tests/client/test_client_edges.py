"""The reference client at the edges a review found: messages that come with the
handshake, listeners that raise, concurrent closes, restarts, the heartbeat's bound
for any interval and timeout, URLs no retry can mend, counts that start again on a new
connection, half-open connections and the backoff. A scripted server on the wire
layer, on the virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.client import (
    ClientConfig,
    ClientEvent,
    Duplicate,
    Gap,
    Message,
    ResilientClient,
    Restarted,
    Retry,
    State,
    StateChanged,
)
from simulator.client.resilient import SeqAcross
from simulator.core.backoff import BackoffPolicy
from simulator.errors import UsageError
from simulator.net.memory import open_pipe
from simulator.net.wire import Connection, WireConfig
from simulator.net.wire_client import OpenTransport
from simulator.net.wire_server import ServerHandler, WireServer
from simulator.testing.virtual_time import run

POLICY = BackoffPolicy(base_s=0.5, cap_s=8.0, stable_s=5.0)


class Scripted(ServerHandler):
    """A server that does what ``on_open`` says with each connection it opens."""

    def __init__(self, on_open: Callable[[Connection], None] = lambda conn: None) -> None:
        self.on_open = on_open
        self.conns: list[Connection] = []

    def opened(self, conn: Connection) -> None:
        conn.index = len(self.conns)
        self.conns.append(conn)
        self.on_open(conn)


def serving(handler: Scripted) -> OpenTransport:
    server = WireServer(handler, WireConfig(ping_interval=None, ping_timeout=None))
    server.start()

    async def opener(factory: Any) -> Any:
        return await open_pipe(server.connection, factory)

    return opener


def tick(conn: Connection, seq: int) -> None:
    conn.send(orjson.dumps({"type": "tick", "seq": seq}).decode())


BeforeConnect = Callable[[ResilientClient], Awaitable[None] | None]


def scripted_client(
    server: Scripted, before_connect: BeforeConnect | None = None, **config: Any
) -> ResilientClient:
    """A seeded client of ``server`` with :data:`POLICY` and no heartbeat, unless
    ``config`` (ClientConfig's fields) says otherwise."""
    options: dict[str, Any] = {"backoff": POLICY, "heartbeat_interval_s": None, **config}
    return ResilientClient(
        "ws://feed.test/",
        config=ClientConfig(**options),
        seed=0,
        open_transport=serving(server),
        before_connect=before_connect,
    )


def test_messages_that_come_with_the_handshake_count_on_the_new_connection() -> None:
    """A per-connection feed: connection 1 sends 1-4 in the read that opens it. They
    are checked against connection 1's sequence, not connection 0's: none is a
    duplicate, and a gap on connection 1 (5 missing) is reported."""

    events = two_connections([1, 2, 3, 4], [1, 2, 3, 4, 6], "restarts")
    assert delivered(events) == [1, 2, 3, 4, 1, 2, 3, 4, 6]
    assert not [e for e in events if isinstance(e, Duplicate)]
    assert [(g.first, g.last) for g in events if isinstance(g, Gap)] == [(5, 5)]
    opened = [
        i for i, e in enumerate(events) if isinstance(e, StateChanged) and e.state is State.OPEN
    ]
    first_message = [i for i, e in enumerate(events) if isinstance(e, Message)]
    assert opened[0] < first_message[0]  # the connection is open before it delivers


def test_a_listener_that_raises_neither_stops_the_client_nor_fails_its_connection() -> None:
    async def main() -> tuple[State, int, int]:
        def on_open(conn: Connection) -> None:
            for seq in range(1, 4):
                tick(conn, seq)

        client = scripted_client(Scripted(on_open))
        got: list[ClientEvent] = []

        def broken(event: ClientEvent) -> None:
            raise RuntimeError("the application's bug")

        client.listen(broken)
        client.listen(got.append)
        await client.start()
        await asyncio.sleep(3)
        state, connections = client.state, client.connections
        await client.close()
        return state, connections, len([e for e in got if isinstance(e, Message)])

    state, connections, messages = run(main())
    assert (state, connections, messages) == (State.OPEN, 1, 3)


def test_every_concurrent_close_returns_once_the_socket_is_closed() -> None:
    async def main() -> list[bool]:
        server = Scripted()
        client = scripted_client(server)
        await client.start()
        await asyncio.sleep(1)
        # The server reads nothing: the close takes the whole close timeout.
        server.conns[0].transport.pause_reading()
        seen: list[bool] = []

        async def closer() -> None:
            await client.close()
            seen.append(server.conns[0].lost)

        await asyncio.gather(closer(), closer())
        return seen

    assert run(main()) == [True, True]


def test_start_after_the_server_said_stop_starts_afresh() -> None:
    async def main() -> tuple[str | None, State, str | None, int]:
        def on_open(conn: Connection) -> None:
            if conn.index == 0:
                conn.start_close(4001, "token expired")

        client = scripted_client(Scripted(on_open))
        await client.start()
        await asyncio.sleep(3)
        reason = client.stop_reason
        await client.start()
        await asyncio.sleep(3)
        state, after, connections = client.state, client.stop_reason, client.connections
        await client.close()
        return reason, state, after, connections

    reason, state, after, connections = run(main())
    assert reason is not None and "4001" in reason
    assert (state, after, connections) == (State.OPEN, None, 2)


@pytest.mark.parametrize(("interval", "timeout"), [(1.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 0.5)])
def test_a_silent_peer_is_found_within_interval_plus_timeout_for_any_pair(
    interval: float, timeout: float
) -> None:
    """The peer goes silent (reads and sends nothing) at 10.5 s."""

    async def main() -> float:
        server = Scripted()
        client = scripted_client(server, heartbeat_interval_s=interval, heartbeat_timeout_s=timeout)

        def answer(conn: Connection) -> None:
            # An application pong to every ping, while the peer is alive.
            conn.handler = _Ponger(conn.handler)

        server.on_open = answer
        left: list[float] = []
        client.listen(
            lambda e: (
                left.append(e.at)
                if isinstance(e, StateChanged) and e.state is State.BACKOFF
                else None
            )
        )
        await client.start()
        await asyncio.sleep(10.5)
        server.conns[0].transport.pause_reading()
        assert isinstance(server.conns[0].handler, _Ponger)
        server.conns[0].handler.silent = True
        await asyncio.sleep(interval + timeout + 1)
        await client.close()
        return left[0] - 10.5

    assert 0 < run(main()) <= interval + timeout + 1e-6


class _Ponger(ServerHandler):
    """Wraps a server handler: answers each text message with a pong, unless silent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.silent = False

    def message(self, conn: Connection, message: str | bytes) -> None:
        if not self.silent:
            conn.send('{"type":"pong"}')

    def closed(self, conn: Connection) -> None:
        self.inner.closed(conn)


@pytest.mark.parametrize(
    "url", ["http://feed.test/", "ws://127.0.0.1:99999/", "ws://[::1/", "feed.test"]
)
def test_a_url_no_retry_can_mend_is_refused_at_once(url: str) -> None:
    with pytest.raises(UsageError):
        ResilientClient(url)


def two_connections(
    first: list[int], second: list[int], seq_across: SeqAcross
) -> list[ClientEvent]:
    """The events of a client whose first connection sends ticks ``first`` and is then
    reset, and whose second sends ``second``."""

    async def main() -> list[ClientEvent]:
        def on_open(conn: Connection) -> None:
            for seq in first if conn.index == 0 else second:
                tick(conn, seq)
            if conn.index == 0:
                asyncio.get_running_loop().call_later(1.0, conn.abort)

        client = scripted_client(Scripted(on_open), seq_across_connections=seq_across)
        events: list[ClientEvent] = []
        client.listen(events.append)
        await client.start()
        await asyncio.sleep(5)
        await client.close()
        return events

    return run(main())


def delivered(events: list[ClientEvent]) -> list[int]:
    return [e.seq for e in events if isinstance(e, Message) and e.seq is not None]


@settings(max_examples=40, deadline=None)
@given(high=st.integers(1, 6000), start=st.integers(1, 6000), more=st.integers(0, 3))
def test_a_count_that_goes_back_on_a_new_connection_is_followed_not_taken_for_duplicates(
    high: int, start: int, more: int
) -> None:
    """A server restarted (or another host) counts from wherever it is: ``"auto"``
    follows a stream whose first seq on the new connection is not above the highest
    seen (every message delivered, one Restarted, no duplicate: a one-shot welcome
    message seq 1 is delivered on every connection), and treats one above it as the
    same count resumed (the seqs in between are a gap)."""
    second = list(range(start, start + more + 1))
    events = two_connections([high], second, "auto")
    restarts = [e for e in events if isinstance(e, Restarted)]
    gaps = [(g.first, g.last) for g in events if isinstance(g, Gap)]
    assert delivered(events) == [high, *second]
    assert not [e for e in events if isinstance(e, Duplicate)]
    if start <= high:
        assert [(r.stream, r.previous, r.seq) for r in restarts] == [("tick", high, start)]
        assert gaps == []
    else:
        assert restarts == []
        assert gaps == ([(high + 1, start - 1)] if start > high + 1 else [])


def test_continues_takes_a_count_that_goes_back_for_duplicates_and_restarts_forgets_it() -> None:
    continued = two_connections([1, 2, 3], [1, 2, 4], "continues")
    assert delivered(continued) == [1, 2, 3, 4]
    assert [e.seq for e in continued if isinstance(e, Duplicate)] == [1, 2]
    restarted = two_connections([1, 2, 3], [2, 3], "restarts")
    assert delivered(restarted) == [1, 2, 3, 2, 3]
    assert not [e for e in restarted if isinstance(e, Restarted | Duplicate | Gap)]


def test_a_duplicate_on_the_same_connection_is_caught_in_auto_too() -> None:
    events = two_connections([1, 2, 3], [7, 8, 8, 7, 5], "auto")
    assert delivered(events) == [1, 2, 3, 7, 8, 5]  # 5: late, filling the gap 4-6
    assert [e.seq for e in events if isinstance(e, Duplicate)] == [8, 7]


def test_an_unknown_seq_mode_is_refused() -> None:
    with pytest.raises(UsageError, match="seq_across_connections='sometimes'"):
        ClientConfig(seq_across_connections="sometimes")  # type: ignore[arg-type]


def test_a_connection_that_goes_silent_does_not_count_as_stable() -> None:
    """Every connection is accepted and then silent: found by the heartbeat after 10 s,
    longer than ``stable_s`` (5 s). It was healthy for no time at all, so the backoff
    keeps growing rather than starting over after each one."""

    async def main() -> list[int]:
        client = scripted_client(Scripted(), heartbeat_interval_s=5.0, heartbeat_timeout_s=5.0)
        attempts: list[int] = []
        client.listen(lambda e: attempts.append(e.attempt) if isinstance(e, Retry) else None)
        await client.start()
        await asyncio.sleep(60)
        await client.close()
        return attempts

    attempts = run(main())
    assert len(attempts) >= 3
    assert attempts == list(range(len(attempts)))


class Listening(Scripted):
    """A scripted server that keeps what each connection said, and can drop them."""

    def __init__(self) -> None:
        super().__init__()
        self.said: dict[int, list[str | bytes]] = {}

    def message(self, conn: Connection, message: str | bytes) -> None:
        self.said.setdefault(conn.index or 0, []).append(message)


def test_before_connect_runs_before_every_attempt_and_may_refresh_the_token() -> None:
    """A coroutine function that fetches a new token before each attempt: each
    connection's first message is the auth with the token fetched for it. A hook that
    raises fails that attempt (a retry, with why), not the client."""

    async def main() -> tuple[dict[int, list[str | bytes]], list[Retry]]:
        server = Listening()
        server.on_open = lambda conn: asyncio.get_running_loop().call_later(1.0, conn.abort)
        fetched = 0

        async def refresh(client: ResilientClient) -> None:
            nonlocal fetched
            fetched += 1
            if fetched == 2:
                raise RuntimeError("token service down")
            client.preamble = (f'{{"type":"auth","token":"t{fetched}"}}',)

        client = scripted_client(server, refresh)
        retries: list[Retry] = []
        client.listen(lambda e: retries.append(e) if isinstance(e, Retry) else None)
        await client.start()
        await asyncio.sleep(3.5)
        await client.close()
        return server.said, retries

    said, retries = run(main())
    firsts = [said[conn][0] for conn in sorted(said)]
    assert firsts[:2] == ['{"type":"auth","token":"t1"}', '{"type":"auth","token":"t3"}']
    assert any(
        "before_connect failed: RuntimeError('token service down')" in r.reason for r in retries
    )


def test_a_url_before_connect_sets_that_no_retry_can_mend_stops_the_client() -> None:
    async def main() -> tuple[State, str | None]:
        def move(client: ResilientClient) -> None:
            client.url = "http://feed.test/"

        client = scripted_client(Scripted(), move)
        await client.start()
        await asyncio.sleep(1)
        state, reason = client.state, client.stop_reason
        await client.close()
        return state, reason

    state, reason = run(main())
    assert state is State.STOPPED and reason is not None and "http://feed.test/" in reason


def _hooked(hook: Any, seconds: float = 12.0) -> tuple[list[Retry], int, State]:
    """A client with ``before_connect=hook`` for ``seconds``: its retries, the
    connections it opened, and its state once ``close()`` returned."""

    async def main() -> tuple[list[Retry], int, State]:
        client = scripted_client(Scripted(), hook, open_timeout_s=2.0)
        retries: list[Retry] = []
        client.listen(lambda e: retries.append(e) if isinstance(e, Retry) else None)
        await client.start()
        await asyncio.sleep(seconds)
        await asyncio.wait_for(client.close(), 5)
        return retries, client.connections, client.state

    return run(main())


async def _never_returns() -> None:
    await asyncio.sleep(3600)  # a token service that never answers


async def _cancels_itself() -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize(
    ("misbehave", "why"),
    [(_never_returns, "TimeoutError"), (_cancels_itself, "CancelledError")],
    ids=["never-returns", "cancels-itself"],
)
def test_a_before_connect_that_misbehaves_fails_only_its_attempt(
    misbehave: Callable[[], Any], why: str
) -> None:
    """On its first call the hook never returns (it is given up at ``open_timeout_s``,
    2 s) or cancels itself; that attempt fails with why, and the next one connects."""
    calls = 0

    async def first_call_misbehaves(client: ResilientClient) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await misbehave()

    retries, connections, state = _hooked(first_call_misbehaves)
    assert len(retries) == 1 and why in retries[0].reason
    if why == "TimeoutError":
        assert retries[0].at == 2.0  # open_timeout_s
    assert connections == 1 and state is State.STOPPED


def test_close_returns_even_when_before_connect_swallows_its_cancellation() -> None:
    async def stubborn(client: ResilientClient) -> None:
        if client.connections:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                return  # the application's mistake: close() must still end the client

    async def main() -> tuple[State, bool]:
        server = Scripted(lambda conn: asyncio.get_running_loop().call_later(1.0, conn.abort))
        client = scripted_client(server, stubborn)
        await client.start()
        await asyncio.sleep(3)  # the second attempt is in the hook
        await asyncio.wait_for(client.close(), 5)
        return client.state, client.is_open

    assert run(main()) == (State.STOPPED, False)


def test_clients_without_a_seed_differ_and_rerun_alike_from_the_global_generator() -> None:
    import random

    def draws() -> list[float]:
        return [ResilientClient("ws://feed.test/")._rng.random() for _ in range(5)]

    random.seed(11)
    first = draws()
    random.seed(11)
    assert draws() == first and len(set(first)) == 5
