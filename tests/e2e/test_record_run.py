"""`sim run --record`: the served session, faults included, lands in a valid recording."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import websockets
from websockets.typing import Subprotocol

from simulator.core.redact import Redactor
from simulator.net.replay import replay
from simulator.net.server import serve
from simulator.storage.reader import read_recording
from tests.e2e.conftest import async_test, recorded_text, scenario

FEED = """
[scenario]
name = "rec"
seed = 5

[[stream]]
name = "tick"
every = "20ms"
[stream.fields]
n = { dist = "counter" }

[[fault]]
name = "lossy"
kind = "drop"
every_nth = 4
"""


@async_test(timeout=30)
async def test_recording_holds_what_each_client_received_and_the_faults(tmp_path: Path) -> None:
    """Every frame a client reads is a server text row of its connection, in order; the
    client's own message, the open and the close are rows; each drop is a fault row."""
    out = tmp_path / "session.parquet"
    received: list[bytes] = []
    async with serve(scenario(FEED), port=0, record=out) as server:
        async with websockets.connect(server.url) as ws:
            await ws.send('{"type": "ping", "id": 1}')
            while len(received) < 12:
                received.append((await asyncio.wait_for(ws.recv(), 5)).encode())
        # The close is processed before the server stops.
        for _ in range(100):
            if not server.clients:
                break
            await asyncio.sleep(0.01)
    frame = read_recording(out).frame.filter(pl.col("conn") == 0)
    kinds = frame["kind"].cast(pl.String).to_list()
    assert kinds[0] == "open" and kinds[-1] == "close"
    sent = frame.filter((pl.col("sender") == "server") & (pl.col("kind") == "text"))
    assert sent["payload"].to_list()[: len(received)] == received
    client_rows = frame.filter(pl.col("sender") == "client")
    assert orjson.loads(client_rows["payload"][0]) == {"type": "ping", "id": 1}
    faults = [orjson.loads(f) for f in frame.filter(pl.col("kind") == "fault")["fault"]]
    assert faults and all(f["kind"] == "drop" and f["seq"] % 4 == 0 for f in faults)
    seqs = [orjson.loads(p)["seq"] for p in sent["payload"] if b'"tick"' in p]
    assert not any(s % 4 == 0 for s in seqs)
    assert frame["seq"].is_sorted() and frame["t_ns"].is_sorted()


def test_unwritable_record_path_fails_before_serving(tmp_path: Path) -> None:
    """`sim run --record` on a path that cannot be written exits 2 with one clear line."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            "run",
            "scenarios/energy-dashboard.toml",
            "--port",
            "0",
            "--record",
            str(blocker / "out.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert str(blocker) in done.stderr


@async_test(timeout=30)
async def test_secrets_a_client_sends_are_redacted_in_the_recording(tmp_path: Path) -> None:
    """`sim run --record --redact '$..token'`: a token in a client's message or its URL
    never reaches the file; the hash of the token does."""
    out = tmp_path / "redacted.parquet"
    secret = "hunter2-hunter2"
    redactor = Redactor.from_specs(["$..token"], key=b"k" * 16)
    async with serve(scenario(FEED), port=0, record=out, redact=redactor) as server:
        async with websockets.connect(f"{server.url}/feed?access_token={secret}") as ws:
            await ws.send(orjson.dumps({"type": "login", "auth": {"token": secret}}).decode())
            await asyncio.wait_for(ws.recv(), 5)
        for _ in range(100):
            if not server.clients:
                break
            await asyncio.sleep(0.01)
    assert secret not in recorded_text(out)
    frame = read_recording(out).frame
    opened = orjson.loads(frame.filter(pl.col("kind") == "open")["payload"][0])
    assert opened == {"path": "/feed?access_token=[redacted]"}
    login = orjson.loads(frame.filter(pl.col("sender") == "client")["payload"][0])
    assert login["auth"]["token"].startswith("hmac-sha256:")
    assert read_recording(out).metadata["extra"]["redaction"]["rules"] == ["$..token=hash"]


@async_test(timeout=30)
async def test_a_dropped_socket_is_recorded_as_whoever_dropped_it(tmp_path: Path) -> None:
    """No close frame either way (1006): the server's when a fault reset it, so that a
    replay drops its client there too; the client's when the client went, so that a
    replay keeps its client (it was recorded as the server's, and the replay dropped a
    client that stayed); a close reason quoting a URL loses its secrets like an error."""
    out = tmp_path / "drops.parquet"
    feed = FEED.replace(
        '[[fault]]\nname = "lossy"\nkind = "drop"\nevery_nth = 4',
        '[[fault]]\nname = "cut"\nkind = "reset"\nat = "200ms"\nconnections = [0]',
    )
    async with serve(scenario(feed), port=0, record=out) as server:
        reset = await websockets.connect(server.url)  # connection 0: reset at 200 ms
        leaving = await websockets.connect(server.url)  # 1: drops its own socket
        closing = await websockets.connect(server.url)  # 2: closes with a reason
        await asyncio.wait_for(leaving.recv(), 5)
        leaving.transport.abort()
        await closing.close(4000, "moved to wss://u:pw@feed.example/ws?token=hunter2")
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(reset.recv(), 5)
        for _ in range(100):
            if not server.clients:
                break
            await asyncio.sleep(0.01)
    closes = read_recording(out).frame.filter(pl.col("kind") == "close").sort("conn")
    assert closes.select("conn", "sender", "close_code").rows() == [
        (0, "server", 1006),
        (1, "client", 1006),
        (2, "client", 4000),
    ]
    assert closes["close_reason"][2] == "moved to wss://feed.example/ws?token=[redacted]"
    assert "hunter2" not in recorded_text(out) and "pw@" not in recorded_text(out)


@async_test(timeout=30)
async def test_a_delayed_reply_due_after_its_client_left_is_not_recorded(tmp_path: Path) -> None:
    """The reply was never sent: it was written as a server row after the close."""
    out = tmp_path / "reply.parquet"
    rule = (
        '\n[[protocol.rule]]\nname = "slow"\nmatch = { type = "get" }\ndelay = "200ms"\n'
        '[protocol.rule.reply]\ntype = "got"\n'
    )
    async with serve(scenario(FEED + rule), port=0, record=out, speed=1) as server:
        async with websockets.connect(server.url) as ws:
            await ws.send('{"type": "get"}')
        await asyncio.sleep(0.4)  # past the reply's delay, which must not send it
    frame = read_recording(out).frame.filter(pl.col("conn") == 0).sort("seq")
    assert frame["kind"].cast(pl.String).to_list()[-1] == "close"
    assert not any(b'"got"' in bytes(p) for p in frame["payload"].to_list() if p is not None)


@async_test(timeout=30)
async def test_a_replay_of_sim_run_answers_with_the_subprotocol_it_agreed_to(
    tmp_path: Path,
) -> None:
    """The open row holds the subprotocol the server chose (it held only the path, so a
    replay answered a client that asked for one without it)."""
    out = tmp_path / "sub.parquet"
    feed = FEED.replace("seed = 5\n", 'seed = 5\n\n[server]\nsubprotocols = ["feed.v1"]\n')
    async with serve(scenario(feed), port=0, record=out) as server:
        async with websockets.connect(server.url, subprotocols=[Subprotocol("feed.v1")]) as ws:
            assert ws.subprotocol == "feed.v1"
            await asyncio.wait_for(ws.recv(), 5)
        for _ in range(100):
            if not server.clients:
                break
            await asyncio.sleep(0.01)
    async with (
        replay(out, speed=None) as replayed,
        websockets.connect(replayed.url, subprotocols=[Subprotocol("feed.v1")]) as ws,
    ):
        assert ws.subprotocol == "feed.v1"
