"""``sim learn``: infer a scenario from a recording of a feed."""

from __future__ import annotations

from pathlib import Path

import click

from simulator.cli.help_text import epilog
from simulator.cli.options import claim_output, fail, force_option, recording_hint, with_hint
from simulator.errors import ScenarioError, SimError, UsageError


@click.command(epilog=epilog("learn"))
@click.argument("recording", type=click.Path())
@click.option(
    "-o", "--out", required=True, type=click.Path(dir_okay=False), help="Scenario file to write."
)
@click.option("--name", default=None, help="The scenario's name (default: the output file's stem).")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001, max=1_000_000),
    default=None,
    help="The speed RECORDING was made at (sim run --speed): its times are multiplied by"
    " it to give scenario time; 1 takes them as recorded (default: the speed its"
    " metadata records, else 1).",
)
@force_option
def learn(recording: str, out: str, name: str | None, speed: float | None, force: bool) -> None:
    """Infer a scenario from RECORDING: each stream's schedule and each field's kind,
    bounds and relations, with a comment on how well each fits; a summary on stderr.
    The scenario written is checked by loading it."""
    from simulator.scenario import parse_scenario
    from simulator.storage.learn import learn as infer

    try:
        claim_output(out, force, segments=False, remove=False)  # replaced once learnt
        learned = infer(recording, speed)
    except SimError as e:
        fail(with_hint(e, recording_hint(recording)))
    text = learned.toml(name or Path(out).stem)
    try:
        parse_scenario(text, out)
    except ScenarioError as e:  # a bug in learn: say so rather than write a bad file
        fail(UsageError(f"the learned scenario does not load (please report): {e}"))
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text, encoding="utf-8")
    except OSError as e:
        fail(UsageError(f"{out}: cannot write: {e.strerror or e}"))
    for line in learned.summary():
        click.echo(line, err=True)
    click.echo(f"wrote {out}: {len(learned.streams)} streams", err=True)
