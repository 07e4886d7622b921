"""The inspector: a page, a status, an event stream and a control endpoint served on a
server's own port beside its WebSocket endpoint (docs/inspector.md).

Attach it to a running server with :func:`attach`::

    async with serve(scenario, port=0) as server:
        inspector = attach(server)
        ...  # http://HOST:PORT/ is the page
"""

from __future__ import annotations

from simulator.inspector.app import Inspector
from simulator.inspector.views import RecordView, ReplayView, RunView
from simulator.net.proxy import RecordingProxy
from simulator.net.replay import ReplayServer
from simulator.net.server import SimServer

__all__ = ["Inspector", "attach"]


def attach(
    server: SimServer | ReplayServer | RecordingProxy,
    *,
    allow_remote_control: bool = False,
    source: str = "",
) -> Inspector:
    """Serve the inspector on ``server``'s port from now on (a live server, a replay of
    the recording named ``source``, or a recording proxy); the control endpoint answers
    loopback peers only unless ``allow_remote_control`` (only a live server takes faults
    on demand). The event streams end when the server stops."""
    view: RunView | ReplayView | RecordView
    if isinstance(server, SimServer):
        view = RunView(server)
    elif isinstance(server, ReplayServer):
        view = ReplayView(server, source)
    else:
        view = RecordView(server)
    inspector = Inspector(view, allow_remote_control=allow_remote_control)
    server.serve_http(inspector)
    return inspector
