"""Frames as an RFC 6455 client puts them on the wire, built by hand: conformance cases
send what no library lets you send (reserved bits and opcodes, control frames of 126
bytes or fragmented, close payloads of one byte).

Each frame is masked with a random key, as a client must (RFC 6455 §5.3).
"""

from __future__ import annotations

import os
import struct

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked frame; ``rsv`` is the three reserved bits (RSV1 = 4, RSV2 = 2, RSV3 = 1)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def text(data: str | bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    return frame(TEXT, data.encode() if isinstance(data, str) else data, fin=fin, rsv=rsv)


def binary(data: bytes, *, fin: bool = True) -> bytes:
    return frame(BINARY, data, fin=fin)


def cont(data: str | bytes = b"", *, fin: bool = True) -> bytes:
    return frame(CONT, data.encode() if isinstance(data, str) else data, fin=fin)


def ping(data: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    return frame(PING, data, fin=fin, rsv=rsv)


def pong(data: bytes = b"", *, fin: bool = True) -> bytes:
    return frame(PONG, data, fin=fin)


def close(code: int | None = None, reason: bytes = b"", *, rsv: int = 0) -> bytes:
    """A close frame: no payload without ``code``, else the code and ``reason``."""
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload, rsv=rsv)
