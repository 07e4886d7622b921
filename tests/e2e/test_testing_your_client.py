"""The demonstration of docs/testing-your-client.md, run: a feed client written on
websockets (docs/examples/feed_client.py) is property-tested against `sim` over real
loopback sockets on the virtual clock. hypothesis finds that it reconnects at once to a
server that accepts and drops, and that it ignores Retry-After; the fixed client
(docs/examples/fixed_feed_client.py) passes.

The properties are checked from the server's side, so they hold for any client: the
handshakes it made, and when."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from simulator.core.flat_plan import FlatPlan, to_faults, to_toml
from simulator.core.model import FaultKind
from simulator.testing.harness import RunningSim, run_sim
from simulator.testing.strategies import fault_plans

DOCS = Path(__file__).parents[2] / "docs"
FEED: dict[str, Any] = {
    "scenario": {"name": "feed", "seed": 1},
    "stream": [{"name": "tick", "every": "1s", "fields": {"n": {"dist": "counter"}}}],
}
#: How `find` searches: the same way every run, nothing replayed from a database, and no
#: deadline (real sockets on a loaded machine take their time; the plan found is checked).
SEARCH = settings(max_examples=200, database=None, derandomize=True, deadline=None)
#: At most this many handshakes in any second of scenario time.
MAX_PER_SECOND = 5


def one_per_connection(plan: FlatPlan) -> FlatPlan:
    """The i-th fault in time drops the i-th connection: a server that accepts and
    drops, over and over."""
    return tuple(dataclasses.replace(p, conn=i) for i, p in enumerate(plan))


#: Up to ten drops, each of the next connection, all within a second.
drops = fault_plans(kinds=[FaultKind.DISCONNECT], max_faults=10, horizon="1s", step="10ms").map(
    one_per_connection
)
#: An outage or two, refusing handshakes with 503 (and maybe Retry-After) while it lasts.
outages = fault_plans(
    kinds=[FaultKind.OUTAGE], min_faults=1, max_faults=2, horizon="10s", step="100ms"
)


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handshakes_under(plan: FlatPlan, client: ModuleType) -> tuple[list[float], list[Any]]:
    """Run ``client.watch`` for a minute of scenario time against a server carrying out
    ``plan``; the scenario times of its handshake attempts, and the fault log."""

    async def check(sim: RunningSim) -> tuple[list[float], list[Any]]:
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.watch(sim.url, lambda message: None, stop))
        await sim.sleep(60)
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sim.handshakes(), list(sim.injected)

    return run_sim(check, FEED, faults=to_faults(plan), real_sockets=True, virtual_time=True)


def paced(attempts: list[float]) -> None:
    """Never more than MAX_PER_SECOND handshakes in a second: no tight reconnect loop,
    even against a server that accepts and drops every connection."""
    for i, t in enumerate(attempts):
        burst = [u for u in attempts[i:] if u < t + 1.0]
        assert len(burst) <= MAX_PER_SECOND, f"{len(burst)} handshakes from {t:.3f} s"


def retry_after_honoured(attempts: list[float], injected: list[Any]) -> None:
    """After a refusal with Retry-After, no handshake before it has passed."""
    for refusal in (i for i in injected if i.kind == "handshake_refused"):
        after = refusal.detail.get("retry_after_s")
        t = refusal.t_ns / 1e9
        if after:
            early = [u for u in attempts if t < u < t + after - 1e-6]  # float rounding
            assert not early, (
                f"refused at {t:.3f} s (Retry-After {after}), back at {early[0]:.3f} s"
            )


def properties(plan: FlatPlan, client: ModuleType) -> None:
    attempts, injected = handshakes_under(plan, client)
    paced(attempts)
    retry_after_honoured(attempts, injected)


def test_the_suite_finds_both_bugs_of_the_websockets_loop_and_shrinks_them() -> None:
    naive = example("feed_client")

    def fails(check: Any) -> Any:
        def predicate(plan: FlatPlan) -> bool:
            try:
                check(*handshakes_under(plan, naive))
            except AssertionError:
                return True
            return False

        return predicate

    # Reconnects at once: found with only disconnects (the server accepts, then drops).
    hammering = find(drops, fails(lambda attempts, _: paced(attempts)), settings=SEARCH)
    assert all(p.kind is FaultKind.DISCONNECT for p in hammering)
    assert len(hammering) == MAX_PER_SECOND  # shrunk: one more handshake than allowed
    # Ignores Retry-After: found with one outage.
    ignoring = find(
        outages,
        fails(lambda attempts, injected: retry_after_honoured(attempts, injected)),
        settings=SEARCH,
    )
    assert [p.kind for p in ignoring] == [FaultKind.OUTAGE]
    print(to_toml(hammering), to_toml(ignoring), sep="\n")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.one_of(drops, outages))
def test_the_fixed_client_keeps_both_properties(plan: FlatPlan) -> None:
    properties(plan, example("fixed_feed_client"))


def test_the_doc_shows_the_example_clients_as_they_are() -> None:
    doc = (DOCS / "testing-your-client.md").read_text()
    for name in ("feed_client", "fixed_feed_client"):
        code = (DOCS / "examples" / f"{name}.py").read_text()
        assert code.strip() in doc, f"docs/testing-your-client.md does not show {name}.py as it is"


@pytest.fixture(autouse=True)
def _quiet_websockets_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="websockets")
