"""What `sim replay` sends on one connection: a recorded connection turned into steps.

Pure: rows in, steps out; no clock, no socket, no polars. :mod:`simulator.net.replay`
turns a recording's frame into :class:`Row` values and pumps the steps.

The steps keep the recorded order of everything the server sent. A server message with
no stream (a reply such as ``pong`` or ``subscribed``) that comes after a client
message, before any server message with a stream, answers that client message: it
becomes :class:`ExpectClient` + :class:`Reply`, and is sent only once the client has
sent the same message, ``delay_ns`` after it. Every other server message is a
:class:`Push` at its recorded offset from the connection's open. Because the steps run
in order, a reply, and everything recorded after it, waits for the message it answers::

    open  0 ms
    push  10 ms  {"type":"tick","n":1}         Push(at_ns=10 ms)
    client 12 ms {"type":"ping","id":1}         ExpectClient({"type":"ping","id":1})
    reply 12.1 ms {"type":"pong","id":1}        Reply(delay_ns=0.1 ms)
    push  30 ms  {"type":"tick","n":2}         Push(at_ns=30 ms)
    close 40 ms  1001 by the server             Close(at_ns=40 ms, 1001, "going away")
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from simulator.core.jsonvalues import MISSING, json_equal, json_key, parse
from simulator.errors import UsageError


class Frame(enum.StrEnum):
    """The WebSocket data frame a message travels in."""

    TEXT = "text"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class Row:
    """One recorded event of one connection, as the recording format has it.

    ``sender`` is ``"server"`` or ``"client"``; ``kind`` is the recording's kind
    (``open``, ``text``, ``binary``, ``close``; other kinds are skipped).
    """

    t_ns: int
    sender: str
    kind: str
    stream: str | None = None
    payload: bytes | None = None
    close_code: int | None = None
    close_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Push:
    """Send ``payload`` at ``at_ns`` (already scaled by speed) after the connection opened.
    ``stream`` is the recorded one (``None`` when the recording has none)."""

    at_ns: int
    payload: bytes
    frame: Frame = Frame.TEXT
    stream: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectClient:
    """Wait until the client has sent this message (the ``index``-th expected one)."""

    index: int
    payload: bytes
    frame: Frame = Frame.TEXT


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``payload`` ``delay_ns`` (scaled) after expected message ``answers`` arrived."""

    answers: int
    delay_ns: int
    payload: bytes
    frame: Frame = Frame.TEXT


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection at ``at_ns`` (scaled) with the recorded code and reason."""

    at_ns: int
    code: int
    reason: str


Step: TypeAlias = Push | ExpectClient | Reply | Close


@dataclass(frozen=True, slots=True)
class Refusal:
    """The recorded server refused the opening handshake with HTTP ``status``, telling
    the client to come back after ``retry_after_s`` seconds (as recorded: not scaled)
    when it said so in seconds."""

    status: int
    retry_after_s: int | None = None
    #: Where a redirect (3xx) sent the client, as recorded (redacted, if it was).
    location: str | None = None


# A dict lookup: calling the enum costs about 1 µs a row, a third of planning.
_FRAMES = {f.value: f for f in Frame}


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps of one connection, in order. ``duration_ns`` (scaled) is the offset of
    the last recorded event: where a looping replay starts over. ``subprotocol`` is the
    one the recorded server chose (as recorded: a token is ``[redacted]``), if any.
    ``refused``: the handshake was refused, and there are no steps."""

    steps: tuple[Step, ...]
    duration_ns: int
    subprotocol: str | None = None
    refused: Refusal | None = None

    @property
    def expected(self) -> tuple[ExpectClient, ...]:
        return tuple(s for s in self.steps if isinstance(s, ExpectClient))


def check_speed(speed: float | None) -> None:
    """Raise :class:`UsageError` unless ``speed`` is ``None`` (as fast as possible) or > 0."""
    if speed is not None and not speed > 0:
        raise UsageError(f"speed={speed!r}: must be > 0 (or None for as fast as possible)")


def plan_connection(rows: Iterable[Row], speed: float | None = 1.0, *, gated: bool = True) -> Plan:
    """The steps that replay one recorded connection, given its rows in ``seq`` order.

    Times are offsets from the ``open`` row (the first row when there is none), divided
    by ``speed``; ``speed=None`` makes every offset and delay 0. An ``open`` row whose
    handshake has a ``status`` (the recording proxy's upstream refused it) makes a plan
    that is :attr:`Plan.refused`, whatever follows (its ``error`` and ``close`` rows say
    the same). Rows after the first ``close`` are ignored; a close sent by the client is
    not a step (the replay waits for its client to close). With ``gated=False`` nothing
    waits for the client: client messages are no steps, and every server message is a
    push at its offset.
    """
    builder = PlanBuilder(speed, gated=gated)
    for row in rows:
        builder.add(row)
    return builder.plan()


class PlanBuilder:
    """:func:`plan_connection` one row at a time, for rows that arrive in batches (a
    recording read a slice at a time, its connections interleaved)."""

    __slots__ = (
        "_answering",
        "_closed",
        "_expectations",
        "_gated",
        "_last",
        "_origin",
        "_refused",
        "_speed",
        "_steps",
        "_subprotocol",
    )

    def __init__(self, speed: float | None = 1.0, *, gated: bool = True) -> None:
        check_speed(speed)
        self._speed = speed
        self._gated = gated
        self._steps: list[Step] = []
        self._origin: int | None = None
        self._last = 0
        # The client message that null-stream server messages answer, while one does.
        self._answering: tuple[int, int] | None = None  # (expectation index, its t_ns)
        self._expectations = 0
        self._closed = False
        self._subprotocol: str | None = None
        self._refused: Refusal | None = None

    def _scale(self, ns: int) -> int:
        return 0 if self._speed is None else max(0, round(ns / self._speed))

    def add(self, row: Row) -> None:
        """The connection's next row (in ``seq`` order)."""
        if self._closed:
            return
        if self._origin is None:
            self._origin = row.t_ns
        if row.kind == "open":
            handshake = parse(row.payload or b"")
            if isinstance(handshake, dict):
                self._handshake(handshake)
            return
        if row.kind not in ("text", "binary", "close"):
            return  # ping/pong frames are the library's; faults and errors are notes
        offset = row.t_ns - self._origin
        self._last = max(self._last, offset)
        steps = self._steps
        if row.kind == "close":
            if row.sender == "server":
                code = 1000 if row.close_code is None else row.close_code
                steps.append(Close(self._scale(offset), code, row.close_reason or ""))
            self._closed = True
            return
        frame = _FRAMES[row.kind]
        payload = row.payload or b""
        if not self._gated:
            if row.sender == "server":
                steps.append(Push(self._scale(offset), payload, frame, row.stream))
            return
        if row.sender == "client":
            self._answering = (self._expectations, row.t_ns)
            steps.append(ExpectClient(self._expectations, payload, frame))
            self._expectations += 1
        elif row.stream is None and self._answering is not None:
            index, at = self._answering
            steps.append(Reply(index, self._scale(row.t_ns - at), payload, frame))
        else:
            self._answering = None
            steps.append(Push(self._scale(offset), payload, frame, row.stream))

    def _handshake(self, handshake: dict[str, object]) -> None:
        """What the ``open`` row says of the handshake: the subprotocol chosen, or that it
        was refused (then nothing else of the connection is replayed)."""
        if isinstance(handshake.get("subprotocol"), str):
            self._subprotocol = str(handshake["subprotocol"])
        status = handshake.get("status")
        # A final status other than 101 (bool is an int to Python, not to JSON).
        if type(status) is int and 200 <= status <= 999:
            headers = handshake.get("response_headers")
            location = _recorded_header(headers, "location") if 300 <= status < 400 else None
            self._refused = Refusal(status, _retry_after_s(headers), location)
            self._closed = True

    def plan(self) -> Plan:
        return Plan(tuple(self._steps), self._scale(self._last), self._subprotocol, self._refused)


def _retry_after_s(headers: object) -> int | None:
    """The seconds of a ``Retry-After`` among recorded ``[name, value]`` pairs, if any.
    One given as a date is left out: it names a moment of the recorded session, long
    gone by the time of a replay."""
    value = (_recorded_header(headers, "retry-after") or "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _recorded_header(headers: object, name: str) -> str | None:
    """The first value of header ``name`` (lower case) among recorded ``[name, value]``
    pairs, if any."""
    if not isinstance(headers, list):
        return None
    for pair in headers:
        if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == name:
            return str(pair[1])
    return None


def same_message(expected: ExpectClient, payload: bytes, frame: Frame) -> bool:
    """Whether a client message is the recorded one: equal as JSON values when both parse
    (so key order and spacing do not matter, and ``true`` is not ``1``), else equal bytes."""
    if frame is not expected.frame:
        return False
    if payload == expected.payload:
        return True
    if frame is Frame.BINARY:
        return False
    want, got = parse(expected.payload), parse(payload)
    if want is MISSING or got is MISSING:
        return False
    return json_equal(want, got)


def match(
    expected: tuple[ExpectClient, ...], matched: set[int], payload: bytes, frame: Frame
) -> int | None:
    """The index of the earliest not-yet-``matched`` expectation this message is, if any.

    The caller adds the index to ``matched``; ``None`` means the message was not expected.
    """
    for e in expected:
        if e.index not in matched and same_message(e, payload, frame):
            return e.index
    return None


def stream_of(step: Push | Reply) -> str:
    """The stream a server message belongs to, for fault targeting: the recorded one,
    else the ``type`` of a JSON object message (a proxy records no streams), else ``""``."""
    if isinstance(step, Push) and step.stream is not None:
        return step.stream
    if step.frame is Frame.TEXT:
        doc = parse(step.payload)
        if isinstance(doc, dict) and isinstance(doc.get("type"), str):
            return str(doc["type"])
    return ""


def message_key(payload: bytes, frame: Frame) -> Hashable:
    """What :func:`same_message` compares, as a dict key: two messages of the same frame
    type have equal keys exactly when they are the same message."""
    if frame is Frame.TEXT:
        value = parse(payload)
        if value is not MISSING:
            try:
                return ("json", json_key(value))
            except RecursionError:
                pass  # too deep to compare as JSON here: compared as bytes
    return (frame.value, payload)


class ExpectedIndex:
    """A recorded connection's expected client messages, found by :func:`message_key`:
    :meth:`match` does what :func:`match` does, in constant time, however many there are.

    Build it once per recorded connection; each client keeps its own ``cursors`` (a
    dict, empty at the start of each round).
    """

    __slots__ = ("_by_key",)

    def __init__(self, expected: Sequence[ExpectClient]) -> None:
        self._by_key: dict[Hashable, list[int]] = {}
        for e in expected:
            self._by_key.setdefault(message_key(e.payload, e.frame), []).append(e.index)

    def match(self, cursors: dict[Hashable, int], payload: bytes, frame: Frame) -> int | None:
        """The earliest expectation this message is that ``cursors`` has not used yet
        (and use it), or ``None`` when it was not expected (or not again)."""
        key = message_key(payload, frame)
        found = self._by_key.get(key)
        if found is None:
            return None
        used = cursors.get(key, 0)
        if used == len(found):
            return None
        cursors[key] = used + 1
        return found[used]
