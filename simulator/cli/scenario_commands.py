"""The commands that read a scenario and serve nothing: ``sim validate``, ``sim generate``
and ``sim plan``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from simulator.cli.help_text import epilog
from simulator.cli.options import (
    DURATION,
    EPOCH,
    EXIT_USAGE,
    SEED,
    claim_output,
    fail,
    faults_option,
    force_option,
    load,
    not_loaded,
    with_faults,
)
from simulator.errors import ScenarioError, SimError, UsageError

if TYPE_CHECKING:
    from simulator.core.model import Scenario


@click.command(epilog=epilog("validate"))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--against",
    metavar="SPEC",
    type=click.Path(dir_okay=False),
    help="An AsyncAPI document: render --messages per stream and report each message that"
    " breaks its payload schema, with the JSON path; exit 1 if any does (default: none).",
)
@click.option(
    "--messages",
    default=100,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="With --against: messages to render per stream.",
)
def validate(files: tuple[str, ...], against: str | None, messages: int) -> None:
    """Check scenario FILES, or faults files (only [[fault]] tables, for --faults); print
    a summary of each valid one: its streams and its faults.

    Exit 0 when every file is valid, 2 when any is not (its problems on stderr).
    """
    from simulator.cli.summary import describe_fault_set, describe_scenario
    from simulator.core.model import Scenario
    from simulator.scenario import load_scenario_or_faults

    if against is not None:
        from simulator.cli.contract_commands import check_against

        check_against(against, files, messages)
        return

    bad = 0
    for path in files:
        try:
            found = load_scenario_or_faults(path)
        except ScenarioError as e:
            bad += 1
            for line in str(not_loaded(e, path)).splitlines():
                click.echo(line, err=True)
            continue
        if isinstance(found, Scenario):
            lines = describe_scenario(found)
        else:
            lines = describe_fault_set(path, found)
        for line in lines:
            click.echo(line)
    if bad:
        sys.exit(EXIT_USAGE)


@click.command(epilog=epilog("generate"))
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option(
    "--duration",
    type=DURATION,
    help="Virtual time to render (default: the scenario's duration; needed without one).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Parquet file to write (refused if it exists, unless --force).",
)
@click.option("--seed", type=SEED, help="Override the scenario's seed (default: the scenario's).")
@click.option(
    "--connections",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Connections to render, all open from time 0.",
)
@click.option(
    "--epoch",
    type=EPOCH,
    help="Virtual time 0 (default: the scenario's epoch, else 2026-01-01T00:00:00Z).",
)
@force_option
@click.option(
    "--reconnect-after",
    type=DURATION,
    default="1s",
    show_default=True,
    help="With [[fault]]s: a client connects again this long after its connection ended"
    " or its handshake was refused.",
)
def generate(
    scenario_file: str,
    duration: int | None,
    out: str,
    seed: int | None,
    connections: int,
    epoch: int | None,
    force: bool,
    reconnect_after: int,
) -> None:
    """Render SCENARIO in virtual time to a Parquet recording: exactly what `sim run` would
    send each connection for the same seed.

    With [[fault]]s, the file holds what a recording of `sim run` would: the faults as
    the server decides them, for clients that connect at 0 s, send nothing, and connect
    again --reconnect-after a disconnect or a refused handshake (docs/determinism.md)."""
    from simulator.storage.generate import Plan
    from simulator.storage.generate import generate as render
    from simulator.storage.generate_faults import unrendered

    scenario = load(scenario_file)
    for note in unrendered(scenario):
        click.echo(f"note: {note}", err=True)
    try:
        claim_output(out, force, segments=False)
        plan = Plan.of(
            scenario,
            duration_ns=duration,
            seed=seed,
            connections=connections,
            epoch_ns=epoch,
            reconnect_after_ns=reconnect_after,
        )
        with _progress(plan.duration_ns, f"generating {Path(out).name}") as progress:
            written = render(plan, out, progress)
    except SimError as e:
        fail(e)
    click.echo(f"wrote {written.rows} rows to {written.path}")


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


@click.command(epilog=epilog("plan"))
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option(
    "--duration",
    type=DURATION,
    help="Scenario time to plan (default: the scenario's duration; needed without one).",
)
@click.option(
    "--connections",
    default=1,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Connections to plan for, all open from time 0.",
)
@click.option("--seed", type=SEED, help="Override the scenario's seed (default: the scenario's).")
@faults_option
@click.option(
    "--max-hits",
    default=20,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="List at most this many messages hit by each message fault.",
)
@click.option(
    "--flat",
    is_flag=True,
    help="Print the faults that form a flat plan (one time, one connection each) as a table"
    " and as [[fault]] TOML, instead of the timeline.",
)
@click.option("--toml", "as_toml", is_flag=True, help="Print only the flat plan's [[fault]] TOML.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Show which worker of `sim run --workers N` serves each connection.",
)
def plan(
    scenario_file: str,
    duration: int | None,
    connections: int,
    seed: int | None,
    faults: str | None,
    max_hits: int,
    flat: bool,
    as_toml: bool,
    workers: int,
) -> None:
    """Print SCENARIO's fault timeline without serving anything: the connection and server
    faults with their times, and the messages each message fault hits. Same seed, same plan.
    --faults adds a file's faults as `sim run --faults` does: the plan that run carries out.

    With --flat or --toml, print its faults as a flat plan instead (docs/faults.md, "Fault
    plans as flat data"); faults of another shape are listed as left out (on stderr with
    --toml). Of the other options only --faults applies then.
    """
    from simulator.core.fault_report import plan_report

    if flat and as_toml:
        fail(UsageError("--flat and --toml: give one (--flat prints the TOML too)"))
    scenario = load(scenario_file)
    if faults is not None:
        scenario = with_faults(scenario, faults)
    if flat or as_toml:
        _print_flat(scenario, table=flat)
        return
    span = duration if duration is not None else scenario.duration_ns
    if span is None:
        fail(UsageError("a duration is needed: pass --duration or set scenario.duration"))
    for line in plan_report(scenario, seed, span, connections, max_hits=max_hits, workers=workers):
        click.echo(line)


def _print_flat(scenario: Scenario, *, table: bool) -> None:
    """``sim plan --flat`` (``table``) and ``--toml``."""
    from simulator.core.flat_plan import PlannedFault, from_fault, plan_table, to_toml

    flat: list[PlannedFault] = []
    names: list[str] = []
    left_out: list[str] = []
    for fault in scenario.faults:
        try:
            flat.append(from_fault(fault))
        except ValueError as e:
            left_out.append(str(e))
        else:
            names.append(fault.name)
    if not table:
        for why in left_out:
            click.echo(f"left out: {why}", err=True)
        click.echo(to_toml(flat), nl=False)
        return
    total = len(scenario.faults)
    click.echo(f"flat plan of {scenario.name!r}: {len(flat)} of {total} fault{'s' * (total != 1)}")
    if flat:
        for line in plan_table(flat):
            click.echo(f"  {line}")
        click.echo("  (" + ", ".join(f"#{i} is {n!r}" for i, n in enumerate(names)) + ")")
    if left_out:
        click.echo("left out (not of the flat shape):")
        for why in left_out:
            click.echo(f"  {why}")
    if flat:
        click.echo("")
        click.echo(to_toml(flat), nl=False)
