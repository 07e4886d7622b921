"""How a server of `sim` answers an opening handshake before it accepts it: the health
check, the connection limit, and the handshake faults of the plan (refusals with a
status and ``Retry-After`` or, with ``respond = "close"``, a close frame; delays)."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import http
from collections.abc import Sequence

import orjson
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeaderFormat
from websockets.headers import parse_connection, parse_subprotocol, parse_upgrade
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from simulator.core.faults import HandshakeDecision, retry_after_at_speed
from simulator.core.model import Respond
from simulator.net.wire_server import CloseAtOnce, HandshakeAnswer, Immediate


def is_upgrade(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket (RFC 6455 §4.2.1), before websockets
    checks it in full: anything else is websockets' to answer (426 or 400), and must not
    open a connection upstream nor take a recorded one."""
    headers = request.headers  # a header may be repeated: read every value
    try:
        # As websockets reads them (ServerProtocol.process_request): tokens, not text;
        # and a subprotocol offer it cannot parse is refused too (400). (Extensions it
        # reads only when it has some to offer, which the servers here do not.)
        connection = [c for v in headers.get_all("Connection") for c in parse_connection(v)]
        upgrade = [u for v in headers.get_all("Upgrade") for u in parse_upgrade(v)]
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            parse_subprotocol(value)
    except InvalidHeaderFormat:
        return False
    keys = headers.get_all("Sec-WebSocket-Key")
    return (
        request.method == "GET"
        and request.protocol == "HTTP/1.1"
        and any(option.lower() == "upgrade" for option in connection)
        and len(upgrade) == 1
        and upgrade[0].lower() == "websocket"
        and len(keys) == 1
        and _is_key(keys[0])
        and headers.get_all("Sec-WebSocket-Version") == ["13"]
    )


def _is_key(key: str) -> bool:
    """A Sec-WebSocket-Key as websockets accepts it: 16 bytes in base64 (RFC 6455 §4.1)."""
    try:
        return len(base64.b64decode(key.encode(), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def status_phrase(status: int) -> str:
    """The reason phrase of ``status``; ``Error`` for one http.HTTPStatus does not know."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def refusal(
    status: int,
    extra: Sequence[tuple[str, str]] = (),
    *,
    phrase: str | None = None,
    body: bytes | None = None,
) -> Response:
    """A refusal with ``status``, which may be one http.HTTPStatus does not know (an
    upstream may answer 520 or 499; ``protocol.reject`` takes only known ones), and
    the ``extra`` headers (``Retry-After``, a redirect's ``Location``...). The phrase and
    plain-text body are the status's unless given."""
    phrase = phrase or status_phrase(status)
    body = body or f"{phrase}\n".encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain; charset=utf-8"),
            *extra,
        ]
    )
    return Response(status, phrase, headers, body)


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
    """The answer the fault plan gives this handshake: ``None`` (accept), a refusal,
    either one after the decided delay (scenario time, divided by ``speed``).

    A refusal is an HTTP response with the decided status (and ``Retry-After``), or,
    for a fault with ``respond = "close"``, :class:`CloseAtOnce` with its close code
    and a reason that carries the retry-after (see :func:`close_reason`). Every time
    told to the client is wall time: scenario time divided by ``speed``."""
    refusal: Immediate = None
    if decision.status is not None:
        retry = (
            None
            if decision.retry_after_ns is None
            else retry_after_at_speed(decision.retry_after_ns, speed)
        )
        if decision.respond is Respond.CLOSE:
            assert decision.close_code is not None
            refusal = CloseAtOnce(decision.close_code, close_reason(decision.status, retry))
        else:
            phrase = http.HTTPStatus(decision.status).phrase
            response = protocol.reject(decision.status, f"{phrase}\n")
            if retry is not None:
                response.headers["Retry-After"] = str(retry)
            refusal = response
    if decision.delay_ns:
        # Held in a task of its own: other handshakes go on meanwhile.
        return _after(decision.delay_ns / 1e9 / speed, refusal)
    return refusal


def close_reason(status: int, retry_after_s: int | None) -> str:
    """The reason of a refusal sent as a close frame: ``retry-after=N`` (whole seconds
    of wall time, as ``Retry-After``) when the client is told when to come back, else
    the HTTP status's phrase (``Unauthorized``)."""
    if retry_after_s is not None:
        return f"retry-after={retry_after_s}"
    return http.HTTPStatus(status).phrase


async def _after(delay_s: float, answer: Immediate) -> Immediate:
    await asyncio.sleep(delay_s)
    return answer
