"""``wss://`` from real processes: `sim run --tls-self-signed`, `sim replay --tls-cert`,
`sim record --upstream ... --tls-self-signed` (the proxy's listening side) and
`sim connect --tls-ca`, each checked by a real TLS client that verifies the
certificate against the printed authority, on 127.0.0.1 only.

How it was checked that these tests can fail: ``Listener._listen`` handing ``None``
instead of its ``tls`` to the socket (a plain socket behind a URL that still says
``wss://``) made every feed test fail (the TLS client's hello is answered with a reset,
and `sim connect` only ever retries).
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import ssl
import sys
import urllib.request
from pathlib import Path

import orjson
import polars as pl
import pytest
from websockets.asyncio.client import connect

from simulator.errors import ConnectError
from simulator.net.server import serve
from simulator.net.tls import make_self_signed, server_context
from simulator.net.wire import Handler
from simulator.net.wire_client import connect as wire_connect
from simulator.storage.reader import read_recording
from tests.e2e.conftest import DASHBOARD, async_test, client, close_code, receive, scenario
from tests.e2e.test_record_cli import FEED, server_messages
from tests.e2e.test_run_cli import ENV, Running, sim, sim_serving

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "energy-dashboard-sample.parquet"
#: What `sim run --tls-self-signed` prints on stderr after the URL line.
TRUST_LINES = 6


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` and nothing else."""
    return ssl.create_default_context(cafile=ca_file)


async def trust_lines(running: Running) -> list[str]:
    """The lines about the throwaway certificate printed after the URL line."""
    assert running.process.stderr is not None
    return [
        (await running.process.stderr.readline()).decode().rstrip("\n") for _ in range(TRUST_LINES)
    ]


@async_test(timeout=60)
async def test_run_self_signed_feeds_a_client_that_verifies_the_printed_ca(
    tmp_path: Path,
) -> None:
    args = (DASHBOARD, "--port", "0", "--tls-self-signed", "--tls-dir", tmp_path)
    async with sim_serving("run", *args) as running:
        assert running.url.startswith("wss://127.0.0.1:")
        lines = await trust_lines(running)
        ca = tmp_path / "ca.pem"
        assert lines[0].endswith(f"trust its CA: {ca}")
        port = running.url.rsplit(":", 1)[1]
        # The certificate names both: the URL printed, and localhost.
        for url in (running.url, f"wss://localhost:{port}"):
            ws = await client(url, ssl=trusting(ca))
            first = await receive(ws)
            assert "$timestamp" in first or "type" in first
            await ws.close()


@async_test(timeout=60)
async def test_a_client_that_does_not_trust_the_certificate_is_refused(tmp_path: Path) -> None:
    args = (DASHBOARD, "--port", "0", "--tls-self-signed", "--tls-dir", tmp_path, "--quiet")
    async with sim_serving("run", *args) as running:
        with pytest.raises(ssl.SSLCertVerificationError):
            await client(running.url)  # the system's CAs only
        # The reference client's wire says why, as one ConnectError.
        with pytest.raises(ConnectError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
            await wire_connect(running.url, Handler())
        # And the same client connects once it trusts the CA.
        conn = await wire_connect(running.url, Handler(), ssl=trusting(tmp_path / "ca.pem"))
        await conn.close()


@async_test(timeout=60)
async def test_healthz_answers_over_https(tmp_path: Path) -> None:
    args = (DASHBOARD, "--port", "0", "--tls-self-signed", "--tls-dir", tmp_path, "--quiet")
    async with sim_serving("run", *args) as running:
        health = running.url.replace("wss://", "https://") + "/healthz"
        context = trusting(tmp_path / "ca.pem")

        def fetch() -> dict[str, object]:
            with urllib.request.urlopen(health, context=context, timeout=10) as response:
                status: dict[str, object] = json.loads(response.read())
                return status

        assert (await asyncio.to_thread(fetch))["status"] == "ok"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
@async_test(timeout=60)
async def test_the_printed_curl_command_reaches_healthz(tmp_path: Path) -> None:
    """The trust instructions are runnable: the curl line, as printed, verifies the
    certificate and gets the health check."""
    async with sim_serving("run", DASHBOARD, "--port", "0", "--tls-self-signed") as running:
        lines = await trust_lines(running)
        command = next(line for line in lines if line.startswith("sim:   curl "))
        curl = await asyncio.create_subprocess_exec(
            *shlex.split(command.removeprefix("sim:   ")),
            "--silent",
            "--show-error",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await curl.communicate()
    assert curl.returncode == 0, err
    assert json.loads(out)["status"] == "ok"


@async_test(timeout=60)
async def test_replay_serves_a_recording_over_tls_with_a_given_certificate() -> None:
    frame = read_recording(SAMPLE).frame.filter(pl.col("kind") == "text")
    first = frame.filter((pl.col("sender") == "server") & (pl.col("conn") == 0))
    recorded = first["payload"].to_list()
    args = (
        *("replay", SAMPLE, "--port", "0", "--speed", "max", "--free-run", "--quiet"),
        *("--conn", "0"),
        *("--tls-cert", DATA / "localhost-cert.pem", "--tls-key", DATA / "localhost-key.pem"),
    )
    async with sim_serving(*args) as replayer:
        assert replayer.url.startswith("wss://127.0.0.1:")
        context = trusting(DATA / "localhost-cert.pem")
        async with connect(replayer.url, ssl=context, max_queue=None) as ws:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in recorded]
    assert [m.encode() if isinstance(m, str) else m for m in got] == recorded


@async_test(timeout=60)
async def test_record_proxy_listening_with_tls_relays_and_records_the_feed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "proxy.parquet"
    async with serve(scenario(FEED), port=0) as upstream:
        args = (
            *("--upstream", upstream.url, "--listen", "127.0.0.1:0", "--out", out),
            *("--tls-self-signed", "--tls-dir", tmp_path / "tls", "--quiet"),
        )
        async with sim_serving("record", *args) as proxy:
            assert proxy.url.startswith("wss://127.0.0.1:")
            ws = await client(proxy.url, ssl=trusting(tmp_path / "tls" / "ca.pem"))
            got = [await receive(ws) for _ in range(10)]
            await ws.close()
            proxy.process.send_signal(signal.SIGTERM)
            code, _, err = await proxy.finish()
    assert code == 0, err
    assert [orjson.loads(m) for m in server_messages(out)][:10] == got


@async_test(timeout=60)
async def test_sim_connect_with_tls_ca_prints_the_feed(tmp_path: Path) -> None:
    """The reference client as a command verifies a ``wss://`` server with --tls-ca (the
    server here is the library's ``serve(..., tls=...)``, in this process)."""
    made = make_self_signed(tmp_path)
    tls = server_context(made.cert_file, made.key_file)
    async with serve(scenario(FEED), port=0, tls=tls) as server:
        assert server.url.startswith("wss://")
        watcher = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "simulator", "connect", server.url),
            *("--tls-ca", str(made.ca_file), "--duration", "1s", "--no-heartbeat"),
            *("--log-format", "json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        out, err = await watcher.communicate()
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert {e["stream"] for e in events if e["event"] == "message"} == {"tick"}, events


BAD = [
    (("--tls-cert", "{data}/localhost-cert.pem"), "--tls-cert needs --tls-key"),
    (("--tls-key", "{data}/localhost-key.pem"), "--tls-key needs --tls-cert"),
    (
        ("--tls-cert", "{tmp}/missing.pem", "--tls-key", "{data}/localhost-key.pem"),
        "--tls-cert {tmp}/missing.pem: no such file",
    ),
    (
        ("--tls-cert", "{data}/localhost-cert.pem", "--tls-key", "{tmp}/other/key.pem"),
        "--tls-key {tmp}/other/key.pem: is not the private key of the certificate",
    ),
    (
        ("--tls-cert", "{data}/localhost-key.pem", "--tls-key", "{data}/localhost-key.pem"),
        "--tls-cert {data}/localhost-key.pem: no PEM certificate",
    ),
    (("--tls-self-signed", "--tls-cert", "{data}/localhost-cert.pem"), "--tls-self-signed makes"),
    (("--tls-dir", "{tmp}/x"), "--tls-dir is where --tls-self-signed writes"),
]


@pytest.mark.parametrize("command", ["run", "replay", "record"])
def test_bad_tls_options_end_in_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    """Every serving command checks its --tls-* options the same way, before it listens."""
    make_self_signed(tmp_path / "other")
    serving = {
        "run": ("run", DASHBOARD, "--port", "0"),
        "replay": ("replay", SAMPLE, "--port", "0"),
        "record": (
            *("record", "--upstream", "ws://127.0.0.1:9", "--listen", "127.0.0.1:0"),
            *("--out", tmp_path / "x.parquet"),
        ),
    }[command]
    # The table is serving_tls's, which every command calls: run gets all of it, the
    # others one pairing mistake and one bad file.
    for options, message in BAD if command == "run" else (BAD[0], BAD[3]):
        filled = [o.format(data=DATA, tmp=tmp_path) for o in options]
        result = sim(*serving, *filled)
        expected = message.format(data=DATA, tmp=tmp_path)
        assert result.returncode == 2, (options, result.stderr)
        assert result.stdout == ""  # failed before listening: no URL line
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(expected), result.stderr


def test_record_connect_refuses_the_listening_tls_options(tmp_path: Path) -> None:
    result = sim("record", "--connect", "ws://127.0.0.1:9", "--out", tmp_path / "x.parquet")
    plus_tls = sim(
        *("record", "--connect", "ws://127.0.0.1:9", "--out", tmp_path / "x.parquet"),
        "--tls-self-signed",
    )
    assert result.returncode == 1  # unreachable: the options alone are fine
    assert plus_tls.returncode == 2
    assert plus_tls.stderr.strip() == (
        "--tls-* serve the proxy's --listen side: they go with --upstream"
    )


@pytest.mark.parametrize(
    ("fault", "code"),
    [('kind = "disconnect"\ncode = 4001', 4001), ('kind = "reset"', 1006)],
    ids=["disconnect", "reset"],
)
@async_test(timeout=60)
async def test_connection_faults_reach_a_tls_client_as_they_would_over_tcp(
    tmp_path: Path, fault: str, code: int
) -> None:
    """A close frame goes through TLS; a reset (no close frame) ends the TLS stream
    without one, and the client sees 1006."""
    made = make_self_signed(tmp_path)
    sc = scenario(FEED + f'\n[[fault]]\n{fault}\nat = "200ms"\n')
    async with serve(sc, port=0, tls=server_context(made.cert_file, made.key_file)) as server:
        ws = await client(server.url, ssl=trusting(made.ca_file))
        assert await close_code(ws) == code


@async_test(timeout=60)
async def test_a_throwaway_certificate_in_a_temp_dir_is_removed_at_exit() -> None:
    async with sim_serving("run", DASHBOARD, "--port", "0", "--tls-self-signed") as running:
        lines = await trust_lines(running)
        ca = Path(lines[0].rsplit("trust its CA: ", 1)[1])
        assert ca.is_file()
        running.process.send_signal(signal.SIGTERM)
        code, _, err = await running.finish()
    assert code == 0, err
    assert not ca.parent.exists()
