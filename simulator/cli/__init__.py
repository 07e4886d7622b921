"""The `sim` command: the only place that wires the layers together, and the only one
that reads files for the network layer (which is handed loaded values).

Every mistake in a user's file or arguments ends as one line per problem on stderr and
exit code 2 (:func:`~simulator.cli.options.fail`); nothing a user can type produces a
traceback. One module per kind of command:

- :mod:`.options`             parameter types, shared options, loading a SCENARIO, exit 2;
- :mod:`.scenario_commands`   ``validate``, ``generate``, ``plan``;
- :mod:`.serve_commands`      ``run``, ``replay``;
- :mod:`.record_commands`     ``record``;
- :mod:`.connect_command`     ``connect`` (the reference resilient client);
- :mod:`.recording_commands`  ``inspect``, ``diff``, ``recover``;
- :mod:`.contract_commands`   ``asyncapi``, ``new``, ``schema`` (and ``validate --against``);
- :mod:`.learn_command`       ``learn`` (a scenario inferred from a recording);
- :mod:`.console`             log lines, the live status, stopping on SIGINT/SIGTERM;
- :mod:`.summary`             what ``validate`` prints about a scenario;
- :mod:`.help_text`           the examples and doc page that end every ``--help``.

Every option shows its default in ``--help`` (``show_default`` for the whole group); an
option whose default depends on something else says so in its help text.

Heavy imports (asyncio servers, polars, rich) happen inside the commands, so that
``sim --help`` stays quick.
"""

from __future__ import annotations

import click

from simulator.cli.connect_command import connect
from simulator.cli.contract_commands import asyncapi, new, schema
from simulator.cli.help_text import epilog
from simulator.cli.learn_command import learn
from simulator.cli.record_commands import record
from simulator.cli.recording_commands import diff, inspect, recover
from simulator.cli.scenario_commands import generate, plan, validate
from simulator.cli.serve_commands import replay, run
from simulator.version import __version__

__all__ = ["main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    invoke_without_command=True,
    epilog=epilog("sim"),
)
@click.version_option(__version__, prog_name="sim")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Scenario-driven WebSocket simulator: live mock feeds, seeded faults, record and replay."""
    if ctx.invoked_subcommand is None:
        # A bare `sim` is a question, not a mistake: answer it, and exit 0.
        click.echo(ctx.get_help())


for _command in (
    validate,
    generate,
    run,
    plan,
    inspect,
    diff,
    recover,
    replay,
    record,
    connect,
    learn,
):
    main.add_command(_command)
for _command in (asyncapi, new, schema):
    main.add_command(_command)


def entry() -> None:
    """The ``sim`` command (and ``python -m simulator``): :func:`main` as a process.

    A server stops gracefully on the first Ctrl-C; once its event loop is gone, a second
    one would be a KeyboardInterrupt in the interpreter's exit handlers (a traceback
    after a clean stop), so from then on SIGINT is ignored: the process is exiting."""
    import signal

    try:
        main(prog_name="sim")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
