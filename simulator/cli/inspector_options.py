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


#: What ``--no-inspector`` leaves out, said for each command that serves the inspector:
#: only ``sim run`` has the control endpoint and ``GET /healthz``, and ``sim record``
#: serves it only as a proxy (docs/inspector.md).
NO_INSPECTOR_HELP = {
    "run": "Serve WebSocket only: no page at /, no /status, /events or /control/*"
    " (GET /healthz stays).",
    "replay": "Serve WebSocket only: no page at /, no /status or /events.",
    "record": "Proxy: relay WebSocket only: no page at /, no /status or /events.",
}


def inspector_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``sim run``'s two inspector options (parameters ``no_inspector``,
    ``control_from_any``)."""
    command = click.option(
        "--control-from-any",
        is_flag=True,
        help="Accept POST /control/* from any address, not only loopback (anyone who can"
        " reach the port can then disconnect clients).",
    )(command)
    return no_inspector_option("run")(command)


def no_inspector_option(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--no-inspector`` (parameter ``no_inspector``) for ``command`` (a key of
    :data:`NO_INSPECTOR_HELP`), whose help says what that command leaves out."""
    return click.option("--no-inspector", is_flag=True, help=NO_INSPECTOR_HELP[command])


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
