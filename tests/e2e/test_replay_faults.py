"""`sim replay --faults`: the live server's faults applied to a replayed recording."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulator.core.faults import FaultPlan
from simulator.errors import ScenarioError
from simulator.net.replay import replay
from simulator.scenario import load_faults, parse_faults
from tests.e2e.conftest import ROOT, async_test, client
from tests.e2e.test_replay import MS, RowSpec, closed_with, opened, read, write

N = 200


def pushes(conn: int, n: int, stream: str) -> list[RowSpec]:
    return [
        (conn, (k + 1) * MS, "server", "text", stream, f'{{"{stream}":{k}}}'.encode(), None, None)
        for k in range(n)
    ]


def two_streams(path: Path) -> Path:
    """One connection: N messages alternating between streams ``a`` and ``b``."""
    rows = [opened(0)]
    for k in range(N):
        stream = "ab"[k % 2]
        payload = f'{{"{stream}":{k // 2}}}'.encode()
        rows.append((0, (k + 1) * MS, "server", "text", stream, payload, None, None))
    return write(path, rows)


def faults_file(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def from_file(faults: Path, seed: int | None = None) -> Callable[[list[str]], FaultPlan]:
    """The faults of the file ``faults`` for the recording's streams, loaded as
    `sim replay --faults` does (``seed`` overrides the file's)."""

    def load(streams: list[str]) -> FaultPlan:
        found = load_faults(faults, streams)
        return FaultPlan(found.faults, found.seed if seed is None else seed)

    return load


async def replay_all(recording: Path, faults: Path, seed: int | None = None) -> list[bytes]:
    """Everything one client gets until the recording ends (it closes with 1000)."""
    async with replay(recording, speed=None, faults=from_file(faults, seed)) as server:
        ws = await client(server.url)
        got: list[bytes] = []
        try:
            while True:
                message = await ws.recv()
                got.append(message.encode() if isinstance(message, str) else message)
                if message == '{"b":99}':
                    break
        finally:
            await ws.close()
        return got


@async_test(timeout=30)
async def test_a_fault_on_one_stream_drops_only_that_streams_messages(tmp_path: Path) -> None:
    recording = two_streams(tmp_path / "r.parquet")
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "drop"
        streams = ["a"]
        probability = 0.5
        """,
    )
    got = await replay_all(recording, faults)
    b = [m for m in got if m.startswith(b'{"b"')]
    a = [m for m in got if m.startswith(b'{"a"')]
    assert b == [f'{{"b":{k}}}'.encode() for k in range(N // 2)]
    assert 0 < len(a) < N // 2


@async_test(timeout=30)
async def test_the_same_seed_drops_the_same_messages_and_another_seed_others(
    tmp_path: Path,
) -> None:
    recording = two_streams(tmp_path / "r.parquet")
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [scenario]
        seed = 11

        [[fault]]
        kind = "drop"
        streams = ["a"]
        probability = 0.3
        """,
    )
    first = await replay_all(recording, faults)
    second = await replay_all(recording, faults)
    other = await replay_all(recording, faults, seed=12)
    assert first == second
    assert first != other


@async_test(timeout=30)
async def test_injected_faults_are_reported_with_their_message_indices(tmp_path: Path) -> None:
    recording = two_streams(tmp_path / "r.parquet")
    plan = parse_faults(
        '[[fault]]\nkind = "duplicate"\nstreams = ["b"]\nevery_nth = 10\n', ["a", "b"]
    )
    async with replay(recording, speed=None, faults=FaultPlan(plan.faults, 0)) as server:
        ws = await client(server.url)
        got = await read(ws, N + N // 2 // 10)
        await ws.close()
        injected = [(i.kind, i.detail["stream"], i.detail["seq"]) for i in server.injected]
    assert injected == [("duplicate", "b", seq) for seq in range(10, N // 2 + 1, 10)]
    assert got.count(b'{"b":9}') == 2  # the 10th message of b, counting from 1


@async_test(timeout=30)
async def test_a_disconnect_fault_closes_the_replayed_connection(tmp_path: Path) -> None:
    recording = write(tmp_path / "r.parquet", [opened(0), *pushes(0, 5, "a")])
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "disconnect"
        code = 4001
        reason = "injected"
        at = "200ms"
        """,
    )
    async with replay(recording, speed=1.0, faults=from_file(faults)) as server:
        ws = await client(server.url)
        assert len(await read(ws, 5)) == 5
        assert await closed_with(ws) == (4001, "injected")
        assert [i.kind for i in server.injected] == ["disconnect"]


@async_test(timeout=30)
async def test_an_outage_refuses_handshakes_with_503(tmp_path: Path) -> None:
    recording = write(tmp_path / "r.parquet", [opened(0), *pushes(0, 5, "a")])
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "outage"
        at = "0s"
        duration = "1h"
        retry_after = "7s"
        """,
    )
    async with replay(recording, speed=1.0, faults=from_file(faults)) as server:
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                await client(server.url)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "7"


def test_a_fault_naming_a_stream_the_recording_lacks_is_an_error() -> None:
    with pytest.raises(ScenarioError, match=r"f.toml:4: fault\[0\].streams\[0\] = 'c'"):
        parse_faults(
            '[[fault]]\nkind = "drop"\nprobability = 0.1\nstreams = ["c"]\n', ["a"], "f.toml"
        )


def test_sim_replay_with_a_bad_faults_file_exits_2_naming_the_line(tmp_path: Path) -> None:
    recording = two_streams(tmp_path / "r.parquet")
    bad = faults_file(tmp_path / "bad.toml", '[[fault]]\nkind = "dorp"\n')
    command = ["replay", str(recording), "--port", "0", "--faults", str(bad)]
    result = subprocess.run(
        [sys.executable, "-m", "simulator", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "bad.toml:2: fault[0].kind = 'dorp'" in result.stderr
    assert "Traceback" not in result.stderr


@async_test(timeout=30)
async def test_without_recorded_streams_a_messages_json_type_is_its_stream(
    tmp_path: Path,
) -> None:
    """A proxy records no streams, and everything after the client's subscribe is a
    reply to it: faults still find the feed's messages by their JSON type."""
    rows: list[RowSpec] = [opened(0), (0, MS, "client", "text", None, b"sub", None, None)]
    for k in range(N):
        payload = f'{{"type":"{"ab"[k % 2]}","n":{k}}}'.encode()
        rows.append((0, (k + 2) * MS, "server", "text", None, payload, None, None))
    recording = write(tmp_path / "proxied.parquet", rows)
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "drop"
        streams = ["a"]
        probability = 1.0
        """,
    )
    async with replay(recording, speed=None, faults=from_file(faults)) as server:
        ws = await client(server.url)
        await ws.send("sub")
        got = await read(ws, N // 2)
        await ws.close()
        kinds = {i.kind for i in server.injected}
    assert all(b'"type":"b"' in m for m in got)
    assert kinds == {"drop"}


def closing(path: Path, n: int) -> Path:
    """One connection: ``n`` messages of stream ``a`` 1 ms apart, then the server's close
    (1000) 1 ms after the last."""
    close = (0, (n + 1) * MS, "server", "close", None, None, 1000, "done")
    return write(path, [opened(0), *pushes(0, n, "a"), close])


async def until_closed(url: str) -> tuple[list[bytes], int | None]:
    """Everything one client gets, and the code it is closed with."""
    ws = await client(url)
    got: list[bytes] = []
    try:
        while True:
            message = await ws.recv()
            got.append(message.encode() if isinstance(message, str) else message)
    except ConnectionClosed:
        pass
    return got, ws.close_code


@async_test(timeout=60)
async def test_a_recorded_close_comes_after_every_message_a_delay_or_a_reorder_held(
    tmp_path: Path,
) -> None:
    """At --speed max the recorded close is due with the last message: it waits for the
    messages that delays (with keep_order or not) and reorders still hold, which only
    come later, out of order; none is lost, since no fault here drops any."""
    recording = closing(tmp_path / "r.parquet", N)
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "delay"
        probability = 0.2
        latency = "50ms"
        keep_order = true

        [[fault]]
        kind = "delay"
        probability = 0.1
        latency = "30ms"

        [[fault]]
        kind = "reorder"
        probability = 0.05
        depth = 2
        """,
    )
    async with replay(recording, speed=None, faults=from_file(faults)) as server:
        got, code = await until_closed(server.url)
        kinds = {i.kind for i in server.injected}
    assert kinds == {"delay", "reorder"}
    assert code == 1000
    assert sorted(got) == sorted(f'{{"a":{k}}}'.encode() for k in range(N))
    assert got != sorted(got, key=lambda m: int(m[5:-1]))  # they did come out of order


@async_test(timeout=60)
async def test_what_a_client_gets_under_faults_does_not_depend_on_the_speed(
    tmp_path: Path,
) -> None:
    """The shipped flaky network (drops, loss bursts, delays of up to 3 s that keep the
    order, duplicates, reorders) on a recording that ends with the server's close: the
    same messages reach a client (in any order) at --speed max, 10 and 1."""
    recording = closing(tmp_path / "r.parquet", N)
    flaky = from_file(ROOT / "scenarios" / "flaky-network.toml", seed=5)
    received = []
    for speed in (None, 10.0, 1.0):
        async with replay(recording, speed=speed, faults=flaky) as server:
            got, code = await until_closed(server.url)
            dropped = sum(i.kind == "drop" for i in server.injected)
        assert code == 1000
        received.append(Counter(got))
    assert received[0] == received[1] == received[2]
    assert 0 < dropped < N // 4 and sum(received[0].values()) < N


@async_test(timeout=30)
async def test_a_handshake_the_faults_refuse_takes_no_recorded_connection(
    tmp_path: Path,
) -> None:
    """Recorded connection 0 was refused with 429, 1 was accepted. The faults refuse the
    first attempt (503) and hold the next one: the held client is refused as recorded
    connection 0 was, once the hold is over, and the next one replays connection 1."""
    refused: RowSpec = (0, 0, "server", "open", None, b'{"status":429}', None, None)
    recording = write(tmp_path / "r.parquet", [refused, opened(1), *pushes(1, 1, "a")])
    faults = faults_file(
        tmp_path / "f.toml",
        """
        [[fault]]
        kind = "reject"
        status = 503
        limit = 1

        [[fault]]
        kind = "reject"
        delay = "200ms"
        after_connections = 1
        limit = 1
        """,
    )
    async with replay(recording, speed=1.0, faults=from_file(faults)) as server:
        statuses = []
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refusal:
                await client(server.url)
            statuses.append(refusal.value.response.status_code)
        ws = await client(server.url)
        assert await read(ws, 1) == [b'{"a":0}']
        await ws.close()
    assert statuses == [503, 429]
    assert [i.kind for i in server.injected] == ["handshake_refused", "handshake_delayed"]
