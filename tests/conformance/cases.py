"""RFC 6455 conformance cases, ported from Autobahn|Testsuite's case families 1-7 (its
numbering kept in each case's id; the text says what Autobahn's case sends and expects).

A case is what a client writes (frames, maybe written in small chops), what it must
receive before the close (echoed messages, pongs) and the close code the server must
send. Where Autobahn allows a server to be lenient ("NON-STRICT"), the strict RFC
behaviour is expected: fail fast, and nothing answered after a protocol error.

Family 9 (performance) is left out; "limits" cases (our own, numbered L.x) check the
message size limit that every target is configured with (:data:`MAX_SIZE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.conformance import wsframes as w

#: The message size limit of every target (websockets' default too).
MAX_SIZE = 2**20

NORMAL, GOING_AWAY, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1000, 1001, 1002, 1007, 1009
#: In ``send``: wait for everything the case expects to receive before writing on.
#: Between a message and a frame that fails the connection, it makes the server read
#: them apart: its answer to the message and its close are then both due (see
#: docs/conformance.md for the cases sent without it).
ANSWERED = b""
#: Close code the client sees when the server's close frame has no status (RFC 6455 §7.1.5).
NO_STATUS = 1005

Received = tuple[str, str | bytes]  # ("text", str) | ("binary", bytes) | ("pong", bytes)


@dataclass(frozen=True)
class Case:
    """``send`` is written in order (each item in one write, or in writes of ``chop``
    bytes). Unless ``fails``, the client then closes with 1000 (unless ``send`` closed
    already) and expects ``close``; with ``fails`` it sends nothing more and expects
    the server to close with one of ``close``. ``receive`` is everything the server
    must send before its close frame, in order."""

    id: str
    what: str
    send: tuple[bytes, ...]
    receive: tuple[Received, ...] = ()
    close: frozenset[int] = frozenset({NORMAL})
    fails: bool = False
    chop: int | None = None
    client_closes: bool = field(init=False)

    def __post_init__(self) -> None:
        closes = any(chunk[:1] and (chunk[0] & 0x0F) == w.CLOSE for chunk in self.send)
        object.__setattr__(self, "client_closes", closes or self.fails)


def fail(code: int = PROTOCOL_ERROR) -> dict[str, object]:
    return {"fails": True, "close": frozenset({code})}


CASES: list[Case] = []


def case(id: str, what: str, *send: bytes, **kwargs: object) -> None:
    CASES.append(Case(id, what, tuple(send), **kwargs))  # type: ignore[arg-type]


# ---------------------------------------------------------------- 1. framing

for n, (length, chop) in enumerate(
    [
        (0, None),
        (125, None),
        (126, None),
        (127, None),
        (128, None),
        (65535, None),
        (65536, None),
        (65536, 997),
    ],
    start=1,
):
    payload = "*" * length
    case(
        f"1.1.{n}",
        f"text of {length} bytes" + (f", written in {chop}-byte chops" if chop else ""),
        w.text(payload),
        receive=(("text", payload),),
        chop=chop,
    )
    data = b"\xfe" * length
    case(
        f"1.2.{n}",
        f"binary of {length} bytes" + (f", written in {chop}-byte chops" if chop else ""),
        w.binary(data),
        receive=(("binary", data),),
        chop=chop,
    )

# ---------------------------------------------------------------- 2. pings and pongs

case("2.1", "ping without payload: pong", w.ping(), receive=(("pong", b""),))
case(
    "2.2",
    "ping with text payload: pong echoes it",
    w.ping(b"Hello, world!"),
    receive=(("pong", b"Hello, world!"),),
)
case(
    "2.3",
    "ping with binary payload",
    w.ping(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),
    receive=(("pong", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),),
)
case(
    "2.4", "ping of 125 bytes (the most)", w.ping(b"\xfe" * 125), receive=(("pong", b"\xfe" * 125),)
)
case("2.5", "ping of 126 bytes: control frames carry at most 125", w.ping(b"\xfe" * 126), **fail())
case(
    "2.6",
    "ping of 125 bytes written in 1-byte chops",
    w.ping(b"\xfe" * 125),
    receive=(("pong", b"\xfe" * 125),),
    chop=1,
)
case("2.7", "unsolicited pong without payload: nothing", w.pong())
case("2.8", "unsolicited pong with payload: nothing", w.pong(b"unsolicited pong payload"))
case(
    "2.9",
    "unsolicited pong, then ping: only the ping's pong",
    w.pong(b"unsolicited pong payload"),
    w.ping(b"ping payload"),
    receive=(("pong", b"ping payload"),),
)
case(
    "2.10",
    "10 pings: 10 pongs",
    *(w.ping(b"payload-%d" % k) for k in range(10)),
    receive=tuple(("pong", b"payload-%d" % k) for k in range(10)),
)
case(
    "2.11",
    "10 pings in 1-byte chops: 10 pongs",
    b"".join(w.ping(b"payload-%d" % k) for k in range(10)),
    receive=tuple(("pong", b"payload-%d" % k) for k in range(10)),
    chop=1,
)

# ---------------------------------------------------------------- 3. reserved bits

case("3.1", "text with RSV1 (no extension negotiated)", w.text("Hello, world!", rsv=4), **fail())
case(
    "3.2",
    "text, text with RSV2, ping: echo, then fail (no pong)",
    w.text("Hello, world!"),
    ANSWERED,
    w.text("Hello, world!", rsv=2),
    w.ping(b"Hello, world!"),
    receive=(("text", "Hello, world!"),),
    **fail(),
)
case(
    "3.3",
    "the same, in one write",
    w.text("Hello, world!") + w.text("Hello, world!", rsv=3) + w.ping(b"Hello, world!"),
    receive=(("text", "Hello, world!"),),
    **fail(),
)
case(
    "3.4",
    "the same, in 1-byte chops",
    w.text("Hello, world!") + w.text("Hello, world!", rsv=4) + w.ping(b"Hello, world!"),
    receive=(("text", "Hello, world!"),),
    chop=1,
    **fail(),
)
case("3.5", "binary with RSV1 and RSV3", w.frame(w.BINARY, b"\xff" * 8, rsv=5), **fail())
case("3.6", "ping with RSV1, RSV2", w.ping(b"Hello, world!", rsv=6), **fail())
case("3.7", "close with all three RSV bits", w.close(NORMAL, rsv=7), **fail())

# ---------------------------------------------------------------- 4. reserved opcodes

for n, opcode in enumerate([3, 4, 5, 6, 7], start=1):
    case(
        f"4.1.{n}",
        f"non-control reserved opcode {opcode}, after a text: echo then fail",
        w.text("Hello, world!"),
        ANSWERED,
        w.frame(opcode, b"reserved"),
        w.ping(b"Hello, world!"),
        receive=(("text", "Hello, world!"),),
        **fail(),
    )
for n, opcode in enumerate([11, 12, 13, 14, 15], start=1):
    case(
        f"4.2.{n}",
        f"control reserved opcode {opcode}, after a text: echo then fail",
        w.text("Hello, world!"),
        ANSWERED,
        w.frame(opcode, b"reserved"),
        w.ping(b"Hello, world!"),
        receive=(("text", "Hello, world!"),),
        **fail(),
    )

# ---------------------------------------------------------------- 5. fragmentation

case(
    "5.1",
    "ping in 2 fragments: control frames must not be fragmented",
    w.ping(b"fragment1", fin=False),
    w.cont(b"fragment2"),
    **fail(),
)
case("5.2", "pong in 2 fragments", w.pong(b"fragment1", fin=False), w.cont(b"fragment2"), **fail())
case(
    "5.3",
    "text in 2 fragments",
    w.text("fragment1", fin=False),
    w.cont("fragment2"),
    receive=(("text", "fragment1fragment2"),),
)
case(
    "5.4",
    "text in 2 fragments, in 1-byte chops",
    w.text("fragment1", fin=False) + w.cont("fragment2"),
    receive=(("text", "fragment1fragment2"),),
    chop=1,
)
case(
    "5.6",
    "text in 2 fragments with a ping between: pong, then the echo",
    w.text("fragment1", fin=False),
    w.ping(b"pongme!"),
    w.cont("fragment2"),
    receive=(("pong", b"pongme!"), ("text", "fragment1fragment2")),
)
case(
    "5.8",
    "the same, in 1-byte chops",
    w.text("fragment1", fin=False) + w.ping(b"pongme!") + w.cont("fragment2"),
    receive=(("pong", b"pongme!"), ("text", "fragment1fragment2")),
    chop=1,
)
case(
    "5.9",
    "a final continuation with nothing to continue",
    w.cont("non-continuation payload"),
    w.text("Hello, world!"),
    **fail(),
)
case(
    "5.12",
    "a continuation (not final) with nothing to continue",
    w.cont("non-continuation payload", fin=False),
    w.text("Hello, world!"),
    **fail(),
)
case(
    "5.15",
    "text in 2 fragments, then a continuation with nothing to continue",
    w.text("fragment1", fin=False)
    + w.cont("fragment2")
    + w.cont("fragment3", fin=False)
    + w.text("fragment4"),
    receive=(("text", "fragment1fragment2"),),
    **fail(),
)
case(
    "5.18",
    "text in 2 fragments, both with the text opcode",
    w.text("fragment1", fin=False),
    w.text("fragment2"),
    **fail(),
)
case(
    "5.19",
    "text in 5 fragments, a ping after the 1st and the 3rd",
    w.text("fragment1", fin=False),
    w.ping(b"pongme 1!"),
    w.cont("fragment2", fin=False),
    w.cont("fragment3", fin=False),
    w.ping(b"pongme 2!"),
    w.cont("fragment4", fin=False),
    w.cont("fragment5"),
    receive=(
        ("pong", b"pongme 1!"),
        ("pong", b"pongme 2!"),
        ("text", "fragment1fragment2fragment3fragment4fragment5"),
    ),
)

# ---------------------------------------------------------------- 6. UTF-8

HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()
case("6.1.1", "empty text", w.text(b""), receive=(("text", ""),))
case(
    "6.1.2",
    "empty text in 3 empty fragments",
    w.text(b"", fin=False),
    w.cont(b"", fin=False),
    w.cont(b""),
    receive=(("text", ""),),
)
case(
    "6.1.3",
    "text of 3 fragments, the first and last empty",
    w.text(b"", fin=False),
    w.cont("middle frame payload", fin=False),
    w.cont(b""),
    receive=(("text", "middle frame payload"),),
)
case("6.2.1", "valid UTF-8 in one frame", w.text(HELLO), receive=(("text", HELLO.decode()),))
case(
    "6.2.2",
    "valid UTF-8 in 2 fragments, split in a code point",
    w.text(HELLO[:7], fin=False),
    w.cont(HELLO[7:]),
    receive=(("text", HELLO.decode()),),
)
case(
    "6.2.3",
    "valid UTF-8, one byte a fragment",
    w.text(HELLO[:1], fin=False),
    *(w.cont(HELLO[k : k + 1], fin=False) for k in range(1, len(HELLO) - 1)),
    w.cont(HELLO[-1:]),
    receive=(("text", HELLO.decode()),),
)
case(
    "6.2.4",
    "valid UTF-8, 4-byte code points, one byte a fragment",
    w.text("𝄞".encode()[:1], fin=False),
    w.cont("𝄞".encode()[1:2], fin=False),
    w.cont("𝄞".encode()[2:3], fin=False),
    w.cont("𝄞".encode()[3:]),
    receive=(("text", "𝄞"),),
)
INVALID = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"  # a surrogate (6.3.1)
case(
    "6.3.1",
    "invalid UTF-8 (a UTF-16 surrogate) in one frame",
    w.text(INVALID),
    **fail(INVALID_DATA),
)
case(
    "6.3.2",
    "the same, one byte a fragment",
    w.text(INVALID[:1], fin=False),
    *(w.cont(INVALID[k : k + 1], fin=False) for k in range(1, len(INVALID) - 1)),
    w.cont(INVALID[-1:]),
    **fail(INVALID_DATA),
)
# Fail fast (6.4.x): the rest of the message is never sent, so a server that checks
# UTF-8 only when the message is complete never closes: the case times out and fails.
case(
    "6.4.1",
    "fail fast: a valid fragment, then one that makes it invalid (the rest never comes)",
    w.text("κόσμε".encode(), fin=False),
    w.cont(b"\xf4\x90\x80\x80", fin=False),
    **fail(INVALID_DATA),
)
case(
    "6.4.2",
    "fail fast: a fragment ending in a lead byte, then one byte that makes it invalid",
    w.text(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", fin=False),
    w.cont(b"\x90", fin=False),
    **fail(INVALID_DATA),
)
case(
    "6.4.3",
    "fail fast: invalid in the middle of a fragment, one byte chops",
    w.text(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", fin=False)
    + w.cont(b"\xf4\x90\x80\x80", fin=False),
    chop=1,
    **fail(INVALID_DATA),
)
VALID_SEQUENCES = {
    "6.5.1": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",  # κόσμε
    "6.6.11": "𝄞".encode(),
    "6.7.1": b"\x00",
    "6.7.4": b"\xf0\x90\x80\x80",  # U+10000
    "6.8.2": b"\xf4\x8f\xbf\xbf",  # U+10FFFF, the last code point
    "6.11.5": b"\xef\xbf\xbf",  # U+FFFF (a noncharacter, but valid UTF-8)
}
for id, data in VALID_SEQUENCES.items():
    case(id, f"valid UTF-8 {data!r}: echoed", w.text(data), receive=(("text", data.decode()),))
INVALID_SEQUENCES = {
    "6.8.1": b"\xf8\x88\x80\x80\x80",  # a 5-byte sequence
    "6.9.1": b"\xf4\x90\x80\x80",  # above U+10FFFF
    "6.10.1": b"\x80",  # a lone continuation byte
    "6.12.1": b"\xbf",
    "6.14.1": b"\xc0",  # a lead byte and nothing after
    "6.14.3": b"\xe0\x80",  # truncated
    "6.17.1": b"\xc0\xaf",  # overlong "/"
    "6.18.1": b"\xed\xa0\x80",  # a surrogate
    "6.21.1": b"\xed\xa0\x80\xed\xb0\x80",  # a surrogate pair, encoded as UTF-8
    "6.22.1": b"\xfe",
}
for id, data in INVALID_SEQUENCES.items():
    case(id, f"invalid UTF-8 {data!r}: closed with 1007", w.text(data), **fail(INVALID_DATA))

# ---------------------------------------------------------------- 7. close handling

case(
    "7.1.1",
    "text, then close: echo, then the close answered",
    w.text("Hello World!"),
    w.close(NORMAL),
    receive=(("text", "Hello World!"),),
)
case("7.1.2", "close twice: one close back", w.close(NORMAL), w.close(NORMAL))
case("7.1.3", "close, then a ping: no pong", w.close(NORMAL), w.ping(b"ping after close"))
case("7.1.4", "close, then a text: not echoed", w.close(NORMAL), w.text("text after close"))
case(
    "7.1.5",
    "a fragment, close, then the last fragment: no echo",
    w.text("fragment1", fin=False),
    w.close(NORMAL),
    w.cont("fragment2"),
)
case(
    "7.3.1",
    "close without payload: a close without status back",
    w.close(),
    close=frozenset({NO_STATUS}),
)
case("7.3.2", "close with a 1-byte payload: a code needs 2", w.frame(w.CLOSE, b"\x03"), **fail())
case("7.3.3", "close 1000 without reason", w.close(NORMAL))
case("7.3.4", "close 1000 with a reason", w.close(NORMAL, b"Hello World!"))
case("7.3.5", "close 1000 with a reason of 123 bytes (the most)", w.close(NORMAL, b"*" * 123))
case(
    "7.3.6",
    "close with a reason of 124 bytes: a control frame of 126",
    w.close(NORMAL, b"*" * 124),
    **fail(),
)
case(
    "7.5.1",
    "close with an invalid UTF-8 reason",
    w.close(
        NORMAL, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
    ),
    **fail(INVALID_DATA),
)
# 1012-1014 were registered with IANA after Autobahn was written: valid now.
VALID_CODES = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    3999,
    4000,
    4999,
]
for n, code in enumerate(VALID_CODES, start=1):
    case(f"7.7.{n}", f"close {code}: echoed", w.close(code), close=frozenset({code}))
# 1005, 1006 and 1015 must never be sent (RFC 6455 §7.4.1); below 1000 is not used;
# 1016-2999 are reserved for the protocol, unassigned; 5000 and up do not exist.
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
for n, code in enumerate(INVALID_CODES, start=1):
    case(f"7.9.{n}", f"close {code}: invalid, closed with 1002", w.close(code), **fail())

# ---------------------------------------------------------------- limits (ours)

case(
    "L.1",
    f"a text of {MAX_SIZE} bytes (the limit): echoed",
    w.text("*" * MAX_SIZE),
    receive=(("text", "*" * MAX_SIZE),),
)
case(
    "L.2",
    f"a text of {MAX_SIZE + 1} bytes: closed with 1009",
    w.text("*" * (MAX_SIZE + 1)),
    **fail(TOO_BIG),
)
case(
    "L.3",
    "a message over the limit in 2 fragments: closed with 1009",
    w.text("*" * (MAX_SIZE // 2), fin=False),
    w.cont("*" * (MAX_SIZE // 2 + 1)),
    **fail(TOO_BIG),
)
