"""``[server]`` and ``[protocol]`` → :class:`~simulator.core.model.Server` and
:class:`~simulator.core.model.Protocol`: every key optional, each replacing a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from simulator.core.model import (
    JSON,
    NEVER_LATE_NS,
    Mode,
    Protocol,
    Rule,
    Server,
    SlowConsumerPolicy,
    Timing,
)
from simulator.scenario.lines import KeyPath
from simulator.scenario.reader import ABSENT, Context, Table, json_value

__all__ = ["build_protocol", "build_server"]

_SERVER_INTS: Final = {
    "port": (0, 65535),
    "max_connections": (1, 100_000),
    "max_frame_bytes": (125, 16 * 2**20),
    "send_buffer_bytes": (1024, 64 * 2**20),
    "socket_buffer_bytes": (0, 64 * 2**20),
}
_SERVER_DURATIONS: Final = {
    "keepalive_interval": "keepalive_interval_ns",
    "keepalive_timeout": "keepalive_timeout_ns",
}


#: What one client may send (docs/limits.md): key → (lowest, highest).
_SERVER_LIMITS: Final = {
    "max_frames_per_s": (10, 1_000_000),
    "max_messages_per_s": (1, 100_000),
    "message_burst": (1, 1_000_000),
    "max_errors_per_s": (0, 100_000),
    "error_burst": (0, 1_000_000),
    "errors_logged": (0, 1_000_000),
    "max_handshakes": (1, 100_000),
}
_LIMIT_KEYS: Final = (*_SERVER_LIMITS, "handshake_timeout")


#: ``handshake_timeout``'s range, in ns: a connection needs a moment to send its
#: request, and a slowloris must not be held for long.
_HANDSHAKE_TIMEOUT_NS: Final = (100_000_000, 600_000_000_000)


def _limits(t: Table) -> dict[str, object]:
    """The admission limits given in ``[server]``, as :class:`Server` fields."""
    timeout = t.duration("handshake_timeout", positive=True)
    shortest, longest = _HANDSHAKE_TIMEOUT_NS
    if timeout is not None and not shortest <= timeout <= longest:
        t.ctx.bad(t.at("handshake_timeout"), t.get("handshake_timeout"), "must be 100ms to 10m")
        timeout = None
    return {
        **{key: t.integer(key, lo=lo, hi=hi) for key, (lo, hi) in _SERVER_LIMITS.items()},
        "handshake_timeout_ns": timeout,
    }


def build_server(t: Table | None) -> Server | None:
    """``[server]``: each key given replaces the default of :class:`Server`."""
    if t is None:
        return Server()
    mark = t.ctx.mark()
    t.only(
        (
            "host",
            "mode",
            *_SERVER_INTS,
            "slow_consumer",
            *_SERVER_DURATIONS,
            "timing",
            "max_lateness",
            "subprotocols",
            *_LIMIT_KEYS,
        )
    )
    changes: dict[str, object] = {
        "host": t.string("host"),
        "mode": t.choose("mode", Mode, "mode"),
        "slow_consumer": t.choose("slow_consumer", SlowConsumerPolicy, "policy"),
        "timing": t.choose("timing", Timing, "timing"),
        **{key: t.integer(key, lo=lo, hi=hi) for key, (lo, hi) in _SERVER_INTS.items()},
        **{attr: t.duration(key, positive=True) for key, attr in _SERVER_DURATIONS.items()},
        **_limits(t),
    }
    changes["max_lateness_ns"] = max_lateness(t)
    changes["subprotocols"] = _subprotocols(t)
    if t.ctx.failed_since(mark):
        return None
    return replace(Server(), **_given(changes))


#: RFC 6455 §4.1: a subprotocol is an RFC 7230 token.
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _subprotocols(t: Table) -> tuple[str, ...] | None:
    """``subprotocols``: a list of tokens, each once; ``None`` when absent or wrong."""
    raw = t.get("subprotocols")
    if raw is ABSENT:
        return None
    allowed = "a list of subprotocol names (tokens like 'json' or 'v2.feed')"
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        t.ctx.bad(t.at("subprotocols"), raw, f"must be {allowed}")
        return None
    bad = [n for n in raw if not _TOKEN.fullmatch(n)]
    if bad:
        t.ctx.bad(t.at("subprotocols"), bad[0], f"not a token: must be {allowed}")
        return None
    if len(set(raw)) != len(raw):
        t.ctx.bad(t.at("subprotocols"), raw, "lists a name twice")
        return None
    return tuple(raw)


def max_lateness(t: Table) -> int | None:
    """``max_lateness`` of ``t`` (a ``[server]`` or ``[[stream]]``) in ns,
    :data:`NEVER_LATE_NS` for ``"off"``; ``None`` when absent or wrong (then reported)."""
    value = t.duration_or("max_lateness", "off")
    return NEVER_LATE_NS if isinstance(value, str) else value


def _given(changes: Mapping[str, object]) -> dict[str, Any]:
    """The keys that were in the file (absent ones read as ``None``), for
    :func:`dataclasses.replace`: each value was type-checked by its reader."""
    return {key: value for key, value in changes.items() if value is not None}


_PROTOCOL_TYPES: Final = {
    "ping": "ping_type",
    "pong": "pong_type",
    "subscribe": "subscribe_type",
    "unsubscribe": "unsubscribe_type",
    "error": "error_type",
}


def build_protocol(t: Table | None) -> Protocol | None:
    """``[protocol]`` and its ``[[protocol.rule]]`` tables."""
    if t is None:
        return Protocol()
    mark = t.ctx.mark()
    t.only((*_PROTOCOL_TYPES, "errors", "rule"))
    changes: dict[str, object] = {
        **{attr: t.string(key) for key, attr in _PROTOCOL_TYPES.items()},
        "errors": t.boolean("errors"),
    }
    rules: list[Rule] = []
    raw = t.get("rule")
    if raw is not ABSENT:
        if not isinstance(raw, list):
            t.ctx.bad(t.at("rule"), raw, "must be an array of tables ([[protocol.rule]])")
        else:
            for i, rule_raw in enumerate(raw):
                rule = _rule(t.ctx, rule_raw, (*t.at("rule"), i), i)
                if rule is not None:
                    rules.append(rule)
    if t.ctx.failed_since(mark):
        return None
    return replace(Protocol(), rules=tuple(rules), **_given(changes))


def _rule(ctx: Context, raw: object, path: KeyPath, index: int) -> Rule | None:
    if not isinstance(raw, dict):
        ctx.bad(path, raw, "must be a table ([[protocol.rule]])")
        return None
    t = Table(ctx, raw, path)
    mark = ctx.mark()
    t.only(("name", "match", "reply", "delay"))
    name = t.string("name", default=f"rule[{index}]")
    match: tuple[tuple[str, JSON], ...] = ()
    match_raw = t.get("match", "a table of the fields a request must have, like { type = 'get' }")
    if match_raw is not ABSENT:
        if not isinstance(match_raw, dict) or not match_raw:
            ctx.bad(t.at("match"), match_raw, "must be a non-empty table, like { type = 'get' }")
        else:
            match = tuple(
                (k, json_value(ctx, (*t.at("match"), k), v)) for k, v in match_raw.items()
            )
    reply_raw = t.get("reply", "the reply to send, any value")
    reply = None if reply_raw is ABSENT else json_value(ctx, t.at("reply"), reply_raw)
    delay = t.duration("delay", positive=False, default=0)
    if ctx.failed_since(mark) or name is None or delay is None:
        return None
    return Rule(name, match, reply, delay)
