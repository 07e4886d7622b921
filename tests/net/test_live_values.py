"""Live values (``{ live = ... }``): what the server knows as it sends, and `sim generate`
filling them in the same way for its scripted clients.

The live server runs on the virtual clock over in-memory transports with ``--record``
(the helpers of ``test_generate_matches_live``); the generated file must hold the same
bytes, connection by connection, with and without faults that change how many clients
are connected.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest

from simulator.core.live import LiveKind, LiveState, fill, placeholder
from simulator.errors import ScenarioError
from simulator.scenario import parse_scenario
from tests.net.test_generate_matches_live import (
    EPOCH_NS,
    FAULTS,
    assert_same_rows,
    by_connection,
    record_live,
    render,
)

LIVE_FEED = """\
[scenario]
name = "live"
seed = 11

[server]
mode = "{mode}"

[[stream]]
name = "stats"
every = {{ min = "50ms", max = "300ms" }}
[stream.fields]
active_connections = {{ live = "connected_clients" }}
sent_before = {{ live = "messages_sent" }}
uptime = {{ live = "uptime_s" }}
me = {{ live = "connection" }}
cpu = {{ dist = "walk", start = 40, step = 3, min = 0, max = 100, round = 2 }}
"""


def live_scenario(
    mode: str = "broadcast", faults: tuple[str, ...] = (), *, shared_only: bool = False
) -> object:
    """The live feed; with ``shared_only``, only the values every client shares at an
    instant (the server frames those once for all)."""
    tables = [f'[[fault]]\nname = "f{i}"\n{body}\n' for i, body in enumerate(faults)]
    feed = LIVE_FEED.format(mode=mode)
    if shared_only:
        feed = "".join(line for line in feed.splitlines(True) if "sent_before" not in line)
        feed = "".join(line for line in feed.splitlines(True) if not line.startswith("me "))
    return parse_scenario(feed + "\n" + "\n".join(tables))


@pytest.mark.parametrize(
    ("mode", "faults", "shared_only"),
    [
        ("broadcast", (), False),
        ("per-connection", (), False),
        ("broadcast", (FAULTS["disconnect"],), False),
        ("broadcast", (FAULTS["outage"], FAULTS["drop"]), False),
        ("per-connection", (FAULTS["reset"],), False),
        ("broadcast", (FAULTS["disconnect"],), True),
    ],
    ids=[
        "broadcast",
        "per-connection",
        "disconnect",
        "outage-and-drop",
        "per-connection-reset",
        "shared-values-only",
    ],
)
def test_generate_fills_live_values_as_the_live_server_does(
    mode: str, faults: tuple[str, ...], shared_only: bool, tmp_path: Path
) -> None:
    scene = live_scenario(mode, faults, shared_only=shared_only)
    live, held = record_live(scene, tmp_path / "live.parquet", clients=3)  # type: ignore[arg-type]
    generated = render(scene, tmp_path / "generated.parquet", clients=3)  # type: ignore[arg-type]
    expected = by_connection(live, held)
    assert_same_rows(expected, by_connection(generated))
    texts = generated.filter(generated["kind"] == "text")
    assert texts.height > 10
    assert b"sim:live" not in b"".join(texts["payload"].to_list())


def test_live_values_say_who_is_connected_and_when(tmp_path: Path) -> None:
    """Without faults: three clients all along, each its own index and count, and the
    uptime is the message's timestamp less the epoch."""
    frame = render(live_scenario(), tmp_path / "g.parquet", clients=3)  # type: ignore[arg-type]
    rows = frame.filter(frame["kind"] == "text").select("conn", "payload").rows()
    count = {0: 0, 1: 0, 2: 0}
    for conn, payload in rows:
        message = orjson.loads(payload)
        data = message["data"]
        assert (data["active_connections"], data["me"]) == (3, conn)
        assert data["sent_before"] == count[conn]
        count[conn] += 1
        stamp = datetime.fromisoformat(message["timestamp"]).timestamp()
        assert data["uptime"] == pytest.approx(stamp - EPOCH_NS / 1e9, abs=1e-6)


def test_the_connected_count_falls_while_a_reset_client_is_away(tmp_path: Path) -> None:
    scene = live_scenario(faults=(FAULTS["reset"],))
    frame = render(scene, tmp_path / "g.parquet", clients=3)  # type: ignore[arg-type]
    counts = {
        orjson.loads(p)["data"]["active_connections"]
        for p in frame.filter(frame["kind"] == "text")["payload"].to_list()
    }
    assert counts == {2, 3}


def test_fill_leaves_a_payload_without_placeholders_untouched() -> None:
    payload = orjson.dumps({"a": placeholder(LiveKind.UPTIME_S), "b": "\x00x"})
    assert fill(payload, LiveState(0, 1, 0, 1_234_567_890)) == b'{"a":1.234,"b":"\\u0000x"}'
    plain = b'{"a":1}'
    assert fill(plain, LiveState(0, 1, 0, 0)) is plain


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'n = { live = "clients" }',
            "x.toml:8: stream[0].fields.n.live = 'clients': unknown live value (allowed:"
            " connected_clients, messages_sent, uptime_s, connection)",
        ),
        (
            'n = { live = "connection" }\nm = { expr = "n + 1" }',
            "x.toml:9: stream[0].fields.m.expr = 'n + 1': at column 1: 'n' is a live value,"
            " known only as the message is sent",
        ),
    ],
)
def test_a_bad_live_field_is_named_with_its_line(body: str, message: str) -> None:
    head = '[scenario]\nname = "t"\nseed = 1\n[[stream]]\nname = "s"\nevery = "1s"\n'
    text = f"{head}[stream.fields]\n{body}\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.toml")
    assert str(info.value).splitlines() == [message]
