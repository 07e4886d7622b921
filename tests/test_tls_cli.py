"""What `sim` tells a person about a throwaway certificate (simulator.cli.tls.announce),
and the --tls-* combinations it refuses before reading any file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from simulator.cli.tls import ServingTLS, TLSOptions, announce, serving_tls
from simulator.errors import UsageError

URL = "wss://127.0.0.1:3002"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServingTLS:
    directory = tmp_path_factory.mktemp("tls")
    tls = serving_tls(TLSOptions(self_signed=True, directory=str(directory)))
    assert tls is not None and tls.made is not None
    return tls


def test_trust_lines_name_the_ca_for_curl_python_node_and_the_spki_for_chromium(
    served: ServingTLS,
) -> None:
    assert served.made is not None
    out = io.StringIO()
    announce(served, URL, "plain", health=True, stream=out)
    lines = out.getvalue().splitlines()
    ca = served.made.ca_file
    assert all(line.startswith("sim: ") for line in lines)
    assert lines[0].endswith(f"trust its CA: {ca}")
    assert f"sim:   curl --cacert {ca} https://127.0.0.1:3002/healthz" in lines
    assert f"sim:   Python: ssl.create_default_context(cafile='{ca}')" in lines
    assert f"sim:   Node: NODE_EXTRA_CA_CERTS={ca} node your-client.js" in lines
    spki = served.made.spki_sha256
    assert f"sim:   Chromium: --ignore-certificate-errors-spki-list={spki}" in lines


def test_no_curl_line_for_a_server_without_healthz(served: ServingTLS) -> None:
    out = io.StringIO()
    announce(served, URL, "plain", health=False, stream=out)
    assert "curl" not in out.getvalue()
    assert "Python:" in out.getvalue()


def test_json_format_tells_it_in_one_object(served: ServingTLS) -> None:
    assert served.made is not None
    out = io.StringIO()
    announce(served, URL, "json", health=True, stream=out)
    (line,) = out.getvalue().splitlines()
    told = json.loads(line)
    assert told["event"] == "tls_certificate"
    assert Path(told["ca"]) == served.made.ca_file
    assert told["names"] == ["localhost", "127.0.0.1", "::1"]
    assert told["spki_sha256"] == served.made.spki_sha256


def test_nothing_is_told_about_a_given_certificate(served: ServingTLS) -> None:
    out = io.StringIO()
    announce(ServingTLS(served.context), URL, "plain", health=True, stream=out)
    announce(None, "ws://127.0.0.1:3002", "plain", health=True, stream=out)
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TLSOptions(cert="c.pem"), "--tls-cert needs --tls-key"),
        (TLSOptions(key="k.pem"), "--tls-key needs --tls-cert"),
        (TLSOptions(cert="c.pem", self_signed=True), "--tls-self-signed makes its own"),
        (TLSOptions(key="k.pem", self_signed=True), "--tls-self-signed makes its own"),
        (TLSOptions(directory="d"), "--tls-dir is where --tls-self-signed writes"),
    ],
)
def test_options_that_do_not_go_together_are_refused(options: TLSOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        serving_tls(options)


def test_no_tls_option_serves_plain_ws() -> None:
    assert serving_tls(TLSOptions()) is None
    assert not TLSOptions().given


def test_a_url_on_a_host_the_certificate_does_not_name_is_pointed_out(served: ServingTLS) -> None:
    out = io.StringIO()
    announce(served, "wss://0.0.0.0:3002", "plain", stream=out)
    assert out.getvalue().splitlines()[-1] == (
        "sim:   it is not valid for 0.0.0.0: connect to localhost or 127.0.0.1"
    )
    out = io.StringIO()
    announce(served, URL, "plain", stream=out)
    assert "not valid" not in out.getvalue()
