"""``sim record``: real WebSocket sessions to a Parquet file, as a proxy between clients
and a server (``--upstream``) or as a client of a server (``--connect``)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from simulator.cli.help_text import epilog
from simulator.cli.inspector_options import load_inspector, no_inspector_option, start_inspector
from simulator.cli.limits import (
    PROXY_MESSAGE_BYTES,
    ClientLimits,
    client_limit_options,
)
from simulator.cli.options import (
    DURATION,
    claim_output,
    fail,
    force_option,
    header_pair,
    listen_address,
    listen_option,
    network_failure,
    redact_options,
    redaction,
    tls_options,
    trust,
)
from simulator.errors import SimError, UsageError
from simulator.net import event_loop

if TYPE_CHECKING:
    from simulator.cli.tls import ServingTLS, TLSOptions
    from simulator.core.redact import Redactor


@click.command(epilog=epilog("record"))
@click.option(
    "--upstream",
    metavar="URL",
    help="Proxy: relay clients to this ws(s):// server (default: none; this or --connect).",
)
@click.option(
    "--connect",
    metavar="URL",
    help="Client: connect to this ws(s):// URL yourself (default: none; this or --upstream).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Parquet file to write (refused if it exists, unless --force).",
)
@force_option
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Proxy: interface to accept clients on."
)
@click.option(
    "--port",
    default=3003,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Proxy: port to accept clients on; 0 picks a free one.",
)
@listen_option("127.0.0.1:3003")
@click.option("--send", multiple=True, help="Client: a text message to send first (repeatable).")
@click.option(
    "--header", multiple=True, help="Client: 'Name: value' for the handshake (repeatable)."
)
@click.option("--duration", type=DURATION, help="Stop after this long (default: until SIGINT).")
@redact_options
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True),
    help="CA (PEM) to trust for wss:// (default: the system's).",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Proxy: clients at once; more get 503.",
)
@client_limit_options(
    PROXY_MESSAGE_BYTES,
    "Proxy: a message larger, either way, closes its connection with 1009.",
    prefix="Proxy: ",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    help="One line per event on stderr: plain text or a JSON object.",
)
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
@tls_options
@no_inspector_option("record")
def record(
    upstream: str | None,
    connect: str | None,
    out: str,
    force: bool,
    host: str,
    port: int,
    listen: str | None,
    send: tuple[str, ...],
    header: tuple[str, ...],
    duration: int | None,
    redact: tuple[str, ...],
    redact_key_file: str | None,
    ca: str | None,
    max_connections: int,
    limits: ClientLimits,
    log_format: str,
    quiet: bool,
    tls: TLSOptions,
    no_inspector: bool,
) -> None:
    """Record real WebSocket sessions to a Parquet file.

    With --upstream URL, a proxy: clients connect to --host/--port (or --listen
    HOST:PORT; the first line on stdout is its URL) and are relayed to URL, path, query,
    subprotocols and headers included; every message both ways is recorded. With
    --connect URL, sim is the client: it sends the --send messages and records the feed
    for --duration.

    Without --redact only the handshake is cleaned: credential headers (Authorization,
    Cookie, X-Api-Key, ...), URL userinfo, token-like query parameters and token
    subprotocols are written as [redacted]; messages are written as sent. --redact
    hashes (or removes) message fields (docs/redaction.md). SIGINT/SIGTERM stop
    cleanly; a killed recorder keeps what it flushed.
    """
    from simulator.cli.tls import serving_tls

    try:
        if (upstream is None) == (connect is None):
            raise UsageError("give exactly one of --upstream URL (proxy) or --connect URL")
        if upstream is not None and (send or header):
            raise UsageError("--send and --header go with --connect, not --upstream")
        if connect is not None and tls.given:
            raise UsageError("--tls-* serve the proxy's --listen side: they go with --upstream")
        if upstream is None and listen is not None:
            raise UsageError("--listen goes with --upstream (the proxy), not --connect")
        host, port = listen_address(listen, host, port)
        # Checked now; replaced only once listening (or connecting) succeeded: a port in
        # use or an unreachable feed writes nothing and loses nothing.
        claim_output(out, force, remove=False)
        redactor = redaction(redact, redact_key_file)
        if upstream is not None:
            served = serving_tls(tls)
            event_loop.run(
                _proxy(
                    upstream,
                    out,
                    host,
                    port,
                    duration,
                    redactor,
                    ca,
                    max_connections,
                    limits,
                    log_format,
                    quiet,
                    served,
                    no_inspector,
                    force,
                )
            )
        else:
            assert connect is not None
            headers = [header_pair(h) for h in header]
            asyncio.run(
                _capture(
                    connect, out, send, headers, duration, redactor, ca, log_format, quiet, force
                )
            )
    except OSError as e:
        network_failure(e, "record")
    except SimError as e:
        from simulator.net.capture import CaptureError

        if isinstance(e, CaptureError):
            click.echo(f"sim: {e}", err=True)
            sys.exit(1)
        fail(e)


async def _proxy(
    upstream: str,
    out: str,
    host: str,
    port: int,
    duration: int | None,
    redactor: Redactor | None,
    ca: str | None,
    max_connections: int,
    limits: ClientLimits,
    log_format: str,
    quiet: bool,
    tls: ServingTLS | None,
    no_inspector: bool = False,
    overwrite: bool = False,
) -> None:
    from simulator.cli.console import follow_log, stop_on_signals
    from simulator.cli.tls import announce
    from simulator.net.heap import freeze_what_is_loaded
    from simulator.net.proxy import record_proxy

    stop = stop_on_signals()
    load_inspector(no_inspector)
    async with record_proxy(
        upstream,
        out,
        host=host,
        port=port,
        redact=None if redactor is None else redactor.redact,
        redaction=None if redactor is None else redactor.describe(),
        ssl_context=trust(ca),
        max_connections=max_connections,
        max_size=limits.max_message_bytes,
        max_frames_per_s=limits.max_frames_per_s,
        max_handshakes=limits.max_handshakes,
        tls=None if tls is None else tls.context,
        overwrite=overwrite,
    ) as proxy:
        freeze_what_is_loaded()
        print(proxy.url, flush=True)
        start_inspector(proxy, no_inspector, False, quiet or log_format != "plain")
        if not quiet:
            announce(tls, proxy.url, log_format)
            follow_log(proxy.log, log_format)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopped}, timeout=None if duration is None else duration / 1e9)
        stopped.cancel()


async def _capture(
    url: str,
    out: str,
    send: tuple[str, ...],
    headers: list[tuple[str, str]],
    duration: int | None,
    redactor: Redactor | None,
    ca: str | None,
    log_format: str,
    quiet: bool,
    overwrite: bool = False,
) -> None:
    from simulator.cli.console import follow_log, stop_on_signals
    from simulator.net.capture import capture
    from simulator.net.log import EventLog

    log = EventLog()
    if not quiet:
        follow_log(log, log_format)
    result = await capture(
        url,
        out,
        send=send,
        headers=headers,
        duration_s=None if duration is None else duration / 1e9,
        stop=stop_on_signals(),
        redact=None if redactor is None else redactor.redact,
        redaction=None if redactor is None else redactor.describe(),
        ssl_context=trust(ca),
        log=log,
        overwrite=overwrite,
    )
    click.echo(
        f"recorded {result.received} messages to {out} (closed {result.close_code})", err=True
    )
