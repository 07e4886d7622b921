"""The pytest plugin (`simulator.testing.plugin`, registered by the package's ``pytest11``
entry point): the ``sim_server`` fixture and ``--sim-seed``."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.testing.harness import RunningSim

pytest_plugins = ["pytester"]

FEED: dict[str, Any] = {
    "scenario": {"name": "plugin", "seed": 1},
    "stream": [{"name": "tick", "every": "1s", "fields": {"n": {"dist": "counter"}}}],
    "fault": [{"name": "kick", "kind": "disconnect", "at": "5s", "code": 1012}],
}


def test_sim_server_runs_a_check_against_a_server_in_virtual_time(sim_server: Any) -> None:
    """Ten minutes of scenario time; the fault log and what was sent are there to read."""

    async def check(sim: RunningSim) -> tuple[float, list[str], int]:
        await sim.sleep(600)
        return sim.now(), [i.kind for i in sim.injected], len(sim.sent_to(0))

    now, injected, sent = sim_server(check, FEED, seed=3)
    assert now == pytest.approx(600)
    assert injected == []  # nobody connected: nothing to disconnect
    assert sent == 0


def test_sim_seed_on_the_command_line_seeds_every_sim_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_seed(sim_server):
            async def check(sim):
                return sim.server.seed
            assert sim_server(check, {FEED!r}, seed=1) == 1234
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--sim-seed", "1234")
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_by_the_package_entry_point() -> None:
    from importlib.metadata import entry_points

    [plugin] = [e for e in entry_points(group="pytest11") if e.name == "sim"]
    assert plugin.value == "simulator.testing.plugin"
