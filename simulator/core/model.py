"""The scenario model: plain, immutable values that the TOML loader builds and the
timeline compiler reads.

Nothing here parses or validates text (that is :mod:`simulator.scenario`), and
nothing here draws random numbers (that is :mod:`simulator.core.values` and
:mod:`simulator.core.schedules`). Times are integer nanoseconds from the start of the
scenario (or, in per-connection mode, from the connection's start).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from simulator.core.expr import Expr, VType
from simulator.core.live import LiveKind

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"


class Mode(enum.Enum):
    """How timelines map to connections."""

    BROADCAST = "broadcast"  # one shared timeline; late joiners see it from now on
    PER_CONNECTION = "per-connection"  # a timeline per connection, from its connect time


class Timing(enum.Enum):
    """How the live server waits for a message's scheduled time."""

    #: Sleep on the event loop's timer (millisecond granularity) and send, in one pass,
    #: what falls due up to 0.8 ms after the wake-up (so a message may leave up to 0.8 ms
    #: early, and seldom more than that late): the CPU sleeps between sends.
    EFFICIENT = "efficient"
    #: Sleep to within a millisecond, then yield until the exact time: sub-millisecond
    #: timing, at the cost of a busy core for the last millisecond before every send.
    PRECISE = "precise"


class SlowConsumerPolicy(enum.Enum):
    """What the server does when a client's send buffer is full."""

    DROP_OLDEST = "drop-oldest"
    CLOSE = "close"  # close with 1013 (try again later)


# ----------------------------------------------------------------------------- schedules


@dataclass(frozen=True, slots=True)
class Every:
    """A message every ``interval_ns``."""

    interval_ns: int


@dataclass(frozen=True, slots=True)
class UniformInterval:
    """Intervals drawn uniformly from ``[min_ns, max_ns]``."""

    min_ns: int
    max_ns: int


@dataclass(frozen=True, slots=True)
class Poisson:
    """Poisson arrivals: exponential intervals with mean ``1 / rate_per_s``."""

    rate_per_s: float


@dataclass(frozen=True, slots=True)
class At:
    """Messages at explicit offsets; with ``repeat_ns`` the pattern repeats every period."""

    offsets_ns: tuple[int, ...]
    repeat_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Burst:
    """``count`` messages ``spacing_ns`` apart, a burst every ``every_ns``."""

    count: int
    spacing_ns: int
    every_ns: int


Pattern: TypeAlias = Every | UniformInterval | Poisson | At | Burst


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a stream sends: a pattern inside an optional window.

    The first message goes out at ``start_ns + first interval`` (like ``setInterval``)
    unless ``first_ns`` is set; nothing is sent at or after ``stop_ns``.
    ``At`` offsets are taken from ``start_ns`` as they are.
    """

    pattern: Pattern
    start_ns: int = 0
    stop_ns: int | None = None
    first_ns: int | None = None


# ----------------------------------------------------------------------------- fields


class Bounds(enum.Enum):
    """What a draw outside ``[min, max]`` becomes (the ``bounds`` key)."""

    CLIP = "clip"  # the nearest bound: values pile up on it
    REFLECT = "reflect"  # mirrored back inside, as often as needed: nothing piles up


@dataclass(frozen=True, slots=True)
class Numeric:
    """Shared post-processing of numeric draws: bring into ``[min, max]`` (clipped or
    reflected, see :class:`Bounds`), then round.

    ``round_to`` is a number of decimals; ``0`` gives integers. Rounding never steps
    outside the bounds (the last clip is to the rounding grid).
    """

    min: float | None = None
    max: float | None = None
    round_to: int | None = None
    bounds: Bounds | None = None  # None: the distribution's default (walks reflect)


@dataclass(frozen=True, slots=True)
class Const:
    value: JSON


@dataclass(frozen=True, slots=True)
class Uniform:
    low: float
    high: float
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class Normal:
    mean: float
    std: float
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class LogNormal:
    """``exp(N(mu, sigma))``: ``mu`` and ``sigma`` are of the underlying normal."""

    mu: float
    sigma: float
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class Exponential:
    mean: float
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class RandInt:
    """An integer from ``low`` to ``high``, both included."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Choice:
    """One of ``values``; ``weights`` are relative (need not sum to 1)."""

    values: tuple[JSON, ...]
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class Cycle:
    """``values[i % len]`` where ``i`` is the message index (or the item index in a list)."""

    values: tuple[JSON, ...]


@dataclass(frozen=True, slots=True)
class Bool:
    p_true: float = 0.5


@dataclass(frozen=True, slots=True)
class Walk:
    """A random walk: each message adds ``N(0, step)``, pulled towards ``mean`` by
    ``revert`` (0 = none, 1 = all the way each step), kept inside ``[min, max]`` by
    reflection at the bounds (the loader's default for walks), or held on the bound it
    stepped past with ``shape.bounds`` CLIP."""

    start: float
    step: float
    revert: float = 0.0
    mean: float | None = None
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class Counter:
    start: int = 1
    step: int = 1


@dataclass(frozen=True, slots=True)
class Uuid:
    """A version-4 UUID drawn from the seeded generator (reproducible, not unique)."""


class TimeFormat(enum.Enum):
    ISO = "iso"
    EPOCH_MS = "ms"
    EPOCH_S = "s"


@dataclass(frozen=True, slots=True)
class Timestamp:
    """The message's own time (epoch + offset), formatted."""

    format: TimeFormat = TimeFormat.ISO


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``{name}`` references to sibling fields and to ``seq`` and ``index``."""

    text: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Derived:
    """A field computed from its siblings in this message and the stream's previous one.

    ``expr`` reads sibling fields by name and the previous message's values as
    ``prev.<name>`` (see :mod:`simulator.core.expr`); ``type`` is its checked type.
    ``initial`` is the value ``prev.<this field>`` reads in the first message (``None``
    when nothing reads it). In the first message ``prev.<field>`` of any other field
    reads its current value, so a difference starts at 0. Derived fields see each
    other's values after ``min``/``max`` and before ``round``, which applies only to
    what is sent (a running total does not accumulate rounding).
    """

    text: str
    expr: Expr
    type: VType
    initial: float | int | bool | str | None = None
    shape: Numeric = Numeric()


@dataclass(frozen=True, slots=True)
class Live:
    """What the server knows when it sends the message (see :mod:`simulator.core.live`):
    rendered as a placeholder, filled in by the sender."""

    kind: LiveKind


@dataclass(frozen=True, slots=True)
class Spread:
    """A ``choice`` or ``cycle`` of objects, or an object, whose keys are merged into the
    parent object in place of the field (``spread = true``). Every object it can give
    has exactly ``keys``, in that order."""

    inner: Choice | Cycle | Object
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Object:
    fields: tuple[tuple[str, FieldSpec], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys of the objects it makes: its field names, spread ones replaced by
        their keys."""
        out: list[str] = []
        for name, spec in self.fields:
            if isinstance(spec, Spread):
                out.extend(spec.keys)
            else:
                out.append(name)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of ``min_len``..``max_len`` items (fixed when equal), each drawn from ``item``."""

    item: FieldSpec
    min_len: int
    max_len: int


FieldSpec: TypeAlias = (
    Const
    | Uniform
    | Normal
    | LogNormal
    | Exponential
    | RandInt
    | Choice
    | Cycle
    | Bool
    | Walk
    | Counter
    | Uuid
    | Timestamp
    | Template
    | Derived
    | Live
    | Spread
    | Object
    | ListOf
)


# ----------------------------------------------------------------------------- envelope


class Slot(enum.Enum):
    """What an envelope key is filled with."""

    TYPE = "$type"
    SEQ = "$seq"
    TIMESTAMP = "$timestamp"  # ISO 8601, milliseconds, UTC ("Z")
    TIMESTAMP_MS = "$timestamp_ms"
    TIMESTAMP_S = "$timestamp_s"
    DATA = "$data"
    STREAM = "$stream"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer object of every message: keys in order, each a :class:`Slot` or a constant."""

    keys: tuple[tuple[str, Slot | JSON], ...] = (
        ("type", Slot.TYPE),
        ("seq", Slot.SEQ),
        ("timestamp", Slot.TIMESTAMP),
        ("data", Slot.DATA),
    )


# ----------------------------------------------------------------------------- streams


@dataclass(frozen=True, slots=True)
class Stream:
    """One message type on its own schedule. ``type`` is what ``$type`` becomes."""

    name: str
    schedule: Schedule
    fields: Object
    type: str
    envelope: Envelope
    #: Drop this stream's messages later than this (wall ns) instead of sending them
    #: late; ``None`` takes the server's ``max_lateness_ns``.
    max_lateness_ns: int | None = None


# ----------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class Rule:
    """Request/response: a client message whose fields equal ``match`` gets ``reply``.

    ``reply`` is a JSON template: strings may hold ``{request.<key>}`` references to the
    request's top-level fields and ``{now}`` (ISO time); ``delay_ns`` waits before replying.
    """

    name: str
    match: tuple[tuple[str, JSON], ...]
    reply: JSON
    delay_ns: int = 0


@dataclass(frozen=True, slots=True)
class Protocol:
    """What clients may send and what they get back (see ``docs/protocol.md``)."""

    ping_type: str = "ping"
    pong_type: str = "pong"
    subscribe_type: str = "subscribe"
    unsubscribe_type: str = "unsubscribe"
    error_type: str = "error"
    errors: bool = True  # answer bad frames with an error message (else ignore them)
    rules: tuple[Rule, ...] = ()


#: The default ``[server] max_lateness``: past it a feed has fallen behind for good,
#: and an old message would only mislead a client about the present.
DEFAULT_MAX_LATENESS_NS = 1_000_000_000
#: ``max_lateness = "off"``: a lateness no message reaches.
NEVER_LATE_NS = 2**62


@dataclass(frozen=True, slots=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 3002
    mode: Mode = Mode.BROADCAST
    max_connections: int = 1000
    max_frame_bytes: int = 64 * 1024
    send_buffer_bytes: int = 256 * 1024
    slow_consumer: SlowConsumerPolicy = SlowConsumerPolicy.DROP_OLDEST
    keepalive_interval_ns: int = 20_000_000_000
    keepalive_timeout_ns: int = 20_000_000_000
    timing: Timing = Timing.EFFICIENT
    #: A message more than this late (wall ns) when the server gets to it, or a frame
    #: queued for a slow client longer than this, is dropped and counted instead of
    #: sent late (``max_lateness = "off"``: NEVER_LATE_NS).
    max_lateness_ns: int = DEFAULT_MAX_LATENESS_NS
    # What one client may send before it is closed (docs/limits.md); the defaults are
    # simulator.net.wire's and simulator.net.server's constants.
    max_frames_per_s: int = 1000  # frames of any kind, per one-second window (1008)
    max_messages_per_s: int = 200  # messages, sustained (1008)
    message_burst: int = 400  # messages at once
    max_errors_per_s: int = 2  # invalid messages, sustained (1008)
    error_burst: int = 20  # invalid messages at once
    errors_logged: int = 5  # invalid messages logged one by one per connection
    max_handshakes: int = 1000  # connections whose opening request is not in yet
    handshake_timeout_ns: int = 10_000_000_000  # for the opening request to arrive
    #: SO_SNDBUF of each client's socket (0: the OS's own, autotuned up to megabytes).
    #: What the kernel holds can no longer be dropped for lateness, so a small buffer
    #: keeps a client that reads too slowly at most this much behind (see docs/limits.md).
    socket_buffer_bytes: int = 32 * 1024
    #: Subprotocols agreed to when a client offers one (``Sec-WebSocket-Protocol``), in
    #: order of preference; a client offering none is served without one.
    subprotocols: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- faults
#
# A ``[[fault]]`` is what it does (an action, whose class gives its kind), when (a
# FaultSchedule) and to whom (a FaultTarget). The decisions themselves are drawn by
# :mod:`simulator.core.faults`; ``docs/faults.md`` documents every kind.


class FaultLevel(enum.Enum):
    """What a fault acts on."""

    MESSAGE = "message"  # one outgoing message at a time (drop, delay, ...)
    CONNECTION = "connection"  # one connection (disconnect, stall, ...)
    SERVER = "server"  # the whole server (outage, ...)


class FaultKind(enum.Enum):
    """The ``kind`` of a ``[[fault]]``."""

    DROP = "drop"
    DELAY = "delay"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    CORRUPT = "corrupt"
    BURST_LOSS = "burst_loss"
    DISCONNECT = "disconnect"
    RESET = "reset"
    STALL = "stall"
    THROTTLE = "throttle"
    OUTAGE = "outage"
    REJECT = "reject"
    MASS_DISCONNECT = "mass_disconnect"

    @property
    def level(self) -> FaultLevel:
        if self in _MESSAGE_KINDS:
            return FaultLevel.MESSAGE
        if self in _SERVER_KINDS:
            return FaultLevel.SERVER
        return FaultLevel.CONNECTION


_MESSAGE_KINDS = frozenset(
    {
        FaultKind.DROP,
        FaultKind.DELAY,
        FaultKind.DUPLICATE,
        FaultKind.REORDER,
        FaultKind.CORRUPT,
        FaultKind.BURST_LOSS,
    }
)
_SERVER_KINDS = frozenset({FaultKind.OUTAGE, FaultKind.REJECT, FaultKind.MASS_DISCONNECT})


class CorruptMode(enum.Enum):
    INVALID_JSON = "invalid_json"  # no longer parses as JSON
    TRUNCATE = "truncate"  # cut short
    WRONG_TYPES = "wrong_types"  # valid JSON, one value of another type


@dataclass(frozen=True, slots=True)
class FixedLatency:
    ns: int


@dataclass(frozen=True, slots=True)
class UniformLatency:
    min_ns: int
    max_ns: int


@dataclass(frozen=True, slots=True)
class NormalLatency:
    """Normal, clipped at 0."""

    mean_ns: int
    std_ns: int


@dataclass(frozen=True, slots=True)
class ParetoLatency:
    """Pareto (type I): ``scale_ns * (1 - u) ** (-1 / shape)``, clipped at ``max_ns``."""

    scale_ns: int
    shape: float
    max_ns: int | None = None


Latency: TypeAlias = FixedLatency | UniformLatency | NormalLatency | ParetoLatency


@dataclass(frozen=True, slots=True)
class Drop:
    kind: ClassVar[FaultKind] = FaultKind.DROP


@dataclass(frozen=True, slots=True)
class Delay:
    """Send later; with ``keep_order`` a delayed message also holds back those behind it."""

    kind: ClassVar[FaultKind] = FaultKind.DELAY
    latency: Latency
    keep_order: bool = False


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Send ``copies`` extra copies."""

    kind: ClassVar[FaultKind] = FaultKind.DUPLICATE
    copies: int = 1


@dataclass(frozen=True, slots=True)
class Reorder:
    """Hold the message back until ``depth`` later messages of the connection went out."""

    kind: ClassVar[FaultKind] = FaultKind.REORDER
    depth: int = 1


@dataclass(frozen=True, slots=True)
class Corrupt:
    kind: ClassVar[FaultKind] = FaultKind.CORRUPT
    mode: CorruptMode = CorruptMode.INVALID_JSON


@dataclass(frozen=True, slots=True)
class BurstLoss:
    """The Gilbert model: a Good state that loses nothing, a Bad state that loses all.

    ``loss`` is the mean loss rate and ``burst`` the mean length of a run of losses;
    the chain leaves Bad with probability ``1 / burst`` and enters it with probability
    ``loss / (burst * (1 - loss))``, so that its stationary loss rate is ``loss``.
    """

    kind: ClassVar[FaultKind] = FaultKind.BURST_LOSS
    loss: float
    burst: float

    @property
    def enter_bad(self) -> float:
        return min(1.0, self.loss / (self.burst * (1.0 - self.loss)))

    @property
    def leave_bad(self) -> float:
        return 1.0 / self.burst


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection with a close frame."""

    kind: ClassVar[FaultKind] = FaultKind.DISCONNECT
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reset:
    """Drop the TCP connection without a close frame."""

    kind: ClassVar[FaultKind] = FaultKind.RESET


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop sending and stop answering pings, for the schedule's duration (or for good)."""

    kind: ClassVar[FaultKind] = FaultKind.STALL


@dataclass(frozen=True, slots=True)
class Throttle:
    kind: ClassVar[FaultKind] = FaultKind.THROTTLE
    bytes_per_s: float


class Respond(enum.Enum):
    """How a refused handshake is answered (the ``respond`` key of outage and reject)."""

    HTTP = "http"  # an HTTP error response (a browser sees only close 1006)
    CLOSE = "close"  # accept, then close at once with a close code (a browser sees it)


@dataclass(frozen=True, slots=True)
class Outage:
    """Drop every connection and refuse handshakes (503, ``Retry-After``) while it lasts;
    with ``respond`` CLOSE, accept them and close at once with 1013 instead."""

    kind: ClassVar[FaultKind] = FaultKind.OUTAGE
    retry_after_ns: int
    respond: Respond = Respond.HTTP


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse handshakes with ``status`` (then ``delay_ns`` is ``None``), or delay them.

    With ``respond`` CLOSE a refusal accepts the handshake and closes at once with
    ``close_code`` (never ``None`` then: the loader fills in the status's default)."""

    kind: ClassVar[FaultKind] = FaultKind.REJECT
    status: int | None = None
    retry_after_ns: int | None = None
    delay_ns: int | None = None
    respond: Respond = Respond.HTTP
    close_code: int | None = None


@dataclass(frozen=True, slots=True)
class MassDisconnect:
    """Close every connection at once, with a close frame."""

    kind: ClassVar[FaultKind] = FaultKind.MASS_DISCONNECT
    code: int = 1001
    reason: str = ""


FaultAction: TypeAlias = (
    Drop
    | Delay
    | Duplicate
    | Reorder
    | Corrupt
    | BurstLoss
    | Disconnect
    | Reset
    | Stall
    | Throttle
    | Outage
    | Reject
    | MassDisconnect
)


@dataclass(frozen=True, slots=True)
class FaultAt:
    t_ns: int


@dataclass(frozen=True, slots=True)
class FaultEvery:
    """At ``interval_ns``, ``2 * interval_ns``, ..."""

    interval_ns: int


@dataclass(frozen=True, slots=True)
class FaultWindow:
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class FaultPoisson:
    """Exponential intervals with mean ``mean_ns``."""

    mean_ns: int


Trigger: TypeAlias = FaultAt | FaultEvery | FaultWindow | FaultPoisson


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """When a fault happens, in scenario time (ns since the server started).

    ``trigger`` ``None`` means always (message level) or at connect (connection level).
    ``duration_ns`` is how long each occurrence lasts (``None``: until the window ends,
    or for good). ``limit`` caps occurrences (rejected handshakes for ``reject``).
    """

    trigger: Trigger | None = None
    duration_ns: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionList:
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConnectionFraction:
    """Each connection is in with probability ``fraction`` (drawn per connection)."""

    fraction: float


@dataclass(frozen=True, slots=True)
class ConnectionEvery:
    """Every ``n``-th connection: indexes ``n - 1``, ``2n - 1``, ..."""

    n: int


Connections: TypeAlias = ConnectionList | ConnectionFraction | ConnectionEvery


@dataclass(frozen=True, slots=True)
class FaultTarget:
    """Who a fault hits. ``streams`` empty means all; ``match`` paths are split on dots."""

    streams: tuple[str, ...] = ()
    connections: Connections | None = None
    after_connections: int = 0
    probability: float = 1.0
    every_nth: int | None = None
    match: tuple[tuple[tuple[str, ...], JSON], ...] = ()


@dataclass(frozen=True, slots=True)
class Fault:
    """One ``[[fault]]``: its name seeds its draws, so names are unique in a scenario."""

    name: str
    action: FaultAction
    schedule: FaultSchedule = FaultSchedule()
    target: FaultTarget = FaultTarget()

    @property
    def kind(self) -> FaultKind:
        return self.action.kind

    @property
    def level(self) -> FaultLevel:
        return self.action.kind.level


# ----------------------------------------------------------------------------- scenario


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario file, validated. ``source`` names the file it came from."""

    name: str
    seed: int
    streams: tuple[Stream, ...]
    description: str = ""
    epoch_ns: int | None = None  # Unix ns of virtual time 0, if the file fixes it
    duration_ns: int | None = None
    server: Server = field(default_factory=Server)
    protocol: Protocol = field(default_factory=Protocol)
    source: str = "<scenario>"
    faults: tuple[Fault, ...] = ()

    @property
    def has_live(self) -> bool:
        """Whether any message carries a live value (which its sender must fill in)."""
        return bool(self.live_kinds)

    @property
    def live_kinds(self) -> frozenset[LiveKind]:
        """The live values its messages carry."""
        return frozenset(k for s in self.streams for k in _live_kinds(s.fields))

    def stream(self, name: str) -> Stream:
        """Return the stream called ``name``; raises :class:`KeyError` if there is none."""
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)


def _live_kinds(spec: FieldSpec) -> list[LiveKind]:
    if isinstance(spec, Live):
        return [spec.kind]
    if isinstance(spec, Object):
        return [k for _, child in spec.fields for k in _live_kinds(child)]
    if isinstance(spec, Spread):
        return _live_kinds(spec.inner)
    if isinstance(spec, ListOf):
        return _live_kinds(spec.item)
    return []
