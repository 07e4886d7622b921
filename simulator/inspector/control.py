"""The control endpoint: faults on demand, over HTTP, on top of any scenario.

``POST /control/faults`` takes one fault table as JSON (the keys of a ``[[fault]]``
TOML table), checks it with the scenario reader's own rules and carries it out now;
``POST /control/disconnect`` closes all connections or one. docs/inspector.md documents
both. A refusal is a JSON 400 naming the key, what was found and what is allowed; a
request that names only connections that are not open is a 404 naming them (nothing
was done).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson

from simulator.core.model import ConnectionList, Disconnect, FaultKind
from simulator.inspector.http import HttpRequest, HttpResponse, error_response, json_response
from simulator.inspector.views import View
from simulator.net.on_demand import NOW_KINDS
from simulator.scenario.faults import build_faults, fault_keys
from simulator.scenario.lines import LineIndex
from simulator.scenario.messages import unknown
from simulator.scenario.reader import Context

#: The code ``/control/disconnect`` closes with by default: 1012 (service restart), a
#: close after which a client is expected to reconnect.
DEFAULT_DISCONNECT_CODE = 1012
#: The status a ``reject`` given with neither ``status`` nor ``delay`` refuses with: 503
#: (Service Unavailable), the answer of a server that is there but will not take you now.
DEFAULT_REJECT_STATUS = 503
#: The longest fault name a control request may give.
MAX_NAME_CHARS = 100
_TRIGGERS = ("at", "every", "window", "poisson")
_SCHEDULED = (*_TRIGGERS, "limit")  # what a fault carried out now cannot have
_NOW_KIND_NAMES = [k.value for k in NOW_KINDS]


def is_loopback(peer: str | None) -> bool:
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback


def _local_host(host: str | None) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost`` or a loopback
    address, with any port (none: an HTTP/1.0 client on this machine)."""
    if host is None:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)


def refusal(request: HttpRequest, allow_remote: bool) -> HttpResponse | None:
    """Why a control request may not be carried out, or ``None``: a peer that is not on
    this machine (unless ``allow_remote``), a body that is not declared JSON (a browser
    page of another site could send a form, but not JSON, without asking first), a
    request from another site's page (its ``Origin``), a ``Host`` that does not name
    this machine (a page on a domain rebound to 127.0.0.1 is of its own origin, so only
    the Host it sends tells it apart)."""
    if not allow_remote and not is_loopback(request.peer):
        return error_response(
            403,
            f"control requests are accepted from loopback addresses only (this came from"
            f" {request.peer}); start sim with --control-from-any to allow others",
        )
    if not allow_remote and not _local_host(request.headers.get("host")):
        return error_response(
            403,
            f"Host {request.headers.get('host')}: control requests must name this machine"
            " (localhost, 127.0.0.1 or [::1]); start sim with --control-from-any to allow"
            " others",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.body and content_type != "application/json":
        return error_response(
            415, f"Content-Type {content_type or '(none)'}: send application/json"
        )
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if origin is not None and host is not None and origin.split("://", 1)[-1] != host:
        return error_response(403, f"Origin {origin} is not this server ({host})")
    return None


def _body(request: HttpRequest) -> tuple[object, HttpResponse | None]:
    if not request.body.strip():
        return {}, None
    try:
        return orjson.loads(request.body), None
    except orjson.JSONDecodeError as e:
        return None, error_response(400, f"body is not JSON: {e}")


#: ``found`` of a refusal when the key is absent (``None`` is a JSON null that was sent).
_ABSENT: Any = object()


def _bad(key: str, message: str, found: object = _ABSENT, allowed: object = None) -> HttpResponse:
    """A 400 naming ``key``, what was ``found`` there (left out when it is absent) and
    what is ``allowed`` (when there is a list)."""
    extra: dict[str, Any] = {"key": key}
    if found is not _ABSENT:
        extra["found"] = found
    if allowed is not None:
        extra["allowed"] = allowed
    return error_response(400, message, **extra)


def _not_open(key: str, found: object, indexes: list[int]) -> HttpResponse:
    """The 404 for a request naming only connections that are not open (``indexes``):
    nothing was done."""
    many = "s" if len(indexes) > 1 else ""
    listed = ", ".join(map(str, indexes))
    return error_response(404, f"no open connection{many} {listed}", key=key, found=found)


def _problems(ctx: Context, sent: dict[str, Any]) -> HttpResponse:
    """The 400 for what the fault reader refused (``ctx.problems``) in the table
    ``sent``: the first one's ``key`` at the top with, as in every 400, what ``sent`` had
    there as ``found`` (the reader's own quote for a key inside a value, such as
    ``connections[2]``); all of them in ``problems``, as the reader words them."""
    problems = [
        {
            "key": p.path.removeprefix("fault[0]").lstrip("."),
            "message": p.message,
            **({"found": p.found} if p.found is not None else {}),
        }
        for p in ctx.problems
    ]
    first: dict[str, Any] = problems[0] if problems else {"key": "", "message": "invalid fault"}
    key = first["key"]
    found = sent[key] if key in sent else first.get("found", _ABSENT)
    extra = {} if found is _ABSENT else {"found": found}
    return error_response(400, first["message"], key=key, **extra, problems=problems)


def trigger_fault(view: View, request: HttpRequest) -> HttpResponse:
    """``POST /control/faults``."""
    on_demand = view.on_demand
    if on_demand is None:
        return error_response(404, "this server takes no faults on demand")
    table, failed = _body(request)
    if failed is not None:
        return failed
    if not isinstance(table, dict):
        return _bad("", "the body must be one fault table: a JSON object", type(table).__name__)
    kind = table.get("kind")
    if kind is not None and kind not in _NOW_KIND_NAMES:
        planned_only = kind in [k.value for k in FaultKind]
        return _bad(
            "kind",
            f"kind {kind!r} acts on messages as a plan schedules them: put it in the scenario"
            " (or a --faults file); these can be triggered now"
            if planned_only
            else f"unknown kind: one of {', '.join(_NOW_KIND_NAMES)} can be triggered now",
            kind,
            _NOW_KIND_NAMES,
        )
    for key in _TRIGGERS:
        if key in table:
            return _bad(
                key,
                "the control endpoint carries a fault out now: leave out at, every, window"
                " and poisson (a schedule belongs in the scenario)",
                table[key],
            )
    if "limit" in table:
        return _bad("limit", "not for a fault carried out now (it happens once)", table["limit"])
    # Keys no fault has: suggested from what a fault carried out now may have (the
    # scenario reader's list would offer the schedule keys refused above).
    kinds = NOW_KINDS if kind is None else (FaultKind(kind),)
    allowed = [
        k for k in dict.fromkeys(k for c in kinds for k in fault_keys(c)) if k not in _SCHEDULED
    ]
    strays = [k for k in table if not any(k in fault_keys(c) for c in FaultKind)]
    if strays:
        return _bad(strays[0], unknown("key", strays[0], allowed), table[strays[0]], allowed)
    name = table.get("name")
    if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
        # It is logged, recorded and sent to every page: a name, not a payload.
        return _bad("name", f"at most {MAX_NAME_CHARS} characters", f"{name[:20]}...")
    if kind in ("outage", "reject") and "duration" not in table:
        return _bad("duration", f"required for {kind} on demand: how long handshakes are refused")
    if kind == "reject" and "status" not in table and "delay" not in table:
        # A scenario's reject must name one; on demand, "refuse for a while" is the
        # usual ask, so it has a default (docs/inspector.md).
        table = {**table, "status": DEFAULT_REJECT_STATUS}
    # Checked as the scenario reader checks a [[fault]] table, as if it were due now.
    ctx = Context("POST /control/faults", LineIndex(""))
    faults = build_faults(ctx, [{"name": "control", **table, "at": "0s"}], view.stream_names)
    if ctx.problems or not faults:
        return _problems(ctx, table)
    fault = faults[0]
    chosen = fault.target.connections
    if chosen is not None and not isinstance(chosen, ConnectionList):
        return _bad(
            "connections",
            "on demand, connections is a list of connection indices",
            table.get("connections"),
        )
    # Named connections that are gone: none open is a 404 (nothing would happen, and a
    # 200 would say it did); some open, the fault hits those and the answer names the rest.
    named = () if chosen is None else chosen.indexes
    not_open = on_demand.not_open(named)
    if named and len(not_open) == len(set(named)):
        return _not_open("connections", table.get("connections"), not_open)
    hit = on_demand.trigger(fault)
    answer: dict[str, Any] = {
        "triggered": fault.kind.value,
        "fault": fault.name,
        "connections": hit,
    }
    if not_open:
        answer["not_open"] = not_open
    return json_response(200, answer)


def disconnect(view: View, request: HttpRequest) -> HttpResponse:
    """``POST /control/disconnect``: ``{"conn": N}`` (absent or null: all), ``"code"``
    (default 1012) and ``"reason"``, checked as a ``disconnect`` fault's are."""
    on_demand = view.on_demand
    if on_demand is None:
        return error_response(404, "this server takes no faults on demand")
    body, failed = _body(request)
    if failed is not None:
        return failed
    if not isinstance(body, dict):
        return _bad("", "the body must be a JSON object", type(body).__name__)
    allowed = ["conn", "code", "reason"]
    strays = sorted(set(body) - set(allowed))
    if strays:
        return _bad(strays[0], unknown("key", strays[0], allowed), body[strays[0]], allowed)
    conn = body.get("conn")
    if conn is not None and (isinstance(conn, bool) or not isinstance(conn, int) or conn < 0):
        return _bad("conn", "must be a connection index (an integer >= 0), or null for all", conn)
    table = {
        "kind": "disconnect",
        "code": body.get("code", DEFAULT_DISCONNECT_CODE),
        "reason": body.get("reason", ""),
        "at": "0s",
    }
    ctx = Context("POST /control/disconnect", LineIndex(""))
    faults = build_faults(ctx, [table], view.stream_names)
    if ctx.problems or not faults:
        return _problems(ctx, body)
    action = faults[0].action
    assert isinstance(action, Disconnect)
    code = action.code
    if conn is not None and on_demand.not_open((conn,)):
        return _not_open("conn", conn, [conn])
    hit = on_demand.disconnect(None if conn is None else [conn], code, action.reason)
    return json_response(200, {"disconnected": hit, "code": code})
