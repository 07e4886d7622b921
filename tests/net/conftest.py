"""Helpers for the network tests on the virtual clock.

:func:`virtual_test` runs an ``async def`` test on
:func:`simulator.testing.virtual_time.run`: its sleeps and timeouts take no real time,
and a test that never ends fails with ``RealTimeExceeded`` instead of hanging.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.testing.virtual_time import run


def virtual_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test (parametrized ones too) on the virtual clock."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        run(fn(*args, **kwargs))

    return wrapper
