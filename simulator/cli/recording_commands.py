"""The commands that read recordings and serve nothing: ``sim inspect``, ``sim diff`` and
``sim recover``."""

from __future__ import annotations

import sys

import click

from simulator.cli.help_text import epilog
from simulator.cli.options import fail, recording_hint, with_hint
from simulator.errors import SimError


@click.command(epilog=epilog("inspect"))
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for machines.")
def inspect(file: str, as_json: bool) -> None:
    """Summarise a recording: connections, duration, messages per stream and direction,
    rates, largest gaps, close codes, faults."""
    import orjson

    from simulator.storage.analysis import inspect as summarise
    from simulator.storage.analysis import summary_json, summary_lines

    try:
        summary = summarise(file)
    except SimError as e:
        fail(with_hint(e, recording_hint(file)))
    if as_json:
        click.echo(orjson.dumps(summary_json(summary), option=orjson.OPT_INDENT_2).decode())
    else:
        for line in summary_lines(summary):
            click.echo(line)


@click.command(epilog=epilog("diff"))
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--ignore-timing", is_flag=True, help="Compare messages only.")
def diff(a: str, b: str, ignore_timing: bool) -> None:
    """Compare two recordings connection by connection: identical message sequences, the
    first difference, timing error percentiles (over the rows the same in both files).
    Exit 0 when equivalent, 1 when not."""
    from simulator.storage.analysis import diff as compare
    from simulator.storage.analysis import diff_lines

    try:
        result = compare(a, b, ignore_timing=ignore_timing)
    except SimError as e:
        fail(e)
    for line in diff_lines(result):
        click.echo(line)
    sys.exit(0 if result.equivalent else 1)


@click.command(epilog=epilog("recover"))
@click.argument("file", type=click.Path(dir_okay=False))
def recover(file: str) -> None:
    """Rebuild FILE from the segments a killed recorder left in FILE.segments/."""
    from simulator.storage.writer import recover as rebuild

    try:
        rows = rebuild(file)
    except SimError as e:
        fail(e)
    click.echo(f"recovered {rows} rows into {file}")
