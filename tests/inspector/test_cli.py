"""The inspector of a real ``sim run`` process: where it says the page is, the control
endpoint closing a real client, and ``--no-inspector`` leaving WebSocket only."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import DASHBOARD, async_test, client, close_code
from tests.e2e.test_run_cli import sim_run
from tests.inspector.http_client import request


@async_test(timeout=60)
async def test_run_serves_the_inspector_and_a_control_disconnect_reaches_a_real_client() -> None:
    async with sim_run(DASHBOARD, "--port", "0", "--speed", "10") as running:
        assert running.process.stderr is not None
        said = (await running.process.stderr.readline()).decode()
        assert said == running.url.replace("ws://", "inspector: http://") + "/\n"
        ws = await client(running.url)
        page = await request(running.url, "GET", "/")
        assert page.status == 200 and b"inspector.js" in page.body
        while (await request(running.url, "GET", "/status")).json()["connections_open"] != 1:
            await asyncio.sleep(0.05)  # the server registers the client after its handshake
        answer = await request(running.url, "POST", "/control/disconnect", json_body={"code": 4001})
        assert answer.json() == {"disconnected": [0], "code": 4001}
        assert await close_code(ws) == 4001
        status = (await request(running.url, "GET", "/status")).json()
        assert status["faults_by_kind"] == {"disconnect": 1}
        running.process.terminate()
        code, _, _ = await running.finish()
        assert code == 0


@async_test(timeout=60)
async def test_no_inspector_leaves_the_port_to_websocket_only() -> None:
    async with sim_run(DASHBOARD, "--port", "0", "--no-inspector") as running:
        for path in ("/", "/status", "/events", "/info"):
            answer = await request(running.url, "GET", path)
            assert answer.status == 426, path  # websockets: Upgrade Required
        answer = await request(running.url, "POST", "/control/disconnect", json_body={})
        assert answer.status == 0  # websockets reads GET only: it closes without a word
        health = await request(running.url, "GET", "/healthz")
        assert health.status == 200 and health.json()["status"] == "ok"
        ws = await client(running.url)
        await ws.send('{"type": "ping", "id": 1}')
        while '"pong"' not in await ws.recv():
            pass
        await ws.close()
        running.process.terminate()
        code, _, err = await running.finish()
        assert code == 0 and "inspector:" not in err
