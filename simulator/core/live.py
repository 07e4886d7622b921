"""Live server state as field values: the one exception to "a message is a pure
function of (scenario, seed, stream, index)".

A ``{ live = "<kind>" }`` field is known only when the message goes out: how many
clients are connected, how many messages this connection was sent before, the time,
the connection's index. The timeline renders a placeholder in its place
(:func:`placeholder`, a JSON string no scenario writes); whoever sends the message
(`sim run`'s fan-out, `sim generate`) calls :func:`fill` with the :class:`LiveState`
of that connection at that moment. `sim generate` takes the state from its client model
(``--connections`` clients, the virtual clock), so a run with that many scripted
clients sends the same bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["LiveKind", "LiveState", "fill", "placeholder"]


class LiveKind(enum.Enum):
    CONNECTED_CLIENTS = "connected_clients"
    """Connections the server holds when it sends the message (one being closed counts
    until it is gone)."""
    MESSAGES_SENT = "messages_sent"
    """Timeline messages this connection was handed before this one, from 0 (whatever
    faults then did to them; replies and pongs do not count)."""
    UPTIME_S = "uptime_s"
    """The message's scenario time: seconds since the server started, to the ms."""
    CONNECTION = "connection"
    """The connection's index (the order of handshake attempts, from 0)."""


_MARK: Final = "\x00sim:live:"
#: How a placeholder starts once encoded as JSON (orjson escapes NUL as \u0000).
ENCODED_MARK: Final = b'"\\u0000sim:live:'


#: The live values that differ from one client to the next; the others (the server's
#: count of clients, its uptime) are the same for every client at one instant.
PER_CLIENT: Final = frozenset({LiveKind.MESSAGES_SENT, LiveKind.CONNECTION})


def placeholder(kind: LiveKind) -> str:
    """The string a live field holds until :func:`fill` replaces it."""
    return f"{_MARK}{kind.value}\x00"


_ENCODED: Final = {
    kind: b'"\\u0000sim:live:' + kind.value.encode() + b'\\u0000"' for kind in LiveKind
}


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the server knows about one connection when it sends it a message."""

    connection: int
    connected: int
    sent: int
    t_ns: int  # scenario time since the server started


def fill(payload: bytes, state: LiveState) -> bytes:
    """``payload`` with each live placeholder replaced by its value (unchanged, the same
    object, when it has none)."""
    if ENCODED_MARK not in payload:
        return payload
    values = {
        LiveKind.CONNECTED_CLIENTS: str(state.connected).encode(),
        LiveKind.MESSAGES_SENT: str(state.sent).encode(),
        LiveKind.UPTIME_S: repr(state.t_ns // 1_000_000 / 1000).encode(),
        LiveKind.CONNECTION: str(state.connection).encode(),
    }
    for kind, encoded in _ENCODED.items():
        payload = payload.replace(encoded, values[kind])
    return payload
