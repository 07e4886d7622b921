"""The reference resilient client: reconnects with jittered backoff, classifies closes,
detects half-open connections, resubscribes, reports gaps, duplicates and restarted counts (see
:mod:`simulator.client.resilient`). The front door of the package."""

from simulator.client.events import (
    ClientEvent,
    Duplicate,
    Gap,
    Message,
    Refused,
    Restarted,
    Retry,
    State,
    StateChanged,
    as_dict,
)
from simulator.client.resilient import ClientConfig, OfflineQueueFull, ResilientClient

__all__ = [
    "ClientConfig",
    "ClientEvent",
    "Duplicate",
    "Gap",
    "Message",
    "OfflineQueueFull",
    "Refused",
    "ResilientClient",
    "Restarted",
    "Retry",
    "State",
    "StateChanged",
    "as_dict",
]
