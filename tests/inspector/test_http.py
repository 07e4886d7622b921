"""The inspector over real sockets on 127.0.0.1, beside a live server's WebSocket
endpoint: the page and its files, ``/status`` against ``server.stats()``, ``/events``,
the control endpoint against real clients, and the limits.

In-process (``serve`` + ``attach``) so a test can compare with the server's own
figures; ``test_cli.py`` does the same through a real ``sim run`` process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from simulator.inspector import attach
from simulator.inspector import feed as feed_module
from simulator.inspector import http as http_module
from simulator.inspector.http import HttpRequest
from simulator.net.client_options import batch_asked
from simulator.net.log import EventKind
from simulator.net.proxy import record_proxy
from simulator.net.replay import replay
from simulator.net.server import serve
from tests.e2e.conftest import async_test, client, close_code, connected, expect_event, scenario
from tests.inspector.http_client import EventReader, host_port, request

FEED = scenario(
    """
    [scenario]
    name = "ticks"
    seed = 7

    [[stream]]
    name = "tick"
    every = "50ms"
    [stream.fields]
    n = { dist = "counter" }

    [[stream]]
    name = "tock"
    every = "200ms"
    [stream.fields]
    n = { dist = "counter" }
    """
)

#: Figures that do not move while nobody connects, disconnects or misbehaves.
STEADY = ("connections_open", "connections_total", "rejected", "client_errors", "slow_closed")


@async_test()
async def test_the_page_is_served_and_a_websocket_handshake_to_slash_stays_one() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        page = await request(server.url, "GET", "/")
        assert page.status == 200 and page.headers["content-type"].startswith("text/html")
        for name in (b"/static/inspector.js", b"/static/inspector.css"):
            assert name in page.body
            asset = await request(server.url, "GET", name.decode())
            assert asset.status == 200 and len(asset.body) > 1000
        assert "//" not in page.body.decode().replace("http://www.w3.org", "")  # no CDN
        # A WebSocket client connecting to the same path gets the feed, not the page.
        ws = await client(server.url + "/")
        assert json.loads(await ws.recv())["type"] in ("tick", "tock")
        await ws.close()
        # The page's own feed asks for batches (net.client_options), and gets the feed.
        query = (await request(server.url, "GET", "/info")).json()["feed_query"]
        assert batch_asked("/" + query) == 0.1
        ws = await client(server.url + "/" + query)
        assert json.loads(await ws.recv())["type"] in ("tick", "tock")
        await ws.close()
        health = await request(server.url, "GET", "/healthz")
        assert health.json()["status"] == "ok"


@async_test()
async def test_status_has_the_figures_of_server_stats() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        _, ws = await connected(server)
        await asyncio.sleep(0.3)  # some messages, so the counts are not all zero
        before = server.stats()
        status = (await request(server.url, "GET", "/status")).json()
        after = server.stats()
        for name in STEADY:
            assert status[name] == getattr(before, name) == getattr(after, name), name
        assert set(status) >= {f.name for f in dataclasses.fields(before)}
        for stream in ("tick", "tock"):
            got = status["messages_by_stream"][stream]
            assert before.messages_by_stream[stream] <= got <= after.messages_by_stream[stream]
        assert before.frames_sent <= status["frames_sent"] <= after.frames_sent
        assert before.uptime_s <= status["uptime_s"] <= after.uptime_s
        [conn] = status["connections"]
        assert conn["conn"] == 0 and conn["state"] == "open"
        await ws.close()


@async_test()
async def test_docs_list_every_field_of_status() -> None:
    """docs/inspector.md's `GET /status` row names every field `sim run` answers with."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "inspector.md").read_text()
    [row] = [line for line in docs.splitlines() if line.startswith("| `GET /status` |")]
    async with serve(FEED, port=0) as server:
        attach(server)
        status = (await request(server.url, "GET", "/status")).json()
    assert [name for name in status if f"`{name}`" not in row] == []


@async_test()
async def test_events_streams_status_and_the_server_log() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        events = await EventReader.open(server.url)
        first, data = await events.next()
        assert events.status == 200 and first == "status" and data["connections_open"] == 0
        conn, ws = await connected(server)
        log = await events.until(
            "log", lambda d: any(e["event"] == "connected" for e in d["events"])
        )
        assert [e["conn"] for e in log["events"] if e["event"] == "connected"] == [conn]
        status = await events.until("status", lambda d: d["connections_open"] == 1)
        assert status["connections"][0]["conn"] == conn
        # Nothing of the side channel reaches the WebSocket client's feed.
        await ws.send('{"type": "ping", "id": "fence"}')
        while True:
            message = await ws.recv()
            assert '"event"' not in message
            if '"pong"' in message:
                break
        events.close()
        await ws.close()


@async_test()
async def test_control_disconnect_closes_the_chosen_real_client_with_the_code() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        first, ws_first = await connected(server)
        second, ws_second = await connected(server)
        answer = await request(
            server.url,
            "POST",
            "/control/disconnect",
            json_body={"conn": second, "code": 4000, "reason": "from the test"},
        )
        assert answer.status == 200 and answer.json() == {"disconnected": [second], "code": 4000}
        assert await close_code(ws_second) == 4000
        assert ws_second.close_reason == "from the test"
        assert ws_first.state.name == "OPEN"
        [fault] = [f for f in server.on_demand.injected if f.conn == second]
        assert fault.kind == "disconnect" and server.stats().faults_by_kind == {"disconnect": 1}
        # With no body: every connection, with 1012 (service restart).
        answer = await request(server.url, "POST", "/control/disconnect")
        assert answer.json() == {"disconnected": [first], "code": 1012}
        assert await close_code(ws_first) == 1012


@async_test()
async def test_control_outage_resets_clients_and_refuses_handshakes_for_its_duration() -> None:
    async with serve(FEED, port=0, speed=10) as server:
        attach(server)
        _, ws = await connected(server)
        answer = await request(
            server.url,
            "POST",
            "/control/faults",
            json_body={"kind": "outage", "duration": "5s", "retry_after": "20s"},
        )
        assert answer.status == 200, answer.body
        assert answer.json()["triggered"] == "outage"
        assert await close_code(ws) == 1006
        with pytest.raises(InvalidStatus) as refused:
            await client(server.url)
        response = refused.value.response
        # Retry-After in wall seconds: 20 s of scenario time at speed 10.
        assert response.status_code == 503 and response.headers["Retry-After"] == "2"
        reopened = expect_event(server, EventKind.CONNECTED)
        while True:  # the outage lasts 0.5 s of wall time: then handshakes succeed again
            try:
                ws = await client(server.url)
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
        await reopened
        await ws.close()


@async_test()
async def test_control_fault_table_stall_reaches_only_the_listed_connection() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        first, _ = await connected(server)
        second, _ = await connected(server)
        answer = await request(
            server.url,
            "POST",
            "/control/faults",
            json_body={"kind": "stall", "connections": [second], "name": "freeze"},
        )
        assert answer.json() == {"triggered": "stall", "fault": "freeze", "connections": [second]}
        status = (await request(server.url, "GET", "/status")).json()
        stalled = {c["conn"]: c["stalled"] for c in status["connections"]}
        assert stalled == {first: False, second: True}


@async_test()
async def test_a_fault_for_connections_none_of_which_is_open_is_a_404_naming_them() -> None:
    """Nothing would happen: a 200 would say something did."""
    async with serve(FEED, port=0) as server:
        attach(server)
        gone, ws = await connected(server)
        left = expect_event(server, EventKind.DISCONNECTED)
        await ws.close()
        await left
        table = {"kind": "stall", "duration": "2s", "connections": [gone, 99]}
        answer = await request(server.url, "POST", "/control/faults", json_body=table)
        assert answer.status == 404, answer.body
        assert answer.json() == {
            "error": f"no open connections {gone}, 99",
            "key": "connections",
            "found": [gone, 99],
        }
        answer = await request(server.url, "POST", "/control/disconnect", json_body={"conn": 99})
        assert answer.status == 404
        assert answer.json() == {"error": "no open connection 99", "key": "conn", "found": 99}
        assert server.on_demand.injected == []


@async_test()
async def test_a_fault_for_some_open_connections_hits_those_and_names_the_rest() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        conn, _ = await connected(server)
        table = {"kind": "stall", "connections": [99, conn]}
        answer = await request(server.url, "POST", "/control/faults", json_body=table)
        assert answer.status == 200, answer.body
        assert answer.json() == {
            "triggered": "stall",
            "fault": "control",
            "connections": [conn],
            "not_open": [99],
        }
        assert [f.conn for f in server.on_demand.injected] == [conn]


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ({"kind": "drop"}, "kind", "acts on messages"),
        ({"kind": "explode"}, "kind", "one of"),
        ({"kind": "disconnect", "code": 99}, "code", "close code"),
        ({"kind": "disconnect", "cod": 1000}, "cod", "did you mean 'code'"),
        ({"kind": "disconnect", "every": "1s"}, "every", "now"),
        ({"kind": "outage"}, "duration", "required"),
        ({"kind": "reject", "delay": "1s"}, "duration", "required"),
        ({"kind": "reject", "status": 401, "delay": "1s", "duration": "1s"}, "delay", "status"),
        ({"kind": "reject", "status": 200, "duration": "1s"}, "status", "401, 403, 429, 503"),
        ({"kind": "reject", "delay": "1s", "duration": "1s", "respond": "close"}, "respond", ""),
        ({"kind": "throttle"}, "bytes_per_s", ""),
        ({"kind": "stall", "connections": 0.5}, "connections", ""),
        ({"kind": "reset", "name": "x" * 101}, "name", "at most 100 characters"),
    ],
)
@async_test()
async def test_a_bad_fault_table_is_a_json_400_naming_the_key_and_what_was_found(
    table: dict[str, object], key: str, fragment: str
) -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        answer = await request(server.url, "POST", "/control/faults", json_body=table)
        assert answer.status == 400 and answer.headers["content-type"] == "application/json"
        error = answer.json()
        assert error["key"] == key and fragment in error["error"], error
        # What was there, as docs/inspector.md lists; a key left out has nothing found.
        assert ("found" in error) == (key in table), error
        assert server.on_demand.injected == []
    if key in table and key != "name":  # a long name is quoted cut short
        assert error["found"] == table[key]
    if table == {"kind": "drop"}:
        assert "disconnect" in error["allowed"]
    if table.get("cod"):
        # What it offers instead is what a fault carried out now may have: no schedule.
        assert "code" in error["allowed"]
        assert not {"at", "every", "window", "poisson", "limit"} & set(error["allowed"])
        assert "every" not in error["error"]


@async_test()
async def test_a_misspelt_disconnect_key_is_a_400_of_the_same_shape_as_for_faults() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        body = {"con": 3}
        answer = await request(server.url, "POST", "/control/disconnect", json_body=body)
        assert answer.status == 400
        assert answer.json() == {
            "error": "unknown key; did you mean 'conn'? (allowed: conn, code, reason)",
            "key": "con",
            "found": 3,
            "allowed": ["conn", "code", "reason"],
        }


@async_test()
async def test_control_requests_are_checked_before_anything_is_done() -> None:
    async with serve(FEED, port=0) as server:
        inspector = attach(server)
        _, ws = await connected(server)
        cases = [
            ("GET", "/control/disconnect", {}, b"", 405),
            ("POST", "/control/disconnect", {"Content-Type": "text/plain"}, b"{}", 415),
            ("POST", "/control/disconnect", {"Origin": "http://evil.example"}, b"", 403),
            # DNS rebinding: a page of evil.example, rebound to 127.0.0.1, is of its own
            # origin; its Host gives it away.
            (
                "POST",
                "/control/disconnect",
                {"Host": "evil.example:1", "Origin": "http://evil.example:1"},
                b"",
                403,
            ),
            ("POST", "/control/disconnect", {"Content-Type": "application/json"}, b"{", 400),
            ("POST", "/control/nothing", {}, b"", 404),
        ]
        for method, path, headers, body, status in cases:
            answer = await request(server.url, method, path, headers=headers, body=body)
            assert answer.status == status, (method, path, headers, answer.body)
        # From a peer that is not this machine (the request as the router parses it).
        remote = HttpRequest("POST", "/control/disconnect", {}, {}, b"", "192.0.2.7")
        refused = inspector.handle(remote)
        assert refused.status == 403 and b"--control-from-any" in refused.body  # type: ignore[union-attr]
        inspector.allow_remote_control = True
        assert inspector.handle(remote).status == 200  # type: ignore[union-attr]
        assert await close_code(ws) == 1012


@async_test()
async def test_unknown_paths_and_methods_get_json_errors() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        assert (await request(server.url, "GET", "/nope")).status == 404
        assert (await request(server.url, "GET", "/static/../app.py")).status == 404
        answer = await request(server.url, "DELETE", "/status")
        assert answer.status == 405 and answer.headers["allow"] == "GET"


@async_test()
async def test_a_wrong_method_is_refused_in_the_json_of_every_other_refusal() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        missing = await request(server.url, "GET", "/nope")
        for method, path in (("DELETE", "/status"), ("GET", "/control/faults")):
            answer = await request(server.url, method, path)
            assert answer.status == 405
            # Byte for byte as the others are written (compact JSON, one line).
            assert answer.body == json.dumps(answer.json(), separators=(",", ":")).encode() + b"\n"
            assert (
                missing.body == json.dumps(missing.json(), separators=(",", ":")).encode() + b"\n"
            )


@async_test()
async def test_a_body_over_the_limit_is_refused_with_413() -> None:
    async with serve(FEED, port=0) as server:
        attach(server)
        big = b'{"kind": "reset", "name": "' + b"x" * http_module.MAX_BODY_BYTES + b'"}'
        answer = await request(
            server.url,
            "POST",
            "/control/faults",
            body=big,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 413
        assert server.on_demand.injected == []


@async_test()
async def test_a_request_not_finished_in_time_gets_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_module, "REQUEST_TIMEOUT_S", 0.2)
    async with serve(FEED, port=0) as server:
        attach(server)
        reader, writer = await asyncio.open_connection(*host_port(server.url))
        # A whole head announcing a body that never comes.
        writer.write(b"POST /control/faults HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 408 ")
        writer.close()


@async_test()
async def test_a_subscriber_that_does_not_read_is_dropped_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "MAX_STREAM_BUFFER_BYTES", 64 * 1024)
    async with serve(FEED, port=0) as server:
        inspector = attach(server)
        host, port = host_port(server.url)
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect((host, port))
        stuck.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        reading = await EventReader.open(server.url)
        await reading.next()
        feed = inspector.feed
        assert len(feed.subscribers) == 2
        # Far more than the socket buffers and the limit hold, in bounded rounds.
        for _ in range(400):
            for _ in range(50):
                server.log.emit(EventKind.WARNING, message="x" * 1000)
            await asyncio.sleep(feed_module.FLUSH_INTERVAL_S / 4)
            if len(feed.subscribers) == 1:
                break
        assert len(feed.subscribers) == 1
        server.log.emit(EventKind.WARNING, message="still here")
        last = await reading.until(
            "log", lambda d: any(e.get("message") == "still here" for e in d["events"])
        )
        assert last["events"]
        reading.close()
        stuck.close()


SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "energy-dashboard-sample.parquet"


@async_test()
async def test_replay_status_says_where_each_client_is_in_its_recorded_connection() -> None:
    async with replay(SAMPLE, port=0, free_run=True, loop=True) as server:
        attach(server, source=str(SAMPLE))
        info = (await request(server.url, "GET", "/info")).json()
        assert info["command"] == "replay" and info["scenario"] == str(SAMPLE)
        assert "feed_query" not in info  # replay serves the page unbatched
        # The sample's client pinged and subscribed: its answers are no streams.
        assert {s["type"] for s in info["streams"]} == {
            "system_stats",
            "dashboard_stats",
            "energy_market",
            "notification",
            "transaction",
        }
        recorded = info["recorded"]
        assert set(recorded) == {str(c) for c in server.plans}
        for conn, plan in server.plans.items():
            assert recorded[str(conn)]["duration_s"] == plan.duration_ns / 1e9
            assert recorded[str(conn)]["pushes"] == sorted(recorded[str(conn)]["pushes"])
        ws = await client(server.url)
        await ws.recv()
        status = (await request(server.url, "GET", "/status")).json()
        [where] = status["replay"]
        assert where["conn"] == 0 and where["recorded_conn"] == server.recorded_conn_for(0)
        assert 0 <= where["step"] < where["steps"] and where["position_s"] >= 0
        assert status["frames_sent"] >= 1 and status["connections_open"] == 1
        # Its row in the connections table: where it connects from, what it was sent.
        [row] = status["connections"]
        local = ws.local_address
        assert row["remote"] == f"{local[0]}:{local[1]}" and row["sent"] >= 1
        # A replay takes no faults on demand.
        answer = await request(server.url, "POST", "/control/disconnect", json_body={})
        assert answer.status == 404
        await ws.close()


@async_test()
async def test_a_recording_proxy_shows_the_traffic_passing_through(tmp_path: Path) -> None:
    async with (
        serve(FEED, port=0) as upstream,
        record_proxy(upstream.url, tmp_path / "through.parquet") as proxy,
    ):
        attach(proxy)
        info = (await request(proxy.url, "GET", "/info")).json()
        assert info["command"] == "record" and info["streams"] == []
        assert "feed_query" not in info  # the page's feed goes upstream as it is
        ws = await client(proxy.url)
        await ws.send('{"type": "ping", "id": "through"}')
        while '"through"' not in await ws.recv():
            pass
        status = (await request(proxy.url, "GET", "/status")).json()
        assert status["relayed"]["from clients"] == 1
        assert status["relayed"]["from upstream"] >= 1  # the pong, at least
        assert status["connections_open"] == 1 and status["connections_total"] == 1
        assert [c["conn"] for c in status["connections"]] == [0]
        # The proxy takes no faults on demand.
        answer = await request(proxy.url, "POST", "/control/disconnect", json_body={})
        assert answer.status == 404
        await ws.close()


@async_test()
async def test_control_outage_with_respond_close_closes_new_connections_with_1013() -> None:
    async with serve(FEED, port=0, speed=10) as server:
        attach(server)
        table = {"kind": "outage", "duration": "60s", "retry_after": "20s", "respond": "close"}
        answer = await request(server.url, "POST", "/control/faults", json_body=table)
        assert answer.status == 200, answer.body
        ws = await client(server.url)  # accepted, then closed at once: what a browser sees
        assert await close_code(ws) == 1013
        assert ws.close_reason == "retry-after=2"  # 20 s of scenario time at speed 10


@async_test()
async def test_broken_requests_get_an_answer_and_log_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HEAD gets the head alone; a target urlsplit refuses gets 400; neither leaves a
    traceback in the log (both used to, once per request)."""
    async with serve(FEED, port=0) as server:
        attach(server)
        host, port = host_port(server.url)
        for raw in (
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET //[ HTTP/1.1\r\nHost: x\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 "), answer
            if raw.startswith(b"HEAD"):
                assert body == b""
            else:
                assert head.startswith(b"HTTP/1.1 400")
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@async_test()
async def test_a_request_whose_lines_end_in_a_bare_lf_is_answered() -> None:
    """`printf 'GET /status HTTP/1.1\\nHost: x\\n\\n' | nc`: answered, not left to time out."""
    async with serve(FEED, port=0) as server:
        attach(server)
        host, port = host_port(server.url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /status HTTP/1.1\nHost: x\n\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
