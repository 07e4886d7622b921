"""The test kit of `sim`: run a client against a live server in virtual time
(:func:`run_sim`, the ``sim_server`` pytest fixture), hypothesis strategies that draw
fault plans, schedules and scenarios, and the virtual clock itself
(:mod:`simulator.testing.virtual_time`). See docs/testing-your-client.md."""

from simulator.testing.harness import ReconnectStorm, RunningSim, run_sim
from simulator.testing.strategies import fault_plans, plan_report, scenarios, schedules

__all__ = [
    "ReconnectStorm",
    "RunningSim",
    "fault_plans",
    "plan_report",
    "run_sim",
    "scenarios",
    "schedules",
]
