"""``sim connect``: the reference resilient client as a command, a resilient ``wscat``
for people watching a feed."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import click

from simulator.cli.help_text import epilog
from simulator.cli.options import DURATION, EXIT_USAGE, SEED, fail, header_pair, trust
from simulator.errors import SimError

if TYPE_CHECKING:
    from simulator.client import ClientEvent, ResilientClient
    from simulator.client.resilient import SeqAcross

#: The server told the client not to come back (a close code or status it must not
#: retry: 1008, 4xxx, 401, 403, ...).
EXIT_STOPPED_BY_SERVER = 1


@click.command(epilog=epilog("connect"))
@click.argument("url")
@click.option(
    "--subscribe",
    "subscribe",
    multiple=True,
    metavar="TYPE",
    help="Subscribe to this message type (repeatable); again on every reconnect.",
)
@click.option(
    "--send",
    multiple=True,
    metavar="MSG",
    help="A text message sent on every connection, first (auth, session; repeatable).",
)
@click.option("--header", multiple=True, help="'Name: value' for every handshake (repeatable).")
@click.option("--duration", type=DURATION, help="Stop after this long (default: until SIGINT).")
@click.option(
    "--backoff-base",
    type=DURATION,
    default="500ms",
    show_default=True,
    help="Upper bound of the first reconnect delay (full jitter).",
)
@click.option(
    "--backoff-cap",
    type=DURATION,
    default="30s",
    show_default=True,
    help="No reconnect delay above this (a Retry-After may ask for more).",
)
@click.option(
    "--stable",
    type=DURATION,
    default="10s",
    show_default=True,
    help="A connection open this long resets the backoff.",
)
@click.option(
    "--heartbeat",
    type=DURATION,
    default="10s",
    show_default=True,
    help="Send the feed's ping this often.",
)
@click.option(
    "--heartbeat-timeout",
    type=DURATION,
    default="10s",
    show_default=True,
    help="Drop a connection that sent nothing this long after a ping.",
)
@click.option("--no-heartbeat", is_flag=True, help="Send no application pings.")
@click.option(
    "--seq",
    "seq_across",
    # simulator.client.resilient.SEQ_ACROSS, spelt out: the client is imported only when
    # the command runs (tests/e2e/test_connect_cli.py keeps the two alike).
    type=click.Choice(["auto", "continues", "restarts"]),
    default="auto",
    show_default=True,
    help="How each stream's seq runs across connections: continues (a broadcast: a seq "
    "seen before is a duplicate), restarts (a per-connection feed), auto (continues, "
    "unless a stream's first seq on a new connection is not above the highest seen: a "
    "restarted server).",
)
@click.option(
    "--seed",
    type=SEED,
    default=None,
    help="Seeds the jitter, for a reproducible run (default: random, so that clients "
    "started together do not come back together).",
)
@click.option(
    "--tls-ca",
    "--ca",
    "ca",
    type=click.Path(dir_okay=False, exists=True),
    help="CA (PEM) to trust for wss:// (default: the system's).",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    help="plain: messages on stdout, the rest on stderr; json: one object a line "
    "on stdout, with event = message|state|gap|duplicate|restart|refused|retry.",
)
def connect(
    url: str,
    subscribe: tuple[str, ...],
    send: tuple[str, ...],
    header: tuple[str, ...],
    duration: int | None,
    backoff_base: int,
    backoff_cap: int,
    stable: int,
    heartbeat: int,
    heartbeat_timeout: int,
    no_heartbeat: bool,
    seq_across: str,
    seed: int | None,
    ca: str | None,
    log_format: str,
) -> None:
    """Watch a feed through the reference resilient client: it reconnects with jittered
    backoff, resubscribes, detects half-open connections, and reports gaps, duplicates
    and restarted counts from each message's seq, and streams the server refused.

    Exit status: 0 when --duration ran out or on SIGINT/SIGTERM; 1 when the server said
    not to come back (close 1008 or 4xxx, HTTP 401/403, ...); 2 for a usage error.
    """
    from simulator.client import ClientConfig, ResilientClient
    from simulator.core.backoff import BackoffPolicy

    try:
        policy = BackoffPolicy(
            base_s=backoff_base / 1e9,
            cap_s=max(backoff_cap, backoff_base) / 1e9,
            stable_s=stable / 1e9,
        )
        config = ClientConfig(
            backoff=policy,
            heartbeat_interval_s=None if no_heartbeat else heartbeat / 1e9,
            heartbeat_timeout_s=heartbeat_timeout / 1e9,
            seq_across_connections=cast("SeqAcross", seq_across),
        )
        client = ResilientClient(
            url,
            config=config,
            subscriptions=list(subscribe) or None,
            preamble=send,
            headers=[header_pair(h) for h in header],
            seed=seed,
            ssl=trust(ca),
        )
        stopped_by_server = asyncio.run(_watch(client, duration, log_format))
    except SimError as e:
        fail(e)
    except OSError as e:
        click.echo(f"sim: cannot connect: {e.strerror or e}", err=True)
        sys.exit(EXIT_USAGE)
    if stopped_by_server:
        sys.exit(EXIT_STOPPED_BY_SERVER)


async def _watch(client: ResilientClient, duration_ns: int | None, log_format: str) -> bool:
    """Run ``client`` until the duration, a signal, or the server stops it; whether the
    server did."""
    from simulator.cli.console import stop_on_signals

    stop = stop_on_signals()
    client.listen(_printer(log_format, stop.set))
    await client.start()
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(client.wait_stopped())}
    await asyncio.wait(
        waits,
        timeout=None if duration_ns is None else duration_ns / 1e9,
        return_when=asyncio.FIRST_COMPLETED,
    )
    by_server = client.stop_reason is not None
    for waiter in waits:
        waiter.cancel()
    await client.close()
    return by_server


def _printer(log_format: str, stop: Callable[[], None]) -> Callable[[ClientEvent], None]:
    """What prints each event; when stdout is closed (``sim connect ... | head``), it
    calls ``stop`` instead of raising, so the session ends quietly."""
    import orjson

    from simulator.client import Message, State, StateChanged, as_dict

    def json_line(event: ClientEvent) -> None:
        # "time": Unix seconds, as in the server's JSON events, so that the two logs can
        # be read side by side ("at" is the client's monotonic loop clock).
        fields = {"time": time.time(), **as_dict(event)}
        print(orjson.dumps(fields).decode(), flush=True)

    def plain(event: ClientEvent) -> None:
        if isinstance(event, Message):
            raw = event.raw if isinstance(event.raw, str) else event.raw.hex()
            print(raw, flush=True)
            return
        fields = as_dict(event)
        if isinstance(event, StateChanged) and event.state is State.BACKOFF:
            fields["delay_s"] = fields["reason"] = None  # the retry line just said them
        what = " ".join(
            f"{k}={_plain(v)}"
            for k, v in fields.items()
            if k not in ("event", "at") and v is not None
        )
        print(f"sim: {fields['event']} {what}".rstrip(), file=sys.stderr, flush=True)

    printer = json_line if log_format == "json" else plain

    def quietly(event: ClientEvent) -> None:
        try:
            printer(event)
        except BrokenPipeError:
            # As the Python docs advise for SIGPIPE: point stdout at devnull, so that
            # the interpreter's final flush does not raise again, and stop.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop()

    return quietly


def _plain(value: object) -> str:
    """A field of an event as ``sim connect``'s plain output shows it: a list joined by
    commas, a float to the millisecond (``delay_s=0.422``)."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
