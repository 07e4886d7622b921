"""Runs one conformance case: a real TCP connection and opening handshake (websockets'
sans-I/O client), then the case's hand-built frames, then what the server sent back."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode

from tests.conformance import wsframes as w
from tests.conformance.cases import ANSWERED, NORMAL, Case, Received
from tests.e2e.attackers import open_raw

#: How long a case waits for what it expects (a bound, not a figure: a server that never
#: answers or never closes fails the case).
WAIT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    received: tuple[Received, ...]  # messages and pongs before the server's close
    close: int | None  # the server's close code (None: no close frame came)


@dataclass
class _Reader:
    """What the server sends: messages (fragments joined) and pongs, up to its close."""

    reader: asyncio.StreamReader
    protocol: ClientProtocol
    received: list[Received] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    kind: str = ""

    async def until(self, done: int | None) -> None:
        """Read until ``done`` messages and pongs have come (``None``: until the
        server's close frame), the connection ends, or WAIT_S has passed."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(WAIT_S):
                while self.protocol.close_rcvd is None:
                    if done is not None and len(self.received) >= done:
                        return
                    data = await self.reader.read(65536)
                    if not data:
                        return
                    self.protocol.receive_data(data)
                    for event in self.protocol.events_received():
                        if isinstance(event, Frame):
                            self._frame(event)

    def _frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            self.received.append(("pong", bytes(frame.data)))
        elif frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if frame.opcode is not Opcode.CONT:
                self.kind = "text" if frame.opcode is Opcode.TEXT else "binary"
            self.parts.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self.parts)
                self.parts = []
                self.received.append((self.kind, data.decode() if self.kind == "text" else data))


async def run_case(url: str, case: Case) -> Outcome:
    """Send the case's frames; unless the case closes (or fails the connection), wait
    for what it expects and close with 1000, as Autobahn's client does."""
    raw = await open_raw(url)
    read = _Reader(raw.reader, raw.protocol)
    try:
        for chunk in case.send:
            if chunk == ANSWERED:
                await read.until(len(case.receive))
                continue
            step = case.chop or len(chunk) or 1
            for k in range(0, len(chunk), step):
                raw.writer.write(chunk[k : k + step])
                await raw.writer.drain()
        if not case.client_closes:
            await read.until(len(case.receive))
            raw.writer.write(w.close(NORMAL))
        await read.until(None)
    finally:
        raw.close()
    rcvd = raw.protocol.close_rcvd
    return Outcome(tuple(read.received), None if rcvd is None else rcvd.code)
