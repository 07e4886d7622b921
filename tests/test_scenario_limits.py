"""The admission keys of ``[server]`` (docs/limits.md): read into
:class:`~simulator.core.model.Server`, defaulting to the servers' own constants, and a
bad value is one line naming file, line, key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.core.model import Server
from simulator.errors import ScenarioError
from simulator.net import server as sim_run
from simulator.net import wire
from simulator.scenario import parse_scenario
from simulator.scenario.server import _SERVER_LIMITS

#: A valid scenario; ``[server]`` goes on line 6 (so the key tested, after ``port``, is on line 8).
HEAD = '[scenario]\nname = "t"\n[[stream]]\nname = "s"\nevery = "1s"\n'


def with_server(keys: str) -> str:
    return HEAD + "[server]\n" + keys


def test_every_admission_key_is_read_into_the_server() -> None:
    keys = (
        "max_frames_per_s = 500\nmax_messages_per_s = 50\nmessage_burst = 100\n"
        "max_errors_per_s = 0\nerror_burst = 0\nerrors_logged = 0\n"
        'max_handshakes = 7\nhandshake_timeout = "250ms"\n'
    )
    server = parse_scenario(with_server(keys), "x.toml").server
    assert (
        server.max_frames_per_s,
        server.max_messages_per_s,
        server.message_burst,
        server.max_errors_per_s,
        server.error_burst,
        server.errors_logged,
        server.max_handshakes,
        server.handshake_timeout_ns,
    ) == (500, 50, 100, 0, 0, 0, 7, 250_000_000)


def test_the_defaults_are_the_servers_own_limits() -> None:
    """Without the keys, `sim run` applies the limits the servers without a scenario
    (replay, proxy) apply too: the constants of simulator.net."""
    default = parse_scenario(HEAD, "x.toml").server
    assert default == Server()
    assert default.max_frames_per_s == wire.CLIENT_FRAMES_PER_S
    assert default.max_handshakes == wire.MAX_HANDSHAKES
    assert default.max_messages_per_s == sim_run.CLIENT_RATE_PER_S
    assert default.message_burst == sim_run.CLIENT_BURST
    assert default.max_errors_per_s == sim_run.CLIENT_ERROR_RATE_PER_S
    assert default.error_burst == sim_run.CLIENT_ERROR_BURST
    assert default.errors_logged == sim_run.CLIENT_ERRORS_LOGGED
    assert default.handshake_timeout_ns == 10 * 10**9


INVALID = [
    (
        "max_frames_per_s = 5",
        "x.toml:8: server.max_frames_per_s = 5: must be an integer from 10 to 1000000",
    ),
    (
        "max_messages_per_s = 0",
        "x.toml:8: server.max_messages_per_s = 0: must be an integer from 1 to 100000",
    ),
    (
        "message_burst = 1.5",
        "x.toml:8: server.message_burst = 1.5: must be an integer",
    ),
    (
        "max_errors_per_s = -1",
        "x.toml:8: server.max_errors_per_s = -1: must be an integer from 0 to 100000",
    ),
    (
        'error_burst = "20"',
        "x.toml:8: server.error_burst = '20': must be an integer",
    ),
    (
        "errors_logged = 2000000",
        "x.toml:8: server.errors_logged = 2000000: must be an integer from 0 to 1000000",
    ),
    (
        "max_handshakes = 0",
        "x.toml:8: server.max_handshakes = 0: must be an integer from 1 to 100000",
    ),
    (
        'handshake_timeout = "50ms"',
        "x.toml:8: server.handshake_timeout = '50ms': must be 100ms to 10m",
    ),
    (
        'handshake_timeout = "1h"',
        "x.toml:8: server.handshake_timeout = '1h': must be 100ms to 10m",
    ),
    (
        "handshake_timeout = 10",
        "x.toml:8: server.handshake_timeout = 10: a duration needs a unit, like '10s'",
    ),
    (
        "max_frame_per_s = 100",
        "x.toml:8: server.max_frame_per_s: unknown key; did you mean 'max_frames_per_s'?",
    ),
]


@pytest.mark.parametrize(("line", "expected"), INVALID, ids=[line for line, _ in INVALID])
def test_a_bad_admission_key_is_one_line_naming_file_line_key_and_what_is_allowed(
    line: str, expected: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(with_server("port = 0\n" + line + "\n"), "x.toml")
    # The list of allowed keys after an unknown one grows with [server]: not compared.
    assert [line.split(" (allowed: ")[0] for line in str(info.value).splitlines()] == [expected]


DOC = Path(__file__).resolve().parents[1] / "docs" / "limits.md"


def test_docs_limits_names_every_key_and_its_example_loads() -> None:
    """docs/limits.md, the one table of limits, has every admission key, and its
    ``[server]`` example is a valid one."""
    text = DOC.read_text()
    for key in (*_SERVER_LIMITS, "handshake_timeout", "max_connections", "max_frame_bytes"):
        assert f"`{key}`" in text, key
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    server = parse_scenario(HEAD + example, "limits.md").server
    assert (server.max_frames_per_s, server.error_burst) == (100, 0)
