"""The inspector: a page, a status, an event stream and a control endpoint served on a
server's own port beside its WebSocket endpoint (docs/inspector.md).

Attach it to a running server with :func:`attach`::

    async with serve(scenario, port=0) as server:
        inspector = attach(server)
        ...  # http://HOST:PORT/ is the page
"""

from __future__ import annotations

from simulator.inspector.app import Inspector
from simulator.inspector.views import RunView
from simulator.net.server import SimServer

__all__ = ["Inspector", "attach"]


def attach(server: SimServer, *, allow_remote_control: bool = False) -> Inspector:
    """Serve the inspector on ``server``'s port from now on; the control endpoint
    answers loopback peers only unless ``allow_remote_control``. Call
    ``inspector.close()`` before the server stops (it ends the event streams)."""
    inspector = Inspector(RunView(server), allow_remote_control=allow_remote_control)
    server.serve_http(inspector)
    return inspector
