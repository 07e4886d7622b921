"""`sim connect` as a real process against `sim run` (in this process, on 127.0.0.1): one
JSON object a line, reconnects through faults, and an exit status that says why it
stopped."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

import orjson

from simulator.net.server import serve
from tests.e2e.conftest import async_test, scenario
from tests.e2e.test_run_cli import ENV

FEED = """
[scenario]
name = "fast"

[[stream]]
name = "tick"
every = "50ms"
[stream.fields]
n = { dist = "counter" }

[[stream]]
name = "tock"
every = "50ms"
[stream.fields]
n = { dist = "counter" }
"""

#: Every connection closed with 1012 (service restart) every second.
CLOSED_EVERY_SECOND = """
[[fault]]
kind = "disconnect"
every = "1s"
code = 1012
"""


async def sim_connect(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "connect",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert process.returncode is not None
    return process.returncode, lines, err.decode()


@async_test(timeout=90)
async def test_connect_prints_json_lines_reconnects_and_resubscribes() -> None:
    """Closed with 1012 every second, `sim connect --subscribe tick` comes back within
    its backoff and gets only tick messages, before and after; exit 0 at --duration."""
    sc = scenario(FEED + CLOSED_EVERY_SECOND)
    async with serve(sc, port=0) as server:
        code, lines, err = await sim_connect(
            server.url,
            "--subscribe",
            "tick",
            "--duration",
            "2500ms",
            "--backoff-base",
            "100ms",
            "--log-format",
            "json",
        )
    assert code == 0, err
    assert "Traceback" not in err
    events = [line["event"] for line in lines]
    assert {"message", "state", "retry"} <= set(events)
    opens = [line for line in lines if line["event"] == "state" and line["state"] == "open"]
    assert len(opens) >= 2
    # Until its subscribe lands (the server's `subscribed` reply), a new connection gets
    # every stream, as the protocol says; from then on only tick.
    streams: set[str] = set()
    subscribed = False
    for line in lines:
        if line["event"] == "state" and line["state"] == "open":
            subscribed = False
        elif line["event"] == "message" and (line["data"] or {}).get("type") == "subscribed":
            subscribed = True
        elif line["event"] == "message" and subscribed and line["stream"]:
            streams.add(line["stream"])
    assert streams == {"tick"}
    retries = [line for line in lines if line["event"] == "retry"]
    assert retries and all("1012" in r["reason"] for r in retries)
    assert all(0 <= r["delay_s"] < 0.1 * 2 ** r["attempt"] for r in retries)


@async_test(timeout=60)
async def test_connect_exits_1_when_the_server_says_not_to_come_back() -> None:
    sc = scenario(
        FEED
        + """
[[fault]]
kind = "reject"
status = 403
"""
    )
    async with serve(sc, port=0) as server:
        code, _, err = await sim_connect(server.url, "--duration", "10s")
    assert code == 1
    assert "403" in err and "Traceback" not in err


@async_test(timeout=60)
async def test_connect_usage_errors_exit_2_with_one_line() -> None:
    code, _, err = await sim_connect("ws://127.0.0.1:9/", "--header", "no-colon")
    assert code == 2
    assert err.strip().count("\n") == 0 and "--header" in err


@async_test(timeout=60)
async def test_a_reader_that_goes_away_ends_the_session_quietly() -> None:
    """`sim connect URL | head -1`: once stdout is closed, no traceback, exit 0."""
    async with serve(scenario(FEED), port=0) as server:
        read_end, write_end = os.pipe()
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "simulator", "connect", server.url, "--duration", "30s"),
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:  # the reader is gone, as `head` exits
            await asyncio.to_thread(reader.readline)
        assert process.stderr is not None
        err = await asyncio.wait_for(process.stderr.read(), 30)
        code = await asyncio.wait_for(process.wait(), 30)
    assert "Traceback" not in err.decode()
    assert code == 0


@async_test(timeout=90)
async def test_connect_follows_a_count_that_restarts_and_drops_a_refused_stream() -> None:
    """A per-connection feed closed with 1012 every second counts from 1 again on each
    connection: `sim connect` (``--seq auto``) reports a restart and delivers every
    message, none as a duplicate. ``--subscribe bogus`` is refused on each connection,
    and takes ``tick`` down with it on none. The backoff flags are taken."""
    per_connection = 'name = "fast"\n\n[server]\nmode = "per-connection"'
    sc = scenario(FEED.replace('name = "fast"', per_connection) + CLOSED_EVERY_SECOND)
    async with serve(sc, port=0) as server:
        code, lines, err = await sim_connect(
            server.url,
            *("--subscribe", "tick", "--subscribe", "bogus", "--duration", "3500ms"),
            *("--backoff-base", "100ms", "--backoff-cap", "200ms", "--stable", "5s"),
            *("--heartbeat", "1s", "--heartbeat-timeout", "1s", "--log-format", "json"),
        )
    assert code == 0, err
    events = [line["event"] for line in lines]
    refused = [line for line in lines if line["event"] == "refused"]
    opened = [line for line in lines if line["event"] == "state" and line["state"] == "open"]
    # Asked for on every connection (another server may have it), refused on each.
    assert [r["streams"] for r in refused] == [["bogus"]] * len(opened)
    assert "duplicate" not in events
    restarts = [line for line in lines if line["event"] == "restart"]
    assert restarts and all(r["stream"] == "tick" and r["seq"] < r["previous"] for r in restarts)
    opens = [line for line in lines if line["event"] == "state" and line["state"] == "open"]
    assert len(opens) >= 2
    # Every connection but the first asks for tick alone (bogus is gone): the server's
    # acks say so.
    acks = [
        line["data"]["streams"]
        for line in lines
        if line["event"] == "message" and (line["data"] or {}).get("type") == "subscribed"
    ]
    assert acks and all(streams == ["tick"] for streams in acks)
    retries = [line for line in lines if line["event"] == "retry"]
    assert retries and all(r["delay_s"] < 0.2 for r in retries)


@async_test(timeout=60)
async def test_plain_output_says_each_thing_once_and_rounds_to_the_millisecond() -> None:
    """Messages on stdout; on stderr a retry line with its delay to the millisecond
    and the close's name once, then a bare backoff state line. (The first connection is
    closed as it opens: a fault at a time missed a client whose start-up took longer.)"""
    sc = scenario(
        FEED
        + """
[[fault]]
kind = "disconnect"
connections = [0]
code = 1012
"""
    )
    async with serve(sc, port=0) as server:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "simulator", "connect", server.url, "--duration", "1500ms"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert all(orjson.loads(line)["type"] for line in out.splitlines())  # the feed itself
    lines = err.decode().splitlines()
    [retry] = [line for line in lines if line.startswith("sim: retry ")]
    assert re.search(r" delay_s=\d+\.\d{3} ", retry), retry
    assert "reason=service restart (1012) attempt=0" in retry
    assert "sim: state state=backoff" in lines


def test_the_seq_choices_are_the_clients_own() -> None:
    """`--seq` spells out the client's modes (the command imports the client only when
    it runs, to start quickly): the two lists must not drift apart."""
    import click

    from simulator.cli.connect_command import connect
    from simulator.client.resilient import SEQ_ACROSS

    [option] = [p for p in connect.params if p.name == "seq_across"]
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == SEQ_ACROSS
