"""A feed client written the way websockets documents reconnection: the ``async for ws
in connect(url)`` loop. It looks resilient; docs/testing-your-client.md tests it."""

import asyncio
from collections.abc import Callable

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def watch(url: str, on_message: Callable[[str], None], stop: asyncio.Event) -> None:
    """Deliver every message of the feed at ``url`` to ``on_message`` until ``stop``."""
    async for ws in connect(url):
        try:
            async for message in ws:
                on_message(str(message))
        except ConnectionClosed:
            pass  # reconnect
        if stop.is_set():
            return
