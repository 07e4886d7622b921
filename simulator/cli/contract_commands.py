"""The commands that speak contracts: ``sim asyncapi`` (a scenario as AsyncAPI 3.0),
``sim new --from-asyncapi`` (a scenario skeleton from AsyncAPI) and ``sim schema`` (the
JSON Schema of scenario files). ``sim validate --against`` uses :func:`check_against`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from simulator.cli.help_text import epilog
from simulator.cli.options import fail, load
from simulator.errors import ScenarioError, SimError, UsageError

__all__ = ["asyncapi", "check_against", "new", "schema"]


def _write(text: str, out: str | None, *, force: bool = False) -> None:
    """``text`` to ``out`` (refusing to replace a file unless ``force``), or to stdout."""
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    if path.exists() and not force:
        fail(UsageError(f"{out}: already exists; pass --force to replace it"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # as generate and run --record do
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(UsageError(f"{out}: cannot write: {e.strerror or e}"))
    click.echo(f"wrote {out}", err=True)


@click.command(epilog=epilog("asyncapi"))
@click.argument("scenario_file", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False), help="File to write (default: stdout)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    help="Output format (default: json for a .json --out, else yaml).",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def asyncapi(scenario_file: str, out: str | None, fmt: str | None, force: bool) -> None:
    """Print SCENARIO's feed as an AsyncAPI 3.0 document: the ws:// server, one channel,
    a message per stream with a JSON Schema payload, the messages clients may send and
    their replies, and each stream's schedule as x-sim-* extensions (docs/contracts.md)."""
    from simulator.contracts.asyncapi import asyncapi_document
    from simulator.contracts.spec import dump_yaml

    doc = asyncapi_document(load(scenario_file))
    if fmt is None:
        fmt = "json" if out is not None and out.endswith(".json") else "yaml"
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else dump_yaml(doc)
    _write(text, out, force=force)


@click.command(epilog=epilog("new"))
@click.option(
    "--from-asyncapi",
    "spec_file",
    required=True,
    metavar="SPEC",
    type=click.Path(dir_okay=False),
    help="An AsyncAPI 3.x document (YAML or JSON) to build the scenario from.",
)
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False), help="File to write (default: stdout)."
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def new(spec_file: str, out: str | None, force: bool) -> None:
    """Write a scenario skeleton from an AsyncAPI document: a stream per message it
    sends, a field per payload property with a generator chosen from its type, enum,
    bounds and format, and a '# guess:' comment on each choice the contract did not make."""
    from simulator.contracts.from_asyncapi import skeleton_toml
    from simulator.contracts.spec import load_spec
    from simulator.scenario import parse_scenario

    try:
        text = skeleton_toml(load_spec(spec_file), source_name=os.path.basename(spec_file))
    except SimError as e:
        fail(e)
    try:
        parse_scenario(text, out or "<new scenario>")
    except ScenarioError as e:  # a bug if it happens: say what was made, and why it fails
        click.echo(text, err=True)
        fail(e)
    _write(text, out, force=force)


@click.command(epilog=epilog("schema"))
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False), help="File to write (default: stdout)."
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def schema(out: str | None, force: bool) -> None:
    """Print the JSON Schema of scenario files, for editors (taplo, VS Code Even Better
    TOML): put '#:schema ./scenario.schema.json' on a scenario's first line."""
    from simulator.contracts.scenario_schema import scenario_schema_text

    _write(scenario_schema_text(), out, force=force)


def check_against(spec_file: str, scenario_files: tuple[str, ...], messages: int) -> None:
    """``sim validate --against SPEC``: render ``messages`` per stream of each scenario
    and print every one that breaks the contract; exit 1 if any does, 2 on a bad file."""
    from simulator.contracts.conformance import check_scenario
    from simulator.contracts.spec import load_spec

    try:
        spec = load_spec(spec_file)
    except SimError as e:
        fail(e)
    broken = 0
    for path in scenario_files:
        scenario = load(path)
        try:
            checked, violations = check_scenario(spec, scenario, messages)
        except SimError as e:
            fail(e)
        for violation in violations:
            click.echo(f"{path}: {violation}")
        bad = len({(v.stream, v.seq) for v in violations})
        broken += bad
        click.echo(
            f"{path}: {checked} messages of {len(scenario.streams)} streams checked against"
            f" {spec_file}: {bad} break the contract"
        )
    if broken:
        sys.exit(1)
