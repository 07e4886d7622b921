"""The answers to one read of a client's go out in one write (issue #13: a client that
sent 20 bad messages at once got 20 error replies in 20 system calls, and a flood of
such clients spent the server's time in them), in order, and before a close that
follows them. In memory, on the virtual clock; writes are counted on the transport."""

from __future__ import annotations

import json
from typing import Any

from simulator.net.send_path import Client
from simulator.net.server import SimServer, serve
from tests.e2e.conftest import scenario
from tests.net.conftest import virtual_test
from tests.net.memory_client import MemoryWebSocket, connected, frames_until_closed

FEED = """\
[scenario]
name = "answers"
[[stream]]
name = "tick"
every = "1h"
"""


class CountedWrites:
    """A client's transport, every write to it kept in ``writes``."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def count_writes(client: Client) -> list[bytes]:
    """Every write the server makes to ``client`` from now on."""
    counted = CountedWrites(client.transport)
    client.transport = counted  # type: ignore[assignment]
    return counted.writes


def send_in_one_write(ws: MemoryWebSocket, messages: list[str]) -> None:
    for message in messages:
        ws.protocol.send_text(message.encode())
    ws.transport.write(b"".join(ws.protocol.data_to_send()))


async def server_and_client(server: SimServer) -> tuple[Client, MemoryWebSocket]:
    index, ws = await connected(server)
    return server.clients[index], ws


@virtual_test
async def test_the_answers_to_one_read_go_out_in_one_write_in_order() -> None:
    async with serve(scenario(FEED), in_memory=True) as server:
        client, ws = await server_and_client(server)
        writes = count_writes(client)
        send_in_one_write(ws, [json.dumps({"type": "ping", "id": n}) for n in range(10)])
        pongs = [json.loads(await ws.recv()) for _ in range(10)]
        assert [p["id"] for p in pongs] == list(range(10))
        assert len(writes) == 1
        # The next read's answers are written at once too: nothing stays held back.
        send_in_one_write(ws, [json.dumps({"type": "ping", "id": 10})])
        assert json.loads(await ws.recv())["id"] == 10
        assert len(writes) == 2


@virtual_test
async def test_the_answers_before_a_close_for_too_many_errors_are_sent_before_it() -> None:
    """A client that sends garbage gets its error replies, in one write, then 1008."""
    async with serve(scenario(FEED), in_memory=True) as server:
        client, ws = await server_and_client(server)
        writes = count_writes(client)
        burst = int(server.scenario.server.error_burst)
        send_in_one_write(ws, ["not json"] * (burst + 5))
        texts, closed = await frames_until_closed(ws)
        assert [json.loads(t)["type"] for t in texts] == ["error"] * burst
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert len(writes) == 1  # the replies; the close frame goes through the protocol


@virtual_test
async def test_answers_read_before_a_protocol_error_are_sent_before_the_close() -> None:
    """The wire fails the connection itself (1007, invalid UTF-8) after three pings
    of the same read: their pongs still go out, before the close frame."""
    async with serve(scenario(FEED), in_memory=True) as server:
        _, ws = await server_and_client(server)
        for n in range(3):
            ws.protocol.send_text(json.dumps({"type": "ping", "id": n}).encode())
        ws.protocol.send_text(b"\xff\xfe not UTF-8")
        ws.transport.write(b"".join(ws.protocol.data_to_send()))
        texts, closed = await frames_until_closed(ws)
        assert [json.loads(t)["id"] for t in texts] == [0, 1, 2]
        assert closed.rcvd is not None and closed.rcvd.code == 1007


BIG_ANSWERS = f"""\
[server]
send_buffer_bytes = 2048
slow_consumer = "close"
[[protocol.rule]]
name = "big"
match = {{ type = "big" }}
reply = {{ type = "big", data = "{"x" * 600}" }}
"""


@virtual_test
async def test_answers_held_for_one_write_do_not_make_a_client_slow() -> None:
    """With a queue limit smaller than the answers to one read (6 requests, 600-byte
    answers, a 2 KiB limit), the answers are held back for one write, not judged by the
    slow-consumer policy, which would close this client with 1013 although nothing
    waits in its socket."""
    async with serve(scenario(FEED + BIG_ANSWERS), in_memory=True) as server:
        client, ws = await server_and_client(server)
        send_in_one_write(ws, [json.dumps({"type": "big", "n": n}) for n in range(6)])
        answers = [json.loads(await ws.recv()) for _ in range(6)]
        assert {a["type"] for a in answers} == {"big"}
        send_in_one_write(ws, [json.dumps({"type": "ping", "id": 6})])
        assert json.loads(await ws.recv())["id"] == 6
        assert not client.closing and client.frames_dropped == 0
