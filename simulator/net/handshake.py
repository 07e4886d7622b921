"""How a server of `sim` answers an opening handshake before it accepts it: the health
check, the connection limit, and the handshake faults of the plan (refusals with a
status and ``Retry-After``, delays)."""

from __future__ import annotations

import asyncio
import http

import orjson
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from simulator.core.faults import HandshakeDecision
from simulator.net.wire_server import HandshakeAnswer


def is_health_check(request: Request) -> bool:
    return request.path.split("?")[0] == "/healthz"


def health_response(protocol: ServerProtocol, status: dict[str, object]) -> Response:
    """``200`` with ``status`` as JSON: the answer to ``GET /healthz``."""
    body = orjson.dumps({"status": "ok", **status}).decode()
    response = protocol.reject(http.HTTPStatus.OK, body + "\n")
    del response.headers["Content-Type"]  # reject() set text/plain
    response.headers["Content-Type"] = "application/json"
    return response


def too_many_connections(protocol: ServerProtocol) -> Response:
    """``503`` with ``Retry-After: 1``: the server is at its connection limit."""
    response = protocol.reject(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
    response.headers["Retry-After"] = "1"
    return response


def fault_answer(
    protocol: ServerProtocol, decision: HandshakeDecision, speed: float
) -> HandshakeAnswer:
    """The answer the fault plan gives this handshake: ``None`` (accept), a refusal
    with the decided status (and ``Retry-After``), either one after the decided delay
    (scenario time, divided by ``speed``)."""
    refusal = None
    if decision.status is not None:
        phrase = http.HTTPStatus(decision.status).phrase
        refusal = protocol.reject(decision.status, f"{phrase}\n")
        if decision.retry_after_s is not None:
            refusal.headers["Retry-After"] = str(decision.retry_after_s)
    if decision.delay_ns:
        # Held in a task of its own: other handshakes go on meanwhile.
        return _after(decision.delay_ns / 1e9 / speed, refusal)
    return refusal


async def _after(delay_s: float, response: Response | None) -> Response | None:
    await asyncio.sleep(delay_s)
    return response
