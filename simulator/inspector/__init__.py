"""The inspector: a page, a status, an event stream and a control endpoint served on a
server's own port beside its WebSocket endpoint (docs/inspector.md).

Attach it to a running server with :func:`attach`::

    async with serve(scenario, port=0) as server:
        inspector = attach(server)
        ...  # http://HOST:PORT/ is the page
"""

from __future__ import annotations

from simulator.inspector.app import Inspector
from simulator.inspector.views import ReplayView, RunView
from simulator.net.replay import ReplayServer
from simulator.net.server import SimServer

__all__ = ["Inspector", "attach"]


def attach(
    server: SimServer | ReplayServer, *, allow_remote_control: bool = False, source: str = ""
) -> Inspector:
    """Serve the inspector on ``server``'s port from now on (a live server, or a replay
    of the recording named ``source``); the control endpoint answers loopback peers
    only unless ``allow_remote_control`` (a replay takes no faults on demand). The
    event streams end when the server stops."""
    view: RunView | ReplayView
    view = RunView(server) if isinstance(server, SimServer) else ReplayView(server, source)
    inspector = Inspector(view, allow_remote_control=allow_remote_control)
    server.serve_http(inspector)
    return inspector
