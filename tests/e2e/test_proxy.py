"""`sim record --upstream`: a recording proxy between a real client and a real server,
all on 127.0.0.1. The upstream here is a plain websockets server that remembers what it
was asked for and sent."""

from __future__ import annotations

import asyncio
import contextlib
import http
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import polars as pl
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from simulator.core.redact import Redactor
from simulator.net import proxy as proxy_module
from simulator.net.log import EventKind
from simulator.net.proxy import record_proxy, upstream_url
from simulator.net.replay import replay
from simulator.net.server import serve as serve_sim
from simulator.storage.analysis import diff, inspect
from simulator.storage.reader import read_recording
from tests.e2e import attackers
from tests.e2e.conftest import async_test, client, close_code, recorded_text, scenario

DATA = Path(__file__).resolve().parents[1] / "data"
SECRET = "s3cr3t-t0ken-value"


@dataclass
class Upstream:
    """What the upstream saw: each handshake's path and headers, each message."""

    url: str = ""
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def upstream(
    *,
    greet: list[str | bytes] | None = None,
    tls: bool = False,
    refuse: int | None = None,
    redirect: str | None = None,
) -> AsyncIterator[Upstream]:
    """A server that sends ``greet``, then echoes each message as ``echo:<message>``
    (JSON objects as ``{"echo": <object>}``, bytes as they are); ``close <code>
    <reason>`` makes it close, ``close-without-status`` send a close frame with no
    status (1005 at the peer), ``drop`` drop the socket."""
    seen = Upstream()

    def on_request(connection: ServerConnection, request: Request) -> Response | None:
        seen.paths.append(request.path)
        seen.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        if refuse is not None:
            # Built by hand: respond() takes only statuses http.HTTPStatus knows.
            headers = Headers([("Retry-After", "9"), ("Content-Length", "8")])
            return Response(refuse, "Refused", headers, b"go away\n")
        if redirect is not None:
            response = connection.respond(http.HTTPStatus.FOUND, "moved\n")
            response.headers["Location"] = redirect
            return response
        return None

    async def handler(ws: ServerConnection) -> None:
        for message in greet or []:
            await ws.send(message)
            if message == "close-now":  # a server that closes right after sending
                await ws.close(4003, "done")
                return
        try:
            async for message in ws:
                seen.received.append(message)
                if isinstance(message, str) and message.startswith("close "):
                    _, code, reason = message.split(" ", 2)
                    await ws.close(int(code), reason)
                elif message == "drop":
                    ws.transport.abort()
                elif message == "close-without-status":  # which websockets cannot send
                    ws.transport.write(b"\x88\x00")
                elif isinstance(message, bytes):
                    await ws.send(message)
                elif message.startswith("{"):
                    await ws.send(orjson.dumps({"echo": orjson.loads(message)}).decode())
                else:
                    await ws.send("echo:" + message)
        except ConnectionClosed:
            pass
        seen.closes.append((ws.close_code, ws.close_reason))

    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(DATA / "localhost-cert.pem", DATA / "localhost-key.pem")
    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=on_request,
        select_subprotocol=lambda _, offered: next(
            (Subprotocol(p) for p in ("feed.v2", "feed.v1") if p in offered), None
        ),
        ssl=context,
        close_timeout=1,  # it stops reading once it has closed: do not wait 10 s for it
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        seen.url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/base"
        yield seen


def rows(path: Path) -> pl.DataFrame:
    return read_recording(path).frame.sort("seq")


def messages(frame: pl.DataFrame) -> list[tuple[str, str, bytes]]:
    m = frame.filter(pl.col("kind").cast(pl.String).is_in(["text", "binary"]))
    return [
        (str(s), str(k), bytes(p)) for s, k, p in m.select("sender", "kind", "payload").iter_rows()
    ]


def test_the_clients_path_and_query_follow_the_upstreams() -> None:
    assert upstream_url("ws://h:1/base", "/feed?x=1") == "ws://h:1/base/feed?x=1"
    assert upstream_url("ws://h:1/base/?k=v", "/?x=1") == "ws://h:1/base/?k=v&x=1"
    assert upstream_url("wss://h", "/") == "wss://h/"


@async_test(timeout=30)
async def test_messages_relay_both_ways_with_path_headers_and_subprotocol(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    async with upstream(greet=["hello", b"\x00\x01"]) as up, record_proxy(up.url, out) as proxy:
        ws = await client(
            proxy.url + "/prices?depth=5&token=" + SECRET,
            subprotocols=["feed.v1"],
            additional_headers={"Authorization": f"Bearer {SECRET}", "X-Desk": "power"},
        )
        assert ws.subprotocol == "feed.v1"
        assert [await ws.recv(), await ws.recv()] == ["hello", b"\x00\x01"]
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"
        await ws.send(b"\xff\xfe")
        assert await ws.recv() == b"\xff\xfe"
        await ws.close()
    assert up.paths == [f"/base/prices?depth=5&token={SECRET}"]
    assert up.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert up.headers[0]["x-desk"] == "power"
    assert up.received == ["hi", b"\xff\xfe"]
    assert up.closes == [(1000, "")]
    frame = rows(out)
    assert messages(frame) == [
        ("server", "text", b"hello"),
        ("server", "binary", b"\x00\x01"),
        ("client", "text", b"hi"),
        ("server", "text", b"echo:hi"),
        ("client", "binary", b"\xff\xfe"),
        ("server", "binary", b"\xff\xfe"),
    ]
    opened = orjson.loads(frame.filter(pl.col("kind") == "open")["payload"][0])
    assert opened["subprotocol"] == "feed.v1"
    assert opened["path"].startswith("/prices?depth=5&token=")
    assert ["X-Desk", "power"] in opened["request_headers"]
    closes = frame.filter(pl.col("kind") == "close")
    assert closes.select("sender", "close_code").rows() == [("client", 1000)]
    # Replayed, the same client is answered with the subprotocol it was (a browser
    # refuses an answer without the one it asked for).
    async with replay(out, speed=None) as replayed:
        ws = await client(replayed.url, subprotocols=["feed.v1"])
        assert ws.subprotocol == "feed.v1"
        assert [await ws.recv(), await ws.recv()] == ["hello", b"\x00\x01"]
        await ws.close()


@async_test(timeout=30)
async def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    """Authorization, cookies and token query parameters are not in the file's bytes;
    a --redact field is hashed with the key, the same value to the same hash."""
    out = tmp_path / "s.parquet"
    redactor = Redactor.from_specs(["$..token"], key=b"k" * 32)
    async with (
        upstream() as up,
        record_proxy(up.url, out, redact=redactor.redact, redaction=redactor.describe()) as proxy,
    ):
        ws = await client(
            proxy.url + f"/?access_token={SECRET}",
            additional_headers={"Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}"},
        )
        login = orjson.dumps({"type": "login", "auth": {"token": SECRET}}).decode()
        await ws.send(login)
        echo = orjson.loads(await ws.recv())
        assert echo["echo"]["auth"]["token"] == SECRET  # the upstream got the real message
        await ws.close()
    assert SECRET not in recorded_text(out)
    sent, echoed = messages(rows(out))
    hashed = orjson.loads(sent[2])["auth"]["token"]
    assert hashed.startswith("hmac-sha256:")
    assert orjson.loads(echoed[2])["echo"]["auth"]["token"] == hashed


@async_test(timeout=30)
async def test_a_subprotocol_token_the_upstream_echoes_never_reaches_the_file(
    tmp_path: Path,
) -> None:
    """``access_token, <token>`` offered: an upstream that picks the token (its answer
    alone does not look like one), or an offer spread over two header lines (a label
    on one, the token on the next): neither the chosen name, the response header nor
    the request's lines keep the token."""

    async def echo(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    def picks(wanted: str) -> object:
        return lambda _, offered: Subprotocol(wanted) if wanted in offered else None

    for i, (chosen, offer) in enumerate(
        [
            (SECRET, {"subprotocols": [Subprotocol("access_token"), Subprotocol(SECRET)]}),
            (
                "access_token",
                {  # websockets writes its own line first, then this one
                    "subprotocols": [Subprotocol("access_token")],
                    "additional_headers": [("Sec-WebSocket-Protocol", SECRET)],
                },
            ),
        ]
    ):
        out = tmp_path / f"p{i}.parquet"
        async with serve(echo, "127.0.0.1", 0, select_subprotocol=picks(chosen)) as up:
            port = next(iter(up.sockets)).getsockname()[1]
            async with record_proxy(f"ws://127.0.0.1:{port}", out) as proxy:
                ws = await client(proxy.url, **offer)
                assert ws.subprotocol == chosen  # the client got the real answer
                assert await ws.recv() == "hello"
                await ws.close()
        assert SECRET not in recorded_text(out), chosen


@async_test(timeout=30)
async def test_close_codes_and_reasons_pass_through_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        ws = await client(proxy.url)
        await ws.send("close 4001 market closed")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4001, "market closed")
        ws = await client(proxy.url)
        await ws.close(4002, "client done")
        while len(up.closes) < 2:  # the upstream's side of it ends a moment later
            await asyncio.sleep(0.01)
    assert up.closes == [(4001, "market closed"), (4002, "client done")]
    closes = rows(out).filter(pl.col("kind") == "close")
    assert closes.select("conn", "sender", "close_code", "close_reason").rows() == [
        (0, "server", 4001, "market closed"),
        (1, "client", 4002, "client done"),
    ]


@async_test(timeout=30)
async def test_a_close_without_a_status_passes_through_and_replays_as_one(tmp_path: Path) -> None:
    """An upstream's close frame with no status code (1005 at the client): the proxy
    passed it on as 1000, and the replay dropped the socket (1006)."""
    out = tmp_path / "n.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        ws = await client(proxy.url)
        await ws.send("close-without-status")
        assert await close_code(ws) == 1005
    closes = rows(out).filter(pl.col("kind") == "close")
    assert closes.select("sender", "close_code").rows() == [("server", 1005)]
    async with replay(out, speed=None) as replayed:
        ws = await client(replayed.url)
        await ws.send("close-without-status")
        assert await close_code(ws) == 1005
        assert ws.protocol.close_rcvd is not None  # a close frame, not a dropped socket


@async_test(timeout=30)
async def test_an_upstream_that_drops_the_socket_drops_the_clients(tmp_path: Path) -> None:
    async with upstream() as up, record_proxy(up.url, tmp_path / "d.parquet") as proxy:
        ws = await client(proxy.url)
        await ws.send("drop")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1006


@async_test(timeout=30)
async def test_upstream_failures_reach_the_client_as_http_statuses(tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    async with upstream(refuse=401) as up, record_proxy(up.url, out) as proxy:
        with pytest.raises(InvalidStatus) as refused:
            await client(proxy.url)
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["Retry-After"] == "9"
        assert proxy.rejected == 1
    # Nothing listens on the port of a server that has stopped: connection refused.
    async with record_proxy(up.url, tmp_path / "g.parquet") as proxy:
        with pytest.raises(InvalidStatus) as refused:
            await client(proxy.url)
        assert refused.value.response.status_code == 502
    errors = rows(out).filter(pl.col("kind") == "error")
    assert errors.height == 1 and b"401" in errors["payload"][0]
    summary = inspect(out)
    assert summary.error_count == 1 and "401" in summary.errors[0][1]


@async_test(timeout=30)
async def test_a_refusal_recorded_by_the_proxy_is_replayed_with_its_status_and_retry_after(
    tmp_path: Path,
) -> None:
    """What a client of the proxy got from a refusing upstream (503, Retry-After: 9) a
    client of the replay gets too: the status, and the wait in wall seconds at the
    replay's speed (9 s of the recording are 3 s at --speed 3)."""
    out = tmp_path / "refused.parquet"
    async with upstream(refuse=503) as up, record_proxy(up.url, out) as proxy:
        with pytest.raises(InvalidStatus):
            await client(proxy.url)
    for speed, retry_after in ((1.0, "9"), (3.0, "3")):
        async with replay(out, speed=speed) as server:
            with pytest.raises(InvalidStatus) as refused:
                await client(server.url)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == retry_after


@async_test(timeout=30)
async def test_a_redirect_recorded_by_the_proxy_is_replayed_with_where_it_sent() -> None:
    """A replayed 3xx without its Location is no redirect at all: it says where, as
    recorded (a token in it redacted). Read raw: a client would follow it (and this
    test talks to 127.0.0.1 only)."""
    where = "ws://elsewhere.example/feed?token=" + SECRET
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "moved.parquet"
        async with upstream(redirect=where) as up, record_proxy(up.url, out) as proxy:
            assert (await answer_head(proxy.url)).startswith("HTTP/1.1 302 ")
        async with replay(out, speed=None) as server:
            head = await answer_head(server.url)
    assert head.startswith("HTTP/1.1 302 ")
    [location] = [line for line in head.splitlines() if line.lower().startswith("location:")]
    assert location.split(":", 1)[1].strip().startswith("ws://elsewhere.example/feed?token=")
    assert SECRET not in location


async def answer_head(url: str) -> str:
    """The head of the answer to a WebSocket handshake request for ``url``."""
    host, port = url.removeprefix("ws://").split("/")[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    return head.decode()


@async_test(timeout=30)
async def test_a_wss_upstream_is_verified_with_the_given_ca(tmp_path: Path) -> None:
    trusted = ssl.create_default_context(cafile=DATA / "localhost-cert.pem")
    async with upstream(greet=["over tls"], tls=True) as up:
        async with record_proxy(up.url, tmp_path / "t.parquet", ssl_context=trusted) as proxy:
            ws = await client(proxy.url)
            assert await ws.recv() == "over tls"
            await ws.close()
        # Without the CA, the upstream's certificate is not trusted: 502, and why.
        async with record_proxy(up.url, tmp_path / "u.parquet") as proxy:
            with pytest.raises(InvalidStatus) as refused:
                await client(proxy.url)
            assert refused.value.response.status_code == 502
    errors = rows(tmp_path / "u.parquet").filter(pl.col("kind") == "error")
    assert b"CERTIFICATE_VERIFY_FAILED" in errors["payload"][0]


@async_test(timeout=30)
async def test_a_clients_ping_is_relayed_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "ping.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        ws = await client(proxy.url)
        await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        await ws.send("fence")  # the upstream echoes it after the relayed ping's pong
        await ws.recv()
        await ws.close()
    control = rows(out).filter(pl.col("kind").cast(pl.String).is_in(["ping", "pong"]))
    assert control.select("sender", "kind", "payload").rows() == [
        ("client", "ping", b"are you there"),
        ("server", "pong", b"are you there"),
    ]


FEED = """
[scenario]
name = "proxied"
seed = 5

[server]
mode = "per-connection"

[[stream]]
name = "tick"
every = "10ms"
[stream.fields]
n = { dist = "counter" }

[[fault]]
kind = "disconnect"
code = 4000
reason = "session over"
at = "200ms"
"""


async def session_through(url: str, out: Path) -> None:
    """A client of a proxy to ``url`` pings, then reads until the server closes."""
    async with record_proxy(url, out) as proxy:
        ws = await client(proxy.url)
        await ws.send('{"type":"ping","id":1}')
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 4000
        for _ in range(200):
            if not proxy.connections:
                break
            await asyncio.sleep(0.01)


@async_test(timeout=60)
async def test_record_replay_record_gives_the_same_messages(tmp_path: Path) -> None:
    """A live session recorded through the proxy, replayed, and recorded again through
    the proxy: `sim diff` finds the two recordings' message sequences identical."""
    first, second = tmp_path / "first.parquet", tmp_path / "second.parquet"
    async with serve_sim(scenario(FEED), port=0) as live:
        await session_through(live.url, first)
    async with replay(first, speed=None) as replayed:
        await session_through(replayed.url, second)
    result = diff(first, second, ignore_timing=True)
    assert result.equivalent, result
    assert len(messages(rows(first))) >= 10


@async_test(timeout=30)
async def test_replay_with_the_key_matches_client_messages_whose_fields_were_hashed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "login.parquet"
    key = b"a shared redaction key"
    redactor = Redactor.from_specs(["$..token"], key=key)
    login = orjson.dumps({"type": "login", "token": SECRET}).decode()
    async with (
        upstream() as up,
        record_proxy(up.url, out, redact=redactor.redact, redaction=redactor.describe()) as proxy,
    ):
        ws = await client(proxy.url)
        await ws.send(login)
        await ws.recv()
        await ws.close()
    assert SECRET not in recorded_text(out)
    async with replay(out, speed=None, redact_key=key) as replayed:
        ws = await client(replayed.url)
        await ws.send(login)
        echo = orjson.loads(await ws.recv())  # the reply waited for the matching login
        assert echo["echo"]["type"] == "login"
        await ws.send(orjson.dumps({"type": "login", "token": "another"}).decode())
        for _ in range(500):
            if replayed.unexpected:
                break
            await asyncio.sleep(0.01)
        await ws.close()
        assert [orjson.loads(u.payload)["token"] for u in replayed.unexpected] == ["another"]
    async with replay(out, speed=None) as keyless:
        warnings = [e.detail["message"] for e in keyless.log.records if e.kind.value == "warning"]
        assert any("redacted with a key" in w for w in warnings)
    async with replay(out, speed=None, redact_key=b"a key for other recordings") as wrong:
        warnings = [e.detail["message"] for e in wrong.log.records if e.kind.value == "warning"]
        assert any("not the one the recording was made with" in w for w in warnings)


@async_test(timeout=30)
async def test_past_max_connections_handshakes_get_503(tmp_path: Path) -> None:
    async with (
        upstream() as up,
        record_proxy(up.url, tmp_path / "m.parquet", max_connections=1) as proxy,
    ):
        first = await client(proxy.url)
        with pytest.raises(InvalidStatus) as refused:
            await client(proxy.url)
        assert refused.value.response.status_code == 503
        assert proxy.rejected == 1  # the status's rejected, as sim run counts its own
        await first.close()


@async_test(timeout=30)
async def test_a_client_gone_during_its_handshake_leaves_no_upstream_open(tmp_path: Path) -> None:
    async with upstream() as up, record_proxy(up.url, tmp_path / "g.parquet") as proxy:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        writer.transport.abort()  # gone before the proxy could answer
        for _ in range(500):
            if up.closes:
                break
            await asyncio.sleep(0.01)
        assert up.closes == [(1006, "")]
    recorded = rows(tmp_path / "g.parquet")
    assert recorded.select("kind", "close_code").rows() == [("open", None), ("close", 1006)]


@async_test(timeout=30)
async def test_a_close_from_the_upstream_reaches_a_client_that_is_still_sending(
    tmp_path: Path,
) -> None:
    """The upstream closes while the client's messages are still in flight towards it:
    the client gets the upstream's code and reason, and the recording says so."""
    out = tmp_path / "busy.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        ws = await client(proxy.url)
        await ws.send("close 4001 market closed")
        with pytest.raises(ConnectionClosed):
            for _ in range(10_000):
                await ws.send("x" * 100)
            await ws.recv()
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (4001, "market closed")
    closes = rows(out).filter(pl.col("kind") == "close")
    assert closes.select("sender", "close_code", "close_reason").rows() == [
        ("server", 4001, "market closed")
    ]


@async_test(timeout=30)
async def test_the_close_is_recorded_when_it_comes_not_once_both_legs_are_gone(
    tmp_path: Path,
) -> None:
    """The upstream closes; the client pings before it answers the close, then does.
    The close row comes before that ping's: it is the session's end, and a replay
    closes then, not when the proxy's legs were finally gone (which a slow client or
    upstream makes seconds later)."""
    out = tmp_path / "when.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        raw = await attackers.open_raw(proxy.url)
        await raw.send(attackers.frame(Opcode.TEXT, b"close 4001 market closed"))
        protocol = raw.protocol
        while protocol.close_rcvd is None:  # read, without answering the close yet
            protocol.receive_data(await raw.reader.read(4096))
        await raw.send(attackers.frame(Opcode.PING, b"after the close"))
        assert await raw.close_code(timeout=5) == 4001  # answers it now
        raw.close()
    recorded = rows(out).filter(pl.col("kind").cast(pl.String).is_in(["text", "ping", "close"]))
    assert recorded.select("sender", "kind", "payload").rows() == [
        ("client", "text", b"close 4001 market closed"),
        ("server", "close", None),
        ("client", "ping", b"after the close"),
    ]


TICKS = scenario(
    """
    [scenario]
    name = "ticks"
    [[stream]]
    name = "tick"
    every = "10ms"
    [stream.fields]
    n = { dist = "counter", start = 1 }
    """
)


@async_test(timeout=30)
async def test_a_client_the_proxy_fails_ends_the_session_then_not_at_its_close_timeout(
    tmp_path: Path,
) -> None:
    """A client over its frame budget is failed with 1008 and never answers the close:
    the session ends there (the close row, the upstream closed), not when the proxy
    drops the silent client 2 s later, with 200 upstream ticks recorded meanwhile that
    it never got."""
    out = tmp_path / "failed.parquet"
    async with (
        serve_sim(TICKS, port=0) as up,
        record_proxy(up.url, out, port=0, max_frames_per_s=100) as proxy,
    ):
        raw = await attackers.open_raw(proxy.url)
        await raw.send(attackers.pings(500))  # then reads nothing, answers no close
        while not up.log.of_kind(EventKind.DISCONNECTED):
            await asyncio.sleep(0.01)
        raw.close()
    recorded = rows(out)
    kinds = [str(k) for k in recorded["kind"]]
    close = kinds.index("close")
    last_ping = max(i for i, k in enumerate(kinds) if k == "ping")
    assert recorded["close_code"][close] == 1008
    # Between the flood and the close row: a tick or two at most (10 ms apart), not
    # the close timeout's worth.
    assert close - last_ping < 20


@async_test(timeout=30)
async def test_what_came_before_a_frame_over_the_limit_in_the_same_read_is_relayed(
    tmp_path: Path,
) -> None:
    """Two messages, then one over max_size, in one write: the two are relayed and
    recorded before the close 1009 (the session's end was told as the read failed, so
    they were recorded after the close row and never relayed)."""
    out = tmp_path / "toobig.parquet"
    async with upstream() as up, record_proxy(up.url, out, max_size=1000) as proxy:
        raw = await attackers.open_raw(proxy.url)
        await raw.send(
            attackers.frame(Opcode.TEXT, b"before-1")
            + attackers.frame(Opcode.TEXT, b"before-2")
            + attackers.frame(Opcode.TEXT, b"x" * 5000)
        )
        assert await raw.close_code(timeout=5) == 1009
        raw.close()
        while len(up.closes) < 1:
            await asyncio.sleep(0.01)
    # (The upstream stops reading when its echo of the first meets the proxy's close.)
    assert up.received[:1] == ["before-1"]
    recorded = rows(out).filter(pl.col("kind").cast(pl.String).is_in(["text", "close"]))
    # Recorded before the close: relayed (after it, a message is recorded, not relayed).
    assert recorded.select("sender", "kind").rows() == [
        ("client", "text"),
        ("client", "text"),
        ("server", "close"),
    ]


@async_test(timeout=30)
async def test_nothing_after_the_frame_that_fails_the_connection_is_relayed(
    tmp_path: Path,
) -> None:
    """A message, invalid UTF-8 (1007), another message, in one write: the one after
    the bad frame is neither relayed nor recorded (RFC 6455 §7.1.7)."""
    out = tmp_path / "after.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        raw = await attackers.open_raw(proxy.url)
        await raw.send(
            attackers.frame(Opcode.TEXT, b"a")
            + attackers.frame(Opcode.TEXT, b"\xff\xfe")
            + attackers.frame(Opcode.TEXT, b"c-after-the-bad-one")
        )
        assert await raw.close_code(timeout=5) == 1007
        raw.close()
        while len(up.closes) < 1:
            await asyncio.sleep(0.01)
    assert "c-after-the-bad-one" not in up.received
    recorded = rows(out).filter(pl.col("kind") == "text")
    assert recorded.select("sender", "payload").rows()[:1] == [("client", b"a")]
    assert b"c-after-the-bad-one" not in recorded["payload"].to_list()


@async_test(timeout=30)
async def test_a_client_dropped_unanswered_leaves_no_upstream_open(tmp_path: Path) -> None:
    """A close frame sent with the request fails the client before its answer: it is
    dropped unanswered, and the upstream opened for it was left open, with its relay,
    until the proxy stopped (one per such client)."""
    async with upstream() as up, record_proxy(up.url, tmp_path / "u.parquet") as proxy:
        host, port = proxy.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                + attackers.frame(Opcode.CLOSE, b"\x03\xe8")
            )
            assert await asyncio.wait_for(reader.read(), 10) == b""  # dropped unanswered
            writer.close()
        for _ in range(200):
            if not proxy._relays and len(up.closes) == len(up.paths):
                break
            await asyncio.sleep(0.05)
        assert len(up.paths) == 3 and len(up.closes) == 3 and not proxy._relays


@async_test(timeout=30)
async def test_a_request_websockets_refuses_after_the_upstream_opened_is_recorded_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind is_upgrade (made to let a POST through here): the client
    gets websockets' 405, the recording says refused with it (not an open connection
    closed 1006), the status counts it, and the upstream opened for it is let go."""
    monkeypatch.setattr(proxy_module, "is_upgrade", lambda request: True)
    out = tmp_path / "post.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        host, port = proxy.url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 405 ")
        writer.close()
        for _ in range(200):
            if not proxy._relays and len(up.closes) == len(up.paths):
                break
            await asyncio.sleep(0.05)
        assert not proxy._relays and proxy.rejected == 1
    [opened] = rows(out).filter(pl.col("kind") == "open")["payload"].to_list()
    assert orjson.loads(opened)["status"] == 405


@async_test(timeout=30)
async def test_an_upstream_redirect_full_of_secrets_leaves_none_in_the_file(
    tmp_path: Path,
) -> None:
    """A redirect is passed on to the client as it is (the client follows it or not);
    the error row names where it led, without the secrets in its Location."""
    out = tmp_path / "redirect.parquet"
    location = f"https://idp.example/login?session={SECRET}&client_secret={SECRET}x"
    async with upstream(redirect=location) as up, record_proxy(up.url, out) as proxy:
        with pytest.raises(InvalidURI):  # websockets follows it, to a non-ws URL
            await client(proxy.url)
    assert SECRET not in recorded_text(out)
    assert b"idp.example" in rows(out).filter(pl.col("kind") == "error")["payload"][0]


@async_test(timeout=30)
async def test_a_status_http_does_not_name_is_passed_on_as_it_is(tmp_path: Path) -> None:
    async with upstream(refuse=520) as up, record_proxy(up.url, tmp_path / "s.parquet") as proxy:
        with pytest.raises(InvalidStatus) as refused:
            await client(proxy.url)
        assert refused.value.response.status_code == 520
        assert refused.value.response.headers["Retry-After"] == "9"


@async_test(timeout=30)
async def test_a_request_that_is_not_a_websocket_handshake_opens_nothing_upstream(
    tmp_path: Path,
) -> None:
    out = tmp_path / "plain.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: k\r\n\r\n")
        status = await reader.readline()
        writer.close()
        assert status.split()[1] in (b"400", b"426")
    assert up.paths == []
    assert rows(out).height == 0


@async_test(timeout=30)
async def test_what_a_side_sent_before_closing_reaches_a_slow_reader(tmp_path: Path) -> None:
    """The upstream sends big messages and closes at once; the client reads slowly. It
    gets every message, then the close: flow control, not a race, decides."""
    big = [("x" * 2_000_000) + str(k) for k in range(10)]
    out = tmp_path / "slow.parquet"
    async with (
        upstream(greet=[*big, "close-now"]) as up,
        record_proxy(up.url, out) as proxy,
    ):
        ws = await client(proxy.url, max_queue=1, max_size=None)
        await asyncio.sleep(0.3)  # let the proxy's sends to this client back up
        got = []
        with pytest.raises(ConnectionClosed):
            while True:
                got.append(await ws.recv())
        assert got == [*big, "close-now"]
        assert ws.close_code == 4003


@async_test(timeout=30)
async def test_stopping_the_proxy_is_recorded_as_the_servers_close(tmp_path: Path) -> None:
    out = tmp_path / "stop.parquet"
    async with upstream() as up, record_proxy(up.url, out) as proxy:
        ws = await client(proxy.url)
    assert (await close_code(ws)) == 1001
    closes = rows(out).filter(pl.col("kind") == "close")
    assert closes.select("sender", "close_code").rows() == [("server", 1001)]


@async_test(timeout=30)
async def test_a_handshake_with_repeated_connection_headers_is_relayed(tmp_path: Path) -> None:
    """`Connection: keep-alive` then `Connection: Upgrade` is a valid handshake."""
    async with upstream() as up, record_proxy(up.url, tmp_path / "h.parquet") as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: keep-alive\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        status = await reader.readline()
        writer.close()
        assert status.split()[1] == b"101"


@async_test(timeout=30)
async def test_stopping_the_proxy_does_not_wait_for_a_client_that_reads_nothing(
    tmp_path: Path,
) -> None:
    """websockets' close first waits for room in the socket: with a client that reads
    nothing that is forever, so the proxy's stop drops it after its close timeout."""
    async with upstream(greet=["x" * 1_000_000] * 20) as up:
        proxy_block = record_proxy(up.url, tmp_path / "stuck.parquet")
        proxy = await proxy_block.__aenter__()
        ws = await client(proxy.url, max_queue=1, max_size=None)
        while proxy.connections < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the proxy's sends to it back up
        await proxy_block.__aexit__(None, None, None)  # returns: the test would time out
        assert proxy.connections == 0
        ws.transport.abort()


@async_test(timeout=30)
async def test_a_drop_is_passed_on_after_what_was_already_relayed(tmp_path: Path) -> None:
    """The client sends 30 messages and drops its connection; the upstream, reading
    slowly while it sends too, still gets all 30 (a reset would have discarded the ones
    in its kernel's buffer), then the drop."""
    received: list[str | bytes] = []

    async def slow_upstream(ws: ServerConnection) -> None:
        async def flood() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.send("u" * 50_000)

        sending = asyncio.ensure_future(flood())
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                received.append(message)
                await asyncio.sleep(0.02)
        sending.cancel()

    async with serve(slow_upstream, "127.0.0.1", 0, max_queue=1) as up:
        port = next(iter(up.sockets)).getsockname()[1]
        async with record_proxy(f"ws://127.0.0.1:{port}", tmp_path / "d.parquet") as proxy:
            ws = await client(proxy.url)
            reading = asyncio.ensure_future(close_code(ws))
            for k in range(30):
                await ws.send(f"{k}:" + "x" * 20_000)
            await asyncio.sleep(0.3)  # its messages have left it
            ws.transport.abort()
            while len(received) < 30 and proxy.connections:
                await asyncio.sleep(0.05)
            reading.cancel()
    assert [m[:3] for m in received] == [f"{k}:x"[:3] for k in range(30)]
