"""A client may ask for its feed in batches (``?sim_batch=``, net.client_options): the
inspector page does, since a browser pays for each arrival. Every message still comes,
in order, at most a batch late; answers are not held. In memory, on the virtual clock."""

from __future__ import annotations

import asyncio
import json

import pytest

from simulator.net.client_options import MAX_BATCH_S, batch_asked
from simulator.net.log import EventKind
from simulator.net.server import serve
from tests.e2e.conftest import expect_event, scenario
from tests.net.conftest import virtual_test
from tests.net.memory_client import MemoryWebSocket, memory_websocket

FEED = """\
[scenario]
name = "batched"
[[stream]]
name = "tick"
every = "10ms"
"""


@pytest.mark.parametrize(
    ("path", "seconds"),
    [
        (None, 0.0),
        ("/", 0.0),
        ("/feed?token=x", 0.0),
        ("/?sim_batch=100ms", 0.1),
        ("/ws?a=1&sim_batch=250ms&b=2", 0.25),
        ("/?sim_batch=0", 0.0),
        (f"/?sim_batch={MAX_BATCH_S:g}s", MAX_BATCH_S),
    ],
)
def test_the_batch_asked_for_is_read_from_the_query_and_other_parameters_are_ignored(
    path: str | None, seconds: float
) -> None:
    assert batch_asked(path) == seconds


@pytest.mark.parametrize(("value", "said"), [("soon", "is not a duration"), ("2s", "is over 1s")])
def test_a_batch_that_is_not_a_duration_up_to_a_second_is_refused_saying_what_is_allowed(
    value: str, said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        batch_asked(f"/?sim_batch={value}")


def ticks(ws: MemoryWebSocket) -> list[tuple[float, int]]:
    """(arrival loop time, seq) of each tick received."""
    out = []
    for at, raw in ws.messages:
        message = json.loads(raw)
        if message.get("type") == "tick":
            out.append((at, message["seq"]))
    return out


@virtual_test
async def test_a_batched_client_gets_every_message_in_order_at_most_a_batch_late() -> None:
    """... and in about one arrival a batch, against one a message unbatched."""
    async with serve(scenario(FEED), in_memory=True) as server:
        plain = await memory_websocket(server, "/")
        batched = await memory_websocket(server, "/?sim_batch=100ms")
        await asyncio.sleep(2.0)
        mine, theirs = ticks(batched), ticks(plain)
        await plain.close()
        await batched.close()
    sent_at = {n: at for at, n in theirs}  # the plain client's: when each was due
    numbers = [n for _, n in mine]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # none lost
    assert len(mine) >= 180
    assert all(0 <= at - sent_at[n] <= 0.1 + 1e-6 for at, n in mine if n in sent_at)
    arrivals = sorted({at for at, _ in mine})
    assert len(arrivals) <= 2.0 / 0.1 + 1  # ~10 a second, against ~100 for the plain one
    assert len({at for at, _ in theirs}) >= 180


@virtual_test
async def test_an_answer_to_a_batched_client_is_not_held_and_comes_after_what_was_due_before() -> (
    None
):
    async with serve(scenario(FEED), in_memory=True) as server:
        batched = await memory_websocket(server, "/?sim_batch=1s")
        await asyncio.sleep(0.55)  # mid-batch: about 50 ticks held
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await batched.send('{"type": "ping", "id": 7}')
        while not any('"pong"' in str(m) for _, m in batched.messages):
            await asyncio.sleep(0.001)
        answered = next(at for at, m in batched.messages if '"pong"' in str(m))
        before = [m for at, m in batched.messages if at <= answered and '"tick"' in str(m)]
        kinds = [json.loads(m)["type"] for _, m in batched.messages]
        await batched.close()
    assert answered - asked < 0.01
    assert len(before) >= 50  # the held ticks went out with it, ahead of it
    assert kinds.index("pong") >= 50


@virtual_test
async def test_a_bad_batch_value_is_served_unbatched_with_a_warning_saying_why() -> None:
    async with serve(scenario(FEED), in_memory=True) as server:
        warned = expect_event(server, EventKind.WARNING)
        ws = await memory_websocket(server, "/?sim_batch=soon")
        event = await warned
        await asyncio.sleep(0.5)
        got = ticks(ws)
        await ws.close()
    assert "sim_batch='soon' is not a duration" in event.detail["message"]
    assert len({at for at, _ in got}) >= 45  # each tick its own arrival


@virtual_test
async def test_a_batch_held_by_a_stall_goes_out_when_the_stall_ends() -> None:
    """A stall holds the batch (its timer comes and goes meanwhile); when the stall
    ends, what was queued before it is sent, even with no new message to push it."""
    async with serve(
        scenario(FEED.replace('every = "10ms"', 'every = "1h"')), in_memory=True
    ) as server:
        ws = await memory_websocket(server, "/?sim_batch=100ms")
        await asyncio.sleep(0.01)
        [client] = server.clients.values()
        frame = b"\x81\x02{}"
        client.deliver(frame, [frame])  # one message, held for the batch
        effects = client.faults()
        effects.stall(client)
        await asyncio.sleep(0.5)  # the batch's time passes during the stall
        held = len(ws.messages)
        effects.unstall(client)
        await asyncio.sleep(0.01)
        after = len(ws.messages)
        await ws.close()
    assert (held, after) == (0, 1)


@virtual_test
async def test_a_stopping_server_sends_a_batched_clients_last_batch_before_its_close() -> None:
    async with serve(scenario(FEED), in_memory=True) as server:
        ws = await memory_websocket(server, "/?sim_batch=1s")
        await asyncio.sleep(0.5)  # about 50 ticks in the batch
        sent = server.stats().messages_by_stream["tick"]
        await server.stop()
    assert len(ticks(ws)) == sent > 40
    assert ws.close_code == 1001


@virtual_test
async def test_a_batched_client_that_never_drains_holds_nothing_much_older_than_max_lateness() -> (
    None
):
    """Batches are no fault: the lateness limit applies to a batched client's queue."""
    feed = FEED + '[server]\nmax_lateness = "200ms"\n'
    async with serve(scenario(feed), in_memory=True) as server:
        ws = await memory_websocket(server, "/?sim_batch=100ms")
        ws.transport.pause_reading()  # reads nothing: the server's writes stay buffered
        await asyncio.sleep(3.0)
        [client] = server.clients.values()
        dropped = client.frames_dropped
        assert client.pending_since is not None
        oldest = asyncio.get_running_loop().time() - client.pending_since[0]
        ws.transport.resume_reading()
        await ws.close()
    assert dropped > 200
    assert oldest <= 1.5 * 0.2 + 0.1 + 1e-6
