"""Every `sim` command's --help, as a user reads it: examples and a doc page at the end,
and every option described with its default."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from simulator.cli import main
from tests.e2e.test_cli_foundation import sim

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", ["", *COMMANDS], ids=lambda c: c or "sim")
def test_help_ends_with_examples_of_the_command_and_an_existing_doc_page(command: str) -> None:
    """`sim [COMMAND] --help` exits 0 and ends with two or three examples that start
    with `sim COMMAND`, then the page of the docs (a file that exists) to read next."""
    result = sim(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    tail = result.stdout.split("\n  Examples:\n", 1)
    assert len(tail) == 2, result.stdout
    example_block, _, more = tail[1].partition("\n\n")
    examples = example_block.splitlines()
    assert 2 <= len(examples) <= 3, examples
    for example in examples:
        assert example.startswith(f"    sim {command}".rstrip()), example
    page = re.fullmatch(r"\s*More: (\S+) \(in the sim repository\)\.\s*", more)
    assert page is not None, more
    assert (ROOT / page[1]).is_file()


def test_bare_sim_prints_the_help_and_exits_0() -> None:
    """`sim` alone is a question, not a mistake: the help on stdout, exit 0."""
    result = sim()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Usage: sim ")
    for command in COMMANDS:
        assert f"\n  {command} " in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_a_description_and_shows_its_default(command: str) -> None:
    """Each option's line in the help has a description; every option but a flag, a
    repeatable or a required one shows its default: click's `[default: ...]`, or, for
    one that depends on something else (the scenario, the environment), `(default:
    ...)` in its description."""
    group = click.Context(main, info_name="sim", **main.context_settings)
    cmd = main.commands[command]
    ctx = click.Context(cmd, info_name=command, parent=group)
    undescribed: list[str] = []
    default_unsaid: list[str] = []
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        record = param.get_help_record(ctx)
        assert record is not None, param.name
        _, text = record
        description = text.split("  [", 1)[0]
        if not description.strip():
            undescribed.append(param.opts[0])
        if param.is_flag or param.multiple or param.required:
            continue
        if "[default: " not in text and "(default: " not in description:
            default_unsaid.append(param.opts[0])
    assert undescribed == []
    assert default_unsaid == []


def option_help(command: str, option: str) -> str:
    """The description of ``option`` in `sim COMMAND --help`, on one line."""
    result = sim(command, "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.strip().startswith(option + " ")]
    text = [lines[start].strip().removeprefix(option)]
    for line in lines[start + 1 :]:
        if line.strip().startswith("-"):
            break
        text.append(line.strip())
    return " ".join(" ".join(text).split())


@pytest.mark.parametrize(
    ("command", "has_control"), [("run", True), ("replay", False), ("record", False)]
)
def test_no_inspector_says_what_its_own_command_leaves_out(command: str, has_control: bool) -> None:
    """Only `sim run` has /control/* and GET /healthz (docs/inspector.md): the help of
    replay and record does not speak of them, nor of run."""
    text = option_help(command, "--no-inspector")
    assert "no page at /" in text and "/status" in text and "/events" in text, text
    assert ("/control/*" in text) == has_control, text
    assert ("GET /healthz stays" in text) == has_control, text
    assert "sim run" not in text, text
    assert text.startswith("Proxy: ") == (command == "record"), text
