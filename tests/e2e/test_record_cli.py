"""`sim record` as a real process: the proxy and the direct client, signals, SIGKILL and
recovery, usage errors. The upstream is `sim run` itself, in this process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl

from simulator.net.capture import capture
from simulator.net.replay import replay
from simulator.net.server import serve
from simulator.storage.analysis import inspect
from simulator.storage.reader import read_recording
from simulator.storage.writer import segment_dir
from tests.e2e.conftest import async_test, client, receive, recorded_text, scenario
from tests.e2e.test_run_cli import ENV, sim, sim_serving

#: RFC 6455's GUID, which a server's Sec-WebSocket-Accept hashes with the client's key.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBSCRIBE = '{"type":"subscribe","streams":["tick"]}'
FEED = """
[scenario]
name = "fast"

[[stream]]
name = "tick"
every = "5ms"
[stream.fields]
n = { dist = "counter" }
"""


def flushed_server_messages(out: Path) -> int:
    """Server messages in the complete segments of the recording ``out`` (being written)."""
    segments = sorted(segment_dir(out).glob("seg-*.parquet"))
    if not segments:
        return 0
    frame = pl.read_parquet(segments)
    return frame.filter((pl.col("sender") == "server") & (pl.col("kind") == "text")).height


def server_messages(path: Path) -> list[bytes]:
    frame = read_recording(path).frame.sort("seq")
    texts = frame.filter((pl.col("sender") == "server") & (pl.col("kind") == "text"))
    return [bytes(p) for p in texts["payload"]]


@async_test(timeout=60)
async def test_proxy_process_records_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "proxy.parquet"
    async with serve(scenario(FEED), port=0) as upstream:
        args = ("--upstream", upstream.url, "--listen", "127.0.0.1:0", "--out", out)
        async with sim_serving("record", *args) as proxy:
            assert proxy.url.startswith("ws://127.0.0.1:")
            ws = await client(proxy.url + "/?api_key=hunter2")
            got = [await receive(ws) for _ in range(10)]
            await ws.close()
            proxy.process.send_signal(signal.SIGTERM)
            code, _, err = await proxy.finish()
    assert code == 0, err
    recorded = [orjson.loads(m) for m in server_messages(out)]
    assert recorded[:10] == got
    assert "hunter2" not in recorded_text(out)


@async_test(timeout=60)
async def test_a_killed_proxy_keeps_what_it_flushed_and_recover_rebuilds_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "killed.parquet"
    async with serve(scenario(FEED), port=0) as upstream:
        args = ("--upstream", upstream.url, "--listen", "127.0.0.1:0", "--out", out, "--quiet")
        async with sim_serving("record", *args) as proxy:
            ws = await client(proxy.url)
            first = [await ws.recv() for _ in range(20)]
            # Kill it once complete segments hold those 20 (flushed within about a
            # second): what was flushed must survive.
            while flushed_server_messages(out) < 20:
                await asyncio.sleep(0.05)
            proxy.process.send_signal(signal.SIGKILL)
            await proxy.process.wait()
            await ws.close()
    assert not out.exists()
    result = sim("recover", out)
    assert result.returncode == 0, result.stderr
    assert [m.decode() for m in server_messages(out)[:20]] == first


@async_test(timeout=60)
async def test_connect_records_the_feed_after_the_messages_it_sends(tmp_path: Path) -> None:
    """`--connect` sends the subscribe, records for --duration; replaying the file to a
    client that sends the same subscribe gives it what was recorded."""
    out = tmp_path / "direct.parquet"
    async with serve(scenario(FEED), port=0) as upstream:
        args = ("record", "--connect", upstream.url, "--send", SUBSCRIBE, "--duration", "300ms")
        result = await asyncio.to_thread(
            sim, *args, "--header", "Authorization: Bearer hunter2", "--out", out
        )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in recorded_text(out)
    recorded = server_messages(out)
    # Broadcast: ticks may arrive before the answer to the subscribe.
    assert b'{"type":"subscribed","streams":["tick"]}' in recorded
    assert len(recorded) > 10
    # The capture knows no streams; inspect counts its messages by JSON type instead.
    types = {(t.stream, t.sender): t.messages for t in inspect(out).types}
    assert types[("subscribe", "client")] == 1
    assert types[("subscribed", "server")] == 1
    assert types[("tick", "server")] == len(recorded) - 1
    async with replay(out, speed=None) as replayed:
        ws = await client(replayed.url)
        await ws.send(SUBSCRIBE)
        got = [(await ws.recv()).encode() for _ in recorded]  # type: ignore[union-attr]
        await ws.close()
    assert got == recorded


@async_test(timeout=30)
async def test_a_message_that_comes_with_the_handshake_is_recorded_after_the_open(
    tmp_path: Path,
) -> None:
    """An upstream that writes its 101 response and a welcome message back to back: the
    welcome was recorded before the connection's open row (and two captures of the same
    feed, the welcome at once or a moment later, then differed for `sim diff`)."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            b'\x81\x10{"type":"hello"}'  # in the same write as the response
        )
        with contextlib.suppress(ConnectionError):
            await reader.read(100)  # until the capture closes
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = tmp_path / "welcome.parquet"
    async with server:
        await capture(f"ws://127.0.0.1:{port}/", out, duration_s=0.2)
    kinds = read_recording(out).frame.sort("seq")["kind"].cast(pl.String).to_list()
    assert kinds[:2] == ["open", "text"], kinds


def test_usage_errors_exit_2_and_an_unreachable_feed_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    both = sim("record", "--upstream", "ws://a", "--connect", "ws://b", "--out", out)
    assert both.returncode == 2 and "exactly one of" in both.stderr
    bad_url = sim("record", "--connect", "http://example", "--out", out)
    assert bad_url.returncode == 2 and "ws:// or wss://" in bad_url.stderr
    bad_listen = sim("record", "--upstream", "ws://a", "--listen", "nowhere", "--out", out)
    assert bad_listen.returncode == 2 and "HOST:PORT" in bad_listen.stderr
    bad_redact = sim("record", "--connect", "ws://a", "--redact", "token", "--out", out)
    assert bad_redact.returncode == 2 and "Traceback" not in bad_redact.stderr
    refused = sim("record", "--connect", "ws://127.0.0.1:1", "--out", out)
    assert refused.returncode == 1 and "cannot connect" in refused.stderr
    (tmp_path / "a-file").write_text("not a folder")
    nowhere = tmp_path / "a-file" / "x.parquet"  # a missing folder would be made
    unwritable = sim("record", "--upstream", "ws://a", "--listen", "127.0.0.1:0", "--out", nowhere)
    assert unwritable.returncode == 2 and str(nowhere) in unwritable.stderr
    assert unwritable.stdout == ""  # failed before listening: no URL line
    run_redact = sim("run", "scenarios/energy-dashboard.toml", "--redact", "$.token")
    assert run_redact.returncode == 2 and "--record" in run_redact.stderr
    for result in (both, bad_url, bad_listen, bad_redact, refused, unwritable, run_redact):
        assert "Traceback" not in result.stderr


def sim_with(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``sim ARGS...`` with ``env`` on top of the tests' environment (and no
    ``$SIM_REDACT_KEY`` but the one given)."""
    base = {k: v for k, v in ENV.items() if k != "SIM_REDACT_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "simulator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


@async_test(timeout=120)
async def test_a_redaction_key_from_a_file_or_the_environment_hashes_alike_and_replay_matches(
    tmp_path: Path,
) -> None:
    """``--redact-key-file`` and ``$SIM_REDACT_KEY`` holding the same key hash a token
    alike (a random key, otherwise); ``sim replay --strict`` given the key matches a
    client sending the token in the clear (its pong comes back), and given another key
    closes it with 1008."""
    secret = "0123456789abcdef0123456789abcdef"
    key = tmp_path / "key"
    key.write_text(secret + "\n")
    ping = '{"type":"ping","id":1,"token":"s3cret"}'
    async with serve(scenario(FEED), port=0) as upstream:
        base = ("record", "--connect", upstream.url, "--send", ping, "--redact", "$.token")
        runs = {
            "file": ({}, ("--redact-key-file", key)),
            "env": ({"SIM_REDACT_KEY": secret}, ()),
            "random": ({}, ()),
        }
        results = {}
        for name, (env, extra) in runs.items():
            out = tmp_path / f"{name}.parquet"
            args = (*base, *extra, "--duration", "300ms", "--out", out)
            results[name] = await asyncio.to_thread(sim_with, env, *args)
    for result in results.values():
        assert result.returncode == 0, result.stderr

    def token_of(name: str) -> str:
        frame = read_recording(tmp_path / f"{name}.parquet").frame
        sent = frame.filter((pl.col("sender") == "client") & (pl.col("kind") == "text"))
        [payload] = sent["payload"].to_list()
        return str(orjson.loads(payload)["token"])

    assert token_of("file") == token_of("env") != token_of("random")
    assert all("s3cret" not in recorded_text(tmp_path / f"{n}.parquet") for n in runs)

    recording = tmp_path / "file.parquet"
    args = ("replay", recording, "--port", "0", "--strict", "--quiet")
    async with sim_serving(*args, "--redact-key-file", key) as replayed:
        ws = await client(replayed.url)
        await ws.send(ping)
        # Broadcast ticks may have been recorded between the ping and its pong.
        got = [orjson.loads(await ws.recv())]
        while got[-1]["type"] != "pong" and len(got) < 200:
            got.append(orjson.loads(await ws.recv()))
        await ws.close()
        replayed.process.send_signal(signal.SIGTERM)
        await replayed.finish()
    assert got[-1]["type"] == "pong" and got[-1]["id"] == 1
    other = tmp_path / "other-key"
    other.write_text("fedcba9876543210fedcba9876543210")
    async with sim_serving(*args, "--redact-key-file", other) as replayed:
        ws = await client(replayed.url)
        await ws.send(ping)
        await ws.wait_closed()
        closed = ws.close_code
        replayed.process.send_signal(signal.SIGTERM)
        await replayed.finish()
    assert closed == 1008
