"""`run_sim`'s view of the server (`RunningSim`): every handshake attempt, as the server
saw it arrive, whatever became of it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from simulator.client import ClientConfig, Message, ResilientClient, State, StateChanged
from simulator.core.backoff import BackoffPolicy
from simulator.errors import ConnectError
from simulator.net.wire import Handler
from simulator.net.wire_client import connect
from simulator.testing import harness
from simulator.testing.harness import ReconnectStorm, RunningSim, run_sim
from simulator.testing.virtual_time import RealTimeExceeded

FEED: dict[str, Any] = {
    "scenario": {"name": "handshakes", "seed": 1},
    "stream": [{"name": "tick", "every": "1s", "fields": {"n": {"dist": "counter"}}}],
}
#: A retry a second, exactly (so the attempts' times are known).
CONFIG = ClientConfig(
    backoff=BackoffPolicy(base_s=1.0, factor=1.0, cap_s=1.0),
    heartbeat_interval_s=None,
    open_timeout_s=2.0,
)


def attempts_and_handshakes(*faults: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The times the client began an attempt, and what ``sim.handshakes()`` says."""

    async def check(sim: RunningSim) -> tuple[list[float], list[float]]:
        client = ResilientClient(sim.url, config=CONFIG, open_transport=sim.open_transport, seed=0)
        began: list[float] = []
        client.listen(
            lambda e: (
                began.append(sim.now())
                if isinstance(e, StateChanged) and e.state is State.CONNECTING
                else None
            )
        )
        await client.start()
        await sim.sleep(12)
        await client.close()
        return began, sim.handshakes()

    return run_sim(check, {**FEED, "fault": list(faults)})


def test_every_attempt_is_counted_when_it_arrives_even_one_the_client_gave_up_on() -> None:
    """A reject delays each handshake 5 s, longer than the client waits (2 s): each
    attempt is counted when it arrived, though no answer ever reached the client."""
    began, handshakes = attempts_and_handshakes({"kind": "reject", "delay": "5s"})
    assert len(began) >= 4
    assert handshakes == began


def test_refused_and_accepted_attempts_are_counted_alike() -> None:
    """An outage from 2 s to 6 s: the accepted first attempt, each refused one, and the
    accepted one after it, at the times the client made them."""
    began, handshakes = attempts_and_handshakes(
        {"kind": "outage", "at": "2s", "duration": "4s", "retry_after": "0s"}
    )
    assert len(began) >= 4
    assert handshakes == began


def test_faults_triggered_on_demand_are_in_the_fault_log_with_the_scenarios() -> None:
    """An outage triggered through the control endpoint's path at 3 s, among a
    scenario's disconnect at 1 s: both in ``sim.injected``, in time order, and the
    handshakes it refused in ``sim.handshakes()``."""
    from simulator.scenario.faults import build_faults
    from simulator.scenario.lines import LineIndex
    from simulator.scenario.reader import Context

    async def check(sim: RunningSim) -> tuple[list[str], list[float]]:
        client = ResilientClient(sim.url, config=CONFIG, open_transport=sim.open_transport, seed=0)
        await client.start()
        await sim.sleep(3)
        ctx = Context("control", LineIndex(""))
        table = {"name": "now", "kind": "outage", "duration": "2s", "at": "0s"}
        [outage] = build_faults(ctx, [table], ["tick"]) or []
        sim.server.on_demand.trigger(outage)
        await sim.sleep(4)
        await client.close()
        return [i.kind for i in sim.injected], sim.handshakes()

    kinds, handshakes = run_sim(
        check, {**FEED, "fault": [{"kind": "disconnect", "at": "1s", "code": 1012}]}
    )
    assert kinds[0] == "disconnect"
    assert "outage" in kinds and "handshake_refused" in kinds
    refused = kinds.count("handshake_refused")
    assert len(handshakes) >= 2 + refused  # the first, one after the disconnect, the refused


async def first_timestamp(sim: RunningSim) -> str:
    """The ``timestamp`` of the first message a client gets."""
    client = ResilientClient(sim.url, config=CONFIG, open_transport=sim.open_transport, seed=0)
    got: list[Message] = []
    client.listen(lambda e: got.append(e) if isinstance(e, Message) else None)
    await client.start()
    while not got:
        await sim.sleep(0.1)
    await client.close()
    return str(got[0].data["timestamp"])


def test_timestamps_count_from_the_given_epoch_else_the_scenarios_else_1970() -> None:
    """A client that judges a message by its age sees in a test what it sees live: the
    scenario's own epoch was replaced by 1970 unless ``epoch_ns`` was given."""
    dated = {**FEED, "scenario": {**FEED["scenario"], "epoch": "2026-05-01T12:00:00Z"}}
    stamps = [
        run_sim(first_timestamp, dated),
        run_sim(first_timestamp, FEED),
        run_sim(first_timestamp, dated, epoch_ns=1_000_000_000_000_000_000),
    ]
    assert stamps == [
        "2026-05-01T12:00:01.000Z",
        "1970-01-01T00:00:01.000Z",
        "2001-09-09T01:46:41.000Z",
    ]


@pytest.mark.parametrize("refused", [True, False], ids=["outage", "accept_and_drop"])
def test_a_client_that_reconnects_with_no_delay_fails_fast_and_says_why(
    refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that tries again at once, refused (an outage) or dropped as it opens,
    keeps the loop busy at one instant: virtual time never moved on, and the run ended
    a minute later with RealTimeExceeded, which named no cause."""
    monkeypatch.setattr(harness, "STORM_HANDSHAKES", 50)

    async def check(sim: RunningSim) -> None:
        assert sim.open_transport is not None
        while True:  # the bug: no backoff
            with contextlib.suppress(ConnectError, ConnectionError):
                conn = await connect(sim.url, Handler(), open_transport=sim.open_transport)
                await conn.wait_closed()

    fault = (
        {"kind": "outage", "at": "0s", "duration": "1h"}
        if refused
        else {"kind": "disconnect", "code": 1012}
    )
    with pytest.raises(ReconnectStorm) as storm:
        run_sim(check, {**FEED, "fault": [fault]}, timeout_real_s=30)
    assert storm.value.handshakes == 50 and storm.value.at_s == 0.0
    assert "no backoff" in str(storm.value)
    # Stopped by the real-time limit first (the storm's count not reached): the same
    # error, with the count it had.
    monkeypatch.setattr(harness, "STORM_HANDSHAKES", 10**9)
    with pytest.raises(ReconnectStorm) as storm:
        run_sim(check, {**FEED, "fault": [fault]}, timeout_real_s=1)
    assert storm.value.handshakes >= 100 and isinstance(storm.value.__cause__, RealTimeExceeded)


def test_a_check_that_failed_with_no_handshake_in_memory_says_how_to_connect() -> None:
    """A client that cannot take open_transport, connecting to sim.url by itself in
    memory, times out with nothing to say why: the error now carries the hint."""

    async def no_handshake(sim: RunningSim) -> None:
        raise TimeoutError("timed out during opening handshake")  # as such a client does

    with pytest.raises(TimeoutError) as failed:
        run_sim(no_handshake, FEED)
    assert failed.value.__notes__ == [harness.NO_HANDSHAKE_HINT]

    async def connected_then_failed(sim: RunningSim) -> None:
        assert sim.open_transport is not None
        conn = await connect(sim.url, Handler(), open_transport=sim.open_transport)
        await conn.close()
        raise AssertionError("the client's own bug")

    with pytest.raises(AssertionError) as failed:
        run_sim(connected_then_failed, FEED)
    assert not getattr(failed.value, "__notes__", [])


def test_a_run_stuck_later_than_a_burst_of_handshakes_is_no_storm() -> None:
    """100 clients connect at 0 s; at 5 s the check spins without waiting: the run ends
    with RealTimeExceeded, not a ReconnectStorm blamed on the handshakes of 0 s."""

    async def check(sim: RunningSim) -> None:
        assert sim.open_transport is not None
        for _ in range(100):
            await connect(sim.url, Handler(), open_transport=sim.open_transport)
        await sim.sleep(5)
        while True:  # a bug, but no reconnect storm
            await asyncio.sleep(0)

    with pytest.raises(RealTimeExceeded):
        run_sim(check, FEED, timeout_real_s=1)


@pytest.mark.parametrize("then_waits", [False, True])
def test_a_storm_is_reported_though_the_check_swallows_the_cancellation(
    then_waits: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check awaits its client's task, suppressing CancelledError (as cleanup code
    does): the storm's cancellation landed there, and run_sim returned as if passed;
    and one that waits on after it was cancelled only once, running to the real-time
    limit."""
    monkeypatch.setattr(harness, "STORM_HANDSHAKES", 50)

    async def client_loop(sim: RunningSim) -> None:
        assert sim.open_transport is not None
        while True:  # no backoff
            with contextlib.suppress(ConnectError, ConnectionError):
                conn = await connect(sim.url, Handler(), open_transport=sim.open_transport)
                await conn.wait_closed()

    async def check(sim: RunningSim) -> None:
        task = asyncio.create_task(client_loop(sim))
        if then_waits:
            with contextlib.suppress(asyncio.CancelledError):
                await sim.sleep(60)
            await sim.sleep(60)
            return
        asyncio.get_running_loop().call_later(60, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with pytest.raises(ReconnectStorm):
        run_sim(check, {**FEED, "fault": [{"kind": "disconnect", "code": 1012}]}, timeout_real_s=20)
