"""The commands that serve clients until stopped: ``sim run`` (a scenario) and
``sim replay`` (a recording).

Files are loaded here, not in :mod:`simulator.net`: the network layer is given a
:class:`~simulator.core.model.Scenario`, and a function that makes the
:class:`~simulator.core.faults.FaultPlan` of ``--faults``, never a path to a TOML file.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from simulator.cli.help_text import epilog
from simulator.cli.inspector_options import (
    inspector_options,
    load_inspector,
    no_inspector_option,
    start_inspector,
)
from simulator.cli.limits import (
    REPLAY_MESSAGE_BYTES,
    ClientLimits,
    client_limit_options,
)
from simulator.cli.options import (
    DURATION,
    EPOCH,
    SEED,
    SpeedType,
    claim_output,
    fail,
    faults_option,
    force_option,
    listen_address,
    listen_option,
    load,
    network_failure,
    recording_hint,
    redact_key,
    redact_options,
    redaction,
    tls_options,
    with_faults,
    with_hint,
)
from simulator.cli.workers import INSTANCE, WORKERS
from simulator.errors import SimError, UsageError
from simulator.net import event_loop

if TYPE_CHECKING:
    from simulator.cli.tls import ServingTLS, TLSOptions
    from simulator.core.faults import FaultPlan
    from simulator.core.model import Scenario
    from simulator.core.redact import Redactor


@click.command(epilog=epilog("run"))
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    help="Interface to bind (default: the scenario's [server] host, else 127.0.0.1).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one (default: the scenario's, else 3002).",
)
@listen_option("the scenario's, else 127.0.0.1:3002")
@click.option("--seed", type=SEED, help="Override the scenario's seed (default: the scenario's).")
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Scenario time runs this many times faster than wall time.",
)
@click.option(
    "--duration",
    type=DURATION,
    help="Stop after this much scenario time (default: the scenario's, else never).",
)
@click.option(
    "--epoch", type=EPOCH, help="Wall time of scenario time 0 in timestamps (default: its start)."
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 100_000),
    help="Clients at once; more get 503 (default: the scenario's, else 1000).",
)
@click.option(
    "--workers",
    type=WORKERS,
    default="1",
    show_default=True,
    help="Processes serving the same feed on one port (SO_REUSEPORT); auto: one per core."
    " Worker w of N numbers its connections w, w+N, ... (docs/scale-out.md).",
)
@click.option(
    "--instance",
    type=INSTANCE,
    help="This is instance I (from 0) of M serving one feed (M hosts behind a load "
    "balancer): number connections apart from the others' (default: 0/1, alone).",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    help="One line per event on stderr: plain text or a JSON object.",
)
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
@click.option(
    "--record",
    type=click.Path(),
    help="Record what is served (faults included) to this Parquet file (with --workers: a "
    "directory, one worker=W/part.parquet each), refused if it exists, unless --force "
    "(default: no recording).",
)
@force_option
@faults_option
@redact_options
@tls_options
@inspector_options
def run(
    scenario_file: str,
    host: str | None,
    port: int | None,
    listen: str | None,
    seed: int | None,
    speed: float,
    duration: int | None,
    epoch: int | None,
    max_connections: int | None,
    workers: int,
    instance: tuple[int, int] | None,
    log_format: str,
    quiet: bool,
    record: str | None,
    force: bool,
    faults: str | None,
    redact: tuple[str, ...],
    redact_key_file: str | None,
    tls: TLSOptions,
    no_inspector: bool,
    control_from_any: bool,
) -> None:
    """Serve SCENARIO over WebSocket until SIGINT/SIGTERM (or --duration).

    The first line on stdout is the URL (ws://HOST:PORT). With a terminal on stdout a
    live status is shown; otherwise events are logged to stderr, one per line. A browser
    at http://HOST:PORT/ gets the inspector page (docs/inspector.md).
    """
    import dataclasses

    from simulator.cli.tls import serving_tls

    scenario = load(scenario_file)
    if faults is not None:
        scenario = with_faults(scenario, faults)
    if max_connections is not None:
        scenario = dataclasses.replace(
            scenario,
            server=dataclasses.replace(scenario.server, max_connections=max_connections),
        )
    try:
        host, port = listen_address(listen, host, port)
        if redact and record is None:
            raise UsageError("--redact applies to what --record writes: give --record FILE")
        if record is not None and workers == 1:
            # Checked now; replaced only once listening succeeded (a port in use loses
            # nothing).
            claim_output(record, force, remove=False)
        redactor = redaction(redact, redact_key_file)
        served = serving_tls(tls)
        if workers > 1:
            from simulator.cli.workers import run_workers

            # Each worker would show only its own clients: no page rather than a page
            # that misleads.
            no_page = "no inspector page with --workers (docs/scale-out.md)"

            run_workers(
                scenario,
                workers,
                instance=instance or (0, 1),
                host=host,
                port=port,
                seed=seed,
                speed=speed,
                duration_ns=duration,
                epoch_ns=epoch,
                log_format=log_format,
                quiet=quiet,
                record=record,
                force=force,
                redactor=redactor,
                tls_options=tls,
                tls=served,
                notes=() if no_inspector else (no_page,),
            )
        event_loop.run(
            _serve(
                scenario,
                host,
                port,
                seed,
                speed,
                duration,
                epoch,
                log_format,
                quiet,
                record,
                redactor,
                served,
                instance or (0, 1),
                (no_inspector, control_from_any),
                force,
            )
        )
    except OSError as e:
        network_failure(e, "serve")
    except SimError as e:
        fail(e)


async def _serve(
    scenario: Scenario,
    host: str | None,
    port: int | None,
    seed: int | None,
    speed: float,
    duration: int | None,
    epoch: int | None,
    log_format: str,
    quiet: bool,
    record: str | None,
    redactor: Redactor | None,
    tls: ServingTLS | None,
    instance: tuple[int, int],
    inspector: tuple[bool, bool] = (False, False),
    overwrite_record: bool = False,
) -> None:
    from simulator.cli.console import follow_log, live_status, stop_on_signals
    from simulator.cli.tls import announce
    from simulator.core.numbering import Numbering
    from simulator.net.heap import freeze_what_is_loaded
    from simulator.net.log import EventKind
    from simulator.net.server import serve

    stop = stop_on_signals()
    load_inspector(inspector[0])
    async with serve(
        scenario,
        host=host,
        port=port,
        seed=seed,
        speed=speed,
        duration_ns=duration,
        epoch_ns=epoch,
        record=record,
        redact=redactor,
        tls=None if tls is None else tls.context,
        numbering=Numbering(*instance),
        overwrite_record=overwrite_record,
    ) as server:
        freeze_what_is_loaded()
        print(server.url, flush=True)
        if not quiet:
            announce(tls, server.url, log_format, health=True)
        start_inspector(server, *inspector, quiet or log_format != "plain")
        status = None
        if not quiet:
            if sys.stdout.isatty() and log_format == "plain":
                # The live status shows the rest; warnings still get a line of their own.
                status = asyncio.ensure_future(live_status(server))
                follow_log(server.log, log_format, only=EventKind.WARNING)
            else:
                follow_log(server.log, log_format)
        finished = asyncio.ensure_future(server.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (finished, stopped, status):
            if task is not None:
                task.cancel()
        failure = server.failure
    if failure is not None:
        click.echo(f"sim: stopped: internal error {failure!r} (please report it)", err=True)
        sys.exit(1)


@click.command(epilog=epilog("replay"))
@click.argument("file", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=3002,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@listen_option("127.0.0.1:3002")
@click.option(
    "--speed",
    default="1",
    show_default=True,
    type=SpeedType(),
    help="Recorded time runs this many times faster; max: as fast as possible.",
)
@click.option("--loop", is_flag=True, help="Start each connection's recording again at its end.")
@click.option(
    "--conn",
    type=click.IntRange(min=0),
    help="Serve this recorded connection to all (default: client i gets connection i).",
)
@click.option("--strict", is_flag=True, help="Close with 1008 on a message not in the recording.")
@click.option(
    "--free-run",
    is_flag=True,
    help="Wait for no client message: send everything on the recorded timeline.",
)
@click.option(
    "--faults",
    type=click.Path(dir_okay=False),
    help="Inject the [[fault]]s of this scenario or faults file (default: none).",
)
@click.option(
    "--seed", type=SEED, help="Override the faults file's seed (default: the file's, else 0)."
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="JSONPATH",
    help="Leave this field out when matching client messages (repeatable).",
)
@click.option(
    "--redact-key-file",
    type=click.Path(dir_okay=False, exists=True),
    help="Key the recording's --redact hashes were made with (default: $SIM_REDACT_KEY).",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default="plain",
    help="One line per event on stderr: plain text or a JSON object.",
)
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Clients at once; more get 503 with Retry-After: 1.",
)
@client_limit_options(
    REPLAY_MESSAGE_BYTES,
    "A client message larger (and larger than every recorded one) is closed with 1009.",
)
@tls_options
@no_inspector_option("replay")
def replay(
    file: str,
    host: str,
    port: int,
    listen: str | None,
    speed: float | None,
    loop: bool,
    conn: int | None,
    strict: bool,
    free_run: bool,
    faults: str | None,
    seed: int | None,
    ignore: tuple[str, ...],
    redact_key_file: str | None,
    log_format: str,
    quiet: bool,
    max_connections: int,
    limits: ClientLimits,
    tls: TLSOptions,
    no_inspector: bool,
) -> None:
    """Serve a recording again: client i gets recorded connection i (or --conn), pushes on
    the recorded timeline scaled by --speed, replies once the client sends what they answer.
    --faults injects the [[fault]]s of a scenario or faults file, as `sim run` does.

    The first line on stdout is the URL. Stops on SIGINT/SIGTERM (clients get 1001).
    """
    from simulator.cli.tls import serving_tls

    try:
        key = redact_key(redact_key_file)
        host, port = listen_address(listen, host, port)
        served = serving_tls(tls)
        event_loop.run(
            _replay(
                file,
                host,
                port,
                speed,
                loop,
                conn,
                strict,
                free_run,
                None if faults is None else fault_loader(faults, seed),
                ignore,
                key,
                log_format,
                quiet,
                served,
                max_connections,
                limits,
                (no_inspector, False),  # replay has no control endpoint
            )
        )
    except OSError as e:
        network_failure(e, "serve")
    except SimError as e:
        fail(with_hint(e, recording_hint(file)))


def fault_loader(faults_file: str, seed: int | None) -> Callable[[list[str]], FaultPlan]:
    """What ``replay(faults=...)`` calls with the recording's stream names: it loads the
    faults of ``faults_file`` (a scenario or a faults file), which may name those streams,
    with ``seed`` (if given) instead of the file's.

    The function raises :class:`~simulator.errors.ScenarioError` for a bad file, so the
    recording is read, and checked, before the faults file is.
    """

    def load(streams: list[str]) -> FaultPlan:
        from simulator.core.faults import FaultPlan
        from simulator.scenario import load_faults

        found = load_faults(faults_file, streams)
        return FaultPlan(found.faults, found.seed if seed is None else seed)

    return load


async def _replay(
    file: str,
    host: str,
    port: int,
    speed: float | None,
    loop: bool,
    conn: int | None,
    strict: bool,
    free_run: bool,
    faults: Callable[[list[str]], FaultPlan] | None,
    ignore: tuple[str, ...],
    key: bytes | None,
    log_format: str,
    quiet: bool,
    tls: ServingTLS | None,
    max_connections: int,
    limits: ClientLimits,
    inspector: tuple[bool, bool] = (False, False),
) -> None:
    from simulator.cli.console import follow_log, stop_on_signals
    from simulator.cli.tls import announce
    from simulator.net.heap import freeze_what_is_loaded
    from simulator.net.replay import replay as serve_replay

    stop = stop_on_signals()
    load_inspector(inspector[0])
    async with serve_replay(
        file,
        host=host,
        port=port,
        speed=speed,
        loop=loop,
        conn=conn,
        strict=strict,
        faults=faults,
        redact_key=key,
        ignore=ignore,
        free_run=free_run,
        tls=None if tls is None else tls.context,
        max_connections=max_connections,
        max_frames_per_s=limits.max_frames_per_s,
        max_message_bytes=limits.max_message_bytes,
        max_handshakes=limits.max_handshakes,
    ) as server:
        freeze_what_is_loaded()
        print(server.url, flush=True)
        start_inspector(server, *inspector, quiet or log_format != "plain", source=file)
        if not quiet:
            announce(tls, server.url, log_format)
            follow_log(server.log, log_format)
        await stop.wait()
