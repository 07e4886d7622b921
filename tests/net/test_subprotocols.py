"""``[server] subprotocols``: a client offering a listed subprotocol gets it (browsers
refuse a connection whose answer names none when they offered some); one offering none
is still served; without a list, sim serves without one and says once what to add."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from simulator.net.log import EventKind
from simulator.net.server import serve
from simulator.scenario import parse_scenario


def feed(listed: str = "") -> object:
    server = f"[server]\nsubprotocols = {listed}\n" if listed else ""
    return parse_scenario(
        f'[scenario]\nname = "t"\n{server}[[stream]]\nname = "tick"\nevery = "10ms"\n',
        "x.toml",
    )


async def agreed(listed: str, offered: list[str]) -> tuple[str | None, list[str]]:
    """The subprotocol a client offering ``offered`` gets, and the server's warnings."""
    scenario = feed(listed)
    async with serve(scenario, port=0) as server:  # type: ignore[arg-type]
        protocols = [Subprotocol(name) for name in offered] or None
        async with connect(server.url, subprotocols=protocols) as ws:
            await ws.recv()
            chosen = ws.subprotocol
        warnings = [e.detail["message"] for e in server.log.of_kind(EventKind.WARNING)]
    return chosen, warnings


@pytest.mark.parametrize(
    ("listed", "offered", "expected"),
    [
        ('["json"]', ["json"], "json"),
        ('["json", "v2"]', ["v2", "json"], "json"),  # the server's preference
        ('["json"]', [], None),  # a plain client is still served
        ('["json"]', ["xml"], None),  # as is one offering nothing listed
    ],
)
def test_a_client_gets_the_first_listed_subprotocol_it_offered(
    listed: str, offered: list[str], expected: str | None
) -> None:
    chosen, _ = asyncio.run(agreed(listed, offered))
    assert chosen == expected


def test_offering_subprotocols_to_a_server_that_lists_none_is_served_with_a_hint() -> None:
    chosen, warnings = asyncio.run(agreed("", ["json"]))
    assert chosen is None
    assert len(warnings) == 1
    assert 'add [server] subprotocols = ["json"]' in warnings[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"json"', "must be a list of subprotocol names"),
        ('["a b"]', "'a b': not a token"),
        ('["json", "json"]', "lists a name twice"),
    ],
)
def test_a_bad_subprotocols_value_is_one_line_naming_the_key(value: str, message: str) -> None:
    from simulator.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        feed(value)
    [line] = str(info.value).splitlines()
    assert line.startswith("x.toml:4: server.subprotocols")
    assert message in line
