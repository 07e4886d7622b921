"""The inspector's routes on the WebSocket port (docs/inspector.md):

========================  =====================================================
``GET /``                 the page (a WebSocket handshake to ``/`` stays one)
``GET /static/NAME``      its CSS and JavaScript, from the package
``GET /info``             scenario, streams with expected rates, fault plan TOML
``GET /status``           the terminal status's figures, as JSON
``GET /events``           Server-Sent Events: ``status`` and ``log``
``POST /control/faults``  carry out a fault table now (loopback only by default)
``POST /control/disconnect``  close all connections or one now
========================  =====================================================

``GET /healthz`` and every WebSocket handshake go on to the server as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from importlib import resources

from simulator.inspector import control
from simulator.inspector.feed import EventFeed
from simulator.inspector.http import (
    EventStream,
    Exchange,
    HttpRequest,
    HttpResponse,
    error_response,
    json_response,
)
from simulator.inspector.views import View

#: Lateness samples behind the p50/p99 of the status sent on /events.
LIVE_LATENESS_SAMPLES = 5_000
#: Open connections listed in the status sent on /events (the newest): with thousands of
#: clients, listing them all twice a second would hold the loop, and the feed.
LIVE_CONNECTIONS = 50

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@functools.cache
def load_static() -> dict[str, bytes]:
    """The page's files, read once from the package."""
    folder = resources.files("simulator.inspector").joinpath("static")
    found: dict[str, bytes] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            found[entry.name] = entry.read_bytes()
    return found


def _is_websocket_handshake(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class Inspector:
    """Answers the inspector's HTTP requests for ``view`` (an
    :class:`~simulator.net.wire_server.HttpRouter`); :meth:`close` ends the streams."""

    def __init__(self, view: View, *, allow_remote_control: bool = False) -> None:
        self.view = view
        self.allow_remote_control = allow_remote_control
        # Twice a second to every page: lateness over the newest messages only (sorting
        # all the recent samples would hold the event loop, and the feed, for ms).
        self.feed = EventFeed(
            view.log, lambda: view.status(LIVE_LATENESS_SAMPLES, LIVE_CONNECTIONS)
        )
        self._static = load_static()

    # ------------------------------------------------------------------ HttpRouter

    def take(self, head: bytes, transport: asyncio.Transport) -> Exchange | None:
        request_line = head.split(b"\r\n", 1)[0]
        method, _, rest = request_line.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if _is_websocket_handshake(head) or (method == b"GET" and path == b"/healthz"):
            return None
        return Exchange(transport, self.handle)

    def close(self) -> None:
        self.feed.close()

    # ------------------------------------------------------------------ routes

    def handle(self, request: HttpRequest) -> HttpResponse | EventStream:
        path, method = request.path, request.method
        if path.startswith("/control/"):
            if method != "POST":
                return _not_allowed("POST")
            refused = control.refusal(request, self.allow_remote_control)
            if refused is not None:
                return refused
            if path == "/control/faults":
                return control.trigger_fault(self.view, request)
            if path == "/control/disconnect":
                return control.disconnect(self.view, request)
            return error_response(404, f"no control {path}: /control/faults, /control/disconnect")
        if method != "GET":
            return _not_allowed("GET")
        if path in ("/", "/index.html"):
            return self._file("index.html")
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        if path == "/info":
            return json_response(200, self.view.info())
        if path == "/status":
            return json_response(200, self.view.status())
        if path == "/events":
            if self.feed.full:
                return error_response(503, "too many /events subscribers")
            return EventStream(self.feed.subscribe)
        return error_response(
            404,
            f"no page {path}: the inspector serves /, /info, /status, /events and /control/*;"
            " WebSocket clients connect to any path with an Upgrade request",
        )

    def _file(self, name: str) -> HttpResponse:
        body = self._static.get(name)
        if body is None:
            return error_response(404, f"no file {name}")
        suffix = "." + name.rsplit(".", 1)[-1]
        return HttpResponse(200, body, _CONTENT_TYPES[suffix])


def _not_allowed(allowed: str) -> HttpResponse:
    """A JSON 405 like every other refusal, with the ``Allow`` header it must have."""
    answer = error_response(405, f"method not allowed: use {allowed}")
    return dataclasses.replace(answer, headers=(("Allow", allowed),))
