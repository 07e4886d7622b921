"""The `sim` command: the only module that wires the layers together.

Every mistake in a user's file or arguments ends here as one line per problem on
stderr and exit code 2; nothing a user can type produces a traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from simulator.core.durations import parse_duration
from simulator.core.model import Scenario
from simulator.errors import ScenarioError, SimError, UsageError
from simulator.net.log import Event, EventKind, EventLog
from simulator.version import __version__

EXIT_USAGE = 2


def _fail(error: SimError) -> NoReturn:
    for line in str(error).splitlines():
        click.echo(line, err=True)
    sys.exit(EXIT_USAGE)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """``250ms``, ``5s``, ``1h30m`` as integer nanoseconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            ns = parse_duration(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if ns <= 0:
            self.fail(f"{value!r}: must be > 0", param, ctx)
        return ns


class EpochType(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 time with a UTC offset, as Unix nanoseconds."""

    name = "iso-time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like 2026-01-01T00:00:00Z", param, ctx)
        if when.tzinfo is None:
            self.fail(f"{value!r} needs a UTC offset, like 2026-01-01T00:00:00Z", param, ctx)
        return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1_000


DURATION = DurationType()
SEED = click.IntRange(0, 2**63 - 1)
EPOCH = EpochType()


def _redact_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--redact`` and ``--redact-key-file``, for the commands that record."""
    command = click.option(
        "--redact-key-file",
        type=click.Path(dir_okay=False, exists=True),
        help="Key of --redact hashes (default: $SIM_REDACT_KEY, else random).",
    )(command)
    return click.option(
        "--redact",
        multiple=True,
        metavar="JSONPATH[=hash|remove]",
        help="Hash (or remove) this field in every recorded message (repeatable).",
    )(command)


def load(path: str) -> Scenario:
    """Load a scenario or exit 2 with its problems."""
    from simulator.scenario_toml import load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as e:
        _fail(e)


@contextmanager
def _progress(total_ns: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; a no-op callback otherwise."""
    if not sys.stderr.isatty():
        yield lambda _t: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        transient=True,
        console=__import__("rich.console").console.Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, total=total_ns)
        yield lambda t: bar.update(task, completed=t)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sim")
def main() -> None:
    """Scenario-driven WebSocket simulator: live mock feeds, seeded faults, record and replay."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check scenario FILES; print a summary of each valid one.

    Exit 0 when every file is valid, 2 when any is not (its problems on stderr).
    """
    from simulator.scenario_toml import load_scenario
    from simulator.summary import describe_scenario

    bad = 0
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as e:
            bad += 1
            for line in str(e).splitlines():
                click.echo(line, err=True)
            continue
        for line in describe_scenario(scenario):
            click.echo(line)
    if bad:
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--duration", type=DURATION, help="Virtual time to render (default: the scenario's).")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Parquet file to write."
)
@click.option("--seed", type=SEED, help="Override the scenario's seed.")
@click.option("--connections", default=1, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--epoch",
    type=EPOCH,
    help="Virtual time 0 (default: the scenario's epoch, else 2026-01-01T00:00:00Z).",
)
def generate(
    scenario_file: str,
    duration: int | None,
    out: str,
    seed: int | None,
    connections: int,
    epoch: int | None,
) -> None:
    """Render SCENARIO in virtual time to a Parquet recording: exactly what `sim run` would
    send each connection for the same seed."""
    from simulator.generate import Plan
    from simulator.generate import generate as render

    scenario = load(scenario_file)
    try:
        plan = Plan.of(
            scenario, duration_ns=duration, seed=seed, connections=connections, epoch_ns=epoch
        )
        with _progress(plan.duration_ns, f"generating {Path(out).name}") as progress:
            written = render(plan, out, progress)
    except SimError as e:
        _fail(e)
    click.echo(f"wrote {written.rows} rows to {written.path}")


@main.command()
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--host", help="Interface to bind (default: the scenario's, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--seed", type=SEED, help="Override the scenario's seed.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.001))
@click.option("--duration", type=DURATION, help="Stop after this much scenario time.")
@click.option("--epoch", type=EPOCH, help="Wall time of scenario time 0 (default: now).")
@click.option("--max-connections", type=click.IntRange(1, 100_000))
@click.option("--log-format", type=click.Choice(["plain", "json"]), default="plain")
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False),
    help="Record what is served (faults included) to this Parquet file.",
)
@_redact_options
def run(
    scenario_file: str,
    host: str | None,
    port: int | None,
    seed: int | None,
    speed: float,
    duration: int | None,
    epoch: int | None,
    max_connections: int | None,
    log_format: str,
    quiet: bool,
    record: str | None,
    redact: tuple[str, ...],
    redact_key_file: str | None,
) -> None:
    """Serve SCENARIO over WebSocket until SIGINT/SIGTERM (or --duration).

    The first line on stdout is the URL (ws://HOST:PORT). With a terminal on stdout a
    live status is shown; otherwise events are logged to stderr, one per line.
    """
    import dataclasses

    scenario = load(scenario_file)
    if max_connections is not None:
        scenario = dataclasses.replace(
            scenario,
            server=dataclasses.replace(scenario.server, max_connections=max_connections),
        )
    try:
        if redact and record is None:
            raise UsageError("--redact applies to what --record writes: give --record FILE")
        redactor = _redaction(redact, redact_key_file)
        asyncio.run(
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
            )
        )
    except OSError as e:
        click.echo(f"sim: cannot serve: {e.strerror or e}", err=True)
        sys.exit(EXIT_USAGE)
    except SimError as e:
        _fail(e)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (graceful stop: clients get 1001, exit 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _follow_log(log: EventLog, log_format: str, only: EventKind | None = None) -> None:
    """Print the events logged so far and every later one (of kind ``only``, if given)."""
    from simulator.console import log_printer

    printer = log_printer(log_format)

    def show(event: Event) -> None:
        if only is None or event.kind is only:
            printer(event)

    for event in log.records:
        show(event)
    log.listen(show)


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
    redactor: Any,
) -> None:
    from simulator.console import live_status
    from simulator.net.server import serve

    stop = _stop_on_signals()
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
    ) as server:
        print(server.url, flush=True)
        status = None
        if not quiet:
            if sys.stdout.isatty() and log_format == "plain":
                # The live status shows the rest; warnings still get a line of their own.
                status = asyncio.ensure_future(live_status(server))
                _follow_log(server.log, log_format, only=EventKind.WARNING)
            else:
                _follow_log(server.log, log_format)
        finished = asyncio.ensure_future(server.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (finished, stopped, status):
            if task is not None:
                task.cancel()


@main.command()
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--duration", type=DURATION, help="Scenario time to plan (default: the scenario's).")
@click.option("--connections", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seed", type=SEED, help="Override the scenario's seed.")
@click.option("--max-hits", default=20, show_default=True, type=click.IntRange(0, 1_000_000))
def plan(
    scenario_file: str, duration: int | None, connections: int, seed: int | None, max_hits: int
) -> None:
    """Print SCENARIO's fault timeline without serving anything: the connection and server
    faults with their times, and the messages each message fault hits. Same seed, same plan.
    """
    from simulator.core.fault_report import plan_report

    scenario = load(scenario_file)
    span = duration if duration is not None else scenario.duration_ns
    if span is None:
        _fail(UsageError("a duration is needed: pass --duration or set scenario.duration"))
    for line in plan_report(scenario, seed, span, connections, max_hits=max_hits):
        click.echo(line)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for machines.")
def inspect(file: str, as_json: bool) -> None:
    """Summarise a recording: connections, duration, messages per stream and direction,
    rates, largest gaps, close codes, faults."""
    import orjson

    from simulator.analysis import inspect as summarise
    from simulator.analysis import summary_json, summary_lines

    try:
        summary = summarise(file)
    except SimError as e:
        _fail(e)
    if as_json:
        click.echo(orjson.dumps(summary_json(summary), option=orjson.OPT_INDENT_2).decode())
    else:
        for line in summary_lines(summary):
            click.echo(line)


@main.command()
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--ignore-timing", is_flag=True, help="Compare messages only.")
def diff(a: str, b: str, ignore_timing: bool) -> None:
    """Compare two recordings connection by connection: identical message sequences, the
    first difference, timing error percentiles. Exit 0 when equivalent, 1 when not."""
    from simulator.analysis import diff as compare
    from simulator.analysis import diff_lines

    try:
        result = compare(a, b, ignore_timing=ignore_timing)
    except SimError as e:
        _fail(e)
    for line in diff_lines(result):
        click.echo(line)
    sys.exit(0 if result.equivalent else 1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def recover(file: str) -> None:
    """Rebuild FILE from the segments a killed recorder left in FILE.segments/."""
    from simulator.storage.writer import recover as rebuild

    try:
        rows = rebuild(file)
    except SimError as e:
        _fail(e)
    click.echo(f"recovered {rows} rows into {file}")


class SpeedType(click.ParamType):  # type: ignore[type-arg]
    """A positive speed factor, or ``max`` (as fast as possible)."""

    name = "speed"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or value == "max":
            return None
        try:
            speed = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r}: a number > 0 or 'max'", param, ctx)
        if not speed > 0 or speed == float("inf"):
            self.fail(f"{value!r}: a number > 0 or 'max'", param, ctx)
        return speed


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3002, show_default=True, type=click.IntRange(0, 65535))
@click.option("--speed", default="1", show_default=True, type=SpeedType(), help="X or max.")
@click.option("--loop", is_flag=True, help="Start each connection's recording again at its end.")
@click.option("--conn", type=click.IntRange(min=0), help="Serve this recorded connection to all.")
@click.option("--strict", is_flag=True, help="Close with 1008 on a message not in the recording.")
@click.option(
    "--free-run",
    is_flag=True,
    help="Wait for no client message: send everything on the recorded timeline.",
)
@click.option(
    "--faults",
    type=click.Path(dir_okay=False),
    help="Inject the [[fault]]s of this scenario or faults file.",
)
@click.option("--seed", type=SEED, help="Override the faults file's seed.")
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
@click.option("--log-format", type=click.Choice(["plain", "json"]), default="plain")
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
def replay(
    file: str,
    host: str,
    port: int,
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
) -> None:
    """Serve a recording again: client i gets recorded connection i (or --conn), pushes on
    the recorded timeline scaled by --speed, replies once the client sends what they answer.
    --faults injects the [[fault]]s of a scenario or faults file, as `sim run` does.

    The first line on stdout is the URL. Stops on SIGINT/SIGTERM (clients get 1001).
    """
    try:
        key = _redact_key(redact_key_file)
        asyncio.run(
            _replay(
                file,
                host,
                port,
                speed,
                loop,
                conn,
                strict,
                free_run,
                faults,
                seed,
                ignore,
                key,
                log_format,
                quiet,
            )
        )
    except OSError as e:
        click.echo(f"sim: cannot serve: {e.strerror or e}", err=True)
        sys.exit(EXIT_USAGE)
    except SimError as e:
        _fail(e)


async def _replay(
    file: str,
    host: str,
    port: int,
    speed: float | None,
    loop: bool,
    conn: int | None,
    strict: bool,
    free_run: bool,
    faults: str | None,
    seed: int | None,
    ignore: tuple[str, ...],
    redact_key: bytes | None,
    log_format: str,
    quiet: bool,
) -> None:
    from simulator.net.replay import replay as serve_replay

    stop = _stop_on_signals()
    async with serve_replay(
        file,
        host=host,
        port=port,
        speed=speed,
        loop=loop,
        conn=conn,
        strict=strict,
        faults=faults,
        seed=seed,
        redact_key=redact_key,
        ignore=ignore,
        free_run=free_run,
    ) as server:
        print(server.url, flush=True)
        if not quiet:
            _follow_log(server.log, log_format)
        await stop.wait()


def _listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {value!r}: must be HOST:PORT, like 127.0.0.1:3003")
    return host.strip("[]") or "127.0.0.1", int(port)


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--header {value!r}: must be 'Name: value'")
    return name.strip(), content.strip()


def _redact_key(key_file: str | None) -> bytes | None:
    """The redaction key: --redact-key-file, else $SIM_REDACT_KEY, else none."""
    import os

    if key_file is not None:
        key = Path(key_file).read_bytes().strip()
        if not key:
            raise UsageError(f"--redact-key-file {key_file}: the file is empty")
        return key
    env = os.environ.get("SIM_REDACT_KEY")
    return env.encode() if env else None


def _redaction(specs: tuple[str, ...], key_file: str | None) -> Any:
    """The redactor for ``--redact`` specs (None without any), keyed by :func:`_redact_key`
    or else a random key (hashes then match within this one file only)."""
    import secrets

    from simulator.core.redact import Redactor

    if not specs:
        return None
    key = _redact_key(key_file) or secrets.token_bytes(32)
    return Redactor.from_specs(specs, key)


def _trust(ca_file: str | None) -> Any:
    import ssl

    return None if ca_file is None else ssl.create_default_context(cafile=ca_file)


@main.command()
@click.option("--upstream", metavar="URL", help="Proxy: relay clients to this ws(s):// server.")
@click.option("--connect", metavar="URL", help="Client: connect to this ws(s):// URL yourself.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Parquet file.")
@click.option(
    "--listen",
    default="127.0.0.1:3003",
    show_default=True,
    help="Proxy: HOST:PORT to accept clients on (port 0: a free one).",
)
@click.option("--send", multiple=True, help="Client: a text message to send first (repeatable).")
@click.option("--header", multiple=True, help="Client: 'Name: value' for the handshake.")
@click.option("--duration", type=DURATION, help="Stop after this long (default: until SIGINT).")
@_redact_options
@click.option("--ca", type=click.Path(dir_okay=False, exists=True), help="CA (PEM) for wss://.")
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Proxy: clients at once; more get 503.",
)
@click.option("--log-format", type=click.Choice(["plain", "json"]), default="plain")
@click.option("--quiet", is_flag=True, help="Print only the URL line.")
def record(
    upstream: str | None,
    connect: str | None,
    out: str,
    listen: str,
    send: tuple[str, ...],
    header: tuple[str, ...],
    duration: int | None,
    redact: tuple[str, ...],
    redact_key_file: str | None,
    ca: str | None,
    max_connections: int,
    log_format: str,
    quiet: bool,
) -> None:
    """Record real WebSocket sessions to a Parquet file.

    With --upstream URL, a proxy: clients connect to --listen (the first line on stdout
    is its URL) and are relayed to URL, path, query, subprotocols and headers included;
    every message both ways is recorded. With --connect URL, sim is the client: it sends
    the --send messages and records the feed for --duration. Authorization, cookies and
    token query parameters are never written; --redact hashes (or removes) message
    fields. SIGINT/SIGTERM stop cleanly; a killed recorder keeps what it flushed.
    """
    try:
        if (upstream is None) == (connect is None):
            raise UsageError("give exactly one of --upstream URL (proxy) or --connect URL")
        if upstream is not None and (send or header):
            raise UsageError("--send and --header go with --connect, not --upstream")
        redactor = _redaction(redact, redact_key_file)
        if upstream is not None:
            host, port = _listen_address(listen)
            asyncio.run(
                _proxy(
                    upstream,
                    out,
                    host,
                    port,
                    duration,
                    redactor,
                    ca,
                    max_connections,
                    log_format,
                    quiet,
                )
            )
        else:
            assert connect is not None
            headers = [_header(h) for h in header]
            asyncio.run(
                _capture(connect, out, send, headers, duration, redactor, ca, log_format, quiet)
            )
    except OSError as e:
        click.echo(f"sim: cannot record: {e.strerror or e}", err=True)
        sys.exit(EXIT_USAGE)
    except SimError as e:
        from simulator.net.capture import CaptureError

        if isinstance(e, CaptureError):
            click.echo(f"sim: {e}", err=True)
            sys.exit(1)
        _fail(e)


async def _proxy(
    upstream: str,
    out: str,
    host: str,
    port: int,
    duration: int | None,
    redactor: Any,
    ca: str | None,
    max_connections: int,
    log_format: str,
    quiet: bool,
) -> None:
    from simulator.net.proxy import record_proxy

    stop = _stop_on_signals()
    async with record_proxy(
        upstream,
        out,
        host=host,
        port=port,
        redact=None if redactor is None else redactor.redact,
        redaction=None if redactor is None else redactor.describe(),
        ssl_context=_trust(ca),
        max_connections=max_connections,
    ) as proxy:
        print(proxy.url, flush=True)
        if not quiet:
            _follow_log(proxy.log, log_format)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({stopped}, timeout=None if duration is None else duration / 1e9)
        stopped.cancel()


async def _capture(
    url: str,
    out: str,
    send: tuple[str, ...],
    headers: list[tuple[str, str]],
    duration: int | None,
    redactor: Any,
    ca: str | None,
    log_format: str,
    quiet: bool,
) -> None:
    from simulator.net.capture import capture

    log = EventLog()
    if not quiet:
        _follow_log(log, log_format)
    result = await capture(
        url,
        out,
        send=send,
        headers=headers,
        duration_s=None if duration is None else duration / 1e9,
        stop=_stop_on_signals(),
        redact=None if redactor is None else redactor.redact,
        redaction=None if redactor is None else redactor.describe(),
        ssl_context=_trust(ca),
        log=log,
    )
    click.echo(
        f"recorded {result.received} messages to {out} (closed {result.close_code})", err=True
    )
