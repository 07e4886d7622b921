"""`run_sim`'s view of the server (`RunningSim`): every handshake attempt, as the server
saw it arrive, whatever became of it."""

from __future__ import annotations

from typing import Any

from simulator.client import ClientConfig, ResilientClient, State, StateChanged
from simulator.core.backoff import BackoffPolicy
from simulator.testing.harness import RunningSim, run_sim

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
