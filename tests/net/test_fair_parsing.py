"""What a server's connections parse in one loop turn is bounded all together (issue
#13): 50 flooding connections must not make a turn parse 50 slices while a feed's next
tick waits, and no connection with a backlog is starved. Bytes in, on the virtual clock
(see test_wire_pump); a turn is the stretch between two runs of the test's task."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from simulator.net.parse_budget import FRAME_CHARGE_BYTES, SLICE_BYTES, TURN_PARSE_BYTES
from simulator.net.wire import READ_SLICE_BYTES
from simulator.net.wire_server import ServerConnection
from simulator.testing.virtual_time import run
from tests.net.test_wire_pump import from_client, opened_pair

FLOODERS = 12
#: Each flooder's backlog: several turns' worth, all of it bigger than one read parsed
#: as it comes.
FRAMES = 3 * READ_SLICE_BYTES // 8


class Turns:
    """Bytes and frames parsed per turn, by connection: counts what each connection's
    sans-I/O protocol is fed and emits."""

    def __init__(self) -> None:
        self.turn = 0
        self.parsed: list[tuple[int, int, int, int]] = []  # (turn, connection, bytes, frames)

    def watch(self, index: int, conn: ServerConnection) -> None:
        protocol = conn.protocol
        receive, events = protocol.receive_data, protocol.events_received

        def fed(data: bytes) -> None:
            self.parsed.append((self.turn, index, len(data), 0))
            receive(data)

        def emitted() -> list[object]:
            out = events()
            turn, who, size, _ = self.parsed[-1]
            self.parsed[-1] = (turn, who, size, len(out))
            return out  # type: ignore[return-value]

        protocol.receive_data = fed  # type: ignore[method-assign]
        protocol.events_received = emitted  # type: ignore[assignment,method-assign]

    def charged(self, turn: int) -> int:
        return sum(
            max(size, frames * FRAME_CHARGE_BYTES)
            for t, _, size, frames in self.parsed
            if t == turn
        )

    async def next_turn(self) -> None:
        await asyncio.sleep(0)
        self.turn += 1


def flooders(payload: bytes, frames: int, count: int = FLOODERS) -> tuple[Turns, list, list]:  # type: ignore[type-arg]
    turns = Turns()
    pairs = [opened_pair() for _ in range(count)]
    for index, (conn, _, client, _) in enumerate(pairs):
        turns.watch(index, conn)
        for _ in range(frames):
            client.send_text(payload)
    return turns, pairs, [log for _, _, _, log in pairs]


def test_a_loop_turn_parses_about_its_budget_in_all_however_many_connections_flood() -> None:
    async def main() -> tuple[list[int], list[list[int]], list[list[object]]]:
        turns, pairs, logs = flooders(b"{}", FRAMES)
        await turns.next_turn()  # the handshakes' turn is over
        for conn, _, client, _ in pairs:
            from_client(client, conn)  # each read is too big: all of it is backlog
        while any(len(log.events) - 1 < FRAMES for log in logs):
            await turns.next_turn()
        last = turns.turn
        per_turn = [turns.charged(t) for t in range(1, last + 1)]
        served = [
            sorted({who for t, who, _, _ in turns.parsed if t == turn})
            for turn in range(1, last + 1)
        ]
        return per_turn, served, [[m for _, m in log.events[1:]] for log in logs]

    per_turn, served, messages = run(main())
    assert max(per_turn) <= TURN_PARSE_BYTES + SLICE_BYTES
    # Round-robin: a connection waits for the others' slices, never longer.
    slice_charge = max(SLICE_BYTES, SLICE_BYTES // 8 * FRAME_CHARGE_BYTES)  # 8-byte frames
    every = -(-FLOODERS * slice_charge // TURN_PARSE_BYTES) + 1
    for index in range(FLOODERS):
        turns_served = [t for t, who in enumerate(served) if index in who]
        gaps = [b - a for a, b in itertools.pairwise(turns_served)]
        assert max(gaps, default=1) <= every
    assert messages == [["{}"] * FRAMES] * FLOODERS  # nothing lost, in order


def test_small_reads_parse_as_they_come_until_the_turn_budget_is_spent() -> None:
    """Reads under a slice are parsed as they come while the turn has budget; once it
    is spent, a read joins its connection's backlog (parsed in the next turns, in order,
    nothing lost)."""
    frames = 70  # 70 masked 1-byte text frames: 490 bytes a read, under READ_SLICE_BYTES

    async def main() -> tuple[int, list[list[object]]]:
        turns, pairs, logs = flooders(b"x", frames)
        await turns.next_turn()
        # One turn's reads, as the loop delivers them: one after another, no yield.
        for conn, _, client, _ in pairs:
            from_client(client, conn)
        at_once = turns.charged(turns.turn)
        while any(len(log.events) - 1 < frames for log in logs):
            await turns.next_turn()
        return at_once, [[m for _, m in log.events[1:]] for log in logs]

    at_once, messages = run(main())
    assert 0 < at_once <= TURN_PARSE_BYTES + READ_SLICE_BYTES * FRAME_CHARGE_BYTES // 7
    assert at_once < FLOODERS * frames * FRAME_CHARGE_BYTES
    assert messages == [["x"] * frames] * FLOODERS


@pytest.mark.parametrize("count", [1, FLOODERS])
def test_empty_frames_are_charged_as_frames_not_bytes(count: int) -> None:
    """Empty 6-byte frames cost as much to handle as small ones: a turn handles about
    TURN_PARSE_BYTES / FRAME_CHARGE_BYTES of them, not TURN_PARSE_BYTES / 6, whether
    one connection floods (its slice is the whole budget) or many do."""

    async def main() -> list[int]:
        turns, pairs, logs = flooders(b"", FRAMES, count)
        await turns.next_turn()
        for conn, _, client, _ in pairs:
            from_client(client, conn)
        while any(len(log.events) - 1 < FRAMES for log in logs):
            await turns.next_turn()
        return [
            sum(frames for t, _, _, frames in turns.parsed if t == turn)
            for turn in range(1, turns.turn + 1)
        ]

    frames_per_turn = run(main())
    piece_frames = SLICE_BYTES // 2 // 6 + 1  # the last piece parsed may cross the budget
    assert max(frames_per_turn) <= TURN_PARSE_BYTES // FRAME_CHARGE_BYTES + piece_frames
