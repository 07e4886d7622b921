"""`sim run --workers N`: N processes on one port (SO_REUSEPORT), one feed.

The kernel spreads connections among the workers by a hash of each connection's
addresses, so the tests open enough connections that both workers of two are hit
(all on one: a chance of 2**-15 with 16 clients) and read which worker served each
connection from the worker's own `connected` log line (it names the client's address).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import signal
import socket
import sys
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from websockets.asyncio.client import ClientConnection

from simulator.core.numbering import Numbering
from simulator.core.timeline import Timeline
from simulator.net.log import EventKind
from simulator.net.server import serve
from tests.e2e.conftest import (
    DASHBOARD,
    S,
    async_test,
    client,
    close_code,
    expect_event,
    scenario,
)
from tests.e2e.test_run_cli import ENV, START_TIMEOUT_S, Running, sim, sim_run, sim_serving
from tests.e2e.test_server import IDENTITY

CLIENTS = 16
#: The dashboard, its one live field (each server's own count of its clients, which
#: differs between workers by design: docs/scale-out.md) drawn instead.
NO_LIVE_DASHBOARD = """
[scenario]
extends = "{dashboard}"
[[stream]]
name = "system_stats"
every = "5s"
[stream.fields]
cpu = {{ dist = "walk", start = 42.0, step = 4.0, revert = 0.15, min = 0, max = 100, round = 2 }}
memory = {{ dist = "walk", start = 58.0, step = 1.5, revert = 0.05, min = 0, max = 100, round = 2 }}
disk = {{ dist = "normal", mean = 52.0, std = 6.0, min = 0, max = 100, round = 2 }}
active_connections = {{ dist = "randint", min = 40, max = 260 }}
"""
FRAMES = 30  # read from each client: at --speed 20 the dashboard sends ~15 a second


@dataclass
class Stderr:
    """The JSON lines a `sim run --log-format json` writes on stderr, read as they come."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, running: Running) -> None:
        assert running.process.stderr is not None
        while line := await running.process.stderr.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.other.append(line.decode())
            self.changed.set()

    async def wait_for(self, event: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The first ``count`` lines of ``event``, once there are that many; a
        TimeoutError naming them after ``timeout`` s (rather than the test's own)."""
        try:
            async with asyncio.timeout(timeout):
                while len(found := [e for e in self.lines if e["event"] == event]) < count:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = [e["event"] for e in self.lines]
            raise TimeoutError(
                f"{count} {event!r} lines awaited; got {seen}, and not JSON: {self.other}"
            ) from None
        return found


async def frames(ws: ClientConnection, n: int) -> dict[tuple[str, int], bytes]:
    """The next ``n`` frames, as sent, by (type, seq) (each within 10 s)."""
    got: dict[tuple[str, int], bytes] = {}
    for _ in range(n):
        async with asyncio.timeout(10):
            raw = await ws.recv(decode=False)
        message = json.loads(raw)
        got[message["type"], message["seq"]] = raw
    return got


def healthz(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


@async_test(timeout=60)
async def test_workers_stamp_each_message_with_the_wall_time_it_was_scheduled(
    tmp_path: Path,
) -> None:
    """At speed 1 with no epoch, a worker's `timestamp` is when the message was due, so
    none predates the client's connect by more than a late pass could carry (they were
    all ~370 ms before it when workers took the supervisor's start as their epoch but
    their shared origin, which comes once they have started, as scenario time 0)."""
    feed = tmp_path / "fast.toml"
    feed.write_text('[scenario]\nname = "fast"\n[[stream]]\nname = "tick"\nevery = "20ms"\n')
    async with sim_run(feed, "--port", "0", "--workers", "2", "--quiet") as running:
        for _ in range(4):  # both workers, most likely (the kernel picks by addresses)
            before_connect = datetime.now(UTC)
            ws = await client(running.url)
            stamps = [json.loads(await ws.recv())["timestamp"] for _ in range(5)]
            await ws.close()
            earliest = min(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
            assert earliest > before_connect - timedelta(milliseconds=100), stamps


@async_test(timeout=90)  # under pytest-timeout (120 s): our TimeoutError says where it waited
async def test_two_workers_serve_clients_the_same_broadcast_bytes(tmp_path: Path) -> None:
    """Clients land on both workers; every frame of the feed that clients on different
    workers both got is the same bytes (the dashboard with its one live field, each
    worker's own count of clients, drawn instead); connection indices follow w + k*2;
    SIGTERM closes every client with 1001 and exits 0 with the workers' counts summed."""
    feed = tmp_path / "no-live.toml"
    feed.write_text(NO_LIVE_DASHBOARD.format(dashboard=DASHBOARD))
    args = ("--port", "0", "--workers", "2", "--speed", "20", "--log-format", "json")
    async with sim_run(feed, *args) as running:
        log = Stderr()
        reader = asyncio.ensure_future(log.follow(running))
        sockets = [await client(running.url) for _ in range(CLIENTS)]
        connections = await log.wait_for("connected", CLIENTS)
        by_port = {int(e["remote"].rsplit(":", 1)[1]): e for e in connections}
        served = [by_port[ws.local_address[1]] for ws in sockets]
        received = [await frames(ws, FRAMES) for ws in sockets]

        workers_hit = {e["worker"] for e in served}
        assert workers_hit == {0, 1}
        assert all(e["conn"] % 2 == e["worker"] for e in served)
        assert len({e["conn"] for e in served}) == CLIENTS
        copies: dict[tuple[str, int], dict[int, set[bytes]]] = defaultdict(lambda: defaultdict(set))
        for event, got in zip(served, received, strict=True):
            for key, raw in got.items():
                copies[key][event["worker"]].add(raw)
        on_both = [key for key, seen in copies.items() if len(seen) == 2]
        assert len(on_both) >= FRAMES // 2
        for key in on_both:
            assert len(set.union(*copies[key].values())) == 1, key

        answers = [await asyncio.to_thread(healthz, running.url) for _ in range(32)]
        assert {a["workers"] for a in answers} == {2}
        assert {a["worker"] for a in answers} == {0, 1}

        running.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(close_code(ws) for ws in sockets))
        assert set(codes) == {1001}
        assert await running.process.wait() == 0
        await reader
    totals = [e for e in log.lines if e["event"] == "workers_stopped"]
    assert len(totals) == 1
    assert log.other == []  # with --log-format json, every stderr line is one JSON object
    assert totals[0]["workers"] == 2
    assert totals[0]["connections_total"] == CLIENTS
    assert totals[0]["frames_sent"] >= CLIENTS * FRAMES
    assert not any("Traceback" in line for line in log.other)


@async_test(timeout=90)  # under pytest-timeout (120 s): our TimeoutError says where it waited
async def test_workers_record_one_table_that_inspect_diff_and_replay_read(tmp_path: Path) -> None:
    """--record DIR with workers writes DIR/worker=W/part.parquet; polars reads the
    directory as one table whose connections are unique and on their worker; sim
    inspect, diff and replay take the directory."""
    out = tmp_path / "session"
    args = ("--port", "0", "--workers", "2", "--speed", "20", "--duration", "100s")
    async with sim_run(DASHBOARD, *args, "--record", out, "--quiet") as running:
        sockets = [await client(running.url) for _ in range(CLIENTS)]
        for ws in sockets:
            await ws.recv()
        code, _, err = await running.finish()  # at the end of --duration
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "worker=0/part.parquet",
        "worker=1/part.parquet",
    ]
    table = pl.scan_parquet(out, hive_partitioning=True).collect()
    conns = table.filter(pl.col("conn") >= 0).select("conn", "worker").unique()
    assert conns.height == CLIENTS
    assert set(conns["worker"]) == {0, 1}
    assert all(conn % 2 == worker for conn, worker in conns.iter_rows())

    inspected = sim("inspect", out, "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert len(json.loads(inspected.stdout)["connections"]) == CLIENTS
    same = sim("diff", out, out)
    assert same.returncode == 0, same.stdout + same.stderr

    first_conn = min(conns["conn"].to_list())  # replay's client 0 gets the lowest connection
    recorded = table.filter((pl.col("conn") == first_conn) & (pl.col("kind") == "text")).sort(
        "seq"
    )["payload"][0]
    async with sim_serving("replay", out, "--port", "0", "--free-run", "--quiet") as replay:
        ws = await client(replay.url)
        assert await ws.recv(decode=False) == recorded
        replay.process.send_signal(signal.SIGTERM)
        assert (await replay.finish())[0] == 0


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    """Every worker fails to bind: the supervisor says so once, exits 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sim("run", DASHBOARD, "--port", str(port), "--workers", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0].lower(), result.stderr


@async_test(timeout=60)
async def test_a_port_another_run_of_workers_serves_is_in_use_too() -> None:
    """Its sockets have SO_REUSEPORT like ours, so the kernel would let the two runs
    share the port and split new clients between them: refused, one line, exit 2."""
    async with sim_run(DASHBOARD, "--port", "0", "--workers", "2", "--quiet") as first:
        port = first.url.rsplit(":", 1)[1].rstrip("/")
        args = ("run", DASHBOARD, "--port", port, "--workers", "2")
        second = await asyncio.to_thread(sim, *args)
        assert second.returncode == 2
        assert second.stdout == ""
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and "address already in use" in lines[0].lower(), second.stderr
        answers = [await asyncio.to_thread(healthz, first.url) for _ in range(8)]
        assert {a["scenario"] for a in answers} == {"energy-dashboard"}


def test_a_bad_worker_count_is_a_usage_error() -> None:
    for bad in ("0", "many", "-1"):
        result = sim("run", DASHBOARD, "--workers", bad)
        assert result.returncode == 2
        assert "--workers" in result.stderr and "auto" in result.stderr, result.stderr


def test_plan_shows_which_worker_numbers_each_connection() -> None:
    result = sim(
        "plan",
        Path(__file__).parents[2] / "scenarios" / "zombie-connection.toml",
        "--duration",
        "3m",
        "--connections",
        "4",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert "2 workers: worker w numbers its connections w, w+2, w+4" in result.stdout
    shown = re.findall(r"conn (\d+) \(w(\d+)\)", result.stdout)
    assert shown
    assert all(int(conn) % 2 == int(worker) for conn, worker in shown)


@async_test(timeout=60)
async def test_per_connection_feeds_are_a_function_of_the_index_on_any_worker() -> None:
    """Two servers sharing a port as workers 0 and 1 of 2: connection i (whichever worker
    serves it) gets Timeline(scope=i), as connection i of a lone server would."""
    sc = scenario(IDENTITY.format(mode="per-connection", start="0s"))
    k = 40
    received: dict[int, tuple[list[bytes], int]] = {}
    async with contextlib.AsyncExitStack() as stack:
        w0 = await stack.enter_async_context(
            serve(sc, port=0, seed=11, speed=20, numbering=Numbering(0, 2), reuse_port=True)
        )
        # Worker 1 takes the same port, as `sim run --workers 2` does.
        w1 = await stack.enter_async_context(
            serve(sc, port=w0.port, seed=11, speed=20, numbering=Numbering(1, 2), reuse_port=True)
        )
        sockets = []
        # Connect until both workers have clients (bounded: 64 tries).
        for _ in range(64):
            registered = {expect_event(w, EventKind.CONNECTED): w for w in (w0, w1)}
            ws = await client(w0.url)
            done, pending = await asyncio.wait(registered, return_when=asyncio.FIRST_COMPLETED)
            for future in pending:
                future.cancel()
            event = done.pop()
            index = event.result().conn
            assert index is not None
            sockets.append((index, registered[event], ws))
            if {s for _, s, _ in sockets} == {w0, w1} and len(sockets) >= 4:
                break
        for index, server, ws in sockets:
            assert index % 2 == (0 if server is w0 else 1)
            epoch = server.clients[index].epoch_ns
            received[index] = ([await ws.recv(decode=False) for _ in range(k)], epoch)
            await ws.close()
    assert {i % 2 for i in received} == {0, 1}
    for index, (payloads, epoch) in received.items():
        timeline = Timeline(sc, seed=11, scope=index, epoch_ns=epoch)
        assert payloads == timeline.take_until(60 * S).payloads[:k], index


@async_test(timeout=60)
async def test_an_instance_numbers_its_connections_apart_from_the_others() -> None:
    """--instance 1/3 (host 1 of 3) numbers its connections 1, 4, 7 and says so on
    /healthz; so do the records of its connections."""
    args = ("--port", "0", "--instance", "1/3", "--log-format", "json")
    async with sim_run(DASHBOARD, *args) as running:
        log = Stderr()
        reader = asyncio.ensure_future(log.follow(running))
        sockets = [await client(running.url) for _ in range(3)]
        connections = await log.wait_for("connected", 3)
        answer = await asyncio.to_thread(healthz, running.url)
        running.process.send_signal(signal.SIGTERM)
        assert set(await asyncio.gather(*(close_code(ws) for ws in sockets))) == {1001}
        assert await running.process.wait() == 0
        await reader
    assert sorted(e["conn"] for e in connections) == [1, 4, 7]
    assert (answer["worker"], answer["workers"]) == (1, 3)


def test_instance_slots_never_collide() -> None:
    """Worker w of N on instance I of M is slot I*N + w of M*N: every index once."""
    from simulator.cli.workers import numbering

    handed = [
        numbering((i, 3), w, 2).index(k) for i in range(3) for w in range(2) for k in range(50)
    ]
    assert sorted(handed) == list(range(300))


def test_a_bad_instance_is_a_usage_error() -> None:
    for bad in ("3/3", "1", "a/b", "-1/2"):
        result = sim("run", DASHBOARD, "--instance", bad)
        assert result.returncode == 2
        assert "--instance" in result.stderr and "I/M" in result.stderr, result.stderr


@async_test(timeout=60)
async def test_ctrl_c_to_the_supervisor_stops_every_worker_and_exits_0() -> None:
    """SIGINT to the supervisor alone (not its process group): it forwards SIGTERM to
    each worker, waits for them and exits 0."""
    async with sim_run(DASHBOARD, "--port", "0", "--workers", "2") as running:
        ws = await client(running.url)
        running.process.send_signal(signal.SIGINT)
        assert await close_code(ws) == 1001
        code, out, err = await running.finish()
    assert code == 0, err
    assert out == ""
    assert "Traceback" not in err
    assert {f"sim: worker={w} stopping" for w in (0, 1)} <= {
        line.split(" connections=")[0] for line in err.splitlines()
    }
    assert err.splitlines()[-1].startswith("sim: workers_stopped workers=2 connections_total=1")


@async_test(timeout=90)
async def test_ctrl_c_to_the_process_group_exits_0_however_the_signals_cross() -> None:
    """What a terminal's Ctrl-C does: SIGINT to the supervisor and to every worker at
    once. The supervisor then sends SIGTERM to the workers it has not seen exit; one
    that arrived as a worker's loop had closed killed it (exit -15: "worker 0 failed",
    exit 1, in 3 to 7 runs of 10). Three runs, each must exit 0."""
    for _ in range(3):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "simulator", "run", str(DASHBOARD), "--port", "0", "--workers", "2"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
            start_new_session=True,  # its own process group, as a shell's job
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            async with asyncio.timeout(START_TIMEOUT_S):
                url = (await process.stdout.readline()).decode().strip()
            assert url.startswith("ws://")
            await asyncio.sleep(1)  # serving for a while (the race was rare right after the URL)
            os.killpg(process.pid, signal.SIGINT)
            _, raw = await asyncio.gather(process.stdout.read(), process.stderr.read())
            err = raw.decode()
            assert await process.wait() == 0, err
            assert "failed" not in err and "Exception ignored" not in err, err
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


def test_force_replaces_a_workers_recording_only_once_the_new_run_serves(tmp_path: Path) -> None:
    """--record DIR --force: a run that cannot start (the port is taken) leaves the old
    recording as it was; one that serves replaces each worker's part and removes the
    parts of workers it does not have."""
    out = tmp_path / "session"
    old = {w: out / f"worker={w}" / "part.parquet" for w in range(3)}
    for w, part in old.items():
        part.parent.mkdir(parents=True)
        part.write_bytes(f"old recording of worker {w}".encode())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        failed = sim("run", DASHBOARD, "--port", port, "--workers", "2", "--record", out, "--force")
    assert failed.returncode == 2, failed.stderr
    assert {w: p.read_bytes() for w, p in old.items()} == {
        w: f"old recording of worker {w}".encode() for w in range(3)
    }
    args = ("--port", "0", "--workers", "2", "--speed", "20", "--duration", "20s", "--quiet")
    served = sim("run", DASHBOARD, *args, "--record", out, "--force")
    assert served.returncode == 0, served.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "worker=0/part.parquet",
        "worker=1/part.parquet",
    ]
    inspected = sim("inspect", out, "--json")  # new recordings (with no client), not bytes
    assert inspected.returncode == 0, inspected.stderr


def worker_pids(supervisor: int) -> list[int]:
    """The workers among ``supervisor``'s child processes (Linux: /proc's children
    lists; multiprocessing's resource tracker is a child too)."""
    children: list[int] = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
@async_test(timeout=60)
async def test_a_worker_that_dies_while_serving_stops_the_others_and_exits_1() -> None:
    """SIGKILL to one worker: the supervisor says which failed, stops the other (its
    client is closed with 1001) and exits 1."""
    async with sim_run(DASHBOARD, "--port", "0", "--workers", "2") as running:
        ws = await client(running.url)
        pids = worker_pids(running.process.pid)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        code, _, err = await running.finish()
        await ws.wait_closed()
    assert code == 1, err
    assert "failed (exit code -9)" in err
    assert "Traceback" not in err


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_a_port_held_on_ipv4_is_free_for_workers_on_ipv6_as_for_a_lone_server() -> None:
    """asyncio binds IPv6 alone (IPV6_V6ONLY): the port check and the reserved socket
    must too, or `--host :: --workers` is refused a port a lone `sim run` may serve."""
    from simulator.cli.workers import _reserve_port

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            reserved = _reserve_port("::", port)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                pytest.skip("IPv6 is not configured")
            raise
        reserved.close()


def test_a_port_another_run_of_workers_has_claimed_is_in_use_while_it_starts() -> None:
    """Its workers do not listen yet, and its reserved socket shares the port with ours
    (SO_REUSEPORT): the port's lock says it is taken; once released, it is free."""
    from simulator.cli.workers import _claim_port

    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    first = _claim_port(port)
    assert first is not None
    try:
        with pytest.raises(OSError) as taken:
            _claim_port(port)
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        os.close(first)
    again = _claim_port(port)
    assert again is not None
    os.close(again)
