"""`sim replay` and the `sim record` proxy honour ``--max-frames-per-s``,
``--max-message-bytes`` and ``--max-handshakes`` (docs/limits.md), as real processes on
127.0.0.1 attacked with raw sockets (tests/e2e/attackers.py). Each limit is set far
below its default, and the attack is one its default would let through."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.frames import CloseCode, Opcode

from simulator.cli import limits as cli_limits
from simulator.net import wire
from simulator.net.proxy import MAX_SIZE as PROXY_MAX_SIZE
from simulator.net.replay import MIN_MESSAGE_LIMIT
from simulator.net.server import serve
from tests.e2e import attackers
from tests.e2e.conftest import async_test, scenario
from tests.e2e.test_run_cli import Running, sim, sim_serving

FEED = """\
[scenario]
name = "limits"
[[stream]]
name = "tick"
every = "100ms"
"""
#: Far below the defaults (1000 frames a second, 1 or 16 MiB, 1000 handshakes).
LIMITS = ("--max-frames-per-s", "20", "--max-message-bytes", "200", "--max-handshakes", "2")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    (root / "feed.toml").write_text(FEED)
    out = root / "feed.parquet"
    done = sim("generate", root / "feed.toml", "--duration", "30s", "--out", out)
    assert done.returncode == 0, done.stderr
    return out


async def closed_with(url: str, flood: bytes) -> int | None:
    raw = await attackers.open_raw(url)
    try:
        await raw.send(flood)
        return await raw.close_code(timeout=10)
    finally:
        raw.close()


async def oldest_of_three_silent_is_dropped(url: str) -> None:
    """Three TCP connections that never finish their request, past a cap of two: the
    first is dropped; the other two are still waiting."""
    parts = urlsplit(url)
    assert parts.port is not None
    opened = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", parts.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            opened.append((reader, writer))
            await asyncio.sleep(0.05)  # accepted in this order
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(opened[0][0].read(), 10) == b""
        for reader, _ in opened[1:]:
            assert not reader.at_eof()
    finally:
        for _, writer in opened:
            writer.transport.abort()


async def check_limits(server: Running) -> None:
    # 30 pings: within the default frame budget, past --max-frames-per-s 20.
    assert await closed_with(server.url, attackers.pings(30)) == CloseCode.POLICY_VIOLATION
    # 300 bytes: within the default message limit, past --max-message-bytes 200.
    big = attackers.frame(Opcode.TEXT, b'"' + b"x" * 298 + b'"')
    assert await closed_with(server.url, big) == CloseCode.MESSAGE_TOO_BIG
    await oldest_of_three_silent_is_dropped(server.url)


@async_test(timeout=90)
async def test_sim_replay_honours_its_client_limit_flags(recording: Path) -> None:
    args = ("replay", recording, "--port", "0", "--free-run", "--loop", "--quiet", *LIMITS)
    async with sim_serving(*args) as replayer:
        await check_limits(replayer)


@async_test(timeout=90)
async def test_sim_record_proxy_honours_its_client_limit_flags(tmp_path: Path) -> None:
    out = tmp_path / "proxied.parquet"
    async with serve(scenario(FEED), port=0) as upstream:
        args = ("record", "--upstream", upstream.url, "--out", out, "--port", "0", "--quiet")
        async with sim_serving(*args, *LIMITS) as proxy:
            await check_limits(proxy)


@pytest.mark.parametrize("command", ["replay", "record"])
@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--max-frames-per-s", "5", "10<=x<=1000000"),
        ("--max-message-bytes", "100", "125<=x<=67108864"),
        ("--max-handshakes", "0", "1<=x<=100000"),
        ("--max-handshakes", "many", "'many' is not a valid integer range"),
    ],
)
def test_a_bad_limit_flag_exits_2_naming_the_flag_and_its_range(
    command: str, flag: str, value: str, allowed: str, tmp_path: Path
) -> None:
    recording = tmp_path / "r.parquet"
    recording.write_bytes(b"")  # never read: the flag is refused first
    target = {
        "replay": ("replay", recording),
        "record": ("record", "--upstream", "ws://127.0.0.1:9", "--out", tmp_path / "o.parquet"),
    }[command]
    done = sim(*target, flag, value)
    assert done.returncode == 2
    assert f"Invalid value for '{flag}'" in done.stderr and allowed in done.stderr
    assert "Traceback" not in done.stderr


def test_the_flags_default_to_the_servers_own_limits() -> None:
    """The CLI writes its defaults out (--help loads no network code): they are the
    servers'."""
    assert cli_limits.FRAMES_PER_S == wire.CLIENT_FRAMES_PER_S
    assert cli_limits.HANDSHAKES == wire.MAX_HANDSHAKES
    assert cli_limits.REPLAY_MESSAGE_BYTES == MIN_MESSAGE_LIMIT
    assert cli_limits.PROXY_MESSAGE_BYTES == PROXY_MAX_SIZE
