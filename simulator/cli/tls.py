"""The ``--tls-*`` options of the commands that serve (``sim run``, ``sim replay``,
``sim record --upstream``): which certificate to serve ``wss://`` with, and what a
person is told about a throwaway one so that their client trusts it.

The options themselves are declared by :func:`simulator.cli.options.tls_options`.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

import orjson

from simulator.errors import UsageError

if TYPE_CHECKING:
    # Imported when TLS is asked for: cryptography is not loaded by every command.
    from simulator.net.tls import SelfSigned


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """What was given: ``--tls-cert``, ``--tls-key``, ``--tls-self-signed``, ``--tls-dir``."""

    cert: str | None = None
    key: str | None = None
    self_signed: bool = False
    directory: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.cert or self.key or self.self_signed or self.directory)


@dataclass(frozen=True, slots=True)
class ServingTLS:
    """The server context, and the throwaway certificate when one was made."""

    context: ssl.SSLContext
    made: SelfSigned | None = None


def serving_tls(options: TLSOptions) -> ServingTLS | None:
    """The TLS to serve with (``None``: plain ``ws://``). A throwaway certificate goes
    to ``--tls-dir``, else to a new temporary directory removed when the process exits.

    Raises :class:`UsageError` for options that do not go together and for files that
    are missing, unreadable, or do not match.
    """
    from simulator.net.tls import make_self_signed, server_context

    if options.self_signed and (options.cert or options.key):
        raise UsageError("--tls-self-signed makes its own certificate: drop --tls-cert/--tls-key")
    if options.directory and not options.self_signed:
        raise UsageError("--tls-dir is where --tls-self-signed writes: add --tls-self-signed")
    if options.cert and not options.key:
        raise UsageError("--tls-cert needs --tls-key (the certificate's private key, PEM)")
    if options.key and not options.cert:
        raise UsageError("--tls-key needs --tls-cert (the certificate, PEM)")
    if options.cert and options.key:
        return ServingTLS(server_context(options.cert, options.key))
    if not options.self_signed:
        return None
    directory = options.directory
    if directory is None:
        directory = tempfile.mkdtemp(prefix="sim-tls-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    made = make_self_signed(directory)
    return ServingTLS(server_context(made.cert_file, made.key_file), made)


def announce(
    tls: ServingTLS | None,
    url: str,
    log_format: str,
    *,
    health: bool = False,
    stream: TextIO = sys.stderr,
) -> None:
    """Tell how to trust a throwaway certificate (nothing for a given one): on
    ``stream``, as plain lines or one JSON object (``log_format``). ``health``: the
    server answers ``GET /healthz``, so a curl line can show the trust at work."""
    if tls is None or tls.made is None:
        return
    from simulator.cli.console import say  # the log's imports: only when it is said

    made = tls.made
    if log_format == "json":
        line = {
            "event": "tls_certificate",
            "ca": str(made.ca_file),
            "cert": str(made.cert_file),
            "key": str(made.key_file),
            "names": list(made.names),
            "not_after": made.not_after.isoformat(),
            "spki_sha256": made.spki_sha256,
        }
        say(orjson.dumps(line).decode(), stream)
        return
    health_url = url.replace("wss://", "https://", 1) + "/healthz"
    ca = made.ca_file
    lines = [
        f"throwaway TLS certificate for {', '.join(made.names)} "
        f"(until {made.not_after:%Y-%m-%d}); trust its CA: {ca}",
        *([f"  curl --cacert {ca} {health_url}"] if health else []),
        f"  Python: ssl.create_default_context(cafile='{ca}')",
        f"  Node: NODE_EXTRA_CA_CERTS={ca} node your-client.js",
        f"  Chromium: --ignore-certificate-errors-spki-list={made.spki_sha256}",
        "  or import the CA as an authority in the browser (docs/tls.md)",
    ]
    host = urlsplit(url).hostname
    if host is not None and host not in made.names:
        # --host 0.0.0.0: the URL's host is no name a client can verify.
        lines.append(f"  it is not valid for {host}: connect to localhost or 127.0.0.1")
    for text in lines:
        say(f"sim: {text}", stream)
