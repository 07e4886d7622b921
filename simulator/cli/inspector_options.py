"""``--no-inspector`` and ``--control-from-any``: the options of the commands that serve
the inspector (docs/inspector.md), and attaching it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from simulator.net.proxy import RecordingProxy
    from simulator.net.replay import ReplayServer
    from simulator.net.server import SimServer


def inspector_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the inspector's two options (parameters ``no_inspector``, ``control_from_any``)."""
    command = click.option(
        "--control-from-any",
        is_flag=True,
        help="Accept POST /control/* from any address, not only loopback (anyone who can"
        " reach the port can then disconnect clients).",
    )(command)
    return no_inspector_option(command)


def no_inspector_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--no-inspector`` (parameter ``no_inspector``)."""
    return click.option(
        "--no-inspector",
        is_flag=True,
        help="Serve WebSocket only: no page at /, no /status, /events or /control/*"
        " (sim run's GET /healthz stays; replay and record have none).",
    )(command)


def load_inspector(no_inspector: bool) -> None:
    """Import the inspector and read its page before the server starts: the feed's clock
    starts with the server, and at --speed 50 a 0.1 s import after it is 5 s of feed
    that the first client would miss."""
    if not no_inspector:
        from simulator.inspector.app import load_static

        load_static()


def start_inspector(
    server: SimServer | ReplayServer | RecordingProxy,
    no_inspector: bool,
    control_from_any: bool,
    quiet: bool,
    source: str = "",
) -> None:
    """Serve the inspector on ``server``'s port unless ``no_inspector``; say where on
    stderr unless ``quiet`` (stdout's first line stays the WebSocket URL; pass ``quiet``
    when stderr holds JSON lines). ``source``: the recording a replay serves."""
    if no_inspector:
        return
    from simulator.inspector import attach

    attach(server, allow_remote_control=control_from_any, source=source)
    if not quiet:
        page = (
            "https://" + server.url.removeprefix("wss://")
            if server.url.startswith("wss://")
            else "http://" + server.url.removeprefix("ws://")
        )
        click.echo(f"inspector: {page}/", err=True)
