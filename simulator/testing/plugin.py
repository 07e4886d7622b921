"""The pytest plugin of `sim` (registered by the ``pytest11`` entry point when the
package is installed): the ``sim_server`` fixture and the ``--sim-seed`` option.

::

    def test_my_client_survives_an_outage(sim_server):
        async def check(sim):
            client = MyClient(sim.url, open_transport=sim.open_transport)
            ...
        sim_server(check, "scenarios/outage.toml", seed=3)

``sim_server(check, scenario, *, seed=None, faults=None, real_sockets=False,
virtual_time=None, speed=1.0, epoch_ns=None, timeout_real_s=60.0)`` is
:func:`simulator.testing.harness.run_sim`; ``pytest --sim-seed N``
makes every ``sim_server`` in the run use seed ``N`` (to reproduce a run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "sim WebSocket simulator")
    group.addoption(
        "--sim-seed",
        type=int,
        default=None,
        metavar="N",
        help="Seed every sim_server of this run with N (overrides the tests' own seeds).",
    )


@pytest.fixture
def sim_server(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Run a check against a `sim` server: ``sim_server(check, scenario, seed=...,
    faults=..., real_sockets=False, virtual_time=None, speed=1.0, epoch_ns=None,
    timeout_real_s=60.0)`` (see :func:`run_sim`)."""
    # Imported here: the plugin loads in every pytest run, most of which never use it.
    from simulator.testing.harness import run_sim

    forced = request.config.getoption("--sim-seed")

    def start(check: Callable[..., Any], scenario: Any, **options: Any) -> Any:
        if forced is not None:
            options["seed"] = forced
        return run_sim(check, scenario, **options)

    return start
