"""Handshake faults given on demand (``POST /control/faults``: ``outage``, ``reject``)
against real WebSocket clients on 127.0.0.1, alone and on top of the scenario's plan.

What a client got is what is reported: one row per answered handshake, in the log, the
status and the recording, on the attempt's connection number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import polars as pl
import pytest
from websockets.exceptions import InvalidStatus

from simulator.inspector import attach
from simulator.net.server import serve
from tests.e2e.conftest import async_test, client, scenario
from tests.inspector.http_client import request

#: A handshake that was accepted (HTTP 101 Switching Protocols).
ACCEPTED = 101

AUTH_FLAP = scenario(
    """
    [scenario]
    name = "auth-flap"
    seed = 7

    [[stream]]
    name = "tick"
    every = "1s"

    [[fault]]
    name = "auth-flap"
    kind = "reject"
    status = 401
    limit = 2
    window = { start = "0s", end = "10m" }
    """
)


async def handshake_status(url: str) -> int:
    """Attempt one handshake: the HTTP status it was refused with, or 101 (then closed)."""
    try:
        ws = await client(url)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return ACCEPTED


def refusal_rows(recording: Path) -> list[tuple[int, str, int]]:
    """``(conn, fault, status)`` of each ``handshake_refused`` row of a recording."""
    frame = pl.read_parquet(recording).sort("seq")
    faults = [(conn, orjson.loads(f)) for conn, f in frame.select("conn", "fault").rows() if f]
    return [(c, f["fault"], f["status"]) for c, f in faults if f["kind"] == "handshake_refused"]


@async_test()
async def test_a_refusal_on_demand_is_the_one_reported_and_leaves_the_plans_limit(
    tmp_path: Path,
) -> None:
    """While an outage given on demand refuses handshakes, the plan's reject (401,
    limit 2) neither reports nor counts them: each refused attempt is one row, the 503
    its client got, and the plan's two 401s go to the first attempts after the outage."""
    recording = tmp_path / "run.parquet"
    async with serve(AUTH_FLAP, port=0, speed=4, record=recording) as server:
        attach(server)
        table = {"kind": "outage", "duration": "8s"}  # 2 s of wall time at speed 4
        answer = await request(server.url, "POST", "/control/faults", json_body=table)
        assert answer.status == 200, answer.body
        statuses = [await handshake_status(server.url)]
        while statuses[-1] == 503:  # until the outage is over: polled, not timed
            await asyncio.sleep(0.1)
            statuses.append(await handshake_status(server.url))
        statuses += [await handshake_status(server.url) for _ in range(2)]
        status = (await request(server.url, "GET", "/status")).json()
        control = [(i.conn, i.detail["status"]) for i in server.on_demand.injected]
        plan = [(i.conn, i.detail["status"]) for i in server.injected]

    refused = len(statuses) - 3
    assert refused >= 1 and statuses == [503] * refused + [401, 401, ACCEPTED]
    # Every attempt takes a connection number; the plan answered only n and n + 1.
    assert control == [(None, 503)] + [(conn, 503) for conn in range(refused)]
    assert plan == [(refused, 401), (refused + 1, 401)]
    assert status["faults_by_kind"] == {"outage": 1, "handshake_refused": refused + 2}
    assert refusal_rows(recording) == [
        *((conn, "control", 503) for conn in range(refused)),
        (refused, "auth-flap", 401),
        (refused + 1, "auth-flap", 401),
    ]


TICKS = scenario(
    """
    [scenario]
    name = "ticks"
    seed = 7

    [[stream]]
    name = "tick"
    every = "1s"
    """
)


async def held_handshake(url: str) -> tuple[int, float]:
    """Attempt one handshake: its status (as :func:`handshake_status`) and how long it
    took, in seconds of loop time."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    status = await handshake_status(url)
    return status, loop.time() - began


async def trigger(url: str, table: dict[str, object]) -> None:
    answer = await request(url, "POST", "/control/faults", json_body=table)
    assert answer.status == 200, answer.body


@async_test()
async def test_control_reject_with_a_delay_holds_handshakes_then_lets_them_in() -> None:
    """A reject with ``delay = "2s"`` at speed 10 holds each handshake at least 0.2 s of
    wall time, then accepts it, and reports a ``handshake_delayed`` on its attempt."""
    async with serve(TICKS, port=0, speed=10) as server:
        attach(server)
        await trigger(server.url, {"kind": "reject", "delay": "2s", "duration": "600s"})
        held = [await held_handshake(server.url) for _ in range(2)]
        delayed = [i for i in server.on_demand.injected if i.kind == "handshake_delayed"]

    # The hold is an asyncio timer of 0.2 s: it never ends early (1 ms for rounding).
    assert [status for status, _ in held] == [ACCEPTED, ACCEPTED]
    assert all(seconds >= 0.2 - 0.001 for _, seconds in held), held
    assert [(i.conn, i.detail["delay_ns"], i.detail["status"]) for i in delayed] == [
        (0, 2_000_000_000, None),
        (1, 2_000_000_000, None),
    ]


@async_test()
async def test_control_delay_holds_handshakes_then_the_plan_answers_them() -> None:
    """A delay given on demand on top of the plan's reject (401, limit 2), as two
    rejects of one scenario compose: each handshake is held, then the plan answers it
    (401 twice, counted against its limit, then accepted)."""
    async with serve(AUTH_FLAP, port=0, speed=10) as server:
        attach(server)
        await trigger(server.url, {"kind": "reject", "delay": "2s", "duration": "600s"})
        held = [await held_handshake(server.url) for _ in range(3)]
        control = [(i.conn, i.kind) for i in server.on_demand.injected]
        plan = [(i.conn, i.kind, i.detail["status"]) for i in server.injected]

    assert [status for status, _ in held] == [401, 401, ACCEPTED]
    assert all(seconds >= 0.2 - 0.001 for _, seconds in held), held
    assert control == [(None, "reject")] + [(conn, "handshake_delayed") for conn in range(3)]
    assert plan == [(0, "handshake_refused", 401), (1, "handshake_refused", 401)]


@async_test()
async def test_control_reject_spares_connection_numbers_below_after_connections() -> None:
    """``after_connections = 2`` counts connection numbers from the server's start, as
    a scenario's reject does: with connection 0 open, attempt 1 is spared, attempt 2
    and later are refused."""
    async with serve(TICKS, port=0) as server:
        attach(server)
        first = await client(server.url)
        table = {"kind": "reject", "status": 401, "after_connections": 2, "duration": "600s"}
        await trigger(server.url, table)
        statuses = [await handshake_status(server.url) for _ in range(3)]
        await first.close()
        refused = [i.conn for i in server.on_demand.injected if i.kind == "handshake_refused"]

    assert statuses == [ACCEPTED, 401, 401]
    assert refused == [2, 3]


@async_test()
async def test_control_reject_without_status_or_delay_refuses_with_503() -> None:
    """A reject given on demand with neither ``status`` nor ``delay`` refuses with 503,
    the default docs/inspector.md gives (a scenario's reject must name one of them)."""
    async with serve(TICKS, port=0) as server:
        attach(server)
        await trigger(server.url, {"kind": "reject", "retry_after": "20s", "duration": "600s"})
        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        [event] = [i for i in server.on_demand.injected if i.kind == "reject"]

    response = refused.value.response
    assert response.status_code == 503 and response.headers["Retry-After"] == "20"
    assert event.detail["status"] == 503
    assert "connections" not in event.detail  # a reject hits no open connection


@async_test()
async def test_a_delay_given_on_demand_longer_than_the_handshake_timeout_is_waited_out() -> None:
    """The handshake timeout (1 s here) allowed for the scenario's own delays only: a
    2 s delay given on demand had every handshake dropped at 1 s, with no answer."""
    slow = scenario(
        '[scenario]\nname = "slow"\n[server]\nhandshake_timeout = "1s"\n'
        '[[stream]]\nname = "tick"\nevery = "1s"\n'
    )
    async with serve(slow, port=0) as server:
        attach(server)
        await trigger(server.url, {"kind": "reject", "delay": "2s", "duration": "600s"})
        status, seconds = await held_handshake(server.url)
    assert status == ACCEPTED
    assert seconds >= 2.0 - 0.001
