"""Which requests take a replay's recorded connection or open the proxy's upstream:
exactly those websockets would accept (`simulator.net.handshake.is_upgrade`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from simulator.net.handshake import is_upgrade

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASE = {
    "Upgrade": ["websocket"],
    "Connection": ["Upgrade"],
    "Sec-WebSocket-Key": [KEY],
    "Sec-WebSocket-Version": ["13"],
}
#: What a header may be given as, right or wrong (found by a review: substring
#: matching took "websocket, h2c" and "upgradex" for an upgrade).
VARIANTS = {
    "Upgrade": [
        ["websocket"],
        ["WebSocket"],
        ["websocket, h2c"],
        ["websocket/13"],
        ["xwebsocket"],
        ["websocket", "websocket"],
        [],
    ],
    "Connection": [
        ["Upgrade"],
        ["keep-alive, Upgrade"],
        ["keep-alive", "Upgrade"],
        ["upgradex"],
        ["keep-alive"],
        [],
    ],
    "Sec-WebSocket-Key": [[KEY], [KEY.rstrip("=")], ["dGhlIHNhbXBs ZSBub25jZQ=="], [KEY, KEY], []],
    "Sec-WebSocket-Version": [["13"], ["13", "13"], ["8"], []],
    # Offers websockets must parse (a malformed one is a 400: the review after).
    "Sec-WebSocket-Protocol": [[], ["chat"], ["chat, feed.v1"], [","], ["a b"]],
    "Sec-WebSocket-Extensions": [[], ["permessage-deflate"], [";"], ["x; y="]],
}


def request(
    headers: dict[str, list[str]], method: str = "GET", protocol: str = "HTTP/1.1"
) -> Request:
    pairs = [("Host", "127.0.0.1")] + [(k, v) for k, vs in headers.items() for v in vs]
    return Request("/", Headers(pairs), method=method, protocol=protocol)


@pytest.mark.parametrize(
    ("method", "protocol"), [("GET", "HTTP/1.1"), ("POST", "HTTP/1.1"), ("GET", "HTTP/1.0")]
)
def test_only_a_get_in_http_1_1_is_an_upgrade(method: str, protocol: str) -> None:
    """websockets refuses any other method (405) and HTTP/1.0 (505): the proxy opened an
    upstream for them, and a replay gave them a recorded refusal."""
    req = request(BASE, method, protocol)
    assert is_upgrade(req) == (ServerProtocol().accept(req).status_code == 101)


@given(st.fixed_dictionaries({name: st.sampled_from(values) for name, values in VARIANTS.items()}))
def test_a_request_is_an_upgrade_exactly_when_websockets_accepts_it(
    headers: dict[str, list[str]],
) -> None:
    req = request(headers)
    accepted = ServerProtocol().accept(req).status_code == 101
    assert is_upgrade(req) == accepted


@pytest.mark.parametrize(
    ("name", "values"), [(name, values) for name, vs in VARIANTS.items() for values in vs]
)
def test_one_header_varied_is_an_upgrade_exactly_when_websockets_accepts_it(
    name: str, values: list[str]
) -> None:
    """Each variant alone, the other headers right (drawn together above, a variant
    rarely meets all the others right)."""
    req = request({**BASE, name: values})
    assert is_upgrade(req) == (ServerProtocol().accept(req).status_code == 101)


@pytest.mark.parametrize("name", list(BASE))
def test_a_request_without_one_of_the_headers_is_no_upgrade(name: str) -> None:
    assert is_upgrade(request(BASE))
    assert not is_upgrade(request({k: v for k, v in BASE.items() if k != name}))
