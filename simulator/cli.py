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
        asyncio.run(
            _serve(scenario, host, port, seed, speed, duration, epoch, log_format, quiet, record)
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
    "--faults",
    type=click.Path(dir_okay=False),
    help="Inject the [[fault]]s of this scenario or faults file.",
)
@click.option("--seed", type=SEED, help="Override the faults file's seed.")
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
    faults: str | None,
    seed: int | None,
    log_format: str,
    quiet: bool,
) -> None:
    """Serve a recording again: client i gets recorded connection i (or --conn), pushes on
    the recorded timeline scaled by --speed, replies once the client sends what they answer.
    --faults injects the [[fault]]s of a scenario or faults file, as `sim run` does.

    The first line on stdout is the URL. Stops on SIGINT/SIGTERM (clients get 1001).
    """
    try:
        asyncio.run(
            _replay(file, host, port, speed, loop, conn, strict, faults, seed, log_format, quiet)
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
    faults: str | None,
    seed: int | None,
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
    ) as server:
        print(server.url, flush=True)
        if not quiet:
            _follow_log(server.log, log_format)
        await stop.wait()
