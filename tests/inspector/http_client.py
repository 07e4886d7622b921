"""A small HTTP/1.1 client for the inspector tests, on h11 over asyncio streams: whole
answers (:func:`request`) and Server-Sent Events (:class:`EventReader`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _request_bytes(
    conn: h11.Connection, method: str, path: str, host: str, body: bytes, headers: dict[str, str]
) -> bytes:
    named = {k.lower() for k in headers}
    fields = [
        *([] if "host" in named else [("Host", host)]),
        ("Content-Length", str(len(body))),
        *headers.items(),
    ]
    data = conn.send(h11.Request(method=method, target=path, headers=fields))
    if body:
        data += conn.send(h11.Data(data=body))
    return data + conn.send(h11.EndOfMessage())


async def request(
    url: str,
    method: str,
    path: str,
    *,
    json_body: object = None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Answer:
    """Send one request to the server at ``url`` (ws:// or http://) and read the answer
    (status 0: the server closed the connection without one)."""
    host, port = host_port(url)
    sent_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        sent_headers.setdefault("Content-Type", "application/json")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(_request_bytes(conn, method, path, f"{host}:{port}", body, sent_headers))
        status, response_headers, content = 0, {}, bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return Answer(0, {}, b"")  # closed with no answer at all (status 0)
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return Answer(status, response_headers, bytes(content))
    finally:
        writer.close()


class EventReader:
    """A subscriber of ``/events``: :meth:`next` returns ``(event, data)`` pairs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.CLIENT)
        self._buffer = b""
        self.status = 0

    @classmethod
    async def open(cls, url: str, path: str = "/events") -> EventReader:
        host, port = host_port(url)
        reader, writer = await asyncio.open_connection(host, port)
        self = cls(reader, writer)
        writer.write(_request_bytes(self._conn, "GET", path, f"{host}:{port}", b"", {}))
        return self

    async def next(self) -> tuple[str, Any]:
        while b"\n\n" not in self._buffer:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._reader.read(65536)
                if not data:
                    raise EOFError("the event stream ended")
                self._conn.receive_data(data)
            elif isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise EOFError("the event stream ended")
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        return fields[b"event"].decode(), json.loads(fields[b"data"])

    async def until(self, kind: str, predicate: Any = lambda data: True) -> Any:
        """The data of the next ``kind`` event for which ``predicate`` holds."""
        while True:
            event, data = await self.next()
            if event == kind and predicate(data):
                return data

    def close(self) -> None:
        self._writer.close()
