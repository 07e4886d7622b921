"""``--max-frames-per-s``, ``--max-message-bytes`` and ``--max-handshakes``: what one
client may send to the servers that have no scenario (``sim replay``, the ``sim record``
proxy), given to the command as one ``limits`` argument. ``sim run`` reads the same
limits from ``[server]`` (docs/limits.md).

The defaults are written out here, not imported, so that ``--help`` does not load the
network layer; tests/e2e/test_limits_cli.py checks that they are the servers' own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

#: simulator.net.wire.CLIENT_FRAMES_PER_S and MAX_HANDSHAKES.
FRAMES_PER_S = 1000
HANDSHAKES = 1000
#: simulator.net.replay.MIN_MESSAGE_LIMIT and simulator.net.proxy.MAX_SIZE.
REPLAY_MESSAGE_BYTES = 2**20
PROXY_MESSAGE_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The limits given on the command line (or their defaults)."""

    max_frames_per_s: int
    max_message_bytes: int
    max_handshakes: int


def client_limit_options(
    message_default: int, message_help: str, prefix: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The three options, given to the command as ``limits`` (a :class:`ClientLimits`);
    ``message_default`` and ``message_help`` say what ``--max-message-bytes`` is to
    this command; ``prefix`` starts the other two's help (``"Proxy: "``)."""

    def said(text: str) -> str:
        return prefix + text if prefix else text[:1].upper() + text[1:]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_limits(
            *args: Any,
            max_frames_per_s: int,
            max_message_bytes: int,
            max_handshakes: int,
            **kwargs: Any,
        ) -> Any:
            limits = ClientLimits(max_frames_per_s, max_message_bytes, max_handshakes)
            return command(*args, limits=limits, **kwargs)

        options = (  # bottom up: --help lists them in the reverse order
            (
                "--max-handshakes",
                HANDSHAKES,
                click.IntRange(1, 100_000),
                said(
                    "connections without their opening request yet; past it, the oldest is dropped."
                ),
            ),
            ("--max-message-bytes", message_default, click.IntRange(125, 64 * 2**20), message_help),
            (
                "--max-frames-per-s",
                FRAMES_PER_S,
                click.IntRange(10, 1_000_000),
                said(
                    "frames of any kind a client may send in a second; past it, closed with 1008."
                ),
            ),
        )
        for name, default, kind, text in options:
            with_limits = click.option(
                name, default=default, show_default=True, type=kind, help=text
            )(with_limits)
        return with_limits

    return decorate
