"""The feed client of feed_client.py, fixed: backoff that resets only after a stable
connection, and Retry-After honoured (both from `sim`'s pure core)."""

import asyncio
import random
from collections.abc import Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator.core.backoff import Backoff, BackoffPolicy
from simulator.core.close_policy import parse_retry_after

POLICY = BackoffPolicy(base_s=0.5, cap_s=30.0, stable_s=10.0)


async def watch(url: str, on_message: Callable[[str], None], stop: asyncio.Event) -> None:
    """Deliver every message of the feed at ``url`` to ``on_message`` until ``stop``."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(POLICY)
    while not stop.is_set():
        uptime, retry_after = None, None
        try:
            async with connect(url) as ws:  # one connection: no reconnect loop inside
                opened = loop.time()
                try:
                    async for message in ws:
                        on_message(str(message))
                except ConnectionClosed:
                    pass
                uptime = loop.time() - opened
        except InvalidStatus as e:  # refused: 503, 429, ...
            retry_after = parse_retry_after(e.response.headers.get("Retry-After"))
        except OSError:
            pass  # unreachable
        delay = backoff.next_delay_s(random.random(), uptime_s=uptime, retry_after_s=retry_after)
        await asyncio.sleep(delay)
