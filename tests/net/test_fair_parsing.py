"""Many connections parsing a backlog at once share one slice per loop turn (issue #13):
50 flooding connections must not make a loop turn parse 50 x 8 KiB while a feed's
next tick waits. Bytes in, on the virtual clock (see test_wire_pump)."""

from __future__ import annotations

import asyncio

from simulator.net.wire import MIN_SLICE_BYTES, READ_SLICE_BYTES, TURN_PARSE_BYTES
from simulator.testing.virtual_time import run
from tests.net.test_wire_pump import from_client, opened_pair

FLOODERS = 4


def test_connections_with_a_backlog_parse_about_one_slice_per_loop_turn_in_all() -> None:
    async def main() -> tuple[int, list[int]]:
        parsed: list[int] = []
        logs = []
        pairs = [opened_pair() for _ in range(FLOODERS)]
        for conn, _, client, log in pairs:
            receive = conn.protocol.receive_data

            def measured(data: bytes, receive=receive) -> None:  # type: ignore[no-untyped-def]
                parsed.append(len(data))
                receive(data)

            conn.protocol.receive_data = measured  # type: ignore[method-assign]
            for _ in range(2 * READ_SLICE_BYTES // 8):
                client.send_text(b"{}")  # 8 bytes a frame, masked
            logs.append(log)
        for conn, _, client, _ in pairs:
            from_client(client, conn)
        await asyncio.sleep(0)  # one loop turn: every flooder's first slice
        first_turn = sum(parsed)
        while any(len(log.events) - 1 < 2 * READ_SLICE_BYTES // 8 for log in logs):
            await asyncio.sleep(0)
        return first_turn, [len(log.events) - 1 for log in logs]

    first_turn, delivered = run(main())
    assert first_turn <= max(READ_SLICE_BYTES, FLOODERS * MIN_SLICE_BYTES)
    assert delivered == [2 * READ_SLICE_BYTES // 8] * FLOODERS  # nothing lost, in the end


def test_small_reads_from_many_connections_parse_about_turn_parse_bytes_in_one_turn() -> None:
    """Reads small enough to be parsed as they come are parsed so only up to
    TURN_PARSE_BYTES a turn, all connections together; the rest waits a turn or more,
    in order, and nothing is lost."""
    connections = 12
    frames = 3 * 1024 // 8  # 3 KiB of 8-byte frames each: every read under a slice

    async def main() -> tuple[int, list[list[object]]]:
        pairs = [opened_pair() for _ in range(connections)]
        for _, _, client, _ in pairs:
            for i in range(frames):
                client.send_text(f"{i % 10}".encode())
        # One turn's reads, as the loop delivers them: one after another, no yield.
        for conn, _, client, _ in pairs:
            from_client(client, conn)
        parsed_at_once = sum(len(log.events) - 1 for _, _, _, log in pairs)
        while any(len(log.events) - 1 < frames for _, _, _, log in pairs):
            await asyncio.sleep(0)
        return parsed_at_once, [[m for _, m in log.events[1:]] for _, _, _, log in pairs]

    parsed_at_once, messages = run(main())
    read_bytes = frames * 7  # a masked 1-byte text frame: 2 + 4 + 1 bytes
    assert parsed_at_once <= (TURN_PARSE_BYTES // read_bytes + 1) * frames
    assert parsed_at_once < connections * frames
    assert messages == [[f"{i % 10}" for i in range(frames)]] * connections
