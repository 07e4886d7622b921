"""What a hostile peer can make the pump do is bounded (issue #13): every frame kind
counts against the frame budget, a ping flood from a peer that reads nothing leaves one
pong pending, endless empty fragments meet the message limit, a big read is parsed
a slice at a time, and nothing is parsed while a handshake's answer is held. Bytes in,
bytes out, on the virtual clock (see test_wire_pump)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.uri import parse_uri

from simulator.net.wire import (
    EARLY_BYTES,
    FRAGMENT_MIN_CHARGE,
    FRAME_FLOOD_REASON,
    READ_SLICE_BYTES,
    WireConfig,
)
from simulator.net.wire_server import ServerConnection, WireServer
from simulator.testing.virtual_time import run
from tests.e2e.attackers import frame
from tests.net.test_wire_pump import CONFIG, Accepting, Log, Tape, from_client, opened_pair

BUDGET = 50
BUDGETED = dataclasses.replace(CONFIG, max_frames_per_s=BUDGET)


def frames_out(client: ClientProtocol, data: bytes) -> list[Frame]:
    client.receive_data(data)
    return [e for e in client.events_received() if isinstance(e, Frame)]


def send_frames(client: ClientProtocol, kind: str, n: int) -> None:
    """``n`` frames of one kind, as a client sends them."""
    if kind == "continuation":
        client.send_text(b"", fin=False)
        for _ in range(n - 1):
            client.send_continuation(b"", fin=False)
        return
    for k in range(n):
        if kind == "ping":
            client.send_ping(str(k).encode())
        elif kind == "pong":
            client.send_pong(str(k).encode())
        else:
            client.send_text(b"{}")


@pytest.mark.parametrize("kind", ["ping", "pong", "text", "continuation"])
def test_every_frame_kind_counts_against_the_budget_and_a_flood_is_failed_with_1008(
    kind: str,
) -> None:
    async def main(n: int) -> tuple[list[Frame], list[tuple[str, Any]]]:
        conn, tape, client, log = opened_pair(BUDGETED)
        send_frames(client, kind, n)
        from_client(client, conn)
        return frames_out(client, tape.take()), log.events[1:]

    within, delivered = run(main(BUDGET))
    assert not any(f.opcode is Opcode.CLOSE for f in within)
    assert len(delivered) == (0 if kind == "continuation" else BUDGET)
    flood, delivered = run(main(BUDGET + 1))
    [close] = [f for f in flood if f.opcode is Opcode.CLOSE]
    assert close.data[2:].decode() == FRAME_FLOOD_REASON
    assert int.from_bytes(close.data[:2]) == CloseCode.POLICY_VIOLATION
    assert not any(f.opcode is Opcode.PONG for f in flood)  # the flood gets no answers
    assert delivered == []


def test_the_budget_is_a_second_long_and_starts_again() -> None:
    async def main() -> list[Frame]:
        conn, tape, client, _ = opened_pair(BUDGETED)
        for _ in range(3):
            send_frames(client, "text", BUDGET)
            from_client(client, conn)
            await asyncio.sleep(1.0)
        return frames_out(client, tape.take())

    assert not any(f.opcode is Opcode.CLOSE for f in run(main()))


def test_a_ping_flood_from_a_peer_that_reads_nothing_leaves_only_its_latest_pong() -> None:
    """While the transport's buffer is full, pongs are not written (they would pile up
    in memory); when it drains, the latest ping gets its pong (RFC 6455 §5.5.3)."""

    async def main() -> tuple[list[Frame], list[Frame]]:
        conn, tape, client, _ = opened_pair()
        conn.pause_writing()  # the transport says: the peer reads nothing
        send_frames(client, "ping", 500)
        from_client(client, conn)
        for _ in range(10):  # a read this big is parsed a slice per loop turn
            await asyncio.sleep(0)
        while_paused = frames_out(client, tape.take())
        conn.resume_writing()
        return while_paused, frames_out(client, tape.take())

    while_paused, after = run(main())
    assert while_paused == []
    assert [(f.opcode, f.data) for f in after] == [(Opcode.PONG, b"499")]


def test_a_close_while_a_pong_is_held_drops_the_pong() -> None:
    async def main() -> list[Frame]:
        conn, tape, client, _ = opened_pair()
        conn.pause_writing()
        send_frames(client, "ping", 3)
        from_client(client, conn)
        conn.start_close(CloseCode.GOING_AWAY)
        conn.resume_writing()
        return frames_out(client, tape.take())

    assert [f.opcode for f in run(main())] == [Opcode.CLOSE]  # no pong after a close


def test_endless_empty_fragments_meet_the_message_limit_by_number() -> None:
    limit = FRAGMENT_MIN_CHARGE * 100
    config = dataclasses.replace(CONFIG, max_size=limit)

    async def main(fragments: int) -> list[Frame]:
        conn, tape, client, _ = opened_pair(config)
        send_frames(client, "continuation", fragments)
        from_client(client, conn)
        await asyncio.sleep(0.01)  # the read is parsed in slices, over a few loop turns
        return frames_out(client, tape.take())

    assert run(main(100)) == []
    [close] = run(main(101))
    assert close.opcode is Opcode.CLOSE
    assert int.from_bytes(close.data[:2]) == CloseCode.MESSAGE_TOO_BIG


def test_a_big_read_is_parsed_a_slice_at_a_time_while_the_loop_serves_others() -> None:
    """A read of thousands of tiny frames is parsed a slice per loop turn, in pieces of
    at most READ_SLICE_BYTES, reading paused meanwhile; the message arrives whole."""

    async def main() -> tuple[list[int], list[str], bool, bool]:
        conn, tape, client, log = opened_pair()
        sizes: list[int] = []
        receive = conn.protocol.receive_data

        def measured(data: bytes) -> None:
            sizes.append(len(data))
            receive(data)

        conn.protocol.receive_data = measured  # type: ignore[method-assign]
        client.send_text(b"a", fin=False)
        for _ in range(10_000):
            client.send_continuation(b"a", fin=False)
        client.send_continuation(b"a", fin=True)
        order: list[str] = []
        asyncio.get_running_loop().call_soon(order.append, "another connection served")
        from_client(client, conn)
        paused_while_parsing = not tape.reading
        while not any(kind == "message" for kind, _ in log.events):
            await asyncio.sleep(0)
        order.append("message delivered")
        [(_, message)] = [e for e in log.events if e[0] == "message"]
        return sizes, order, paused_while_parsing, tape.reading and message == "a" * 10_002

    sizes, order, paused, whole = run(main())
    assert len(sizes) > 5 and max(sizes) <= READ_SLICE_BYTES
    assert order == ["another connection served", "message delivered"]
    assert paused and whole  # paused while parsing, reading again after, nothing lost


def test_holds_stack_a_stall_stops_the_parsing_of_a_backlog_until_released() -> None:
    async def main() -> tuple[int, int]:
        conn, _, client, log = opened_pair()
        for _ in range(3 * READ_SLICE_BYTES // 10):
            client.send_text(b"{}")
        from_client(client, conn)
        conn.hold_reading("stall")
        for _ in range(10):
            await asyncio.sleep(0)
        during = len(log.events) - 1
        conn.release_reading("stall")
        for _ in range(10):
            await asyncio.sleep(0)
        return during, len(log.events) - 1

    during, after = run(main())
    assert during < after == 3 * READ_SLICE_BYTES // 10


def test_releasing_every_hold_parses_what_was_already_read() -> None:
    """A stop releases every hold to read the close frame: a backlog that a stall held
    is parsed then, not left until more data arrives."""

    async def main() -> tuple[int, int]:
        conn, _, client, log = opened_pair()
        for _ in range(3 * READ_SLICE_BYTES // 10):
            client.send_text(b"{}")
        from_client(client, conn)
        conn.hold_reading("stall")
        for _ in range(10):
            await asyncio.sleep(0)
        during = len(log.events) - 1
        conn.release_all_reading()
        for _ in range(10):
            await asyncio.sleep(0)
        return during, len(log.events) - 1

    during, after = run(main())
    assert during < after == 3 * READ_SLICE_BYTES // 10


class Held(Log):
    """Holds every handshake until the test answers it (as an injected delay does)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer: asyncio.Future[None] | None = None

    def handshake(self, conn: ServerConnection, request: Request) -> asyncio.Future[None]:
        self.answer = asyncio.get_running_loop().create_future()
        return self.answer


def requesting(
    handler: Log, config: WireConfig = CONFIG, path: str = "/", early: Sequence[Frame] = ()
) -> tuple[ServerConnection, Tape, ClientProtocol]:
    """A new connection of a server of ``handler``, and its client, whose request (for
    ``path``) and ``early`` frames, sent without waiting for the answer (RFC 6455 §4.1
    forbids it), are ready to go in one write (:func:`from_client`)."""
    server = WireServer(handler, config)
    server.start()
    conn = server.connection()
    tape = Tape()
    conn.connection_made(tape)
    client = ClientProtocol(parse_uri("ws://test" + path))
    client.send_request(client.connect())
    client.state = State.OPEN  # as a client that does not wait
    for early_frame in early:
        client.send_frame(early_frame)
    client.state = State.CONNECTING  # to read the answer
    return conn, tape, client


def held_connection(
    frames: int, config: WireConfig = CONFIG, path: str = "/"
) -> tuple[ServerConnection, Tape, ClientProtocol, Held]:
    """A connection whose client sent its request (for ``path``) and ``frames`` text
    frames in one write, the request's answer held."""
    handler = Held()
    texts = [Frame(Opcode.TEXT, str(k).encode()) for k in range(frames)]
    conn, tape, client = requesting(handler, config, path, texts)
    from_client(client, conn)
    return conn, tape, client, handler


def test_what_a_client_sends_while_its_handshake_is_held_is_acted_on_after_the_open() -> None:
    """While a handshake's answer is held, nothing the client sends is parsed (a flood
    would be, unbounded: its frame budget starts at the open); once accepted, what came
    with the request and what came after it are delivered, in order, after the open."""

    async def main() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], bool]:
        conn, tape, client, handler = held_connection(3)
        client.state = State.OPEN
        client.send_text(b"3")
        client.state = State.CONNECTING
        from_client(client, conn)
        await asyncio.sleep(0.5)
        while_held = list(handler.events)
        assert handler.answer is not None
        handler.answer.set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)
        return while_held, handler.events, tape.reading and conn.is_open

    while_held, after, reading = run(main())
    assert while_held == []
    assert after == [("opened", None)] + [("message", str(k)) for k in range(4)]
    assert reading


@pytest.mark.parametrize("first_read", [False, True], ids=["later_read", "with_the_request"])
def test_a_held_client_that_sends_more_than_early_bytes_is_dropped(first_read: bool) -> None:
    """What a client sends before its held answer is kept, up to EARLY_BYTES: past it,
    it is dropped (a read can bring far more; kept, it would be what a hostile client
    costs for as long as it is held), and nothing of it was parsed. Below it, reading
    goes on, to see the client leave."""

    async def main() -> tuple[bool | None, bool, list[tuple[str, Any]]]:
        flood = frame(Opcode.TEXT, b"x" * (EARLY_BYTES + READ_SLICE_BYTES))
        reading_below: bool | None = None  # not looked at: the flood came with the request
        if first_read:
            handler = Held()
            conn, tape, client = requesting(handler)
            conn.data_received(b"".join(client.data_to_send()) + flood)
        else:
            conn, tape, _, handler = held_connection(1)
            await asyncio.sleep(0)
            reading_below = tape.reading and not tape.aborted
            conn.data_received(flood)
        await asyncio.sleep(0.5)
        return reading_below, tape.aborted, handler.events

    assert run(main()) == (None if first_read else True, True, [])


def test_a_request_read_through_the_backlog_is_read_on_once_answered() -> None:
    """A request bigger than READ_SLICE_BYTES goes through the backlog, whose parsing
    stops at it while its answer is held: once answered, reading resumes (it stayed
    paused, and the client was served nothing more of what it sent)."""

    async def main() -> tuple[bool, list[tuple[str, Any]]]:
        conn, tape, client, handler = held_connection(0, path="/" + "p" * READ_SLICE_BYTES)
        await asyncio.sleep(0.5)
        assert tape.reading  # while held too: a client that leaves is let go at once
        assert handler.answer is not None
        handler.answer.set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)
        client.state = State.OPEN
        client.send_text(b"after")
        from_client(client, conn)
        for _ in range(10):
            await asyncio.sleep(0)
        return tape.reading, handler.events

    assert run(main()) == (True, [("opened", None), ("message", "after")])


def test_what_came_with_a_held_request_counts_against_the_frame_budget_from_the_open() -> None:
    async def main(frames: int) -> tuple[list[Frame], list[tuple[str, Any]]]:
        _, tape, client, handler = held_connection(frames, BUDGETED)
        await asyncio.sleep(0.5)  # a read this big is parsed a slice per turn, to the request
        assert handler.answer is not None
        handler.answer.set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)
        return frames_out(client, tape.take()), handler.events

    within, delivered = run(main(BUDGET))
    assert not any(f.opcode is Opcode.CLOSE for f in within) and len(delivered) == BUDGET + 1
    flood, delivered = run(main(BUDGET + 1))
    [close] = [f for f in flood if f.opcode is Opcode.CLOSE]
    assert close.data[2:].decode() == FRAME_FLOOD_REASON
    assert delivered[0] == ("opened", None) and len(delivered) <= BUDGET  # not the batch over it


def test_a_ping_sent_with_the_request_gets_no_pong_before_the_answer() -> None:
    """websockets answers a ping as it parses it, even before the handshake is
    answered: the pong went out ahead of the 101, which the client could not read."""

    async def main(held: bool) -> bytes:
        handler: Log = Held() if held else Accepting()
        conn, tape, client = requesting(handler, early=[Frame(Opcode.PING, b"early")])
        from_client(client, conn)  # one read: the request and the ping
        await asyncio.sleep(0)
        if isinstance(handler, Held):
            assert handler.answer is not None
            handler.answer.set_result(None)
            for _ in range(10):
                await asyncio.sleep(0)
        return tape.take()

    for held in (False, True):
        assert run(main(held)).startswith(b"HTTP/1.1 101 ")


@pytest.mark.parametrize("held", [False, True], ids=["answered_at_once", "held"])
@pytest.mark.parametrize("early", ["close", "unmasked"])
def test_a_request_sent_with_a_frame_that_fails_the_connection_is_dropped_unanswered(
    held: bool, early: str
) -> None:
    """A close frame, or a frame websockets cannot parse (unmasked), sent with the
    request fails the connection before it is answered: it was answered 101 all the
    same, and stayed open reading nothing (a close then crashed the server's stop)."""

    async def main() -> tuple[bytes, bool, list[tuple[str, Any]]]:
        handler: Log = Held() if held else Accepting()
        frames = [Frame(Opcode.CLOSE, b"\x03\xe8")] if early == "close" else []
        conn, tape, client = requesting(handler, early=frames)
        extra = b"\x81\x05hello" if early == "unmasked" else b""
        conn.data_received(b"".join(client.data_to_send()) + extra)
        await asyncio.sleep(0)
        if isinstance(handler, Held) and handler.answer is not None:
            handler.answer.set_result(None)
            for _ in range(10):
                await asyncio.sleep(0)
        return tape.take(), tape.aborted, handler.events

    written, aborted, events = run(main())
    assert not written.startswith(b"HTTP/1.1 101") and aborted and events == []


@pytest.mark.parametrize("then", ["nothing", "rsv1", "ping"])
def test_nothing_after_a_frame_that_fails_the_connection_is_handed_over(then: str) -> None:
    """A message, invalid UTF-8 (our check: 1007), a message and maybe more in one
    read: only the first is handed over, even when websockets failed a later frame of
    the read as it parsed (its close was in before ours, and ours did nothing), and a
    ping after it is not told to the handler either."""

    async def main() -> list[tuple[str, Any]]:
        conn, _, client, log = opened_pair()
        client.send_text(b"a")
        data = b"".join(client.data_to_send())
        data += frame(Opcode.TEXT, b"\xff\xfe") + frame(Opcode.TEXT, b"c")
        if then == "rsv1":
            data += b"\xc1\x81\x00\x00\x00\x00d"  # RSV1 set (websockets fails it: 1002)
        elif then == "ping":
            data += frame(Opcode.PING, b"after")
        conn.data_received(data)
        return log.events[1:]

    assert run(main()) == [("message", "a")]
